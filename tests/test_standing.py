"""A member's standing over real SMTP and HTTP on a steppable clock, both databases: the usage protocol
(``moderation.require_protocol``) accepted by a reply or the welcome's link, and the yearly
reconfirmation (``membership.reconfirm_days``) renewed by a reply or a link, else delivery stops."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from listserv.admin.provision import initialise
from listserv.config import Settings, parse_settings
from listserv.forum import build_parts
from listserv.store.db import make_engine
from listserv.store.directory import find_member
from listserv.store.models import ArchivedPost, Audit, Held, Member, Subscription
from tests.conftest import (
    CSRF_FIELD,
    RunningForum,
    Sink,
    SteppableClock,
    WebClient,
    add_members,
    make_config,
    wait_for,
    wait_processed,
)
from tests.test_moderation import send

ANA = "ana@minrel.cl"
BOB = "bob@minrel.cl"
FOCAL = "punto.focal@minrel.cl"
LIST = "ta-es@forum.example.org"
LINK = re.compile(r"https?://\S+/(protocol-accept|reconfirm)/(\S+)")


@pytest.fixture
def standing_settings(tmp_path: Path, db_url: str, sink: Sink) -> Settings:
    raw = make_config(tmp_path, db_url)
    raw["delivery"] = {"relay": {"host": "127.0.0.1", "port": sink.controller.port}}
    raw["moderation"] = {"hold": "none", "require_protocol": True}
    raw["membership"] = {"reconfirm_days": 365, "reconfirm_grace_days": 30}
    return parse_settings(raw)


@pytest.fixture
def standing_engine(standing_settings: Settings) -> Iterator[Engine]:
    engine = make_engine(standing_settings.database.url)
    initialise(engine, standing_settings)
    yield engine
    engine.dispose()


@pytest.fixture
def running(
    standing_settings: Settings, standing_engine: Engine, clock: SteppableClock
) -> Iterator[RunningForum]:
    with RunningForum(standing_settings, standing_engine, clock) as forum:
        yield forum


def welcome(
    running: RunningForum, settings: Settings, engine: Engine, clock: SteppableClock, address: str
) -> None:
    """A member welcomed as an import does it: queued, then sent by the running forum."""
    parts = build_parts(settings, clock)
    with Session(engine) as session, session.begin():
        parts.requests.send_welcome(session, "ta-es", address, "")
    running.forum.outbox.background.wake()


def link_of(message: object, kind: str) -> str:
    text = message.get_body(("plain",)).get_content()  # type: ignore[attr-defined]
    found = [m for m in LINK.finditer(text) if m[1] == kind]
    assert found, text
    return f"/{kind}/{found[0][2]}"


def post_with_link(client: WebClient, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200 and 'method="post"' in page.text
    csrf = CSRF_FIELD.search(page.text)
    assert csrf is not None
    return str(client.http.post(path, data={"csrf": csrf.group(1)}).text)


def test_the_first_post_waits_for_the_protocol_accepted_by_reply(
    running: RunningForum,
    sink: Sink,
    standing_settings: Settings,
    standing_engine: Engine,
    clock: SteppableClock,
) -> None:
    add_members(standing_engine, standing_settings, {"email": ANA, "country": "CL", "lists": "ta-es"})
    welcome(running, standing_settings, standing_engine, clock, ANA)
    [greeting] = sink.wait_to(ANA)
    assert greeting["Reply-To"] == "ta-es-request@forum.example.org"
    assert "aceptar" in greeting.get_content()
    send(running.port, ANA, LIST, "Primera pregunta", "Hola a todos.")
    wait_for(lambda: len(held(standing_engine)) == 1, what="the first post held")
    [item] = held(standing_engine)
    assert [reason["key"] for reason in item.reasons] == ["protocol_not_accepted"]
    told = sink.wait_to(ANA, count=2)[1]  # how to accept, not merely "held"
    assert "aceptar" in told.get_content() and "/protocol-accept/" in told.get_content()
    assert told["Reply-To"] == "ta-es-request@forum.example.org"
    clock.advance(hours=2)
    quoted = "\n".join("> " + line for line in greeting.get_content().splitlines())
    send(running.port, ANA, greeting["Reply-To"], "Re: " + greeting["Subject"], f"aceptar\n\n{quoted}\n")
    wait_for(lambda: archived_subjects(standing_engine) == ["Primera pregunta"], what="the post released")
    with Session(standing_engine) as session:
        member = find_member(session, ANA)
        assert member is not None and member.protocol_accepted_at == clock.now
        assert session.scalars(select(Held.decided_by)).one() == ANA
    send(running.port, ANA, LIST, "Segunda", "Ya publicada.")
    wait_for(lambda: len(archived_subjects(standing_engine)) == 2, what="the next post published at once")


def test_the_welcome_link_accepts_and_moderators_see_when(
    running: RunningForum,
    sink: Sink,
    standing_settings: Settings,
    standing_engine: Engine,
    clock: SteppableClock,
) -> None:
    add_members(standing_engine, standing_settings, {"email": ANA, "country": "CL", "lists": "ta-es"})
    welcome(running, standing_settings, standing_engine, clock, ANA)
    path = link_of(sink.wait_to(ANA)[0], "protocol-accept")
    web = WebClient(standing_settings, standing_engine, clock)
    with Session(standing_engine) as session:
        assert find_member(session, ANA).protocol_accepted_at is None  # type: ignore[union-attr]
    assert "recorded" in post_with_link(web, path)
    with Session(standing_engine) as session:
        assert find_member(session, ANA).protocol_accepted_at == clock.now  # type: ignore[union-attr]
        assert session.scalars(
            select(Audit.channel).where(Audit.detail == "", Audit.action == "accept")
        ).all()
    assert_refused(web, path[:-3] + "xyz")


def assert_refused(client: WebClient, path: str) -> None:
    """An edited, used or expired link: a bad request, explained, and no button to press."""
    page = client.get(path)
    assert (
        page.status_code == 400
        and "not valid" in page.text
        and '<form method="post" class="stack">' not in page.text
    )
    answer = client.http.post(path, data={"csrf": client.csrf()})
    assert answer.status_code == 400 and "not valid" in answer.text


def test_reconfirmation_renews_by_reply_or_stops_delivery_and_tells_the_focal_point(
    running: RunningForum,
    sink: Sink,
    standing_settings: Settings,
    standing_engine: Engine,
    clock: SteppableClock,
) -> None:
    add_members(
        standing_engine,
        standing_settings,
        {"email": ANA, "country": "CL", "lists": "ta-es", "language": "es"},
        {"email": BOB, "name": "Bob", "country": "CL", "lists": "ta-es;ta-fr", "language": "fr"},
        {"email": FOCAL, "country": "CL", "lists": "ta-es", "role": "focal_point"},
    )
    with Session(standing_engine) as session, session.begin():
        session.execute(update(Member).values(created_at=clock.now, protocol_accepted_at=clock.now))
        session.execute(
            update(Member).where(Member.email == FOCAL).values(created_at=clock.now + timedelta(days=100))
        )
    jobs = running.forum.jobs
    clock.advance(days=364)
    assert jobs.run("reconfirm", clock.now) == 0
    clock.advance(days=2)
    assert jobs.run("reconfirm", clock.now) == 2  # Ana and Bob; the focal point joined later
    assert jobs.run("reconfirm", clock.now) == 0  # asked once
    [asked] = sink.wait_to(ANA)
    assert asked["Content-Language"] == "es" and "confirmar" in asked["Subject"]
    assert sink.wait_to(BOB)[0]["Content-Language"] == "fr"  # Bob's language, from his French list
    send(running.port, ANA, asked["Reply-To"], "Re: " + asked["Subject"], "Sí, sigo.\n")
    sink.wait_to(ANA, count=2)
    with Session(standing_engine) as session:
        assert find_member(session, ANA).confirmed_at == clock.now  # type: ignore[union-attr]
    clock.advance(days=31)
    assert jobs.run("reconfirm", clock.now) == 1  # the focal point told about Bob
    lapsed = sink.wait_to(FOCAL)[-1]
    assert BOB in lapsed.get_content() and "Chile (CL)" in lapsed.get_content()
    with Session(standing_engine) as session:
        reasons = session.scalars(
            select(Subscription.disabled_reason).join(Member).where(Member.email == BOB)
        )
        assert set(reasons) == {"reconfirmation"}
        stops = session.scalars(select(Audit.list_name).where(Audit.action == "stop")).all()
        assert sorted(stops) == ["ta-es", "ta-fr"]
    send(running.port, ANA, LIST, "Aviso", "Para todos.")
    wait_for(lambda: ANA in sink.recipients(), what="the post delivered")
    assert BOB not in sink.recipients()
    wait_processed(standing_engine)
    web = WebClient(standing_settings, standing_engine, clock)
    reconfirm = link_of(sink.to(BOB)[0], "reconfirm")
    assert "confirmed for another year" in post_with_link(web, reconfirm)
    assert_refused(web, reconfirm)  # single use
    with Session(standing_engine) as session:
        bob = find_member(session, BOB)
        assert bob is not None and all(s.disabled_at is None for s in bob.subscriptions)


def held(engine: Engine) -> list[Held]:
    with Session(engine) as session:
        return list(session.scalars(select(Held).order_by(Held.id)))


def archived_subjects(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.scalars(select(ArchivedPost.subject).order_by(ArchivedPost.id)))

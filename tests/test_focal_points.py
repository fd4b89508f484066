"""Focal points over real SMTP, both databases: a nomination for their own state is held for the
moderators, approved by reply code, and creates the delegate with the state's code; a nomination or
withdrawal for another state is refused, in the list's language, and audited."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.membership.owner_text import read_line, vocabulary_from
from listserv.store.directory import find_member
from listserv.store.models import Audit, Held
from tests.conftest import (
    CSRF_FIELD,
    RunningForum,
    Sink,
    SteppableClock,
    WebClient,
    add_members,
    set_password,
    wait_for,
    wait_processed,
)
from tests.test_moderation import CODE, reply_to_notice, send

FOCAL = "punto.focal@minrel.cl"
ARGENTINA = "delegada@cancilleria.ar"
MOD_ES = "mod-es@forum.example.org"
OWNER_ES = "ta-es-owner@forum.example.org"


@pytest.fixture(autouse=True)
def members(relayed_engine: Engine, relayed_settings: Settings) -> None:
    add_members(
        relayed_engine,
        relayed_settings,
        {"email": FOCAL, "name": "Paz Rojas", "country": "CL", "lists": "ta-es", "role": "focal_point"},
        {"email": ARGENTINA, "name": "Luz Díaz", "country": "AR", "lists": "ta-es"},
    )


def test_a_nomination_for_their_own_state_is_held_then_creates_the_delegate(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    send(
        live.port, FOCAL, OWNER_ES, "Delegada", "Buenos días,\n\ndesignar nueva@minrel.cl Ana Soto\n\nSaludos"
    )
    [notice] = sink.wait_to(MOD_ES)
    assert CODE.search(notice["Subject"]) and "nueva@minrel.cl" in notice["Subject"]
    text = notice.get_content()
    assert "Chile (CL)" in text and "Paz Rojas" in text and "aprobar" in text
    [pending] = sink.wait_to(FOCAL)
    assert pending["Content-Language"] == "es" and "moderadores" in pending.get_content()
    with Session(relayed_engine) as session:
        assert find_member(session, "nueva@minrel.cl") is None  # nothing before a moderator agrees
        assert session.scalars(select(Held.kind)).one() == "nomination"
    reply_to_notice(live.port, notice, MOD_ES, "aprobar")
    welcome = sink.wait_to("nueva@minrel.cl")[0]
    assert welcome["Content-Language"] == "es"
    approved = sink.wait_to(FOCAL, count=2)[1]
    assert "aprobada" in approved["Subject"]
    with Session(relayed_engine) as session:
        delegate = find_member(session, "nueva@minrel.cl")
        assert delegate is not None and delegate.country == "CL" and delegate.role == "delegate"
        assert delegate.name == "Ana Soto" and [s.mailing_list.name for s in delegate.subscriptions] == [
            "ta-es"
        ]


def test_acting_for_another_state_is_refused_and_audited(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    send(
        live.port, FOCAL, OWNER_ES, "", f"retirar {ARGENTINA}\ndesignar otra@example.org Otra Persona (AR)\n"
    )
    answers = sink.wait_to(FOCAL, count=2)
    for answer in answers:
        assert "no pudo realizarse" in answer["Subject"]
        assert "no es delegado de su Estado miembro (Chile (CL))" in answer.get_content()
    wait_processed(relayed_engine)
    with Session(relayed_engine) as session:
        assert session.scalars(select(Held)).all() == []
        assert find_member(session, ARGENTINA) is not None
        refusals = session.scalars(select(Audit).where(Audit.result == "other_state")).all()
        assert sorted(a.detail for a in refusals) == ["nominate otra@example.org", f"withdraw {ARGENTINA}"]
    assert sink.to(MOD_ES) == []


def test_a_member_who_is_not_a_focal_point_is_told_and_other_owner_mail_is_forwarded(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    send(live.port, ARGENTINA, OWNER_ES, "", "designar amiga@cancilleria.ar Amiga\n")
    [refused] = sink.wait_to(ARGENTINA)
    assert "punto focal" in refused.get_content()
    send(live.port, ARGENTINA, OWNER_ES, "Pregunta", "¿Cuándo es la próxima reunión?\n")
    [forwarded] = sink.wait_to(MOD_ES)
    assert forwarded["Subject"] == "Pregunta"


def test_a_withdrawal_is_held_and_removes_the_delegate(
    live: RunningForum, sink: Sink, relayed_engine: Engine, relayed_settings: Settings
) -> None:
    add_members(
        relayed_engine, relayed_settings, {"email": "ex@minrel.cl", "country": "CL", "lists": "ta-es"}
    )
    send(live.port, FOCAL, OWNER_ES, "", "withdraw ex@minrel.cl\n")
    [notice] = sink.wait_to(MOD_ES)
    assert "Retiro" in notice["Subject"]
    reply_to_notice(live.port, notice, MOD_ES, "aprobar")
    wait_for(lambda: len(sink.to(FOCAL)) == 2, what="the focal point told of the decision")
    with Session(relayed_engine) as session:
        assert find_member(session, "ex@minrel.cl") is None


def test_reading_lines_in_six_languages() -> None:
    from listserv.config import SHIPPED_TEMPLATES
    from listserv.mail.templates import MailTemplates

    templates = MailTemplates((SHIPPED_TEMPLATES,), "UTC")
    words = vocabulary_from(
        templates.catalogue(lang, "owner.yaml") for lang in ("en", "fr", "es", "ar", "zh", "ru")
    )
    for line, verb in [
        ("Désigner a@b.org Jean Dupont", "nominate"),
        ("提名 a@b.org 王芳", "nominate"),
        ("ترشيح a@b.org ليلى", "nominate"),
        ("отозвать a@b.org", "withdraw"),
        ("RETIRAR <a@b.org>", "withdraw"),
    ]:
        found = read_line(line, words)
        assert found is not None and found.verb == verb and found.address == "a@b.org", line
    assert read_line("nominate a@b.org Ana Soto [cl]", words).country == "CL"  # type: ignore[union-attr]
    assert read_line("I nominate nobody", words) is None
    assert read_line("nominate not-an-address Ana", words).address is None  # type: ignore[union-attr]


def test_on_the_web_a_focal_point_nominates_and_cannot_act_for_another_state(
    live: RunningForum,
    sink: Sink,
    relayed_engine: Engine,
    relayed_settings: Settings,
    clock: SteppableClock,
) -> None:
    add_members(
        relayed_engine,
        relayed_settings,
        {"email": "actual@minrel.cl", "name": "Ema Vidal", "country": "CL", "lists": "ta-es"},
    )
    for address in (FOCAL, ARGENTINA):
        set_password(relayed_engine, address)
    web = WebClient(relayed_settings, relayed_engine, clock).sign_in(FOCAL)
    page = web.get("/focal-point", headers={"Accept-Language": "es"})
    assert page.status_code == 200
    assert "Ema Vidal" in page.text and "Luz Díaz" not in page.text and "Chile (CL)" in page.text
    csrf = CSRF_FIELD.search(page.text).group(1)  # type: ignore[union-attr]
    form = {
        "csrf": csrf,
        "verb": "nominate",
        "email": "web@minrel.cl",
        "name": "Web Nominee",
        "list": "ta-es",
    }
    assert web.http.post("/focal-point", data=form).status_code == 303
    assert "moderators" in web.get("/focal-point").text
    live.forum.outbox.background.wake()  # queued by this test's own web app, not the forum's
    [notice] = sink.wait_to(MOD_ES)
    assert "web@minrel.cl" in notice["Subject"]
    refused = web.http.post("/focal-point", data=form | {"verb": "withdraw", "email": ARGENTINA})
    assert refused.status_code == 303
    assert "another member state" in web.get("/focal-point").text
    with Session(relayed_engine) as session:
        assert session.scalars(select(Audit.channel).where(Audit.result == "other_state")).all() == ["web"]
    other = WebClient(relayed_settings, relayed_engine).sign_in(ARGENTINA)
    assert other.get("/focal-point").status_code == 403
    set_password(relayed_engine, MOD_ES)  # the moderators see it in the web queue and decide there
    moderator = WebClient(relayed_settings, relayed_engine, clock).sign_in(MOD_ES)
    queue = moderator.get("/moderation/ta-es/").text
    assert "Nominations" in queue and "web@minrel.cl" in queue
    with Session(relayed_engine) as session:
        held_id = session.scalars(select(Held.id).where(Held.kind == "nomination")).one()
    form = {"csrf": CSRF_FIELD.search(queue).group(1), "action": "approve"}  # type: ignore[union-attr]
    assert moderator.http.post(f"/moderation/ta-es/{held_id}", data=form).status_code == 303
    with Session(relayed_engine) as session:
        nominee = find_member(session, "web@minrel.cl")
        assert nominee is not None and nominee.country == "CL"

"""Personal delivery over real SMTP and HTTP: each member's copy carries their own token (RFC 8058
one-click header, footer link, VERP envelope); the one-click POST unsubscribes exactly that member from
exactly that list, a GET does not; an edited or misused token changes nothing; a bounce to a VERP address
counts for the right member even when nobody can read it. SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import re
import secrets
import signal
import smtplib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.admin.provision import initialise
from listserv.config import Settings, parse_settings
from listserv.outgoing.delivery import UNPIPELINED_WIDTH
from listserv.outgoing.personal import MemberTokens
from listserv.store.db import make_engine
from listserv.store.models import Audit, ListRow, Member, Outbox, Subscription
from tests.conftest import (
    RunningForum,
    ServeProcess,
    Sink,
    add_members,
    free_port,
    make_config,
    run_cli,
    wait_for,
    wait_processed,
)
from tests.test_delivery import add_members_in_bulk
from tests.test_moderation import send

DOMAIN = "forum.example.org"
ANA, BEN = "ana@example.org", "ben@example.org"
TOKEN = re.compile(r"/u/([a-z2-7]{32})\b")


@pytest.fixture
def personal_settings(tmp_path: Path, db_url: str, sink: Sink) -> Settings:
    raw = make_config(tmp_path, db_url)
    raw["delivery"] = {"relay": {"host": "127.0.0.1", "port": sink.controller.port}, "one_click": "always"}
    raw["moderation"] = {"hold": "none"}
    return parse_settings(raw)


@pytest.fixture
def personal_engine(personal_settings: Settings) -> Iterator[Engine]:
    engine = make_engine(personal_settings.database.url)
    initialise(engine, personal_settings)
    add_members(
        engine, personal_settings, {"email": ANA, "lists": "ta-fr;ta-en"}, {"email": BEN, "lists": "ta-fr"}
    )
    yield engine
    engine.dispose()


def post_and_collect(forum: RunningForum, sink: Sink, count: int) -> dict[str, tuple[str, bytes]]:
    """ana posts to ta-fr; → each recipient's (envelope sender, raw copy)."""
    send(forum.port, ANA, f"ta-fr@{DOMAIN}", "Formation", "Bonjour à tous,\nnotre expérience.")
    wait_for(lambda: len(sink.recipients()) >= count, what="the personal copies")
    with sink._lock:
        return {
            rcpts[0]: (mail_from, raw)
            for (mail_from, rcpts, message), raw in zip(sink.messages, sink.raw, strict=True)
            if message["List-Id"]
        }


def http(forum: RunningForum, method: str, path: str, body: bytes | None = None) -> tuple[int, str]:
    """Real HTTP to the forum's web server, no cookie: what a mail provider's one-click POST is."""
    request = urllib.request.Request(f"http://127.0.0.1:{forum.forum.web_port}{path}", body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def subscribed(engine: Engine, address: str, list_name: str) -> bool:
    with Session(engine) as session:
        found = (
            select(Subscription.id)
            .join(Member, Member.id == Subscription.member_id)
            .join(ListRow, ListRow.id == Subscription.list_id)
            .where(Member.email_key == address, ListRow.name == list_name)
        )
        return session.scalar(found) is not None


ONE_CLICK = b"List-Unsubscribe=One-Click"


def test_each_copy_carries_its_members_token_and_one_click_leaves_exactly_that_list(
    personal_settings: Settings, personal_engine: Engine, sink: Sink
) -> None:
    with RunningForum(personal_settings, personal_engine) as forum:
        copies = post_and_collect(forum, sink, 3)  # ana, ben and the list's moderator
        tokens = {}
        for rcpt, (mail_from, raw) in copies.items():
            header = re.search(rb"List-Unsubscribe: <([^>]+)>,\s+<mailto:", raw)
            assert header, raw[:600]
            token = TOKEN.search(header.group(1).decode()).group(1)
            assert mail_from == f"ta-fr-bounces+{token}@{DOMAIN}"  # VERP
            assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in raw
            assert raw.count(f"/u/{token}".encode()) >= 2  # header and footer
            assert b"0listserv1member8token9here01890" not in raw
            tokens[rcpt] = token
        assert len(set(tokens.values())) == 3
        with Session(personal_engine) as session:
            ana_id = session.scalar(select(Member.id).where(Member.email_key == ANA))
            fr_id = session.scalar(select(ListRow.id).where(ListRow.name == "ta-fr"))
            en_id = session.scalar(select(ListRow.id).where(ListRow.name == "ta-en"))
        named = forum.forum.parts.tokens.read(tokens[ANA])
        assert named is not None and (named.member_id, named.list_id) == (ana_id, fr_id)

        # A GET (a link scanner) shows one button and changes nothing.
        status, page = http(forum, "GET", f"/u/{tokens[ANA]}")
        assert status == 200 and 'name="List-Unsubscribe" value="One-Click"' in page
        assert page.count(f'action="/u/{tokens[ANA]}"') == 1  # one confirm button
        assert subscribed(personal_engine, ANA, "ta-fr")

        # Edited by one character, or the body missing: a clear page, nothing changed.
        edited = tokens[ANA][:-1] + ("a" if tokens[ANA][-1] != "a" else "b")
        status, page = http(forum, "POST", f"/u/{edited}", ONE_CLICK)
        assert status == 404 and "This unsubscribe link is not valid" in page
        status, page = http(forum, "POST", f"/u/{tokens[ANA]}", b"List-Unsubscribe=Maybe")
        assert status == 400 and "was not understood" in page
        assert subscribed(personal_engine, ANA, "ta-fr")

        # ana's token for ta-fr made to name ta-en (she is on both): the signature no longer holds.
        data = base64.b32decode(tokens[ANA].upper())
        other_list = base64.b32encode(data[:4] + en_id.to_bytes(2, "big") + data[6:]).decode().lower()
        forged = MemberTokens(secrets.token_bytes(32)).make(ana_id, en_id)  # signed with another key
        for wrong in (other_list, forged):
            status, page = http(forum, "POST", f"/u/{wrong}", ONE_CLICK)
            assert status == 404 and "This unsubscribe link is not valid" in page
        assert subscribed(personal_engine, ANA, "ta-en")

        # The one-click POST: no cookie, no CSRF token. Exactly ana, exactly ta-fr.
        status, page = http(forum, "POST", f"/u/{tokens[ANA]}", ONE_CLICK)
        assert status == 200 and "You have left this list" in page
        assert not subscribed(personal_engine, ANA, "ta-fr")
        assert subscribed(personal_engine, ANA, "ta-en") and subscribed(personal_engine, BEN, "ta-fr")
        goodbye = sink.wait_to(ANA)[-1]
        assert goodbye["Subject"] and goodbye["Content-Language"] == "fr"
        # Again (the provider retries): nothing more to do, and no second goodbye.
        status, page = http(forum, "POST", f"/u/{tokens[ANA]}", ONE_CLICK)
        assert status == 200 and "nothing to leave" in page
    with Session(personal_engine) as session:
        audit = session.scalars(select(Audit).where(Audit.action == "unsubscribe")).all()
        goodbyes = session.scalars(select(Outbox).where(Outbox.purpose == "member_unsubscribed")).all()
    assert [(a.list_name, a.actor, a.result) for a in audit] == [("ta-fr", ANA, "one_click")]
    assert [g.recipients for g in goodbyes] == [[ANA]]


def test_the_link_survives_a_restart_and_a_new_session_secret(
    personal_settings: Settings, personal_engine: Engine, sink: Sink
) -> None:
    with RunningForum(personal_settings, personal_engine) as forum:
        token = TOKEN.search(post_and_collect(forum, sink, 3)[BEN][1].decode("latin-1")).group(1)
    secret = personal_settings.site.data_dir / "secret"
    old = secret.read_text()
    secret.write_text(secrets.token_bytes(32).hex())  # the site secret, which signs web sessions
    with RunningForum(personal_settings, personal_engine) as forum:
        assert forum.forum.parts.secret.hex() != old
        status, page = http(forum, "POST", f"/u/{token}", ONE_CLICK)
    assert status == 200 and "You have left this list" in page
    assert not subscribed(personal_engine, BEN, "ta-fr")


def score(engine: Engine, address: str, list_name: str) -> float:
    with Session(engine) as session:
        found = (
            select(Subscription.bounce_score)
            .join(Member, Member.id == Subscription.member_id)
            .join(ListRow, ListRow.id == Subscription.list_id)
            .where(Member.email_key == address, ListRow.name == list_name)
        )
        return float(session.scalar(found) or 0.0)


UNREADABLE = (
    "From: MAILER-DAEMON@mx.example.net\r\nTo: {to}\r\nSubject: Undelivered Mail\r\n"
    "Message-ID: <{id}@mx.example.net>\r\n\r\nSorry, something went wrong with your message.\r\n"
)


def bounce(port: int, to: str) -> None:
    raw = UNREADABLE.format(to=to, id=secrets.token_hex(6)).encode()
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.sendmail("", [to], raw)


def test_a_bounce_to_a_verp_address_counts_for_that_member_even_unreadable(
    personal_settings: Settings, personal_engine: Engine, sink: Sink
) -> None:
    with RunningForum(personal_settings, personal_engine) as forum:
        envelopes = {rcpt: mail_from for rcpt, (mail_from, _) in post_and_collect(forum, sink, 3).items()}
        bounce(forum.port, envelopes[BEN])
        # ben's ta-fr token sent to ta-en's bounce address: not ta-en's member; nobody is scored.
        ben_token = envelopes[BEN].split("+")[1].split("@")[0]
        bounce(forum.port, f"ta-en-bounces+{ben_token}@{DOMAIN}")
        wait_processed(personal_engine)
    assert score(personal_engine, BEN, "ta-fr") == 1.0
    assert score(personal_engine, ANA, "ta-fr") == 0.0 and score(personal_engine, ANA, "ta-en") == 0.0
    with Session(personal_engine) as session:
        unread = session.scalars(select(Outbox).where(Outbox.purpose == "bounce_unrecognised")).all()
    assert len(unread) == 1  # the misaddressed one went to ta-en's moderators, as any unreadable report


def test_with_personalize_off_copies_go_in_batches_without_one_click(
    tmp_path: Path, db_url: str, sink: Sink
) -> None:
    raw = make_config(tmp_path, db_url)
    raw["delivery"] = {
        "relay": {"host": "127.0.0.1", "port": sink.controller.port},
        "one_click": "always",
        "personalize": False,  # YAML's bare off
    }
    raw["moderation"] = {"hold": "none"}
    settings = parse_settings(raw)
    assert settings.delivery.personalize == "off"
    engine = make_engine(settings.database.url)
    try:
        initialise(engine, settings)
        add_members(engine, settings, {"email": ANA, "lists": "ta-fr"}, {"email": BEN, "lists": "ta-fr"})
        with RunningForum(settings, engine) as forum:
            send(forum.port, ANA, f"ta-fr@{DOMAIN}", "Formation", "Bonjour.")
            wait_for(lambda: len(sink.recipients()) >= 3, what="the batch")
        with sink._lock:
            batches = [(f, r, m) for f, r, m in sink.messages if m["List-Id"]]
        assert len(batches) == 1 and batches[0][0] == f"ta-fr-bounces@{DOMAIN}"
        assert (
            batches[0][2]["List-Unsubscribe-Post"] is None and "/u/" not in batches[0][2]["List-Unsubscribe"]
        )
    finally:
        engine.dispose()


def test_sigkill_during_a_personal_fan_out_of_10000_loses_no_one(
    tmp_path: Path, db_url: str, sink: Sink
) -> None:
    """serve is killed mid-way through 10,000 personal transactions and restarted: every member gets
    their own copy; repeats only for the rows that were on the wire (connections × batch_size
    transactions claimed and not yet recorded)."""
    raw = make_config(tmp_path, db_url)
    port = free_port()
    raw["smtp"]["port"] = port
    raw["delivery"] = {
        "relay": {"host": "127.0.0.1", "port": sink.controller.port},
        "batch_size": 100,
        "connections": 4,
        "personalize": "on",
        "one_click": "always",
    }
    raw["moderation"] = {"hold": "none"}
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert run_cli(config_file, "init").returncode == 0
    addresses = [f"delegate{number:05d}@example.org" for number in range(10_000)]
    add_members_in_bulk(db_url, "ta-en", addresses)
    server = ServeProcess(config_file, port).start()
    try:
        with smtplib.SMTP("127.0.0.1", port) as client:
            message = f"From: {addresses[0]}\r\nSubject: Big\r\nMessage-ID: <big@x>\r\n\r\nHi\r\n"
            client.sendmail(addresses[0], [f"ta-en@{DOMAIN}"], message.encode())
        wait_for(lambda: len(sink.recipients()) >= 2_000, timeout=120, what="the fan-out under way")
        server.signal(signal.SIGKILL)
        server.wait()
        assert len(set(sink.recipients())) < 10_000  # killed mid-way, or the test proves nothing
        restarted = ServeProcess(config_file, port).start()
        try:
            wait_for(lambda: set(sink.recipients()) >= set(addresses), timeout=240, what="every member")
        finally:
            restarted.stop()
    finally:
        server.stop()
    repeats = len(sink.recipients()) - len(set(sink.recipients()))
    # The rows on the wire: a lane per connection, UNPIPELINED_WIDTH × connections without PIPELINING
    # (aiosmtpd, this sink, offers none), each row up to batch_size transactions.
    assert repeats <= UNPIPELINED_WIDTH * 4 * 100, repeats
    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            ids = {key: id_ for key, id_ in session.execute(select(Member.email_key, Member.id))}
    finally:
        engine.dispose()
    tokens = MemberTokens(bytes.fromhex((tmp_path / "var" / "member-key").read_text()))
    with sink._lock:
        copies = [
            (mail_from, rcpts, message) for mail_from, rcpts, message in sink.messages if message["List-Id"]
        ]
    for mail_from, rcpts, message in copies:
        token = mail_from.split("+")[1].split("@")[0]
        named = tokens.read(token)
        assert len(rcpts) == 1 and named is not None and named.member_id == ids[rcpts[0]]
        assert f"/u/{token}>" in message["List-Unsubscribe"]

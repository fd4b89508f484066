"""Delivery end to end over real SMTP: approval → decorated copies to every `each` member through a real
SMTP sink, with retries when the relay defers or is down. SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.policy
import signal
import smtplib
import socket
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.outgoing.decorate import decorate
from listserv.outgoing.delivery import UNPIPELINED_WIDTH
from listserv.outgoing.smtp_steps import pipelined_sendmail, wire_form
from listserv.store.claims import STALE_CLAIM, claimant
from listserv.store.db import make_engine, utc_now
from listserv.store.models import (
    ArchivedPost,
    Delivery,
    ListRow,
    Member,
    Outbox,
    Received,
    Subscription,
)
from tests.conftest import (
    RunningForum,
    ServeProcess,
    Sink,
    SteppableClock,
    add_members,
    free_port,
    make_config,
    run_cli,
    wait_for,
)
from tests.test_moderation import MOD_FR, reply_to_notice, send

MEMBERS = [
    ("ana@example.org", "ta-fr", "each"),
    ("ben@example.org", "ta-fr", "each"),
    ("carla@example.org", "ta-fr", "digest"),
    ("dan@example.org", "ta-fr", "none"),
    ("eve@example.org", "ta-en", "each"),  # another list
]


@pytest.fixture(autouse=True)
def members(relayed_engine: Engine, relayed_settings: Settings) -> None:
    add_members(
        relayed_engine,
        relayed_settings,
        *(
            {
                "email": address,
                "name": address.split("@")[0].title(),
                "country": "CL",
                "lists": lists,
                "delivery": mode,
            }
            for address, lists, mode in MEMBERS
        ),
    )


def deliveries(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        return dict(session.execute(select(Delivery.state, func.count()).group_by(Delivery.state)).all())


def approve_one(live: RunningForum, sink: Sink, subject: str = "Formation des formateurs") -> None:
    before = len(sink.to(MOD_FR))
    send(live.port, "ana@example.org", "ta-fr@forum.example.org", subject, "Bonjour,\nnotre expérience…")
    notice = sink.wait_to(MOD_FR, count=before + 1)[-1]
    reply_to_notice(live.port, notice, MOD_FR, "approuver")


def test_an_approved_post_reaches_each_member_once_decorated(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    approve_one(live, sink)
    expected = {"ana@example.org", "ben@example.org", MOD_FR}  # the moderator reads the list too
    wait_for(lambda: set(sink.recipients()) == expected, what="the copies")
    assert sorted(sink.recipients()) == sorted(expected)  # one each; digest, none and ta-en: nothing
    copy = sink.to("ben@example.org", list_copies=True)[0]
    assert copy["Subject"] == "[TA-FR] Formation des formateurs"
    assert copy["List-Id"] == '"Assistance technique" <ta-fr.forum.example.org>'
    assert copy["List-Post"] == "<mailto:ta-fr@forum.example.org>"
    assert "mailto:ta-fr-request@forum.example.org?subject=unsubscribe" in copy["List-Unsubscribe"]
    assert copy["List-Unsubscribe-Post"] is None  # one-click waits for the web endpoint (RFC 8058)
    assert copy["Archived-At"].startswith("<http://127.0.0.1:8080/lists/ta-fr/message/")
    assert copy["Precedence"] == "list"
    body = copy.get_body(("plain",)).get_content()
    assert "notre expérience" in body and "ta-fr-request@forum.example.org" in body
    with Session(relayed_engine) as session:
        post = session.scalars(select(ArchivedPost)).one()
        received = session.get(Received, post.received_id)
        assert post.raw == received.raw  # the archive keeps the bytes as received
        assert post.thread_id == post.id
    # the state is committed after the relay's 250, so a copy can be in the sink a moment before
    wait_for(lambda: deliveries(relayed_engine) == {"sent": 1}, what="the rows marked sent")


def test_a_row_nobody_is_sending_goes_out_again_and_another_serves_stays_its_own(
    live: RunningForum, sink: Sink, relayed_engine: Engine, clock: SteppableClock
) -> None:
    """A relaxed commit (store/db.relax_commit) can be undone by a crash of the database server while
    the claim before it stays: the row is ``sending`` with nobody sending it. Its sender gives it back
    between rounds, as any sender does a dead process's claim or one older than STALE_CLAIM; a row a
    living serve claimed is left to it, also at start (a serve starting beside a busy one sent its
    notices again)."""
    approve_one(live, sink)
    wait_for(lambda: deliveries(relayed_engine) == {"sent": 1}, what="the rows marked sent")
    claims = {  # recipient: (claimed by, claimed at)
        "mine@example.net": (claimant(), clock.now),
        "dead@example.net": (f"{socket.gethostname()}:{dead_pid()}", clock.now),
        "stale@example.net": ("elsewhere:2", clock.now - STALE_CLAIM - timedelta(minutes=1)),
        "living@example.net": ("elsewhere:1", clock.now),
    }
    with Session(relayed_engine) as session, session.begin():
        session.execute(update(Delivery).values(state="sending"))  # the result undone, the claim kept
        session.add_all(
            Outbox(
                purpose="test_lost",
                mail_from="ta-fr-owner@forum.example.org",
                recipients=[rcpt],
                raw=f"To: {rcpt}\r\nSubject: lost\r\n\r\nbody\r\n".encode(),
                state="sending",
                claimed_by=holder,
                next_attempt_at=claimed_at,
            )
            for rcpt, (holder, claimed_at) in claims.items()
        )
    copies = sink.recipients()
    clock.advance(seconds=31)
    live.forum.deliverer.background.wake()
    live.forum.outbox.background.wake()
    wait_for(lambda: sink.recipients() == copies * 2, what="the copies sent again")
    for rcpt in ("mine@example.net", "dead@example.net", "stale@example.net"):
        wait_for(lambda rcpt=rcpt: len(sink.to(rcpt)) == 1, what=f"the notice to {rcpt} sent again")
    wait_for(lambda: deliveries(relayed_engine) == {"sent": 1}, what="the undone row marked sent")
    assert live.forum.outbox.requeue_interrupted() == 0  # what a serve starting now gives back
    assert sink.to("living@example.net") == []
    with Session(relayed_engine) as session:
        rows = session.execute(select(Outbox.recipients, Outbox.state).where(Outbox.purpose == "test_lost"))
        states = {rcpt: state for (rcpt,), state in rows}
    assert states == dict.fromkeys(claims, "sent") | {"living@example.net": "sending"}


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_replies_thread_and_never_stack_the_prefix(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    approve_one(live, sink)
    wait_for(lambda: len(sink.recipients()) == 3, what="the first post")
    original = sink.to("ben@example.org", list_copies=True)[0]
    send(
        live.port,
        "ben@example.org",
        "ta-fr@forum.example.org",
        "Re: " + original["Subject"],
        "D'accord.",
        In_Reply_To=original["Message-ID"],
        References=original["Message-ID"],
    )
    notice = sink.wait_to(MOD_FR, count=2)[-1]
    reply_to_notice(live.port, notice, MOD_FR, "")
    wait_for(lambda: len(sink.recipients()) == 6, what="the reply")
    reply = sink.to("ana@example.org", list_copies=True)[-1]
    assert reply["Subject"] == "Re: [TA-FR] Formation des formateurs"
    with Session(relayed_engine) as session:
        first, second = session.scalars(select(ArchivedPost).order_by(ArchivedPost.id)).all()
        assert (second.thread_id, second.parent_id) == (first.id, first.id)


def test_a_deferring_relay_delays_but_loses_nothing(
    live: RunningForum, sink: Sink, relayed_engine: Engine, clock: SteppableClock
) -> None:
    sink.refuse["ben@example.org"] = "450 4.2.1 Mailbox busy, try later"
    approve_one(live, sink)
    wait_for(lambda: "ana@example.org" in sink.recipients(), what="the accepted recipients")
    assert "ben@example.org" not in sink.recipients()
    wait_for(lambda: deliveries(relayed_engine) == {"sent": 1, "queued": 1}, what="ben's retry row")
    sink.refuse.clear()
    sink.defer_all = True  # and now the whole relay defers
    clock.advance(minutes=5)
    live.forum.deliverer.background.wake()
    wait_for(lambda: _attempts(relayed_engine) >= 2, what="a second, deferred attempt")
    sink.defer_all = False
    clock.advance(hours=2)
    live.forum.deliverer.background.wake()
    wait_for(lambda: "ben@example.org" in sink.recipients(), what="ben's copy after the relay recovers")
    assert sorted(sink.recipients()).count("ben@example.org") == 1
    wait_for(lambda: deliveries(relayed_engine) == {"sent": 2}, what="the rows marked sent")


def test_a_relay_that_is_down_is_retried(
    live: RunningForum, sink: Sink, relayed_engine: Engine, clock: SteppableClock
) -> None:
    send(live.port, "ana@example.org", "ta-fr@forum.example.org", "Sujet", "Texte")
    notice = sink.wait_to(MOD_FR)[-1]
    sink.controller.stop()  # the relay goes away after delivering the notice
    try:
        reply_to_notice(live.port, notice, MOD_FR, "approuver")  # to our ingress: still up
        wait_for(
            lambda: deliveries(relayed_engine).get("queued") == 1 and _attempts(relayed_engine) >= 1,
            what="a failed first attempt",
        )
    finally:
        sink.restart()
    clock.advance(hours=1)
    live.forum.deliverer.background.wake()
    wait_for(lambda: len(sink.recipients()) == 3, what="every copy once the relay is back")
    wait_for(lambda: deliveries(relayed_engine) == {"sent": 1}, what="the rows marked sent")


def _attempts(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.max(Delivery.attempts))) or 0


def test_decorated_copies_parse_for_every_hard_message(relayed_settings, relayed_engine: Engine) -> None:  # type: ignore[no-untyped-def]
    """Decoration of the corpus through the real Publisher: never raises, always a List-Id."""
    from listserv.forum import build_parts

    publisher = build_parts(relayed_settings).publisher
    mailing_list = relayed_settings.lists["ta-en"]
    for path in sorted((Path(__file__).parent / "messages").glob("*.eml")):
        post = ArchivedPost(list_name="ta-en", message_id=f"<{path.stem}@x>", raw=path.read_bytes())
        copy = decorate(post.raw, publisher.decoration(mailing_list, post))
        decorated = email.message_from_bytes(copy, policy=email.policy.compat32)
        assert decorated["List-Id"], path.name


def test_sigkill_during_a_10000_recipient_delivery_loses_no_one(
    tmp_path: Path, db_url: str, sink: Sink
) -> None:
    """serve is killed mid-fan-out and restarted: every member gets the post; repeats only for the
    batches that were in flight (at most connections × batch size)."""
    raw = make_config(tmp_path, db_url)
    port = free_port()
    raw["smtp"]["port"] = port
    raw["delivery"] = {
        "relay": {"host": "127.0.0.1", "port": sink.controller.port},
        "batch_size": 100,
        "connections": 4,
        "personalize": "off",  # batch mode; the personal fan-out's kill: test_one_click.py
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
            client.sendmail(
                addresses[0],
                ["ta-en@forum.example.org"],
                f"From: {addresses[0]}\r\nSubject: Big\r\nMessage-ID: <big@x>\r\n\r\nHi\r\n".encode(),
            )
        wait_for(lambda: len(sink.recipients()) >= 2_000, timeout=60, what="the fan-out under way")
        server.signal(signal.SIGKILL)
        server.wait()
        assert len(set(sink.recipients())) < 10_000  # killed mid-way, or the test proves nothing
        restarted = ServeProcess(config_file, port).start()
        try:
            wait_for(lambda: set(sink.recipients()) >= set(addresses), timeout=120, what="every member")
        finally:
            restarted.stop()
    finally:
        server.stop()
    repeats = len(sink.recipients()) - len(set(sink.recipients()))
    # The rows on the wire: a lane per connection, UNPIPELINED_WIDTH × connections without PIPELINING
    # (aiosmtpd, this sink, offers none), each row up to batch_size transactions.
    assert repeats <= UNPIPELINED_WIDTH * 4 * 100, repeats


def add_members_in_bulk(db_url: str, list_name: str, addresses: list[str]) -> None:
    engine = make_engine(db_url)
    with engine.begin() as connection:
        list_id = connection.scalar(select(ListRow.id).where(ListRow.name == list_name))
        connection.execute(
            insert(Member),
            [
                {
                    "email": a,
                    "email_key": a,
                    "name": "",
                    "country": "",
                    "role": "delegate",
                    "is_chief": False,
                    "created_at": utc_now(),
                }
                for a in addresses
            ],
        )
        ids = connection.execute(select(Member.id).where(Member.email_key.in_(addresses))).scalars().all()
        connection.execute(
            insert(Subscription),
            [
                {
                    "member_id": member_id,
                    "list_id": list_id,
                    "delivery": "each",
                    "digest_period": "daily",
                    "bounce_score": 0.0,
                    "created_at": utc_now(),
                }
                for member_id in ids
            ],
        )
    engine.dispose()


def test_a_refused_recipient_scores_a_bounce_and_a_suspended_one_gets_nothing(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    sink.refuse["ben@example.org"] = "550 5.1.1 No such user"
    approve_one(live, sink, "Premier")
    wait_for(lambda: "ana@example.org" in sink.recipients(), what="the accepted copies")

    def ben() -> Subscription:
        with Session(relayed_engine) as session:
            return session.scalars(
                select(Subscription).join(Member).where(Member.email_key == "ben@example.org")
            ).one()

    wait_for(lambda: ben().bounce_score == 1.0, what="the refusal to be scored")
    assert deliveries(relayed_engine) == {"sent": 1}  # a 5xx is not retried
    with Session(relayed_engine) as session, session.begin():
        session.get(Subscription, ben().id).disabled_at = utc_now()
    sink.refuse.clear()
    approve_one(live, sink, "Second")
    wait_for(lambda: sink.recipients().count("ana@example.org") == 2, what="the second post")
    assert "ben@example.org" not in sink.recipients()


def test_wire_form_stuffs_every_line_that_starts_with_a_dot() -> None:
    """The first line too (no line break before it), and nothing else: a dot inside a line stays."""
    assert wire_form(b".a\r\nb\r\n.c") == b"..a\r\nb\r\n..c\r\n.\r\n"
    assert wire_form(b".a\r\nb\r\n") == b"..a\r\nb\r\n.\r\n"  # the first line alone
    assert wire_form(b"a\r\nb.c\r\n") == b"a\r\nb.c\r\n.\r\n"


def test_pipelined_transactions_report_like_sendmail(sink: Sink) -> None:
    """RFC 2920 pipelining (used when the relay offers it) against a real server: the same answers."""
    sink.refuse["busy@example.org"] = "450 4.2.1 Busy"
    sink.refuse["gone@example.org"] = "550 5.1.1 Gone"
    raw = b"From: a@example.org\r\nSubject: x\r\n\r\n.leading dot\r\nbody\r\n"
    with smtplib.SMTP("127.0.0.1", sink.controller.port) as client:
        client.ehlo()
        refused = pipelined_sendmail(
            client, "l-bounces@x.org", ["ok@example.org", "busy@example.org", "gone@example.org"], raw
        )
        assert refused == {"busy@example.org": (450, b"4.2.1 Busy"), "gone@example.org": (550, b"5.1.1 Gone")}
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            pipelined_sendmail(client, "l-bounces@x.org", ["gone@example.org"], raw)
        assert pipelined_sendmail(client, "l-bounces@x.org", ["ok2@example.org"], raw) == {}
    assert sink.raw[0].endswith(b".leading dot\r\nbody\r\n")  # dot-stuffing undone by the server
    assert [rcpts for _, rcpts, _ in sink.messages] == [["ok@example.org"], ["ok2@example.org"]]

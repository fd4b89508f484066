"""Bounces: RFC 3464 reports to -bounces@ score per subscription; at the threshold a VERP probe goes out,
and only when the probe bounces is delivery suspended. Real SMTP, real sink, SQLite and PostgreSQL."""

from __future__ import annotations

import smtplib

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.membership.bounces import read_bounce
from listserv.store.models import Member, Subscription
from tests.conftest import RunningForum, Sink, SteppableClock, add_members, wait_for, wait_processed

GONE = "gone@example.org"
MOD_EN = "mod-en@forum.example.org"


def dsn(recipient: str, action: str = "failed", status: str = "5.1.1", number: int = 0) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.org\r\nTo: ta-en-bounces@forum.example.org\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-{number}-{recipient}@mx>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\n\r\n"
        "--B--\r\n"
    ).encode()


@pytest.fixture(autouse=True)
def members(relayed_engine: Engine, relayed_settings: Settings) -> None:
    add_members(
        relayed_engine, relayed_settings, {"email": GONE, "name": "Gone", "country": "PE", "lists": "ta-en"}
    )


def subscription(engine: Engine) -> Subscription:
    with Session(engine) as session:
        return session.scalars(select(Subscription).join(Member).where(Member.email_key == GONE)).one()


def report(port: int, raw: bytes, to: str = "ta-en-bounces@forum.example.org") -> None:
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.sendmail("", [to], raw)


def test_reading_reports() -> None:
    assert read_bounce(dsn(GONE)).permanent == {GONE}
    soft = read_bounce(dsn(GONE, "delayed", "4.2.2"))
    assert soft.temporary == {GONE} and not soft.permanent
    assert read_bounce(b"Subject: hello\r\n\r\nnot a report\r\n").permanent == frozenset()


def test_only_a_failed_probe_suspends_delivery(
    live: RunningForum, sink: Sink, relayed_engine: Engine, clock: SteppableClock
) -> None:
    for number in range(4):
        report(live.port, dsn(GONE, number=number))
        clock.advance(hours=1)
    wait_processed(relayed_engine)
    assert subscription(relayed_engine).bounce_score == 4.0
    assert sink.to(GONE) == []  # below the threshold: nothing happens
    report(live.port, dsn(GONE, number=4))
    sink.wait_to(GONE)
    envelope = next(frm for frm, rcpts, message in sink.messages if GONE in rcpts)
    assert envelope.startswith("ta-en-bounces+p") and envelope.endswith("=example.org@forum.example.org")
    assert subscription(relayed_engine).disabled_at is None  # a probe first, not a suspension
    report(live.port, dsn(GONE, number=5), to=envelope)  # the probe bounces too
    [notice] = sink.wait_to(MOD_EN)
    assert GONE in notice.get_body(("plain",)).get_content()
    assert subscription(relayed_engine).disabled_at is not None


def test_a_forged_probe_address_decides_nothing(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    report(live.port, dsn(GONE), to="ta-en-bounces+p000000000000-gone=example.org@forum.example.org")
    wait_processed(relayed_engine)
    assert subscription(relayed_engine).disabled_at is None


def test_an_unreadable_report_goes_to_the_moderators(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    report(live.port, b"From: someone@example.com\r\nSubject: ???\r\nMessage-ID: <odd@x>\r\n\r\nHuh\r\n")
    [forwarded] = sink.wait_to(MOD_EN)
    assert forwarded["Subject"] == "???"
    assert sink.recipients() == []  # never posted to the list


def test_soft_bounces_count_once_a_day(
    live: RunningForum, sink: Sink, relayed_engine: Engine, clock: SteppableClock
) -> None:
    for number in range(3):
        report(live.port, dsn(GONE, "delayed", "4.2.2", number))
    wait_processed(relayed_engine)
    assert subscription(relayed_engine).bounce_score == 0.5
    clock.advance(days=1, minutes=1)
    report(live.port, dsn(GONE, "delayed", "4.2.2", 9))
    wait_for(lambda: subscription(relayed_engine).bounce_score == 1.0, what="the next day's soft bounce")

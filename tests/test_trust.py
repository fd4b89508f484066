"""Trust: nothing accepted is lost in silence, and nobody can speak as someone else. Each case the trust
issue found, over real SMTP to the real ingress and a real sink, on SQLite and PostgreSQL."""

from __future__ import annotations

import smtplib
import subprocess
from email.message import EmailMessage
from pathlib import Path

import dkim
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.store.models import Audit, Held, Outbox
from tests.conftest import (
    RunningForum,
    Sink,
    SteppableClock,
    add_members,
    run_cli,
    wait_for,
    wait_processed,
)
from tests.test_moderation import (
    CHIEF,
    DELEGATE,
    MOD_FR,
    archived,
    dkim_key,
    held_rows,
    live_outbox_settles,
    members,  # noqa: F401 — the autouse fixture: a delegate and a staff member
    send,
    settings_with,
)

LIST = "ta-fr@forum.example.org"


def send_raw(port: int, mail_from: str, raw: bytes, to: str = LIST) -> None:
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.sendmail(mail_from, [to], raw)


def reasons(engine: Engine) -> list[list[str]]:
    return [[reason["key"] for reason in held.reasons] for held in held_rows(engine)]


# --- 1. no silent loss -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    ["Vacation policy for civil servants", "Absence of IP laws in LDCs", "Out of office hours support"],
)
def test_a_members_post_that_sounds_automatic_is_held_not_discarded(
    live: RunningForum, sink: Sink, relayed_engine: Engine, subject: str
) -> None:
    send(live.port, DELEGATE, LIST, subject, "A real question from a real delegate.")
    [notice] = sink.wait_to(MOD_FR)
    assert "réponse automatique" in notice.get_body(("plain",)).get_content()  # ta-fr: in French
    assert reasons(relayed_engine) == [["looks_automatic", "held_by_policy"]]


def test_noreply_and_the_null_sender_are_held_with_a_reason(
    live: RunningForum, sink: Sink, relayed_engine: Engine, relayed_settings: Settings
) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = DELEGATE, LIST, "Sent through a form"
    message.set_content("The envelope sender is empty, the author is a member.")
    send_raw(live.port, "", message.as_bytes())
    wait_for(lambda: len(held_rows(relayed_engine)) == 1, what="the post held")
    add_members(relayed_engine, relayed_settings, {"email": "noreply@example.org", "lists": "ta-fr"})
    send(live.port, "noreply@example.org", LIST, "Newsletter of the ministry", "Sent from a shared box.")
    wait_for(lambda: len(held_rows(relayed_engine)) == 2, what="the noreply post held")
    assert all("looks_automatic" in keys for keys in reasons(relayed_engine))


def test_only_headers_discard_and_every_discard_is_counted(
    live: RunningForum, relayed_engine: Engine, relayed_settings: Settings, tmp_path: Path
) -> None:
    send(live.port, DELEGATE, LIST, "Absent", "x", Auto_Submitted="auto-replied")
    send(live.port, DELEGATE, LIST, "News", "x", Precedence="bulk")
    wait_processed(relayed_engine)
    assert held_rows(relayed_engine) == [] and archived(relayed_engine) == []
    with Session(relayed_engine) as session:
        discards = session.scalars(select(Audit).where(Audit.action == "discard")).all()
    assert [(row.result, row.detail) for row in discards] == [("automatic", DELEGATE)] * 2
    config = tmp_path / "config.yaml"
    import yaml

    config.write_text(yaml.safe_dump(relayed_settings.model_dump(mode="json")), encoding="utf-8")
    status = run_cli(config, "status")
    assert "discarded: 2 automatic" in status.stdout


# --- 2. identity from the header as written ----------------------------------------------------------


def test_an_encoded_name_never_carries_the_address(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    forged = (
        b"From: =?utf-8?q?chief@forum.example.org?= <attacker@evil.example>\r\n"
        b"To: ta-fr@forum.example.org\r\nSubject: I am the chief\r\n"
        b"Message-ID: <forged@evil.example>\r\n\r\nPublish me.\r\n"
    )
    send_raw(live.port, "attacker@evil.example", forged)
    smuggled = (
        b"From: =?utf-8?q?Marie_=3Cx=40evil=2Eexample=3E?= <marie@example.fr>\r\n"
        b"To: ta-fr@forum.example.org\r\nSubject: Mine\r\nMessage-ID: <smuggled@example.fr>\r\n\r\nHello\r\n"
    )
    send_raw(live.port, DELEGATE, smuggled)
    wait_processed(relayed_engine)
    assert archived(relayed_engine) == []  # neither passed as the chief
    [held] = held_rows(relayed_engine)
    assert held.sender == DELEGATE and held.sender_name == "Marie <x@evil.example>"
    with Session(relayed_engine) as session:
        refused = session.scalars(select(Audit).where(Audit.action == "reject")).one()
    assert refused.detail == "attacker@evil.example"


def test_several_or_no_from_addresses_hold_the_post(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    several = (
        b"From: marie@example.fr, chief@forum.example.org\r\nTo: ta-fr@forum.example.org\r\n"
        b"Subject: Two authors\r\nMessage-ID: <two@example.fr>\r\n\r\nx\r\n"
    )
    nobody = (
        b"To: ta-fr@forum.example.org\r\nSubject: No author\r\nMessage-ID: <none@example.fr>\r\n\r\nx\r\n"
    )
    send_raw(live.port, DELEGATE, several)
    send_raw(live.port, DELEGATE, nobody)
    wait_for(lambda: len(held_rows(relayed_engine)) == 2, what="both held")
    assert [keys[0] for keys in reasons(relayed_engine)] == ["several_senders", "no_sender"]
    live_outbox_settles(relayed_engine)
    with Session(relayed_engine) as session:
        recipients = [r for row in session.scalars(select(Outbox)) for r in row.recipients]
    assert "" not in recipients  # nobody is written to at <>


# --- 3. privilege needs proof ------------------------------------------------------------------------


def test_a_forged_chief_is_held_and_a_signed_one_passes(
    relayed_settings: Settings, relayed_engine: Engine, clock: SteppableClock, sink: Sink, tmp_path: Path
) -> None:
    private, dns = dkim_key(tmp_path, b"sel._domainkey.forum.example.org.")

    def post(subject: str) -> bytes:
        return (
            f"From: {CHIEF}\r\nTo: {LIST}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@forum.example.org>"
            "\r\n\r\nThe week's topic.\r\n"
        ).encode()

    signed = post("signed")
    signed = dkim.sign(signed, b"sel", b"forum.example.org", private, include_headers=[b"from"]) + signed
    with RunningForum(relayed_settings, relayed_engine, clock, dns) as live:
        send_raw(live.port, CHIEF, post("forged"))
        send_raw(live.port, CHIEF, signed)
        wait_for(lambda: archived(relayed_engine) == ["signed"], what="the signed post published")
        wait_for(lambda: len(held_rows(relayed_engine)) == 1, what="the unsigned one held")
    assert reasons(relayed_engine)[0][0] == "sender_unverified"
    assert held_rows(relayed_engine)[0].subject == "forged"


def test_from_header_mode_keeps_the_old_trust(
    relayed_settings: Settings, relayed_engine: Engine, clock: SteppableClock
) -> None:
    settings = settings_with(relayed_settings, moderation={"preapprove": "from_header"})
    with RunningForum(settings, relayed_engine, clock) as live:
        send(live.port, MOD_FR, LIST, "Straight through", "x")
        wait_for(lambda: archived(relayed_engine) == ["Straight through"], what="direct publication")


# --- 5. no backscatter -------------------------------------------------------------------------------


def test_a_forged_non_member_post_mails_the_victim_once_and_quotes_nothing(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    for number in range(3):
        send(live.port, "victim@example.net", LIST, f"Buy pills {number}", "spam")
    wait_processed(relayed_engine)
    live_outbox_settles(relayed_engine)
    [notice] = sink.to("victim@example.net")
    text = notice.get_body(("plain",)).get_content()
    assert "pills" not in text and "pills" not in notice["Subject"]
    with Session(relayed_engine) as session:
        assert len(session.scalars(select(Audit).where(Audit.action == "reject")).all()) == 3


# --- 6. every notice builds --------------------------------------------------------------------------


def test_hostile_subjects_and_long_lines_still_reach_the_moderators(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    split_gb2312 = (
        b"From: marie@example.fr\r\nTo: ta-fr@forum.example.org\r\nMessage-ID: <gb@example.fr>\r\n"
        b"Subject: =?gb2312?B?ztKw0b61zbfArb380KmjrMTjw8e/tL+01eK49srHyrLDtIzCo6zV4g==?=\r\n"
        b" =?gb2312?B?1tazobrP19TIu8nZsrvBy8TayeQ=?=\r\n\r\nbody\r\n"
    )
    long_line = (
        b"From: marie@example.fr\r\nTo: ta-fr@forum.example.org\r\nMessage-ID: <long@example.fr>\r\n"
        b"Subject: Long line\r\n\r\n" + b"y" * 3000 + b"\r\n"
    )
    send_raw(live.port, DELEGATE, split_gb2312)
    send_raw(live.port, DELEGATE, long_line)
    wait_for(lambda: len(sink.to(MOD_FR)) == 2, what="both notices delivered")
    with Session(relayed_engine) as session:
        assert {held.state for held in session.scalars(select(Held))} == {"held"}
        assert session.scalars(select(Outbox).where(Outbox.state == "failed")).all() == []


def test_a_notice_that_cannot_be_built_still_reaches_the_moderators(
    relayed_settings: Settings, relayed_engine: Engine, clock: SteppableClock, sink: Sink, tmp_path: Path
) -> None:
    """An operator's template override that fails on this post (``site.templates_dir``): the post is
    held, listed, and the moderators get the minimal notice with the reason; no retry loop."""
    shipped = Path(__file__).resolve().parent.parent / "templates"
    overrides = tmp_path / "templates"
    subprocess.run(["cp", "-r", str(shipped), str(overrides)], check=True)
    notice = overrides / "mail" / "fr" / "moderator_held.txt"
    notice.write_text(notice.read_text() + '{% if "EXPLODE" in excerpt %}{{ no_such_variable }}{% endif %}\n')
    raw = relayed_settings.model_dump(mode="json")
    raw["site"]["templates_dir"] = str(overrides)
    from listserv.config import parse_settings

    with RunningForum(parse_settings(raw), relayed_engine, clock) as live:
        send(live.port, DELEGATE, LIST, "Breaks the notice", "EXPLODE")
        [minimal] = sink.wait_to(MOD_FR)
    assert "EXPLODE" not in minimal.as_string()
    assert reasons(relayed_engine) == [["held_by_policy", "notice_incomplete"]]
    with Session(relayed_engine) as session:
        assert session.scalars(select(Held)).one().state == "held"


# --- 8. clean input ----------------------------------------------------------------------------------


def test_control_characters_are_refused_and_add_changes_only_what_it_names(
    relayed_settings: Settings, relayed_engine: Engine, tmp_path: Path
) -> None:
    import yaml

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(relayed_settings.model_dump(mode="json")), encoding="utf-8")
    injected = run_cli(
        config, "members", "add", "eve@example.org", "--lists", "ta-en", "--name", "Eve\r\nBcc: x"
    )
    assert injected.returncode == 2 and "control character" in injected.stderr
    roster = tmp_path / "roster.csv"
    header = "email,name,country,lists,role,delivery,language\n"
    roster.write_text(header + "ana@intranet.internal,Ana,CL,ta-en,,,\nbob@x.org,B\x01b,,ta-en,,,\n")
    refused = run_cli(config, "members", "import", str(roster))
    assert refused.returncode == 1 and "line 3: " in refused.stderr and "control character" in refused.stderr
    roster.write_text(header + "ana@intranet.internal,Ana,CL,ta-en,,,\n")
    assert run_cli(config, "members", "import", str(roster)).returncode == 0  # an intranet domain is fine
    assert (
        run_cli(
            config, "members", "add", "ana@intranet.internal", "--lists", "ta-en", "--delivery", "none"
        ).returncode
        == 0
    )
    listing = run_cli(config, "members", "list", "--list", "ta-en").stdout
    [ana] = [line for line in listing.splitlines() if line.startswith("ana@")]
    assert "Ana" in ana and "CL" in ana and "none" in ana
    reason = run_cli(config, "reject", "#1", "--reason", "Off topic\r\nBcc: x")
    assert reason.returncode == 2 and "control character" in reason.stderr

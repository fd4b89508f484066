"""Attacks by mail on the running forum (issue 20, item 4): open-relay tricks over real SMTP to the real
ingress, and reply codes forged, replayed and guessed. Each attack is kept as a regression test;
SECURITY.md names them. The relay tricks are protocol only, so they run on SQLite alone."""

from __future__ import annotations

import logging
import secrets
import smtplib
import socket
from pathlib import Path

import dkim
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.moderation.codes import CROCKFORD
from listserv.moderation.reply_text import MAX_COMMANDS
from listserv.store.models import Audit, Received, Route
from tests.conftest import RunningForum, Sink, add_members, pending_count, wait_for, wait_processed
from tests.test_moderation import (
    CODE,
    DELEGATE,
    MOD_EN,
    MOD_FR,
    archived,
    dkim_key,
    held_rows,
    hold_one,
    live_outbox_settles,
    reply_to_notice,
    send,
    settings_with,
)

pytestmark = pytest.mark.security
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
DOMAIN = "forum.example.org"
RELAY_DENIED = b"5.7.1 Relaying denied"
NO_SUCH = b"5.1.1"


class SmtpDialogue:
    """SMTP spoken byte for byte (smtplib would quote or refuse the odd addresses these tricks need)."""

    def __init__(self, port: int) -> None:
        self.connection = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.reader = self.connection.makefile("rb")
        assert self.reply().startswith(b"220")

    def reply(self) -> bytes:
        lines = [self.reader.readline()]
        while lines[-1][3:4] == b"-":
            lines.append(self.reader.readline())
        return b"".join(lines)

    def say(self, line: str | bytes) -> bytes:
        self.connection.sendall((line.encode("utf-8") if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def close(self) -> None:
        """QUIT, so the server sees no transaction left open (its shutdown would wait for one)."""
        try:
            self.say("RSET")
            self.say("QUIT")
        finally:
            self.connection.close()


# Each envelope recipient an open relay might take for somebody else's domain, and the exact refusal.
# aiosmtpd's parser decides what an address is (RFC 5321 path syntax); what it cannot read is a 553.
RELAY_TRICKS = [
    ("<victim%other.example@forum.example.org>", b"550 " + NO_SUCH),  # the percent hack
    ("<@forum.example.org:victim@other.example>", b"550 " + RELAY_DENIED),  # a source route
    ("<@forum.example.org,@relay.example:victim@other.example>", b"550 " + RELAY_DENIED),
    ("<victim@other.example@forum.example.org>", b"553 "),  # two @: not a path
    ('<"victim@other.example"@forum.example.org>', b"550 " + NO_SUCH),  # quoted local part
    ('<"ta-en@forum.example.org"@other.example>', b"550 " + RELAY_DENIED),
    ("<victim@OTHER.EXAMPLE>", b"550 " + RELAY_DENIED),
    ("<victim@other.example.>", b"553 5.1.3"),  # a trailing dot is no domain (RFC 5321 4.1.2)
    ("<ta-en@forum.example.org.>", b"553 5.1.3"),
    ("<ta-en@[127.0.0.1]>", b"550 " + RELAY_DENIED),  # an address literal
    ("<victim@[IPv6:::1]>", b"550 " + RELAY_DENIED),
    ("<other.example!victim@forum.example.org>", b"550 " + NO_SUCH),  # a bang path
    ("<victim!other.example>", b"553 5.1.3"),  # a bare bang path has no domain
    ("<ta-en+victim@forum.example.org>", b"550 " + NO_SUCH),  # a detail where none is taken
    ("<victim@forum.example.org.other.example>", b"550 " + RELAY_DENIED),
    ("<postmaster@other.example>", b"550 " + RELAY_DENIED),
    ("<victim@xn--forum-9ra.example.org>", b"550 " + RELAY_DENIED),
    ("<>", b"553 5.1.3"),  # the null path is a sender, never a recipient
]


def rcpt_after(dialogue: SmtpDialogue, mail_from: str, rcpt: str) -> bytes:
    assert dialogue.say("RSET").startswith(b"250")
    assert dialogue.say(f"MAIL FROM:{mail_from}").startswith(b"250")
    return dialogue.say(f"RCPT TO:{rcpt}")


@SQLITE_ONLY
def test_open_relay_tricks_are_refused_with_the_precise_code(forum: RunningForum, engine: Engine) -> None:
    """Every trick, after each of the senders a relay abuser uses (the null sender, our own domain, an
    outsider): refused with its own 5xx; a genuine list address still gets 250 in the same session.
    One session per sender: after 20 refusals the ingress cuts a session off (tests/test_smtp_abuse.py)."""
    assert len(RELAY_TRICKS) < 20
    wrong = []
    for sender in ("<>", f"<ta-en@{DOMAIN}>", "<spammer@other.example>"):
        dialogue = SmtpDialogue(forum.port)
        try:
            assert dialogue.say("EHLO attacker.example").startswith(b"250")
            for rcpt, refusal in RELAY_TRICKS:
                answer = rcpt_after(dialogue, sender, rcpt)
                if not answer.startswith(refusal):
                    wrong.append((sender, rcpt, answer))
            for ours in (f"<ta-en@{DOMAIN.upper()}>", "<Postmaster>", f"<POSTMASTER@{DOMAIN}>"):
                assert rcpt_after(dialogue, sender, ours).startswith(b"250 2.1.5"), ours
        finally:
            dialogue.close()
    assert wrong == [], "\n".join(map(repr, wrong))


@SQLITE_ONLY
def test_recipients_of_other_domains_after_a_valid_one_are_never_relayed(
    live: RunningForum, sink: Sink, relayed_engine: Engine, relayed_settings: Settings
) -> None:
    """A valid list first, then outsiders in the same transaction: each outsider is refused, the
    message is stored for the list alone, and the relay behind us never sees an outsider."""
    add_members(relayed_engine, relayed_settings, {"email": DELEGATE, "lists": "ta-en", "language": "en"})
    outsiders = [rcpt for rcpt, refusal in RELAY_TRICKS if refusal.startswith(b"550")]
    dialogue = SmtpDialogue(live.port)
    try:
        assert dialogue.say("EHLO attacker.example").startswith(b"250")
        assert dialogue.say(f"MAIL FROM:<{DELEGATE}>").startswith(b"250")
        assert dialogue.say(f"RCPT TO:<ta-en@{DOMAIN}>").startswith(b"250")
        for rcpt in outsiders:
            assert dialogue.say(f"RCPT TO:{rcpt}")[:1] == b"5", rcpt
        assert dialogue.say("DATA").startswith(b"354")
        body = f"From: {DELEGATE}\r\nTo: ta-en@{DOMAIN}\r\nSubject: relay probe\r\n\r\nhello\r\n.".encode()
        assert dialogue.say(body).startswith(b"250 2.0.0 Accepted")
    finally:
        dialogue.close()
    wait_processed(relayed_engine)
    with Session(relayed_engine) as session:
        assert [r.rcpt_tos for r in session.scalars(select(Received))] == [[f"ta-en@{DOMAIN}"]]
    live_outbox_settles(relayed_engine)
    delivered_to = {rcpt for _, rcpts, _ in sink.messages for rcpt in rcpts}
    assert all(address.endswith(("@example.fr", f"@{DOMAIN}")) for address in delivered_to), delivered_to


@SQLITE_ONLY
def test_mail_to_a_bare_postmaster_is_stored_and_routed_to_the_postmaster(
    forum: RunningForum, engine: Engine
) -> None:
    """RFC 5321 4.5.1: <Postmaster> without a domain must be accepted; it is the site's postmaster."""
    dialogue = SmtpDialogue(forum.port)
    try:
        assert dialogue.say("EHLO reporter.example").startswith(b"250")
        assert dialogue.say("MAIL FROM:<reporter@other.example>").startswith(b"250")
        assert dialogue.say("RCPT TO:<Postmaster>").startswith(b"250")
        assert dialogue.say("DATA").startswith(b"354")
        body = b"From: reporter@other.example\r\nSubject: abuse report\r\n\r\nsee below\r\n."
        assert dialogue.say(body).startswith(b"250 2.0.0 Accepted")
    finally:
        dialogue.close()
    wait_processed(engine)
    with Session(engine) as session:
        assert [(r.list_name, r.kind) for r in session.scalars(select(Route))] == [(None, "postmaster")]


# -- reply codes: every test below runs with the members fixture -------------------------------------


@pytest.fixture
def members(relayed_engine: Engine, relayed_settings: Settings) -> None:
    """The French delegate who posts; the moderators come from the shipped config."""
    add_members(
        relayed_engine,
        relayed_settings,
        {
            "email": DELEGATE,
            "name": "Marie Dupont",
            "country": "FR",
            "lists": "ta-fr;ta-en",
            "language": "fr",
        },
    )


def results(engine: Engine) -> list[tuple[str, str, str]]:
    with Session(engine) as session:
        return [(a.actor, a.action, a.result) for a in session.scalars(select(Audit).order_by(Audit.id))]


@pytest.mark.usefixtures("members")
def test_a_code_of_another_list_decides_nothing_for_that_lists_moderator(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    """mod-en moderates ta-en; the code of a ta-fr post, sent to ta-en's own moderate address (where
    mod-en may reply), still decides nothing: the code's list is checked, not the address's."""
    notice = hold_one(live, sink)
    code = CODE.search(notice["Subject"]).group(1)
    send(live.port, MOD_EN, f"ta-en-moderate+{code}@{DOMAIN}", "Re: x", "approve\n")
    send(live.port, MOD_EN, f"ta-en-moderate@{DOMAIN}", "Re: x", f"approve {code}\n")
    wait_processed(relayed_engine)
    assert held_rows(relayed_engine)[0].state == "held" and archived(relayed_engine) == []
    assert [r for r in results(relayed_engine) if r[0] == MOD_EN] == [
        (MOD_EN, "approve", "not_your_list"),
        (MOD_EN, "explain", "sent"),  # once an hour at most
        (MOD_EN, "approve", "not_your_list"),
    ]


@pytest.mark.usefixtures("members")
def test_approving_twice_publishes_once(live: RunningForum, sink: Sink, relayed_engine: Engine) -> None:
    notice = hold_one(live, sink)
    reply_to_notice(live.port, notice, MOD_FR, "approuver")
    wait_for(lambda: held_rows(relayed_engine)[0].state == "approved", what="the approval")
    reply_to_notice(live.port, notice, MOD_FR, "approuver")
    answer = sink.wait_to(MOD_FR, count=2)[1]
    assert "Déjà traité" in answer["Subject"]
    live_outbox_settles(relayed_engine)
    assert archived(relayed_engine) == ["Formation des formateurs"]
    assert len(sink.to(DELEGATE, list_copies=True)) == 1
    assert (MOD_FR, "approve", "already_decided") in results(relayed_engine)


def trusted_settings(settings: Settings) -> Settings:
    raw = settings.model_dump(mode="json")
    return settings_with(
        settings, moderation=raw["moderation"] | {"trusted_authserv_id": "mx.forum.example.org"}
    )


@pytest.mark.usefixtures("members")
def test_a_forged_moderator_from_with_a_valid_code_is_refused_when_the_mta_says_so(
    relayed_settings: Settings, relayed_engine: Engine, sink: Sink
) -> None:
    """The code leaked (a forwarded notice), the From is forged: the trusted MTA's DMARC or DKIM fail
    refuses it, silently; without a trusted verdict, the code alone decides (it is the secret)."""
    settings = trusted_settings(relayed_settings)
    with RunningForum(settings, relayed_engine) as live:
        notice = hold_one(live, sink)
        for verdict in (
            "mx.forum.example.org; dmarc=fail (p=reject) header.from=forum.example.org",
            "mx.forum.example.org; dkim=fail header.d=forum.example.org",
        ):
            reply_to_notice(live.port, notice, MOD_FR, "approuver", Authentication_Results=verdict)
        wait_processed(relayed_engine)
        assert held_rows(relayed_engine)[0].state == "held"
        assert [r for r in results(relayed_engine) if r[0] == MOD_FR][-2:] == [
            (MOD_FR, "reply", "unauthenticated"),
            (MOD_FR, "reply", "unauthenticated"),
        ]
        live_outbox_settles(relayed_engine)
        assert len(sink.to(MOD_FR)) == 1  # the notice; a refused forgery is never answered
        # Another MTA's verdict is not believed either way: the genuine moderator's reply decides.
        reply_to_notice(
            live.port, notice, MOD_FR, "approuver", Authentication_Results="evil.example; dmarc=fail"
        )
        wait_for(lambda: held_rows(relayed_engine)[0].state == "approved", what="the genuine approval")


def random_code() -> str:
    symbols = "".join(secrets.choice(CROCKFORD) for _ in range(15))
    return f"{symbols[:5]}-{symbols[5:10]}-{symbols[10:]}"


GUESSES = 2000  # on SQLite only: the audit rows it writes are the same on PostgreSQL, 3x slower


@SQLITE_ONLY
@pytest.mark.usefixtures("members")
def test_thousands_of_guessed_codes_decide_nothing_and_are_noticed(
    live: RunningForum, sink: Sink, relayed_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """2,000 random codes under the moderator's forged From, one per line of 20 replies (a reply
    carries up to 100 decisions; a reply of 500 is read up to 100): none decides, each is audited, the
    flood is logged, the moderator hears once, and the genuine code still decides. 75 bits make a hit
    a 1-in-10^19 event per guess."""
    notice = hold_one(live, sink)
    code = CODE.search(notice["Subject"]).group(1)
    guesses = [random_code() for _ in range(GUESSES)]
    assert code not in guesses
    caplog.set_level(logging.WARNING, logger="listserv.moderation.replies")
    for start in range(0, GUESSES, MAX_COMMANDS):
        lines = "\n".join(f"approve {guess}" for guess in guesses[start : start + MAX_COMMANDS])
        send(live.port, MOD_FR, f"ta-fr-moderate@{DOMAIN}", "Re: x", lines + "\n")
    flood = "\n".join(f"approve {random_code()}" for _ in range(5 * MAX_COMMANDS))
    send(live.port, MOD_FR, f"ta-fr-moderate@{DOMAIN}", "Re: x", flood + "\n")  # read up to the cap
    wait_for(lambda: pending_count(relayed_engine) == 0, timeout=120, what="the guesses to be read")
    assert held_rows(relayed_engine)[0].state == "held" and archived(relayed_engine) == []
    unknown = [r for r in results(relayed_engine) if r[2] == "unknown_code"]
    assert len(unknown) == GUESSES + MAX_COMMANDS
    assert any("wrong reply codes from" in record.getMessage() for record in caplog.records)
    live_outbox_settles(relayed_engine)
    assert len(sink.to(MOD_FR)) == 2  # the notice and one explanation, whatever the flood
    reply_to_notice(live.port, notice, MOD_FR, "approuver")
    wait_for(lambda: held_rows(relayed_engine)[0].state == "approved", what="the genuine approval")


@pytest.mark.usefixtures("members")
def test_a_moderator_reply_whose_dkim_signature_fails_here_decides_nothing(
    relayed_settings: Settings, relayed_engine: Engine, sink: Sink, tmp_path: Path
) -> None:
    """With moderation.verify_dkim, a reply carrying the moderator's domain's signature of some other
    message (a replayed or forged signature) is refused like a post from them would be held; the same
    reply unsigned still decides (unsigned mail proves nothing either way; DMARC judges that)."""
    private, dns = dkim_key(tmp_path, b"test._domainkey.forum.example.org.")
    settings = settings_with(relayed_settings, moderation={"verify_dkim": True})
    with RunningForum(settings, relayed_engine, dns=dns) as live:
        notice = hold_one(live, sink)
        other = f"From: {MOD_FR}\r\nTo: x@example.org\r\nSubject: other\r\n\r\nother\r\n".encode()
        signature = dkim.sign(other, b"test", DOMAIN.encode(), private, include_headers=[b"from", b"subject"])
        reply = f"From: {MOD_FR}\r\nTo: {notice['Reply-To']}\r\nSubject: Re: x\r\n\r\napprouver\r\n"
        with smtplib.SMTP("127.0.0.1", live.port) as client:
            client.sendmail(MOD_FR, [str(notice["Reply-To"])], signature + reply.encode())
        wait_processed(relayed_engine)
        assert held_rows(relayed_engine)[0].state == "held"
        assert results(relayed_engine)[-1] == (MOD_FR, "reply", "unauthenticated")
        reply_to_notice(live.port, notice, MOD_FR, "approuver")
        wait_for(lambda: held_rows(relayed_engine)[0].state == "approved", what="the unsigned approval")

"""Moderation end to end over real SMTP: a post is held, moderators get a notice in the list's language
with a reply code, a reply decides; outgoing mail goes through a real SMTP sink. SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import re
import smtplib
import subprocess
import threading
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import dkim
import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.forum import Forum
from listserv.store.models import ArchivedPost, Audit, Held, Outbox, Received
from tests.conftest import RunningForum, Sink, SteppableClock, add_members, wait_for, wait_processed

DELEGATE = "marie@example.fr"
MOD_FR = "mod-fr@forum.example.org"
MOD_EN = "mod-en@forum.example.org"
CHIEF = "chief@forum.example.org"
CODE = re.compile(r"\[#([0-9A-Z]{5}-[0-9A-Z]{5}-[0-9A-Z]{5})\]")


@pytest.fixture(autouse=True)
def members(relayed_engine: Engine, relayed_settings: Settings) -> None:
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
        {
            "email": "staff@example.org",
            "name": "Sam Staff",
            "lists": "ta-en",
            "role": "staff",
            "language": "en",
        },
    )


def send(port: int, sender: str, to: str, subject: str, body: str, **headers: str) -> str:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = message_id = make_msgid(domain="example.fr")
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.send_message(message, from_addr=sender, to_addrs=[to])
    return message_id


def reply_to_notice(port: int, notice: EmailMessage, sender: str, text: str, **headers: str) -> str:
    quoted = "\n".join("> " + line for line in notice.get_body(("plain",)).get_content().splitlines())
    body = f"{text}\n\nOn Mon, 23 Nov 2026 at 09:00, Forum wrote:\n{quoted}\n"
    return send(port, sender, notice["Reply-To"], "Re: " + notice["Subject"], body, **headers)


def held_rows(engine: Engine) -> list[Held]:
    with Session(engine) as session:
        return list(session.scalars(select(Held).order_by(Held.id)))


def archived(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.scalars(select(ArchivedPost.subject).order_by(ArchivedPost.id)))


def audit(engine: Engine) -> list[tuple[str, str, str]]:
    with Session(engine) as session:
        return [(a.actor, a.action, a.result) for a in session.scalars(select(Audit).order_by(Audit.id))]


def hold_one(live: RunningForum, sink: Sink, to: str = "ta-fr@forum.example.org", moderator: str = MOD_FR):
    send(live.port, DELEGATE, to, "Formation des formateurs", "Bonjour à tous,\nnotre expérience…")
    [notice] = sink.wait_to(moderator)
    return notice


def test_french_notice_then_approuver_approves_once(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    notice = hold_one(live, sink)
    code = CODE.search(notice["Subject"]).group(1)
    assert notice["Reply-To"] == f"ta-fr-moderate+{code}@forum.example.org"
    assert notice["Content-Language"] == "fr"
    text = notice.get_body(("plain",)).get_content()
    assert "Marie Dupont" in text and "France" in text and "approuver" in text and "rejeter" in text
    assert "Tous les messages adressés à ta-fr sont examinés" in text
    [original] = [part for part in notice.iter_attachments() if part.get_content_type() == "message/rfc822"]
    assert original.get_content()["Subject"] == "Formation des formateurs"
    ack = sink.wait_to(DELEGATE)[0]
    assert "en attente de modération" in ack["Subject"]
    assert sink.to(MOD_EN) == []  # other languages' moderators are not bothered

    reply_to_notice(live.port, notice, MOD_FR, "approuver")
    wait_for(lambda: held_rows(relayed_engine)[0].state == "approved", what="the approval")
    assert archived(relayed_engine) == ["Formation des formateurs"]
    [held] = held_rows(relayed_engine)
    assert held.decided_by == MOD_FR and held.code_hash and code not in str(held.__dict__)
    assert (MOD_FR, "approve", "decided") in audit(relayed_engine)


def test_an_empty_reply_approves(live: RunningForum, sink: Sink, relayed_engine: Engine) -> None:
    notice = hold_one(live, sink)
    reply_to_notice(live.port, notice, MOD_FR, "")
    wait_for(lambda: held_rows(relayed_engine)[0].state == "approved", what="the approval")
    assert archived(relayed_engine) == ["Formation des formateurs"]


def test_reject_with_reason_tells_the_sender_in_french(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    notice = hold_one(live, sink)
    reply_to_notice(live.port, notice, MOD_FR, "rejeter Hors sujet")
    messages = sink.wait_to(DELEGATE, count=2)  # the held acknowledgement, then the rejection
    rejection = messages[1]
    assert "n'a pas été publié" in rejection["Subject"]
    assert "Hors sujet" in rejection.get_content()
    assert rejection["Content-Language"] == "fr"
    assert held_rows(relayed_engine)[0].state == "rejected"
    assert archived(relayed_engine) == []


def test_a_code_sent_to_the_bare_moderate_address_works(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    notice = hold_one(live, sink)
    send(live.port, MOD_FR, "ta-fr-moderate@forum.example.org", "Re: " + notice["Subject"], "ignorer\n")
    wait_for(lambda: held_rows(relayed_engine)[0].state == "discarded", what="the discard")
    assert len(sink.to(DELEGATE)) == 1  # only the held acknowledgement: a discard is silent


def test_a_non_moderator_with_a_valid_code_decides_nothing_and_hears_nothing(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    notice = hold_one(live, sink)
    reply_to_notice(live.port, notice, DELEGATE, "approve")  # a forged or forwarded reply
    reply_to_notice(live.port, notice, MOD_EN, "approve")  # a moderator, but of another list
    wait_processed(relayed_engine)
    assert held_rows(relayed_engine)[0].state == "held"
    assert [(actor, result) for actor, _, result in audit(relayed_engine)][-2:] == [
        (DELEGATE, "not_moderator"),
        (MOD_EN, "not_moderator"),
    ]
    live_outbox_settles(relayed_engine)
    assert len(sink.to(DELEGATE)) == 1 and sink.to(MOD_EN) == []


def test_a_replayed_code_gets_already_decided(live: RunningForum, sink: Sink, relayed_engine: Engine) -> None:
    notice = hold_one(live, sink)
    reply_to_notice(live.port, notice, MOD_FR, "approuver")
    wait_for(lambda: held_rows(relayed_engine)[0].state == "approved", what="the approval")
    reply_to_notice(live.port, notice, MOD_FR, "rejeter trop tard")
    answer = sink.wait_to(MOD_FR, count=2)[1]
    assert "Déjà traité" in answer["Subject"]
    assert "approuvé" in answer.get_content() and MOD_FR in answer.get_content()
    assert held_rows(relayed_engine)[0].state == "approved"
    assert (MOD_FR, "reject", "already_decided") in audit(relayed_engine)


def test_an_expired_code_decides_nothing(
    live: RunningForum, sink: Sink, relayed_engine: Engine, clock: SteppableClock
) -> None:
    notice = hold_one(live, sink)
    clock.advance(days=15)
    reply_to_notice(live.port, notice, MOD_FR, "approuver")
    answer = sink.wait_to(MOD_FR, count=2)[1]
    assert "expiré" in answer.get_content()
    assert held_rows(relayed_engine)[0].state == "held"


def test_an_auto_reply_to_the_notice_never_approves(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    notice = hold_one(live, sink)
    reply_to_notice(
        live.port, notice, MOD_FR, "Je suis absente jusqu'au 30 novembre.", Auto_Submitted="auto-replied"
    )
    send(live.port, MOD_FR, notice["Reply-To"], "Réponse automatique : " + notice["Subject"], "")
    wait_processed(relayed_engine)
    assert held_rows(relayed_engine)[0].state == "held"
    assert [result for _, _, result in audit(relayed_engine)][-2:] == ["automatic", "automatic"]


def test_a_wrong_code_is_explained_to_a_real_moderator(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    hold_one(live, sink)
    send(live.port, MOD_FR, "ta-fr-moderate+ZZZZZ-ZZZZZ-ZZZZZ@forum.example.org", "Re: x", "approuver")
    answer = sink.wait_to(MOD_FR, count=2)[1]
    assert "ZZZZZ-ZZZZZ-ZZZZZ" in answer.get_content()
    assert held_rows(relayed_engine)[0].state == "held"


def test_guessing_codes_never_locks_the_moderator_out(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    """Forty wrong codes under the moderator's From (anyone can forge it) cost one explanation, and the
    moderator's genuine reply still decides: 75-bit codes are not guessed, a lock-out is the attack."""
    notice = hold_one(live, sink)
    for guess in range(40):
        send(live.port, MOD_FR, f"ta-fr-moderate+ZZZZZ-ZZZZZ-ZZZ{guess:02d}@forum.example.org", "x", "ok")
    wait_processed(relayed_engine)
    reply_to_notice(live.port, notice, MOD_FR, "approuver")
    wait_for(lambda: held_rows(relayed_engine)[0].state == "approved", what="the genuine approval")
    live_outbox_settles(relayed_engine)
    explanations = [m for m in sink.to(MOD_FR) if "ZZZZZ" in m.get_body(("plain",)).get_content()]
    assert len(explanations) == 1
    assert sum(1 for _, action, result in audit(relayed_engine) if result == "unknown_code") == 40


def test_a_non_member_is_told_the_forum_is_closed(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    send(live.port, "stranger@example.com", "ta-es@forum.example.org", "Hola", "¿Puedo participar?")
    [notice] = sink.wait_to("stranger@example.com")
    assert notice["Content-Language"] == "es"
    assert "ta-es-owner@forum.example.org" in notice.get_content()
    send(live.port, "mailer-daemon@example.com", "ta-es@forum.example.org", "Undelivered", "bounce")
    send(live.port, "robot@example.com", "ta-es@forum.example.org", "News", "x", Precedence="bulk")
    wait_processed(relayed_engine)
    live_outbox_settles(relayed_engine)
    assert sink.to("mailer-daemon@example.com") == [] and sink.to("robot@example.com") == []
    assert held_rows(relayed_engine) == []


def test_our_own_mail_coming_back_is_discarded(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    send(
        live.port, DELEGATE, "ta-fr@forum.example.org", "Re: boucle", "x", List_Id="<ta-fr.forum.example.org>"
    )
    wait_processed(relayed_engine)
    assert held_rows(relayed_engine) == [] and archived(relayed_engine) == []
    assert audit(relayed_engine)[-1] == ("system", "discard", "loop")


def test_a_moderator_is_preapproved_unless_dmarc_failed(
    relayed_settings,
    relayed_engine: Engine,
    clock: SteppableClock,
    sink: Sink,  # type: ignore[no-untyped-def]
) -> None:
    raw = relayed_settings.model_dump(mode="json")
    raw["moderation"] = {"trusted_authserv_id": "mx.forum.example.org"}
    from listserv.config import parse_settings

    settings = parse_settings(raw)
    with RunningForum(settings, relayed_engine, clock) as live:
        send(
            live.port,
            MOD_FR,
            "ta-fr@forum.example.org",
            "Sujet de la semaine",
            "Bonjour",
            Authentication_Results="mx.forum.example.org; dmarc=pass header.from=forum.example.org",
        )
        wait_for(lambda: archived(relayed_engine) == ["Sujet de la semaine"], what="direct archiving")
        send(
            live.port,
            MOD_FR,
            "ta-fr@forum.example.org",
            "Faux",
            "x",
            Authentication_Results="mx.forum.example.org; dmarc=fail header.from=forum.example.org",
        )
        send(
            live.port,
            MOD_FR,
            "ta-fr@forum.example.org",
            "Vrai",
            "x",
            Authentication_Results="evil.example; dmarc=pass header.from=forum.example.org",
        )  # not trusted: proves nothing either way
        wait_for(lambda: len(held_rows(relayed_engine)) == 2, what="both unproven posts held")
        # Held rows and their notices commit together, but the notices leave through the outbox later.
        notices = [m.get_body(("plain",)).get_content() for m in sink.wait_to(MOD_FR, 2)]
        assert any("DMARC" in text for text in notices)
        assert any("n'a pas pu être vérifié" in text for text in notices)
        assert archived(relayed_engine) == ["Sujet de la semaine"]


def test_hold_non_staff_lets_staff_through(
    relayed_settings,
    relayed_engine: Engine,
    clock: SteppableClock,
    sink: Sink,  # type: ignore[no-untyped-def]
) -> None:
    raw = relayed_settings.model_dump(mode="json")
    # The hold policy alone, trusting the From header as written (the authenticated default: test_trust.py).
    raw["rooms"][0]["moderation"] = {"hold": "non_staff", "preapprove": "from_header"}
    from listserv.config import parse_settings

    with RunningForum(parse_settings(raw), relayed_engine, clock) as live:
        send(live.port, "staff@example.org", "ta-en@forum.example.org", "From the secretariat", "Hello")
        wait_for(lambda: archived(relayed_engine) == ["From the secretariat"], what="staff post archived")
        send(live.port, DELEGATE, "ta-en@forum.example.org", "From a delegate", "Hello")
        [notice] = sink.wait_to(MOD_EN)
        assert "is not a staff member" in notice.get_body(("plain",)).get_content()


def test_reminder_then_escalation_with_the_same_code(
    live: RunningForum, sink: Sink, relayed_engine: Engine, clock: SteppableClock
) -> None:
    notice = hold_one(live, sink)
    code = CODE.search(notice["Subject"]).group(1)
    run_reminders(live, relayed_engine)
    assert len(sink.to(MOD_FR)) == 1  # not yet overdue
    clock.advance(hours=25)
    run_reminders(live, relayed_engine)
    reminder = sink.wait_to(MOD_FR, count=2)[1]
    assert code in reminder.get_content() and "1 message" in reminder["Subject"]
    run_reminders(live, relayed_engine)
    assert len(sink.to(MOD_FR)) == 2  # once a day, not once a run
    clock.advance(hours=24)
    run_reminders(live, relayed_engine)
    [escalation] = sink.wait_to(CHIEF)
    assert code in escalation["Subject"] and "48" in escalation["Subject"]
    reply_to_notice(live.port, escalation, CHIEF, "approve")  # the chief decides with the same code
    wait_for(lambda: held_rows(relayed_engine)[0].state == "approved", what="the chief's approval")
    assert held_rows(relayed_engine)[0].decided_by == CHIEF


def run_reminders(live: RunningForum, engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        live.forum.parts.reminders.send_reminders(session)
    live.forum.outbox.background.wake()
    live_outbox_settles(engine)


def live_outbox_settles(engine: Engine) -> None:
    from listserv.store.models import Outbox

    def settled() -> bool:
        with Session(engine) as session:
            return session.scalar(select(Outbox.id).where(Outbox.state.in_(("queued", "sending")))) is None

    wait_for(settled, what="the outbox to be sent")


def test_two_moderators_at_once_yield_one_decision(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    hold_one(live, sink)
    moderation = live.forum.parts.moderation
    barrier = threading.Barrier(2)
    results: list[str] = []

    def decide(actor: str, action: str) -> None:
        with Session(relayed_engine, expire_on_commit=False) as session:
            held = session.scalars(select(Held)).one()  # both read it while it is still held
            session.commit()
            barrier.wait(timeout=10)
            with session.begin():
                results.append(moderation.decide(session, held, action, actor, "web").result)

    threads = [
        threading.Thread(target=decide, args=(MOD_FR, "approve")),
        threading.Thread(target=decide, args=(CHIEF, "reject")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == ["already_decided", "decided"]
    [held] = held_rows(relayed_engine)
    assert (held.state, held.decided_by) in (("approved", MOD_FR), ("rejected", CHIEF))
    assert len(archived(relayed_engine)) == (1 if held.state == "approved" else 0)


def test_one_reply_decides_several_posts(live: RunningForum, sink: Sink, relayed_engine: Engine) -> None:
    for subject in ("Un", "Deux", "Trois"):
        send(live.port, DELEGATE, "ta-fr@forum.example.org", subject, "texte")
    notices = sink.wait_to(MOD_FR, count=3)
    codes = {n["Subject"].split(": ", 1)[-1]: CODE.search(n["Subject"]).group(1) for n in notices}
    body = f"approuver {codes['Un']}\nrejeter {codes['Deux']} Hors sujet\nignorer {codes['Trois']}\n"
    send(live.port, MOD_FR, "ta-fr-moderate@forum.example.org", "Décisions", body)
    wait_for(lambda: all(h.state != "held" for h in held_rows(relayed_engine)), what="three decisions")
    assert {h.subject: h.state for h in held_rows(relayed_engine)} == {
        "Un": "approved",
        "Deux": "rejected",
        "Trois": "discarded",
    }


@pytest.mark.parametrize(
    "shape",
    [
        "outlook-html-only-reject-reason",
        "qp-latin1-rejeter-accents",
        "gmail-es-aprobar",
        "thunderbird-bottom-posted-discard",
    ],
)
def test_real_reply_shapes_decide_over_smtp(
    live: RunningForum, sink: Sink, relayed_engine: Engine, shape: str
) -> None:
    """The recorded client replies of tests/replies/, sent to the live moderate address."""
    notice = hold_one(live, sink)
    code = CODE.search(notice["Subject"]).group(1)
    raw = (Path(__file__).parent / "replies" / f"{shape}.eml").read_bytes()
    raw = re.sub(rb"(?m)^From: .*$", f"From: {MOD_FR}".encode(), raw, count=1)
    raw = raw.replace(b"K7QXM-2PAB9-ZT4HD", code.encode())
    with smtplib.SMTP("127.0.0.1", live.port) as client:
        client.sendmail(MOD_FR, [f"ta-fr-moderate+{code}@forum.example.org"], raw)
    wait_for(lambda: held_rows(relayed_engine)[0].state != "held", what=f"{shape} to decide")
    expected = {"outlook": "rejected", "qp": "rejected", "gmail": "approved", "thunderbird": "discarded"}
    assert held_rows(relayed_engine)[0].state == expected[shape.split("-")[0]]


def test_a_topic_proposal_is_held_as_a_proposal(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    send(live.port, DELEGATE, "ta-fr-propose@forum.example.org", "Proposition : la douane numérique", "…")
    [notice] = sink.wait_to(MOD_FR)
    assert "Proposition de sujet" in notice["Subject"]
    assert "Proposition de sujet envoyée par marie@example.fr" in notice.get_body(("plain",)).get_content()
    [held] = held_rows(relayed_engine)
    assert held.kind == "proposal"
    reply_to_notice(live.port, notice, MOD_FR, "approuver")
    wait_for(lambda: held_rows(relayed_engine)[0].state == "approved", what="the approval")
    assert archived(relayed_engine) == []  # a proposal joins the topic queue, not the archive


def test_local_dkim_verification_holds_a_broken_signature(
    relayed_settings,
    relayed_engine: Engine,
    clock: SteppableClock,
    sink: Sink,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """moderation.verify_dkim: a moderator's signed post goes straight through; the same post altered
    after signing is held with the reason. DNS is a stub serving the test key."""
    private, dns = dkim_key(tmp_path, b"test._domainkey.forum.example.org.")

    raw = settings_with(relayed_settings, moderation={"verify_dkim": True})
    message = (
        f"From: {MOD_FR}\r\nTo: ta-fr@forum.example.org\r\nSubject: Signé\r\n"
        "Message-ID: <signed@forum.example.org>\r\n\r\nBonjour.\r\n"
    ).encode()
    signature = dkim.sign(
        message, b"test", b"forum.example.org", private, include_headers=[b"from", b"to", b"subject"]
    )
    with (
        RunningForum(raw, relayed_engine, clock, dns) as live,
        smtplib.SMTP("127.0.0.1", live.port) as client,
    ):
        client.sendmail(MOD_FR, ["ta-fr@forum.example.org"], signature + message)
        wait_for(lambda: archived(relayed_engine) == ["Signé"], what="the verified post to pass")
        tampered = signature + message.replace(b"Bonjour.", b"Bonjour, modifi\xc3\xa9.").replace(
            b"<signed@", b"<tampered@"
        )
        client.sendmail(MOD_FR, ["ta-fr@forum.example.org"], tampered)
        [notice] = sink.wait_to(MOD_FR)
    assert "DKIM" in notice.get_body(("plain",)).get_content()


def dkim_key(tmp_path: Path, record_name: bytes) -> tuple[bytes, Callable[..., bytes | None]]:
    """A DKIM key made for the test and the one resolver that serves its public half (never live DNS)."""
    key = tmp_path / "key.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def dns(name: bytes, timeout: float = 5) -> bytes | None:
        return record if name == record_name else None

    return key.read_bytes(), dns


def settings_with(settings, **blocks):  # type: ignore[no-untyped-def]
    from listserv.config import parse_settings

    raw = settings.model_dump(mode="json")
    raw.update(blocks)
    for room in raw["rooms"]:  # the dump holds each room's merged copy: let the site-wide value through
        for key in blocks:
            room.pop(key, None)
    return parse_settings(raw)


def test_a_held_post_costs_eight_statements(relayed_settings: Settings, relayed_engine: Engine) -> None:
    """Each statement is a round trip to PostgreSQL, which bounds fanout.py (d): the savepoint and its
    release, the stored row (with "is its Message-ID stored twice?"), the route, the sender (member,
    subscription, guest), the held row, both notices in one INSERT, the processed mark. Counted on the
    worker run by hand (the forum is built, not started) over stored posts; BEGIN/COMMIT and the
    one query of the batch's ids aside."""
    forum = Forum(relayed_settings, relayed_engine)
    posts = 10
    with Session(relayed_engine) as session, session.begin():
        for number in range(posts):
            message = EmailMessage()
            message["From"] = f"Marie Dupont <{DELEGATE}>"
            message["To"] = "ta-fr@forum.example.org"
            message["Subject"] = f"Formation {number}"
            message["Message-ID"] = f"<formation-{number}@example.fr>"
            message.set_content("Bonjour à tous,\nnotre expérience…\n")
            session.add(
                Received(
                    mail_from=DELEGATE,
                    rcpt_tos=["ta-fr@forum.example.org"],
                    message_id=message["Message-ID"],
                    raw=message.as_bytes(),
                    state="new",
                )
            )
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if not statement.upper().startswith(("BEGIN", "COMMIT", "NOTIFY")):
            statements.append(statement)

    event.listen(relayed_engine, "before_cursor_execute", count)
    try:
        assert forum.worker.process_pending() == posts  # every stored post, in groups
    finally:
        event.remove(relayed_engine, "before_cursor_execute", count)
    held = held_rows(relayed_engine)
    assert [row.subject for row in held] == [f"Formation {number}" for number in range(posts)]
    with Session(relayed_engine) as session:
        notices = session.scalars(select(Outbox.purpose).order_by(Outbox.id)).all()
    assert notices == ["moderator_held", "sender_held"] * posts
    batches = sum(1 for statement in statements if "FROM received" in statement and "LIMIT" in statement)
    assert len(statements) - batches <= 8 * posts, statements

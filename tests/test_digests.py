"""Digests (digests/): the pure builders from literal posts, ``send_digests`` on SQLite and PostgreSQL
(windows, recipients, idempotence, batches), and one digest end to end over real SMTP — down to a reply
to one of its parts threading under the original post.

Attached posts are cut out of the built digest by their literal boundaries (decorate's byte splitter),
so "unchanged" means byte for byte."""

from __future__ import annotations

import base64
import email
import email.policy
import re
import smtplib
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

import digests.send
from digests import DigestIssue, DigestPost, build_mime_digest, build_plain_digest, send_digests
from digests.issue import html_to_text, period_key, read_message
from listserv.config import Settings
from listserv.forum import build_parts
from listserv.mail.rawmime import CRLF, LINE_END, read_content, split_entity, split_parts
from listserv.mail.templates import MailTemplates
from listserv.outgoing.publish import Publisher
from listserv.store.db import utc_now
from listserv.store.models import (
    ArchivedPost,
    Delivery,
    Held,
    ListRow,
    Member,
    SentDigest,
    Subscription,
    Topic,
)
from tests.conftest import RunningForum, Sink, SteppableClock, add_members, wait_for
from tests.test_moderation import settings_with

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = MailTemplates(ROOT / "templates", "Europe/Zurich")
NOW = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)  # Monday 18:00 in Zurich, ISO week 48
MOD_EN = "mod-en@forum.example.org"


# --- literal posts for the pure builders -----------------------------------------------------------


def literal(
    message_id: str, subject: str, sender: str, body: str, *extra: str, html: bool = False, to: str = "ta-fr"
) -> bytes:
    kind = "text/html" if html else "text/plain"
    head = [
        f"From: {sender}",
        f"To: {to}@forum.example.org",
        f"Subject: {subject}",
        f"Message-ID: {message_id}",
        "Date: Mon, 23 Nov 2026 09:00:00 +0100",
        *extra,
        "MIME-Version: 1.0",
        f"Content-Type: {kind}; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    return ("\r\n".join(head) + "\r\n\r\n" + body.replace("\n", "\r\n")).encode()


def digest_post(raw: bytes, thread: int, hour: int) -> DigestPost:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    name, text = read_message(raw)
    return DigestPost(
        message_id=parsed["Message-ID"],
        subject=parsed["Subject"],
        sender_name=name,
        sender=parsed["From"].addresses[0].addr_spec,
        date=datetime(2026, 11, 23, hour, tzinfo=UTC),
        thread_key=thread,
        url=f"http://127.0.0.1:8080/lists/ta-fr/message/{parsed['Message-ID'].strip('<>')}",
        raw=raw,
        text=text,
    )


FIRST = literal(
    "<a1@example.fr>", "Formation des formateurs", "Ana Dupont <ana@example.fr>", "Bonjour à tous,\n"
)
OTHER = literal(
    "<b1@example.fr>",
    "Budget",
    "ben@example.fr",
    "<html><body><p>Le <b>budget</b> &amp; le calendrier.</p><p>Merci</p></body></html>",
    html=True,
)
REPLY = literal(
    "<a2@example.fr>",
    "Re: [TA-FR] Formation des formateurs",
    "Carla Ruiz <carla@example.fr>",
    "D'accord.\n------------------------------\nCarla\n",
    "In-Reply-To: <a1@example.fr>",
    "References: <a1@example.fr>",
)
ISSUE = DigestIssue(
    site_name="Technical Assistance Forum",
    list_name="ta-fr",
    list_title="Assistance technique",
    list_address="ta-fr@forum.example.org",
    owner_address="ta-fr-owner@forum.example.org",
    request_address="ta-fr-request@forum.example.org",
    language="fr",
    period="daily",
    key="2026-11-23",
    volume=2026,
    number=12,
    date=NOW,
    posts=(digest_post(FIRST, 1, 8), digest_post(OTHER, 2, 9), digest_post(REPLY, 1, 10)),
    topic_title="Former les formateurs",
    topic_body="Comment formez-vous ceux qui forment ?",
    subject_prefix="[TA-FR]",
)


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def text_of(part: EmailMessage) -> str:
    return part.get_content().replace("\r\n", "\n")


def attached(raw: bytes) -> list[bytes]:
    """The bytes of each message/rfc822 part, cut out at the boundaries."""
    top = split_entity(LINE_END.sub(CRLF, raw))
    _, digest = (split_entity(top.body[a:b]) for a, b in split_parts(top.body, read_content(top).boundary))
    assert read_content(digest).kind == "multipart/digest"
    parts = [
        split_entity(digest.body[a:b]) for a, b in split_parts(digest.body, read_content(digest).boundary)
    ]
    kinds = [part.first("content-type").strip() for part in parts]
    assert set(kinds) <= {b"message/rfc822", b"application/octet-stream"}  # the latter: a line over 998
    return [
        part.body if kind == b"message/rfc822" else base64.b64decode(part.body)
        for part, kind in zip(parts, kinds, strict=True)
    ]


def test_mime_digest_contents_by_thread_then_every_post_unchanged() -> None:
    built = build_mime_digest(ISSUE, TEMPLATES)
    message = parse(built)
    assert message.get_content_type() == "multipart/mixed"
    assert message["From"].addresses[0].addr_spec == "ta-fr-owner@forum.example.org"
    assert message["To"] == "ta-fr@forum.example.org"
    assert message["Message-ID"] == "<digest.2026-11-23.daily.mime.ta-fr@forum.example.org>"
    assert message["Date"] == "Mon, 23 Nov 2026 18:00:00 +0100"
    assert message["Content-Language"] == "fr"
    assert message["Auto-Submitted"] is None  # list mail, not an auto-reply
    text_part, digest = message.iter_parts()
    assert text_part.get_content_type() == "text/plain" and digest.get_content_type() == "multipart/digest"
    text = text_of(text_part)
    # The week's topic opens it; the contents follow, grouped by thread, in reading order.
    assert text.index("Former les formateurs") < text.index("Comment formez-vous") < text.index("Ana Dupont")
    assert re.search(
        r"Formation des formateurs\n +1\. Ana Dupont, lun\. 23 nov\., 09:00\n +http://\S+/a1@example.fr\n"
        r" +2\. Carla Ruiz, lun\. 23 nov\., 11:00\n +http://\S+/a2@example.fr\n"
        r"\nBudget\n +3\. ben@example.fr",
        text,
    ), text
    assert attached(built) == [FIRST, REPLY, OTHER]  # byte for byte, in the contents' order
    parts = [part.get_content() for part in digest.iter_parts()]
    assert [part["Message-ID"] for part in parts] == ["<a1@example.fr>", "<a2@example.fr>", "<b1@example.fr>"]


def test_an_attached_post_is_the_original_for_a_reply() -> None:
    """A mail client replying to an attached message takes its Subject, Message-ID, From and To."""
    digest = parse(build_mime_digest(ISSUE, TEMPLATES)).get_payload()[1]
    answered = next(digest.iter_parts()).get_content()
    assert answered["Subject"] == "Formation des formateurs"
    assert answered["Message-ID"] == "<a1@example.fr>"
    assert answered["From"] == "Ana Dupont <ana@example.fr>"
    assert answered["To"] == "ta-fr@forum.example.org"  # "Reply all" reaches the list


def test_plain_digest_follows_rfc_1153() -> None:
    message = parse(build_plain_digest(ISSUE, TEMPLATES))
    assert message.get_content_type() == "text/plain" and not message.is_multipart()
    assert message["Message-ID"] == "<digest.2026-11-23.daily.plain.ta-fr@forum.example.org>"
    body = text_of(message)
    preamble, _, rest = body.partition("\n" + "-" * 70 + "\n\n")
    assert rest, "a line of 70 hyphens ends the preamble"
    assert preamble.index("Sujet de la semaine : Former les formateurs") < preamble.index("Sujets :")
    assert (
        "   1. Formation des formateurs (Ana Dupont)\n"
        "   2. Re: [TA-FR] Formation des formateurs (Carla Ruiz)\n"
        "   3. Budget (ben@example.fr)\n"
    ) in preamble
    *messages, end = rest.split("\n\n" + "-" * 30 + "\n\n")
    assert len(messages) == 3
    for block, message_id in zip(
        messages, ["<a1@example.fr>", "<a2@example.fr>", "<b1@example.fr>"], strict=True
    ):
        fields = block.split("\n\n", 1)[0].splitlines()
        assert [field.split(":")[0] for field in fields] == [
            "Date",
            "From",
            "Subject",
            "Message-ID",
            "Archived-At",
        ]
        assert f"Message-ID: {message_id}" in fields
    assert "From: Carla Ruiz <carla@example.fr>" in messages[1]
    assert "Date: Mon, 23 Nov 2026 11:00:00 +0100" in messages[1]
    assert "\n- ------------------------------\nCarla" in messages[1]  # a separator in a body is stuffed
    assert messages[2].endswith("Le budget & le calendrier.\n\nMerci")  # HTML made text
    assert end == "Fin du résumé Assistance technique, vol. 2026, n° 12\n" + "*" * 52 + "\n"


@pytest.mark.parametrize(
    ("language", "subject", "topics"),
    [
        ("en", "Assistance technique — digest, Vol 2026, Issue 12", "Topics:"),
        ("fr", "Assistance technique — résumé, vol. 2026, n° 12", "Sujets :"),
        ("es", "Assistance technique — resumen, vol. 2026, n.º 12", "Temas:"),
        ("de", "Assistance technique — digest, Vol 2026, Issue 12", "Topics:"),  # no German: English
    ],
)
def test_subject_and_words_come_from_the_templates(language: str, subject: str, topics: str) -> None:
    issue = replace(ISSUE, language=language)
    mime, plain = parse(build_mime_digest(issue, TEMPLATES)), parse(build_plain_digest(issue, TEMPLATES))
    assert mime["Subject"] == plain["Subject"] == subject
    assert topics in text_of(plain)
    assert plain["Content-Language"] == ("en" if language == "de" else language)


def test_without_a_topic_the_digest_opens_with_its_contents() -> None:
    issue = replace(ISSUE, language="en", topic_title="", topic_body="")
    text = text_of(next(parse(build_mime_digest(issue, TEMPLATES)).iter_parts()))
    assert "Topic of the week" not in text
    assert text.startswith("Assistance technique (ta-fr)\nDaily digest, Vol 2026, Issue 12\n")


def test_every_hard_message_can_be_carried() -> None:
    """The corpus of broken mail: both formats build, parse, and keep each message's bytes."""
    corpus = sorted((ROOT / "tests" / "messages").glob("*.eml"))
    posts = tuple(
        replace(
            digest_post(FIRST, number, 8),
            message_id=f"<{path.stem}@x>",
            raw=path.read_bytes(),
            text=read_message(path.read_bytes())[1],
        )
        for number, path in enumerate(corpus)
    )
    issue = replace(ISSUE, posts=posts)
    assert attached(build_mime_digest(issue, TEMPLATES)) == [LINE_END.sub(CRLF, post.raw) for post in posts]
    plain = text_of(parse(build_plain_digest(issue, TEMPLATES)))
    assert plain.count("\n" + "-" * 30 + "\n") >= len(corpus)


def test_html_is_made_text_crudely() -> None:
    source = "<style>p{}</style><p>Un&nbsp;<i>deux</i></p><ul><li>trois</li><li>quatre</li></ul>cinq<br>six"
    assert html_to_text(source) == "Un deux\n\n  * trois\n  * quatre\n\ncinq\nsix\n"


def test_period_keys_are_local() -> None:
    late = datetime(2026, 11, 29, 23, 30, tzinfo=UTC)  # already Monday 30 in Zurich: week 49
    assert period_key("daily", late, "Europe/Zurich") == "2026-11-30"
    assert period_key("weekly", late, "Europe/Zurich") == "2026-W49"
    assert period_key("weekly", late, "UTC") == "2026-W48"


# --- send_digests on both databases ----------------------------------------------------------------

MODES = {
    "daily-mime@example.org": ("ta-en", "digest", "daily", "mime"),
    "daily-plain@example.org": ("ta-en", "digest", "daily", "plain"),
    "weekly-mime@example.org": ("ta-en", "digest", "weekly", "mime"),
    "weekly-plain@example.org": ("ta-en", "digest", "weekly", "plain"),
    "each@example.org": ("ta-en", "each", "daily", "mime"),
    "none@example.org": ("ta-en", "none", "daily", "mime"),
    "suspended@example.org": ("ta-en", "digest", "daily", "mime"),
    "fr-daily@example.org": ("ta-fr", "digest", "daily", "mime"),
}


def set_modes(engine: Engine, settings: Settings, modes: dict[str, tuple[str, str, str, str]]) -> None:
    add_members(engine, settings, *({"email": a, "lists": m[0], "delivery": m[1]} for a, m in modes.items()))
    with Session(engine) as session, session.begin():
        for address, (list_name, delivery, period, fmt) in modes.items():
            member_id = session.scalar(select(Member.id).where(Member.email_key == address))
            list_id = session.scalar(select(ListRow.id).where(ListRow.name == list_name))
            session.execute(
                update(Subscription)
                .where(Subscription.member_id == member_id, Subscription.list_id == list_id)
                .values(delivery=delivery, digest_period=period, digest_format=fmt)
            )
        session.execute(
            update(Subscription)
            .where(Subscription.member_id.in_(select(Member.id).where(Member.email_key.like("suspended@%"))))
            .values(disabled_at=utc_now())
        )


def archive(
    engine: Engine, list_name: str, name: str, at: datetime, parent: str | None = None, subject: str = ""
) -> str:
    """An ArchivedPost row as the archive keeps it; a reply joins its parent's thread."""
    message_id = f"<{name}@example.org>"
    subject = subject or (f"Re: {parent}" if parent else f"Subject {name}")
    replying = [f"In-Reply-To: <{parent}@example.org>"] if parent else []
    sender = f"Sender {name} <{name}@example.org>"
    raw = literal(message_id, subject, sender, f"Text of {name}.\n", *replying, to=list_name)
    with Session(engine) as session, session.begin():
        parent_post = (
            session.scalars(
                select(ArchivedPost).where(ArchivedPost.message_id == f"<{parent}@example.org>")
            ).one()
            if parent
            else None
        )
        post = ArchivedPost(
            list_name=list_name,
            message_id=message_id,
            sender=f"{name}@example.org",
            subject=subject,
            date=at,
            raw=raw,
            archived_at=at,
            parent_id=parent_post.id if parent_post else None,
        )
        session.add(post)
        session.flush()
        post.thread_id = parent_post.thread_id if parent_post else post.id
    return message_id


@pytest.fixture
def publisher(settings: Settings) -> Publisher:
    return build_parts(settings).publisher


@pytest.fixture
def posts(engine: Engine, settings: Settings) -> dict[str, str]:
    set_modes(engine, settings, MODES)
    return {
        "ancient": archive(engine, "ta-en", "ancient", NOW - timedelta(days=10)),
        "old": archive(engine, "ta-en", "old", NOW - timedelta(days=3)),
        "root": archive(engine, "ta-en", "root", NOW - timedelta(hours=5)),
        "other": archive(engine, "ta-en", "other", NOW - timedelta(hours=4)),
        "reply": archive(engine, "ta-en", "reply", NOW - timedelta(hours=2), parent="root"),
        "at-now": archive(engine, "ta-en", "at-now", NOW),  # [from, until): the next issue's
        "fr": archive(engine, "ta-fr", "fr", NOW - timedelta(hours=1)),
    }


def run(engine: Engine, settings: Settings, publisher: Publisher, period: str, now: datetime = NOW) -> int:
    with Session(engine) as session, session.begin():
        return send_digests(session, settings, publisher, period, now)  # type: ignore[arg-type]


def issues(engine: Engine) -> dict[tuple[str, str, str, str], SentDigest]:
    with Session(engine) as session:
        return {(d.list_name, d.period, d.format, d.key): d for d in session.scalars(select(SentDigest))}


def sent_to(engine: Engine) -> dict[tuple[str, str, str], list[str]]:
    """(list, period, format) → recipients of the digest's deliveries."""
    with Session(engine) as session:
        rows = session.execute(
            select(SentDigest.list_name, SentDigest.period, SentDigest.format, Delivery.recipients)
            .join(Delivery, Delivery.digest_id == SentDigest.id)
            .order_by(Delivery.id)
        ).all()
    found: dict[tuple[str, str, str], list[str]] = {}
    for list_name, period, fmt, recipients in rows:
        found.setdefault((list_name, period, fmt), []).extend(recipients)
    return found


def carried(raw: bytes) -> set[str]:
    """Message-IDs of the posts in a built digest, either format."""
    return set(re.findall(rb"^Message-ID: (<[^>]+@example\.org>)", LINE_END.sub(b"\n", raw), re.M))


def ids(*messages: str) -> set[bytes]:
    return {message.encode() for message in messages}


def test_a_daily_digest_holds_the_days_posts_for_its_members_only(
    engine: Engine, settings: Settings, publisher: Publisher, posts: dict[str, str]
) -> None:
    assert run(engine, settings, publisher, "daily") == 3  # ta-en mime and plain, ta-fr mime
    assert sent_to(engine) == {
        ("ta-en", "daily", "mime"): ["daily-mime@example.org"],
        ("ta-en", "daily", "plain"): ["daily-plain@example.org"],
        ("ta-fr", "daily", "mime"): ["fr-daily@example.org"],
    }
    found = issues(engine)
    assert len(found) == 6  # every list and format has its key, sent or not
    for fmt in ("mime", "plain"):
        issue = found[("ta-en", "daily", fmt, "2026-11-23")]
        assert carried(issue.raw) == ids(posts["root"], posts["other"], posts["reply"])
        assert (issue.post_count, issue.covered_from, issue.covered_until) == (
            3,
            NOW - timedelta(days=1),
            NOW,
        )
    assert carried(found[("ta-fr", "daily", "mime", "2026-11-23")].raw) == ids(posts["fr"])
    empty = found[("ta-es", "daily", "mime", "2026-11-23")]
    assert (empty.raw, empty.post_count) == (None, 0)


def test_a_weekly_digest_holds_the_weeks_posts(
    engine: Engine, settings: Settings, publisher: Publisher, posts: dict[str, str]
) -> None:
    assert run(engine, settings, publisher, "weekly") == 2
    assert sent_to(engine) == {
        ("ta-en", "weekly", "mime"): ["weekly-mime@example.org"],
        ("ta-en", "weekly", "plain"): ["weekly-plain@example.org"],
    }
    for fmt in ("mime", "plain"):
        issue = issues(engine)[("ta-en", "weekly", fmt, "2026-W48")]
        assert carried(issue.raw) == ids(posts["old"], posts["root"], posts["other"], posts["reply"])


def test_the_stored_digest_is_decorated_and_threads_its_contents(
    engine: Engine, settings: Settings, publisher: Publisher, posts: dict[str, str]
) -> None:
    run(engine, settings, publisher, "daily")
    raw = issues(engine)[("ta-en", "daily", "mime", "2026-11-23")].raw
    message = parse(raw)
    assert message["Subject"] == "[TA-EN] Technical Assistance — digest, Vol 2026, Issue 1"
    assert message["List-Id"] == '"Technical Assistance" <ta-en.forum.example.org>'
    assert message["Archived-At"] == "<http://127.0.0.1:8080/lists/ta-en/digest/daily/2026-11-23>"
    assert message["Precedence"] == "list"
    text = text_of(next(message.iter_parts()))
    assert text.index("Subject root") < text.index("Sender reply") < text.index("Subject other")
    assert "ta-en-request@forum.example.org" in text  # the list's footer
    assert [p.get_content()["Message-ID"] for p in message.get_payload()[1].iter_parts()] == [
        posts["root"],
        posts["reply"],
        posts["other"],
    ]


def test_a_second_run_sends_nothing_and_the_next_day_starts_where_this_one_ended(
    engine: Engine, settings: Settings, publisher: Publisher, posts: dict[str, str]
) -> None:
    run(engine, settings, publisher, "daily")
    before = sent_to(engine)
    assert run(engine, settings, publisher, "daily") == 0
    assert run(engine, settings, publisher, "daily", NOW + timedelta(hours=5)) == 0  # same local day
    assert sent_to(engine) == before
    later = archive(engine, "ta-en", "later", NOW + timedelta(hours=20))
    tomorrow = NOW + timedelta(days=1)
    assert run(engine, settings, publisher, "daily", tomorrow) == 2  # ta-fr: no new post
    issue = issues(engine)[("ta-en", "daily", "mime", "2026-11-24")]
    assert issue.covered_from == NOW
    assert carried(issue.raw) == ids(posts["at-now"], later)
    assert parse(issue.raw)["Subject"].endswith("Vol 2026, Issue 2")


def test_no_posts_no_digest(engine: Engine, settings: Settings, publisher: Publisher) -> None:
    set_modes(engine, settings, MODES)
    archive(engine, "ta-en", "old", NOW - timedelta(days=3))
    assert run(engine, settings, publisher, "daily") == 0
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
    assert {(d.post_count, d.raw) for d in issues(engine).values()} == {(0, None)}  # the window advances


def test_recipients_go_in_batches_from_the_bounces_address(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    settings = settings_with(settings, delivery={"batch_size": 2})
    addresses = [f"member{n}@example.org" for n in range(5)]
    set_modes(engine, settings, {a: ("ta-es", "digest", "daily", "plain") for a in addresses})
    archive(engine, "ta-es", "hola", NOW - timedelta(hours=1))
    assert run(engine, settings, build_parts(settings).publisher, "daily") == 1
    digest_id = issues(engine)[("ta-es", "daily", "plain", "2026-11-23")].id
    with Session(engine) as session:
        rows = session.scalars(select(Delivery).order_by(Delivery.id)).all()
    assert [row.recipients for row in rows] == [addresses[0:2], addresses[2:4], addresses[4:]]
    assert {(r.digest_id, r.post_id, r.mail_from, r.state, r.list_name) for r in rows} == {
        (digest_id, None, "ta-es-bounces@forum.example.org", "queued", "ta-es")
    }


def test_the_weeks_topic_opens_the_digest_in_the_lists_language_or_another(
    engine: Engine, settings: Settings, publisher: Publisher, posts: dict[str, str]
) -> None:
    set_modes(engine, settings, {"es-daily@example.org": ("ta-es", "digest", "daily", "plain")})
    archive(engine, "ta-es", "hola", NOW - timedelta(hours=1))
    with Session(engine) as session, session.begin():
        session.add(
            Topic(
                room="ta",
                week="2026-W48",
                titles={"fr": "Former les formateurs", "en": "Training the trainers"},
                bodies={"fr": "Comment formez-vous ?", "en": "How do you train trainers?"},
            )
        )
    run(engine, settings, publisher, "daily")
    found = issues(engine)
    english = text_of(parse(found[("ta-en", "daily", "plain", "2026-11-23")].raw))
    assert english.index("Topic of the week: Training the trainers") < english.index("Topics:")
    assert "How do you train trainers?" in english
    spanish = text_of(parse(found[("ta-es", "daily", "plain", "2026-11-23")].raw))
    assert "Tema de la semana: Training the trainers" in spanish  # no Spanish title: the first there is


def test_a_run_that_loses_the_race_for_the_key_sends_nothing(
    engine: Engine,
    settings: Settings,
    publisher: Publisher,
    posts: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another process inserted the key between our check and our insert: the unique key refuses."""
    run(engine, settings, publisher, "daily")
    before = sent_to(engine)
    monkeypatch.setattr(digests.send, "is_sent", lambda *_: False)
    assert run(engine, settings, publisher, "daily") == 0
    assert sent_to(engine) == before


def test_two_concurrent_runs_send_once(
    engine: Engine, settings: Settings, publisher: Publisher, posts: dict[str, str]
) -> None:
    """The first holds its keys uncommitted; the second waits (SQLite: for the write lock; PostgreSQL:
    on the unique index), then finds them taken."""
    second: list[int] = []
    with Session(engine) as first, first.begin():
        assert send_digests(first, settings, publisher, "daily", NOW) == 3

        def other() -> None:
            with Session(engine) as session, session.begin():
                second.append(send_digests(session, settings, publisher, "daily", NOW))

        thread = threading.Thread(target=other)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive()  # blocked behind the first transaction
    thread.join(30)
    assert second == [0]
    assert sum(len(r) for r in sent_to(engine).values()) == 3


# --- end to end: digest out over SMTP, a reply to one of its parts threads ---------------------------


def test_a_digest_reaches_its_member_and_a_reply_to_a_part_threads(
    live: RunningForum, sink: Sink, relayed_engine: Engine, relayed_settings: Settings, clock: SteppableClock
) -> None:
    reader = "reader@example.org"
    set_modes(relayed_engine, relayed_settings, {reader: ("ta-en", "digest", "daily", "mime")})
    root = archive(relayed_engine, "ta-en", "root", clock.now - timedelta(hours=2), subject="Budget workshop")
    with Session(relayed_engine) as session, session.begin():
        assert send_digests(session, relayed_settings, live.forum.parts.publisher, "daily", clock.now) == 1
    live.forum.deliverer.background.wake()
    [digest] = sink.wait_to(reader, list_copies=True)
    assert digest["Subject"] == "[TA-EN] Technical Assistance — digest, Vol 2026, Issue 1"
    assert sink.recipients() == [reader]  # the digest went to its member alone
    [part] = digest.get_payload()[1].iter_parts()
    original = part.get_content()

    reply = EmailMessage()  # what "Reply all" on the attached message composes
    reply["From"] = reader
    reply["To"] = original["To"]
    reply["Subject"] = "Re: " + original["Subject"]
    reply["In-Reply-To"] = original["Message-ID"]
    reply["References"] = original["Message-ID"]
    reply["Message-ID"] = "<reply-from-digest@example.org>"
    reply["Date"] = format_datetime(clock.now)
    reply.set_content("Agreed, from the digest.")
    with smtplib.SMTP("127.0.0.1", live.port) as client:
        client.send_message(reply, from_addr=reader, to_addrs=["ta-en@forum.example.org"])

    def held() -> list[Held]:
        with Session(relayed_engine) as session:
            return list(session.scalars(select(Held)))

    wait_for(lambda: len(held()) == 1, what="the reply to be held")
    with Session(relayed_engine) as session, session.begin():
        pending = session.get(Held, held()[0].id)
        decision = live.forum.parts.moderation.decide(session, pending, "approve", MOD_EN, "cli")
        assert decision.result == "decided"

    def thread_of(message_id: str) -> tuple[int | None, int | None] | None:
        with Session(relayed_engine) as session:
            post = session.scalars(select(ArchivedPost).where(ArchivedPost.message_id == message_id)).first()
            return (post.thread_id, post.parent_id) if post else None

    wait_for(lambda: thread_of("<reply-from-digest@example.org>") is not None, what="the reply archived")
    with Session(relayed_engine) as session:
        root_id = session.scalar(select(ArchivedPost.id).where(ArchivedPost.message_id == root))
    assert thread_of("<reply-from-digest@example.org>") == (root_id, root_id)


def test_a_digest_recipient_the_relay_defers_gets_it_later(
    sink: Sink, relayed_engine: Engine, relayed_settings: Settings, clock: SteppableClock
) -> None:
    from listserv.outgoing.delivery import Deliverer
    from listserv.outgoing.transport import Transport

    readers = ["first@example.org", "busy@example.org"]
    set_modes(relayed_engine, relayed_settings, {a: ("ta-en", "digest", "daily", "mime") for a in readers})
    archive(relayed_engine, "ta-en", "root", clock.now - timedelta(hours=2))
    parts = build_parts(relayed_settings)
    with Session(relayed_engine) as session, session.begin():
        send_digests(session, relayed_settings, parts.publisher, "daily", clock.now)
    sink.refuse["busy@example.org"] = "450 4.2.1 Mailbox busy"
    transport = Transport(relayed_settings.delivery.relay, relayed_settings.site.data_dir / "outbox")
    deliverer = Deliverer(relayed_engine, relayed_settings, transport, clock, parts.tokens)
    try:
        deliverer.send_due()
        assert sink.recipients() == ["first@example.org"]
        sink.refuse.clear()
        clock.advance(hours=1)
        deliverer.send_due()  # the retry row must keep digest_id (without it: KeyError, the loop dies)
        assert sorted(sink.recipients()) == sorted(readers)
    finally:
        deliverer.close()

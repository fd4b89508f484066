"""Weekly topics: topic files, ISO weeks across DST changes, language fallback, the Monday prompt, and the
moderators' weekly figures (SQLite and PostgreSQL)."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from listserv.config import SHIPPED_TEMPLATES, Settings, parse_settings
from listserv.mail.message import parse_post
from listserv.mail.templates import MailTemplates
from listserv.outgoing.decorate import decorate
from listserv.store.models import (
    ArchivedPost,
    Audit,
    Held,
    ListRow,
    Member,
    Received,
    Route,
    Subscription,
    Topic,
)
from listserv.weekly.calendar import iso_week, parse_week, prompt_time, week_after, week_start
from listserv.weekly.prompt_mail import (
    SISTERS_HEADER,
    TOPIC_HEADER,
    compose_prompt,
    prompt_message_id,
    prompt_sender,
)
from listserv.weekly.summary import weekly_summary
from listserv.weekly.topics import (
    TopicError,
    TopicSpec,
    add_topic,
    language_name,
    missing_languages,
    next_free_week,
    read_topic,
    text_for,
)
from tests.conftest import add_members, shipped_config
from tests.test_decorate import LIST
from tests.test_render import COMMON

ZURICH = "Europe/Zurich"
DOMAIN = "forum.example.org"
TEMPLATES = MailTemplates(SHIPPED_TEMPLATES, ZURICH)
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "topic-2026-W50.yaml"


def pure_settings() -> Settings:
    """The shipped config (room ta in en, fr, es) plus a room ``ops`` in English and French only."""
    raw = shipped_config()
    raw["rooms"].append({"name": "ops", "languages": ["en", "fr"]})
    return parse_settings(raw)


SETTINGS = pure_settings()


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


# --- topic files -------------------------------------------------------------------------------------


def test_the_example_file_reads() -> None:
    spec = read_topic(EXAMPLE.read_text(encoding="utf-8"), SETTINGS)
    assert spec.room == "ta" and spec.week == "2026-W50"
    assert set(spec.titles) == set(spec.bodies) == {"en", "fr", "es"}
    assert spec.bodies["en"].startswith("Many of our institutions") and not spec.bodies["en"].endswith("\n")


def test_week_is_optional_and_languages_may_be_missing() -> None:
    spec = read_topic("room: ops\ntitles: {fr: ' Budget '}\nbodies: {fr: \"Texte\\n\"}\n", SETTINGS)
    assert spec == TopicSpec("ops", None, {"fr": "Budget"}, {"fr": "Texte"})


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ("", ["the file is empty: expected room, titles and bodies (and optionally week)"]),
        ("  \n# nothing\n", ["the file is empty: expected room, titles and bodies (and optionally week)"]),
        ("- a\n- b\n", ["expected a mapping with room, titles and bodies (and optionally week)"]),
        (
            "room: [ta\n",
            [
                "not valid YAML at line 2, column 1: expected ',' or ']', but got '<stream end>' "
                "(while parsing a flow sequence from line 1, column 7)"
            ],
        ),
        (
            "room: tb\nweek: 2026-50\ntitles: {en: T}\nbodies: {en: B}\n",
            [
                "room: 'tb' is not a room of this forum (rooms: ta, ops)",
                "week: '2026-50' is not an ISO week like '2026-W50'",
            ],
        ),
        (
            "week: 2025-W53\ntitle: {en: T}\n",
            [
                "title: unknown key (expected one of room, week, titles, bodies)",
                "room: required key is missing",
                "week: '2025-W53': 2025 has no week 53",
                "titles: required key is missing",
                "bodies: required key is missing",
            ],
        ),
        (
            "room: ops\ntitles: {en: T, es: Tema}\nbodies: {en: B, es: Texto}\n",
            [
                "titles.es: room 'ops' has no 'es' list (languages: en, fr)",
                "bodies.es: room 'ops' has no 'es' list (languages: en, fr)",
            ],
        ),
        (
            "room: ta\ntitles: {en: T, fr: Sujet}\nbodies: {en: B, es: Texto}\n",
            ["bodies.fr: missing: titles.fr has no body", "titles.es: missing: bodies.es has no title"],
        ),
        (
            "room: ta\ntitles: {en: '', fr: yes, es: \"Uno\\nDos\"}\nbodies: {en: B, fr: B, es: [x]}\n",
            [
                "titles.en: is empty (write the text, or leave the language out)",
                "titles.fr: expected text, got True (put it in quotes)",
                "titles.es: a title must fit on one line (it becomes the Subject)",
                "bodies.es: expected text, got ['x'] (put it in quotes)",
            ],
        ),
        ("room: ta\ntitles: {}\nbodies: {}\n", ["titles: at least one language is needed"]),
        (
            "room: ta\ntitles: Budget\nbodies: {en: B}\n",
            [
                "titles: expected a mapping of language code to text, like {en: ..., fr: ...}",
                "titles.en: missing: bodies.en has no title",
            ],
        ),
    ],
)
def test_topic_file_problems_one_line_each(text: str, problems: list[str]) -> None:
    with pytest.raises(TopicError) as raised:
        read_topic(text, SETTINGS)
    assert raised.value.problems == problems
    assert str(raised.value) == "\n".join(problems)


# --- weeks -------------------------------------------------------------------------------------------


def test_iso_week_is_taken_in_the_sites_timezone() -> None:
    assert iso_week(utc(2026, 11, 23, 8, 0), ZURICH) == "2026-W48"
    # Sunday 23:30 UTC is already Monday in Zurich.
    assert iso_week(utc(2026, 11, 29, 23, 30), "UTC") == "2026-W48"
    assert iso_week(utc(2026, 11, 29, 23, 30), ZURICH) == "2026-W49"
    assert iso_week(utc(2026, 12, 31, 12, 0), ZURICH) == "2026-W53"
    assert iso_week(utc(2027, 1, 1, 12, 0), ZURICH) == "2026-W53"
    with pytest.raises(ValueError, match="naive"):
        iso_week(datetime(2026, 11, 23), ZURICH)


def test_week_arithmetic() -> None:
    assert week_after("2026-W48") == "2026-W49"
    assert week_after("2026-W53") == "2027-W01"
    assert week_after("2027-W52") == "2028-W01"  # 2027 has 52 weeks
    assert parse_week("2026-W09") == (2026, 9)
    for bad in ("2026-W9", "2026-w09", "W09", "2026-W00", "2027-W53"):
        with pytest.raises(ValueError):
            parse_week(bad)


def test_week_start_is_monday_midnight_local() -> None:
    assert week_start("2026-W48", ZURICH) == utc(2026, 11, 22, 23, 0)  # CET, UTC+1
    assert week_start("2026-W27", ZURICH) == utc(2026, 6, 28, 22, 0)  # CEST, UTC+2
    assert week_start("2026-W48", "UTC") == utc(2026, 11, 23, 0, 0)
    assert week_start("2026-W48", ZURICH).tzinfo is UTC


def test_a_week_across_the_october_change_keeps_wall_clock_times() -> None:
    # Summer time ends on Sunday 25 October 2026 at 03:00 CEST: week 43 is 7 days and one hour long.
    assert prompt_time("2026-W43", "mon", "09:00", ZURICH) == utc(2026, 10, 19, 7, 0)
    assert prompt_time("2026-W43", "sat", "09:00", ZURICH) == utc(2026, 10, 24, 7, 0)
    assert prompt_time("2026-W43", "sun", "09:00", ZURICH) == utc(2026, 10, 25, 8, 0)
    assert prompt_time("2026-W44", "mon", "09:00", ZURICH) == utc(2026, 10, 26, 8, 0)
    assert week_start("2026-W44", ZURICH) - week_start("2026-W43", ZURICH) == timedelta(days=7, hours=1)
    # 02:30 happens twice that night: the first (summer time) is meant.
    assert prompt_time("2026-W43", "sun", "02:30", ZURICH) == utc(2026, 10, 25, 0, 30)


def test_a_week_across_the_march_change_keeps_wall_clock_times() -> None:
    # Summer time starts on Sunday 29 March 2026 at 02:00 CET: week 13 is 7 days less one hour.
    assert prompt_time("2026-W13", "mon", "09:00", ZURICH) == utc(2026, 3, 23, 8, 0)
    assert prompt_time("2026-W13", "sun", "09:00", ZURICH) == utc(2026, 3, 29, 7, 0)
    assert prompt_time("2026-W14", "mon", "09:00", ZURICH) == utc(2026, 3, 30, 7, 0)
    assert week_start("2026-W14", ZURICH) - week_start("2026-W13", ZURICH) == timedelta(days=6, hours=23)
    # 02:30 does not exist that night: read as 03:30 summer time.
    assert prompt_time("2026-W13", "sun", "02:30", ZURICH) == utc(2026, 3, 29, 1, 30)


@pytest.mark.parametrize(
    ("day", "time", "message"),
    [
        ("monday", "09:00", "'monday' is not a day"),
        ("mon", "9:00", "'9:00' is not a time"),
        ("mon", "24:00", "'24:00' is not a time"),
    ],
)
def test_prompt_time_refuses_bad_days_and_times(day: str, time: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        prompt_time("2026-W48", day, time, ZURICH)


# --- languages ---------------------------------------------------------------------------------------


def topic(titles: dict[str, str], bodies: dict[str, str] | None = None, **fields: object) -> Topic:
    bodies = bodies if bodies is not None else {lang: f"Body {lang}" for lang in titles}
    return Topic(**({"id": 12, "room": "ta", "week": "2026-W50"} | fields), titles=titles, bodies=bodies)


def test_missing_languages_keep_the_rooms_order() -> None:
    t = topic({"fr": "Sujet", "en": "Topic", "es": "Tema"}, {"fr": "Texte", "en": "Body"})
    assert missing_languages(t, ["en", "fr", "es"]) == ["es"]
    assert missing_languages(t, ["es", "ar", "en"]) == ["es", "ar"]
    assert missing_languages(topic({"en": "Topic"}), []) == []


def test_text_for_falls_back_to_english_then_the_first_language() -> None:
    full = topic({"fr": "Sujet", "en": "Topic", "es": "Tema"})
    assert text_for(full, "es") == ("Tema", "Body es", "es")
    english = topic({"fr": "Sujet", "en": "Topic"})
    assert text_for(english, "es") == ("Topic", "Body en", "en")
    french = topic({"fr": "Sujet", "ar": "موضوع"})
    assert text_for(french, "es") == ("Sujet", "Body fr", "fr")
    # A language with a title but no body counts as missing.
    assert text_for(topic({"es": "Tema", "en": "Topic"}, {"en": "Body"}), "es")[2] == "en"
    with pytest.raises(ValueError):
        text_for(topic({}), "en")


def test_language_names_come_in_the_readers_language() -> None:
    assert language_name("en", "es") == "inglés"
    assert language_name("en", "fr") == "anglais"
    assert language_name("es", "en") == "Spanish"
    assert language_name("xx", "en") == "xx"


# --- the prompt --------------------------------------------------------------------------------------

SISTERS = {name: prompt_message_id(12, name, DOMAIN) for name in ("ta-en", "ta-fr", "ta-es")}


MONDAY = utc(2026, 12, 7, 8, 0)


def prompt(t: Topic, list_name: str, now: datetime = MONDAY) -> bytes:
    mailing_list = SETTINGS.lists[list_name]
    return compose_prompt(
        t,
        mailing_list,
        sender=prompt_sender(mailing_list, DOMAIN),
        domain=DOMAIN,
        templates=TEMPLATES,
        sisters=SISTERS,
        now=now,
    )


def parsed(raw: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def text_of(message: email.message.EmailMessage) -> str:
    return message.get_content().replace("\r\n", "\n")


def test_the_prompt_is_a_post_from_the_moderators_to_the_list() -> None:
    raw = prompt(topic({"en": "Topic", "fr": "L'été : budgets", "es": "Tema"}), "ta-fr")
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    message = parsed(raw)
    assert message["From"] == "Assistance technique — modération <mod-fr@forum.example.org>"
    assert message["To"] == "Assistance technique <ta-fr@forum.example.org>"
    assert message["Reply-To"] == "ta-fr@forum.example.org"
    assert message["Subject"] == "L'été : budgets"
    assert message["Message-ID"] == "<topic-12.ta-fr@forum.example.org>"
    assert message["Date"] == "Mon, 07 Dec 2026 08:00:00 +0000"
    assert message[TOPIC_HEADER] == "2026-W50"
    assert message[SISTERS_HEADER] == "<topic-12.ta-en@forum.example.org>, <topic-12.ta-es@forum.example.org>"
    assert message["Content-Language"] == "fr"
    assert message.get_content_type() == "text/plain" and message.get_content_charset() == "utf-8"
    body = text_of(message)
    assert body.startswith("Bonjour à toutes et à tous,")
    assert "    L'été : budgets\n\nBody fr\n" in body
    assert "ta-fr-propose@forum.example.org" in body and "ta-fr@forum.example.org" in body
    assert "pas encore disponible" not in body and "From-Name" not in body


def test_the_prompt_is_the_same_message_on_a_second_attempt() -> None:
    t = topic({"en": "Topic", "fr": "Sujet", "es": "Tema"})
    assert prompt(t, "ta-es") == prompt(t, "ta-es")
    assert parsed(prompt(t, "ta-en"))["Message-ID"] != parsed(prompt(t, "ta-es"))["Message-ID"]


def test_a_list_whose_language_is_missing_gets_english_with_a_note_in_its_language() -> None:
    message = parsed(prompt(topic({"en": "Budget workshop", "fr": "Atelier budgétaire"}), "ta-es"))
    assert message["Subject"] == "Budget workshop"
    assert message["From"] == "Asistencia técnica — moderación <mod-es@forum.example.org>"
    assert message["Content-Language"] == "es, en"
    assert message["Content-Transfer-Encoding"] == "8bit"  # short lines: readable in the archive as is
    lines = text_of(message).splitlines()
    assert lines[:4] == [
        "El tema de esta semana aún no está disponible en español;",
        "aquí lo tiene en inglés.",
        "",
        "Estimados/as colegas:",
    ]
    assert "Body en" in lines


def test_without_english_the_first_language_is_used_and_named() -> None:
    message = parsed(prompt(topic({"fr": "Atelier budgétaire"}), "ta-en"))
    assert message["Subject"] == "Atelier budgétaire"
    first = text_of(message).splitlines()[:2]
    assert first == ["This week's topic is not yet available in English;", "here it is in French."]


def test_a_list_without_moderators_speaks_from_its_owner_address() -> None:
    raw = shipped_config()
    del raw["rooms"][0]["moderators"]["es"]
    mailing_list = parse_settings(raw).lists["ta-es"]
    assert prompt_sender(mailing_list, DOMAIN) == "ta-es-owner@forum.example.org"
    assert prompt_sender(SETTINGS.lists["ta-es"], DOMAIN) == "mod-es@forum.example.org"


def test_no_sister_header_when_the_room_has_one_list() -> None:
    raw = compose_prompt(
        topic({"en": "Topic"}),
        SETTINGS.lists["ta-en"],
        sender="mod-en@forum.example.org",
        domain=DOMAIN,
        templates=TEMPLATES,
        sisters={"ta-en": SISTERS["ta-en"]},
        now=utc(2026, 12, 7, 8, 0),
    )
    assert parsed(raw)[SISTERS_HEADER] is None


def test_the_prompt_parses_like_any_post() -> None:
    post = parse_post(prompt(topic({"en": "Topic", "fr": "Sujet", "es": "Tema"}), "ta-es"))
    assert post.message_id == "<topic-12.ta-es@forum.example.org>"
    assert post.subject == "Tema"
    assert post.sender == "mod-es@forum.example.org"


def test_the_prompt_decorates_like_any_post() -> None:
    decorated = parsed(decorate(prompt(topic({"en": "Budget workshop"}), "ta-en"), LIST))
    assert decorated["Subject"] == "[TA-EN] Budget workshop"
    assert decorated["Reply-To"] == "ta-en@forum.example.org"  # ours kept, the list not added twice
    assert decorated[TOPIC_HEADER] == "2026-W50" and decorated[SISTERS_HEADER].count("<topic-12.") == 2
    assert decorated["List-Id"] and "Archives : " in text_of(decorated)


def test_a_long_body_is_wrapped_and_paragraphs_kept() -> None:
    words = " ".join(["participation"] * 30)
    message = parsed(prompt(topic({"en": "Topic"}, {"en": f"{words}\n\nSecond paragraph."}), "ta-en"))
    body = text_of(message)
    assert all(len(line) <= 76 for line in body.splitlines())
    assert "\n\nSecond paragraph.\n" in body


# --- templates ---------------------------------------------------------------------------------------

SUMMARY = {
    "posts": 4,
    "posters": 3,
    "held": 2,
    "held_proposals": 1,
    "discarded": 2,
    "new_members": 1,
    "next_week": "2026-W50",
    "next_title": "Atelier budgétaire",
    "next_title_language": "fr",
    "next_missing": ["es"],
}
CONTEXTS = {
    "member_prompt.txt": {
        "title": "Atelier budgétaire",
        "body": "Texte du sujet.",
        "fallback_note": True,
        "fallback_language": "anglais",
        "language_name": "français",
        "propose_address": "ta-fr-propose@forum.example.org",
        "participation": "Last week on this list: 42 posts from 17 member states.",
    },
    "moderator_translation_missing.txt": {"week": "2026-W50", "title": "Budget", "missing": ["es", "ar"]},
    "moderator_translation_request.txt": {
        "week": "2026-W50",
        "title": "Budget workshop",
        "body": "First paragraph.\n\nSecond paragraph.",
        "language": "fr",
        "code": "K7QXM-2PAB9-ZT4HD",
    },
    "sender_proposal_accepted.txt": {"subject": "Atelier", "week": "2026-W50"},
    "moderator_prompt_skipped.txt": {"week": "2026-W50", "title": "Atelier", "hours": 12},
    "moderator_weekly_summary.txt": SUMMARY,
}


@pytest.mark.parametrize("language", ["en", "fr", "es"])
@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_every_topic_template_renders_in_every_language(name: str, language: str) -> None:
    rendered = TEMPLATES.render(name, language, **COMMON, **CONTEXTS[name])
    assert rendered.language == language
    assert rendered.subject and rendered.body.strip()
    assert "{{" not in rendered.body and "{%" not in rendered.body and "\n\n\n" not in rendered.body
    assert not rendered.body.startswith("\n") and rendered.body.endswith("\n")


@pytest.mark.parametrize("language", ["en", "fr", "es"])
def test_the_weekly_summary_without_a_topic_and_without_held_posts(language: str) -> None:
    context = SUMMARY | {"held": 0, "held_proposals": 0, "next_title": None, "next_missing": []}
    rendered = TEMPLATES.render("moderator_weekly_summary.txt", language, **COMMON, **context)
    assert "listserv topics add" in rendered.body
    assert "\n\n\n" not in rendered.body


def test_the_translation_request_carries_its_code_and_names_the_language() -> None:
    rendered = TEMPLATES.render(
        "moderator_translation_request.txt", "es", **COMMON, **CONTEXTS["moderator_translation_request.txt"]
    )
    assert rendered.subject.startswith("[#K7QXM-2PAB9-ZT4HD] ")
    assert "al francés" in rendered.body
    assert "    First paragraph.\n\n    Second paragraph.\n" in rendered.body


# --- database: next free week, adding topics, the weekly summary -------------------------------------


def test_next_free_week_skips_the_rooms_taken_weeks(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        for room, week in [("ta", "2026-W50"), ("ta", "2026-W51"), ("ta", "2026-W53"), ("ops", "2026-W52")]:
            session.add(Topic(room=room, week=week, titles={"en": "T"}, bodies={"en": "B"}))
    with Session(engine) as session:
        assert next_free_week(session, "ta", "2026-W49") == "2026-W49"
        assert next_free_week(session, "ta", "2026-W50") == "2026-W52"
        assert next_free_week(session, "ta", "2026-W53") == "2027-W01"
        assert next_free_week(session, "ops", "2026-W50") == "2026-W50"
        assert next_free_week(session, "ops", "2026-W52") == "2026-W53"


def test_add_topic_takes_its_week_or_the_next_free_one(engine: Engine, settings: Settings) -> None:
    now = utc(2026, 12, 2, 10, 0)  # Wednesday of 2026-W49
    text = "room: ta\ntitles: {en: T}\nbodies: {en: B}\n"
    with Session(engine) as session, session.begin():
        first = add_topic(session, read_topic(text + "week: 2026-W50\n", settings), now, ZURICH)
        second = add_topic(session, read_topic(text, settings), now, ZURICH, proposer="ana@example.org")
        third = add_topic(session, read_topic(text, settings), now, ZURICH)
        assert (first.week, second.week, third.week) == ("2026-W50", "2026-W51", "2026-W52")
        assert second.proposer == "ana@example.org" and first.id is not None
        with pytest.raises(TopicError) as taken:
            add_topic(session, read_topic(text + "week: 2026-W51\n", settings), now, ZURICH)
        assert taken.value.problems == [
            f"week: 2026-W51 already has a topic in room 'ta' (#{second.id}); 2026-W53 is free"
        ]
        with pytest.raises(TopicError) as over:
            add_topic(session, read_topic(text + "week: 2026-W48\n", settings), now, ZURICH)
        assert over.value.problems == ["week: 2026-W48 is over (this is 2026-W49)"]
    with Session(engine) as session:
        assert session.scalars(select(Topic.week).order_by(Topic.week)).all() == [
            "2026-W50",
            "2026-W51",
            "2026-W52",
        ]


def hold(session: Session, list_name: str, number: int, kind: str = "post", state: str = "held") -> None:
    message_id = f"<held-{number}@example.org>"
    received = Received(rcpt_tos=[f"{list_name}@{DOMAIN}"], message_id=message_id, raw=b"x")
    session.add(received)
    session.flush()
    route = Route(received_id=received.id, list_name=list_name, kind=kind, message_id=message_id)
    session.add(route)
    session.flush()
    session.add(
        Held(
            route_id=route.id,
            received_id=received.id,
            list_name=list_name,
            kind=kind,
            message_id=message_id,
            code_hash=f"{number:064x}",
            code_nonce="n",
            expires_at=utc(2026, 12, 20),
            state=state,
        )
    )


def test_weekly_summary_counts_the_last_seven_days(engine: Engine, settings: Settings) -> None:
    now = utc(2026, 12, 6, 18, 0)  # Sunday of 2026-W49
    add_members(
        engine,
        settings,
        {"email": "ana@example.org", "lists": "ta-fr"},
        {"email": "ben@example.org", "lists": "ta-fr;ta-en"},
        {"email": "old@example.org", "lists": "ta-fr"},
    )
    with Session(engine) as session, session.begin():
        old = session.scalars(select(Member.id).where(Member.email == "old@example.org")).one()
        recent = select(Member.id).where(Member.email.in_(["ana@example.org", "ben@example.org"]))
        session.execute(update(Subscription).values(created_at=now - timedelta(days=30)))  # moderators too
        session.execute(
            update(Subscription)
            .where(Subscription.member_id.in_(recent))
            .values(created_at=now - timedelta(days=2))
        )
        session.execute(
            update(Subscription)
            .where(Subscription.member_id == old)
            .values(created_at=now - timedelta(days=10))
        )
        posts = [
            ("ta-fr", "ana@example.org", now - timedelta(days=1)),
            ("ta-fr", "Ana@example.org", now - timedelta(days=3)),
            ("ta-fr", "ben@example.org", now - timedelta(days=6, hours=23)),
            ("ta-fr", "ben@example.org", now - timedelta(days=8)),  # too old
            ("ta-en", "eve@example.org", now - timedelta(days=1)),  # another list
        ]
        for number, (list_name, sender, at) in enumerate(posts):
            session.add(
                ArchivedPost(
                    list_name=list_name, message_id=f"<p{number}@x>", sender=sender, raw=b"", archived_at=at
                )
            )
        hold(session, "ta-fr", 1)
        hold(session, "ta-fr", 2, kind="proposal")
        hold(session, "ta-fr", 3, state="approved")
        hold(session, "ta-en", 4)
        for days, list_name, channel in (
            (1, "ta-fr", "system"),
            (2, "ta-fr", "email"),
            (9, "ta-fr", "system"),
        ):
            # the policy's own discards in the week count; a moderator's discard or an older one does not
            session.add(
                Audit(
                    at=now - timedelta(days=days),
                    list_name=list_name,
                    actor="system",
                    channel=channel,
                    action="discard",
                    result="automatic",
                )
            )
        session.add(
            Topic(
                room="ta",
                week="2026-W50",
                titles={"en": "Budget workshop", "fr": "Atelier budgétaire"},
                bodies={"en": "Body", "fr": "Texte"},
            )
        )
        session.add(Topic(room="ta", week="2026-W49", titles={"fr": "Passé"}, bodies={"fr": "Passé"}))

    with Session(engine) as session:
        summary = weekly_summary(session, "ta-fr", "ta", now, ZURICH)
        assert summary == {
            "posts": 3,
            "posters": 2,
            "held": 2,
            "held_proposals": 1,
            "discarded": 1,
            "new_members": 2,
            "next_week": "2026-W50",
            "next_title": "Atelier budgétaire",
            "next_title_language": "fr",
            "next_missing": ["es"],
        }
        spanish = weekly_summary(session, "ta-es", "ta", now, ZURICH)
        assert spanish["next_title"] == "Budget workshop" and spanish["next_title_language"] == "en"
        assert spanish["posts"] == spanish["held"] == spanish["new_members"] == 0
        # Monday 00:30 in Zurich is already week 50: next week is 51, which has no topic yet.
        later = weekly_summary(session, "ta-fr", "ta", utc(2026, 12, 6, 23, 30), ZURICH)
        assert (
            later["next_week"] == "2026-W51" and later["next_title"] is None and later["next_missing"] == []
        )

    languages = [row for row in settings.lists.values() if row.room == "ta"]
    assert [ml.language for ml in languages] == ["en", "fr", "es"]
    rendered = TEMPLATES.render("moderator_weekly_summary.txt", "fr", **COMMON, **summary)
    assert "Messages publiés :          3" in rendered.body
    assert "Sujet : Atelier budgétaire" in rendered.body and "espagnol (es)" in rendered.body


def test_list_rows_know_their_room(engine: Engine) -> None:
    with Session(engine) as session:
        rows = session.scalars(select(ListRow.name).where(ListRow.room == "ta").order_by(ListRow.id)).all()
    assert rows == ["ta-en", "ta-fr", "ta-es"]

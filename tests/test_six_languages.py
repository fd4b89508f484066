"""The six languages of the member states' meetings end to end, over real SMTP on SQLite and PostgreSQL:
with ``languages: [en, fr, es, ar, zh, ru]`` a post to each list is held with a notice in that list's
language, a reply with that language's approve word publishes it, and the members' copy (footer) and
the daily digest speak that language. The expected words are written out here, not read from the
templates, so an English fallback fails the test."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from digests import send_digests
from listserv.config import Settings, parse_settings
from listserv.mail.rawmime import subject_field
from listserv.store.models import ArchivedPost
from tests.conftest import RunningForum, Sink, SteppableClock, add_members, make_config, wait_for
from tests.test_digests import set_modes
from tests.test_moderation import CODE, reply_to_notice, send

LANGUAGES = ["en", "fr", "es", "ar", "zh", "ru"]
TITLES = {
    "en": "Technical Assistance",
    "fr": "Assistance technique",
    "es": "Asistencia técnica",
    "ar": "المساعدة التقنية",
    "zh": "技术援助",
    "ru": "Техническая помощь",
}
# language: (a post's subject and body, the approve word a moderator writes, words the notice, the
# footer and the digest must show in that language)
CASES: dict[str, dict[str, str]] = {
    "en": {
        "post": "Budget workshop",
        "approve": "approve",
        "notice": "to moderate",
        "footer": "archive:",
        "digest": "digest, Vol",
    },
    "fr": {
        "post": "Atelier budgétaire",
        "approve": "approuver",
        "notice": "à modérer",
        "footer": "Archives de la liste",
        "digest": "résumé, vol.",
    },
    "es": {
        "post": "Taller presupuestario",
        "approve": "aprobar",
        "notice": "pendiente de moderación",
        "footer": "Archivo de la lista",
        "digest": "resumen, vol.",
    },
    "ar": {
        "post": "ورشة عمل الميزانية",
        "approve": "موافقة",
        "notice": "بانتظار الإشراف",
        "footer": "أرشيف القائمة",
        "digest": "الموجز، المجلد",
    },
    # No space after the word: Chinese is written without them (the reader takes a known word's prefix).
    "zh": {
        "post": "预算研讨会",
        "approve": "批准。谢谢",
        "notice": "待审核邮件",
        "footer": "存档：",
        "digest": "摘要，第",
    },
    "ru": {
        "post": "Семинар по бюджету",
        "approve": "одобрить",
        "notice": "на модерацию",
        "footer": "Архив списка",
        "digest": "дайджест, том",
    },
}


def six_language_config(tmp_path: Path, db_url: str, sink: Sink) -> dict[str, Any]:
    raw = make_config(tmp_path, db_url)
    raw["languages"] = LANGUAGES
    raw["rooms"] = [
        {
            "name": "ta",
            "title": TITLES,
            "moderators": {language: [f"mod-{language}@forum.example.org"] for language in LANGUAGES},
        }
    ]
    raw["delivery"] = {"relay": {"host": "127.0.0.1", "port": sink.controller.port}}
    return raw


@pytest.fixture
def relayed_settings(tmp_path: Path, db_url: str, sink: Sink) -> Settings:
    return parse_settings(six_language_config(tmp_path, db_url, sink))


def archived(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.scalars(select(ArchivedPost.list_name).order_by(ArchivedPost.id)))


def test_each_language_round_trip(
    live: RunningForum, sink: Sink, relayed_engine: Engine, relayed_settings: Settings, clock: SteppableClock
) -> None:
    for language in LANGUAGES:
        add_members(
            relayed_engine,
            relayed_settings,
            {"email": f"delegate-{language}@example.org", "lists": f"ta-{language}", "language": language},
        )
    set_modes(
        relayed_engine,
        relayed_settings,
        {
            f"digest-{language}@example.org": (f"ta-{language}", "digest", "daily", "mime")
            for language in LANGUAGES
        },
    )
    for language in LANGUAGES:
        case, moderator = CASES[language], f"mod-{language}@forum.example.org"
        send(
            live.port,
            f"delegate-{language}@example.org",
            f"ta-{language}@forum.example.org",
            case["post"],
            case["post"] + ".",
        )
        [notice] = sink.wait_to(moderator)
        assert notice["Content-Language"] == language
        assert case["notice"] in notice["Subject"] and CODE.search(notice["Subject"])
        shown_word = case["approve"].rstrip("。谢")
        assert shown_word in notice.get_body(("plain",)).get_content()

        reply_to_notice(live.port, notice, moderator, case["approve"])
        name = f"ta-{language}"
        wait_for(lambda: name in archived(relayed_engine), what=f"the {name} post published")  # noqa: B023
        [copy] = sink.wait_to(f"delegate-{language}@example.org", list_copies=True)
        text = copy.get_body(("plain",)).get_content()
        assert case["post"] in text and case["footer"] in text and TITLES[language] in text

    clock.advance(hours=1)
    with Session(relayed_engine) as session, session.begin():
        sent = send_digests(session, relayed_settings, live.forum.parts.publisher, "daily", clock.now)
    assert sent == len(LANGUAGES)
    live.forum.deliverer.background.wake()
    for language in LANGUAGES:
        [digest] = sink.wait_to(f"digest-{language}@example.org", list_copies=True)
        assert CASES[language]["digest"] in digest["Subject"] and TITLES[language] in digest["Subject"]
        assert digest["Content-Language"] == language


@pytest.mark.parametrize(
    "subject",
    [
        "[#SNCK5-4T9F3-AZKG6] رسالة بانتظار الإشراف (ta-ar): ورشة عمل الميزانية",
        "Re: [TA-RU] Сообщение на модерацию: семинар по бюджету и финансовому планированию",
        "[TA-ZH] 待审核邮件（ta-zh）：预算研讨会 第二次会议",
        "Re: [TA-FR] Réunion du comité",
    ],
)
def test_a_subject_keeps_every_space_between_its_encoded_words(subject: str) -> None:
    """The stdlib's folder dropped the space where it split non-ASCII words into two encoded words."""
    raw = subject_field(subject) + b"\r\nbody\r\n"
    assert email.message_from_bytes(raw, policy=email.policy.default)["Subject"] == subject
    assert raw.startswith(b"Subject: " + subject.split(" ")[0].encode() + b" ")  # the prefix stays readable

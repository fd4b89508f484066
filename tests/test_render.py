"""Mail templates: every template renders in en, fr and es; a missing language falls back to English,
visibly in the log, never a crash."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from listserv.config import SHIPPED_TEMPLATES
from listserv.mail.templates import MailTemplates
from listserv.moderation.vocabulary import (
    CommandWords,
    command_words,
    reason_text,
    standalone_words,
    vocabulary,
)

COMMON = {
    "site_name": "Forum",
    "list_name": "ta-fr",
    "list_title": "Assistance technique",
    "list_address": "ta-fr@forum.example.org",
    "owner_address": "ta-fr-owner@forum.example.org",
    "request_address": "ta-fr-request@forum.example.org",
}
HELD = {
    "kind": "post",
    "code": "K7QXM-2PAB9-ZT4HD",
    "sender_name": "Marie",
    "sender": "marie@example.fr",
    "country": "France",
    "subject": "Sujet",
    "reasons": ["Raison."],
    "size": "3 KB",
    "attachments": [SimpleNamespace(filename="a.pdf", content_type="application/pdf", size=1000)],
    "excerpt": "Bonjour",
    "truncated": False,
    "expires_at": "7 décembre 2026",
    "moderate_address": "ta-fr-moderate+K7QXM-2PAB9-ZT4HD@forum.example.org",
    "words": CommandWords("approuver", "rejeter", "ignorer"),
    "hours": 48,
}
CONTEXTS = {
    "moderator_held.txt": HELD,
    "chief_escalation.txt": HELD,
    "moderator_reply_problem.txt": {
        "problem": "expired",
        "code": "K7QXM-2PAB9-ZT4HD",
        "own_text": "",
        "words": HELD["words"],
    },
    "moderator_already_decided.txt": {
        "code": "K7QXM-2PAB9-ZT4HD",
        "subject": "Sujet",
        "decision": "reject",
        "decided_by": "mod@forum.example.org",
        "decided_at": "hier",
    },
    "moderator_reminder.txt": {
        "hours": 24,
        "held": [
            SimpleNamespace(
                code="K7QXM-2PAB9-ZT4HD",
                subject="Sujet",
                sender="marie@example.fr",
                held_since="hier",
                hours=30,
            )
        ],
    },
    "sender_held.txt": {"subject": "Sujet"},
    "sender_rejected.txt": {"subject": "Sujet", "reason": "Hors sujet"},
    "sender_not_member.txt": {"subject": "Sujet", "sender": "x@example.com", "quoted": True},
}
TEMPLATES = MailTemplates(SHIPPED_TEMPLATES, "Europe/Zurich")


@pytest.mark.parametrize("language", ["en", "fr", "es"])
@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_every_template_renders_in_every_language(name: str, language: str) -> None:
    rendered = TEMPLATES.render(name, language, **COMMON, **CONTEXTS[name])
    assert rendered.language == language
    assert rendered.subject and rendered.body.strip()
    assert "{{" not in rendered.body and "{%" not in rendered.body


def test_a_missing_language_falls_back_to_english_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="listserv.mail.templates"):
        rendered = TEMPLATES.render("sender_held.txt", "fa", **COMMON, subject="موضوع")
    assert rendered.language == "en"
    assert "awaiting" in rendered.subject.lower() or "moderation" in rendered.subject.lower()
    assert "missing translation: mail/fa/sender_held.txt" in caplog.text
    assert command_words(TEMPLATES, "fa") == CommandWords("approve", "reject", "discard")
    assert reason_text(
        TEMPLATES, {"key": "not_member", "params": {"sender": "x", "list_name": "ta-fa"}}, "fa"
    ) == ("x is not a member of ta-fa.")


def test_vocabulary_spans_languages_and_english_always_works() -> None:
    words = vocabulary(TEMPLATES, ["fr", "es"])
    assert words["approve"] == words["approuver"] == words["aprobar"] == "approve"
    assert words["rejeter"] == words["rechazar"] == "reject"
    assert words["ignorer"] == words["descartar"] == "discard"
    assert {"ok", "oui", "sí"} <= standalone_words(TEMPLATES, ["fr", "es"])


def test_dates_are_in_the_readers_language_and_the_site_zone() -> None:
    moment = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    assert TEMPLATES.date(moment, "fr") == "23 novembre 2026, 09:00 (Europe/Zurich)"
    assert TEMPLATES.date(moment, "es").startswith("23 de noviembre de 2026, 9:00")

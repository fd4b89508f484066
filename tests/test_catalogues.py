"""The web UI's catalogues: every message of every web template is translated in French, Spanish,
Arabic, Chinese and Russian with the same placeholders; a language without a catalogue shows English,
says so in the log, and a right-to-left language (Persian, Arabic) is laid out right to left."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from listserv.config import SHIPPED_TEMPLATES
from listserv.web.i18n import LOCALE_DIR, load_languages
from listserv.web.pages import Pages

COMPLETE = ["fr", "es", "ar", "zh", "ru"]
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")
OPTIONS = {"extensions": "jinja2.ext.i18n", "trim_blocks": "true", "lstrip_blocks": "true"}


def template_messages() -> set[str | tuple[str, ...]]:
    found = extract_from_dir(str(SHIPPED_TEMPLATES / "web"), [("**.html", "jinja2")], {"**.html": OPTIONS})
    return {message for _, _, message, _, _ in found}


def catalogue(language: str) -> Catalog:
    with (LOCALE_DIR / language / "LC_MESSAGES" / "listserv.po").open("rb") as handle:
        return read_po(handle)


@pytest.mark.parametrize("language", COMPLETE)
def test_every_web_message_is_translated(language: str) -> None:
    translated = catalogue(language)
    messages = template_messages()
    assert len(messages) > 100, "extraction found almost nothing: is the jinja2 extractor installed?"
    missing = []
    for message in sorted(messages, key=str):
        key = message[0] if isinstance(message, tuple) else message
        entry = translated.get(key)
        strings = entry.string if entry is not None else ""
        if entry is None or entry.fuzzy or not all(strings if isinstance(strings, tuple) else [strings]):
            missing.append(key)
    assert not missing, f"{len(missing)} untranslated in {language} (run `make messages`): {missing[:10]}"


@pytest.mark.parametrize("language", COMPLETE)
def test_translations_keep_their_placeholders(language: str) -> None:
    wrong = []
    for entry in catalogue(language):
        if not entry.id or not entry.string:
            continue
        ids = entry.id if isinstance(entry.id, tuple) else (entry.id,)
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        wanted = set(PLACEHOLDER.findall(ids[-1]))
        wrong += [entry.id for text in strings if set(PLACEHOLDER.findall(text)) - wanted]
    assert not wrong, f"{language}: placeholders that the English does not have: {wrong[:5]}"


def test_a_language_without_catalogue_falls_back_visibly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        languages = load_languages(["en", "fr", "ar", "fa"])
    assert "no web catalogue for 'fa'" in caplog.text
    pages = Pages(SHIPPED_TEMPLATES, "Europe/Zurich", languages)
    context = {
        "viewer": None,
        "csrf_token": "t",
        "site_name": "F",
        "path": "/login",
        "query_string": "",
        "next": "/",
        "email": "",
        "error": None,
    }
    html = pages.render("login.html", "fa", **context)
    assert '<html lang="fa" dir="rtl">' in html
    assert "Sign in" in html  # English words, not a crash
    arabic = pages.render("login.html", "ar", **context)
    assert '<html lang="ar" dir="rtl">' in arabic
    assert "تسجيل الدخول" in arabic and "Sign in" not in arabic


def test_catalogues_live_where_the_package_ships_them() -> None:
    assert Path(LOCALE_DIR, "fr", "LC_MESSAGES", "listserv.po").is_file()

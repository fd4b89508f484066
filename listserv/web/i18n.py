"""The web UI's languages: Babel ``.po`` catalogues under ``listserv/locale/<lang>/LC_MESSAGES/``,
compiled in memory at start (no build step), chosen by the member's setting, else the browser's
``Accept-Language``, else English. A language without a catalogue falls back to English visibly (the
log says so once) and never crashes; Arabic and other right-to-left languages get ``dir="rtl"``."""

from __future__ import annotations

import gettext
import io
import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

log = logging.getLogger(__name__)
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
DOMAIN = "listserv"
SOURCE = "en"  # msgids are English: English needs no catalogue


@dataclass(frozen=True)
class UiLanguage:
    code: str
    translations: gettext.NullTranslations

    # Named (and its direction read) from Babel's CLDR data at the first page that needs it, not at
    # start: the six UI languages' data is ~6 MB that an idle serve need not hold (issue 18).
    @cached_property
    def name(self) -> str:
        """In its own language: "français"."""
        return _describe(self.code)[0]

    @cached_property
    def direction(self) -> str:
        """ltr | rtl"""
        return _describe(self.code)[1]


def compile_catalogue(path: Path) -> gettext.GNUTranslations:
    with path.open("rb") as handle:
        catalogue = read_po(handle)
    untranslated = [m.id for m in catalogue if m.id and not m.string]
    if untranslated:
        log.warning("missing translation: %d message(s) of %s shown in English", len(untranslated), path)
    compiled = io.BytesIO()
    write_mo(compiled, catalogue)  # fuzzy entries are left out, so they fall back to English
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def _describe(code: str) -> tuple[str, str]:
    try:
        locale = Locale.parse(code)
    except (UnknownLocaleError, ValueError):
        return code, "ltr"
    direction = "rtl" if locale.character_order == "right-to-left" else "ltr"
    return (locale.get_display_name(locale) or code), direction


def load_languages(wanted: list[str], locale_dir: Path = LOCALE_DIR) -> dict[str, UiLanguage]:
    """Every configured language, English first. One without a catalogue is still offered (its
    readers should see their list's language is configured) but shows English text, and is logged."""
    found: dict[str, UiLanguage] = {}
    for code in dict.fromkeys([SOURCE, *wanted]):
        path = locale_dir / code / "LC_MESSAGES" / f"{DOMAIN}.po"
        if code == SOURCE:
            translations: gettext.NullTranslations = gettext.NullTranslations()
        elif path.exists():
            translations = compile_catalogue(path)
        else:
            log.warning(
                "missing translation: no web catalogue for %r (%s); its pages show English", code, path
            )
            translations = gettext.NullTranslations()
        found[code] = UiLanguage(code, translations)
    return found


def negotiate(accept_language: str, available: list[str]) -> str | None:
    """The best of ``available`` for an ``Accept-Language`` header (quality values honoured)."""
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept_language.split(",")):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag and quality > 0:
            ranked.append((-quality, position, tag.replace("_", "-").lower()))
    for _, _, tag in sorted(ranked):
        for candidate in (tag, tag.split("-")[0]):
            if candidate in available:
                return candidate
    return None

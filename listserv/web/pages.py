"""The web templates (``templates/web/``): one Jinja2 environment with the i18n extension; the
language of each render is set per call, so threads rendering in different languages never mix."""

from __future__ import annotations

import contextvars
import re
import unicodedata
from collections.abc import Sequence
from datetime import date, datetime, time
from functools import lru_cache
from itertools import groupby
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_time
from babel.numbers import format_decimal
from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context
from markupsafe import Markup, escape

from listserv.archive.plaintext import Block, Line
from listserv.archive.urls import message_url
from listserv.store import countries
from listserv.web.i18n import SOURCE, UiLanguage

_current: contextvars.ContextVar[UiLanguage] = contextvars.ContextVar("ui_language")


class Pages:
    def __init__(
        self,
        templates_dirs: Path | Sequence[Path],
        timezone: str,
        languages: dict[str, UiLanguage],
        reload: bool = False,
    ) -> None:
        dirs = [templates_dirs] if isinstance(templates_dirs, Path) else list(templates_dirs)
        self.languages = languages
        self.timezone = ZoneInfo(timezone)
        self.env = Environment(
            loader=FileSystemLoader([folder / "web" for folder in dirs]),  # the operator's first
            autoescape=select_autoescape(default=True),
            undefined=StrictUndefined,
            extensions=["jinja2.ext.i18n"],
            trim_blocks=True,
            lstrip_blocks=True,
            # Compiled once: checking every template's file on every render cost each page a few stats.
            # ``web.reload_templates`` (development) picks up edits without a restart.
            auto_reload=reload,
        )
        # Jinja's own "newstyle" callables wrap every translated string in Markup and format it through
        # Markup's escaping helper on each call (~15 % of a message page); these keep each message's
        # Markup once per language and escape only the values.
        self._translated: dict[tuple[str, str], Markup] = {}
        self.env.newstyle_gettext = True  # type: ignore[attr-defined]
        self.env.globals.update(gettext=self._gettext, _=self._gettext, ngettext=self._ngettext)
        self.env.filters.update(
            datetime=self._datetime,
            date=self._date,
            number=self._number,
            bdi=isolate,
            subject=isolate_subject,
            direction=direction,
            country=self._country,
            lines=lines_html,
        )
        # The same URL form Archived-At carries, relative to this site.
        self.env.globals["message_path"] = lambda list_name, mid: message_url("", list_name, mid)

    def _gettext(self, message: str, /, **variables: object) -> Markup:
        ui = _current.get()
        key = (ui.code, message)
        translated = self._translated.get(key)
        if translated is None:
            translated = self._translated[key] = Markup(ui.translations.gettext(message))
        return _format(translated, variables)

    def _ngettext(self, singular: str, plural: str, num: int, /, **variables: object) -> Markup:
        variables.setdefault("num", num)
        return _format(Markup(_current.get().translations.ngettext(singular, plural, num)), variables)

    def language(self, code: str) -> UiLanguage:
        return self.languages.get(code) or self.languages[SOURCE]

    def render(self, name: str, language: str, /, **context: Any) -> str:
        ui = self.language(language)
        token = _current.set(ui)
        try:
            return self.env.get_template(name).render(ui=ui, languages=self.languages, **context)
        finally:
            _current.reset(token)

    @staticmethod
    @pass_context
    def _country(context: Context, code: str) -> str:
        """A member state in the reader's language: "Chili (CL)"."""
        return countries.label(code, context["ui"].code)

    @pass_context
    def _datetime(self, context: Context, moment: datetime | None, style: str = "medium") -> str:
        """``21 Nov 2026, 09:00`` in the reader's language: the month spelled out, because ``11/21/26``
        reads differently in every member state, and no seconds. ``full`` adds the weekday."""
        if moment is None:
            return ""
        local, language = moment.astimezone(self.timezone), context["ui"].code
        day = day_text(local.date(), "full" if style == "full" else "medium", language)
        return f"{day}, {clock_text(local.hour, local.minute, language)}"

    @pass_context
    def _date(self, context: Context, moment: date | None, style: str = "long") -> str:
        if moment is None:
            return ""
        local = moment.astimezone(self.timezone).date() if isinstance(moment, datetime) else moment
        return day_text(local, style, context["ui"].code)

    @pass_context
    def _number(self, context: Context, value: float) -> str:
        return number(value, context["ui"].code)


# Babel parses a locale name on every call (a third of a list page's rendering): parsed once here. Counts
# repeat too (a list page shows ~40), and their formatting never changes.
babel_locale = lru_cache(maxsize=64)(Locale.parse)


@lru_cache(maxsize=4096)
def number(value: float, language: str) -> str:
    return format_decimal(value, locale=babel_locale(language))


# A list or search page shows ~40 moments, 15 µs each through Babel; days and clock times repeat (the
# posts of a day, the recent pages most read), so each is formatted once per language.
@lru_cache(maxsize=8192)
def day_text(day: date, style: str, language: str) -> str:
    return format_date(day, style, locale=babel_locale(language))


@lru_cache(maxsize=4096)
def clock_text(hour: int, minute: int, language: str) -> str:
    """The short time format: hours and minutes (and AM/PM where the language writes it), no zone."""
    return format_time(time(hour, minute), "short", locale=babel_locale(language))


def _format(translated: Markup, variables: dict[str, object]) -> Markup:
    """As Jinja's newstyle gettext: always a format string (so "%%" is "%"), the values escaped — numbers
    kept as numbers for ``%(num)d``."""
    if not variables and "%" not in translated:
        return translated
    values = {
        name: value if isinstance(value, int | float) else escape(value) for name, value in variables.items()
    }
    return Markup(str(translated) % values)


def lines_html(block: Block) -> Markup:
    """A text block's lines, escaped, links made clickable: in Python rather than a macro's loops over
    lines and segments, which were half the rendering of a thread page. Consecutive lines without a link
    (most of them) are escaped in one call: one Markup object per line was a tenth of a message page."""
    rendered: list[str] = []
    for plain, lines in groupby(block.lines, key=_without_link):
        if plain:
            rendered.append(escape("\n".join(segments[0][0] for segments in lines)))
        else:
            rendered.extend(_linked(segments) for segments in lines)
    return Markup("\n".join(rendered))


def _without_link(segments: Line) -> bool:
    return len(segments) == 1 and segments[0][1] is None


def _linked(segments: Line) -> str:
    return "".join(
        f'<a href="{escape(url)}" rel="nofollow noopener noreferrer">{escape(text)}</a>'
        if url
        else escape(text)
        for text, url in segments
    )


def isolate(text: object) -> Markup:
    """``<bdi>text</bdi>``: a name, address or subject in another direction than the page (a Latin
    address in an Arabic sentence, an Arabic name in an English table) neither reorders nor is
    reordered by the words around it. Escaped like any value; a Markup value (highlighted search
    fragments) is kept as it is. (``escape`` rather than ``Markup.format``, 5 µs a call, dozens a page.)"""
    return Markup(f"<bdi>{escape(text)}</bdi>")


REPLY_PREFIX = re.compile(
    r"^(?:\s*(?:re|fwd?|aw|tr|rv|sv|ответ|回复|答复|رد)\s*(?:\[\d+\])?\s*[:：]\s*)+", re.I
)


def direction(text: object) -> str:
    """``rtl`` or ``ltr`` by the first letter of a subject after its "Re:", "Fwd:"…: ``dir="auto"`` took
    "Re: ميزانية …" for English and laid the Arabic subject out left to right. ``auto`` if no letter."""
    plain = text.striptags() if isinstance(text, Markup) else str(text or "")  # <mark> is no letter
    return _direction(plain)


@lru_cache(maxsize=4096)  # a thread's subject is shown again and again
def _direction(plain: str) -> str:
    for char in REPLY_PREFIX.sub("", plain):
        kind = unicodedata.bidirectional(char)
        if kind in ("R", "AL"):
            return "rtl"
        if kind == "L":
            return "ltr"
    return "auto"


def isolate_subject(text: object) -> Markup:
    """A subject in ``<bdi>`` with its own direction (a bare ``<bdi>`` is ``dir="auto"``: "Re:" again)."""
    return Markup(f'<bdi dir="{direction(text)}">{escape(text)}</bdi>')

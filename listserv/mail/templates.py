"""One Jinja2 environment for mail, with language fallback by search path: the wanted language, then
English (after Mailman's ``i18n.search``). A fallback is logged so a missing translation gets noticed;
it never crashes. Translators edit whole files under ``templates/mail/<lang>/``."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_time
from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    pass_environment,
    select_autoescape,
)

log = logging.getLogger(__name__)
FALLBACK = "en"


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    body: str
    language: str  # the language actually used (FALLBACK when the wanted one is missing)


class MailTemplates:
    def __init__(self, templates_dirs: Path | Sequence[Path], timezone: str) -> None:
        # The operator's folder first (site.templates_dir), then the shipped one: a file found earlier wins.
        dirs = [templates_dirs] if isinstance(templates_dirs, Path) else list(templates_dirs)
        self.roots = [folder / "mail" for folder in dirs]
        self.timezone = ZoneInfo(timezone)
        self.env = Environment(
            loader=FileSystemLoader(self.roots),
            autoescape=select_autoescape(["html"]),  # .txt mail is plain text; .html fragments escape
            undefined=StrictUndefined,  # a template asking for a missing variable is a bug: fail loudly
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            # Compiled once per process: no stat of the file at every notice (a template edited while
            # ``serve`` runs is read at its next start).
            auto_reload=False,
        )
        self.env.filters["wordwrap"] = wordwrap

    def render(self, name: str, language: str, /, **context: Any) -> RenderedMail:
        template, used = self._find(name, language)
        text = template.render(**context)
        head, _, body = text.partition("\n\n")
        subjects = [line[8:].strip() for line in head.splitlines() if line.lower().startswith("subject:")]
        subject = subjects[0] if subjects else ""
        return RenderedMail(subject, body.lstrip("\n"), used)

    def render_fragment(self, name: str, language: str, /, **context: Any) -> str:
        """A template with no Subject line (the members' footer)."""
        template, _ = self._find(name, language)
        return template.render(**context)

    def _find(self, name: str, language: str) -> tuple[Any, str]:
        for candidate in dict.fromkeys((language, FALLBACK)):
            try:
                template = self.env.get_template(f"{candidate}/{name}")
            except TemplateNotFound:
                continue
            if candidate != language:
                log.warning("missing translation: mail/%s/%s; sent in %s instead", language, name, candidate)
            return template, candidate
        raise TemplateNotFound(f"{FALLBACK}/{name}")

    def has(self, name: str, language: str) -> bool:
        """Whether ``<language>/<name>`` exists in any template folder (no fallback)."""
        return any((root / language / name).is_file() for root in self.roots)

    def catalogue(self, language: str, name: str) -> dict[str, Any]:
        """A YAML catalogue of ``mail/<language>/`` (commands, reasons, requests), English if missing."""
        for candidate in dict.fromkeys((language, FALLBACK)):
            for root in self.roots:
                found = _read_yaml(root / candidate / name)
                if found:
                    return found
        return {}

    def date(self, moment: datetime, language: str) -> str:
        """``23 novembre 2026, 09:00 (Europe/Zurich)``: the site's time, no seconds, zone named."""
        # Neither format shows seconds: to the minute, a burst of held posts formats each date once.
        local = moment.astimezone(self.timezone).replace(second=0, microsecond=0)
        return _local_date(local, language, self.timezone.key)

    @staticmethod
    def is_right_to_left(language: str) -> bool:
        return _is_right_to_left(language)


@pass_environment
def wordwrap(
    environment: Environment,
    s: str,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    """Jinja's ``wordwrap``, same output, without ``textwrap`` for a line that already fits (a held
    post's excerpt is mostly such lines, and textwrap was a tenth of holding it): textwrap gives such a
    line back as it is unless it ends in white space, which it drops."""
    newline = environment.newline_sequence if wrapstring is None else wrapstring
    options = {"break_long_words": break_long_words, "break_on_hyphens": break_on_hyphens}
    return newline.join(
        line
        if len(line) <= width and line == line.rstrip()  # textwrap drops trailing str.isspace() chunks
        else newline.join(
            textwrap.wrap(line, width=width, expand_tabs=False, replace_whitespace=False, **options)
        )
        for line in s.splitlines()
    )


@lru_cache(maxsize=256)
def _local_date(local: datetime, language: str, zone: str) -> str:
    day = format_date(local, "long", locale=language)
    return f"{day}, {format_time(local, 'short', locale=language)} ({zone})"


@cache
def _is_right_to_left(language: str) -> bool:
    """Arabic, Hebrew, Persian, Urdu…, from CLDR (Babel); an unknown code is left to right."""
    try:
        return Locale.parse(language.replace("-", "_")).character_order == "right-to-left"
    except (ValueError, UnknownLocaleError):
        return False


@cache
def _read_yaml_cached(path: Path, mtime: float) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        return _read_yaml_cached(path, path.stat().st_mtime)
    except OSError:
        return {}

"""The usage protocol page: ``templates/protocol/<lang>.md`` as blocks a template can show, in English
with a visible note when the language has no protocol file.

Only the little Markdown the protocol files use: ``#`` headings, paragraphs, ``- `` lists with indented
continuation lines, ``**strong**`` and ``code`` spans. Nothing here produces HTML: the template escapes
every piece of text, so a protocol file cannot inject markup into the page.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from babel import UnknownLocaleError
from babel.lists import format_list
from starlette.responses import Response

from listserv.web.app import Ctx, Page, Problem
from listserv.weekly.topics import language_name

LANGUAGE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{2,8})?", re.IGNORECASE)
INLINE = re.compile(r"\*\*(.+?)\*\*|`([^`]+)`")
FALLBACK = "en"
LANGUAGES_FIELD = "{{ languages }}"

Span = tuple[str, Literal["", "strong", "code"]]


@dataclass
class ProtocolBlock:
    kind: Literal["heading", "paragraph", "list"]
    level: int = 0  # headings: 1–6
    spans: list[Span] | None = None  # heading, paragraph
    items: list[list[Span]] | None = None  # list


def protocol_file(folders: Path | Sequence[Path], wanted: str) -> tuple[str, Path] | None:
    """(language shown, file): ``wanted`` if it has a file, else English; None when neither exists.
    Folders are searched in order (the operator's before the shipped one)."""
    for language in (wanted, FALLBACK):
        if LANGUAGE.fullmatch(language):
            for folder in [folders] if isinstance(folders, Path) else folders:
                path = folder / f"{language}.md"
                if path.is_file():
                    return language, path
    return None


def name_languages(text: str, codes: list[str], language: str) -> str:
    """``{{ languages }}`` in a protocol file → the site's configured languages, named in the file's
    language ("anglais, français et espagnol"): the protocol never names a hard-coded list."""
    names = [language_name(code, language) for code in codes]
    try:
        joined = format_list(names, locale=language)
    except (UnknownLocaleError, ValueError):
        joined = ", ".join(names)
    return text.replace(LANGUAGES_FIELD, joined)


def read_protocol(text: str) -> list[ProtocolBlock]:
    blocks: list[ProtocolBlock] = []
    for chunk in re.split(r"\n\s*\n", text.strip()):
        paragraph: list[str] = []
        items: list[list[str]] = []
        for line in chunk.splitlines():
            stripped = line.strip()
            if stripped.startswith("#"):
                _close(blocks, paragraph, items)
                level = min(len(stripped) - len(stripped.lstrip("#")), 6)
                blocks.append(ProtocolBlock("heading", level, spans_of(stripped.lstrip("#").strip())))
            elif stripped.startswith("- "):
                _close(blocks, paragraph, [])
                items.append([stripped[2:]])
            elif items and line[:1].isspace():
                items[-1].append(stripped)  # an item's continuation line
            else:
                _close(blocks, [], items)
                paragraph.append(stripped)
        _close(blocks, paragraph, items)
    return blocks


def _close(blocks: list[ProtocolBlock], paragraph: list[str], items: list[list[str]]) -> None:
    """Append what was gathered, then empty it; list items separated by blank lines stay one list."""
    if paragraph:
        blocks.append(ProtocolBlock("paragraph", spans=spans_of(" ".join(paragraph))))
    if items:
        found = [spans_of(" ".join(item)) for item in items]
        if blocks and blocks[-1].kind == "list" and blocks[-1].items is not None:
            blocks[-1].items.extend(found)
        else:
            blocks.append(ProtocolBlock("list", items=found))
    paragraph.clear()
    items.clear()


def spans_of(text: str) -> list[Span]:
    spans: list[Span] = []
    start = 0
    for match in INLINE.finditer(text):
        if match.start() > start:
            spans.append((text[start : match.start()], ""))
        spans.append((match[1], "strong") if match[1] is not None else (match[2], "code"))
        start = match.end()
    if start < len(text) or not spans:
        spans.append((text[start:], ""))
    return spans


def protocol_page(ctx: Ctx) -> Response:
    wanted = ctx.param("lang")
    found = protocol_file([folder / "protocol" for folder in ctx.site.settings.site.template_dirs], wanted)
    if found is None:
        raise Problem(404, "http_404")
    language, path = found
    ui = ctx.site.pages.languages.get(language)
    text = name_languages(path.read_text(encoding="utf-8"), ctx.site.settings.languages, language)
    return ctx.render(
        "protocol.html",
        blocks=read_protocol(text),
        language=language,
        direction=ui.direction if ui else "auto",  # a protocol file for a language the UI lacks
        missing=language_name(wanted, ctx.language) if language != wanted else None,
    )


PAGES = [Page("/protocol/{lang}", protocol_page, name="protocol")]

"""Plain-text mail for display (flowed text is undone before, by ``mail.text.unflow``): quoted runs and
the signature told apart, links found. Text is not escaped here: the template gets blocks of lines of
(text, url) segments and escapes them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

URL = re.compile(r"\b(?:https?://|mailto:)[^\s<>\"'`]+", re.IGNORECASE)
URL_TRAILER = ".,;:!?'\")]}"


# (text, url): url is set when the run is an http(s)/mailto link, whose text is the URL itself. Plain
# tuples rather than a NamedTuple: building them is most of the cost of a page, and Jinja unpacks either.
Segment = tuple[str, str | None]
Line = tuple[Segment, ...]
BlockKind = Literal["text", "quote", "signature"]  # quote: folded in <details>; signature: dimmed


@dataclass(frozen=True)
class Block:
    kind: BlockKind
    lines: tuple[Line, ...]


def blocks(lines: list[str]) -> tuple[Block, ...]:
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    cut = next((number for number, line in enumerate(lines) if line == "-- "), len(lines))
    blocks: list[Block] = []
    kind: BlockKind = "text"
    current: list[Line] = []
    for line in lines[:cut]:  # a plain loop: this runs for every line of every page view
        line_kind: BlockKind = "quote" if line[:1] == ">" else "text"
        if line_kind != kind:
            if current:
                blocks.append(Block(kind, tuple(current)))
            kind, current = line_kind, []
        current.append(linkify(line))
    if current:
        blocks.append(Block(kind, tuple(current)))
    if cut < len(lines):
        blocks.append(Block("signature", tuple(linkify(line) for line in lines[cut + 1 :])))
    return tuple(blocks)


def linkify(line: str) -> Line:
    if ":" not in line:  # the common case, and ten times cheaper than the regex loop below
        return ((line, None),)
    segments: list[Segment] = []
    start = 0
    for match in URL.finditer(line):
        url = match.group(0)
        while url and url[-1] in URL_TRAILER and not (url[-1] == ")" and url.count("(") >= url.count(")")):
            url = url[:-1]  # sentence punctuation after a link is not part of it; balanced parens are
        if len(url) <= len("mailto:"):
            continue
        if match.start() > start:
            segments.append((line[start : match.start()], None))
        segments.append((url, url))
        start = match.start() + len(url)
    if start < len(line) or not segments:
        segments.append((line[start:], None))
    return tuple(segments)

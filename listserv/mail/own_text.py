"""The sender's own lines of a mail: what they wrote themselves, with quoted text, attribution lines,
Outlook's header blocks, signatures, mobile footers and attached messages cut away.

Replies carry the text they answer: a moderator's reply quotes the notice, with its code and its
instruction lines ("approve", "reject <reason>"); a member's request quotes the confirmation it
answers. Reading commands from the quote would act on words the sender never wrote, so every reader
of commands starts here. Pure: bytes in, lines out; reads with ``compat32`` like ``message`` and never
raises on bad mail.

Written on the stdlib: mail-parser-reply reads plain text only and strips "Thanks," openers as
signatures; email-reply-parser is English-only and unreleased since 2020; quotequail needs lxml; talon is
unmaintained.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from email.message import Message
from html.parser import HTMLParser

from listserv.mail.text import decode_bytes, unflow

MAX_TEXT_CHARS = 200_000
MAX_MARKER_CHARS = 400  # an attribution or separator line is never longer

QUOTED = re.compile(r"[ \t]*>")
MOBILE_FOOTER = re.compile(
    r"(?:sent from|envoyé (?:de|depuis)|enviado (?:desde|de)|get outlook for|obtenir outlook pour"
    r"|obtener outlook para|von meinem)\b.{0,60}",
    re.IGNORECASE,
)
ORIGINAL_MESSAGE = re.compile(
    r"-{3,}[ \t]*(?:original message|message d'origine|mensaje original|ursprüngliche nachricht"
    r"|forwarded message|message transféré|mensaje reenviado)[ \t]*-{3,}",
    re.IGNORECASE,
)
SEPARATOR = re.compile(r"_{20,}")
OUTLOOK_FROM = re.compile(r"\*?(?:From|De|Von)[ \t]?:")
OUTLOOK_SENT = re.compile(r"\*?(?:Sent|Date|Envoyé|Enviado(?: el)?|Fecha|Gesendet|Datum)[ \t]?:")
ATTRIBUTION_START = re.compile(r"(?:On|Le|El|Am)[ \t]")
ATTRIBUTION_END = re.compile(r"(?:wrote|a[ \t]+écrit|escribió|schrieb\b.*)[ \t]*:$")

BLOCK_TAGS = frozenset(
    {"p", "div", "br", "li", "tr", "table", "ul", "ol", "pre", "blockquote", "h1", "h2", "h3"}
)
NON_TEXT_TAGS = frozenset({"style", "script", "title"})
SKIPPED_TAGS = NON_TEXT_TAGS | {"blockquote"}
QUOTE_CLASSES = frozenset(
    {"gmail_quote", "gmail_quote_container", "moz-cite-prefix", "yahoo_quoted", "protonmail_quote"}
)
CUT_IDS = frozenset({"divrplyfwdmsg", "appendonsend", "mail-editor-reference-message-container"})


def own_blocks(raw: bytes) -> list[list[str]] | None:
    """The sender's own text as runs of stripped lines, top to bottom: text above a quote, then any
    written below it (bottom posting). None when the mail has no readable text; never raises."""
    try:
        text = _body_text(email.message_from_bytes(raw, policy=email.policy.compat32))
        return _own_blocks(text) if text is not None else None
    except Exception:  # hostile input: an unforeseen parser error must not crash the caller's path
        return None


def own_lines(raw: bytes) -> list[str]:
    """The sender's own lines, stripped and in order: quoted text, attributions, signatures, mobile
    footers and attached messages left out; blank lines dropped. Own text written below a quote (bottom
    posting) follows the text above it. Never raises: [] when the mail has no readable text."""
    return [line for block in own_blocks(raw) or [] for line in block if line]


def _own_blocks(text: str) -> list[list[str]]:
    """Runs of own lines between quotes, up to a signature, footer or unquoted original (Outlook)."""
    lines = [line.rstrip() for line in text.split("\n")]
    blocks: list[list[str]] = [[]]
    index = 0
    while index < len(lines):
        line = lines[index]
        if QUOTED.match(line):
            blocks.append([])
            index += 1
            continue
        if line.strip() == "--" or MOBILE_FOOTER.fullmatch(line.strip()):
            break
        start = _quote_start(lines, index)
        if start is None:
            blocks[-1].append(line.strip())
            index += 1
        elif _is_quoted_from(lines, start):  # bottom posting: the ">" lines follow, own text may too
            blocks.append([])
            index = start
        else:
            break
    return [block for block in map(_tidy, blocks) if block]


def _quote_start(lines: list[str], index: int) -> int | None:
    """If ``lines[index]`` opens quoted material (a separator, an attribution), where the quote begins."""
    line = lines[index].strip()
    if len(line) > MAX_MARKER_CHARS:  # keeps the regexes linear on hostile single-line bodies
        return None
    if ORIGINAL_MESSAGE.fullmatch(line) or SEPARATOR.fullmatch(line):
        return index + 1
    if OUTLOOK_FROM.match(line) and any(
        OUTLOOK_SENT.match(next_line.strip()) for next_line in lines[index + 1 : index + 5]
    ):
        return index + 1
    if ATTRIBUTION_START.match(line):
        for end in range(index, min(index + 3, len(lines))):
            if not lines[end].strip():
                return None
            joined = " ".join(part.strip() for part in lines[index : end + 1])
            if len(joined) <= MAX_MARKER_CHARS and ATTRIBUTION_END.search(joined):
                return end + 1
        return None
    return index + 1 if ATTRIBUTION_END.search(line) and _is_quoted_from(lines, index + 1) else None


def _is_quoted_from(lines: list[str], index: int) -> bool:
    following = next((lines[at] for at in range(index, len(lines)) if lines[at].strip()), "")
    return bool(QUOTED.match(following))


def _tidy(block: list[str]) -> list[str]:
    """Without leading, trailing or repeated blank lines."""
    kept = [line for index, line in enumerate(block) if line or (index > 0 and block[index - 1])]
    return kept[:-1] if kept[-1:] == [""] else kept


# --- MIME --------------------------------------------------------------------------------------------


def _body_text(message: Message) -> str | None:
    """The first text/plain part, else the first text/html one as text; None when there is neither."""
    parts = list(_text_parts(message))
    plain = next((part for part in parts if part.get_content_type() == "text/plain"), None)
    html = next((part for part in parts if part.get_content_type() == "text/html"), None)
    if plain is not None:
        return _clean(_part_text(plain))
    return _clean(_html_to_text(_part_text(html))) if html is not None else None


def _text_parts(part: Message) -> Iterator[Message]:
    """Text leaves in order, never inside an attached message/rfc822 nor an attachment."""
    if part.is_multipart() and part.get_content_maintype() != "message":
        for child in part.get_payload():
            if isinstance(child, Message):
                yield from _text_parts(child)
    elif part.get_content_maintype() == "text" and part.get_content_disposition() != "attachment":
        yield part


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    # NULs stay until _clean: dropped here, they would move the size cut and change how HTML tags parse.
    data = payload if isinstance(payload, bytes) else b""
    text = decode_bytes(data, part.get_content_charset(), windows_1252=True, keep_nul=True)
    text = text[:MAX_TEXT_CHARS].replace("\r\n", "\n").replace("\r", "\n")
    if str(part.get_param("format") or "").lower() == "flowed":
        delsp = str(part.get_param("delsp") or "").lower() == "yes"
        return "\n".join(unflow(text.split("\n"), delsp, quote_depth=False))
    return text


def _clean(text: str) -> str:
    return text.replace("\x00", "").replace("\xa0", " ").replace("\u200b", "").replace("\ufeff", "")


class _HtmlText(HTMLParser):
    """HTML → text lines, leaving out quoted blocks and cutting at Outlook's reply header."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.skipping: str | None = None  # the tag whose subtree is being left out
        self.depth = 0
        self.cut = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if self.cut:
            return
        if self.skipping:
            self.depth += 1 if tag == self.skipping else 0
        elif (found.get("id") or "").lower() in CUT_IDS:
            self.cut = True
        elif tag in SKIPPED_TAGS or QUOTE_CLASSES & set((found.get("class") or "").split()):
            self.skipping, self.depth = tag, 1
            if tag not in NON_TEXT_TAGS:  # a quote stays a quote line: text after it is read as own text
                self.chunks.append("\n>\n")
        elif tag == "hr":
            self.chunks.append("\n" + "_" * 32 + "\n")
        elif tag in BLOCK_TAGS:
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if self.skipping and tag == self.skipping:
            self.depth -= 1
            self.skipping = self.skipping if self.depth else None
        elif not (self.cut or self.skipping) and tag in BLOCK_TAGS:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if not (self.cut or self.skipping):
            self.chunks.append(re.sub(r"[ \t\r\n]+", " ", data))


def _html_to_text(html: str) -> str:
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    return "".join(parser.chunks)

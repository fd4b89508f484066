"""A moderator's reply to a notice → the commands it gives. Pure: bytes in, a ``ReplyReading`` out.

Moderators decide by replying from any mail client (mlmmj's release cookie, groups.io's empty-reply
approval, LISTSERV's ``ok``). Only the moderator's own text counts: the notice being quoted holds the code
and the instruction lines themselves ("approve", "reject <reason>", "discard"), so quoted lines,
attribution lines, Outlook's header blocks, signatures and mobile footers are cut away first, and the body
is never looked for inside an attached message (the notice attaches the held post).

Written on the stdlib: mail-parser-reply reads plain text only and strips "Thanks," openers as
signatures; email-reply-parser is English-only and unreleased since 2020; quotequail needs lxml; talon is
unmaintained. Like ``message``, this reads with ``compat32`` and never raises on bad mail.
"""

from __future__ import annotations

import codecs
import email
import email.policy
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from email.message import Message
from html.parser import HTMLParser
from typing import Literal

from listserv.mail.text import fold

Action = Literal["approve", "reject", "discard"]

MAX_TEXT_CHARS = 200_000
MAX_MARKER_CHARS = 400  # an attribution or separator line is never longer
CODE_ALPHABET = frozenset("0123456789ABCDEFGHJKMNPQRSTVWXYZ")  # Crockford base32
CROCKFORD_ALIASES = str.maketrans("OIL", "011")
CODE_INPUT = re.compile(r"([0-9A-Z]{5})(?:-|[ \t]+)?([0-9A-Z]{5})(?:-|[ \t]+)?([0-9A-Z]{5})")
TAGGED_CODE = re.compile(r"\[#([^\]]{15,25})\]")
# In free text only the dashed form counts: "Hello world again" has the spaced shape of a valid code.
DASHED_CODE = re.compile(
    r"(?<![0-9A-Za-z])(?<![0-9A-Za-z]-)[0-9A-Za-z]{5}-[0-9A-Za-z]{5}-[0-9A-Za-z]{5}(?!-?[0-9A-Za-z])"
)
CODE_AT_START = re.compile(
    r"[\[(<#]*(?P<code>[0-9A-Za-z]{5}(?P<sep>-|[ \t]*)[0-9A-Za-z]{5}(?P=sep)[0-9A-Za-z]{5})[\])>]*"
    r"(?!-?[0-9A-Za-z])"
)
COMMAND_LINE = re.compile(r"\W*(\w(?:[\w'’-]*\w)?)(.*)", re.DOTALL)
SEPARATORS = " \t:;,.!?-–—"

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


@dataclass(frozen=True)
class Command:
    action: Action
    code: str | None  # written on the command line itself, normalised; None: the address's or Subject's
    reason: str = ""  # the rest of the line after a reject (and after its code), stripped


@dataclass(frozen=True)
class ReplyReading:
    commands: tuple[Command, ...]  # empty when nothing was understood
    own_text: str  # the moderator's own (unquoted) text, for logs and error replies
    understood: bool  # False: the first own line is not a command (nothing must be decided)


NOT_UNDERSTOOD = ReplyReading((), "", False)


def normalise_code(text: str) -> str | None:
    """'k7qxm 2pab9-zt4hd' → 'K7QXM-2PAB9-ZT4HD'; O reads as 0, I and L as 1; None if not a code."""
    match = CODE_INPUT.fullmatch(text.strip().upper())
    if match is None:
        return None
    groups = [group.translate(CROCKFORD_ALIASES) for group in match.groups()]
    return "-".join(groups) if all(set(group) <= CODE_ALPHABET for group in groups) else None


TRAILING_PUNCTUATION = " .!,;:"
WEEK = re.compile(r"\d{4}-W(0[1-9]|[1-4]\d|5[0-3])")


def find_code(text: str) -> str | None:
    """The first code in a Subject ('Re: [#K7QXM-2PAB9-ZT4HD] …') or an address: a tagged one first."""
    candidates = [*TAGGED_CODE.findall(text), *DASHED_CODE.findall(text)]
    return next((code for code in map(normalise_code, candidates) if code), None)


def read_reply(raw: bytes, vocabulary: Mapping[str, Action], standalone: Iterable[str] = ()) -> ReplyReading:
    """Never raises: mail that cannot be read is not understood, and so decides nothing.
    ``standalone`` words (casual ones: ok, yes, oui, sí) decide only when nothing follows them."""
    try:
        text = _body_text(email.message_from_bytes(raw, policy=email.policy.compat32))
        if text is None:
            return NOT_UNDERSTOOD
        blocks = _own_blocks(text)
        words = {fold(word): action for word, action in vocabulary.items()}
        alone = frozenset(map(fold, standalone))
        commands, understood = _decide([line for line in blocks[0] if line] if blocks else [], words, alone)
    except Exception:  # hostile input: an unforeseen parser error must not crash the moderation path
        return NOT_UNDERSTOOD
    return ReplyReading(commands, "\n\n".join("\n".join(block) for block in blocks), understood)


def own_lines(raw: bytes) -> list[str]:
    """The sender's own lines, stripped and in order, as ``read_reply`` sees them: quoted text,
    attributions, signatures, mobile footers and attached messages left out; blank lines dropped.
    Own text written below a quote (bottom posting) follows the text above it. Never raises: [] when
    the mail has no readable text."""
    try:
        text = _body_text(email.message_from_bytes(raw, policy=email.policy.compat32))
        blocks = _own_blocks(text) if text is not None else []
    except Exception:  # hostile input, as in read_reply
        return []
    return [line for block in blocks for line in block if line]


def _decide(
    lines: list[str], words: Mapping[str, Action], standalone: frozenset[str]
) -> tuple[tuple[Command, ...], bool]:
    """The first own line decides; when it names a code, each later line naming one adds a decision."""
    if not lines:
        return (Command("approve", None),), True  # an empty reply approves
    first = _read_command(lines[0], words, standalone)
    if first is None:
        return (), False
    if first.code is None:
        return (first,), True
    more = (_read_command(line, words, standalone) for line in lines[1:])
    return (first, *(command for command in more if command and command.code)), True


def _read_command(line: str, words: Mapping[str, Action], standalone: frozenset[str]) -> Command | None:
    match = COMMAND_LINE.match(line)
    action = words.get(fold(match[1])) if match else None
    if match is None or action is None:
        return None
    code, rest = _take_code(match[2].lstrip(SEPARATORS))
    rest = rest.strip().lstrip(SEPARATORS).strip()
    if fold(match[1]) in standalone and rest.strip(TRAILING_PUNCTUATION):
        # "OK, I'll look at it tomorrow" is no approval: the casual words (ok, yes, oui, sí) decide
        # only alone on their line; "approve, thanks" does. Not understood costs one more reply;
        # a wrong approval is sent to every member.
        return None
    if action == "approve" and WEEK.fullmatch(rest.strip(TRAILING_PUNCTUATION)):
        return Command(
            action, code, rest.strip(TRAILING_PUNCTUATION)
        )  # "approve 2026-W50": a proposal's week
    return Command(action, code, rest if action == "reject" else "")


def _take_code(text: str) -> tuple[str | None, str]:
    """A code opening ``text``, and what follows it. Undashed codes need a digit, so words are not codes."""
    match = CODE_AT_START.match(text)
    if match is None or (match["sep"] != "-" and not any(char.isdigit() for char in match["code"])):
        return None, text
    code = normalise_code(match["code"])
    return (code, text[match.end() :]) if code else (None, text)


# --- the moderator's own text ----------------------------------------------------------------------


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
    text = _decode_bytes(payload if isinstance(payload, bytes) else b"", part.get_content_charset())
    text = text[:MAX_TEXT_CHARS].replace("\r\n", "\n").replace("\r", "\n")
    if str(part.get_param("format") or "").lower() == "flowed":
        return _unflow(text, delete_space=str(part.get_param("delsp") or "").lower() == "yes")
    return text


def _decode_bytes(data: bytes, charset: str | None) -> str:
    """Declared charset (ISO-8859-1 read as its superset windows-1252), else UTF-8, else Latin-1."""
    if charset in ("iso-8859-1", "latin-1", "latin1"):
        charset = "windows-1252"
    for candidate in (charset, "utf-8"):
        try:
            if candidate:
                codecs.lookup(candidate)
                return data.decode(candidate)
        except (LookupError, UnicodeError):
            continue
    return data.decode("latin-1")


def _unflow(text: str, delete_space: bool) -> str:
    """RFC 3676: join soft line breaks (a line ending in a space), so a wrapped reason reads whole."""
    pieces: list[str] = []
    previous: str | None = None
    for line in text.split("\n"):
        line = line[1:] if line.startswith(" ") else line  # space-stuffing
        if previous is not None:
            soft = _is_soft_break(previous, line)
            pieces[-1] = pieces[-1][:-1] if soft and delete_space else pieces[-1]
            pieces.append("" if soft else "\n")
        pieces.append(line)
        previous = line
    return "".join(pieces)


def _is_soft_break(previous: str, line: str) -> bool:
    """Quoted lines are left as they are: they are never read."""
    return previous.endswith(" ") and previous != "-- " and ">" not in (previous[:1], line[:1])


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

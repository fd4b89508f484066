"""A moderator's reply to a notice → the commands it gives. Pure: bytes in, a ``ReplyReading`` out.

Moderators decide by replying from any mail client (mlmmj's release cookie, groups.io's empty-reply
approval, LISTSERV's ``ok``). Only the moderator's own text counts: the notice being quoted holds the code
and the instruction lines themselves ("approve", "reject <reason>", "discard"), so ``mail.own_text``
cuts away quoted lines, attributions, Outlook's header blocks, signatures, mobile footers and attached
messages (the notice attaches the held post) first. Never raises on bad mail.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Literal

from listserv.mail.own_text import own_blocks
from listserv.mail.text import fold

Action = Literal["approve", "reject", "discard"]

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
# Decisions one reply may carry: more than a moderator clears at once, few enough that a forged reply
# of 25 MB of "approve CODE" lines cannot keep the worker (and every post behind it) busy for hours.
MAX_COMMANDS = 100
COMMAND_LINE = re.compile(r"\W*(\w(?:[\w'’-]*\w)?)(.*)", re.DOTALL)
OPENING = ("Ps", "Pi")  # an opening bracket or quote begins a reason or a code: kept
# Chinese and Japanese: a command word may be followed by its reason with no space in between.
CJK_WORD = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


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


WEEK = re.compile(r"\d{4}-W(0[1-9]|[1-4]\d|5[0-3])")


def find_code(text: str) -> str | None:
    """The first code in a Subject ('Re: [#K7QXM-2PAB9-ZT4HD] …') or an address: a tagged one first."""
    candidates = [*TAGGED_CODE.findall(text), *DASHED_CODE.findall(text)]
    return next((code for code in map(normalise_code, candidates) if code), None)


def read_reply(raw: bytes, vocabulary: Mapping[str, Action], standalone: Iterable[str] = ()) -> ReplyReading:
    """Never raises: mail that cannot be read is not understood, and so decides nothing.
    ``standalone`` words (casual ones: ok, yes, oui, sí) decide only when nothing follows them."""
    try:
        blocks = own_blocks(raw)
        if blocks is None:
            return NOT_UNDERSTOOD
        words = {fold(word): action for word, action in vocabulary.items()}
        alone = frozenset(map(fold, standalone))
        commands, understood = _decide([line for line in blocks[0] if line] if blocks else [], words, alone)
    except Exception:  # hostile input: an unforeseen parser error must not crash the moderation path
        return NOT_UNDERSTOOD
    return ReplyReading(commands, "\n\n".join("\n".join(block) for block in blocks), understood)


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
    coded = islice((command for command in more if command and command.code), MAX_COMMANDS - 1)
    return (first, *coded), True


def _read_command(line: str, words: Mapping[str, Action], standalone: frozenset[str]) -> Command | None:
    match = COMMAND_LINE.match(line)
    if match is None:
        return None
    word, rest = _known_word(match[1], match[2], words)
    action = words.get(word) if word else None
    if action is None:
        return None
    code, rest = _take_code(_strip_punctuation(rest))
    rest = _strip_punctuation(rest)
    if word in standalone and _strip_punctuation(rest, trailing=True):
        # "OK, I'll look at it tomorrow" is no approval: the casual words (ok, yes, oui, sí) decide
        # only alone on their line; "approve, thanks" does. Not understood costs one more reply;
        # a wrong approval is sent to every member.
        return None
    if action == "approve" and WEEK.fullmatch(_strip_punctuation(rest, trailing=True)):
        return Command(action, code, _strip_punctuation(rest, trailing=True))  # "approve 2026-W50": a week
    return Command(action, code, rest if action == "reject" else "")


def _known_word(first: str, rest: str, words: Mapping[str, Action]) -> tuple[str | None, str]:
    """The command word opening the line (folded) and what follows it. Chinese and Japanese are written
    without spaces ("拒绝超出范围": reject, off topic), so there the longest known word that begins the
    run of characters is the command, and the rest of the run is the text after it."""
    folded = fold(first)
    if folded in words:
        return folded, rest
    if not CJK_WORD.match(folded):
        return None, rest
    known = max(
        (word for word in words if folded.startswith(word) and CJK_WORD.match(word)), key=len, default=""
    )
    return (known, folded[len(known) :] + rest) if known else (None, rest)


def _strip_punctuation(text: str, trailing: bool = False) -> str:
    """``text`` without the spaces and punctuation of any script before it ("，理由" → "理由", "، السبب"),
    and with ``trailing`` after it too ("好的。" leaves nothing)."""
    start, end = 0, len(text)
    while start < end and _is_separator(text[start], OPENING):
        start += 1
    while trailing and end > start and _is_separator(text[end - 1], ()):
        end -= 1
    return text[start:end].strip()


def _is_separator(char: str, kept: tuple[str, ...]) -> bool:
    category = unicodedata.category(char)
    return char.isspace() or (category[0] in "PZ" and category not in kept)


def _take_code(text: str) -> tuple[str | None, str]:
    """A code opening ``text``, and what follows it. Undashed codes need a digit, so words are not codes."""
    match = CODE_AT_START.match(text)
    if match is None or (match["sep"] != "-" and not any(char.isdigit() for char in match["code"])):
        return None, text
    code = normalise_code(match["code"])
    return (code, text[match.end() :]) if code else (None, text)

"""A moderator's reply to a notice → the commands it gives. Pure: bytes in, a ``ReplyReading`` out.

Moderators decide by replying from any mail client (mlmmj's release cookie, groups.io's empty-reply
approval, LISTSERV's ``ok``). Only the moderator's own text counts: the notice being quoted holds the code
and the instruction lines themselves ("approve", "reject <reason>", "discard"), so ``mail.own_text``
cuts away quoted lines, attributions, Outlook's header blocks, signatures, mobile footers and attached
messages (the notice attaches the held post) first. Never raises on bad mail.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
COMMAND_LINE = re.compile(r"\W*(\w(?:[\w'’-]*\w)?)(.*)", re.DOTALL)
SEPARATORS = " \t:;,.!?-–—"


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

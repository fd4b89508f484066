"""Mail to ``<list>-owner@`` → a focal point's commands: ``nominate EMAIL NAME`` and ``withdraw EMAIL``.
Pure: bytes in, commands out; never raises on bad mail.

Only the sender's own lines count (``mail.own_text``), one command per line; a line is a command when it
opens with a word of ``templates/mail/<lang>/owner.yaml`` (any configured language, compared folded)
followed by an address. A name may end with a member state's code in brackets, "Ana Pérez (CL)": the
focal point then says which state the nominee serves, and it must be their own. A mail without any
command is not ours: it goes to the moderators as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from listserv.mail.addresses import normalise_address
from listserv.mail.own_text import own_lines
from listserv.mail.text import clean_text, fold

Verb = Literal["nominate", "withdraw"]
VERBS: tuple[Verb, ...] = get_args(Verb)
MAX_COMMANDS = 20
STATE_SUFFIX = re.compile(r"[\(\[]\s*([A-Za-z]{2})\s*[\)\]]\s*$")


@dataclass(frozen=True)
class OwnerCommand:
    verb: Verb
    address: str | None  # None: the line names no valid address (told as such)
    written: str  # the address as written, for the answer
    name: str = ""
    country: str = ""  # the state written after the name, "(CL)": upper case, not yet checked


def vocabulary_from(catalogues: Iterable[Mapping[str, object]]) -> dict[str, Verb]:
    """Parsed ``owner.yaml`` files → folded word → verb; the English verbs always work."""
    found: dict[str, Verb] = {verb: verb for verb in VERBS}
    for catalogue in catalogues:
        for verb in VERBS:
            words = catalogue.get(verb)
            for word in words if isinstance(words, list) else []:
                if isinstance(word, str) and word.strip():
                    found.setdefault(fold(word.strip()), verb)
    return found


def first_words(catalogue: Mapping[str, object]) -> dict[str, str]:
    """The word a template shows for each verb, in one language (English where it has none)."""
    shown = {}
    for verb in VERBS:
        words = catalogue.get(verb)
        strings = [w for w in words if isinstance(w, str)] if isinstance(words, list) else []
        shown[verb] = strings[0] if strings else verb
    return shown


def read_commands(raw: bytes, vocabulary: Mapping[str, Verb]) -> list[OwnerCommand]:
    try:
        found = (read_line(line, vocabulary) for line in own_lines(raw))
        return [command for command in found if command is not None][:MAX_COMMANDS]
    except Exception:  # hostile input: not a command is the harmless reading (the mail is forwarded)
        return []


def read_line(line: str, vocabulary: Mapping[str, Verb]) -> OwnerCommand | None:
    """``nominate ana@example.org Ana Pérez (CL)`` → its command; None when the line is not one."""
    word, _, rest = line.strip().partition(" ")
    verb = vocabulary.get(fold(word.rstrip(":")))
    if verb is None or not rest.strip():
        return None
    written, _, name = rest.strip().partition(" ")
    written = written.strip("<>,;")
    name = clean_text(name)  # the member's name in notices and pages: no escape sequence or control
    country = ""
    suffix = STATE_SUFFIX.search(name)
    if suffix:
        country, name = suffix[1].upper(), name[: suffix.start()].strip()
    return OwnerCommand(verb, normalise_address(written), written, name, country)

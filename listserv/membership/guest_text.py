"""Reading ``invite EMAIL NAME`` in a member's mail to ``<list>-owner@`` (pure: no database, no clock).

The word is any of ``invite`` in ``guests.yaml`` of the list's language, or English; compared without case
or accents. Only the sender's own lines count (quotes and signatures are cut by ``mail/own_text``), so a
quoted invitation in a reply is not read again."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from listserv.mail.addresses import normalise_address
from listserv.mail.own_text import own_lines
from listserv.mail.text import clean_text, fold

MAX_NAME = 200


@dataclass(frozen=True)
class Invitation:
    """One ``invite`` line: ``address`` None when what follows the word is not one valid address."""

    line: str
    address: str | None
    name: str


def invite_words(catalogues: Iterable[Mapping[str, object]]) -> frozenset[str]:
    """Every word for ``invite`` in these catalogues, folded (lowercase, no accents)."""
    words: set[str] = set()
    for catalogue in catalogues:
        found = catalogue.get("invite")
        if isinstance(found, list):
            words.update(fold(str(word)).strip() for word in found if str(word).strip())
    return frozenset(words)


def read_invitations(raw: bytes, words: frozenset[str]) -> list[Invitation]:
    """The ``invite`` lines of the sender's own text, in order."""
    found = []
    for line in own_lines(raw):
        first, _, rest = line.strip().partition(" ")
        if fold(first).rstrip(":") not in words:
            continue
        token, _, name = rest.strip().partition(" ")
        address = normalise_address(token.strip("<>,;"))
        found.append(Invitation(line.strip(), address, clean_text(name).strip()[:MAX_NAME]))
    return found

"""Email address syntax and the list address grammar.

flanker's addresslib is used here and only here (plus ``message.py``), and only its offline parser:
its remote validation blocks on DNS and probes port 25.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import getaddresses
from enum import StrEnum

from flanker.addresslib import address as flanker_address

# flanker's lexer logs a warning for every address it cannot read; we report those ourselves.
logging.getLogger("flanker").setLevel(logging.ERROR)


class Kind(StrEnum):
    """What mail to a given address is for (ARCHITECTURE.md, "Address grammar")."""

    POST = "post"
    REQUEST = "request"
    OWNER = "owner"
    MODERATE = "moderate"
    PROPOSE = "propose"
    BOUNCES = "bounces"
    POSTMASTER = "postmaster"


# Suffixes that take a "+DETAIL" (a reply code or a VERP token).
DETAILED = {Kind.MODERATE, Kind.BOUNCES}
SITE_ADDRESSES = {"postmaster": Kind.POSTMASTER}


@dataclass(frozen=True)
class Recipient:
    """A classified local recipient: ``ta-en-moderate+CODE@`` → (ta-en, MODERATE, CODE)."""

    list_name: str | None
    kind: Kind
    detail: str | None = None


def normalise_address(text: str) -> str | None:
    """``Bob <Bob@Example.ORG>`` → ``Bob@example.org``; None when it is not one valid address.

    Syntax only (RFC 5321/5322, flanker's strict parser): intranet domains (``.internal``, ``.lan``,
    ``.test``) are real here, so no list of public top-level domains is consulted. The domain needs a
    dot, and an RFC 2047 encoded word is never an address (§5), even where its characters would parse.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    parsed = flanker_address.parse(text.strip(), strict=True)
    if not isinstance(parsed, flanker_address.EmailAddress):
        return None
    address = str(parsed.address)
    domain = address.rpartition("@")[2]
    if "=?" in address or "." not in domain.strip(".") or domain.endswith("."):
        return None
    return address


def parse_mailboxes(header_value: str) -> list[tuple[str, str]]:
    """A From/To/Cc value → [(display name as written, normalised address)], skipping what is not an
    address. Give it the header as written, not decoded: an encoded display name may hold anything,
    "<x@evil.net>" included, and must never be read as an address (RFC 2047 §5).

    The stdlib splits the list (flanker's parse_list drops every entry if one is bad); flanker checks
    each address.
    """
    found = []
    for name, addr_spec in getaddresses([" ".join(header_value.split())]):
        address = normalise_address(addr_spec)
        if address is not None:
            found.append((name, address))
    return found


class AddressBook:
    """The local parts this site answers for, built once from the list names."""

    def __init__(self, domain: str, list_names: Iterable[str]) -> None:
        self.domain = domain.lower()
        self._exact: dict[str, Recipient] = {
            local: Recipient(None, kind) for local, kind in SITE_ADDRESSES.items()
        }
        for name in list_names:
            self._exact[name.lower()] = Recipient(name, Kind.POST)
            for kind in Kind:
                if kind not in (Kind.POST, Kind.POSTMASTER):
                    self._exact[f"{name.lower()}-{kind.value}"] = Recipient(name, kind)

    def addresses(self) -> list[str]:
        """Every address this site answers for, without ``+detail`` (what an MTA's recipient map lists)."""
        return sorted(f"{local}@{self.domain}" for local in self._exact)

    def is_local_domain(self, address: str) -> bool:
        return address.rpartition("@")[2].lower() == self.domain

    def classify(self, address: str) -> Recipient | None:
        """The recipient an envelope address names, or None when it is not one of ours."""
        local, at, domain = address.strip("<>").rpartition("@")
        if not at or domain.lower() != self.domain:
            return None
        base, plus, detail = local.lower().partition("+")
        found = self._exact.get(base)
        if found is None:
            return None
        if plus:
            if found.kind not in DETAILED or not detail:
                return None
            # The code keeps the case the sender typed; codes are compared case-insensitively later.
            return Recipient(found.list_name, found.kind, local.partition("+")[2])
        return found

    def list_id(self, list_name: str) -> str:
        """The RFC 2919 list identifier: ``ta-en.forum.example.org``."""
        return f"{list_name}.{self.domain}"

    @property
    def loop_marker(self) -> str:
        """Our X-Loop value: mail carrying it came from us."""
        return f"listserv@{self.domain}"

    def address_of(self, list_name: str, kind: Kind = Kind.POST, detail: str | None = None) -> str:
        local = list_name if kind is Kind.POST else f"{list_name}-{kind.value}"
        if detail:
            local += f"+{detail}"
        return f"{local}@{self.domain}"

"""Email address syntax and the list address grammar.

flanker's addresslib is used here and only here (plus ``message.py``), and only its offline parser:
its remote validation blocks on DNS and probes port 25. We call that parser (``flanker.addresslib._parser``,
pinned with flanker 0.9.11) as ``flanker.addresslib.address.parse(text, strict=True)`` does and keep only
the address: importing ``address`` also imports flanker's MIME package, webob, chardet and tld — ~17 MB
of a serve's 94 and a quarter of a second of its start, for display names we never read.
``tests/test_addresses.py`` checks that both give the same address.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import getaddresses
from enum import StrEnum
from functools import lru_cache

import idna
from flanker.addresslib._parser.lexer import lexer
from flanker.addresslib._parser.parser import Mailbox, mailbox_or_url_parser
from ply.lex import LexError
from ply.yacc import YaccError

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


MAX_FLANKER_INPUT = 1024  # flanker.addresslib.address.MAX_ADDRESS_LENGTH

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
    address = _flanker_address(text.strip())
    if address is None:
        return None
    domain = address.rpartition("@")[2]
    if "=?" in address or "." not in domain.strip(".") or domain.endswith("."):
        return None
    return address


def _flanker_address(text: str) -> str | None:
    """``flanker.addresslib.address.parse(text, strict=True).address`` when that is an ``EmailAddress``,
    else None: the same parser and lexer, the same checks of the host name (lowercased; IDNA must read
    it), the same limit of 1,024 characters."""
    if not text or len(text) > MAX_FLANKER_INPUT:
        return None
    try:
        parsed = mailbox_or_url_parser.parse(text, lexer=lexer.clone())
    except (LexError, YaccError, SyntaxError):
        return None
    if not isinstance(parsed, Mailbox):
        return None  # nothing, or a URL
    hostname = str(parsed.domain).lower()
    try:
        if hostname.startswith("xn--") or ".xn--" in hostname:
            hostname = idna.decode(hostname)
        if not hostname.isascii():
            idna.encode(hostname)
    except (UnicodeError, idna.IDNAError):
        return None
    return f"{parsed.local_part}@{hostname}"


def parse_mailboxes(header_value: str) -> list[tuple[str, str]]:
    """A From/To/Cc value → [(display name as written, normalised address)], skipping what is not an
    address. Give it the header as written, not decoded: an encoded display name may hold anything,
    "<x@evil.net>" included, and must never be read as an address (RFC 2047 §5).

    The stdlib splits the list (flanker's parse_list drops every entry if one is bad); flanker checks
    each address.
    """
    return list(_mailboxes(" ".join(header_value.split())))


# An RFC 2047 encoded word as a sender may write it: anything but white space between =? and ?=.
ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[^?\s]+\?[^\s]*?\?=")


def _quoted(word: re.Match[str]) -> str:
    return '"' + word[0].replace("\\", "\\\\").replace('"', '\\"') + '"'


def encoded_words_quoted(header_value: str) -> str:
    """An address header as written, each encoded word made a quoted string: give this, never the
    raw value, to ``getaddresses`` (an encoded word is never an address, RFC 2047 §5)."""
    return ENCODED_WORD.sub(_quoted, header_value)


@lru_cache(maxsize=4096)
def _mailboxes(header_value: str) -> tuple[tuple[str, str], ...]:
    """Cached: the same few From headers come back again and again (an archive import parses each
    poster's once, not once per message), and flanker's check is the costly part.

    Each encoded word is read as a quoted string first: its characters stay one display-name token,
    so ``=?utf-8?q?Hi=0D=0ABcc:_x@evil.example?=`` can neither open a group at its ``:`` nor hand
    the stdlib the address ``_x@evil.example…`` (the name is unquoted again by ``getaddresses``)."""
    found = []
    for name, addr_spec in getaddresses([encoded_words_quoted(header_value)]):
        address = normalise_address(addr_spec)
        if address is not None:
            found.append((name, address))
    return tuple(found)


def loggable(addresses: Iterable[str]) -> str:
    """Envelope recipients for a log line, each ``+detail`` hidden: after the ``+`` of ``-moderate`` is
    a reply code that decides a held post, after the one of ``-bounces`` a token; logs are read by more
    people, for longer, than the moderators' mailboxes."""
    shown = []
    for address in addresses:
        local, at, domain = address.rpartition("@")
        base, plus, _ = local.partition("+")
        shown.append(f"{base}+…@{domain}" if plus and at else address)
    return ", ".join(shown)


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
        if not at and domain.lower() in SITE_ADDRESSES:  # RFC 5321 4.5.1: <Postmaster> needs no domain
            return Recipient(None, SITE_ADDRESSES[domain.lower()])
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

"""Reading mailbox files for ``listserv import mbox``. Pure: bytes in, messages out.

One reader for every flavour met when moving in: mboxo and mboxrd (one level of ``>From `` quoting is
undone, RFC 4155), gzip-compressed or not (detected by its magic bytes, so ``.txt.gz`` from Mailman 2's
pipermail and a plain ``.mbox`` are opened alike), Google Takeout's CRLF lines and ``From 12345@xxx``
separators, HyperKitty's export. The stdlib's ``mailbox.mbox`` was not used: it reads only an
uncompressed file by name, indexes the whole file before the first message, and never undoes mboxrd.

Mailman 2's pipermail hides addresses as ``jane at example.org``; ``unhide_addresses`` puts the ``@``
back in the From header (only there: the body is kept as archived).
"""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # a date for a message that gives none at all
QUOTED_FROM = re.compile(rb"^>(>*From )")
HIDDEN_FROM = re.compile(rb"^(From:[ \t]*)([^\s@<>()]+) at ([^\s@<>()]+\.[^\s@<>()]+)", re.I | re.M)
HEADER_END = re.compile(rb"\r?\n\r?\n")
ENVELOPE_DATE = re.compile(
    rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) +(\w{3}) +(\d{1,2}) (\d\d:\d\d:\d\d)"
    rb"(?: [+-]\d{4}| [A-Z]{3,4})? (\d{4})"
)
RECEIVED_DATE = re.compile(rb";\s*([^;\r\n]+(?:\r?\n[ \t][^\r\n]*)*)\s*$")


@dataclass(frozen=True)
class MboxMessage:
    raw: bytes
    envelope: bytes  # the ``From `` line, without its end of line
    position: int  # 1-based order in the file


def decompressed(handle: BinaryIO) -> BinaryIO:
    """The file's bytes, decompressed when it is gzip whatever its name (``handle`` stays the one to
    ask how far the reading is: ``tell()`` on it counts the compressed bytes read)."""
    magic = handle.read(2)
    handle.seek(0)
    if magic == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=handle, mode="rb")  # type: ignore[return-value]
    return handle


def read_mbox(stream: BinaryIO) -> Iterator[MboxMessage]:
    """Messages one at a time, in file order; memory holds one message. Text before the first
    separator (none in a well-formed file) is ignored."""
    envelope: bytes | None = None
    lines: list[bytes] = []
    blank_before = True
    position = 0
    for line in stream:
        if blank_before and line.startswith(b"From ") and is_separator(line):
            if envelope is not None:
                position += 1
                yield MboxMessage(_finish(lines), envelope, position)
            envelope, lines = line.rstrip(b"\r\n"), []
        elif envelope is not None:
            lines.append(QUOTED_FROM.sub(rb"\1", line) if line.startswith(b">") else line)
        blank_before = line in (b"\n", b"\r\n")
    if envelope is not None:
        yield MboxMessage(_finish(lines), envelope, position + 1)


def is_separator(line: bytes) -> bool:
    """A ``From `` line that carries a date, as every writer puts there: a body line that a careless
    writer left unquoted ("From the minutes, …") after a blank line stays in its message."""
    return ENVELOPE_DATE.search(line) is not None


def _finish(lines: list[bytes]) -> bytes:
    """The separator's blank line belongs to the file, not the message."""
    if lines and lines[-1] in (b"\n", b"\r\n"):
        lines.pop()
    return b"".join(lines)


def unhide_addresses(raw: bytes) -> bytes:
    """pipermail's ``From: jane at example.org (Jane)`` → ``From: jane@example.org (Jane)``."""
    end = HEADER_END.search(raw)
    split = end.start() if end else len(raw)
    head = raw[:split]
    if b" at " not in head:
        return raw
    return HIDDEN_FROM.sub(rb"\1\2@\3", head) + raw[split:]


def synthetic_message_id(raw: bytes) -> str:
    """A deterministic Message-ID for a message that has none: the same bytes give the same id, so a
    second import recognises it."""
    return f"<{hashlib.sha256(raw).hexdigest()[:40]}@imported.invalid>"


def with_message_id(raw: bytes, message_id: str) -> bytes:
    newline = b"\r\n" if b"\r\n" in raw[:1000] else b"\n"
    return b"Message-ID: " + message_id.encode("ascii") + newline + raw


def received_date(raw: bytes) -> datetime | None:
    """The time the newest ``Received:`` header records (after its last ``;``), when one parses."""
    end = HEADER_END.search(raw)
    head = raw[: end.start() if end else len(raw)]
    for match in re.finditer(rb"^Received:(.*(?:\r?\n[ \t].*)*)", head, re.I | re.M):
        found = RECEIVED_DATE.search(match.group(1))
        moment = _date(found.group(1)) if found else None
        if moment is not None:
            return moment
    return None


def envelope_date(envelope: bytes) -> datetime | None:
    """The asctime date of a ``From sender Mon Jan  1 10:00:00 2001`` line (the sender may hold spaces:
    pipermail writes ``jane at example.org``; Takeout puts ``+0000`` before the year)."""
    found = ENVELOPE_DATE.search(envelope)
    if found is None:
        return None
    try:
        moment = datetime.strptime(
            " ".join(part.decode("ascii") for part in found.groups()), "%b %d %H:%M:%S %Y"
        )
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC)


def _date(value: bytes) -> datetime | None:
    try:  # OverflowError: a huge zone offset, or year 1 moved to UTC
        moment = parsedate_to_datetime(b" ".join(value.split()).decode("ascii", "replace"))
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None

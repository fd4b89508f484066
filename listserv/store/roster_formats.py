"""Member lists in other shapes than our CSV: read from GNU Mailman, written back as our CSV.

- Mailman 3's ``mailman members LIST`` and Mailman 2's ``list_members -f LIST`` print one member a line,
  ``Jane Doe <jane@example.org>`` or a bare ``jane@example.org``; the address is taken by
  ``mail.addresses.parse_mailboxes`` (the stdlib's RFC 5322 split, flanker's check; it reads
  ``"Doe, Jane" <…>`` too), then checked like a CSV row (``directory.check_row``), so the import is as
  all-or-nothing as the CSV: every bad line is a ``line N: reason`` and nothing is imported until there
  are none. The lists come from ``--lists``.
- ``csv_rows`` writes the members as ``members import`` reads them, header first: exported, re-imported
  as is, nothing changes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

from listserv.config import Settings
from listserv.mail.addresses import parse_mailboxes
from listserv.mail.text import decode_header
from listserv.store.directory import (
    CSV_HEADER,
    OPTIONAL_COLUMNS,
    ROLES,
    MemberRow,
    RosterError,
    check_row,
    email_key,
)
from listserv.store.models import Member


def read_mailman(text: str, lists: str, settings: Settings) -> list[MemberRow]:
    """``Name <address>`` or ``address`` per line (blank lines and ``#`` comments ignored)."""
    rows: list[MemberRow] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        written = line.strip()
        if not written or written.startswith("#"):
            continue
        found = parse_mailboxes(written)
        if len(found) != 1:
            problems.append(f"line {number}: {written!r} is not one 'Name <address>' or address")
            continue
        name, address = found[0]
        try:
            row = check_row(
                {"email": address, "name": decode_header(name.strip(), []), "lists": lists}, settings
            )
        except ValueError as error:
            problems.append(f"line {number}: {error}")
            continue
        if email_key(row.email) in seen:
            problems.append(
                f"line {number}: {row.email} already appears on line {seen[email_key(row.email)]}"
            )
            continue
        seen[email_key(row.email)] = number
        rows.append(row)
    if not lists.strip():
        problems.insert(0, "--lists is required with --format mailman (e.g. --lists 'ta-en;ta-fr')")
    if problems:
        raise RosterError(problems)
    return rows


def csv_rows(members: Iterable[tuple[Member, list[str], str]]) -> Iterator[str]:
    """(member, their lists, their delivery) → our import CSV, one line at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*CSV_HEADER, *OPTIONAL_COLUMNS])
    for member, lists, delivery in members:
        role = member.role if member.role in ROLES else "delegate"
        writer.writerow(
            [
                member.email,
                member.name,
                member.country,
                ";".join(lists),
                role,
                delivery,
                member.language or "",
                member.affiliation,
            ]
        )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()

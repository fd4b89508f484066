"""``members import FILE --format csv|mailman [--lists L]``: which reader, and how its rows apply.

Our CSV states every field and every list of a member (their lists become exactly the row's). A Mailman
roster names only people for the lists given with ``--lists``: a member we know already gains those
lists and keeps everything else (their other lists, country, role, delivery, name).
"""

from __future__ import annotations

import argparse
from typing import Any

from listserv.config import Settings
from listserv.store import directory
from listserv.store.roster_formats import read_mailman


def add_format_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=["csv", "mailman"],
        default="csv",
        help="csv (our header) or mailman: 'Name <address>' per line, as Mailman 3's 'mailman members' "
        "and Mailman 2's 'list_members -f' print them",
    )
    parser.add_argument("--lists", default="", help="with --format mailman: the lists, e.g. 'ta-en;ta-fr'")


def read_members(text: str, args: argparse.Namespace, settings: Settings) -> list[directory.MemberRow]:
    """The rows, or RosterError with every bad line."""
    if args.format == "mailman":
        return read_mailman(text, args.lists, settings)
    if args.lists:
        raise directory.RosterError(["--lists goes with --format mailman; a CSV names each member's lists"])
    return directory.read_roster(text, settings)


def apply_options(args: argparse.Namespace) -> dict[str, Any]:
    if args.format == "mailman":
        return {"exact_lists": False, "only": frozenset()}
    return {}

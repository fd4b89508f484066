"""``listserv stats``: participation figures per period and list, as a table, CSV or JSON."""

from __future__ import annotations

import argparse
import sys
from datetime import date

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from listserv.archive.stats import stats_rows
from listserv.archive.stats_format import FORMATS
from listserv.archive.stats_periods import BY, default_first, local_day, periods
from listserv.cli.base import CommandError, UsageError, command
from listserv.config import Settings
from listserv.store import schema
from listserv.store.db import utc_now


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-30") from None


def register_stats(commands: argparse._SubParsersAction) -> None:
    stats = command(commands, "stats", "participation figures per period and list", cmd_stats)
    stats.add_argument("--list", dest="list_name", help="only this list")
    stats.add_argument("--room", help="only the lists of this room")
    stats.add_argument("--from", dest="first", type=_day, help="first day (default: 12 periods ago)")
    stats.add_argument("--to", dest="last", type=_day, help="last day (default: today)")
    stats.add_argument("--by", choices=BY, default="week")
    stats.add_argument("--format", choices=tuple(FORMATS), default="table")


def selected_lists(settings: Settings, list_name: str | None, room: str | None) -> list[str]:
    names = list(settings.lists)
    if list_name is not None:
        if list_name not in settings.lists:
            raise UsageError(f"no list named {list_name!r} (lists: {', '.join(names)})")
        names = [list_name]
    if room is not None:
        rooms = sorted({ml.room for ml in settings.lists.values()})
        if room not in rooms:
            raise UsageError(f"no room named {room!r} (rooms: {', '.join(rooms)})")
        names = [name for name in names if settings.lists[name].room == room]
    return names


def cmd_stats(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    if not schema.is_current(engine):
        raise CommandError("the database schema is missing or out of date; run 'listserv init' first")
    timezone = settings.site.timezone
    last = args.last or local_day(utc_now(), timezone)
    first = args.first or default_first(last, args.by)
    if first > last:
        raise UsageError(f"--from {first} is after --to {last}")
    lists = selected_lists(settings, args.list_name, args.room)
    with Session(engine) as session:
        rows = stats_rows(session, lists, periods(first, last, args.by, timezone))
    sys.stdout.write(FORMATS[args.format](rows))
    return 0

"""``listserv announce FILE.yaml``: one message to every list of a room, each in its language."""

from __future__ import annotations

import argparse
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from listserv.cli.base import CommandError, UsageError, command
from listserv.config import Settings
from listserv.forum import build_parts
from listserv.store import schema
from listserv.store.db import utc_now
from listserv.weekly.announcements import read_announcement
from listserv.weekly.topics import TopicError


def register_announce(commands: argparse._SubParsersAction) -> None:
    announce = command(commands, "announce", "send an announcement to every list of a room", cmd_announce)
    announce.add_argument("file", type=Path, help="room, subjects and bodies per language (examples/)")


def cmd_announce(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    try:
        text = args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"{args.file}: cannot be read ({error})") from None
    try:
        spec = read_announcement(text, settings)
    except TopicError as error:
        raise UsageError("\n".join(f"{args.file}: {problem}" for problem in error.problems)) from None
    if not schema.is_current(engine):
        raise CommandError("the database schema is missing or out of date; run 'listserv init' first")
    parts = build_parts(settings)
    with Session(engine) as session, session.begin():
        sent = parts.announcer.announce(session, spec, utc_now())
    if not sent:
        print(f"{args.file}: this announcement was already sent; nothing sent again")
        return 0
    for item in sent:
        print(f"{item.list_name}: {item.message_id}")
    print(f"announced to {len(sent)} list(s) of room {spec.room} (serve delivers them)")
    return 0

"""``listserv guests invite|list|revoke``: a moderator's side of guests for one discussion (the same
``membership/guests.py`` the -owner requests and the web use)."""

from __future__ import annotations

import argparse
import getpass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from listserv.cli.base import CommandError, UsageError, command
from listserv.config import Settings
from listserv.forum import build_parts
from listserv.mail.text import has_control_characters
from listserv.membership.guests import GuestError, guest_rows
from listserv.store import schema

USAGE_ERRORS = {"bad_address", "no_list"}


def register_guests(commands: argparse._SubParsersAction) -> None:
    guests = commands.add_parser("guests", help="guests invited to one discussion")
    actions = guests.add_subparsers(dest="guests_command", required=True, metavar="ACTION")
    invite = command(actions, "invite", "invite a guest to one thread now (sends the invitation)", cmd_invite)
    invite.add_argument("--list", dest="list_name", required=True)
    invite.add_argument("--thread", required=True, metavar="MESSAGE-ID", help="any message of the thread")
    invite.add_argument("email", metavar="EMAIL")
    invite.add_argument("--name", required=True)
    invite.add_argument("--until", type=_day, metavar="YYYY-MM-DD", help="last day (default: 30 days)")
    invite.add_argument("--as", dest="actor", default=f"operator:{getpass.getuser()}", help="for the audit")
    listing = command(actions, "list", "invitations, newest first", cmd_list)
    listing.add_argument("--list", dest="list_name")
    revoke = command(actions, "revoke", "end a guest's invitations now", cmd_revoke)
    revoke.add_argument("email", metavar="EMAIL")
    revoke.add_argument("--thread", metavar="MESSAGE-ID", help="only the invitation to this thread")
    revoke.add_argument("--as", dest="actor", default=f"operator:{getpass.getuser()}", help="for the audit")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


def cmd_invite(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    _ready(engine)
    if has_control_characters(args.name) or not args.name.strip():
        raise UsageError("--name must be a name on one line")
    parts = build_parts(settings)
    until = None
    if args.until is not None:  # through the end of that day, where the forum is
        zone = ZoneInfo(settings.site.timezone)
        until = datetime.combine(args.until, time(23, 59, 59), zone)
        if until <= parts.clock():
            raise UsageError(f"--until {args.until} is already past")
    with Session(engine) as session, session.begin():
        try:
            guest = parts.guests.invite(
                session, args.list_name, args.thread, args.email, args.name.strip(), until, args.actor, "cli"
            )
        except GuestError as error:
            raise (UsageError if error.key in USAGE_ERRORS else CommandError)(str(error)) from None
        where = f"{guest.thread_message_id} on {guest.list_name}"
        print(f"invited {args.email} to {where} until {guest.until:%Y-%m-%d}")
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    _ready(engine)
    if args.list_name and args.list_name not in settings.lists:
        raise UsageError(f"unknown list {args.list_name!r} (known: {', '.join(settings.lists)})")
    with Session(engine) as session:
        for guest, member in guest_rows(session, args.list_name):
            fields = [member.email, member.name, guest.list_name, guest.thread_message_id, guest.state]
            fields += [f"until {guest.until:%Y-%m-%d}", f"by {guest.invited_by or '-'}"]
            print("\t".join(fields))
    return 0


def cmd_revoke(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    _ready(engine)
    with Session(engine) as session, session.begin():
        try:
            ended = build_parts(settings).guests.revoke(session, args.email, args.thread, args.actor, "cli")
        except GuestError as error:
            raise CommandError(str(error)) from None
        for guest in ended:
            print(f"revoked {args.email} on {guest.list_name}: {guest.thread_message_id}")
    return 0


def _ready(engine: Engine) -> None:
    if not schema.is_current(engine):
        raise CommandError("the database schema is missing or out of date; run 'listserv init' first")

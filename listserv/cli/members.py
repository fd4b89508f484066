"""``listserv members import|add|remove|list|check|set-password``."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from listserv.cli.base import CommandError, UsageError, command
from listserv.cli.member_formats import add_format_arguments, apply_options, read_members
from listserv.config import Settings
from listserv.forum import build_parts
from listserv.membership.requests import Requests
from listserv.store import countries, directory


def register_members(commands: argparse._SubParsersAction) -> None:
    member_parser = commands.add_parser("members", help="manage members")
    member_commands = member_parser.add_subparsers(dest="members_command", required=True, metavar="ACTION")
    imp = command(member_commands, "import", "import or update members (CSV or Mailman)", cmd_import)
    imp.add_argument("file", type=Path)
    imp.add_argument("--no-welcome", action="store_true", help="queue no welcome for new members")
    add_format_arguments(imp)
    add = command(member_commands, "add", "add or update one member", cmd_add)
    add.add_argument("email")
    add.add_argument("--lists", required=True, help="list names separated by ';', e.g. 'ta-en;ta-fr'")
    # No defaults here: on an existing member, only the flags given change anything.
    add.add_argument("--name")
    add.add_argument("--country", help="the member state's ISO 3166-1 alpha-2 code, e.g. CL")
    add.add_argument("--affiliation", help="ministry or office")
    add.add_argument("--role", choices=directory.ROLES, help="default for a new member: delegate")
    add.add_argument("--delivery", choices=directory.DELIVERIES, help="default for a new member: each")
    add.add_argument("--language")
    add.add_argument("--no-welcome", action="store_true", help="queue no welcome if the member is new")
    remove = command(member_commands, "remove", "remove a member (or only from one list)", cmd_remove)
    remove.add_argument("email")
    remove.add_argument("--list", dest="list_name")
    listing = command(member_commands, "list", "list members", cmd_list)
    listing.add_argument("--list", dest="list_name")
    command(member_commands, "check", "list members whose country is not an ISO code yet", cmd_check)
    password = command(member_commands, "set-password", "set a password, read from stdin", cmd_password)
    password.add_argument("email")


def cmd_import(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    try:
        text = args.file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise CommandError(f"cannot read {args.file}: {error}") from None
    try:
        rows = read_members(text, args, settings)
    except directory.RosterError as error:
        for problem in error.problems:
            print(f"{args.file}: {problem}", file=sys.stderr)
        print(
            f"nothing imported: fix the {len(error.problems)} problem(s) above and import again",
            file=sys.stderr,
        )
        return 1
    with Session(engine) as session, session.begin():
        report = directory.apply_rows(session, rows, **apply_options(args))
        if not args.no_welcome:
            added = set(report.added)  # a set: ``in`` on the report's list made the import quadratic
            new_rows = [row for row in rows if row.email in added]
            welcome_new_members(build_parts(settings).requests, session, new_rows)
    print(
        f"imported {len(rows)} member(s): {len(report.added)} added, {len(report.updated)} updated, "
        f"{len(report.unchanged)} unchanged"
    )
    return 0


def cmd_add(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    given = {
        key: value
        for key in ("name", "country", "affiliation", "role", "delivery", "language")
        if (value := getattr(args, key)) is not None
    }
    unsafe = directory.unsafe_fields(given, ("name", "country", "affiliation"))
    if "country" in given and (wrong := countries.problem(given["country"])):
        unsafe.append(wrong)
    if unsafe:
        raise UsageError("; ".join(unsafe) + "; nothing changed")
    try:
        row = directory.check_row({"email": args.email, "lists": args.lists, **given}, settings)
    except ValueError as error:
        raise CommandError(str(error)) from None
    with Session(engine) as session, session.begin():
        report = directory.apply_rows(session, [row], exact_lists=False, only=frozenset(given))
        if report.added and not args.no_welcome:
            welcome_new_members(build_parts(settings).requests, session, [row])
    print(f"{row.email}: {'added' if report.added else 'updated'}")
    return 0


def cmd_remove(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    with Session(engine) as session, session.begin():
        if not directory.remove_member(session, args.email, args.list_name):
            where = f" from {args.list_name}" if args.list_name else ""
            raise CommandError(f"{args.email} is not a member{where}; nothing removed")
    print(f"{args.email}: removed" + (f" from {args.list_name}" if args.list_name else ""))
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    if args.list_name and args.list_name not in settings.lists:
        raise CommandError(f"unknown list {args.list_name!r} (known: {', '.join(settings.lists)})")
    with Session(engine) as session:
        for member, subscriptions in directory.list_members(session, args.list_name):
            print(
                "\t".join([member.email, member.name, member.country, member.role, " ".join(subscriptions)])
            )
    return 0


def cmd_check(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    """Members whose country is still free text (the migration mapped what was unambiguous); exit 1
    while any remain, so a deployment script can wait for an operator."""
    with Session(engine) as session:
        members = [(m.email, m.name, m.country) for m in directory.members_without_code(session)]
    for address, name, written in members:
        guess = countries.from_name(written)
        hint = f"perhaps {guess}" if guess else "no country recognised"
        print(f"{address}\t{name}\t{written!r}\t{hint}")
    if members:
        print(
            f"{len(members)} member(s) to fix with: listserv members add EMAIL --lists L --country CODE",
            file=sys.stderr,
        )
        return 1
    print("every member's country is an ISO 3166-1 alpha-2 code (or not given)")
    return 0


def cmd_password(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    password = getpass.getpass("Password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\r\n")
    if len(password) < directory.MIN_PASSWORD_LENGTH:
        raise CommandError(
            f"the password must have at least {directory.MIN_PASSWORD_LENGTH} characters; nothing changed"
        )
    with Session(engine) as session, session.begin():
        if not directory.set_password(session, args.email, password):
            raise CommandError(f"{args.email} is not a member; add them first")
    print(f"{args.email}: password set")
    return 0


def welcome_new_members(requests: Requests, session: Session, rows: list[directory.MemberRow]) -> None:
    """Queued for the serve process to send: one welcome per new member, in their first list's language."""
    for row in rows:
        if row.lists:
            requests.send_welcome(session, row.lists[0], row.email, row.name)

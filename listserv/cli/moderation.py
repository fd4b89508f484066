"""``listserv queue``, ``approve|discard|reject``, ``audit``, ``erase``: the operator's side of the
same decisions and erasures as by mail and on the web."""

from __future__ import annotations

import argparse
import getpass
import sys

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from listserv.admin.erasure import ErasureError, Request
from listserv.admin.erasure_member import erase_member
from listserv.cli.base import CommandError, UsageError, command
from listserv.config import Settings
from listserv.forum import build_parts
from listserv.mail.text import has_control_characters
from listserv.moderation.audit import audit_trail
from listserv.moderation.codes import find_held
from listserv.moderation.queue import moderation_queue
from listserv.store import schema


def register_moderation(commands: argparse._SubParsersAction) -> None:
    _decisions(commands)
    _erase_command(commands)


def _decisions(commands: argparse._SubParsersAction) -> None:
    queue = command(commands, "queue", "list held posts and proposals", cmd_queue)
    queue.add_argument("--list", dest="list_name")
    for action in ("approve", "discard", "reject"):
        decide = command(commands, action, f"{action} a held post by its reply code or number", cmd_decide)
        decide.add_argument("held", metavar="CODE-or-ID")
        decide.add_argument(
            "--as",
            dest="actor",
            default=f"operator:{getpass.getuser()}",
            help="who decides, for the audit (default: operator:<login>)",
        )
        decide.set_defaults(action=action)
        if action == "reject":
            decide.add_argument("--reason", required=True, help="sent to the sender")
    audit = command(commands, "audit", "show the moderation audit trail", cmd_audit)
    audit.add_argument("--list", dest="list_name")
    audit.add_argument("--limit", type=int, default=100)


def cmd_queue(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    with Session(engine) as session:
        for held in moderation_queue(session, args.list_name):
            print(
                "\t".join(
                    [
                        f"#{held.id}",
                        held.list_name,
                        held.kind,
                        held.held_at.isoformat(timespec="minutes"),
                        held.sender,
                        held.subject,
                    ]
                )
            )
    return 0


def cmd_decide(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    if has_control_characters(getattr(args, "reason", "")):
        raise UsageError("the reason contains a control character (CR, LF, NUL, …); write it on one line")
    moderation = build_parts(settings).moderation
    with Session(engine, expire_on_commit=False) as session, session.begin():
        held = find_held(session, args.held)
        if held is None:
            raise CommandError(f"no held post with code or number {args.held!r}; see 'listserv queue'")
        decision = moderation.decide(
            session, held, args.action, args.actor, "cli", getattr(args, "reason", "")
        )
    if decision.result != "decided":
        raise CommandError(
            f"#{held.id} not changed: {decision.result.replace('_', ' ')} "
            f"({held.state} by {held.decided_by or '-'})"
        )
    print(f"#{held.id} {held.state}: {held.subject}")
    return 0


def cmd_audit(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    with Session(engine) as session:
        for row in audit_trail(session, args.list_name, args.limit):
            print(
                "\t".join(
                    [
                        row.at.isoformat(timespec="seconds"),
                        row.list_name or "-",
                        row.channel,
                        row.actor,
                        row.action,
                        row.result,
                        f"#{row.held_id}" if row.held_id else "-",
                        row.detail,
                    ]
                )
            )
    return 0


def _erase_command(commands: argparse._SubParsersAction) -> None:
    erase = command(
        commands, "erase", "erase a message or a person from every store (a tombstone stays)", cmd_erase
    )
    target = erase.add_mutually_exclusive_group(required=True)
    target.add_argument("--message", metavar="MESSAGE-ID")
    target.add_argument("--member", metavar="EMAIL")
    erase.add_argument("--reason", help="why (kept in the tombstone)")
    erase.add_argument("--requested-by", metavar="EMAIL", help="who asked (kept in the tombstone)")
    erase.add_argument("--list", dest="list_name", help="only this list's copy of the message")
    erase.add_argument("--with-posts", action="store_true", help="--member: erase their posts too")
    erase.add_argument(
        "--quotes", action="store_true", help="--message: list replies quoting it; erase nothing"
    )
    erase.add_argument("--as", dest="actor", default=f"operator:{getpass.getuser()}", help="who executes")


def cmd_erase(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    if not schema.is_current(engine):
        raise CommandError("the database schema is missing or out of date; run 'listserv init' first")
    if args.list_name and args.list_name not in settings.lists:
        raise CommandError(f"unknown list {args.list_name!r} (known: {', '.join(settings.lists)})")
    eraser = build_parts(settings).eraser
    if args.quotes:
        if not args.message:
            print("error: --quotes goes with --message", file=sys.stderr)
            return 2
        for quote in eraser.quoting_replies(engine, args.message, args.list_name):
            print("\t".join([quote.list_name, quote.message_id, quote.sender, quote.subject]))
        return 0
    if not (args.reason or "").strip() or not (args.requested_by or "").strip():
        print(
            "error: erase needs --reason TEXT and --requested-by EMAIL (kept in the tombstone)",
            file=sys.stderr,
        )
        return 2
    request = Request(args.reason.strip(), args.requested_by.strip(), args.actor)
    try:
        if args.message:
            erased = eraser.erase_message(engine, args.message, request, args.list_name)
        else:
            erased = erase_member(eraser, engine, args.member, request, args.with_posts)
    except ErasureError as error:
        raise CommandError(str(error)) from None
    print(f"erased ({erased.summary()}); tombstone(s) {', '.join(f'#{n}' for n in erased.tombstones)}")
    return 0

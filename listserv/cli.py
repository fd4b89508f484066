"""Command line: ``listserv [--config PATH] COMMAND``. Operator messages are plain English on stderr;
exit 2 means the configuration or the command line is wrong, 1 that the command could not be done."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from listserv.admin import topic_commands
from listserv.admin.erasure import ErasureError, Request
from listserv.admin.erasure_member import erase_member
from listserv.admin.provision import initialise
from listserv.admin.status import failures, status_counts
from listserv.archive import index
from listserv.config import ConfigError, Settings, config_path, load_settings
from listserv.forum import Forum, build_jobs, build_parts
from listserv.membership.requests import Requests
from listserv.moderation.audit import audit_trail
from listserv.moderation.codes import find_held
from listserv.moderation.queue import moderation_queue
from listserv.scheduler import TASKS
from listserv.store import directory, schema
from listserv.store.db import make_engine, utc_now


class CommandError(Exception):
    """Something the operator can fix; printed without a traceback."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("alembic", "mail.log"):  # mail.log: aiosmtpd logs every SMTP command at INFO
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLevelName(args.log_level)))
    path = config_path(args.config)
    try:
        settings = load_settings(path)
    except ConfigError as error:
        for problem in error.problems:
            print(f"config error: {problem}", file=sys.stderr)
        print(f"(in {path}; fix these and start again)", file=sys.stderr)
        return 2
    engine = make_engine(settings.database.url)
    try:
        return args.run(args, settings, engine) or 0
    except (CommandError, topic_commands.TopicCommandError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OperationalError as error:
        print(
            f"error: the database at {engine.url.render_as_string(hide_password=True)} cannot be used: "
            f"{error.orig}",
            file=sys.stderr,
        )
        return 1
    except Exception as error:  # a bug: one line for the operator, the traceback in the debug log
        logging.getLogger(__name__).debug("unexpected error", exc_info=True)
        print(
            f"error: unexpected {type(error).__name__}: {error} (run with --log-level DEBUG for details)",
            file=sys.stderr,
        )
        return 1
    finally:
        engine.dispose()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="listserv", description="A moderated, multilingual forum over email."
    )
    parser.add_argument(
        "--config", help="path of config.yaml (default: $LISTSERV_CONFIG, else ./config.yaml)"
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _command(commands, "init", "create or upgrade the database; sync lists and moderators", cmd_init)
    _command(commands, "serve", "run the SMTP ingress and the worker until SIGTERM", cmd_serve)
    _command(commands, "reindex", "rebuild the search index from the archive", cmd_reindex)
    member_parser = commands.add_parser("members", help="manage members")
    member_commands = member_parser.add_subparsers(dest="members_command", required=True, metavar="ACTION")
    imp = _command(member_commands, "import", "import or update members from a CSV file", cmd_import)
    imp.add_argument("file", type=Path)
    add = _command(member_commands, "add", "add or update one member", cmd_add)
    add.add_argument("email")
    add.add_argument("--lists", required=True, help="list names separated by ';', e.g. 'ta-en;ta-fr'")
    add.add_argument("--name", default="")
    add.add_argument("--country", default="")
    add.add_argument("--role", default="delegate", choices=directory.ROLES)
    add.add_argument("--delivery", default="each", choices=directory.DELIVERIES)
    add.add_argument("--language", default="")
    remove = _command(member_commands, "remove", "remove a member (or only from one list)", cmd_remove)
    remove.add_argument("email")
    remove.add_argument("--list", dest="list_name")
    listing = _command(member_commands, "list", "list members", cmd_list)
    listing.add_argument("--list", dest="list_name")
    password = _command(member_commands, "set-password", "set a password, read from stdin", cmd_password)
    password.add_argument("email")
    _moderation_commands(commands)
    _erase_command(commands)
    topic_commands.register(commands, _command)
    return parser


def _moderation_commands(commands: argparse._SubParsersAction) -> None:
    queue = _command(commands, "queue", "list held posts and proposals", cmd_queue)
    queue.add_argument("--list", dest="list_name")
    for action in ("approve", "discard", "reject"):
        decide = _command(commands, action, f"{action} a held post by its reply code or number", cmd_decide)
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
    _command(commands, "status", "counts of stored, held and outgoing mail; what failed and why", cmd_status)
    audit = _command(commands, "audit", "show the moderation audit trail", cmd_audit)
    audit.add_argument("--list", dest="list_name")
    audit.add_argument("--limit", type=int, default=100)
    jobs = commands.add_parser("jobs", help="run a scheduled job now")
    job_commands = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    run = _command(job_commands, "run", "run one job now (the same keys as the scheduler)", cmd_job)
    run.add_argument("job", choices=TASKS)
    run.add_argument(
        "--at", type=datetime.fromisoformat, help="as if it were this time (ISO 8601, with offset)"
    )


def _erase_command(commands: argparse._SubParsersAction) -> None:
    erase = _command(
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


def _command(
    commands: argparse._SubParsersAction, name: str, text: str, run: Callable[..., int | None]
) -> argparse.ArgumentParser:
    command = commands.add_parser(name, help=text, description=text)
    command.set_defaults(run=run)
    return command


def cmd_init(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    changes = initialise(engine, settings)
    for line in changes.lines:
        print(line)
    print(
        f"database ready: {len(settings.lists)} lists ({', '.join(settings.lists)}); "
        f"{len(changes.lines)} change(s)"
    )
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    if not schema.is_current(engine):
        raise CommandError("the database schema is missing or out of date; run 'listserv init' first")
    asyncio.run(Forum(settings, engine).serve_until_signalled())
    return 0


def cmd_reindex(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    if not schema.is_current(engine):
        raise CommandError("the database schema is missing or out of date; run 'listserv init' first")
    started = time.monotonic()
    count = index.reindex(engine, settings)
    print(f"reindexed {count} messages in {time.monotonic() - started:.1f} s")
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    try:
        text = args.file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise CommandError(f"cannot read {args.file}: {error}") from None
    try:
        rows = directory.read_roster(text, settings)
    except directory.RosterError as error:
        for problem in error.problems:
            print(f"{args.file}: {problem}", file=sys.stderr)
        print(
            f"nothing imported: fix the {len(error.problems)} problem(s) above and import again",
            file=sys.stderr,
        )
        return 1
    requests = build_parts(settings).requests
    with Session(engine) as session, session.begin():
        report = directory.apply_rows(session, rows)
        welcome_new_members(requests, session, [row for row in rows if row.email in report.added])
    print(
        f"imported {len(rows)} member(s): {len(report.added)} added, {len(report.updated)} updated, "
        f"{len(report.unchanged)} unchanged"
    )
    return 0


def cmd_add(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    fields = {
        "email": args.email,
        "name": args.name,
        "country": args.country,
        "lists": args.lists,
        "role": args.role,
        "delivery": args.delivery,
        "language": args.language,
    }
    try:
        row = directory.check_row(fields, settings)
    except ValueError as error:
        raise CommandError(str(error)) from None
    with Session(engine) as session, session.begin():
        report = directory.apply_rows(session, [row], exact_lists=False)
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


def cmd_job(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    at = args.at.astimezone(UTC) if args.at and args.at.tzinfo else args.at
    if at is not None and at.tzinfo is None:
        raise CommandError("--at needs a time zone offset, e.g. 2026-11-23T09:00+01:00")
    jobs = build_jobs(build_parts(settings, lambda: at or utc_now()), engine, lambda: None)
    done = jobs.run(args.job, at)
    print(f"{args.job}: {done} item(s) queued (serve sends them)")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    """What an operator checks first: is anything stuck or given up on?"""
    with Session(engine) as session:
        for table, counts in status_counts(session).items():
            print(f"{table}: " + ", ".join(f"{count} {state}" for state, count in sorted(counts.items())))
        for line in failures(session):
            print(f"failed: {line}")
    return 0


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


def welcome_new_members(requests: Requests, session: Session, rows: list[directory.MemberRow]) -> None:
    """Queued for the serve process to send: one welcome per new member, in their first list's language."""
    for row in rows:
        if row.lists:
            requests.send_welcome(session, row.lists[0], row.email, row.name)

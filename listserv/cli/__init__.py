"""Command line: ``listserv [--config PATH] COMMAND``. Operator messages are plain English on stderr;
exit 2 means the configuration or the command line is wrong, 1 that the command could not be done."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from listserv.admin import mta, topic_commands
from listserv.admin.provision import initialise
from listserv.admin.status import failures, status_counts
from listserv.admin.translations import check as check_translations
from listserv.admin.translations import describe
from listserv.archive import index
from listserv.cli.base import CommandError, UsageError, command
from listserv.cli.members import register_members
from listserv.cli.moderation import register_moderation
from listserv.config import ConfigError, Settings, config_path, load_settings
from listserv.forum import Forum, build_jobs, build_parts
from listserv.intake.ingress import TlsSetupError
from listserv.outgoing.signing import SigningSetupError
from listserv.outgoing.transport import RelaySetupError
from listserv.scheduler import TASKS
from listserv.store import schema
from listserv.store.db import make_engine, utc_now
from listserv.web.i18n import LOCALE_DIR


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
    except (CommandError, topic_commands.TopicCommandError, mta.MtaCommandError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2 if isinstance(error, UsageError) else 1
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
    command(commands, "init", "create or upgrade the database; sync lists and moderators", cmd_init)
    command(commands, "serve", "run the SMTP ingress and the worker until SIGTERM", cmd_serve)
    command(commands, "reindex", "rebuild the search index from the archive", cmd_reindex)
    i18n = commands.add_parser("i18n", help="translations of the configured languages")
    i18n_commands = i18n.add_subparsers(dest="i18n_command", required=True, metavar="ACTION")
    command(i18n_commands, "check", "coverage per language; exit 1 if one is incomplete", cmd_i18n_check)
    register_members(commands)
    register_moderation(commands)
    command(commands, "status", "counts of stored, held and outgoing mail; what failed and why", cmd_status)
    jobs = commands.add_parser("jobs", help="run a scheduled job now")
    job_commands = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    run = command(job_commands, "run", "run one job now (the same keys as the scheduler)", cmd_job)
    run.add_argument("job", choices=TASKS)
    run.add_argument(
        "--at", type=datetime.fromisoformat, help="as if it were this time (ISO 8601, with offset)"
    )
    topic_commands.register(commands, command)
    mta.register(commands, command)
    return parser


def cmd_init(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    changes = initialise(engine, settings)
    for line in changes.lines:
        print(line)
    print(
        f"database ready: {len(settings.lists)} lists ({', '.join(settings.lists)}); "
        f"{len(changes.lines)} change(s)"
    )
    for warning in check_translations(settings, LOCALE_DIR)[1]:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def cmd_i18n_check(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    """Coverage per configured language, then what each list lacks; 1 when a language is incomplete."""
    found, warnings = check_translations(settings, LOCALE_DIR)
    for item in found:
        print(describe(item))
    for warning in warnings:
        print(f"warning: {warning}")
    incomplete = [item.language for item in found if not item.complete]
    if incomplete:
        print(f"incomplete: {', '.join(incomplete)} (missing text is shown in English)", file=sys.stderr)
        return 1
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    if not schema.is_current(engine):
        raise CommandError("the database schema is missing or out of date; run 'listserv init' first")
    for warning in check_translations(settings, LOCALE_DIR)[1]:
        logging.getLogger(__name__).warning("%s", warning)
    try:
        forum = Forum(settings, engine)
    except (TlsSetupError, RelaySetupError, SigningSetupError) as error:  # files named in the config
        raise CommandError(str(error)) from None
    asyncio.run(forum.serve_until_signalled())
    return 0


def cmd_reindex(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    if not schema.is_current(engine):
        raise CommandError("the database schema is missing or out of date; run 'listserv init' first")
    started = time.monotonic()
    count = index.reindex(engine, settings)
    print(f"reindexed {count} messages in {time.monotonic() - started:.1f} s")
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
            shown = ", ".join(f"{count} {state}" for state, count in sorted(counts.items()))
            print(f"{table}: {shown or 0}")
        for line in failures(session):
            print(f"failed: {line}")
    return 0

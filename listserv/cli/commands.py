"""Every command but ``serve`` and ``web-worker`` (``cli/serve.py``): their modules, and what they
import (the whole forum, for most), are loaded only when one of them is run."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from listserv.admin import mta, topic_commands
from listserv.admin.provision import initialise
from listserv.admin.status import failures, status_counts
from listserv.admin.translations import check as check_translations
from listserv.admin.translations import describe
from listserv.archive import derived, index
from listserv.cli.announce import register_announce
from listserv.cli.backup import register_backup
from listserv.cli.base import CommandError, command
from listserv.cli.guests import register_guests
from listserv.cli.members import register_members
from listserv.cli.moderation import register_moderation
from listserv.cli.stats import register_stats
from listserv.cli.transfer import register_transfer
from listserv.config import Settings
from listserv.forum import build_jobs, build_parts
from listserv.scheduler import TASKS, send_now
from listserv.store import schema
from listserv.store.db import utc_now
from listserv.web.i18n import LOCALE_DIR

# What these commands raise for the operator to fix, beside CommandError: one line, no traceback.
OPERATOR_ERRORS = (topic_commands.TopicCommandError, mta.MtaCommandError)


def register(commands: argparse._SubParsersAction) -> None:
    command(commands, "init", "create or upgrade the database; sync lists and moderators", cmd_init)
    command(commands, "reindex", "rebuild the search index and the pages' text from the archive", cmd_reindex)
    i18n = commands.add_parser("i18n", help="translations of the configured languages")
    i18n_commands = i18n.add_subparsers(dest="i18n_command", required=True, metavar="ACTION")
    command(i18n_commands, "check", "coverage per language; exit 1 if one is incomplete", cmd_i18n_check)
    register_members(commands)
    register_moderation(commands)
    register_guests(commands)
    register_stats(commands)
    register_announce(commands)
    register_transfer(commands)
    register_backup(commands)
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


def cmd_reindex(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    if not schema.is_current(engine):
        raise CommandError("the database schema is missing or out of date; run 'listserv init' first")
    started = time.monotonic()
    derived.rebuild(engine)  # the pages' text and figures first: a search hit's snippet is cut from it
    count = index.reindex(engine, settings)
    print(f"reindexed {count} messages in {time.monotonic() - started:.1f} s")
    return 0


def cmd_job(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    at = args.at.astimezone(UTC) if args.at and args.at.tzinfo else args.at
    if at is not None and at.tzinfo is None:
        raise CommandError("--at needs a time zone offset, e.g. 2026-11-23T09:00+01:00")
    jobs = build_jobs(build_parts(settings, lambda: at or utc_now()), engine, lambda: None)
    done = jobs.run(args.job, at)
    if at is not None and at > utc_now():
        send_now(engine, at, utc_now())  # built as of --at, sent now
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

"""``listserv import mbox`` and ``listserv export mbox|members``: moving an archive and a roster in and out.

The import shows a progress bar (rich: counts, rate, ETA by bytes of the files read) when stderr is a
terminal, and a plain line every ``PLAIN_EVERY_SECONDS`` otherwise (a log file wants no bar redrawn).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.admin.archive_import import ArchiveImport, ImportSummary
from listserv.archive.formats import mbox_chunks
from listserv.cli.base import CommandError, UsageError, command
from listserv.config import Settings
from listserv.forum import build_parts
from listserv.store import directory, schema
from listserv.store.models import ArchivedPost
from listserv.store.roster_formats import csv_rows

if TYPE_CHECKING:
    from rich.progress import Progress

PLAIN_EVERY_SECONDS = 5.0
EXPORT_BATCH = 200


def register_transfer(commands: argparse._SubParsersAction) -> None:
    importing = commands.add_parser("import", help="bring an archive in")
    import_commands = importing.add_subparsers(dest="import_command", required=True, metavar="WHAT")
    mbox = command(
        import_commands, "mbox", "import mbox files into a list's archive (delivers nothing)", cmd_import
    )
    mbox.add_argument("files", type=Path, nargs="+", metavar="FILE")
    mbox.add_argument("--list", dest="list_name", required=True)
    exporting = commands.add_parser("export", help="take the archive or the members out")
    export_commands = exporting.add_subparsers(dest="export_command", required=True, metavar="WHAT")
    out = command(export_commands, "mbox", "a list's archive as mboxrd, oldest first", cmd_export_mbox)
    out.add_argument("--list", dest="list_name", required=True)
    out.add_argument("--from", dest="since", type=_date, help="from this date (ISO 8601), inclusive")
    out.add_argument("--to", dest="until", type=_date, help="up to this date (ISO 8601), exclusive")
    out.add_argument("--out", type=Path, help="write here instead of stdout")
    members = command(
        export_commands, "members", "the members as the CSV 'members import' reads", cmd_export_members
    )
    members.add_argument("--list", dest="list_name")
    members.add_argument("--format", choices=["csv"], default="csv")


def _date(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO 8601 date (e.g. 2024-01-31)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _known_list(settings: Settings, name: str) -> None:
    if name not in settings.lists:
        raise UsageError(f"unknown list {name!r} (known: {', '.join(settings.lists)})")


def cmd_import(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    _known_list(settings, args.list_name)
    if not schema.is_current(engine):
        raise CommandError("the database schema is missing or out of date; run 'listserv init' first")
    missing = [str(path) for path in args.files if not path.is_file()]
    if missing:
        raise CommandError(f"cannot read {', '.join(missing)}; nothing imported")
    parts = build_parts(settings)
    publisher_prefix = parts.publisher.prefix(settings.lists[args.list_name])
    importer = ArchiveImport(engine, settings, parts.secret, args.list_name, publisher_prefix)
    total = sum(path.stat().st_size for path in args.files)
    started = time.monotonic()
    with _Shown(total, sys.stderr) as progress:
        summary = importer.run(args.files, progress)
    print(_summary_text(summary, time.monotonic() - started))
    for path in summary.not_mbox:
        print(f"error: {path}: no 'From ' line: not an mbox file; nothing read from it", file=sys.stderr)
    return 1 if summary.not_mbox else 0


def _summary_text(summary: ImportSummary, seconds: float) -> str:
    skipped = ", ".join(f"{count} {reason}" for reason, count in summary.skipped.most_common()) or "none"
    return (
        f"imported {summary.imported}, duplicates {summary.duplicates}, dates repaired {summary.repaired}, "
        f"skipped {sum(summary.skipped.values())} ({skipped}) — {summary.seen} messages in {seconds:.1f} s"
    )


class _Shown:
    """The import's progress: a rich bar on a terminal, else a plain line now and then."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total, self.stream = total, stream
        self.bar: Progress | None = None
        self.task = None
        self.last = time.monotonic()

    def __enter__(self) -> Callable[[int, ImportSummary], None]:
        if self.stream.isatty():
            # late: every command (serve too) loads this module, and rich is ~6 MB that only a terminal's
            # import shows
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[counts]}"),
                TimeRemainingColumn(),
            )
            self.bar.start()
            self.task = self.bar.add_task("importing", total=self.total, counts="")
        return self.update

    def update(self, done: int, summary: ImportSummary) -> None:
        counts = f"{summary.imported} imported, {summary.duplicates} duplicates, {summary.seen} read"
        if self.bar is not None and self.task is not None:
            rate = summary.seen / max(time.monotonic() - self.bar.tasks[0].start_time, 1e-6)  # type: ignore[operator]
            self.bar.update(self.task, completed=done, counts=f"{counts}, {rate:.0f} msg/s")
        elif time.monotonic() - self.last >= PLAIN_EVERY_SECONDS:
            self.last = time.monotonic()
            percent = 100 * done / self.total if self.total else 100.0
            print(f"import: {percent:.0f}% of the bytes, {counts}", file=self.stream, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def cmd_export_mbox(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    _known_list(settings, args.list_name)
    query = select(ArchivedPost.sender, ArchivedPost.date, ArchivedPost.raw).where(
        ArchivedPost.list_name == args.list_name, ArchivedPost.erased_at.is_(None)
    )
    if args.since is not None:
        query = query.where(ArchivedPost.archived_at >= args.since)
    if args.until is not None:
        query = query.where(ArchivedPost.archived_at < args.until)
    query = query.order_by(ArchivedPost.archived_at, ArchivedPost.id)
    with Session(engine.execution_options(sqlite_deferred=True)) as session:
        rows = session.execute(query.execution_options(yield_per=EXPORT_BATCH))
        chunks = mbox_chunks((sender, date, raw) for sender, date, raw in rows)
        count = _write(chunks, args.out)
    print(f"exported {count} message(s) of {args.list_name}", file=sys.stderr)
    return 0


def _write(chunks: Iterator[bytes], out: Path | None) -> int:
    count = 0
    target = out.open("wb") if out is not None else sys.stdout.buffer
    try:
        for chunk in chunks:
            target.write(chunk)
            count += 1
    finally:
        if out is not None:
            target.close()
        else:
            target.flush()
    return count


def cmd_export_members(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    if args.list_name:
        _known_list(settings, args.list_name)
    with Session(engine) as session:
        members = directory.list_members(session, args.list_name)
        left_out = 0
        rows = []
        for member, subscriptions in members:
            if member.role == "guest" or not subscriptions:
                # Not a member of any list (a guest of one discussion: ``guests list``): a row without
                # lists would not import, and a guest must never come back as a delegate.
                left_out += 1
                continue
            names = [entry.partition(":")[0] for entry in subscriptions]
            deliveries = [entry.partition(":")[2] for entry in subscriptions]
            rows.append((member, names, deliveries[0] if deliveries else "each"))
        for text in csv_rows(rows):
            sys.stdout.write(text)
    if left_out:
        print(f"left out {left_out} address(es) on no list (guests: listserv guests list)", file=sys.stderr)
    return 0

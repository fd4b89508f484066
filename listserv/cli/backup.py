"""``listserv backup DIR`` (while serve runs) and ``listserv restore DIR`` (into an empty database)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sqlalchemy import Engine

from listserv.admin.backup import BackupError, backup, restore
from listserv.cli.base import CommandError, command
from listserv.config import Settings, config_path
from listserv.forum import build_parts
from listserv.store import schema


def register_backup(commands: argparse._SubParsersAction) -> None:
    save = command(commands, "backup", "a consistent snapshot of the database, config and secret", cmd_backup)
    save.add_argument("directory", type=Path, metavar="DIR")
    load = command(
        commands, "restore", "load a backup into an empty database; re-apply later erasures", cmd_restore
    )
    load.add_argument("directory", type=Path, metavar="DIR")


def cmd_backup(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    if not schema.is_current(engine):
        raise CommandError("the database schema is missing or out of date; run 'listserv init' first")
    try:
        manifest = backup(engine, settings, config_path(args.config), args.directory)
    except (BackupError, OSError) as error:
        raise CommandError(f"backup failed: {error}") from None
    print(f"backup of the {manifest['database']} database written to {args.directory}")
    return 0


def cmd_restore(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    try:
        restored = restore(engine, settings, lambda: build_parts(settings).eraser, args.directory)
    except (BackupError, OSError) as error:
        raise CommandError(f"restore failed: {error}") from None
    print(
        f"restored from {args.directory}: {restored.reapplied} erasure(s) made since re-applied, "
        f"{restored.tombstones_only} tombstone(s) of things the backup never had"
    )
    if not schema.is_current(engine):
        print(
            "the backup's schema is older than this version: run 'listserv init' to upgrade it",
            file=sys.stderr,
        )
    return 0

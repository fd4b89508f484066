"""Erasures kept apart from the database, so that restoring an old backup cannot bring erased content back.

Every tombstone, once its erasure is committed, is also appended to ``data_dir/erasures.jsonl``: kind,
keyed hash, list, when. Nothing else — the hash (HMAC with the site secret) names nothing to whoever
reads the file. ``listserv restore`` reads it and erases again whatever the restored database holds that
was erased after the backup was taken (``admin/backup.py``). Written after the commit: a rolled-back
erasure leaves no line; the write is flushed and fsynced before the command returns.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from listserv.store.db import after_outer_commit
from listserv.store.models import Tombstone

FILE_NAME = "erasures.jsonl"


@dataclass(frozen=True)
class Entry:
    kind: str  # message | member
    key_hash: str
    list_name: str
    erased_at: datetime


def journal_path(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def keep_apart(session: Session, row: Tombstone, path: Path) -> None:
    """Append ``row`` to the journal once the session's transaction commits."""
    entry = Entry(row.kind, row.key_hash, row.list_name, row.erased_at)

    def append(_: Session) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        line = {"kind": entry.kind, "key_hash": entry.key_hash, "list": entry.list_name}
        line["erased_at"] = entry.erased_at.isoformat()
        with path.open("a", encoding="utf-8") as journal:
            journal.write(json.dumps(line) + "\n")
            journal.flush()
            os.fsync(journal.fileno())

    after_outer_commit(session, append)  # never for an erasure that a rollback undoes


def read_journal(path: Path) -> list[Entry]:
    """Every erasure recorded, oldest first, each once; a torn last line (a crash mid-write) is skipped."""
    if not path.exists():
        return []
    found: dict[tuple[str, str, str], Entry] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            item = json.loads(line)
            entry = Entry(
                item["kind"], item["key_hash"], item["list"], datetime.fromisoformat(item["erased_at"])
            )
        except (ValueError, KeyError, TypeError):
            continue
        found.setdefault((entry.kind, entry.key_hash, entry.list_name), entry)
    return list(found.values())

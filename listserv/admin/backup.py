"""``listserv backup DIR`` while serving, ``listserv restore DIR`` into an empty database.

A backup is a folder: the database as one consistent snapshot — SQLite's online backup API
(``database.sqlite``; writers go on meanwhile), or PostgreSQL's ``pg_dump`` in its custom format
(``database.pgdump``, one transaction's snapshot) — the config file, the site secret (reply codes, signed
links and tombstone hashes depend on it) and ``manifest.json``. Files are owner-only (0600): they hold
mail and addresses.

A backup holds what existed when it was taken, erased content included; what keeps a restore from bringing
it back is the erasure journal (``admin/erasure_journal.py``), kept apart in ``data_dir``: after loading
the snapshot, ``restore`` erases again every message and person whose tombstone is in the journal and not
in the snapshot, by matching the keyed hashes against what the snapshot holds. A journal entry whose
subject the snapshot never had still gets its tombstone back (an import then skips it).
"""

from __future__ import annotations

import hmac
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, inspect, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from listserv.admin.erasure import Eraser, ErasureError, Request
from listserv.admin.erasure_journal import Entry, journal_path, read_journal
from listserv.admin.erasure_member import erase_member
from listserv.config import Settings
from listserv.store.db import utc_now
from listserv.store.keys import key_hash
from listserv.store.models import ArchivedPost, Held, Member, Received, Tombstone

SQLITE_FILE = "database.sqlite"
PG_FILE = "database.pgdump"
RESTORER = "listserv restore"


class BackupError(Exception):
    """Nothing (more) was done; the message says why."""


@dataclass
class Restored:
    reapplied: int = 0  # erasures made after the backup, applied again
    tombstones_only: int = 0  # erasures of things the backup never had: only their tombstones


def backup(engine: Engine, settings: Settings, config_file: Path, target: Path) -> dict[str, object]:
    if target.exists() and any(target.iterdir()):
        raise BackupError(f"{target} is not empty; give a new folder")
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    started = utc_now()
    if engine.dialect.name == "sqlite":
        _sqlite_backup(engine.url, target / SQLITE_FILE)
    else:
        _pg_dump(engine.url, target / PG_FILE)
    _copy(config_file, target / "config.yaml")
    secret = settings.site.data_dir / "secret"
    if secret.exists():
        _copy(secret, target / "secret")
    manifest = {
        "database": engine.dialect.name,
        "started_at": started.isoformat(),
        "done_at": utc_now().isoformat(),
    }
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    (target / "manifest.json").chmod(0o600)
    return manifest


def _sqlite_backup(url: URL, out: Path) -> None:
    source = sqlite3.connect(str(url.database), timeout=30)
    copy = sqlite3.connect(str(out))
    try:
        with copy:
            source.backup(copy, pages=1024)  # in steps: writers are not held off for the whole copy
    finally:
        copy.close()
        source.close()
    out.chmod(0o600)


def _pg_command(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(
            f"{name} not found: install Debian's postgresql-client (apt-get install postgresql-client)"
        )
    return found


def _pg_env(url: URL) -> tuple[str, dict[str, str]]:
    """libpq's URI without the password (it goes in PGPASSWORD, never on a command line)."""
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _pg_dump(url: URL, out: Path) -> None:
    dsn, env = _pg_env(url)
    _run(
        [_pg_command("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", "--file", str(out), dsn],
        env,
    )
    out.chmod(0o600)


def _run(command: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"{Path(command[0]).name} failed: {done.stderr.strip()[-800:]}")


def _copy(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)
    target.chmod(0o600)


def restore(engine: Engine, settings: Settings, make_eraser: Callable[[], Eraser], source: Path) -> Restored:
    """Load the snapshot into the configured (empty) database, then re-apply later erasures (with an
    ``Eraser`` made once the backup's secret is in place: the tombstones' hashes depend on it)."""
    manifest = _manifest(source)
    if manifest.get("database") != engine.dialect.name:
        raise BackupError(
            f"the backup is of a {manifest.get('database')} database; the config names {engine.dialect.name}"
        )
    if inspect(engine).get_table_names():
        raise BackupError("the database is not empty: restore only into a new, empty database")
    _restore_secret(settings, source)
    if engine.dialect.name == "sqlite":
        engine.dispose()
        snapshot = sqlite3.connect(str(source / SQLITE_FILE))
        target = sqlite3.connect(str(engine.url.database))
        try:
            with target:
                snapshot.backup(target)
        finally:
            target.close()
            snapshot.close()
    else:
        dsn, env = _pg_env(engine.url)
        _run(
            [
                _pg_command("pg_restore"),
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "-d",
                dsn,
                str(source / PG_FILE),
            ],
            env,
        )
    return reapply_erasures(engine, make_eraser(), read_journal(journal_path(settings.site.data_dir)))


def _manifest(source: Path) -> dict[str, object]:
    try:
        return dict(json.loads((source / "manifest.json").read_text(encoding="utf-8")))
    except (OSError, ValueError) as error:
        raise BackupError(f"{source} is not a listserv backup (manifest.json: {error})") from None


def _restore_secret(settings: Settings, source: Path) -> None:
    """The backup's secret, unless one is in place already: then it must be the same."""
    ours, theirs = settings.site.data_dir / "secret", source / "secret"
    if not theirs.exists():
        return
    if ours.exists():
        if not hmac.compare_digest(ours.read_bytes().strip(), theirs.read_bytes().strip()):
            raise BackupError(
                f"{ours} differs from the backup's secret; move it away to restore the backup's"
            )
        return
    ours.parent.mkdir(parents=True, exist_ok=True)
    _copy(theirs, ours)


def reapply_erasures(engine: Engine, eraser: Eraser, journal: list[Entry]) -> Restored:
    restored = Restored()
    with Session(engine) as session:
        present = set(
            session.execute(select(Tombstone.kind, Tombstone.key_hash, Tombstone.list_name)).tuples()
        )
    missing = [entry for entry in journal if (entry.kind, entry.key_hash, entry.list_name) not in present]
    messages = _by_hash(engine, eraser.secret, "message") if missing else {}
    people = {}
    for entry in sorted(missing, key=lambda e: (e.kind != "message", e.erased_at)):  # posts, then people
        request = Request(
            f"erased {entry.erased_at.isoformat()}, re-applied on restore", RESTORER, RESTORER, "cli"
        )
        try:
            if entry.kind == "message" and entry.key_hash in messages:
                eraser.erase_message(engine, messages[entry.key_hash], request, entry.list_name or None)
                restored.reapplied += 1
                continue
            if entry.kind == "member":
                people = people or _by_hash(engine, eraser.secret, "member")
                if entry.key_hash in people:
                    erase_member(eraser, engine, people[entry.key_hash], request, with_posts=False)
                    restored.reapplied += 1
                    continue
        except ErasureError:
            pass  # nothing of it left here: only its tombstone is missing
        _tombstone_only(engine, entry)
        restored.tombstones_only += 1
    return restored


def _by_hash(engine: Engine, secret: bytes, kind: str) -> dict[str, str]:
    """Keyed hash → the Message-ID or address it was made from, for everything the database holds."""
    with Session(engine) as session:
        if kind == "message":
            values = set(
                session.scalars(select(ArchivedPost.message_id).where(ArchivedPost.erased_at.is_(None)))
            )
            values |= set(session.scalars(select(Held.message_id))) | set(
                session.scalars(select(Received.message_id))
            )
        else:
            values = set(session.scalars(select(Member.email))) | set(
                session.scalars(select(ArchivedPost.sender))
            )
            values |= set(session.scalars(select(Held.sender)))
    return {key_hash(secret, kind, value): value for value in values if value}


def _tombstone_only(engine: Engine, entry: Entry) -> None:
    with Session(engine) as session, session.begin():
        exists = session.scalar(
            select(Tombstone.id).where(
                Tombstone.kind == entry.kind,
                Tombstone.key_hash == entry.key_hash,
                Tombstone.list_name == entry.list_name,
            )
        )
        if exists is None:
            session.add(
                Tombstone(
                    kind=entry.kind,
                    key_hash=entry.key_hash,
                    list_name=entry.list_name,
                    erased_at=entry.erased_at,
                    requested_by=RESTORER,
                    executed_by=RESTORER,
                    reason="re-applied on restore",
                )
            )

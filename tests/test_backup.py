"""``listserv backup`` while posts arrive, ``listserv restore`` into an empty database: every message
acknowledged before the backup began is there, and a message erased after the backup stays erased (the
erasure journal, kept apart in data_dir, is applied again). SQLite and PostgreSQL, real processes."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.config import parse_settings
from listserv.store.db import make_engine
from listserv.store.models import ArchivedPost, Held, Member, Received, Tombstone
from tests.conftest import PG_ADMIN, ServeProcess, add_members, run_cli, wait_for
from tests.test_moderation import send

POSTER = "poster@example.org"
LEAVER, LEAVER_NAME = "leaver@example.org", "Leopoldine Quatremer"
MARKER = "Zanzibar-" + secrets.token_hex(4)


@pytest.fixture
def empty_url(tmp_path: Path, db_url: str) -> Iterator[str]:
    """A second, empty database of the same kind to restore into."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored.db'}"
        return
    name = f"listserv_restore_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Poster:
    """Sends posts one after another until stopped; remembers when each was acknowledged."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.acked: list[tuple[float, str]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        number = 0
        while not self.stopping.is_set():
            message_id = send(
                self.port, POSTER, "ta-en@forum.example.org", f"Post {number}", f"Text {number}."
            )
            self.acked.append((time.monotonic(), message_id))
            number += 1


def message_ids(engine: Engine) -> set[str]:
    with Session(engine) as session:
        return set(session.scalars(select(Received.message_id)))


def test_backup_while_serving_then_restore_keeps_every_message_and_every_later_erasure(
    serve_config: tuple[Path, int], tmp_path: Path, empty_url: str
) -> None:
    config_file, port = serve_config
    settings = parse_settings(yaml.safe_load(config_file.read_text(encoding="utf-8")))
    engine = make_engine(settings.database.url)
    add_members(engine, settings, {"email": POSTER, "lists": "ta-en"})
    add_members(engine, settings, {"email": LEAVER, "name": LEAVER_NAME, "lists": "ta-en"})
    serve = ServeProcess(config_file, port).start()
    erased_id = send(port, POSTER, "ta-en@forum.example.org", "Private", f"Please forget {MARKER}.")
    poster = Poster(port)
    try:
        poster.thread.start()
        wait_for(lambda: len(poster.acked) >= 10, what="posts arriving")
        began = time.monotonic()
        result = run_cli(config_file, "backup", str(tmp_path / "backup"))
        assert result.returncode == 0, result.stderr
        wait_for(lambda: poster.acked[-1][0] > time.monotonic() - 0.1 and len(poster.acked) > 15, what="more")
        poster.stopping.set()
        poster.thread.join(30)
        wait_for(lambda: held_ids(engine) >= {erased_id}, what="the post to erase held")
        erased = run_cli(
            config_file, "erase", "--message", erased_id, "--reason", "asked", "--requested-by", POSTER
        )
        assert erased.returncode == 0, erased.stderr
        gone = run_cli(config_file, "erase", "--member", LEAVER, "--reason", "left", "--requested-by", LEAVER)
        assert gone.returncode == 0, gone.stderr
    finally:
        poster.stopping.set()
        serve.stop()
    before_backup = {message_id for at, message_id in poster.acked if at < began} | {erased_id}
    backup_dir = tmp_path / "backup"
    assert {path.name for path in backup_dir.iterdir()} >= {"config.yaml", "secret", "manifest.json"}
    assert json.loads((backup_dir / "manifest.json").read_text())["database"] == engine.dialect.name
    assert all(path.stat().st_mode & 0o077 == 0 for path in backup_dir.iterdir())

    raw = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    raw["database"]["url"] = empty_url  # same data_dir: the secret and the erasure journal
    restored_config = tmp_path / "restored.yaml"
    restored_config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    loaded = run_cli(restored_config, "restore", str(backup_dir))
    assert loaded.returncode == 0, loaded.stderr
    assert "2 erasure(s) made since re-applied" in loaded.stdout, loaded.stdout + loaded.stderr
    again = run_cli(restored_config, "restore", str(backup_dir))
    assert again.returncode == 1 and "not empty" in again.stderr

    restored = make_engine(empty_url)
    try:
        present = message_ids(restored)
        assert before_backup - {erased_id} <= present  # every message acknowledged before the backup
        assert erased_id not in present and erased_id not in held_ids(restored)
        with Session(restored) as session:
            assert all(MARKER.encode() not in raw for raw in session.scalars(select(Received.raw)))
            assert all(MARKER.encode() not in (p.raw or b"") for p in session.scalars(select(ArchivedPost)))
            assert sorted(session.scalars(select(Tombstone.kind))) == ["member", "message"]
            assert session.scalar(select(Member.id).where(Member.email_key == LEAVER)) is None
        status = run_cli(restored_config, "status")
        assert status.returncode == 0, status.stderr
    finally:
        restored.dispose()
        engine.dispose()


def held_ids(engine: Engine) -> set[str]:
    with Session(engine) as session:
        return set(session.scalars(select(Held.message_id)))


def test_restore_refuses_what_is_not_a_backup(serve_config: tuple[Path, int], tmp_path: Path) -> None:
    config_file, _ = serve_config
    result = run_cli(config_file, "restore", str(tmp_path))
    assert result.returncode == 1 and "is not a listserv backup" in result.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    refused = run_cli(config_file, "backup", str(tmp_path / "full"))
    assert refused.returncode == 1 and "not empty" in refused.stderr

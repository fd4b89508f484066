"""The scheduler's tick when SQLite's write lock stays taken (found by bench/soak.py: the tick failed with
"database is locked" and the tasks after the one that waited did not run that minute)."""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.forum import Forum
from listserv.store.models import JobRun

FRIDAY_EVENING = datetime(2026, 12, 4, 17, 0, tzinfo=UTC)  # after the moderators' summary time (fri 16:00)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: its write lock is database-wide (PostgreSQL's row locks do not starve a tick)."""
    return f"sqlite:///{tmp_path / 'listserv.db'}"


def test_a_locked_database_fails_one_task_and_the_others_still_run(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    event.listen(engine, "connect", lambda dbapi, _: dbapi.execute("PRAGMA busy_timeout=200"))
    engine.dispose()  # pooled connections were made with the 30 s timeout
    jobs = Forum(settings, engine, lambda: FRIDAY_EVENING).jobs
    flag = jobs.weekly.flag_missing_translations

    def while_another_writer_holds_the_lock(session: Session, now: datetime) -> Any:
        other = sqlite3.connect(engine.url.database, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            return flag(session, now)  # its first statement waits for the lock, then gives up
        finally:
            other.rollback()
            other.close()

    monkeypatch.setattr(jobs.weekly, "flag_missing_translations", while_another_writer_holds_the_lock)
    with caplog.at_level(logging.WARNING, logger="listserv.scheduler"):
        jobs.tick()

    with Session(engine) as session:
        done = set(session.scalars(select(JobRun.name)))
    assert "weekly_summary" in done  # a task after the one that met the lock ran in the same tick
    [warning] = [record for record in caplog.records if record.name == "listserv.scheduler"]
    assert warning.levelname == "WARNING" and warning.getMessage().startswith("prompts:")

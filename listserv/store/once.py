"""Idempotence keys: a (name, key) pair recorded once, by whichever process gets there first.

Jobs that may run twice (a restart, a catch-up, a second ``serve``) call ``record_once`` before
sending; the unique key in ``job_run`` makes the second caller a no-op."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from listserv.store.models import JobRun


def record_once(session: Session, name: str, key: str) -> bool:
    """Record (name, key) once; False when it was already recorded (by us or another process)."""
    try:
        with session.begin_nested():
            session.add(JobRun(name=name, key=key))
            session.flush()
    except IntegrityError:
        return False
    return True

"""A list's page of threads, by keyset on ``post_thread`` (kept as posts are archived): "older" and
"newer" links carry the place reached, so any page of any list costs one short index range; the old
``?page=N`` links still work, by offset on the same index."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, or_, select
from sqlalchemy.orm import Session

from listserv.store.models import ArchivedPost, ThreadFigures
from listserv.web.threads import PAGE_SIZE, ThreadRow

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Cursor:
    """A place in a list's threads, newest first: the latest activity and the thread, as in
    ``post_thread``'s index. In URLs as ``<microseconds since 1970>.<thread id>``."""

    at: datetime
    thread_id: int

    @property
    def token(self) -> str:
        return f"{(self.at - EPOCH) // timedelta(microseconds=1)}.{self.thread_id}"

    @classmethod
    def parse(cls, token: str) -> Cursor | None:
        micros, _, thread_id = token.partition(".")
        if not (micros.lstrip("-").isdigit() and thread_id.isdigit() and len(token) < 40):
            return None
        try:
            return cls(EPOCH + timedelta(microseconds=int(micros)), int(thread_id))
        except OverflowError:
            return None


@dataclass(frozen=True)
class ListPage:
    rows: list[ThreadRow]
    newer: Cursor | None  # the newer page ends before this (``?after=``); None: this is the newest
    older: Cursor | None  # the older page starts after this (``?before=``); None: nothing older
    page: int | None  # the page number when asked by number (``?page=N``, the old links), or the first


def list_threads(
    db: Session, list_name: str, before: Cursor | None = None, after: Cursor | None = None, page: int = 1
) -> ListPage:
    """A page of the list's threads by latest activity, read from ``post_thread`` by keyset: older
    than ``before``, newer than ``after``, else page ``page`` by offset (old ``?page=N`` links; the first
    page by default). Every keyset page costs one short index range, at any depth."""
    figures = ThreadFigures
    query = select(figures.thread_id, figures.posts, figures.latest_at).where(figures.list_name == list_name)
    newest_first = (figures.latest_at.desc(), figures.thread_id.desc())
    if after is not None:
        rows = db.execute(
            query.where(*_beyond(after, newer=True))
            .order_by(figures.latest_at, figures.thread_id)
            .limit(PAGE_SIZE + 1)
        ).all()
        if len(rows) > PAGE_SIZE:
            found = _rows(db, list(reversed(rows[:PAGE_SIZE])))
            return ListPage(found, _cursor(found[0]), after, None)
        before, page = None, 1  # fewer than a page newer: the newest page, whole
    if before is not None:
        rows = db.execute(
            query.where(*_beyond(before, newer=False)).order_by(*newest_first).limit(PAGE_SIZE + 1)
        )
        found = _rows(db, rows.all())
        newer = db.scalar(
            select(figures.thread_id)
            .where(figures.list_name == list_name, *_beyond(before, True))
            .order_by(figures.latest_at, figures.thread_id)
            .limit(1)
        )
        return _page(found, newer is not None, None)
    # Old links: an offset in the same index, over its narrow rows only (the starters are read after).
    rows = db.execute(query.order_by(*newest_first).limit(PAGE_SIZE + 1).offset((page - 1) * PAGE_SIZE))
    return _page(_rows(db, rows.all()), page > 1, page)


def _rows(db: Session, figures: Sequence[Row[Any]]) -> list[ThreadRow]:
    """The page's threads with their first post's id, subject and sender (one lookup by primary key)."""
    starters = {
        row.id: row
        for row in db.execute(
            select(ArchivedPost.id, ArchivedPost.message_id, ArchivedPost.subject, ArchivedPost.sender).where(
                ArchivedPost.id.in_([row.thread_id for row in figures])
            )
        )
    }
    return [
        ThreadRow(row.thread_id, first.message_id, first.subject, first.sender, row.posts, row.latest_at)
        for row in figures
        if (first := starters.get(row.thread_id)) is not None
    ]


def _beyond(cursor: Cursor, newer: bool) -> tuple[ColumnElement[bool], ...]:
    """After or before ``cursor`` in index order. The plain bound first: with only the OR, SQLite read the
    index from the list's newest thread down to the cursor (a deep page cost as much as an offset)."""
    at, tid = ThreadFigures.latest_at, ThreadFigures.thread_id
    if newer:
        return at >= cursor.at, or_(at > cursor.at, and_(at == cursor.at, tid > cursor.thread_id))
    return at <= cursor.at, or_(at < cursor.at, and_(at == cursor.at, tid < cursor.thread_id))


def _page(found: list[ThreadRow], has_newer: bool, page: int | None) -> ListPage:
    shown = found[:PAGE_SIZE]
    newer = _cursor(shown[0]) if has_newer and shown else None
    older = _cursor(shown[-1]) if len(found) > PAGE_SIZE else None
    return ListPage(shown, newer, older, page)


def _cursor(row: ThreadRow) -> Cursor:
    return Cursor(row.latest_at, row.thread_id)

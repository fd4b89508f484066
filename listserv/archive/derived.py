"""What is kept beside each archived post so that pages neither parse MIME nor count posts per view:
the display JSON and snippet text (``display``), a thread's size and latest activity (``post_thread``)
and the posts of each list per UTC day (``post_day``).

``record`` runs in the transaction that archives a post (``posts.archive_raw``, whoever calls it:
publishing, prompts, digests, an import); ``rebuild`` derives everything again from ``post`` — for
``listserv reindex`` and for migration 0016's backfill. Erasure keeps the figures (an erased post stays
in its thread as a stand-in) and empties or re-derives the text with the raw bytes (``refresh``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, Date, Engine, Row, bindparam, delete, select, text, update
from sqlalchemy.orm import Session

from listserv.archive import display
from listserv.mail.message import Post as ParsedPost
from listserv.store.db import UTCDateTime
from listserv.store.models import ArchivedPost, DayFigures, ThreadFigures

BATCH = 500
THREAD_UPSERT = text(
    "INSERT INTO post_thread (thread_id, list_name, posts, latest_at) VALUES (:thread_id, :list_name, 1, :at)"
    " ON CONFLICT (thread_id) DO UPDATE SET posts = post_thread.posts + 1,"
    " latest_at = CASE WHEN excluded.latest_at > post_thread.latest_at THEN excluded.latest_at"
    " ELSE post_thread.latest_at END"
).bindparams(bindparam("at", type_=UTCDateTime()))
DAY_UPSERT = text(
    "INSERT INTO post_day (list_name, day, posts) VALUES (:list_name, :day, 1)"
    " ON CONFLICT (list_name, day) DO UPDATE SET posts = post_day.posts + 1"
).bindparams(bindparam("day", type_=Date()))


def record(session: Session, post: ArchivedPost, parsed: ParsedPost | None = None) -> None:
    """Derive ``post``'s text and count it (its ``id`` and ``thread_id`` are set)."""
    refresh(post, parsed)
    at = post.archived_at
    thread = {"thread_id": post.thread_id or post.id, "list_name": post.list_name, "at": at}
    session.execute(THREAD_UPSERT, thread)
    session.execute(DAY_UPSERT, {"list_name": post.list_name, "day": utc_day(at)})


def refresh(post: ArchivedPost, parsed: ParsedPost | None = None) -> None:
    """The text derived again from ``post.raw`` (after erasure rewrote it); none for a stand-in."""
    if post.erased_at is not None or not post.raw:
        post.display = post.search_text = None
        return
    post.display = display.derive(post.raw, post.list_name, post.message_id)
    post.search_text = display.search_source(post.raw, parsed)


def utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def rebuild(engine: Engine) -> int:
    """Every post's text derived again, a batch per transaction so that archiving goes on meanwhile;
    then the figures counted again in one transaction. Returns the posts derived."""
    done, after = 0, 0
    while True:
        with engine.begin() as connection:
            rows = connection.execute(
                select(ArchivedPost.id, ArchivedPost.list_name, ArchivedPost.message_id, ArchivedPost.raw)
                .where(ArchivedPost.id > after, ArchivedPost.erased_at.is_(None))
                .order_by(ArchivedPost.id)
                .limit(BATCH)
            ).all()
            if not rows:
                break
            derive_rows(connection, rows)
        after, done = rows[-1].id, done + len(rows)
    with engine.begin() as connection:
        recount(connection)
    return done


def derive_rows(connection: Connection, rows: Sequence[Row[Any]]) -> None:
    values = [
        {
            "post_id": row.id,
            "display": display.derive(row.raw, row.list_name, row.message_id) if row.raw else None,
            "search_text": display.search_source(row.raw) if row.raw else None,
        }
        for row in rows
    ]
    statement = update(ArchivedPost).where(ArchivedPost.id == bindparam("post_id"))
    connection.execute(
        statement.values(display=bindparam("display"), search_text=bindparam("search_text")),
        values,
    )


def recount(connection: Connection) -> None:
    """``post_thread`` and ``post_day`` from ``post``, in the caller's transaction. On PostgreSQL the two
    tables are locked first: a post archived meanwhile waits, then adds itself to the new figures."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("LOCK TABLE post_thread, post_day IN EXCLUSIVE MODE"))
    connection.execute(delete(ThreadFigures))
    connection.execute(delete(DayFigures))
    threads: dict[int, list[Any]] = {}  # thread → [list, posts, latest]
    days: Counter[tuple[str, date]] = Counter()
    rows = connection.execute(  # streamed: a million posts need not sit in memory at once
        select(ArchivedPost.id, ArchivedPost.list_name, ArchivedPost.thread_id, ArchivedPost.archived_at),
        execution_options={"yield_per": 10_000},
    )
    for post_id, list_name, thread_id, at in rows:
        figures = threads.setdefault(thread_id or post_id, [list_name, 0, at])
        figures[1] += 1
        figures[2] = max(figures[2], at)
        days[list_name, utc_day(at)] += 1
    thread_rows = [
        {"thread_id": tid, "list_name": name, "posts": posts, "latest_at": at}
        for tid, (name, posts, at) in threads.items()
    ]
    day_rows = [{"list_name": name, "day": day, "posts": posts} for (name, day), posts in days.items()]
    for start in range(0, len(thread_rows), 10_000):
        connection.execute(ThreadFigures.__table__.insert(), thread_rows[start : start + 10_000])
    for start in range(0, len(day_rows), 10_000):
        connection.execute(DayFigures.__table__.insert(), day_rows[start : start + 10_000])

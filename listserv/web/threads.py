"""The archive's read queries: threads of a list or a month, a thread's posts as a tree, activity figures.

Every query is bounded by an index of migration 0008 — the archive holds up to a million posts and a page
must answer in milliseconds. The list page never groups a whole list: it walks the list's posts newest
first on ``(list_name, archived_at)`` and stops once it has seen one page of distinct threads (a thread's
place is its latest post, so the first time a thread is met is its place). Figures for those threads
then come from ``(list_name, thread_id, archived_at)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from sqlalchemy import Row, func, or_, select
from sqlalchemy.orm import Session

from listserv.models import Member, Post

PAGE_SIZE = 25
WALK_BATCH = 500  # posts read per round trip while looking for a page of threads
MAX_DEPTH = 6  # replies deeper than this are shown at this depth, with a note of whom they answer


@dataclass(frozen=True)
class ThreadRow:
    thread_id: int
    message_id: str  # the first post's
    subject: str
    starter: str  # an address
    posts: int  # in the thread, or in the month on a month page
    latest_at: datetime


@dataclass(frozen=True)
class Activity:
    posts: int  # in the window
    posters: int
    latest_at: datetime | None  # ever


@dataclass
class Node:
    post: Post
    depth: int
    parent: Post | None = None
    flattened: bool = False  # deeper than MAX_DEPTH: shown beside its parent
    children: list[Node] = field(default_factory=list)


def id_path(message_id: str) -> str:
    """The Message-ID as it appears in our URLs (``listserv.archive.message_url``): '@' kept."""
    return quote(message_id.strip("<>"), safe="@")


def find_post(db: Session, list_name: str, message_id: str) -> Post | None:
    """``message_id`` as it came in a URL, without its angle brackets."""
    wanted = message_id.strip().strip("<>")
    return db.scalars(
        select(Post).where(Post.list_name == list_name, Post.message_id.in_([f"<{wanted}>", wanted]))
    ).first()


def recent_threads(
    db: Session, list_name: str, page: int, window: tuple[datetime, datetime] | None = None
) -> tuple[list[ThreadRow], bool]:
    """Threads by latest activity (within ``window`` on a month page): page ``page`` (from 1), and
    whether a later page exists."""
    ids = _walk(db, list_name, page * PAGE_SIZE + 1, window)[(page - 1) * PAGE_SIZE :]
    return _thread_rows(db, list_name, ids[:PAGE_SIZE], window), len(ids) > PAGE_SIZE


def _walk(db: Session, list_name: str, wanted: int, window: tuple[datetime, datetime] | None) -> list[int]:
    """The first ``wanted`` distinct threads met walking the list's posts newest first, in batches
    (keyset on the index order, so each batch is one short index range)."""
    seen: dict[int, None] = {}
    last: tuple[datetime, int] | None = None
    while len(seen) < wanted:
        query = select(Post.archived_at, Post.thread_id).where(Post.list_name == list_name)
        if window is not None:
            query = query.where(Post.archived_at >= window[0], Post.archived_at < window[1])
        if last is not None:  # rows equal to ``last`` in both columns are the same thread: skipping is fine
            query = query.where(
                Post.archived_at <= last[0], or_(Post.archived_at < last[0], Post.thread_id < last[1])
            )
        batch = db.execute(
            query.order_by(Post.archived_at.desc(), Post.thread_id.desc()).limit(WALK_BATCH)
        ).all()
        for archived_at, thread_id in batch:
            if thread_id is not None:
                seen.setdefault(thread_id)
                last = (archived_at, thread_id)
        if len(batch) < WALK_BATCH or last is None:
            break
    return list(seen)[:wanted]


def _thread_rows(
    db: Session, list_name: str, ids: list[int], window: tuple[datetime, datetime] | None
) -> list[ThreadRow]:
    if not ids:
        return []
    figures = select(Post.thread_id, func.count(), func.max(Post.archived_at)).where(
        Post.list_name == list_name, Post.thread_id.in_(ids)
    )
    if window is not None:
        figures = figures.where(Post.archived_at >= window[0], Post.archived_at < window[1])
    counts = {row[0]: row for row in db.execute(figures.group_by(Post.thread_id))}
    starters = {
        row.id: row
        for row in db.execute(
            select(Post.id, Post.message_id, Post.subject, Post.sender).where(Post.id.in_(ids))
        )
    }
    return [
        ThreadRow(
            tid, starters[tid].message_id, starters[tid].subject, starters[tid].sender, *counts[tid][1:]
        )
        for tid in ids
        if tid in starters and tid in counts
    ]


def month_bounds(year: int, month: int, timezone: str) -> tuple[datetime, datetime]:
    """The month as seen in the site's timezone, as aware moments."""
    zone = ZoneInfo(timezone)
    next_year, next_month = (year + 1, 1) if month == 12 else (year, month + 1)
    return datetime(year, month, 1, tzinfo=zone), datetime(next_year, next_month, 1, tzinfo=zone)


def archive_years(db: Session, list_name: str, timezone: str, now: datetime) -> list[int]:
    """Years with posts, newest first: one index probe per year since the list's first post."""
    first = db.scalar(select(func.min(Post.archived_at)).where(Post.list_name == list_name))
    if first is None:
        return []
    zone = ZoneInfo(timezone)
    years = range(now.astimezone(zone).year, first.astimezone(zone).year - 1, -1)
    return [year for year in years if _has_posts(db, list_name, *year_bounds(year, timezone))]


def _has_posts(db: Session, list_name: str, start: datetime, end: datetime) -> bool:
    found = db.scalar(  # ordered by the index: else PostgreSQL may look for "any row" in the whole table
        select(Post.archived_at)
        .where(Post.list_name == list_name, Post.archived_at >= start, Post.archived_at < end)
        .order_by(Post.archived_at)
        .limit(1)
    )
    return found is not None


def year_bounds(year: int, timezone: str) -> tuple[datetime, datetime]:
    zone = ZoneInfo(timezone)
    return datetime(year, 1, 1, tzinfo=zone), datetime(year + 1, 1, 1, tzinfo=zone)


def month_counts(db: Session, list_name: str, year: int, timezone: str) -> list[tuple[int, int]]:
    """(month, posts) of one year's months with posts: counting is bounded by a year of the list, where
    counting every month of a list would read the whole list."""
    counted = []
    for month in range(1, 13):
        start, end = month_bounds(year, month, timezone)
        posts = db.scalar(
            select(func.count())
            .select_from(Post)
            .where(Post.list_name == list_name, Post.archived_at >= start, Post.archived_at < end)
        )
        if posts:
            counted.append((month, int(posts)))
    return counted


def activity(db: Session, names: list[str], since: datetime) -> dict[str, Activity]:
    recent = {
        row[0]: row
        for row in db.execute(
            select(Post.list_name, func.count(), func.count(Post.sender.distinct()))
            .where(Post.list_name.in_(names), Post.archived_at >= since)
            .group_by(Post.list_name)
        )
    }
    found = {}
    for name in names:  # one max per list: each is a single index lookup
        latest = db.scalar(select(func.max(Post.archived_at)).where(Post.list_name == name))
        posts, posters = (recent[name][1], recent[name][2]) if name in recent else (0, 0)
        found[name] = Activity(posts, posters, latest)
    return found


def thread_tree(db: Session, list_name: str, thread_id: int) -> list[Node]:
    """The thread's posts nested by parent, replies in archive order; depth capped at MAX_DEPTH."""
    posts = db.scalars(
        select(Post)
        .where(Post.list_name == list_name, Post.thread_id == thread_id)
        .order_by(Post.archived_at, Post.id)
    ).all()
    by_id = {post.id: post for post in posts}
    children: dict[int | None, list[Post]] = {}
    for post in posts:
        parent = post.parent_id if post.parent_id in by_id and post.parent_id != post.id else None
        children.setdefault(parent, []).append(post)
    roots: list[Node] = []
    stack = [(post, None, 0, roots) for post in reversed(children.get(None, []))]
    while stack:  # iterative: a thread may be thousands of replies deep
        post, parent, depth, siblings = stack.pop()
        node = Node(post, min(depth, MAX_DEPTH), parent, depth > MAX_DEPTH)
        siblings.append(node)
        below = node.children if depth < MAX_DEPTH else siblings
        stack.extend((child, post, depth + 1, below) for child in reversed(children.get(post.id, [])))
    return roots


def count_nodes(nodes: list[Node]) -> int:
    return sum(1 + count_nodes(node.children) for node in nodes)


def thread_posts(db: Session, list_name: str, thread_id: int, last: int) -> tuple[int, list[Row[Any]]]:
    """A thread's size and its ``last`` newest posts (columns only), newest first."""
    size = db.scalar(select(func.count()).where(Post.list_name == list_name, Post.thread_id == thread_id))
    newest = db.execute(
        select(Post.message_id, Post.subject, Post.sender, Post.archived_at)
        .where(Post.list_name == list_name, Post.thread_id == thread_id)
        .order_by(Post.archived_at.desc(), Post.id.desc())
        .limit(last)
    ).all()
    return int(size or 0), list(newest)


def window_posts(db: Session, list_name: str, start: datetime, end: datetime) -> list[Row[Any]]:
    """The posts a digest covered: archived in [start, end), in archive order."""
    return list(
        db.execute(
            select(Post.message_id, Post.subject, Post.sender, Post.archived_at, Post.thread_id)
            .where(Post.list_name == list_name, Post.archived_at >= start, Post.archived_at < end)
            .order_by(Post.archived_at, Post.id)
        )
    )


def names_of(db: Session, addresses: set[str]) -> dict[str, str]:
    """Members' names for the addresses shown on a page (lowercased keys); unknown ones are left out."""
    keys = {address.lower() for address in addresses if address}
    if not keys:
        return {}
    rows = db.execute(select(Member.email_key, Member.name).where(Member.email_key.in_(keys)))
    return {key: name for key, name in rows if name}

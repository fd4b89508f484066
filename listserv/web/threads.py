"""The archive's read queries: threads of a list or a month, a page of a thread, activity figures.

Every query is bounded by an index of migration 0008 — the archive holds up to a million posts and a page
must answer in milliseconds. The list and month pages never group a whole list: they walk the list's
posts newest first on ``(list_name, archived_at, thread_id)`` and stop once they have met one page of
distinct threads (a thread's place is its latest post, so the first time a thread is met is its place).
Figures for those threads come from ``(list_name, thread_id, archived_at)``. A thread page reads the
thread's shape (ids and parents) and loads only its page of messages.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from sqlalchemy import Row, bindparam, func, or_, select
from sqlalchemy.orm import Session, defer, undefer

from listserv.store.keys import key_hash
from listserv.store.models import ArchivedPost, DayFigures, Tombstone

PAGE_SIZE = 25
THREAD_PAGE_SIZE = 20  # messages shown in full: ~1-2 ms each to read and render (4-5 KB of text)
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
    post: ArchivedPost
    level: int  # nesting shown, at most MAX_DEPTH
    # Whom it answers, when that is not shown by nesting it under its parent (the parent is on another
    # page, or the reply is deeper than MAX_DEPTH).
    answers: str | None = None
    children: list[Node] = field(default_factory=list)


@dataclass
class ThreadPage:
    roots: list[Node]
    size: int  # posts in the whole thread
    page: int
    pages: int
    first: ArchivedPost | None  # the thread's first post, for its subject


def id_path(message_id: str) -> str:
    """The Message-ID as it appears in our URLs (``listserv.archive.urls.message_url``): '@' kept."""
    return quote(message_id.strip("<>"), safe="@")


# A page shows the derived text: the raw and decorated bytes (~10 KB a post) load only if asked for.
FOR_PAGES = (defer(ArchivedPost.raw), defer(ArchivedPost.delivered_raw), undefer(ArchivedPost.display))


# The statements every archive page runs are built once, with bound parameters: building one again on
# each request cost a message page more than running it (a quarter of its CPU, issue 18).
POST_BY_MESSAGE_ID = (
    select(ArchivedPost)
    .options(*FOR_PAGES)
    .where(
        ArchivedPost.list_name == bindparam("list_name"),
        ArchivedPost.message_id.in_([bindparam("bracketed"), bindparam("bare")]),
    )
)


def find_post(db: Session, list_name: str, message_id: str) -> ArchivedPost | None:
    """``message_id`` as it came in a URL, without its angle brackets."""
    wanted = message_id.strip().strip("<>")
    found = db.scalars(
        POST_BY_MESSAGE_ID, {"list_name": list_name, "bracketed": f"<{wanted}>", "bare": wanted}
    )
    return found.first()


def erased_at(db: Session, secret: bytes, list_name: str, message_id: str) -> datetime | None:
    """When the message with this id (as in a URL) was erased from the list, if it was."""
    hashed = key_hash(secret, "message", message_id)
    return db.scalar(
        select(Tombstone.erased_at).where(
            Tombstone.kind == "message", Tombstone.key_hash == hashed, Tombstone.list_name == list_name
        )
    )


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
        query = select(ArchivedPost.archived_at, ArchivedPost.thread_id).where(
            ArchivedPost.list_name == list_name
        )
        if window is not None:
            query = query.where(ArchivedPost.archived_at >= window[0], ArchivedPost.archived_at < window[1])
        if last is not None:  # rows equal to ``last`` in both columns are the same thread: skipping is fine
            query = query.where(
                ArchivedPost.archived_at <= last[0],
                or_(ArchivedPost.archived_at < last[0], ArchivedPost.thread_id < last[1]),
            )
        batch = db.execute(
            query.order_by(ArchivedPost.archived_at.desc(), ArchivedPost.thread_id.desc()).limit(WALK_BATCH)
        ).all()
        for _, thread_id in batch:
            if thread_id is not None:
                seen.setdefault(thread_id)
        if len(batch) < WALK_BATCH:
            break
        last = (batch[-1].archived_at, batch[-1].thread_id or 0)
    return list(seen)[:wanted]


def _thread_rows(
    db: Session, list_name: str, ids: list[int], window: tuple[datetime, datetime] | None
) -> list[ThreadRow]:
    if not ids:
        return []
    figures = select(ArchivedPost.thread_id, func.count(), func.max(ArchivedPost.archived_at)).where(
        ArchivedPost.list_name == list_name, ArchivedPost.thread_id.in_(ids)
    )
    if window is not None:
        figures = figures.where(ArchivedPost.archived_at >= window[0], ArchivedPost.archived_at < window[1])
    counts = {row[0]: row for row in db.execute(figures.group_by(ArchivedPost.thread_id))}
    starters = {
        row.id: row
        for row in db.execute(
            select(ArchivedPost.id, ArchivedPost.message_id, ArchivedPost.subject, ArchivedPost.sender).where(
                ArchivedPost.id.in_(ids)
            )
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
    first = db.scalar(select(func.min(ArchivedPost.archived_at)).where(ArchivedPost.list_name == list_name))
    if first is None:
        return []
    zone = ZoneInfo(timezone)
    years = range(now.astimezone(zone).year, first.astimezone(zone).year - 1, -1)
    return [year for year in years if _has_posts(db, list_name, *year_bounds(year, timezone))]


def _has_posts(db: Session, list_name: str, start: datetime, end: datetime) -> bool:
    found = db.scalar(  # ordered by the index: else PostgreSQL may look for "any row" in the whole table
        select(ArchivedPost.archived_at)
        .where(
            ArchivedPost.list_name == list_name,
            ArchivedPost.archived_at >= start,
            ArchivedPost.archived_at < end,
        )
        .order_by(ArchivedPost.archived_at)
        .limit(1)
    )
    return found is not None


def year_bounds(year: int, timezone: str) -> tuple[datetime, datetime]:
    zone = ZoneInfo(timezone)
    return datetime(year, 1, 1, tzinfo=zone), datetime(year + 1, 1, 1, tzinfo=zone)


def month_counts(db: Session, list_name: str, year: int, timezone: str) -> list[tuple[int, int]]:
    """(month, posts) of one year's months with posts, added up from ``post_day`` (kept as posts are
    archived): at most 368 short rows. A UTC day that a month of the site's timezone starts within is
    split by counting its posts before the month's first moment (one short index range each)."""
    bounds = [month_bounds(year, month, timezone)[0] for month in range(1, 13)]
    bounds.append(year_bounds(year, timezone)[1])
    days = db.execute(
        select(DayFigures.day, DayFigures.posts).where(
            DayFigures.list_name == list_name,
            DayFigures.day >= bounds[0].astimezone(UTC).date(),
            DayFigures.day <= bounds[-1].astimezone(UTC).date(),
        )
    ).all()
    posts = [0] * 14  # index 0: before January, 13: after December
    splits = {
        bound.astimezone(UTC).date(): number for number, bound in enumerate(bounds) if _splits_day(bound)
    }
    before = _posts_before(db, list_name, [bounds[splits[day]] for day, _ in days if day in splits])
    for day, count in days:
        start = datetime.combine(day, time(), UTC)
        number = splits.get(day)
        if number is None:
            posts[bisect_right(bounds, start)] += count
        else:  # the month ``bounds[number]`` starts inside this day
            posts[number] += before[bounds[number]]
            posts[number + 1] += count - before[bounds[number]]
    return [(month, posts[month]) for month in range(1, 13) if posts[month]]


def _splits_day(moment: datetime) -> bool:
    return moment.astimezone(UTC).time() != time()


def _posts_before(db: Session, list_name: str, bounds: list[datetime]) -> dict[datetime, int]:
    """For each moment, the posts archived on its UTC day before it: one query for them all."""
    if not bounds:
        return {}
    counts = [
        select(func.count())
        .select_from(ArchivedPost)
        .where(
            ArchivedPost.list_name == list_name,
            ArchivedPost.archived_at >= datetime.combine(bound.astimezone(UTC).date(), time(), UTC),
            ArchivedPost.archived_at < bound,
        )
        .scalar_subquery()
        for bound in bounds
    ]
    # One statement of short index ranges (an OR of the ranges made SQLite read the whole list instead).
    found = db.execute(select(*counts)).one()
    return dict(zip(bounds, (int(count or 0) for count in found), strict=True))


def activity(db: Session, names: list[str], since: datetime) -> dict[str, Activity]:
    recent = {
        row[0]: row
        for row in db.execute(
            select(ArchivedPost.list_name, func.count(), func.count(ArchivedPost.sender.distinct()))
            .where(ArchivedPost.list_name.in_(names), ArchivedPost.archived_at >= since)
            .group_by(ArchivedPost.list_name)
        )
    }
    found = {}
    for name in names:  # one max per list: each is a single index lookup
        latest = db.scalar(select(func.max(ArchivedPost.archived_at)).where(ArchivedPost.list_name == name))
        posts, posters = (recent[name][1], recent[name][2]) if name in recent else (0, 0)
        found[name] = Activity(posts, posters, latest)
    return found


def thread_page(db: Session, list_name: str, thread_id: int, page: int | None, post_id: int) -> ThreadPage:
    """One page of a thread in reading order (depth first, replies in archive order), nested by parent.
    Only the page's posts are loaded: a long thread costs one query of ids for its shape. Without a
    ``page``, the page holding ``post_id``."""
    shape = db.execute(
        select(ArchivedPost.id, ArchivedPost.parent_id, ArchivedPost.sender)
        .where(ArchivedPost.list_name == list_name, ArchivedPost.thread_id == thread_id)
        .order_by(ArchivedPost.archived_at, ArchivedPost.id)
    ).all()
    order = _reading_order([(row.id, row.parent_id) for row in shape])
    pages = max(1, -(-len(order) // THREAD_PAGE_SIZE))
    if page is None:
        page = next((n // THREAD_PAGE_SIZE + 1 for n, (pid, _) in enumerate(order) if pid == post_id), 1)
    chunk = order[(min(page, pages) - 1) * THREAD_PAGE_SIZE :][:THREAD_PAGE_SIZE]
    posts = {
        post.id: post
        for post in db.scalars(
            select(ArchivedPost).options(*FOR_PAGES).where(ArchivedPost.id.in_([pid for pid, _ in chunk]))
        )
    }
    senders = {row.id: row.sender for row in shape}
    first = posts.get(order[0][0]) if order else None
    if first is None and order:
        first = db.get(ArchivedPost, order[0][0], options=FOR_PAGES)
    return ThreadPage(_nest(chunk, posts, senders), len(order), min(page, pages), pages, first)


def _reading_order(shape: list[tuple[int, int | None]]) -> list[tuple[int, int | None]]:
    """(post, parent) depth first; a post whose parent is not in the thread starts a branch."""
    known = {pid for pid, _ in shape}
    children: dict[int | None, list[int]] = {}
    parents = {}
    for pid, parent in shape:
        parent = parent if parent in known and parent != pid else None
        parents[pid] = parent
        children.setdefault(parent, []).append(pid)
    order: list[tuple[int, int | None]] = []
    stack = list(reversed(children.get(None, [])))
    while stack:  # iterative: a thread may be thousands of replies deep
        pid = stack.pop()
        order.append((pid, parents[pid]))
        stack.extend(reversed(children.get(pid, [])))
    return order


def _nest(
    chunk: list[tuple[int, int | None]], posts: dict[int, ArchivedPost], senders: dict[int, str]
) -> list[Node]:
    roots: list[Node] = []
    branch: list[tuple[Node, list[Node]]] = []  # the current path: each node and the list it sits in
    for pid, parent in chunk:
        if pid not in posts:  # erased between the two queries
            continue
        while branch and branch[-1][0].post.id != parent:
            branch.pop()
        if not branch:  # a thread's first post, or a reply whose parent is on an earlier page
            node = Node(posts[pid], 0, senders.get(parent) if parent else None)
            roots.append(node)
            branch.append((node, roots))
            continue
        above, siblings = branch[-1]
        if above.level < MAX_DEPTH:
            node = Node(posts[pid], above.level + 1)
            above.children.append(node)
            branch.append((node, above.children))
        else:  # beside its parent, saying whom it answers
            node = Node(posts[pid], MAX_DEPTH, senders.get(parent))
            siblings.append(node)
            branch.append((node, siblings))
    return roots


def thread_posts(db: Session, list_name: str, thread_id: int, last: int) -> tuple[int, list[Row[Any]]]:
    """A thread's size and its ``last`` newest posts (columns only), newest first."""
    size = db.scalar(
        select(func.count()).where(ArchivedPost.list_name == list_name, ArchivedPost.thread_id == thread_id)
    )
    newest = db.execute(
        select(ArchivedPost.message_id, ArchivedPost.subject, ArchivedPost.sender, ArchivedPost.archived_at)
        .where(ArchivedPost.list_name == list_name, ArchivedPost.thread_id == thread_id)
        .order_by(ArchivedPost.archived_at.desc(), ArchivedPost.id.desc())
        .limit(last)
    ).all()
    return int(size or 0), list(newest)


def window_posts(db: Session, list_name: str, start: datetime, end: datetime) -> list[Row[Any]]:
    """The posts a digest covered: archived in [start, end), in archive order."""
    return list(
        db.execute(
            select(
                ArchivedPost.message_id,
                ArchivedPost.subject,
                ArchivedPost.sender,
                ArchivedPost.archived_at,
                ArchivedPost.thread_id,
            )
            .where(
                ArchivedPost.list_name == list_name,
                ArchivedPost.archived_at >= start,
                ArchivedPost.archived_at < end,
            )
            .order_by(ArchivedPost.archived_at, ArchivedPost.id)
        )
    )

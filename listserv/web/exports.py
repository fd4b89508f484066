"""Downloads of the archive (mboxrd: a whole list, a month, a thread) and a private Atom feed per list.

An mbox is streamed: rows are fetched in batches by a session of the response's own — the handler's
session is closed by the time the body is sent — so a list of a million messages never sits in memory.

Feed readers cannot sign in, so a feed URL carries ``{member_id}-{mac}``: the MAC (HMAC-SHA256 of the
site secret over member and list) proves the link was made for that member and list, the id finds the
member without a scan. Every request then checks that the member may *still* read the list; a bad token,
an unknown list and a member who left all get the same 404.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import Engine, Select, select
from sqlalchemy.orm import Session
from starlette.responses import Response, StreamingResponse

from listserv.archive.formats import FeedEntry, FeedInfo, atom_feed, mbox_chunks
from listserv.archive.reading import read_message
from listserv.archive.urls import list_url, message_url
from listserv.config import MailingList
from listserv.store.models import ArchivedPost
from listserv.web.access import load_feed_reader
from listserv.web.app import Access, Ctx, Page, Problem
from listserv.web.archive import readable_list
from listserv.web.threads import find_post, month_bounds

FEED_ENTRIES = 50
MBOX_BATCH = 100  # rows per round trip: a few MB of raw mail at most in memory
MAC_CHARS = 26  # 130 bits of base32


def feed_token(secret: bytes, member_id: int, list_name: str) -> str:
    digest = hmac.new(secret, f"feed:{member_id}:{list_name}".encode(), hashlib.sha256).digest()
    return f"{member_id}-{base64.b32encode(digest).decode('ascii').lower()[:MAC_CHARS]}"


def feed_url(base_url: str, secret: bytes, member_id: int, list_name: str) -> str:
    return f"{base_url.rstrip('/')}/feeds/{list_name}/{feed_token(secret, member_id, list_name)}.atom"


# -- mbox ----------------------------------------------------------------------------------------


def _mbox(ctx: Ctx, query: Select[tuple[str, datetime | None, bytes]], filename: str) -> Response:
    engine = ctx.site.engine.execution_options(sqlite_deferred=True)
    return StreamingResponse(
        _stream(engine, query),
        media_type="application/mbox",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _stream(engine: Engine, query: Select[tuple[str, datetime | None, bytes]]) -> Iterator[bytes]:
    """Runs while the body is sent (Starlette iterates it in its thread pool), in a session of its own."""
    with Session(engine) as session:
        rows = session.execute(query.execution_options(yield_per=MBOX_BATCH))
        yield from mbox_chunks((sender, date, raw) for sender, date, raw in rows)


def _posts(list_name: str) -> Select[tuple[str, datetime | None, bytes]]:
    return select(ArchivedPost.sender, ArchivedPost.date, ArchivedPost.raw).where(
        ArchivedPost.list_name == list_name, ArchivedPost.erased_at.is_(None)
    )


def list_mbox(ctx: Ctx) -> Response:
    mailing_list = readable_list(ctx)
    if ctx.param("name") != mailing_list.name:
        raise Problem(404, "http_404")
    query = _posts(mailing_list.name).order_by(ArchivedPost.archived_at, ArchivedPost.id)
    return _mbox(ctx, query, f"{mailing_list.name}.mbox")


def month_mbox(ctx: Ctx) -> Response:
    mailing_list = readable_list(ctx)
    year, month = int(ctx.param("year")), int(ctx.param("month"))
    if not (1 <= month <= 12 and 1970 <= year <= 9999):
        raise Problem(404, "http_404")
    start, end = month_bounds(year, month, ctx.site.settings.site.timezone)
    query = (
        _posts(mailing_list.name)
        .where(ArchivedPost.archived_at >= start, ArchivedPost.archived_at < end)
        .order_by(ArchivedPost.archived_at, ArchivedPost.id)
    )
    return _mbox(ctx, query, f"{mailing_list.name}-{year:04d}-{month:02d}.mbox")


def thread_mbox(ctx: Ctx) -> Response:
    mailing_list = readable_list(ctx)
    post = find_post(ctx.db, mailing_list.name, ctx.param("message_id"))
    if post is None:
        raise Problem(404, "no_message")
    thread_id = post.thread_id or post.id
    query = (
        _posts(mailing_list.name)
        .where(ArchivedPost.thread_id == thread_id)
        .order_by(ArchivedPost.archived_at, ArchivedPost.id)
    )
    return _mbox(ctx, query, f"{mailing_list.name}-thread-{thread_id}.mbox")


# -- Atom ----------------------------------------------------------------------------------------


def feed(ctx: Ctx) -> Response:
    mailing_list = _feed_list(ctx)
    base = ctx.site.settings.site.base_url
    posts = ctx.db.scalars(
        select(ArchivedPost)
        .where(ArchivedPost.list_name == mailing_list.name, ArchivedPost.erased_at.is_(None))
        .order_by(ArchivedPost.archived_at.desc(), ArchivedPost.id.desc())
        .limit(FEED_ENTRIES)
    ).all()
    info = FeedInfo(
        id=list_url(base, mailing_list.name),
        title=mailing_list.title,
        self_url=f"{base.rstrip('/')}{ctx.request.url.path}",
        alternate_url=list_url(base, mailing_list.name),
        language=mailing_list.language,
        author=mailing_list.title,
    )
    return Response(
        atom_feed(info, (_entry(base, mailing_list.name, post) for post in posts)),
        media_type="application/atom+xml",
        headers={"Cache-Control": "private, max-age=300", "X-Robots-Tag": "noindex"},
    )


def _feed_list(ctx: Ctx) -> MailingList:
    """The list, if the token is this member's for it and they may still read it; one 404 otherwise."""
    name, token = ctx.param("list"), ctx.param("token")
    member_id, _, _ = token.partition("-")
    mailing_list = ctx.site.settings.lists.get(name)
    if mailing_list is None or not member_id.isdigit() or len(member_id) > 12:
        raise Problem(404, "http_404")
    expected = feed_token(ctx.site.secret, int(member_id), name)
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise Problem(404, "http_404")
    reader = load_feed_reader(ctx.db, int(member_id))
    if reader is None or not reader.can_read(name):
        raise Problem(404, "http_404")
    return mailing_list


def _entry(base: str, list_name: str, post: ArchivedPost) -> FeedEntry:
    view = read_message(post.raw)
    sender = view.headers.sender
    url = message_url(base, list_name, post.message_id)
    return FeedEntry(
        id=url,
        title=post.subject,
        author_name=sender.name if sender else "",
        updated=post.archived_at,  # when it reached the list: the sender's Date can be anything
        url=url,
        summary=view.text,
    )


PAGES = [
    Page("/lists/{list}/export/{name}.mbox", list_mbox, name="export_list"),
    Page("/lists/{list}/{year:int}/{month:int}/export.mbox", month_mbox, name="export_month"),
    Page("/lists/{list}/export/thread/{message_id:path}", thread_mbox, name="export_thread"),
    Page("/feeds/{list}/{token}.atom", feed, Access.PUBLIC, name="feed"),
]

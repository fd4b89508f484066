"""The archive pages: the viewer's lists, a list's threads, a month, a thread, a message, a week's topic in
every language, a digest issue (raw bytes and attachments are in ``downloads``).

Every page of a list checks the list exists (404) and the viewer reads it (403) before touching a post.
Messages are shown through ``listserv.archive.reading``: text arrives as structures the templates escape, HTML
mail only as nh3's sanitised output.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from markupsafe import Markup
from sqlalchemy import select
from starlette.responses import Response

from listserv.archive import display, reading
from listserv.archive.urls import message_url
from listserv.config import MailingList
from listserv.store.models import ArchivedPost, SentDigest, SentPrompt, Topic
from listserv.web import listing, threads
from listserv.web.access import Viewer
from listserv.web.app import Ctx, Page, Problem
from listserv.web.guest_view import hide_addresses
from listserv.web.people import names_of, people_of
from listserv.weekly.topics import iso_week, language_name, text_for

ACTIVITY_DAYS = 30
MAX_PAGE = 10_000  # deeper pages walk too much of a list; nobody pages that far by hand
LATEST_REPLIES = 3  # on the topic page, per language


@dataclass(frozen=True)
class Shown:
    """One message as a page shows it; ``html`` is Markup only because nh3 has sanitised it."""

    post: ArchivedPost
    view: reading.MessageView
    body: tuple[reading.Block, ...]  # without blank lines at their ends (``display`` tidied them)
    html: Markup | None


@dataclass(frozen=True)
class TopicText:
    week: str
    title: str
    body: str
    language: str  # the language of the text (a missing translation falls back)


def readable_list(ctx: Ctx) -> MailingList:
    name = ctx.param("list")
    found = ctx.site.settings.lists.get(name)
    if found is None:
        raise Problem(404, "no_list", list=name)
    if not ctx.member().can_read(name):
        raise refusal(ctx.member(), name)
    return found


def refusal(viewer: Viewer, list_name: str) -> Problem:
    """A guest is told nothing exists beyond their discussion (404); a member of other lists, why (403)."""
    return Problem(404, "http_404") if viewer.is_guest else Problem(403, "not_member", list=list_name)


def readable_post(ctx: Ctx) -> tuple[MailingList, ArchivedPost]:
    """A discussion's pages (a thread, one of its messages): the list's readers, or a guest of this very
    thread (``Viewer.can_read_thread``); every other post answers as if it did not exist."""
    name, viewer = ctx.param("list"), ctx.member()
    found = ctx.site.settings.lists.get(name)
    if found is None or viewer.can_read(name):
        mailing_list = readable_list(ctx)
        return mailing_list, archived_post(ctx, mailing_list)
    post = threads.find_post(ctx.db, name, ctx.param("message_id"))
    if post is None or not viewer.can_read_thread(name, post.thread_id or post.id):
        raise refusal(viewer, name)
    return found, post


def archived_post(ctx: Ctx, mailing_list: MailingList) -> ArchivedPost:
    post = threads.find_post(ctx.db, mailing_list.name, ctx.param("message_id"))
    if post is None:
        erased_at = threads.erased_at(ctx.db, ctx.site.secret, mailing_list.name, ctx.param("message_id"))
        if erased_at is not None:
            raise Problem(410, "erased", erased_at=erased_at)
        raise Problem(404, "no_message")
    return post


def page_number(ctx: Ctx) -> int:
    try:
        return max(1, min(int(ctx.query("page", "1")), MAX_PAGE))
    except ValueError:
        return 1


def show(post: ArchivedPost, show_html: bool = False, names_only: bool = False) -> Shown:
    """The post as derived when it was archived (``archive.display``); a row from before that (or
    from an older ``display.VERSION``) is derived here, until ``listserv reindex`` stores it. For a
    guest (``names_only``) addresses are taken out of the text too."""
    stored = post.display
    if not display.is_current(stored):
        stored = display.derive(post.raw, post.list_name, post.message_id)
    view = display.view(stored, show_html)
    html = Markup(view.html) if view.html is not None else None  # safe: nh3's sanitised output
    body = view.body
    if names_only:
        body, html = hide_addresses(body, html)
    return Shown(post, view, body, html)


def who(ctx: Ctx, addresses: set[str]) -> dict[str, str]:
    """For templates: ``names.get(address.lower(), address)`` shows a member's name when known."""
    return names_of(ctx.db, addresses)


def people(ctx: Ctx, addresses: set[str], list_name: str, post: ArchivedPost) -> dict[str, object]:
    """A discussion's ``names`` (as ``who``) and its ``guests``: which of the addresses were guests of it."""
    names, guests = people_of(ctx.db, addresses, list_name, post.thread_id or post.id)
    return {"names": names, "guests": guests}


def topic_text(topic: Topic, language: str) -> TopicText:
    try:
        title, body, used = text_for(topic, language)
    except ValueError:  # a topic with no text at all: still a week to link to
        title, body, used = topic.week, "", language
    return TopicText(topic.week, title, body, used)


def lists_index(ctx: Ctx) -> Response:
    viewer, settings = ctx.member(), ctx.site.settings
    if viewer.is_guest:
        raise Problem(404, "http_404")
    now = ctx.site.clock()
    readable = [ml for ml in settings.lists.values() if viewer.can_read(ml.name)]
    figures = threads.activity(ctx.db, [ml.name for ml in readable], now - timedelta(days=ACTIVITY_DAYS))
    week = iso_week(now, settings.site.timezone)
    topics = {
        topic.room: topic
        for topic in ctx.db.scalars(
            select(Topic).where(Topic.week == week, Topic.room.in_({ml.room for ml in readable}))
        )
    }
    rooms = []
    for room in settings.rooms:
        lists = [ml for ml in readable if ml.room == room.name]
        if lists:
            title = room.title.get(ctx.language) or room.title.get("en") or room.name
            rooms.append((title, lists))
    texts = {ml.name: topic_text(topics[ml.room], ml.language) for ml in readable if ml.room in topics}
    return ctx.render(
        "lists.html",
        rooms=rooms,
        figures=figures,
        topics=texts,
        days=ACTIVITY_DAYS,
        language_name=lambda code: language_name(code, ctx.language),
    )


def list_page(ctx: Ctx) -> Response:
    mailing_list = readable_list(ctx)
    before, after = listing.Cursor.parse(ctx.query("before")), listing.Cursor.parse(ctx.query("after"))
    found = listing.list_threads(ctx.db, mailing_list.name, before, after, page_number(ctx))
    now = ctx.site.clock()
    topic = ctx.db.scalars(
        select(Topic).where(
            Topic.room == mailing_list.room, Topic.week == iso_week(now, ctx.site.settings.site.timezone)
        )
    ).first()
    return ctx.render(
        "list.html",
        mailing_list=mailing_list,
        threads=found.rows,
        listing=found,
        topic=topic_text(topic, mailing_list.language) if topic else None,
        prompt=prompt_id(ctx, topic, mailing_list.name) if topic else None,
        **calendar(ctx, mailing_list.name, ctx.query("year")),
        names=who(ctx, {row.starter for row in found.rows}),
        idpath=threads.id_path,
    )


def calendar(ctx: Ctx, list_name: str, wanted: str) -> dict[str, object]:
    """The month navigation: years with posts, and one year's months with their counts (the asked year,
    else the newest); kept until a post is archived (``calendars.py``)."""
    timezone = ctx.site.settings.site.timezone

    def make() -> dict[str, object]:
        years = threads.archive_years(ctx.db, list_name, timezone, ctx.site.clock())
        year = int(wanted) if wanted.isdigit() and int(wanted) in years else (years[0] if years else None)
        counts = threads.month_counts(ctx.db, list_name, year, timezone) if year else []
        months = [(threads.month_bounds(year, month, timezone)[0], month, posts) for month, posts in counts]
        return {"years": years, "year": year, "months": months}

    return ctx.site.calendars.get(ctx.db, list_name, wanted, make)


def prompt_id(ctx: Ctx, topic: Topic, list_name: str) -> str | None:
    """The Message-ID of the week's prompt on this list, once it is in the archive."""
    message_id = ctx.db.scalar(
        select(SentPrompt.message_id).where(
            SentPrompt.topic_id == topic.id, SentPrompt.list_name == list_name
        )
    )
    if message_id is None or threads.find_post(ctx.db, list_name, message_id) is None:
        return None
    return message_id


def month_page(ctx: Ctx) -> Response:
    mailing_list, page = readable_list(ctx), page_number(ctx)
    year, month = int(ctx.param("year")), int(ctx.param("month"))
    if not (1 <= month <= 12 and 1970 <= year <= 9999):
        raise Problem(404, "http_404")
    start, end = threads.month_bounds(year, month, ctx.site.settings.site.timezone)
    rows, more = threads.recent_threads(ctx.db, mailing_list.name, page, (start, end))
    return ctx.render(
        "month.html",
        mailing_list=mailing_list,
        threads=rows,
        page=page,
        more=more,
        month_start=start,
        month=month,
        **calendar(ctx, mailing_list.name, str(year)),
        names=who(ctx, {row.starter for row in rows}),
        idpath=threads.id_path,
    )


def thread_page(ctx: Ctx) -> Response:
    mailing_list, post = readable_post(ctx)
    asked = ctx.query("page")
    thread = threads.thread_page(
        ctx.db, mailing_list.name, post.thread_id or post.id, page_number(ctx) if asked else None, post.id
    )
    shown: dict[int, Shown] = {}
    senders: set[str] = set()
    stack = list(thread.roots)
    names_only = ctx.member().names_only(mailing_list.name)
    while stack:
        node = stack.pop()
        shown[node.post.id] = show(node.post, names_only=names_only)
        senders.update({node.post.sender, node.answers or ""})
        stack.extend(node.children)
    return ctx.render(
        "thread.html",
        mailing_list=mailing_list,
        thread=thread,
        shown_posts=shown,
        current=post,
        first=thread.first or post,
        idpath=threads.id_path,
        names_only=names_only,
        **people(ctx, senders, mailing_list.name, post),
    )


def message_page(ctx: Ctx) -> Response:
    mailing_list, post = readable_post(ctx)
    if post.erased_at is not None:  # its stand-in, reached by the hashed id a thread links to
        raise Problem(410, "erased", erased_at=post.erased_at)
    names_only = ctx.member().names_only(mailing_list.name)
    shown = show(post, show_html=ctx.query("html") == "1", names_only=names_only)
    return ctx.render(
        "message.html",
        mailing_list=mailing_list,
        message=shown,
        stable_url=message_url(ctx.site.settings.site.base_url, mailing_list.name, post.message_id),
        idpath=threads.id_path,
        names_only=names_only,
        **people(ctx, {post.sender}, mailing_list.name, post),
    )


def topic_page(ctx: Ctx) -> Response:
    mailing_list = readable_list(ctx)
    topic = ctx.db.scalars(
        select(Topic).where(Topic.room == mailing_list.room, Topic.week == ctx.param("week"))
    ).first()
    if topic is None:
        raise Problem(404, "no_topic", week=ctx.param("week"))
    viewer = ctx.member()
    sisters = []
    for sister in ctx.site.settings.lists.values():
        if sister.room == mailing_list.room and viewer.can_read(sister.name):
            prompt = prompt_id(ctx, topic, sister.name)
            post = threads.find_post(ctx.db, sister.name, prompt) if prompt else None
            size, latest = (
                threads.thread_posts(ctx.db, sister.name, post.thread_id or post.id, LATEST_REPLIES)
                if post
                else (0, [])
            )
            sisters.append((sister, topic_text(topic, sister.language), prompt, size, latest))
    senders = {row.sender for *_, latest in sisters for row in latest}
    return ctx.render(
        "topic.html",
        mailing_list=mailing_list,
        week=topic.week,
        sisters=sisters,
        names=who(ctx, senders),
        idpath=threads.id_path,
        language_name=lambda code: language_name(code, ctx.language),
    )


def digest_page(ctx: Ctx) -> Response:
    mailing_list = readable_list(ctx)
    issues = ctx.db.scalars(
        select(SentDigest).where(
            SentDigest.list_name == mailing_list.name,
            SentDigest.period == ctx.param("period"),
            SentDigest.key == ctx.param("key"),
        )
    ).all()
    if not issues:
        raise Problem(404, "no_digest")
    issue = min(issues, key=lambda row: row.format != "mime")  # the MIME issue when both exist
    posts = threads.window_posts(ctx.db, mailing_list.name, issue.covered_from, issue.covered_until)
    return ctx.render(
        "digest.html",
        mailing_list=mailing_list,
        issue=issue,
        posts=posts,
        names=who(ctx, {row.sender for row in posts}),
        idpath=threads.id_path,
    )


PAGES = [
    Page("/lists/", lists_index, name="lists"),
    Page("/lists/{list}/", list_page, name="list"),
    Page("/lists/{list}/{year:int}/{month:int}/", month_page, name="month"),
    Page("/lists/{list}/thread/{message_id:path}", thread_page, name="thread"),
    Page("/lists/{list}/message/{message_id:path}", message_page, name="message"),
    Page("/lists/{list}/topic/{week}", topic_page, name="topic"),
    Page("/lists/{list}/digest/{period}/{key}", digest_page, name="digest"),
]

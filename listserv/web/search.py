"""The search page: the archive's full-text index (``listserv.archive.index``) behind a form with filters.

Only the lists the reader may read are ever searched; a filter for another list is ignored, not an
error, so a shared link never shows more than its reader may see."""

from __future__ import annotations

from datetime import date

from starlette.responses import Response

from listserv.archive import search as archive_search
from listserv.web.app import Ctx, Page, Problem

PER_PAGE = 20


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _page_number(value: str) -> int:
    return int(value) if value.isdigit() and 0 < int(value) < 10_000 else 1


def search_page(ctx: Ctx) -> Response:
    viewer = ctx.member()
    if viewer.is_guest:  # a guest reads one discussion: for them there is no search
        raise Problem(404, "http_404")
    lists = ctx.site.settings.lists
    readable = sorted(viewer.reads & lists.keys())
    chosen = ctx.query("list")
    languages = sorted({lists[name].language for name in readable})
    form = {
        "q": ctx.query("q").strip()[:500],
        "list": chosen if chosen in readable else "",
        "sender": ctx.query("sender").strip()[:320],
        "since": ctx.query("since"),
        "until": ctx.query("until"),
        "language": ctx.query("language") if ctx.query("language") in languages else "",
    }
    bad_dates = [name for name in ("since", "until") if form[name] and _day(form[name]) is None]
    results = None
    if form["q"]:
        query = archive_search.SearchQuery(
            text=form["q"],
            lists=(form["list"],) if form["list"] else tuple(readable),
            sender=form["sender"] or None,
            since=_day(form["since"]),
            until=_day(form["until"]),
            language=form["language"] or None,
            page=_page_number(ctx.query("page")),
            per_page=PER_PAGE,
        )
        results = archive_search.search(ctx.db, query)
    return ctx.render(
        "search.html",
        form=form,
        results=results,
        bad_dates=bad_dates,
        readable=[(name, lists[name].title) for name in readable],
        language_choices=[(code, ctx.site.pages.language(code).name) for code in languages],
    )


PAGES = [Page("/search", search_page, name="search")]

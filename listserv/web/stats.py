"""``/stats``: participation over time for moderators (their lists) and chief moderators (all lists),
with server-drawn SVG charts, the member states ranked by activity with their names in the reader's
language, moderation latency, and ``/stats.csv`` with the same rows as ``listserv stats``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from babel.numbers import format_decimal
from starlette.responses import Response

from listserv.archive.stats import states_ranked, stats_rows
from listserv.archive.stats_format import as_csv
from listserv.archive.stats_periods import BY, Period, default_first, local_day, periods
from listserv.store import countries
from listserv.web.app import Ctx, Page, Problem
from listserv.web.charts import Series, bar_chart

ALL = "*"  # the name of the row that counts every list shown together
MAX_PERIODS = 60


@dataclass(frozen=True)
class Query:
    lists: list[str]
    spans: list[Period]
    by: str
    first: date
    last: date
    list_name: str
    allowed: list[str]  # every list this reader may see figures of


def territory_name(code: str, language: str) -> str:
    """A member state's name in ``language`` when the value is an ISO 3166 code, else the value as the
    directory holds it (names typed before the codes)."""
    return countries.name(countries.normalise(code) or code, language)


def _query(ctx: Ctx) -> Query:
    viewer, settings = ctx.member(), ctx.site.settings
    allowed = [n for n in settings.lists if viewer.is_chief or viewer.can_moderate(n)]
    if not allowed:
        raise Problem(403, "moderators_only")
    timezone = settings.site.timezone
    by = ctx.query("by", "week")
    if by not in BY:
        raise Problem(400, "stats_query")
    try:
        last = (
            date.fromisoformat(ctx.query("to")) if ctx.query("to") else local_day(ctx.site.clock(), timezone)
        )
        first = date.fromisoformat(ctx.query("from")) if ctx.query("from") else default_first(last, by)
    except ValueError:
        raise Problem(400, "stats_query") from None
    list_name = ctx.query("list")
    if first > last or (list_name and list_name not in allowed):
        raise Problem(400, "stats_query")
    spans = periods(first, last, by, timezone)[-MAX_PERIODS:]
    return Query([list_name] if list_name else allowed, spans, by, first, last, list_name, allowed)


def dashboard(ctx: Ctx) -> Response:
    query = _query(ctx)
    rows = stats_rows(ctx.db, query.lists, query.spans)
    totals = stats_rows(ctx.db, query.lists, query.spans, together=ALL)
    ranked = [
        (territory_name(state, ctx.language), state, posts, posters)
        for state, posts, posters in states_ranked(
            ctx.db, query.lists, query.spans[0].start, query.spans[-1].end
        )
    ]
    return ctx.render(
        "stats.html",
        query=query,
        lists=ctx.site.settings.lists,
        rows=rows,
        totals=totals,
        labels=[row["period"] for row in totals],
        column=lambda name: [row[name] for row in totals],
        minutes_of=lambda name: [None if row[name] is None else minutes(row[name]) for row in totals],
        minutes=minutes,
        ranked=ranked,
        chart=lambda *args: bar_chart(*args, lambda value: format_decimal(value, locale=ctx.language)),
        series=Series,
        csv_query=_csv_query(query),
    )


def minutes(seconds: float) -> float:
    """Latency shown in minutes, one decimal: seconds are too fine and hours too coarse for a queue."""
    return round(seconds / 60, 1)


def _csv_query(query: Query) -> str:
    shown: dict[str, Any] = {"from": query.first, "to": query.last, "by": query.by}
    if query.list_name:
        shown["list"] = query.list_name
    return "&".join(f"{key}={value}" for key, value in shown.items())


def download(ctx: Ctx) -> Response:
    query = _query(ctx)
    body = as_csv(stats_rows(ctx.db, query.lists, query.spans))
    name = f"participation-{query.spans[0].label}-{query.spans[-1].label}.csv"
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


PAGES = [Page("/stats", dashboard, name="stats"), Page("/stats.csv", download, name="stats_csv")]

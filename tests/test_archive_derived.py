"""What is derived when a post is archived (``archive/derived.py``): rebuilt as it was by ``listserv
reindex``; the list's threads by keyset, right at page boundaries and on ties, the same as the old
page numbers; the month calendar from the day figures, the same as counting posts across the site's
timezone."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, LargeBinary, column, delete, func, select, table, update
from sqlalchemy.orm import Session

from listserv.archive.posts import archive_raw
from listserv.config import Settings
from listserv.store.db import UTCDateTime
from listserv.store.models import ArchivedPost, DayFigures, ThreadFigures
from listserv.web import listing, threads
from tests.conftest import WebClient, add_members, make_config, run_cli, set_password
from tests.test_web_archive import mail, with_attachment

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def archive(engine: Engine, raw: bytes, when: datetime, list_name: str = "ta-en") -> None:
    found = re.search(rb"^Message-ID: (<[^>]+>)", raw, re.MULTILINE)
    assert found is not None
    with Session(engine) as session, session.begin():
        archive_raw(session, raw, found[1].decode(), list_name, when)


def snapshot(engine: Engine) -> dict[str, Any]:
    with Session(engine) as session:
        return {
            "posts": session.execute(
                select(ArchivedPost.id, ArchivedPost.display, ArchivedPost.search_text).order_by(
                    ArchivedPost.id
                )
            ).all(),
            "threads": session.execute(
                select(
                    ThreadFigures.thread_id,
                    ThreadFigures.list_name,
                    ThreadFigures.posts,
                    ThreadFigures.latest_at,
                ).order_by(ThreadFigures.thread_id)
            ).all(),
            "days": session.execute(
                select(DayFigures.list_name, DayFigures.day, DayFigures.posts).order_by(DayFigures.day)
            ).all(),
        }


def test_reindex_rebuilds_the_derived_text_and_figures(engine: Engine, tmp_path: Path, db_url: str) -> None:
    archive(engine, with_attachment("first@example.org"), NOW)
    archive(
        engine, mail("html@example.org", "HTML", "<p>Hello <b>all</b></p>", content_type="text/html"), NOW
    )
    archive(
        engine, mail("re@example.org", "Re: Report", "> quoted\n\nAgreed.", reply_to="first@example.org"), NOW
    )
    archive(engine, mail("fr@example.org", "Réunion", "Bonjour."), NOW - timedelta(days=40), "ta-fr")
    before = snapshot(engine)
    assert all(display and search_text is not None for _, display, search_text in before["posts"])
    assert '"attachments":[[2,"résumé.html","text/html"' in before["posts"][0][1]
    assert [row.posts for row in before["threads"]] == [2, 1, 1]
    with Session(engine) as session, session.begin():  # as after an upgrade from before they existed
        session.execute(update(ArchivedPost).values(display=None, search_text=None))
        session.execute(delete(ThreadFigures))
        session.execute(delete(DayFigures))
    config = tmp_path / "reindex.yaml"
    config.write_text(yaml.safe_dump(make_config(tmp_path, db_url)), encoding="utf-8")
    result = run_cli(config, "reindex")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("reindexed 4 messages in ")
    assert snapshot(engine) == before


def all_threads(engine: Engine) -> list[int]:
    """The list's threads by latest activity, counted from the posts themselves (the old way)."""
    with Session(engine) as session:
        rows = session.execute(
            select(ArchivedPost.thread_id, func.max(ArchivedPost.archived_at).label("latest"))
            .where(ArchivedPost.list_name == "ta-en")
            .group_by(ArchivedPost.thread_id)
            .order_by(func.max(ArchivedPost.archived_at).desc(), ArchivedPost.thread_id.desc())
        ).all()
    return [row.thread_id for row in rows]


def walk(engine: Engine) -> tuple[list[list[int]], list[list[int]]]:
    """Every page by "older" links, then back by "newer" links."""
    older, newer = [], []
    with Session(engine) as session:
        page = listing.list_threads(session, "ta-en")
        older.append([row.thread_id for row in page.rows])
        while page.older is not None:
            page = listing.list_threads(session, "ta-en", before=page.older)
            older.append([row.thread_id for row in page.rows])
        newer.append(older[-1])
        while page.newer is not None:
            page = listing.list_threads(session, "ta-en", after=page.newer)
            newer.append([row.thread_id for row in page.rows])
    return older, newer


def test_keyset_pages_at_their_boundaries_and_on_ties(engine: Engine) -> None:
    for number in range(2 * threads.PAGE_SIZE):  # exactly two pages; every third pair archived together
        when = NOW + timedelta(minutes=number - number % 3)
        archive(engine, mail(f"t{number}@example.org", f"Thread {number}", when=when), when)
    expected = all_threads(engine)
    older, newer = walk(engine)
    assert len(older) == 2 and [len(page) for page in older] == [threads.PAGE_SIZE] * 2
    assert [tid for page in older for tid in page] == expected
    assert list(reversed(newer)) == older
    archive(engine, mail("late@example.org", "Late", when=NOW - timedelta(days=1)), NOW - timedelta(days=1))
    reply_at = NOW + timedelta(hours=5)  # the oldest thread comes back to the top
    archive(engine, mail("r@example.org", "Re: 0", reply_to="t0@example.org", when=reply_at), reply_at)
    expected = all_threads(engine)
    older, _ = walk(engine)
    assert [len(page) for page in older] == [threads.PAGE_SIZE, threads.PAGE_SIZE, 1]
    assert [tid for page in older for tid in page] == expected
    with Session(engine) as session:
        for number in (1, 2, 3, 4):  # the old page numbers: the same pages
            page = listing.list_threads(session, "ta-en", page=number)
            assert [row.thread_id for row in page.rows] == expected[(number - 1) * 25 : number * 25]
            assert page.page == number


def test_old_page_links_and_bad_cursors(settings: Settings, engine: Engine) -> None:
    for number in range(30):
        when = NOW + timedelta(minutes=number)
        archive(engine, mail(f"t{number}@example.org", f"Thread {number}", when=when), when)
    add_members(engine, settings, {"email": "ana@example.org", "lists": "ta-en"})
    set_password(engine, "ana@example.org")
    reader = WebClient(settings, engine, lambda: NOW).sign_in("ana@example.org")
    second = reader.get("/lists/ta-en/?page=2")
    assert second.status_code == 200
    assert re.findall(r"/thread/t(\d+)@example.org\"", second.text) == ["4", "3", "2", "1", "0"]
    for bad in ("?before=x", "?before=1.", "?after=99999999999999999999999999.1", "?page=-3", "?page=abc"):
        answer = reader.get(f"/lists/ta-en/{bad}")  # the newest page, as an unknown cursor says nothing
        assert answer.status_code == 200, bad
        assert "Thread 29" in answer.text, bad


def test_month_counts_from_day_figures_across_the_sites_timezone(settings: Settings, engine: Engine) -> None:
    zone = settings.site.timezone  # Europe/Zurich: its months start at 22:00 or 23:00 UTC
    moments = [
        datetime(2026, 10, 31, 22, 30, tzinfo=UTC),  # 23:30 in Zurich: October
        datetime(2026, 10, 31, 23, 30, tzinfo=UTC),  # 00:30 on 1 November in Zurich
        datetime(2026, 3, 31, 21, 59, tzinfo=UTC),  # 23:59 summer time: March
        datetime(2026, 3, 31, 22, 0, tzinfo=UTC),  # midnight: April
        datetime(2025, 12, 31, 23, 30, tzinfo=UTC),  # 2026 already in Zurich
        datetime(2026, 12, 31, 23, 30, tzinfo=UTC),  # 2027 in Zurich
        datetime(2026, 6, 15, 12, 0, tzinfo=UTC),
    ]
    for number, when in enumerate(moments):
        archive(engine, mail(f"m{number}@example.org", f"Month {number}", when=when), when)
    with Session(engine) as session:
        counted = threads.month_counts(session, "ta-en", 2026, zone)
        expected = []
        for month in range(1, 13):
            start, end = threads.month_bounds(2026, month, zone)
            posts = sum(start <= when < end for when in moments)
            if posts:
                expected.append((month, posts))
        assert counted == expected == [(1, 1), (3, 1), (4, 1), (6, 1), (10, 1), (11, 1)]
        assert threads.month_counts(session, "ta-en", 2027, zone) == [(1, 1)]


def test_migration_0016_backfills_posts_archived_before_it(settings: Settings, db_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    from listserv.store import schema
    from listserv.store.db import make_engine

    engine = make_engine(db_url)
    config = Config()
    config.set_main_option("script_location", str(schema.MIGRATIONS))
    with engine.begin() as connection:  # an archive as it was before 0016, its posts inserted as then
        config.attributes["connection"] = connection
        command.upgrade(config, "0010")
        post = table(
            "post",
            column("id"),
            column("list_name"),
            column("message_id"),
            column("sender"),
            column("subject"),
            column("raw", LargeBinary()),
            column("archived_at", UTCDateTime()),
            column("thread_id"),
            column("subject_key"),
        )
        raws = [with_attachment("first@example.org"), mail("second@example.org", "Second", when=NOW)]
        connection.execute(
            post.insert(),
            [
                {
                    "id": number,
                    "list_name": "ta-en",
                    "message_id": f"<{mid}>",
                    "sender": "bo@example.org",
                    "subject": "",
                    "raw": raw,
                    "archived_at": NOW + timedelta(minutes=number),
                    "thread_id": number,
                    "subject_key": "",
                }
                for number, (mid, raw) in enumerate(
                    zip(("first@example.org", "second@example.org"), raws, strict=True), 1
                )
            ],
        )
    schema.upgrade(engine)
    try:
        with Session(engine) as session:
            rows = session.execute(
                select(ArchivedPost.display, ArchivedPost.search_text).order_by(ArchivedPost.id)
            )
            displays = rows.all()
            assert len(displays) == 2 and all(shown and text_ is not None for shown, text_ in displays)
            assert '"résumé.html"' in displays[0][0]
            page = listing.list_threads(session, "ta-en")
            assert [(row.thread_id, row.posts) for row in page.rows] == [(2, 1), (1, 1)]
            assert threads.month_counts(session, "ta-en", 2026, settings.site.timezone) == [(11, 2)]
    finally:
        engine.dispose()

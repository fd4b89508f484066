"""Archive downloads (mboxrd per list, month and thread) and the private Atom feed. Both databases."""

from __future__ import annotations

import mailbox
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.archive.posts import archive_raw
from listserv.archive.urls import message_url
from listserv.config import Settings
from listserv.store.directory import remove_member
from listserv.store.models import Member
from listserv.web.exports import feed_token
from tests.conftest import WebClient, add_members, set_password

DELEGATE = "ana@example.org"
OUTSIDER = "bo@example.org"
ATOM = "{http://www.w3.org/2005/Atom}"
NOVEMBER = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
DECEMBER = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def message(number: int, subject: str, body: str, reply_to: int | None = None) -> bytes:
    reply = f"In-Reply-To: <m{reply_to}@example.org>\n" if reply_to else ""
    return (
        f"From: Ana Lima <{DELEGATE}>\nTo: ta-en@forum.example.org\nSubject: {subject}\n"
        f"Date: Tue, 10 Nov 2026 09:00:00 +0000\nMessage-ID: <m{number}@example.org>\n{reply}\n{body}\n"
    ).encode()


def archive(
    engine: Engine, *posts: tuple[int, str, str, int | None, datetime], list_name: str = "ta-en"
) -> None:
    with Session(engine) as session, session.begin():
        for number, subject, body, reply_to, at in posts:
            archive_raw(
                session, message(number, subject, body, reply_to), f"<m{number}@example.org>", list_name, at
            )


@pytest.fixture(autouse=True)
def people(engine: Engine, settings: Settings) -> None:
    add_members(
        engine,
        settings,
        {"email": DELEGATE, "lists": "ta-en", "name": "Ana Lima"},
        {"email": OUTSIDER, "lists": "ta-fr", "name": "Bo"},
    )
    set_password(engine, DELEGATE)
    set_password(engine, OUTSIDER)


@pytest.fixture
def posts(engine: Engine) -> None:
    archive(
        engine,
        (1, "Budget", "From the start, the budget was shared.\nSecond line.", None, NOVEMBER),
        (2, "Re: Budget", "I agree.", 1, NOVEMBER.replace(day=11)),
        (3, "Water", "Another subject.", None, NOVEMBER.replace(day=12)),
        (4, "Re: Budget", "Still in December.", 2, DECEMBER),
    )


def read_mbox(tmp_path: Path, data: bytes) -> list[mailbox.mboxMessage]:
    path = tmp_path / "export.mbox"
    path.write_bytes(data)
    box = mailbox.mbox(path, create=False)
    try:
        return list(box)
    finally:
        box.close()


def member_id(engine: Engine, address: str) -> int:
    with Session(engine) as session:
        return session.scalars(select(Member.id).where(Member.email_key == address)).one()


def test_the_whole_list_downloads_as_mbox(web: WebClient, posts: None, tmp_path: Path) -> None:
    web.sign_in(DELEGATE)
    response = web.get("/lists/ta-en/export/ta-en.mbox")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/mbox"
    assert response.headers["content-disposition"] == 'attachment; filename="ta-en.mbox"'
    messages = read_mbox(tmp_path, response.content)
    assert [m["Message-ID"] for m in messages] == [f"<m{n}@example.org>" for n in (1, 2, 3, 4)]
    first = messages[0].get_payload()
    assert ">From the start, the budget was shared." in first and "Second line." in first  # mboxrd
    assert messages[0].get_from().startswith(DELEGATE)


def test_a_month_holds_only_its_messages(web: WebClient, posts: None, tmp_path: Path) -> None:
    web.sign_in(DELEGATE)
    response = web.get("/lists/ta-en/2026/11/export.mbox")
    assert response.headers["content-disposition"] == 'attachment; filename="ta-en-2026-11.mbox"'
    assert [m["Subject"] for m in read_mbox(tmp_path, response.content)] == ["Budget", "Re: Budget", "Water"]
    december = read_mbox(tmp_path, web.get("/lists/ta-en/2026/12/export.mbox").content)
    assert [m["Message-ID"] for m in december] == ["<m4@example.org>"]
    assert web.get("/lists/ta-en/2025/01/export.mbox").content == b""
    assert web.get("/lists/ta-en/2026/13/export.mbox").status_code == 404


def test_a_thread_holds_only_its_messages(web: WebClient, posts: None, tmp_path: Path) -> None:
    web.sign_in(DELEGATE)
    response = web.get("/lists/ta-en/export/thread/m2@example.org")  # any message of the thread
    assert response.status_code == 200
    assert re.fullmatch(
        r'attachment; filename="ta-en-thread-\d+\.mbox"', response.headers["content-disposition"]
    )
    ids = [m["Message-ID"] for m in read_mbox(tmp_path, response.content)]
    assert ids == ["<m1@example.org>", "<m2@example.org>", "<m4@example.org>"]
    assert web.get("/lists/ta-en/export/thread/nothing@example.org").status_code == 404


def test_exports_are_for_members_of_the_list(web: WebClient, posts: None) -> None:
    paths = [
        "/lists/ta-en/export/ta-en.mbox",
        "/lists/ta-en/2026/11/export.mbox",
        "/lists/ta-en/export/thread/m1@example.org",
    ]
    for path in paths:
        assert web.get(path).status_code == 303
    web.sign_in(OUTSIDER)
    for path in paths:
        response = web.get(path)
        assert response.status_code == 403 and "From the start" not in response.text
    assert web.get("/lists/xx-en/export/xx-en.mbox").status_code == 404
    assert web.get("/lists/ta-fr/export/ta-en.mbox").status_code == 404  # the name must be the list's


def test_export_routes_and_archive_routes_each_resolve_to_their_own(web: WebClient) -> None:
    def first_match(path: str) -> str | None:
        for route in web.app.routes:
            regex = getattr(route, "path_regex", None)
            if regex is not None and regex.match(path):
                return route.name
        return None

    assert first_match("/lists/ta-en/export/ta-en.mbox") == "export_list"
    assert first_match("/lists/ta-en/2026/11/export.mbox") == "export_month"
    assert first_match("/lists/ta-en/export/thread/a/b@example.org") == "export_thread"
    assert first_match("/feeds/ta-en/1-abc.atom") == "feed"
    for theirs in ("/lists/ta-en/thread/m1@example.org", "/lists/ta-en/2026/11/", "/lists/ta-en/message/a@b"):
        assert first_match(theirs) not in ("export_list", "export_month", "export_thread", "feed")


def feed_path(web: WebClient, engine: Engine, address: str, list_name: str) -> str:
    return f"/feeds/{list_name}/{feed_token(web.site.secret, member_id(engine, address), list_name)}.atom"


def test_the_feed_from_the_account_page_lists_the_latest_posts(web: WebClient, engine: Engine) -> None:
    archive(engine, *((n, f"Post {n}", f"Body {n}", None, NOVEMBER.replace(minute=n)) for n in range(1, 56)))
    web.sign_in(DELEGATE)
    urls = re.findall(r'href="(http[^"]+\.atom)"', web.get("/account").text)
    assert len(urls) == 1 and "/feeds/ta-en/" in urls[0]
    web.http.cookies.clear()  # a feed reader has no session
    response = web.get(urls[0].removeprefix(web.site.settings.site.base_url.rstrip("/")))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/atom+xml")
    root = ET.fromstring(response.content)
    entries = root.findall(f"{ATOM}entry")
    assert len(entries) == 50
    assert (
        entries[0].findtext(f"{ATOM}title") == "Post 55" and entries[-1].findtext(f"{ATOM}title") == "Post 6"
    )
    link = entries[0].find(f"{ATOM}link")
    assert link is not None
    assert link.get("href") == message_url(web.site.settings.site.base_url, "ta-en", "<m55@example.org>")
    assert entries[0].findtext(f"{ATOM}summary") == "Body 55"
    assert entries[0].findtext(f"{ATOM}author/{ATOM}name") == "Ana Lima"
    assert DELEGATE not in response.text  # names only: a feed leaves the private archive


def test_a_bad_token_or_list_gets_the_same_404(web: WebClient, engine: Engine, posts: None) -> None:
    good = feed_path(web, engine, DELEGATE, "ta-en")
    assert web.get(good).status_code == 200
    ident = member_id(engine, DELEGATE)
    others = [
        good[:-6] + ("a" if good[-6] != "a" else "b") + good[-5:],  # one character of the MAC changed
        f"/feeds/ta-en/{ident}-notamac.atom",
        "/feeds/ta-en/nothing.atom",
        good.replace("/ta-en/", "/ta-fr/"),  # another list's token is another MAC
        good.replace("/ta-en/", "/xx-en/"),
        feed_path(web, engine, OUTSIDER, "ta-en"),  # a real MAC, but Bo does not read ta-en
    ]
    refused = [web.get(path) for path in others]
    assert [r.status_code for r in refused] == [404] * len(others)
    assert len({re.search(r"<main.*</main>", r.text, re.S).group(0) for r in refused}) == 1  # type: ignore[union-attr]


def test_a_member_who_leaves_the_list_loses_the_feed(web: WebClient, engine: Engine, posts: None) -> None:
    path = feed_path(web, engine, DELEGATE, "ta-en")
    assert web.get(path).status_code == 200
    with Session(engine) as session, session.begin():
        assert remove_member(session, DELEGATE, "ta-en")
    assert web.get(path).status_code == 404


def test_archive_pages_link_to_their_exports(engine: Engine, settings: Settings, web: WebClient) -> None:
    add_members(engine, settings, {"email": "links@example.org", "lists": "ta-en"})
    set_password(engine, "links@example.org")
    web.sign_in("links@example.org")
    when = datetime(2026, 11, 3, 10, tzinfo=UTC)
    message = EmailMessage()
    message["From"] = "x@example.org"
    message["Subject"] = "Linked"
    message["Message-ID"] = "<linked@example.org>"
    message.set_content("Body.")
    with Session(engine) as session, session.begin():
        archive_raw(session, message.as_bytes(), "<linked@example.org>", "ta-en", when)
    list_page = web.get("/lists/ta-en/").text
    assert 'href="/lists/ta-en/export/ta-en.mbox"' in list_page
    assert 'href="/lists/ta-en/2026/11/export.mbox"' in web.get("/lists/ta-en/2026/11/").text
    thread = web.get("/lists/ta-en/thread/linked@example.org").text
    assert 'href="/lists/ta-en/export/thread/linked@example.org"' in thread
    for link in ("/lists/ta-en/export/ta-en.mbox", "/lists/ta-en/2026/11/export.mbox"):
        assert web.get(link).status_code == 200, link
    assert web.get("/lists/ta-en/export/thread/linked@example.org").status_code == 200

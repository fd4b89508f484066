"""The search page: only readable lists are searched, filters narrow, matches are highlighted, and
whatever is typed gets an answer, never an error."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from listserv.archive.posts import archive_raw
from listserv.config import Settings
from tests.conftest import WebClient, add_members, set_password

DELEGATE = "ana@example.org"


def archive(
    engine: Engine, list_name: str, subject: str, body: str, day: int, sender: str = "x@example.org"
) -> None:
    message = EmailMessage()
    message["From"] = sender
    message["Subject"] = subject
    message["Message-ID"] = f"<{list_name}-{day}-{abs(hash(subject))}@example.org>"
    when = datetime(2026, 11, day, 10, tzinfo=UTC)
    message["Date"] = format_datetime(when)
    message.set_content(body)
    with Session(engine) as session, session.begin():
        archive_raw(session, message.as_bytes(), message["Message-ID"], list_name, when)


@pytest.fixture
def reader(web: WebClient, engine: Engine, settings: Settings) -> WebClient:
    add_members(engine, settings, {"email": DELEGATE, "lists": "ta-en"})
    set_password(engine, DELEGATE)
    archive(
        engine,
        "ta-en",
        "Customs reform",
        "Our customs reform started with a pilot in two ports, in cooperation.",
        2,
    )
    archive(
        engine,
        "ta-en",
        "Budget",
        "The budget for training and cooperation was cut.",
        3,
        sender="bo@example.org",
    )
    archive(engine, "ta-fr", "Réforme douanière", "La réforme des douanes a commencé par un pilote.", 4)
    return web.sign_in(DELEGATE)


def test_results_are_highlighted_and_only_from_readable_lists(reader: WebClient) -> None:
    page = reader.get("/search", params={"q": "reform pilot"})
    assert page.status_code == 200
    assert "1 message found" in page.text
    assert "<mark>reform</mark>" in page.text and "<mark>pilot</mark>" in page.text
    assert "/lists/ta-en/message/" in page.text
    french = reader.get("/search", params={"q": "douanes", "list": "ta-fr"})  # not a list Ana reads
    assert "Réforme" not in french.text and "0 messages found" in french.text


def test_filters_narrow_the_results(reader: WebClient) -> None:
    assert (
        "1 message found"
        in reader.get("/search", params={"q": "cooperation", "sender": "bo@example.org"}).text
    )
    dated = reader.get("/search", params={"q": "cooperation", "since": "2026-11-03", "until": "2026-11-03"})
    assert "Budget" in dated.text and "Customs reform" not in dated.text
    bad = reader.get("/search", params={"q": "budget", "since": "yesterday"})
    assert "A date was not understood" in bad.text and "1 message found" in bad.text


@pytest.mark.parametrize(
    "query", ['"', "AND OR NOT", "*", "NEAR(", "'; DROP TABLE post;--", "a:b", "(((", "é" * 600]
)
def test_any_query_gets_a_page(reader: WebClient, query: str) -> None:
    assert reader.get("/search", params={"q": query}).status_code == 200


def test_an_empty_query_shows_the_form_only(reader: WebClient) -> None:
    page = reader.get("/search")
    assert page.status_code == 200 and 'role="search"' in page.text and "found" not in page.text


def test_result_pages(reader: WebClient, engine: Engine) -> None:
    for day in range(5, 28):
        archive(engine, "ta-en", f"Workshop note {day}", "A workshop on statistics.", day)
    first = reader.get("/search", params={"q": "workshop"})
    assert "23 messages found" in first.text and "Page 1 of 2" in first.text
    second = reader.get("/search", params={"q": "workshop", "page": "2"})
    assert "Page 2 of 2" in second.text and second.text.count("<li>") >= 3

"""Privacy defaults (issue 14, item 4): no page is for search engines, feeds carry no addresses, log lines
of a post's path name its Message-ID, never its subject or words. Both databases."""

from __future__ import annotations

import logging
import re
import smtplib
from email.message import EmailMessage

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.archive.posts import archive_raw
from listserv.config import Settings
from listserv.store.db import utc_now
from listserv.store.models import Member
from listserv.web.exports import feed_token
from tests.conftest import RunningForum, WebClient, add_members, set_password, wait_processed

READER = "reader@example.org"
AUTHOR = "author.private@example.org"
RAW = (
    f"From: Alma Author <{AUTHOR}>\r\nTo: ta-en@forum.example.org\r\nSubject: Sensitive subject words\r\n"
    "Message-ID: <p1@example.org>\r\nDate: Mon, 23 Nov 2026 09:00:00 +0100\r\n\r\n"
    "Confidential body words.\r\n"
).encode()


@pytest.fixture
def reader(engine: Engine, settings: Settings) -> None:
    add_members(engine, settings, {"email": READER, "lists": "ta-en"}, {"email": AUTHOR, "lists": "ta-en"})
    set_password(engine, READER)
    with Session(engine) as session, session.begin():
        archive_raw(session, RAW, "<p1@example.org>", "ta-en", utc_now())


def test_every_page_says_noindex(web: WebClient, reader: None) -> None:
    paths = ["/login", "/password/forgot", "/no/such/page", "/lists/"]
    for path in paths:
        response = web.get(path)
        assert response.headers["x-robots-tag"] == "noindex, nofollow", path
    web.sign_in(READER)
    for path in [
        "/lists/",
        "/lists/ta-en/",
        "/lists/ta-en/message/p1@example.org",
        "/search?q=body",
        "/account",
    ]:
        response = web.get(path)
        assert response.status_code == 200, path
        assert response.headers["x-robots-tag"] == "noindex, nofollow", path
        assert '<meta name="robots" content="noindex, nofollow">' in response.text, path


def test_the_feed_names_people_but_shows_no_address(web: WebClient, engine: Engine, reader: None) -> None:
    with Session(engine) as session:
        member_id = session.scalar(select(Member.id).where(Member.email_key == READER))
    response = web.get(f"/feeds/ta-en/{feed_token(web.site.secret, member_id or 0, 'ta-en')}.atom")
    assert response.status_code == 200 and "Alma Author" in response.text
    assert AUTHOR not in response.text
    without_links = re.sub(r"/message/[^\"<]+", "", response.text)  # Message-IDs look like addresses
    assert not re.search(r"[\w.+-]+@example\.org", without_links)


def test_log_lines_name_message_ids_not_subjects_or_words(
    forum: RunningForum, engine: Engine, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    add_members(engine, settings, {"email": AUTHOR, "lists": "ta-en"})
    caplog.set_level(logging.DEBUG, logger="listserv")
    message = EmailMessage()
    message["From"], message["To"] = AUTHOR, "ta-en@forum.example.org"
    message["Subject"], message["Message-ID"] = "Sensitive subject words", "<p2@example.org>"
    message.set_content("Confidential body words.")
    with smtplib.SMTP("127.0.0.1", forum.port) as client:
        client.send_message(message)
    wait_processed(engine)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "<p2@example.org>" in logged
    assert "Sensitive" not in logged and "Confidential" not in logged

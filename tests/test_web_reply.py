"""Replying from the web, over real HTTP and SMTP: a member's reply written in the archive is held like
mail, approved by the moderator's reply to the notice, delivered to the members with In-Reply-To and
References continuing the thread, and shown in the thread. Starting a discussion goes the same way;
whoever may not read a message may not answer it."""

from __future__ import annotations

import http.cookiejar
import urllib.error
import urllib.parse
import urllib.request
from email.message import EmailMessage

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.store.models import ArchivedPost, Received
from listserv.web.threads import id_path
from tests.conftest import CSRF_FIELD, PASSWORD, RunningForum, Sink, add_members, set_password, wait_for
from tests.test_moderation import reply_to_notice, send

AMINA, KOFI, OUTSIDER = "amina@example.org", "kofi@example.org", "olga@example.org"
MOD_EN, TA_EN = "mod-en@forum.example.org", "ta-en@forum.example.org"


class Browser:
    """A person's browser over real HTTP: cookies kept, forms posted with their CSRF token."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> tuple[int, str]:
        try:
            with self.opener.open(self.base + path, timeout=15) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def post(self, path: str, fields: dict[str, str]) -> tuple[int, str]:
        _, page = self.get("/login" if path == "/login" else path)
        token = CSRF_FIELD.search(page)
        assert token, f"no CSRF field on {path}"
        data = urllib.parse.urlencode(fields | {"csrf": token.group(1)}).encode()
        try:
            with self.opener.open(self.base + path, data=data, timeout=15) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def sign_in(self, address: str) -> Browser:
        status, _ = self.post("/login", {"email": address, "password": PASSWORD, "next": "/lists/"})
        assert status == 200
        return self


@pytest.fixture(autouse=True)
def people(relayed_engine: Engine, relayed_settings: Settings) -> None:
    add_members(
        relayed_engine,
        relayed_settings,
        {"email": AMINA, "name": "Amina Diallo", "country": "SN", "lists": "ta-en"},
        {"email": KOFI, "name": "Kofi Mensah", "country": "GH", "lists": "ta-en"},
        {"email": OUTSIDER, "name": "Olga", "lists": "ta-fr"},
    )
    for address in (AMINA, OUTSIDER):
        set_password(relayed_engine, address)


def _approve_next(live: RunningForum, sink: Sink, count: int) -> EmailMessage:
    notice = sink.wait_to(MOD_EN, count=count)[-1]
    reply_to_notice(live.port, notice, MOD_EN, "")  # an empty reply approves
    return notice


def _archived(engine: Engine, subject: str) -> ArchivedPost:
    def found() -> bool:
        with Session(engine) as session:
            return (
                session.scalars(select(ArchivedPost).where(ArchivedPost.subject.contains(subject))).first()
                is not None
            )

    wait_for(found, what=f"{subject!r} archived")
    with Session(engine) as session:
        return session.scalars(select(ArchivedPost).where(ArchivedPost.subject.contains(subject))).one()


def test_a_web_reply_is_held_approved_by_mail_delivered_threaded_and_shown(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    parent_id = send(live.port, KOFI, TA_EN, "Budget workshop", "Who is coming to the workshop?")
    _approve_next(live, sink, 1)
    parent = _archived(relayed_engine, "Budget workshop")
    sink.wait_to(AMINA, list_copies=True)

    amina = Browser(live.forum.web_port).sign_in(AMINA)
    status, page = amina.get(f"/lists/ta-en/message/{id_path(parent_id)}")
    assert status == 200 and f'/lists/ta-en/reply/{id_path(parent_id)}"' in page
    status, form = amina.get(f"/lists/ta-en/reply/{id_path(parent_id)}")
    assert status == 200 and 'value="Re: Budget workshop"' in form
    status, sent = amina.post(
        f"/lists/ta-en/reply/{id_path(parent_id)}",
        {"subject": "Re: Budget workshop", "text": "I am coming, with two colleagues from Dakar."},
    )
    assert status == 200 and 'id="reply-sent"' in sent

    with Session(relayed_engine) as session:  # the same door as SMTP mail: stored, then the worker
        stored = session.scalars(select(Received).where(Received.peer == "web")).one()
        assert stored.mail_from == AMINA and stored.rcpt_tos == [TA_EN]
    notice = _approve_next(live, sink, 2)  # held like mail: a notice with a reply code
    assert "Re: Budget workshop" in str(notice["Subject"])

    copy = sink.wait_to(KOFI, count=2, list_copies=True)[-1]
    assert copy["In-Reply-To"] == parent_id
    assert copy["References"].split() == [parent_id]
    assert "Amina Diallo" in str(copy["From"]) and "two colleagues from Dakar" in copy.get_content()
    reply = _archived(relayed_engine, "Re: Budget workshop")
    assert (reply.thread_id, reply.parent_id) == (parent.id, parent.id)
    status, thread = amina.get(f"/lists/ta-en/thread/{id_path(parent_id)}")
    assert status == 200 and "two colleagues from Dakar" in thread


def test_a_new_discussion_from_the_web(live: RunningForum, sink: Sink, relayed_engine: Engine) -> None:
    amina = Browser(live.forum.web_port).sign_in(AMINA)
    status, _ = amina.post("/lists/ta-en/new", {"subject": "Data sharing", "text": "A question on data."})
    assert status == 200
    _approve_next(live, sink, 1)
    copy = sink.wait_to(KOFI, list_copies=True)[-1]
    assert copy["In-Reply-To"] is None and "A question on data." in copy.get_content()
    post = _archived(relayed_engine, "Data sharing")
    assert post.thread_id == post.id


def test_no_reply_where_one_cannot_read(live: RunningForum, sink: Sink, relayed_engine: Engine) -> None:
    parent_id = send(live.port, KOFI, TA_EN, "Budget workshop", "Who is coming?")
    _approve_next(live, sink, 1)
    _archived(relayed_engine, "Budget workshop")
    olga = Browser(live.forum.web_port).sign_in(OUTSIDER)  # a member of ta-fr only
    assert olga.get(f"/lists/ta-en/reply/{id_path(parent_id)}")[0] == 403
    assert olga.get("/lists/ta-en/new")[0] == 403
    amina = Browser(live.forum.web_port).sign_in(AMINA)
    status, page = amina.post("/lists/ta-en/new", {"subject": "", "text": "no subject"})
    assert status == 400 and "Write a subject and a message." in page
    with Session(relayed_engine) as session:
        assert session.scalars(select(Received).where(Received.peer == "web")).first() is None

"""Guests for one discussion, end to end over real SMTP (to the ingress, out through the sink), real HTTP
(the forum's own web server) and the real command line, on SQLite and PostgreSQL: invited by
``listserv guests invite`` to one thread, a guest receives that thread's next post and not another
thread's; their reply is held, approved by reply, and reaches the members; their new thread is refused
and they are told; on the web they read that thread only; after ``guests revoke`` nothing more."""

from __future__ import annotations

import http.cookiejar
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.forum import build_jobs, build_parts
from listserv.membership.guest_text import read_invitations
from listserv.store.db import utc_now
from listserv.store.guests import guest_threads, thread_guests
from listserv.store.models import ArchivedPost, Audit, Guest, Held, Member
from tests.conftest import (
    RunningForum,
    Sink,
    SteppableClock,
    add_members,
    make_config,
    run_cli,
    wait_for,
    wait_processed,
)
from tests.test_moderation import reply_to_notice, send

DELEGATE = "amina@example.org"
COLLEAGUE = "kofi@example.org"
GUEST = "grace@outside.example"
MOD_EN = "mod-en@forum.example.org"
TA_EN = "ta-en@forum.example.org"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def members(relayed_engine: Engine, relayed_settings: Settings, clock: SteppableClock) -> None:
    clock.now = utc_now()  # the command line runs on the real clock: the forum must agree with it
    add_members(
        relayed_engine,
        relayed_settings,
        {"email": DELEGATE, "name": "Amina Diallo", "lists": "ta-en"},
        {"email": COLLEAGUE, "name": "Kofi Mensah", "lists": "ta-en"},
    )


@pytest.fixture
def config_file(tmp_path: Path, relayed_settings: Settings, sink: Sink) -> Path:
    """The same forum for ``python -m listserv``: its database, its data folder (the site secret)."""
    raw = make_config(tmp_path, relayed_settings.database.url)
    raw["delivery"] = {"relay": {"host": "127.0.0.1", "port": sink.controller.port}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def cli(config_file: Path, clock: SteppableClock, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m listserv`` runs on the real clock; the forum's clock catches up with it after."""
    done = run_cli(config_file, *args)
    clock.now = utc_now()
    return done


def opening(live: RunningForum, engine: Engine, subject: str, body: str) -> str:
    """A discussion already on the list (published as the weekly prompt is: archived and delivered)."""
    message = EmailMessage()
    message["From"] = f"Amina Diallo <{DELEGATE}>"
    message["To"] = TA_EN
    message["Subject"] = subject
    message["Date"] = format_datetime(utc_now())
    message["Message-ID"] = message_id = make_msgid(domain="example.org")
    message.set_content(body)
    with Session(engine) as session, session.begin():
        live.forum.parts.publisher.publish_raw(session, message.as_bytes(), "ta-en", utc_now())
    return message_id


def next_notice(sink: Sink, before: int) -> EmailMessage:
    """The newest mail to the moderator since ``before`` that answers by reply code (the scheduler's
    weekly summary may arrive in between and is not one)."""

    def coded() -> list[EmailMessage]:
        return [m for m in sink.to(MOD_EN)[before:] if "-moderate+" in str(m["Reply-To"] or "")]

    wait_for(lambda: bool(coded()), what="a notice with a reply code")
    return coded()[-1]


def post_and_approve(live: RunningForum, sink: Sink, sender: str, subject: str, parent: str) -> None:
    """A post in reply to ``parent``, held, approved by the moderator's reply to the notice."""
    before = len(sink.to(MOD_EN))
    send(live.port, sender, TA_EN, subject, f"{subject}: our view.", In_Reply_To=parent, References=parent)
    notice = next_notice(sink, before)
    reply_to_notice(live.port, notice, MOD_EN, "approve")


def list_copies(sink: Sink, address: str, subject: str) -> list[EmailMessage]:
    return [m for m in sink.to(address, list_copies=True) if subject in str(m["Subject"])]


def refusals(sink: Sink) -> list[EmailMessage]:
    return [m for m in sink.to(GUEST) if "was not distributed" in str(m["Subject"])]


class Browser:
    """Real HTTP to the forum's web server, with cookies (urllib: a redirect is not followed)."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: object, **kwargs: object) -> None:
                return None

        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def request(self, path: str, form: dict[str, str] | None = None) -> tuple[int, str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(self.base + path, data, timeout=15) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")

    def set_password(self, link: str, password: str) -> None:
        path = urllib.parse.urlsplit(link).path
        status, page = self.request(path)
        assert status == 200, page
        csrf = CSRF.search(page)
        assert csrf is not None
        form = {"csrf": csrf.group(1), "password": password, "confirm": password}
        status, page = self.request(path, form)
        assert status == 303, page


def thread_path(message_id: str) -> str:
    return "/lists/ta-en/thread/" + urllib.parse.quote(message_id.strip("<>"), safe="@")


def message_path(message_id: str) -> str:
    return "/lists/ta-en/message/" + urllib.parse.quote(message_id.strip("<>"), safe="@")


def test_a_guest_invited_by_the_command_line_takes_part_in_one_discussion_only(
    members: None,
    live: RunningForum,
    sink: Sink,
    relayed_engine: Engine,
    config_file: Path,
    clock: SteppableClock,
) -> None:
    budget = opening(
        live,
        relayed_engine,
        "Budget workshop",
        f"Shall we meet in March?\nKofi <{COLLEAGUE}> has the figures.",
    )
    other = opening(live, relayed_engine, "Customs reform", "A separate discussion.")

    done = cli(
        config_file,
        clock,
        "guests",
        "invite",
        "--list",
        "ta-en",
        "--thread",
        budget,
        GUEST,
        "--name",
        "Grace Hopper",
    )
    assert done.returncode == 0, done.stderr
    live.forum.outbox.background.wake()
    [invitation] = sink.wait_to(GUEST)
    assert "Budget workshop" in str(invitation["Subject"])
    text = invitation.get_body(("plain",)).get_content()
    assert "Shall we meet in March?" in text  # the opening message, quoted (and attached)
    assert "/protocol/en" in text
    [link] = re.findall(r"http://\S+/password/reset/\S+", text)
    listed = cli(config_file, clock, "guests", "list", "--list", "ta-en")
    assert GUEST in listed.stdout and "active" in listed.stdout

    # The thread's next post reaches the guest; another thread's does not.
    post_and_approve(live, sink, DELEGATE, "Re: Budget workshop", budget)
    post_and_approve(live, sink, COLLEAGUE, "Re: Customs reform", other)
    wait_for(lambda: len(list_copies(sink, DELEGATE, "Customs reform")) == 1, what="the customs reply")
    wait_for(lambda: len(list_copies(sink, GUEST, "Budget workshop")) == 1, what="the guest's copy")
    assert list_copies(sink, GUEST, "Customs reform") == []

    # The guest's reply is held (whatever the policy), approved by reply, and reaches the members.
    before = len(sink.to(MOD_EN))
    send(live.port, GUEST, TA_EN, "Re: Budget workshop", "March suits me.", In_Reply_To=budget)
    notice = next_notice(sink, before)
    assert "guest of this discussion" in notice.get_body(("plain",)).get_content()
    reply_to_notice(live.port, notice, MOD_EN, "approve")
    wait_for(lambda: len(list_copies(sink, DELEGATE, "Budget workshop")) == 2, what="the guest's post")

    # A new thread from the guest is refused, and they are told why.
    send(live.port, GUEST, TA_EN, "A new topic of mine", "Could we also discuss tariffs?")
    wait_processed(relayed_engine)
    wait_for(lambda: len(refusals(sink)) == 1, what="the polite refusal")
    [told] = refusals(sink)
    assert "may not start a new one" in told.get_body(("plain",)).get_content()
    with Session(relayed_engine) as session:
        assert session.scalars(select(Held).where(Held.subject == "A new topic of mine")).first() is None
        assert (
            session.scalars(select(ArchivedPost).where(ArchivedPost.subject == "A new topic of mine")).first()
            is None
        )

    # On the web: the invitation's link sets a password; that thread only, names without addresses.
    web = Browser(live.forum.web_port or 0)
    web.set_password(link, "a guest's own password")
    status, page = web.request(thread_path(budget))
    assert status == 200, page
    assert "March suits me." in page and "Amina Diallo" in page
    assert DELEGATE not in page and COLLEAGUE not in page  # member addresses never shown to guests
    assert page.count('class="badge guest"') == 1  # the guest's own post is marked
    status, page = web.request(message_path(budget))
    assert status == 200 and DELEGATE not in page
    for path in (message_path(other), thread_path(other), "/lists/", "/lists/ta-en/", "/search?q=budget"):
        assert web.request(path)[0] == 404, path
    # Replying from the web: within their discussion only; a new discussion is not theirs to start.
    assert web.request(message_path(budget).replace("/message/", "/reply/"))[0] == 200
    for path in (message_path(other).replace("/message/", "/reply/"), "/lists/ta-en/new"):
        assert web.request(path)[0] == 404, path
    for path in (
        "/lists/ta-en/raw/" + budget.strip("<>"),
        "/lists/ta-en/export/thread/" + budget.strip("<>"),
    ):
        assert web.request(path)[0] == 404, path

    # Revoked: nothing more by mail, nothing on the web.
    revoked = cli(config_file, clock, "guests", "revoke", GUEST)
    assert revoked.returncode == 0, revoked.stderr
    received = len(sink.to(GUEST, list_copies=True))
    post_and_approve(live, sink, COLLEAGUE, "Re: Budget workshop", budget)
    wait_for(lambda: len(list_copies(sink, DELEGATE, "Budget workshop")) == 3, what="the last reply")
    assert len(sink.to(GUEST, list_copies=True)) == received
    assert web.request(thread_path(budget))[0] == 404
    with Session(relayed_engine) as session:
        results = {row.result for row in session.scalars(select(Audit).where(Audit.action == "guest"))}
        assert {"invited", "revoked"} <= results


def test_a_members_request_by_mail_to_owner_is_held_and_approved_by_reply(
    members: None, live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    budget = opening(live, relayed_engine, "Budget workshop", "Shall we meet in March?")
    owner = "ta-en-owner@forum.example.org"
    send(
        live.port,
        DELEGATE,
        owner,
        "Re: Budget workshop",
        f"invite {GUEST} Grace Hopper\n",
        In_Reply_To=budget,
    )
    [notice] = sink.wait_to(MOD_EN)
    assert "Budget workshop" in str(notice["Subject"])  # held with the thread's subject
    body = notice.get_body(("plain",)).get_content()
    assert GUEST in body and "Grace Hopper" in body
    with Session(relayed_engine) as session:
        [guest] = session.scalars(select(Guest)).all()
        assert guest.state == "requested"
    reply_to_notice(live.port, notice, MOD_EN, "approve")
    [invitation] = sink.wait_to(GUEST)
    assert "Budget workshop" in str(invitation["Subject"])
    with Session(relayed_engine) as session:
        [guest] = session.scalars(select(Guest)).all()
        assert guest.state == "active"
        member = session.get(Member, guest.member_id)
        assert member is not None and member.role == "guest" and member.name == "Grace Hopper"

    # Not in reply to a message of the list: the member is told, nothing is held.
    send(live.port, COLLEAGUE, owner, "A guest please", "invite someone@outside.example Someone\n")
    [problem] = sink.wait_to(COLLEAGUE)
    assert "reply" in problem.get_body(("plain",)).get_content()
    with Session(relayed_engine) as session:
        assert len(session.scalars(select(Held)).all()) == 1

    # Rejected by reply: the member who asked is told the reason; the person is not invited.
    before = len(sink.to(MOD_EN))
    body = "invite other@outside.example Otto Other\n"
    send(live.port, COLLEAGUE, owner, "Re: Budget workshop", body, In_Reply_To=budget)
    notice = next_notice(sink, before)
    reply_to_notice(live.port, notice, MOD_EN, "reject Not for this discussion")
    wait_for(lambda: len(sink.to(COLLEAGUE)) >= 3, what="the refusal")  # problem, pending, refusal
    refusal = sink.to(COLLEAGUE)[-1].get_body(("plain",)).get_content()
    assert "declined" in refusal and "Not for this discussion" in refusal
    assert sink.to("other@outside.example") == []
    with Session(relayed_engine) as session:
        states = {m.email: g.state for g, m in session.execute(select(Guest, Member).join(Member))}
        assert states == {GUEST: "active", "other@outside.example": "rejected"}

    # A sentence that starts with the word but names nobody is for people: forwarded, as ever.
    before = len(sink.to(MOD_EN))
    send(live.port, DELEGATE, owner, "Plenary", "Invite everyone to the plenary, please.\n")
    forwarded = sink.wait_to(MOD_EN, before + 1)[-1]
    assert "Invite everyone" in forwarded.get_body(("plain",)).get_content()


def test_invite_lines_are_read_in_the_lists_languages() -> None:
    words = frozenset({"invite", "inviter", "пригласить"})
    raw = b"Subject: x\n\nInviter <jo@example.org> Jo Martin\n> invite quoted@example.org Quoted\n"
    [found] = read_invitations(raw, words)
    assert (found.address, found.name) == ("jo@example.org", "Jo Martin")
    assert read_invitations("\n\nпригласить not-an-address Ivan\n".encode(), words)[0].address is None


def test_the_command_line_refuses_bad_invitations_precisely(
    members: None, live: RunningForum, relayed_engine: Engine, config_file: Path, clock: SteppableClock
) -> None:
    budget = opening(live, relayed_engine, "Budget workshop", "Shall we meet in March?")
    cases = {
        ("--thread", "<nowhere@example.org>", GUEST): (1, "no archived message"),
        ("--thread", budget, "not an address"): (2, "not an address"),
        ("--thread", budget, DELEGATE): (1, "already a member"),
    }
    for (flag, thread, address), (status, text) in cases.items():
        done = run_cli(
            config_file, "guests", "invite", "--list", "ta-en", flag, thread, address, "--name", "X"
        )
        assert (done.returncode, text in done.stderr) == (status, True), done.stderr
    done = cli(
        config_file,
        clock,
        "guests",
        "invite",
        "--list",
        "ta-en",
        "--thread",
        budget,
        GUEST,
        "--name",
        "X",
        "--until",
        "2001-01-01",
    )
    assert done.returncode == 2 and "already past" in done.stderr
    done = cli(config_file, clock, "guests", "revoke", "nobody@example.org")
    assert done.returncode == 1 and "not a guest" in done.stderr

    other = opening(live, relayed_engine, "Customs reform", "Another discussion.")
    done = cli(
        config_file, clock, "guests", "invite", "--list", "ta-en", "--thread", budget, GUEST, "--name", "G"
    )
    assert done.returncode == 0, done.stderr
    again = cli(
        config_file, clock, "guests", "invite", "--list", "ta-en", "--thread", budget, GUEST, "--name", "G"
    )
    assert again.returncode == 1 and "already a guest" in again.stderr
    elsewhere = cli(config_file, clock, "guests", "revoke", GUEST, "--thread", other.strip("<>"))
    assert elsewhere.returncode == 1 and "no invitation to end there" in elsewhere.stderr
    there = cli(config_file, clock, "guests", "revoke", GUEST, "--thread", budget.strip("<>"))
    assert there.returncode == 0 and "revoked" in there.stdout


def test_at_expiry_delivery_and_access_stop_and_the_scheduler_records_it(
    settings: Settings, engine: Engine, clock: SteppableClock
) -> None:
    """On a steppable clock: active until ``until``, then nobody receives or reads as that guest; the
    ``guests`` job marks the invitation expired, once, in the audit."""
    parts = build_parts(settings, clock)
    root = EmailMessage()
    root["From"], root["Subject"], root["Message-ID"] = DELEGATE, "Budget workshop", "<root@example.org>"
    root.set_content("Shall we meet in March?")
    with Session(engine) as session, session.begin():
        post = parts.publisher.publish_raw(session, root.as_bytes(), "ta-en", clock())
        parts.guests.invite(session, "ta-en", "<root@example.org>", GUEST, "Grace", None, MOD_EN, "cli")
        thread = post.id
    with Session(engine) as session:
        assert thread_guests(session, "ta-en", thread, clock()) == [GUEST]
    clock.advance(days=30, seconds=1)
    with Session(engine) as session:
        assert thread_guests(session, "ta-en", thread, clock()) == []
        assert guest_threads(session, GUEST, "ta-en", clock()) == frozenset()
    jobs = build_jobs(parts, engine, lambda: None)
    jobs.run("guests")
    jobs.run("guests")
    with Session(engine) as session:
        assert [g.state for g in session.scalars(select(Guest))] == ["expired"]
        expired = session.scalars(select(Audit).where(Audit.action == "guest", Audit.result == "expired"))
        assert len(expired.all()) == 1

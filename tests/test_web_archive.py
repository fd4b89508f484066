"""The archive pages: who may see them, what they show, how threads nest and page, and that downloads and
HTML mail cannot run anything in our origin."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import quote

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from listserv.archive.posts import archive_raw
from listserv.archive.urls import message_url
from listserv.config import Settings
from listserv.store.models import SentDigest, SentPrompt, Topic
from tests.conftest import WebClient, add_members, set_password

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # ISO week 2026-W48
READER = "ana@example.org"  # reads ta-en and ta-fr
FRENCH = "zoe@example.org"  # reads ta-fr only
ROUTES = [
    "/lists/",
    "/lists/ta-en/",
    "/lists/ta-en/2026/11/",
    "/lists/ta-en/thread/first@example.org",
    "/lists/ta-en/message/first@example.org",
    "/lists/ta-en/raw/first@example.org",
    "/lists/ta-en/attachment/2/first@example.org",
    "/lists/ta-en/topic/2026-W48",
    "/lists/ta-en/digest/daily/2026-11-25",
    "/protocol/fr",
]


def mail(
    mid: str,
    subject: str,
    body: str = "Hello colleagues.",
    sender: str = "bo@example.org",
    reply_to: str | None = None,
    when: datetime = NOW,
    content_type: str = 'text/plain; charset="utf-8"',
) -> bytes:
    lines = [
        f"From: Bo Example <{sender}>",
        "To: ta-en@forum.example.org",
        f"Subject: {subject}",
        f"Date: {format_datetime(when)}",
        f"Message-ID: <{mid}>",
        *([f"In-Reply-To: <{reply_to}>", f"References: <{reply_to}>"] if reply_to else []),
        "MIME-Version: 1.0",
        f"Content-Type: {content_type}",
        "",
        body,
    ]
    return "\r\n".join(lines).encode()


def archive(engine: Engine, list_name: str, raw: bytes, when: datetime = NOW) -> None:
    found = re.search(rb"^Message-ID: (<[^>]+>)", raw, re.MULTILINE)
    assert found is not None
    with Session(engine) as session, session.begin():
        archive_raw(session, raw, found[1].decode(), list_name, when)


def post(engine: Engine, mid: str, subject: str, reply_to: str | None = None, minutes: float = 0) -> None:
    """A plain post on ta-en, ``minutes`` after NOW."""
    when = NOW + timedelta(minutes=minutes)
    archive(engine, "ta-en", mail(mid, subject, reply_to=reply_to, when=when), when)


def with_attachment(mid: str) -> bytes:
    return mail(
        mid,
        "Report",
        content_type='multipart/mixed; boundary="b"',
        body="\r\n".join(
            [
                "--b",
                'Content-Type: text/plain; charset="utf-8"',
                "",
                "See https://example.org/report, attached.",
                "",
                "> An earlier line, quoted.",
                "",
                "-- ",
                "Bo, Ministry of Finance",
                "--b",
                'Content-Type: text/html; name="résumé.html"',
                "Content-Disposition: attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.html",
                "",
                "<script>alert('owned')</script>",
                "--b--",
                "",
            ]
        ),
    )


def client(settings: Settings, engine: Engine, address: str, lists: str) -> WebClient:
    add_members(engine, settings, {"email": address, "lists": lists})
    set_password(engine, address)
    return WebClient(settings, engine, lambda: NOW).sign_in(address)


@pytest.fixture
def reader(settings: Settings, engine: Engine) -> WebClient:
    archive(engine, "ta-en", with_attachment("first@example.org"))
    return client(settings, engine, READER, "ta-en;ta-fr")


def test_anonymous_visitors_are_sent_to_sign_in(web: WebClient) -> None:
    for path in ROUTES:
        answer = web.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"] == f"/login?next={quote(path, safe='')}"


def test_a_delegate_of_another_list_is_refused(reader: WebClient, settings: Settings, engine: Engine) -> None:
    french = client(settings, engine, FRENCH, "ta-fr")
    for path in ROUTES:
        if path.startswith("/lists/ta-en/"):
            answer = french.get(path)
            assert answer.status_code == 403, path
            assert "You are not a member of the list ta-en" in answer.text
    assert french.get("/lists/ta-fr/").status_code == 200
    index = french.get("/lists/").text
    assert "/lists/ta-fr/" in index and "/lists/ta-en/" not in index


def test_unknown_lists_and_messages(reader: WebClient) -> None:
    assert "There is no list called ta-xx" in reader.get("/lists/ta-xx/").text
    for path in [*ROUTES[3:7], "/lists/ta-en/thread/nobody@example.org"]:
        missing = path.replace("first@", "nobody@")
        assert reader.get(missing).status_code == 404, missing
    assert reader.get("/lists/ta-en/attachment/9/first@example.org").status_code == 404
    assert reader.get("/lists/ta-en/topic/2026-W01").status_code == 404
    assert reader.get("/lists/ta-en/digest/daily/2026-01-01").status_code == 404
    assert reader.get("/lists/ta-en/2026/13/").status_code == 404


def test_the_lists_page_shows_activity_and_the_week_topic(reader: WebClient, engine: Engine) -> None:
    archive(engine, "ta-en", mail("b@example.org", "Budget", sender="cy@example.org"))
    archive(engine, "ta-en", mail("old@example.org", "Old"), NOW - timedelta(days=40))
    add_topic(engine)
    page = reader.get("/lists/")
    assert page.status_code == 200
    english = page.text[page.text.index("/lists/ta-en/") : page.text.index("/lists/ta-fr/")]
    assert "2 posts in the last 30 days" in english and "2 people posted" in english
    assert "Trade facilitation" in english
    assert "Facilitation des échanges" in page.text
    assert "/lists/ta-es/" not in page.text  # not a list Ana reads


def test_threads_by_latest_activity_with_pages(reader: WebClient, engine: Engine) -> None:
    for number in range(27):
        post(engine, f"t{number}@example.org", f"Thread {number}", minutes=number)
    post(engine, "r@example.org", "Re: Thread 0", reply_to="t0@example.org", minutes=120)
    first = reader.get("/lists/ta-en/").text
    subjects = re.findall(r'/thread/t(\d+)@example.org"', first)
    assert subjects[:3] == ["0", "26", "25"] and len(subjects) == 25
    assert 'rel="prev"' not in first  # the newest page
    [older] = re.findall(r'href="(\?before=[\d.]+)" rel="next"', first)
    second = reader.get(f"/lists/ta-en/{older}").text
    assert re.findall(r'/thread/(\w+)@example.org"', second) == ["t2", "t1", "first"]
    assert 'rel="next"' not in second  # nothing older
    [newer] = re.findall(r'href="(\?after=[\d.]+)" rel="prev"', second)
    assert re.findall(r'/thread/t(\d+)@example.org"', reader.get(f"/lists/ta-en/{newer}").text) == subjects
    old_link = reader.get("/lists/ta-en/?page=2").text  # links from before keyset pages still work
    assert re.findall(r'/thread/(\w+)@example.org"', old_link) == ["t2", "t1", "first"]
    assert "Page 2" in old_link and f'href="{newer}"' in old_link


def test_month_pages_and_navigation(reader: WebClient, engine: Engine) -> None:
    october = datetime(2026, 10, 12, 9, tzinfo=UTC)
    archive(engine, "ta-en", mail("oct@example.org", "October plans", when=october), october)
    listing = reader.get("/lists/ta-en/").text
    assert 'href="/lists/ta-en/2026/10/">October 2026</a>' in listing
    assert 'href="/lists/ta-en/2026/11/">November 2026</a>' in listing and "(1 post)" in listing
    month = reader.get("/lists/ta-en/2026/10/").text
    assert "October plans" in month and "/thread/first@example.org" not in month
    assert "Nothing was posted to this list in March 2026" in reader.get("/lists/ta-en/2026/3/").text


def test_the_month_navigation_counts_a_post_archived_after_the_page_was_seen(
    reader: WebClient, engine: Engine
) -> None:
    """The calendar is kept between pages (web/calendars.py) until a post is archived: also one dated
    in an older year, as an archive import adds them."""
    assert "(1 post)" in reader.get("/lists/ta-en/").text
    assert "(1 post)" in reader.get("/lists/ta-en/").text  # from the kept calendar
    assert 'href="/lists/ta-en/?year=2024"' not in reader.get("/lists/ta-en/").text
    post(engine, "second@example.org", "Second", minutes=5)
    assert "(2 posts)" in reader.get("/lists/ta-en/").text
    old = datetime(2024, 3, 4, 9, tzinfo=UTC)
    archive(engine, "ta-en", mail("imported@example.org", "From 2024", when=old), old)
    assert 'href="/lists/ta-en/?year=2024"' in reader.get("/lists/ta-en/").text
    assert "March 2024" in reader.get("/lists/ta-en/?year=2024").text


def test_a_thread_nests_replies_in_order(reader: WebClient, engine: Engine) -> None:
    chain = [("a", None), ("b", "a"), ("c", "b"), ("d", "a")]
    for minute, (name, parent) in enumerate(chain):
        post(engine, f"{name}@t.example", f"Topic {name}", f"{parent}@t.example" if parent else None, minute)
    page = reader.get("/lists/ta-en/thread/c@t.example").text
    order = [page.index(f"Topic {name}") for name in "abcd"]
    assert order == sorted(order)
    # c sits inside b's replies, and d is back at the first level of replies, after b's.
    between_b_and_d = page[order[1] : order[3]]
    assert between_b_and_d.count('<div class="replies">') == 1 and between_b_and_d.count("</ol>") >= 1
    assert 'aria-current="true"' in page[order[1] : order[3]]  # the message asked for is marked
    assert """content="img-src 'self' data:; script-src 'self'">""" in page  # the page's own CSP


def test_deep_threads_stop_indenting(reader: WebClient, engine: Engine) -> None:
    for depth in range(10):
        post(
            engine,
            f"n{depth}@t.example",
            f"Deep {depth}",
            f"n{depth - 1}@t.example" if depth else None,
            depth,
        )
    page = reader.get("/lists/ta-en/thread/n0@t.example").text
    assert page.count('<div class="replies">') == 6
    assert "In reply to <bdi>Bo Example</bdi>" in page or "In reply to <bdi>bo@example.org</bdi>" in page
    assert all(f"Deep {depth}" in page for depth in range(10))


def test_long_threads_come_in_pages(reader: WebClient, engine: Engine) -> None:
    post(engine, "p0@t.example", "Long")
    for number in range(1, 30):  # every reply answers the first post: 30 posts, pages of 20
        post(engine, f"p{number}@t.example", f"Reply {number}", "p0@t.example", number)
    first = reader.get("/lists/ta-en/thread/p0@t.example").text
    assert "30 messages" in first and "Page 1 of 2" in first and "Reply 19<" in first
    assert "Reply 20<" not in first and 'href="?page=2"' in first
    second = reader.get("/lists/ta-en/thread/p27@t.example").text  # the page holding the message asked for
    assert "Page 2 of 2" in second and "Reply 20<" in second and "Reply 19<" not in second
    assert second.count("In reply to <bdi>bo@example.org</bdi>") == 10  # their parent is on page 1
    # the thread's subject, though its first post is on page 1
    assert '<h1 dir="ltr"><bdi dir="ltr">Long</bdi></h1>' in second
    assert "Reply 19<" in reader.get("/lists/ta-en/thread/p27@t.example?page=1").text


def test_a_message_page(reader: WebClient, settings: Settings) -> None:
    page = reader.get("/lists/ta-en/message/first@example.org").text
    assert '<a href="https://example.org/report" rel="nofollow noopener noreferrer">' in page
    assert '<details class="quote">' in page and "An earlier line, quoted." in page
    assert '<p class="signature">Bo, Ministry of Finance</p>' in page
    assert 'href="/lists/ta-en/attachment/2/first@example.org"' in page and "résumé.html" in page
    assert 'href="/lists/ta-en/thread/first@example.org#m' in page
    assert 'href="/lists/ta-en/raw/first@example.org"' in page
    stable = message_url(settings.site.base_url, "ta-en", "<first@example.org>")
    assert f'value="{stable}"' in page
    assert "alert(" not in page  # the HTML attachment is a link, never inlined


def test_html_mail_is_sanitised(reader: WebClient, engine: Engine) -> None:
    html = (
        "<p>Hi <b>all</b></p><script>alert(1)</script>"
        "<img src=x onerror=alert(2)><a href=javascript:alert(3)>x</a>"
    )
    archive(engine, "ta-en", mail("html@example.org", "Rich", html, content_type="text/html; charset=utf-8"))
    for path in ("/lists/ta-en/message/html@example.org", "/lists/ta-en/thread/html@example.org"):
        page = reader.get(path).text
        assert "<b>all</b>" in page
        assert "alert(" not in page and "onerror" not in page and "javascript:" not in page
        assert page.count("<script") == 1  # the site's own script only


def test_raw_bytes(reader: WebClient, engine: Engine) -> None:
    raw = reader.get("/lists/ta-en/raw/first@example.org")
    assert raw.headers["content-type"] == "text/plain; charset=utf-8"
    assert raw.headers["x-content-type-options"] == "nosniff"
    assert raw.content == with_attachment("first@example.org")
    latin = mail("latin@example.org", "Caf\xe9", body="caf\xe9").replace("caf\xe9".encode(), b"caf\xe9")
    archive(engine, "ta-en", latin.replace(b"utf-8", b"iso-8859-1"))
    binary = reader.get("/lists/ta-en/raw/latin@example.org")
    assert binary.headers["content-type"] == "application/octet-stream"
    assert binary.headers["content-disposition"] == 'attachment; filename="message.eml"'
    assert binary.content == latin.replace(b"utf-8", b"iso-8859-1")


def test_attachments_download_and_never_run(reader: WebClient) -> None:
    answer = reader.get("/lists/ta-en/attachment/2/first@example.org")
    assert answer.status_code == 200
    assert answer.content == b"<script>alert('owned')</script>"
    assert answer.headers["content-type"].startswith("text/html")
    disposition = answer.headers["content-disposition"]
    assert disposition.startswith("attachment;") and "filename*=UTF-8''r%C3%A9sum%C3%A9.html" in disposition
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["content-security-policy"] == "sandbox"
    assert reader.get("/lists/ta-en/attachment/1/first@example.org").status_code == 404  # the body


def test_ids_with_slashes_keep_their_url(reader: WebClient, engine: Engine, settings: Settings) -> None:
    post(engine, "a/b%c@example.org", "Slashed")
    url = message_url(settings.site.base_url, "ta-en", "<a/b%c@example.org>")
    page = reader.get(url.removeprefix(settings.site.base_url.rstrip("/")))
    assert page.status_code == 200 and "Slashed" in page.text


def add_topic(engine: Engine) -> int:
    with Session(engine) as session, session.begin():
        topic = Topic(
            room="ta",
            week="2026-W48",
            titles={"en": "Trade facilitation", "fr": "Facilitation des échanges", "es": "Facilitación"},
            bodies={"en": "What worked?", "fr": "Qu'est-ce qui a marché ?", "es": "¿Qué funcionó?"},
        )
        session.add(topic)
        session.flush()
        return topic.id


def test_the_topic_page_shows_sister_threads(reader: WebClient, engine: Engine) -> None:
    topic_id = add_topic(engine)
    for list_name in ("ta-en", "ta-fr", "ta-es"):
        mid = f"topic-{topic_id}.{list_name}@forum.example.org"
        with Session(engine) as session, session.begin():
            session.add(SentPrompt(topic_id=topic_id, list_name=list_name, message_id=f"<{mid}>"))
        archive(engine, list_name, mail(mid, f"Topic {list_name}"))
    reply = mail("fr1@example.org", "Re: Topic ta-fr", reply_to=f"topic-{topic_id}.ta-fr@forum.example.org")
    archive(engine, "ta-fr", reply, NOW + timedelta(hours=1))
    page = reader.get("/lists/ta-en/topic/2026-W48").text
    assert "Trade facilitation" in page and "Facilitation des échanges" in page
    assert "Facilitación" not in page  # ta-es is not Ana's
    assert "Read the discussion (1 message)" in page and "Read the discussion (2 messages)" in page
    assert 'href="/lists/ta-fr/message/fr1@example.org"' in page
    listing = reader.get("/lists/ta-en/").text
    assert "Trade facilitation" in listing
    assert f'href="/lists/ta-en/thread/topic-{topic_id}.ta-en@forum.example.org"' in listing


def test_a_digest_page_lists_the_posts_it_covered(reader: WebClient, engine: Engine) -> None:
    archive(engine, "ta-en", mail("late@example.org", "Too late"), NOW + timedelta(days=1))
    with Session(engine) as session, session.begin():
        for fmt in ("plain", "mime"):
            session.add(
                SentDigest(
                    list_name="ta-en",
                    period="daily",
                    format=fmt,
                    key="2026-11-25",
                    covered_from=NOW - timedelta(hours=1),
                    covered_until=NOW + timedelta(hours=1),
                    post_count=1,
                    raw=b"Subject: digest\r\n\r\n",
                    sent_at=NOW + timedelta(hours=1),
                )
            )
    page = reader.get("/lists/ta-en/digest/daily/2026-11-25").text
    assert "1 message in this digest" in page
    assert 'href="/lists/ta-en/message/first@example.org"' in page and "Too late" not in page


def test_the_usage_protocol(reader: WebClient) -> None:
    french = reader.get("/protocol/fr")
    assert french.status_code == 200 and 'lang="fr"' in french.text
    assert "<h1>Protocole" in french.text or "<h1>Protocole d" in french.text
    # The lists' languages are the configured ones (en, fr, es here), named in the page's language.
    assert "une liste par langue (anglais, français et espagnol)" in " ".join(french.text.split())
    arabic = reader.get("/protocol/ar").text
    assert "(الإنجليزية والفرنسية والإسبانية)" in arabic and "{{" not in arabic
    fallback = reader.get("/protocol/fa").text  # Persian: no protocol text is shipped
    assert "The usage protocol is not available in" in fallback and "Here is the English version." in fallback
    assert "<h1>Usage protocol</h1>" in fallback and 'lang="en"' in fallback
    assert reader.get("/protocol/..%2Fconfig").status_code == 404  # no path outside the protocol folder
    assert "not available in ..config" in reader.get("/protocol/..config").text

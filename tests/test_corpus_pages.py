"""The 67 hard messages of ``tests/messages`` on the thread and message pages (and the HTML view of those
that have one) show the same visible text and links as the reference, ``tests/corpus_pages.json``,
captured from the code that parsed MIME on every page view (main at c8fb1a5) — what a reader sees must
not change now that it is derived once, when a post is archived.

The reference is data, not output of this code: it was captured once from c8fb1a5's rendering, and a
change to what readers see is made in it by hand, in the same commit, where a reviewer sees it."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from listserv.archive import reading
from listserv.archive.posts import archive_raw
from listserv.config import Settings
from tests.conftest import WebClient, add_members, set_password

MESSAGES = Path(__file__).parent / "messages"
REFERENCE = Path(__file__).parent / "corpus_pages.json"
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
READER = "ana@example.org"


# Elements added to the pages after the reference was captured, on purpose (not the message's text):
# issue 15's "Reply from the web" link.
ADDED_SINCE = frozenset({"reply-link"})


class Visible(HTMLParser):
    """The text a reader sees in ``<main>`` (whitespace runs made one space) and the links there."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth, self.text, self.links = 0, [], []
        self.skipping: str | None = None  # inside an element of ADDED_SINCE, until its end tag

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "main":
            self.depth += 1
        if dict(attrs).get("id") in ADDED_SINCE:
            self.skipping = tag
        if self.depth and tag in ("a", "img") and self.skipping is None:
            self.links += [f"{tag} {name}={value}" for name, value in attrs if name in ("href", "src")]

    def handle_endtag(self, tag: str) -> None:
        if tag == "main":
            self.depth -= 1
        if tag == self.skipping:
            self.skipping = None

    def handle_data(self, data: str) -> None:
        if self.depth and self.skipping is None:
            self.text.append(data)


def visible(html: str) -> dict[str, object]:
    parser = Visible()
    parser.feed(html)
    parser.close()
    text = re.sub(r"\s+", " ", "".join(parser.text)).strip()
    # A digest and the start of it: the reference stays small (one message is a 1 MB line).
    return {
        "text": text[:400],
        "text_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "links": parser.links,
    }


def render_corpus(
    settings: Settings, engine: Engine, archived: Callable[[], None]
) -> dict[str, dict[str, object]]:
    files = sorted(path for path in MESSAGES.iterdir() if path.suffix == ".eml")
    with Session(engine) as session, session.begin():
        for number, path in enumerate(files):
            archive_raw(session, path.read_bytes(), f"<corpus-{number}@example.org>", "ta-en", NOW)
    archived()
    add_members(engine, settings, {"email": READER, "lists": "ta-en"})
    set_password(engine, READER)
    reader = WebClient(settings, engine, lambda: NOW).sign_in(READER)
    pages: dict[str, dict[str, object]] = {}
    for number, path in enumerate(files):
        for kind, suffix in (("thread", ""), ("message", ""), ("message", "?html=1")):
            answer = reader.get(f"/lists/ta-en/{kind}/corpus-{number}@example.org{suffix}")
            pages[f"{path.name} {kind}{suffix}"] = {"status": answer.status_code, **visible(answer.text)}
    return pages


def unparsable(*args: object, **kwargs: object) -> None:
    raise AssertionError("a page parsed MIME")


def test_the_corpus_reads_as_it_did(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def archived() -> None:  # from here on, a page that parses MIME fails (the reader derived it once)
        monkeypatch.setattr(reading, "_read", unparsable)

    pages = render_corpus(settings, engine, archived)
    assert len(pages) == 3 * 67
    reference = json.loads(REFERENCE.read_text())
    assert pages.keys() == reference.keys()
    for name, page in pages.items():
        assert page == reference[name], name

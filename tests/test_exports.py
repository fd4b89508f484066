"""Exports: the mboxrd stream reads back with Python's mailbox, and the Atom feed is well-formed and
carries what RFC 4287 requires."""

from __future__ import annotations

import email
import email.policy
import mailbox
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from listserv.archive.formats import FeedEntry, FeedInfo, atom_feed, mbox_chunks

NS = {"a": "http://www.w3.org/2005/Atom"}
WHEN = datetime(2024, 6, 3, 10, 0, tzinfo=UTC)

MESSAGES = [
    ("alice@example.org", WHEN, b"From: alice@example.org\r\nSubject: one\r\n\r\nFrom the start\r\nbody\r\n"),
    ("<bob@example.org>", None, b"From: bob@example.org\nSubject: two\n\n>From quoted\n>>From deeper\nend"),
    ("bad sender\n", WHEN, b"Subject: =?utf-8?q?caf=C3=A9?=\n\nFrom here\n\nFrom there\n"),
]


def unquote_mboxrd(body: bytes) -> bytes:
    return re.sub(rb"^>(>*From )", rb"\1", body, flags=re.MULTILINE)


def test_mbox_round_trips_through_python_mailbox(tmp_path: Path) -> None:
    path = tmp_path / "export.mbox"
    path.write_bytes(b"".join(mbox_chunks(MESSAGES)))
    box = mailbox.mbox(path, create=False)
    read_back = [box.get_bytes(key) for key in box.iterkeys()]
    assert len(read_back) == len(MESSAGES)
    for (_, _, raw), got in zip(MESSAGES, read_back, strict=True):
        expected = raw.replace(b"\r\n", b"\n")
        assert unquote_mboxrd(got).rstrip(b"\n") == expected.rstrip(b"\n")
    subjects = [email.message_from_bytes(got, policy=email.policy.default)["Subject"] for got in read_back]
    assert subjects == ["one", "two", "café"]


def test_from_lines_and_quoting() -> None:
    chunks = list(mbox_chunks(MESSAGES))
    assert chunks[0].startswith(b"From alice@example.org Mon Jun  3 10:00:00 2024\n")
    assert chunks[1].startswith(b"From bob@example.org Thu Jan  1 00:00:00 1970\n")
    assert chunks[2].startswith(b"From badsender ")
    assert b"\n>From the start\n" in chunks[0] and b"\r" not in chunks[0]
    assert b"\n>>From quoted\n>>>From deeper\nend\n\n" in chunks[1]
    assert all(chunk.endswith(b"\n\n") for chunk in chunks)
    paris = timezone(timedelta(hours=2))
    (chunk,) = mbox_chunks([("", WHEN.astimezone(paris), b"x")])
    assert chunk == b"From MAILER-DAEMON Mon Jun  3 10:00:00 2024\nx\n\n"


def test_mbox_is_streamed_one_message_at_a_time() -> None:
    def source() -> Iterator[tuple[str, datetime | None, bytes]]:
        yield MESSAGES[0]
        raise AssertionError("read ahead")

    assert next(mbox_chunks(source())).startswith(b"From alice@example.org")


FEED = FeedInfo(
    id="https://forum.example.org/archive/ta-fr/",
    title="ta-fr — Salle thématique",
    self_url="https://forum.example.org/archive/ta-fr/feed.atom",
    alternate_url="https://forum.example.org/archive/ta-fr/",
    language="fr",
)


def entry(number: int, **changes: object) -> FeedEntry:
    values: dict[str, object] = {
        "id": f"https://forum.example.org/archive/ta-fr/m/{number}",
        "title": f"Réunion n°{number} — ordre du jour",
        "author_name": "François Léger",
        "updated": WHEN + timedelta(hours=number),
        "url": f"https://forum.example.org/archive/ta-fr/m/{number}",
        "summary": "Bonjour à tous, " * 100,
    }
    values.update(changes)
    return FeedEntry(**values)  # type: ignore[arg-type]


def test_atom_feed_has_the_required_elements() -> None:
    document = atom_feed(FEED, [entry(1), entry(2)])
    assert document.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root = ET.fromstring(document)
    assert root.tag == "{http://www.w3.org/2005/Atom}feed"
    assert root.get("{http://www.w3.org/XML/1998/namespace}lang") == "fr"
    assert root.findtext("a:id", namespaces=NS) == FEED.id
    assert root.findtext("a:title", namespaces=NS) == "ta-fr — Salle thématique"
    assert root.findtext("a:updated", namespaces=NS) == "2024-06-03T12:00:00Z"  # the newest entry
    links = {link.get("rel"): link.get("href") for link in root.findall("a:link", NS)}
    assert links == {"self": FEED.self_url, "alternate": FEED.alternate_url}
    assert root.findtext("a:author/a:name", namespaces=NS)
    entries = root.findall("a:entry", NS)
    assert len(entries) == 2
    first = entries[0]
    assert first.findtext("a:id", namespaces=NS) == "https://forum.example.org/archive/ta-fr/m/1"
    assert first.findtext("a:title", namespaces=NS) == "Réunion n°1 — ordre du jour"
    assert first.findtext("a:updated", namespaces=NS) == "2024-06-03T11:00:00Z"
    assert first.findtext("a:author/a:name", namespaces=NS) == "François Léger"
    assert first.find("a:author/a:email", NS) is None
    assert first.find("a:link[@rel='alternate']", NS) is not None
    summary = first.findtext("a:summary", namespaces=NS) or ""
    assert summary.startswith("Bonjour à tous,") and len(summary) <= 501 and summary.endswith("…")


def test_user_data_cannot_break_the_feed() -> None:
    hostile = entry(
        1,
        title="</title><script>alert(1)</script>\x00\x1b\udcff",
        author_name="",
        summary="a & b < c",
        updated=None,
    )
    document = atom_feed(FEED, [hostile])
    root = ET.fromstring(document)  # still well-formed
    got = root.find("a:entry", NS)
    assert got is not None
    assert got.findtext("a:title", namespaces=NS) == "</title><script>alert(1)</script>"
    assert got.findtext("a:summary", namespaces=NS) == "a & b < c"
    assert got.find("a:author", NS) is None  # the feed-level author covers it
    assert got.findtext("a:updated", namespaces=NS) == "1970-01-01T00:00:00Z"
    assert b"<script>" not in document


def test_an_empty_feed_is_valid() -> None:
    root = ET.fromstring(atom_feed(FEED, []))
    assert root.findtext("a:updated", namespaces=NS) == "1970-01-01T00:00:00Z"
    assert root.find("a:entry", NS) is None

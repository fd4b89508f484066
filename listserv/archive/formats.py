"""Archive exports: an mboxrd stream for download and an Atom feed for readers. Pure functions.

The mbox is streamed one message at a time, so a whole-list export never sits in memory; the web layer
passes the generator to a streaming response. The feed is built with ElementTree, never by pasting
strings, so a subject like ``</title><script>`` is text, not markup.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

ATOM = "http://www.w3.org/2005/Atom"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SUMMARY_CHARS = 500
FROM_LINE = re.compile(rb"^(>*From )", re.MULTILINE)
# Characters XML 1.0 cannot carry at all (C0 controls, lone surrogates from undecodable bytes, U+FFFE/F):
# ElementTree would write them and produce a feed no reader can parse.
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def mbox_chunks(messages: Iterable[tuple[str, datetime | None, bytes]]) -> Iterator[bytes]:
    """(envelope sender, date, raw) → mboxrd, one chunk per message.

    mboxrd rather than mboxo: every ``>*From `` line gains one ``>``, so readers that know mboxrd
    restore the body exactly; readers that don't (Python's ``mailbox``) still split messages correctly.
    """
    for sender, date, raw in messages:
        body = FROM_LINE.sub(rb">\1", raw.replace(b"\r\n", b"\n"))
        if not body.endswith(b"\n"):
            body += b"\n"
        yield _from_line(sender, date) + body + b"\n"  # the blank line that separates messages


def _from_line(sender: str, date: datetime | None) -> bytes:
    # The From_ line is one line of space-separated ASCII: no spaces or controls in the sender.
    address = "".join(ch for ch in sender.strip("<> ") if "!" <= ch <= "~") or "MAILER-DAEMON"
    # An unknown date is the epoch rather than "now", so exporting twice gives the same bytes.
    # asctime, not strftime: its day and month names are English whatever the process locale.
    when = time.asctime(_utc(date or EPOCH).timetuple())
    return f"From {address} {when}\n".encode("ascii", "replace")


@dataclass(frozen=True)
class FeedInfo:
    id: str  # a stable IRI: the list's archive URL
    title: str
    self_url: str  # this feed's own URL (rel="self")
    alternate_url: str  # the archive page it mirrors (rel="alternate")
    updated: datetime | None = None  # None: the newest entry's date
    language: str | None = None  # xml:lang, e.g. "fr" for ta-fr
    author: str = ""  # feed-level author name (the list); defaults to the title


@dataclass(frozen=True)
class FeedEntry:
    id: str  # the message's stable archive URL (or a tag: URI); never changes once published
    title: str
    author_name: str  # display name only: see atom_feed
    updated: datetime | None
    url: str  # the archive page of the message
    summary: str  # the body text; cut to SUMMARY_CHARS here


def atom_feed(feed: FeedInfo, entries: Iterable[FeedEntry]) -> bytes:
    """An Atom 1.0 (RFC 4287) document, UTF-8.

    Authors appear by name only, never by address: a feed is polled by third-party readers and
    aggregators that keep and sometimes publish what they fetch, and the archive is private — the
    addresses of delegates must not leave it through a side door. The page behind the link shows more
    to those allowed to log in.
    """
    import xml.etree.ElementTree as ET  # late: with expat, ~0.4 MB of an idle serve, for feeds only

    items = list(entries)  # a feed is a few dozen entries: "updated" needs the newest before writing
    # Plain names under an xmlns attribute: ElementTree's default_namespace= option refuses the
    # unqualified attributes (rel, href) that Atom uses.
    root = ET.Element("feed", xmlns=ATOM)
    if feed.language:
        root.set(XML_LANG, _clean(feed.language))
    _add(root, "id", feed.id)
    _add(root, "title", feed.title)
    newest = max((entry.updated for entry in items if entry.updated), default=None, key=_utc)
    _add(root, "updated", _rfc3339(feed.updated or newest))
    ET.SubElement(root, "link", rel="self", type="application/atom+xml", href=_clean(feed.self_url))
    ET.SubElement(root, "link", rel="alternate", type="text/html", href=_clean(feed.alternate_url))
    # RFC 4287 §4.1.1: a feed-level author makes every entry valid even when its sender has no name.
    _add(ET.SubElement(root, "author"), "name", feed.author or feed.title)
    for item in items:
        entry = ET.SubElement(root, "entry")
        _add(entry, "id", item.id)
        _add(entry, "title", item.title.strip() or "(no subject)")
        _add(entry, "updated", _rfc3339(item.updated))
        if item.author_name.strip():
            _add(ET.SubElement(entry, "author"), "name", item.author_name.strip())
        ET.SubElement(entry, "link", rel="alternate", type="text/html", href=_clean(item.url))
        _add(entry, "summary", summarise(item.summary)).set("type", "text")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def summarise(text: str, limit: int = SUMMARY_CHARS) -> str:
    """The first ``limit`` characters, cut at a word boundary, whitespace collapsed."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0] if " " in flat[:limit] else flat[:limit]
    return cut.rstrip(" .,;:") + "…"


def _add(parent: Element, name: str, text: str) -> Element:
    from xml.etree.ElementTree import SubElement  # imported by atom_feed already

    child = SubElement(parent, name)
    child.text = _clean(text)
    return child


def _clean(text: str) -> str:
    return NOT_XML.sub("", text)


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)  # naive means UTC here


def _rfc3339(moment: datetime | None) -> str:
    return _utc(moment or EPOCH).strftime("%Y-%m-%dT%H:%M:%SZ")

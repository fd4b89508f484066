"""A digest issue as plain data, and the pure helpers both formats share: period keys, the grouping of
posts into threads, and the readable text of an archived message (for the plain format).

No database and no clock here: ``send.py`` loads the data, the builders in ``build.py`` only read it.
"""

from __future__ import annotations

import codecs
import email
import email.policy
import html
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from email.utils import getaddresses
from typing import Literal
from zoneinfo import ZoneInfo

from listserv.mail.rawmime import header_text
from listserv.mail.subjects import strip_prefix
from listserv.weekly.calendar import iso_week

Period = Literal["daily", "weekly"]
Format = Literal["mime", "plain"]
MAX_TEXT_CHARS = 200_000  # of one message in the plain format; the archive keeps the rest


@dataclass(frozen=True)
class DigestPost:
    message_id: str
    subject: str
    sender_name: str  # may be ""
    sender: str
    date: datetime  # aware
    thread_key: int | str  # posts with the same key belong to one thread (the archive's thread_id)
    url: str  # its page in the web archive
    raw: bytes  # as archived: carried unchanged into the MIME digest
    text: str  # readable text body (text/plain decoded, or HTML made text): the plain digest's copy


@dataclass(frozen=True)
class DigestIssue:
    site_name: str
    list_name: str  # "ta-en"
    list_title: str  # "Technical Assistance"
    list_address: str
    owner_address: str
    request_address: str
    language: str  # the list's language; templates fall back to English
    period: Period
    key: str  # "2026-11-23" (daily) or "2026-W48" (weekly)
    volume: int  # the year
    number: int  # the issue within the volume, from 1
    date: datetime  # aware: the end of the period covered (the moment of the run)
    posts: tuple[DigestPost, ...] = ()  # in archive order
    topic_title: str = ""  # the week's topic, in the list's language when translated
    topic_body: str = ""
    subject_prefix: str = ""  # "[TA-EN]": left out of thread titles
    participation: str = ""  # weekly issues: last week's "42 posts from 17 member states"

    @property
    def domain(self) -> str:
        return self.list_address.rpartition("@")[2]


@dataclass(frozen=True)
class Thread:
    """Posts of one thread in the issue, each with its number in the issue (1, 2, …)."""

    subject: str
    posts: tuple[tuple[int, DigestPost], ...] = field(default_factory=tuple)


def period_key(period: Period, now: datetime, timezone: str) -> str:
    """The local date (daily) or ISO week (weekly) of ``now`` in the site's zone: the issue's key."""
    local = now.astimezone(ZoneInfo(timezone)).date()
    if period == "daily":
        return local.isoformat()
    return iso_week(now, timezone)


def group_threads(posts: tuple[DigestPost, ...], prefix: str = "") -> list[Thread]:
    """Threads in the order of their first post in ``posts``, each thread's posts in the given order;
    posts are numbered through the issue in that reading order. A thread is titled by the subject of
    its first post here, without reply markers and list prefix."""
    keyed: dict[int | str, list[DigestPost]] = {}
    for post in posts:
        keyed.setdefault(post.thread_key, []).append(post)
    threads, number = [], 0
    for members in keyed.values():
        numbered = []
        for post in members:
            number += 1
            numbered.append((number, post))
        title = strip_prefix(members[0].subject, prefix) or members[0].subject
        threads.append(Thread(title, tuple(numbered)))
    return threads


def in_reading_order(threads: list[Thread]) -> list[DigestPost]:
    return [post for thread in threads for _, post in thread.posts]


def read_message(raw: bytes) -> tuple[str, str]:
    """(sender's display name, readable text) of an archived message; never raises on bad mail."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    sender = header_text(str(message.get("from", "")).encode("utf-8", "surrogateescape"))
    names = [name for name, address in getaddresses([sender]) if "@" in address]
    return (names[0] if names else ""), readable_text(message)[:MAX_TEXT_CHARS]


def readable_text(message: Message) -> str:
    """The first inline text/plain part decoded; else the first text/html part made text; else ""."""
    html_text = None
    for part in message.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        kind = part.get_content_type()
        if kind == "text/plain":
            return decode_payload(part)
        if kind == "text/html" and html_text is None:
            html_text = decode_payload(part)
    return html_to_text(html_text) if html_text is not None else ""


def decode_payload(part: Message) -> str:
    try:
        data = part.get_payload(decode=True)
    except (ValueError, TypeError, LookupError, AssertionError):
        data = None
    if not isinstance(data, bytes):
        payload = part.get_payload()
        data = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
    for charset in (part.get_content_charset(), "utf-8"):
        if not charset:
            continue
        try:
            codecs.lookup(charset)
            return data.decode(charset).replace("\x00", "").replace("\r\n", "\n")
        except (LookupError, ValueError):  # ValueError: a NUL in the label, as UnicodeError
            continue
    return data.decode("latin-1").replace("\x00", "").replace("\r\n", "\n")


BLOCK_END = re.compile(r"(?i)</(p|div|h[1-6]|ul|ol|table|blockquote|pre)\s*>|<(hr|p|div|h[1-6])\b[^>]*>")
INVISIBLE = re.compile(r"(?is)<(script|style|head|title)\b.*?</\1\s*>|<!--.*?-->")


def html_to_text(source: str) -> str:
    """Crude on purpose: line breaks where the blocks end, list items marked, tags dropped, entities
    decoded, runs of spaces and of blank lines collapsed. The archive has the real thing."""
    text = INVISIBLE.sub("", source)
    text = re.sub(r"(?i)<br\s*/?>|</tr\s*>", "\n", text)
    text = re.sub(r"(?i)<li\b[^>]*>", "\n  * ", text)
    text = BLOCK_END.sub("\n\n", text)
    text = html.unescape(re.sub(r"<[^>]*>", "", text)).replace("\xa0", " ")
    lines = [("  " if line.startswith("  * ") else "") + " ".join(line.split()) for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n") + "\n"

"""The soak's actors, each in threads of the bench process: posters (SMTP, paced), moderators (replying to
the notices the sink received), readers (the web, signed in) and the collector that sorts what the sink
received. Everything they see goes into one ``Record`` under its lock.
"""

from __future__ import annotations

import contextlib
import queue
import random
import smtplib
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from multiprocessing.queues import Queue
from typing import Any
from urllib.parse import quote

from common import BODY, DOMAIN, LIST_ADDRESS
from soak_sink import POST_SUBJECT, Received

MODERATOR = f"mod-en@{DOMAIN}"
WEB_KINDS = ("list", "thread", "message", "search")
WEB_WEIGHTS = (3, 3, 3, 2)
SEARCH_WORDS = ("budget", "delegation", "secretariat", "workshop", "annex", "timeline", "Zürich", "funding")


@dataclass
class Record:
    """What every actor saw, with monotonic times."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[int, tuple[float, float]] = field(default_factory=dict)  # post → (sent, 250)
    message_ids: dict[int, str] = field(default_factory=dict)
    notices: dict[int, float] = field(default_factory=dict)  # post → first notice's arrival
    replies: dict[int, tuple[float, float, str]] = field(default_factory=dict)  # post → (sent, 250, word)
    copies: dict[int, int] = field(default_factory=lambda: defaultdict(int))  # post → recipients so far
    last_copy: dict[int, float] = field(default_factory=dict)
    pages: list[tuple[str, float, float, int]] = field(default_factory=list)  # kind, start, end, status
    received: list[Received] = field(default_factory=list)  # everything but copies and notices
    deliveries: list[tuple[float, int]] = field(default_factory=list)  # (arrival, recipients) of copies
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: dict[str, str] = field(default_factory=dict)

    def error(self, kind: str, text: str) -> None:
        with self.lock:
            self.errors[kind] += 1
            self.error_samples.setdefault(kind, text[:300])

    def readable_posts(self) -> list[int]:
        """Posts whose copies went out: archived, so their pages exist."""
        with self.lock:
            return list(self.last_copy)


def post_bytes(number: int, sender: str) -> tuple[str, bytes]:
    message_id = f"<soak.{number}.{random.getrandbits(48):x}@example.org>"
    headers = (
        f"From: Member {number % 1000} <{sender}>\r\nTo: {LIST_ADDRESS}\r\n"
        f"Subject: {POST_SUBJECT} {number}\r\nDate: {formatdate(localtime=True)}\r\n"
        f"Message-ID: {message_id}\r\nMIME-Version: 1.0\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n'
    )
    return message_id, (headers + BODY).encode()


def connect(port: int) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", port, local_hostname="client.example.org", timeout=60)


def post_loop(
    port: int,
    lane: int,
    lanes: int,
    rate: float,
    start: float,
    end: float,
    posters: list[str],
    record: Record,
) -> None:
    """Posts number lane, lane + lanes, …, each at ``start + number / rate`` (or at once when late)."""
    smtp: smtplib.SMTP | None = None
    number = lane
    while (due := start + number / rate) < end:
        time.sleep(max(0.0, due - time.monotonic()))
        sender = posters[number % len(posters)]
        message_id, raw = post_bytes(number, sender)
        sent = time.monotonic()
        try:
            smtp = smtp or connect(port)
            smtp.sendmail(sender, [LIST_ADDRESS], raw)
            with record.lock:
                record.acked[number] = (sent, time.monotonic())
                record.message_ids[number] = message_id
        except (smtplib.SMTPException, OSError) as error:
            record.error("SMTP post", f"post {number}: {type(error).__name__}: {error}")
            smtp = None
        number += lanes
    if smtp is not None:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.quit()


def decision(number: int, approve_every: int) -> str:
    return "approve" if number % approve_every == 0 else "discard"


def moderate_loop(
    port: int, notices: queue.Queue[Received | None], approve_every: int, record: Record
) -> None:
    """A moderator's mail client: reply to each notice with the decision on the first line."""
    smtp: smtplib.SMTP | None = None
    while (notice := notices.get()) is not None:
        word = decision(notice.token, approve_every)
        body = f"{word}\r\n\r\n> {notice.subject}\r\n"
        raw = (
            f"From: Moderator <{MODERATOR}>\r\nTo: {notice.reply_to}\r\nSubject: Re: {notice.subject}\r\n"
            f"Date: {formatdate(localtime=True)}\r\nMessage-ID: <reply.{notice.token}@example.org>\r\n"
            f'Content-Type: text/plain; charset="utf-8"\r\n\r\n{body}'
        ).encode()
        sent = time.monotonic()
        try:
            smtp = smtp or connect(port)
            smtp.sendmail(MODERATOR, [notice.reply_to], raw)
            with record.lock:
                record.replies[notice.token] = (sent, time.monotonic(), word)
        except (smtplib.SMTPException, OSError) as error:
            record.error("SMTP reply", f"reply to {notice.token}: {type(error).__name__}: {error}")
            smtp = None
    if smtp is not None:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.quit()


def collect_loop(
    events: Queue[Received], notices: queue.Queue[Received | None], record: Record, stop: threading.Event
) -> None:
    """Sort the sink's events; hand each post's first notice to the moderators."""
    while not stop.is_set() or not events.empty():
        try:
            event = events.get(timeout=0.2)
        except queue.Empty:
            continue
        with record.lock:
            if event.kind == "notice" and event.token not in record.notices:
                record.notices[event.token] = event.at
                notices.put(event)
            elif event.kind == "copy":
                record.copies[event.token] += event.recipients
                record.last_copy[event.token] = event.at
                record.deliveries.append((event.at, event.recipients))
            elif event.kind != "notice":
                record.received.append(event)


def web_page(kind: str, record: Record, rng: random.Random) -> tuple[str, str]:
    """(kind, path) of the next page: a thread or a message of a delivered post (a list page until one
    is), a search of a word the posts contain, or one of the list's first pages."""
    posts = record.readable_posts() if kind in ("thread", "message") else []
    if posts:
        with record.lock:
            message_id = record.message_ids[rng.choice(posts)]
        return kind, f"/lists/ta-en/{kind}/{quote(message_id.strip('<>'), safe='@')}"
    if kind == "search":
        return kind, f"/search?q={quote(rng.choice(SEARCH_WORDS))}"
    return "list", f"/lists/ta-en/?page={rng.randint(1, 3)}"


def browse_loop(make_client: Callable[[], Any], end: float, think: float, seed: int, record: Record) -> None:
    """A signed-in reader: a page, a pause of ``think`` seconds on average, again until ``end``."""
    import httpx2

    rng = random.Random(seed)
    with make_client() as client:
        while time.monotonic() < end:
            kind, path = web_page(rng.choices(WEB_KINDS, WEB_WEIGHTS)[0], record, rng)
            start = time.monotonic()
            try:
                status = client.get(path).status_code
            except httpx2.HTTPError as error:
                record.error("HTTP", f"{path}: {type(error).__name__}: {error}")
                status = 0
            with record.lock:
                record.pages.append((kind, start, time.monotonic(), status))
            if status not in (0, 200):
                record.error("HTTP", f"{path}: {status}")
            time.sleep(rng.expovariate(1 / think) if think > 0 else 0)

"""The soak's relay: an aiosmtpd sink in its own process (its CPU is not the bench's), standing for the
mail servers of the members and moderators. It reads each transaction's headers only, says what it was
(a moderator's notice, a copy of a post, a digest, the weekly prompt, …) and puts one event per
transaction on a queue for the bench process: the moderators read their notices from there, as their mail
client would from their inbox.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import default
from multiprocessing.queues import Queue

from aiosmtpd.smtp import SMTP, Envelope, Session
from common import DOMAIN, NoopHandler

POST_SUBJECT = "Soak post"  # the posts' subjects: "Soak post 123"
TOPIC_TITLE = "Soak topic of the week"
TOKEN = re.compile(POST_SUBJECT + r" (\d+)\b")
CODE = re.compile(r"\[#([0-9A-Z]{5}-[0-9A-Z]{5}-[0-9A-Z]{5})\]")
HEADERS = BytesHeaderParser(policy=default)


@dataclass(frozen=True)
class Received:
    """One transaction the sink accepted: when (``time.monotonic``, system-wide), what, for how many."""

    at: float
    kind: str  # notice | copy | held-ack | digest | prompt | other
    recipients: int
    token: int = -1  # the post's number, from its subject
    code: str = ""  # a notice's reply code
    reply_to: str = ""
    subject: str = ""


def classify(subject: str, recipients: int, reply_to: str, at: float) -> Received:
    token_found, code_found = TOKEN.search(subject), CODE.search(subject)
    token = int(token_found.group(1)) if token_found else -1
    if code_found and token_found:
        return Received(at, "notice", recipients, token, code_found.group(1), reply_to, subject)
    if "awaiting moderation" in subject:  # the poster's notice: it names the list, not the post
        return Received(at, "held-ack", recipients)
    if token_found:
        return Received(at, "copy", recipients, token)
    if "digest, Vol" in subject:
        return Received(at, "digest", recipients, subject=subject)
    if TOPIC_TITLE in subject:
        return Received(at, "prompt", recipients, subject=subject)
    return Received(at, "other", recipients, subject=subject)


class CountingHandler(NoopHandler):
    """The no-op sink's answers (bench/common), plus a count of every transaction it takes."""

    def __init__(self, events: Queue[Received]) -> None:
        self.events = events

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        at = time.monotonic()
        content = envelope.original_content or b""
        headers = HEADERS.parsebytes(content.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
        subject, reply_to = str(headers["Subject"] or ""), str(headers["Reply-To"] or "")
        self.events.put(classify(subject, len(envelope.rcpt_tos), reply_to, at))
        return "250 OK"


async def serve_sink(port: int, events: Queue[Received]) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    server = await loop.create_server(
        lambda: SMTP(
            CountingHandler(events), hostname=DOMAIN, data_size_limit=None, decode_data=False, ident="sink"
        ),
        host="127.0.0.1",
        port=port,
        backlog=256,
    )
    await stopping.wait()
    server.close()
    await server.wait_closed()


def sink_main(port: int, events: Queue[Received]) -> None:
    """The sink process's body, until SIGTERM."""
    asyncio.run(serve_sink(port, events))

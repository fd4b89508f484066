"""A generated mbox for ``listserv import mbox``: what an old archive throws at an importer.

Deterministic for a seed. Mixed in, at fixed strides: unreadable Date headers (a Received header to
repair them from), messages with no date at all (dated by file order), repeated Message-IDs, messages
without one, bodies in UTF-8, Latin-1, KOI8-R, GB2312 and base64 Arabic, attachments, body lines that
start with ``From `` (mboxrd-quoted), replies by In-Reply-To and by subject only. ``expected`` says what
a correct import must report. Used by ``bench/mbox_import.py`` (100,000 messages) and the tests (a few
hundred).
"""

from __future__ import annotations

import base64
import gzip
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

FROM_LINE = re.compile(rb"^(>*From )", re.MULTILINE)
START = datetime(2009, 3, 1, 8, 0, tzinfo=UTC)
BODIES = (
    ("utf-8", "8bit", "Réunion du comité à Genève : l'ordre du jour est joint. Café à 10 h."),
    ("iso-8859-1", "8bit", "Résumé des décisions prises à São Paulo, année précédente."),
    ("koi8-r", "8bit", "Предлагаю обсудить бюджет региональной программы на следующей неделе."),
    ("gb2312", "8bit", "关于技术援助项目的报告草案已经准备好了，请审阅。"),
    ("utf-8", "base64", "نرحب بالمقترحات المتعلقة بالتدريب وبناء القدرات في المنطقة."),
)


@dataclass(frozen=True)
class Expected:
    messages: int  # separators in the file
    unique: int  # what a first import adds
    duplicates: int
    repaired: int  # broken or missing dates
    without_id: int


def message_id(i: int) -> str:
    return f"<gen-{i}@old-archive.example.net>"


def _message(i: int) -> tuple[bytes, bool, bool]:
    """(bytes, has a repairable date problem, has no Message-ID)."""
    when = START + timedelta(minutes=7 * i)
    charset, encoding, text = BODIES[i % len(BODIES)]
    sender = f"person{i % 173}@example.{('org', 'fr', 'ru', 'cn')[i % 4]}"
    topic = i // 3
    headers = [f"From: Person {i % 173} <{sender}>", "To: old-list@example.net"]
    subject = f"Topic {topic}: budget review" if i % 3 == 0 else f"Re: Topic {topic}: budget review"
    headers.append(f"Subject: {subject}")
    broken = i % 97 == 5
    dateless = i % 211 == 7
    if broken:
        headers.append("Date: the day after the meeting")
        headers.append(f"Received: from mx.example.net by old.example.net; {format_datetime(when)}")
    elif not dateless:
        headers.append(f"Date: {format_datetime(when)}")
    no_id = i % 301 == 11
    if not no_id:
        headers.append(f"Message-ID: {message_id(i)}")
    if i % 3 == 1:
        headers.append(f"In-Reply-To: {message_id(i - 1)}")  # the thread's first message
    headers.append("MIME-Version: 1.0")
    body_text = f"{text}\nMessage number {i}.\n"
    if i % 13 == 0:
        body_text += "From the minutes of the last meeting:\n>From an earlier reply\n"
    body = body_text.encode(charset)
    if encoding == "base64":
        body = base64.encodebytes(body)
    part = f"Content-Type: text/plain; charset={charset}\nContent-Transfer-Encoding: {encoding}\n\n".encode()
    if i % 40 == 0:
        attachment = base64.encodebytes(bytes(range(256)) * 8)
        boundary = f"=-=bound{i}=-="
        headers.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
        content = (
            f"--{boundary}\n".encode()
            + part
            + body
            + f"\n--{boundary}\nContent-Type: application/pdf; name=annex-{i}.pdf\n"
            f"Content-Disposition: attachment; filename=annex-{i}.pdf\n"
            "Content-Transfer-Encoding: base64\n\n".encode()
            + attachment
            + f"--{boundary}--\n".encode()
        )
        return "\n".join(headers).encode() + b"\n\n" + content, broken or dateless, no_id
    return "\n".join(headers).encode() + b"\n" + part + body, broken or dateless, no_id


def write_mbox(path: Path, count: int, compress: bool = False) -> Expected:
    """``count`` messages as mboxrd (gzip when ``compress``); every 50th repeats the one before."""
    duplicates = repaired = without_id = 0
    opener = gzip.open if compress else open
    with opener(path, "wb") as out:
        previous = b""
        for i in range(count):
            if i % 50 == 49:
                raw = previous  # the same message twice, as exports of merged archives have
                duplicates += 1
            else:
                raw, bad_date, no_id = _message(i)
                repaired += bad_date
                without_id += no_id
            when = START + timedelta(minutes=7 * i)
            out.write(f"From person@example.org {when.strftime('%a %b %d %H:%M:%S %Y')}\n".encode())
            out.write(FROM_LINE.sub(rb">\1", raw))
            out.write(b"\n\n")
            previous = raw
    return Expected(count, count - duplicates, duplicates, repaired, without_id)

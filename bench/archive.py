"""Web archive benchmark: a large synthetic archive, then the list, thread, message and search pages
fetched over real HTTP from ``listserv serve``. It prints figures and asserts nothing.

Set-up, in a temp dir (or ``--keep DIR``, reused by later runs): the shipped config.yaml (room ``ta`` in
en, fr, es) on SQLite, or with ``--database postgresql`` on a throwaway database on 127.0.0.1:5432 (user
postgres, dropped at the end unless kept); the schema; ``--messages`` (100,000) posts inserted in bulk
with SQLAlchemy Core straight into ``post`` (no SMTP, no moderation): ta-en/ta-fr/ta-es 50/30/20 %,
threads of 1–30 posts over ~3 years, raw RFC 5322 bytes of 1–20 KB (lognormal), prose drawn from a
seeded Zipf vocabulary per language, quoted replies, signatures, ~10 % with an attachment, ~5 % HTML only,
~15 % multipart/alternative. Then ``listserv.archive.index.reindex`` (timed: the index build time) and the
index size next to the raw text size. A member who reads the three lists signs in over HTTP.

Measured, with ``--concurrency`` (4) httpx2 clients in threads (keep-alive, the session cookie):
``--requests`` (300) requests per page kind after a warm-up, each answer checked for 200; first the
ceiling, a trivial Starlette app under uvicorn (httptools) in its own process returning a fixed page
(async, and sync in the thread pool as listserv's handlers are), then ``listserv serve`` in its own
process. ``--profile DIR`` then runs every kind again under ``py-spy record`` and prints where the
server spent its time.

Run:   .venv/bin/python bench/archive.py [--messages N] [--database sqlite|postgresql] [--keep DIR]
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import itertools
import json
import math
import multiprocessing
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.header import Header
from email.utils import format_datetime
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from common import (
    Cpu,
    cpu_seconds,
    describe_source,
    free_port,
    listserv_command,
    progress,
    running,
    verdict,
    write_config,
)

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"
LISTS = ("ta-en", "ta-fr", "ta-es")
SHARES = (0.5, 0.3, 0.2)
LANGUAGE = {"ta-en": "en", "ta-fr": "fr", "ta-es": "es"}
READER, PASSWORD = "bench-reader@example.org", "bench-reader-password"
YEARS, BATCH, WARM_UP, PAGE_SIZE, PROFILED = 3, 2_000, 20, 25, 100
VOCABULARY_SIZE, STREAM = 20_000, 1_000_003
FUNCTION_WORDS = {
    "en": "the of and to in a for is that on with as we this be our are by will it from at an not which",
    "fr": "de la le les et des à en du pour que un une est dans nous sur par au qui pas plus ce ces sont",
    "es": "de la que el en y a los del las por un para con una se es al lo como más su nuestra este sobre",
}
DOMAIN_WORDS = {
    "en": "delegation proposal technical assistance programme budget review regional office capacity "
    "training workshop report annex paragraph draft amendment secretariat member states implementation",
    "fr": "délégation proposition assistance technique programme budget examen bureau régional capacités "
    "formation atelier rapport annexe paragraphe projet amendement secrétariat États membres œuvre",
    "es": "delegación propuesta asistencia técnica programa presupuesto revisión oficina regional taller "
    "capacidades formación informe anexo párrafo proyecto enmienda secretaría Estados miembros aplicación",
}
SYLLABLES = {
    "en": "pro gram ment tion re port de ve lop ca pa ci ty in ter na al sup com mit tee fund ing work shop "
    "ad vi so ry bud get gion part ner im ple mis sion tra ex pert po li cy da ta as sess un der stand con "
    "tract ma nage sult ope ra tive bor trade",
    "fr": "dé ve lop pe ment tion pro gram me é va lu a ré gio nal par te nai re com mis sion ça is se eu ri "
    "qué ê tre fi nan ce ap pui tech ni que for ma œu vre gè ne au mé ca nis mes con seil lè ac cord",
    "es": "de sa rro llo ción pro gra ma e va lua re gio nal so cio co mi sión ña fi nan cia mien to a po yo "
    "téc ni ca for in me pre su pues ges tión ac uer do ins ti tu nes ár ea",
}
FIRST_NAMES = {
    "en": "Ana James Mary John Fatima David Sarah Peter Aisha Michael Grace Thomas Linda Samuel Emma Daniel",
    "fr": "Amélie François Hélène Jérôme Léa Mathieu Chloé Étienne Inès Benoît Zoé Rémi Aïcha Noël Cécile",
    "es": "José María Lucía Andrés Sofía Martín Camila Julián Valentina Tomás Ximena Iñaki Begoña Raúl Paula",
}
LAST_NAMES = {
    "en": "Smith Okafor Brown Wilson Patel Taylor Mensah Clarke Nguyen Evans Hughes Kamau Walker Wright",
    "fr": "Martin Dubois Lefèvre Mercier Diallo Girard Rousseau Faure Kaboré Lemaire Bonnet Chevalier Traoré",
    "es": "García Rodríguez Martínez López Gómez Pérez Sánchez Ramírez Torres Flores Núñez Castillo Peña",
}
COUNTRIES = {
    "en": ["Kenya", "Ghana", "India", "Canada", "Ireland", "Nigeria", "Australia", "Jamaica", "Uganda"],
    "fr": ["France", "Sénégal", "Bénin", "Maroc", "Tunisie", "Côte d'Ivoire", "Belgique", "Haïti", "Niger"],
    "es": ["México", "Colombia", "Perú", "Chile", "Argentina", "Bolivia", "Ecuador", "Paraguay", "Uruguay"],
}
PHRASES = {  # greeting, closing, reply intro, roles, delegation, subject openings
    "en": (
        ["Dear colleagues,", "Dear all,", "Hello everyone,"],
        ["Best regards,", "Kind regards,", "With thanks,"],
        "On {date}, {name} wrote:",
        ["Counsellor", "First Secretary", "Technical Adviser"],
        "Delegation of {country}",
        ["Budget review", "Regional workshop", "Question about", "Proposal", "Draft report", "Follow-up"],
    ),
    "fr": (
        ["Chers collègues,", "Bonjour à toutes et à tous,", "Chères et chers collègues,"],
        ["Bien cordialement,", "Cordialement,", "Avec mes remerciements,"],
        "Le {date}, {name} a écrit :",
        ["Conseillère", "Premier secrétaire", "Conseiller technique"],
        "Mission permanente — {country}",
        ["Examen du budget", "Atelier régional", "Question sur", "Proposition", "Projet de rapport", "Suivi"],
    ),
    "es": (
        ["Estimados colegas,", "Buenos días a todos,", "Queridos colegas,"],
        ["Saludos cordiales,", "Atentamente,", "Con mis agradecimientos,"],
        "El {date}, {name} escribió:",
        ["Consejera", "Primer Secretario", "Asesor técnico"],
        "Delegación de {country}",
        ["Revisión del presupuesto", "Taller regional", "Pregunta sobre", "Propuesta", "Seguimiento"],
    ),
}
AGENTS = [
    "User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:115.0) Gecko/20100101 Thunderbird/115.6.0",
    "X-Mailer: Microsoft Outlook 16.0",
    "X-Mailer: Apple Mail (2.3774.300.61.1.2)",
    "User-Agent: Roundcube Webmail/1.6.5",
]
ATTACHMENTS = [
    ("application/pdf", "report-draft.pdf"),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "comments.docx"),
    ("image/png", "chart.png"),
]
CRLF = "\r\n"
POOL = 2  # processes composing posts and deriving their text during a load (the machine has 2 cores)
COMPOSER: Composer | None = None  # set before the pool forks
FIXED_PAGE = "<!doctype html><html lang=en><title>ceiling</title><main>" + "<p>fixed page</p>" * 100


# --- the synthetic archive ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Vocabulary:
    words: list[str]
    cumulative: list[float]  # Zipf weights: the word of rank r has weight 1 / (r + 2.7)

    def stream(self) -> list[str]:
        """Words drawn with those weights once: a paragraph is a slice at a random offset, ten times
        cheaper than drawing each word (and as random for an index)."""
        return random.Random(len(self.words)).choices(self.words, cum_weights=self.cumulative, k=STREAM)


@dataclass(frozen=True)
class Person:
    name: str
    address: str
    from_header: str  # RFC 2047 encoded once
    country: str
    role: str
    zone: timezone


def vocabulary(language: str) -> Vocabulary:
    """Real function and domain words first (the most frequent), then made-up words of the language's
    syllables: a few lines of code instead of a corpus, with a realistic long tail."""
    rng = random.Random(f"vocabulary-{language}")
    words = list(dict.fromkeys(FUNCTION_WORDS[language].split() + DOMAIN_WORDS[language].split()))
    seen, syllables = set(words), SYLLABLES[language].split()
    while len(words) < VOCABULARY_SIZE:
        word = "".join(rng.choices(syllables, k=rng.choice((1, 2, 2, 3, 3, 3, 4))))
        if len(word) > 2 and word not in seen:
            seen.add(word)
            words.append(word)
    return Vocabulary(words, list(itertools.accumulate(1 / (rank + 2.7) for rank in range(len(words)))))


def ascii_slug(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return re.sub(r"[^a-z]+", "-", "".join(c for c in decomposed if c.isascii()).lower()).strip("-")


def people(language: str) -> list[Person]:
    rng = random.Random(f"people-{language}")
    roles, found = PHRASES[language][3], []
    for number in range(400):
        first, last = rng.choice(FIRST_NAMES[language].split()), rng.choice(LAST_NAMES[language].split())
        country = rng.choice(COUNTRIES[language])
        # .example.org: flanker refuses the bare .example TLD, and parse_post would find no sender
        address = f"{ascii_slug(first)}.{ascii_slug(last)}{number}@mfa-{ascii_slug(country)}.example.org"
        name = f"{first} {last}"
        encoded = Header(name, "utf-8").encode() if not name.isascii() else f'"{name}"'
        zone = timezone(timedelta(hours=rng.choice((-5, -3, 0, 1, 2, 3))))
        found.append(Person(name, address, f"{encoded} <{address}>", country, rng.choice(roles), zone))
    return found


@dataclass
class Skeleton:
    """Every post's place, in archive order (index 0 is post id 1): when, which list, whose, its
    thread's first post and its parent (0: none)."""

    dates: array  # POSIX seconds
    lists: bytearray
    senders: array
    threads: array
    parents: array
    thread_count: int


def skeleton(messages: int, end: float) -> Skeleton:
    """Threads of 1–30 posts (P(n) ∝ n^-1.6: half are single posts, mean ~3.5) started uniformly over
    ``YEARS`` years, replies hours to days apart, each to the previous post or to an earlier one."""
    rng = random.Random(20261124)
    weights = list(itertools.accumulate(n**-1.6 for n in range(1, 31)))
    start_at, events, thread_count = end - YEARS * 365 * 86_400, [], 0
    for index, share in enumerate(SHARES):
        remaining = round(share * messages) if index < len(SHARES) - 1 else messages - len(events)
        while remaining > 0:
            size = min(rng.choices(range(1, 31), cum_weights=weights)[0], remaining)
            offsets = list(itertools.accumulate(rng.expovariate(1 / 64_800) + 60 for _ in range(size - 1)))
            first = rng.uniform(start_at, end - (offsets[-1] if offsets else 0) - 60)
            for position, offset in enumerate([0.0, *offsets]):
                parent = -1 if position == 0 else position - 1
                if position > 1 and rng.random() < 0.4:
                    parent = rng.randrange(position)
                events.append((int(first + offset), index, thread_count, position, parent))
            thread_count, remaining = thread_count + 1, remaining - size
    events.sort()
    found = Skeleton(array("d"), bytearray(), array("H"), array("I"), array("I"), thread_count)
    members_of: dict[int, list[int]] = defaultdict(list)
    for post_id, (when, list_index, thread, _position, parent) in enumerate(events, 1):
        ids = members_of[thread]  # positions arrive in order: a reply is always later than its parent
        ids.append(post_id)
        found.dates.append(when)
        found.lists.append(list_index)
        found.senders.append(rng.randrange(400))
        found.threads.append(ids[0])
        found.parents.append(ids[parent] if parent >= 0 else 0)
    return found


class Composer:
    """Raw bytes for each post of a skeleton, deterministic from the post's id (a reply quotes its
    parent's first paragraph, regenerated from the parent's id)."""

    def __init__(self, plan: Skeleton) -> None:
        self.plan = plan
        self.vocabularies = {language: vocabulary(language) for language in LANGUAGE.values()}
        self.people = {language: people(language) for language in LANGUAGE.values()}
        self.streams = {language: vocab.stream() for language, vocab in self.vocabularies.items()}

    def language(self, post_id: int) -> str:
        return LANGUAGE[LISTS[self.plan.lists[post_id - 1]]]

    def person(self, post_id: int) -> Person:
        return self.people[self.language(post_id)][self.plan.senders[post_id - 1]]

    def message_id(self, post_id: int) -> str:
        domain = self.person(post_id).address.split("@")[1]
        return f"<{post_id:x}.{(post_id * 2654435761) % 2**32:08x}@mail.{domain}>"

    def paragraph(self, rng: random.Random, language: str, count: int) -> list[str]:
        """Sentences of 8–20 words, ten words to a line (~70 characters)."""
        stream = self.streams[language]
        at = rng.randrange(len(stream) - count)
        words, start = stream[at : at + count], 0
        while start < count:
            words[start] = words[start].capitalize()
            start += rng.randint(8, 20)
            words[min(start, count) - 1] += "."
        return [" ".join(words[at : at + 10]) for at in range(0, count, 10)]

    def first_paragraph(self, post_id: int) -> list[str]:
        rng = random.Random(post_id * 2 + 1)
        return self.paragraph(rng, self.language(post_id), rng.randint(30, 90))

    def root_subject(self, thread_id: int) -> str:
        rng, language = random.Random(thread_id * 7919 + 3), self.language(thread_id)
        words = self.vocabularies[language].words
        topic = " ".join(rng.choice(words[30:5000]) for _ in range(rng.randint(2, 4)))
        return f"{rng.choice(PHRASES[language][5])}: {topic}"

    def compose(self, post_id: int) -> dict[str, Any]:
        """The ``post`` row, plus ``text_bytes``: subject + decoded text body + sender, in UTF-8."""
        plan, rng = self.plan, random.Random(post_id * 1_000_003 + 17)
        person = self.person(post_id)
        thread_id, parent = plan.threads[post_id - 1], plan.parents[post_id - 1]
        list_name = LISTS[plan.lists[post_id - 1]]
        root = self.root_subject(thread_id)
        marker = rng.choice(("Re:", "Re:", "RE:"))
        subject = root
        if parent:
            subject = f"{marker} [{list_name.upper()}] {root}" if rng.random() < 0.5 else f"{marker} {root}"
        date = datetime.fromtimestamp(plan.dates[post_id - 1], UTC)
        size = min(max(int(rng.lognormvariate(math.log(4_000), 0.75)), 1_024), 18_000)  # + encoding
        head = self.headers(rng, post_id, list_name, subject, date, parent)
        kind = rng.choices(("plain", "html", "alternative", "mixed"), cum_weights=(70, 75, 90, 100))[0]
        head_size = sum(len(line) + 2 for line in head)
        attachment = int((size - head_size) * rng.uniform(0.3, 0.6) * 3 / 4) if kind == "mixed" else 0
        room = size - head_size - attachment * 4 // 3
        text_lines = self.body(rng, post_id, parent, room // 2 - 150 if kind == "alternative" else room)
        text = "\r\n".join(text_lines) + "\r\n"
        body, content_head, shown = self.mime(rng, post_id, kind, text, text_lines, attachment)
        raw = ("\r\n".join([*head, *content_head]) + "\r\n\r\n").encode() + body
        return {
            "id": post_id,
            "list_name": list_name,
            "message_id": self.message_id(post_id),
            "sender": person.address,
            "subject": subject,
            "date": date,
            "raw": raw,
            "archived_at": date + timedelta(seconds=rng.randint(60, 4 * 3600)),  # moderation delay
            "thread_id": thread_id,
            "parent_id": parent or None,
            "subject_key": subject_key(subject, f"[{list_name.upper()}]"),
            "text_bytes": len(subject.encode()) + len(shown.encode()) + len(person.address),
            "kind": kind,
        }

    def headers(
        self, rng: random.Random, post_id: int, list_name: str, subject: str, date: datetime, parent: int
    ) -> list[str]:
        person = self.person(post_id)
        relay, local = f"mail.{person.address.split('@')[1]}", date.astimezone(person.zone)
        lines = [
            f"Return-Path: <{person.address}>",
            f"Received: from {relay} ({relay} [192.0.2.{rng.randrange(1, 255)}])\r\n\tby mx.forum.example.org"
            f" (Postfix) with ESMTPS id {rng.getrandbits(40):010X}\r\n\tfor <{list_name}@forum.example.org>;"
            f" {format_datetime(date)}",
            f"Received: from [10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}]"
            f"\r\n\tby {relay} (Postfix) with ESMTPSA id {rng.getrandbits(40):010X};"
            f"\r\n\t{format_datetime(local)}",
        ]
        if rng.random() < 0.6:
            signature = base64.b64encode(rng.randbytes(256)).decode()
            folded = "\r\n\t ".join(signature[at : at + 70] for at in range(0, len(signature), 70))
            lines.append(
                f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={relay[5:]}; s=s2024;\r\n\t"
                f"h=from:to:subject:date:message-id:references:in-reply-to;\r\n\t"
                f"bh={base64.b64encode(rng.randbytes(32)).decode()};\r\n\tb={folded}"
            )
        subject_header = subject if subject.isascii() else encoded_words(subject)
        lines += [
            f"From: {person.from_header}",
            f"To: {list_name}@forum.example.org",
            f"Subject: {subject_header}",
            f"Date: {format_datetime(local)}",
            f"Message-ID: {self.message_id(post_id)}",
        ]
        if parent:
            chain, ancestor = [], parent
            while ancestor and len(chain) < 10:
                chain.append(self.message_id(ancestor))
                ancestor = self.plan.parents[ancestor - 1]
            lines += [f"In-Reply-To: {chain[0]}", "References: " + "\r\n ".join(reversed(chain))]
        language = self.language(post_id)
        return [*lines, "MIME-Version: 1.0", f"Content-Language: {language}", rng.choice(AGENTS)]

    def body(self, rng: random.Random, post_id: int, parent: int, size: int) -> list[str]:
        language = self.language(post_id)
        greeting, closing, intro, _, delegation, _ = PHRASES[language]
        person, lines = self.person(post_id), [rng.choice(greeting), "", *self.first_paragraph(post_id)]
        written = sum(len(line) + 2 for line in lines) + (600 if parent else 150)  # quote, signature
        while True:
            paragraph = self.paragraph(rng, language, rng.randint(40, 120))
            written += sum(len(line) + 2 for line in paragraph) + 2
            if written > size:
                break
            lines += ["", *paragraph]
        lines += ["", rng.choice(closing), person.name]
        if parent:
            parent_date = datetime.fromtimestamp(self.plan.dates[parent - 1], UTC).strftime("%d/%m/%Y %H:%M")
            quoted = [intro.format(date=parent_date, name=self.person(parent).name)]
            quoted += [f"> {line}" for line in self.first_paragraph(parent)]
            top_posted = rng.random() < 0.4
            lines = [*lines, "", *quoted] if top_posted else [*quoted, "", *lines]
        return [*lines, "", "-- ", person.name, f"{person.role}, {delegation.format(country=person.country)}"]

    def mime(
        self, rng: random.Random, post_id: int, kind: str, text: str, lines: list[str], attachment: int
    ) -> tuple[bytes, list[str], str]:
        """(body bytes, Content-* headers, the text a reader gets: the plain part, else the HTML)."""
        boundary = f"----=_Part_{post_id}_{rng.getrandbits(32):08x}"
        plain_head, plain_body = text_part("plain", text, rng)
        if kind == "plain":
            return plain_body, plain_head, text
        html = html_of(lines)
        html_head, html_body = text_part("html", html, rng)
        if kind == "html":
            return html_body, html_head, html
        if kind == "alternative":
            parts = [(plain_head, plain_body), (html_head, html_body)]
            return (
                multipart(boundary, parts),
                [f'Content-Type: multipart/alternative; boundary="{boundary}"'],
                text,
            )
        content_type, filename = rng.choice(ATTACHMENTS)
        data = base64.encodebytes(rng.randbytes(max(attachment, 300))).replace(b"\n", b"\r\n")
        file_head = [
            f'Content-Type: {content_type}; name="{filename}"',
            f'Content-Disposition: attachment; filename="{filename}"',
            "Content-Transfer-Encoding: base64",
        ]
        parts = [(plain_head, plain_body), (file_head, data)]
        return multipart(boundary, parts), [f'Content-Type: multipart/mixed; boundary="{boundary}"'], text


def text_part(subtype: str, text: str, rng: random.Random) -> tuple[list[str], bytes]:
    """8bit, or quoted-printable as Outlook sends a third of the time."""
    encoded = text.encode()
    if encoded.isascii():
        return [f"Content-Type: text/{subtype}; charset=us-ascii", "Content-Transfer-Encoding: 7bit"], encoded
    if rng.random() < 0.33:
        qp = binascii.b2a_qp(encoded, istext=True)
        return [
            f"Content-Type: text/{subtype}; charset=utf-8",
            "Content-Transfer-Encoding: quoted-printable",
        ], qp
    head = [f"Content-Type: text/{subtype}; charset=utf-8; format=flowed", "Content-Transfer-Encoding: 8bit"]
    return head, encoded


def encoded_words(text: str) -> str:
    """RFC 2047, base64, short enough for a 78-character line (email.header's Header is 20x slower)."""
    chunks = [text[at : at + 14] for at in range(0, len(text), 14)]
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(chunk.encode()).decode()}?=" for chunk in chunks)


def html_of(lines: list[str]) -> str:
    paragraphs, quote_lines, current = [], [], []
    for line in [*lines, ""]:
        if line.startswith("> "):
            quote_lines.append(escape(line[2:]))
        elif line:
            current.append(escape(line))
        elif current:
            paragraphs.append("<p>" + " ".join(current) + "</p>")
            current = []
    quoted = f"<blockquote>{' '.join(quote_lines)}</blockquote>" if quote_lines else ""
    body = "\r\n".join(paragraphs)
    return f'<html><head><meta charset="utf-8"></head><body>\r\n{body}\r\n{quoted}</body></html>\r\n'


def multipart(boundary: str, parts: list[tuple[list[str], bytes]]) -> bytes:
    chunks = [b"This is a multi-part message in MIME format.\r\n"]
    for head, body in parts:
        chunks.append(f"--{boundary}\r\n{CRLF.join(head)}\r\n\r\n".encode())
        chunks.append(body + b"\r\n")
    return b"".join([*chunks, f"--{boundary}--\r\n".encode()])


def subject_key(subject: str, prefix: str) -> str:
    from listserv.mail.subjects import subject_key as key

    return key(subject, prefix)


# --- loading -----------------------------------------------------------------------------------------


@dataclass
class Loaded:
    """What a load produced; kept in ``meta.json`` so that ``--keep`` runs can report it."""

    messages: int
    database: str
    load_seconds: float
    index_seconds: float
    raw_bytes: int
    text_bytes: int
    threads: int
    kinds: dict[str, int]
    sizes: list[int]  # p50, p95, max of the raw messages
    first_date: str
    last_date: str
    sample_check: str
    pg_database: str = ""
    created: str = ""
    derive_seconds: float = 0.0  # the display text and snippets derived, as archive_raw does per post


def load_posts(engine: Any, messages: int) -> tuple[Loaded, dict[int, int]]:
    """Insert the posts in batches; return the figures and, for a sample of posts, the generator's text
    count (for ``check_text_sizes``)."""
    from sqlalchemy import insert, text

    from listserv.archive.derived import recount
    from listserv.store.models import ArchivedPost

    end = (datetime.now(UTC) - timedelta(hours=1)).timestamp()
    started = time.perf_counter()
    plan = skeleton(messages, end)
    composer = Composer(plan)
    progress(
        f"planned {messages:,} posts, {plan.thread_count:,} threads ({time.perf_counter() - started:.0f} s)"
    )
    sample = set(random.Random(5).sample(range(1, messages + 1), min(500, messages)))
    counted: dict[int, int] = {}
    raw_total, text_total, sizes, kinds = 0, 0, array("I"), Counter[str]()
    step = max(messages // 10, BATCH)
    global COMPOSER
    COMPOSER = composer  # the pool's processes are forked: they inherit it
    spans = [(start, min(start + BATCH, messages + 1)) for start in range(1, messages + 1, BATCH)]
    derive_seconds = 0.0
    with multiprocessing.get_context("fork").Pool(POOL) as pool:
        for (start, _end), (rows, seconds) in zip(spans, pool.imap(compose_batch, spans), strict=True):
            derive_seconds += seconds
            for row in rows:
                text_bytes = row.pop("text_bytes")
                raw_total, text_total = raw_total + len(row["raw"]), text_total + text_bytes
                kinds[row.pop("kind")] += 1
                sizes.append(len(row["raw"]))
                if row["id"] in sample:
                    counted[row["id"]] = text_bytes
            with engine.begin() as connection:
                connection.execute(insert(ArchivedPost), rows)
            if (start + BATCH - 1) // step != (start - 1) // step:
                done = min(start + BATCH - 1, messages)
                progress(f"loaded {done:,} posts, {done / (time.perf_counter() - started):,.0f}/s")
    with engine.begin() as connection:
        recount(connection)  # the thread and day figures, as archive_raw keeps them post by post
    if engine.dialect.name == "postgresql":  # ids were given: move the sequence past them for serve
        with engine.begin() as connection:
            connection.execute(
                text("SELECT setval(pg_get_serial_sequence('post', 'id'), :n)"), {"n": messages}
            )
    ordered = sorted(sizes)
    loaded = Loaded(
        messages=messages,
        database=engine.dialect.name,
        load_seconds=time.perf_counter() - started,
        index_seconds=0.0,
        raw_bytes=raw_total,
        text_bytes=text_total,
        threads=plan.thread_count,
        kinds=dict(kinds),
        sizes=[ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.95)], ordered[-1]],
        first_date=datetime.fromtimestamp(plan.dates[0], UTC).isoformat(timespec="minutes"),
        last_date=datetime.fromtimestamp(plan.dates[-1], UTC).isoformat(timespec="minutes"),
        sample_check="",
        derive_seconds=derive_seconds,
    )
    return loaded, counted


def compose_batch(span: tuple[int, int]) -> tuple[list[dict[str, Any]], float]:
    """In a pool process: the rows of posts ``span``, with what ``archive.derived.record`` derives
    for each (the display JSON and the snippet's text); the seconds that derivation took."""
    from listserv.archive import display

    assert COMPOSER is not None
    rows, seconds = [COMPOSER.compose(post_id) for post_id in range(*span)], 0.0
    for row in rows:
        started = time.process_time()
        row["display"] = display.derive(row["raw"], row["list_name"], row["message_id"])
        row["search_text"] = display.search_source(row["raw"])
        seconds += time.process_time() - started
    return rows, seconds


def check_text_sizes(engine: Any, counted: dict[int, int]) -> str:
    """The generator's text count against what ``parse_post`` reads back (subject + text + sender), on
    a sample: says whether "raw text" measures what the indexer is given."""
    from sqlalchemy import select

    from listserv.mail.message import parse_post
    from listserv.store.models import ArchivedPost

    with engine.connect() as connection:
        raws = connection.execute(
            select(ArchivedPost.id, ArchivedPost.raw).where(ArchivedPost.id.in_(list(counted)))
        ).all()
    parsed = 0
    for _post_id, raw in raws:
        post = parse_post(raw)
        parsed += len(post.subject.encode()) + len(post.text.encode()) + len(post.sender.encode())
    generated = sum(counted.values())
    return f"parse_post reads back {parsed / generated:.1%} of it on {len(raws)} sampled posts"


def analyse(engine: Any) -> None:
    """PostgreSQL: what autovacuum would do soon after a bulk load, done now so plans are stable."""
    from sqlalchemy import text

    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE post"))
        connection.execute(text("VACUUM ANALYZE post_search"))


def build_index(engine: Any, settings: Any) -> tuple[float, int]:
    from listserv.archive import index

    started = time.perf_counter()
    count = index.reindex(engine, settings)
    return time.perf_counter() - started, count


def index_size(engine: Any) -> tuple[int, str]:
    """Bytes of the search index and how they split: FTS5's shadow tables (dbstat), or PostgreSQL's
    ``post_search`` with its TOAST and indexes."""
    from sqlalchemy import text

    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            total, table, indexes = connection.execute(
                text(
                    "SELECT pg_total_relation_size('post_search'), pg_relation_size('post_search'),"
                    " pg_indexes_size('post_search')"
                )
            ).one()
            toast = total - table - indexes
            parts = f"pg_total_relation_size('post_search'): heap {mb(table)}, TOAST {mb(toast)}"
            return int(total), f"{parts}, indexes {mb(indexes)} (GIN + primary key)"
        names = connection.execute(
            text("SELECT name FROM sqlite_schema WHERE tbl_name LIKE 'post_search%' AND rootpage > 0")
        ).scalars()
        query = text("SELECT sum(pgsize) FROM dbstat WHERE name = :n")
        sizes = {name: int(connection.execute(query, {"n": name}).scalar() or 0) for name in names}
    split = ", ".join(f"{name} {mb(size)}" for name, size in sorted(sizes.items(), key=lambda item: -item[1]))
    return sum(sizes.values()), f"FTS5 shadow tables by dbstat: {split}"


def dbstat_missing(engine: Any) -> str | None:
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    if engine.dialect.name != "sqlite":
        return None
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT count(*) FROM dbstat WHERE name = 'sqlite_schema'"))
    except OperationalError as error:
        return str(error.orig)
    return None


def sqlite_pages(engine: Any) -> int:
    """The file's used bytes after a VACUUM: the fallback when SQLite lacks dbstat."""
    from sqlalchemy import text

    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM")
        pages = connection.execute(text("PRAGMA page_count")).scalar() or 0
        return int(pages) * int(connection.execute(text("PRAGMA page_size")).scalar() or 0)


def database_size(engine: Any) -> int:
    from sqlalchemy import text

    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            return int(connection.execute(text("SELECT pg_database_size(current_database())")).scalar() or 0)
        pages = connection.execute(text("PRAGMA page_count")).scalar() or 0
        return int(pages) * int(connection.execute(text("PRAGMA page_size")).scalar() or 0)


def mb(size: float) -> str:
    return f"{size / 1e9:,.2f} GB" if size >= 1e9 else f"{size / 1e6:,.1f} MB"


def add_reader(engine: Any, settings: Any) -> None:
    """The member who signs in: reads the three lists, receives nothing (delivery none)."""
    from sqlalchemy.orm import Session

    from listserv.store import directory

    fields = {"email": READER, "name": "Bench Reader", "country": "", "lists": ";".join(LISTS)}
    row = directory.check_row({**fields, "role": "delegate", "delivery": "none", "language": "en"}, settings)
    with Session(engine) as session, session.begin():
        directory.apply_rows(session, [row], exact_lists=False)
        directory.set_password(session, READER, PASSWORD)


# --- workspace: a temp dir, or --keep DIR reused across runs ----------------------------------------


@dataclass
class Workspace:
    directory: Path
    url: str
    label: str
    loaded: Loaded | None  # a previous run's load, reused
    pg_name: str = ""


@contextlib.contextmanager
def workspace(args: argparse.Namespace) -> Iterator[Workspace]:
    with contextlib.ExitStack() as stack:
        if args.keep:
            directory = args.keep.resolve()
            directory.mkdir(parents=True, exist_ok=True)
        else:
            directory = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="listserv-bench-archive-"))
            )
        loaded = read_meta(directory, args) if args.keep else None
        if args.database == "sqlite":
            path = directory / "listserv.db"
            if loaded is None:
                for leftover in (path, path.with_name("listserv.db-wal"), path.with_name("listserv.db-shm")):
                    leftover.unlink(missing_ok=True)
            yield Workspace(directory, f"sqlite:///{path}", "SQLite (WAL, synchronous=FULL)", loaded)
            return
        name = loaded.pg_database if loaded else pg_name(directory if args.keep else None)
        if loaded is None:
            pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
        if not args.keep:
            stack.callback(pg_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        yield Workspace(directory, url, f"PostgreSQL 127.0.0.1:5432 (database {name})", loaded, name)


def pg_name(kept: Path | None) -> str:
    if kept is None:
        return f"listserv_bench_archive_{os.getpid()}"
    return f"listserv_bench_archive_keep_{binascii.crc32(str(kept).encode()):08x}"


def pg_admin(*statements: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        for statement in statements:
            admin.execute(statement)  # type: ignore[arg-type]  # our own fixed names


def read_meta(directory: Path, args: argparse.Namespace) -> Loaded | None:
    path = directory / "meta.json"
    if not path.exists():
        return None
    loaded = Loaded(**json.loads(path.read_text()))
    if (loaded.messages, loaded.database) != (args.messages, args.database):
        sys.exit(
            f"{directory} holds {loaded.messages:,} posts on {loaded.database}; "
            f"use another --keep directory for {args.messages:,} on {args.database}"
        )
    return loaded


# --- HTTP --------------------------------------------------------------------------------------------


Record = tuple[float, str, int, int, str]  # seconds, path, status, bytes, the search's count of hits
HITS = re.compile(r'id="results-heading">(\d+) messages? found')


def fetch_all(base: str, cookies: Any, paths: list[str], concurrency: int) -> tuple[list[Record], float]:
    """GET every path once, ``concurrency`` keep-alive clients in threads taking the next path."""
    import httpx2

    records: list[Record] = []
    position = itertools.count()  # next() on it is atomic under the GIL

    def client_loop() -> None:
        with httpx2.Client(base_url=base, cookies=cookies, follow_redirects=False, timeout=120) as client:
            while (index := next(position)) < len(paths):
                started = time.perf_counter()
                try:
                    response = client.get(paths[index])
                    status, size = response.status_code, len(response.content)
                except httpx2.HTTPError as error:
                    response, status, size = None, 0, 0
                    print(f"  {paths[index]}: {type(error).__name__}: {error}", file=sys.stderr)
                seconds = time.perf_counter() - started
                found = (
                    HITS.search(response.text) if response is not None and "/search" in paths[index] else None
                )
                records.append((seconds, paths[index], status, size, found.group(1) if found else ""))

    threads = [threading.Thread(target=client_loop) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return records, time.perf_counter() - started


@dataclass
class Outcome:
    kind: str
    records: list[Record]
    wall: float
    cpu: Cpu


def measure(kind: str, base: str, cookies: Any, paths: list[str], concurrency: int, pid: int) -> Outcome:
    """The server's CPU is ``pid``'s and its children's (``web.workers`` processes) together."""
    progress(f"{kind}: {len(paths) - WARM_UP} requests after {WARM_UP} warm-up")
    fetch_all(base, cookies, paths[:WARM_UP], concurrency)
    before = tree_cpu(pid)
    records, wall = fetch_all(base, cookies, paths[WARM_UP:], concurrency)
    return Outcome(kind, records, wall, tree_cpu(pid) - before)


def tree_cpu(pid: int) -> Cpu:
    workers = children_of(pid)
    found = Cpu.now(pid, [os.getpid()])
    extra = sum(cpu_seconds(child) for child in workers)
    return Cpu(found.server + extra, found.clients, found.machine, found.wall)


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return found


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path) -> float:
    import httpx2

    started = time.perf_counter()
    while True:
        try:
            if httpx2.get(url, timeout=5).status_code < 500:
                return time.perf_counter() - started
        except httpx2.HTTPError:
            pass
        if process.poll() is not None or time.perf_counter() - started > 120:
            raise RuntimeError(f"{url} did not answer; the server's output:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def sign_in(base: str) -> Any:
    """The sign-in form's CSRF token comes with the session cookie from any page with a form."""
    import httpx2

    with httpx2.Client(base_url=base, follow_redirects=False, timeout=60) as client:
        page = client.get("/password/forgot")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        if token is None:
            raise RuntimeError(f"no CSRF token on /password/forgot ({page.status_code})")
        form = {"email": READER, "password": PASSWORD, "csrf": token.group(1), "next": "/lists/"}
        answer = client.post("/login", data=form)
        if answer.status_code != 303:
            raise RuntimeError(f"sign-in answered {answer.status_code}, not 303")
        return httpx2.Cookies(client.cookies)


def serve_trivial(port: int) -> None:
    """The ceiling: the same HTTP stack as listserv's web side (Starlette, uvicorn with httptools), a
    fixed page, nothing else."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    async def direct(request: Request) -> HTMLResponse:
        return HTMLResponse(FIXED_PAGE)

    def pooled(request: Request) -> HTMLResponse:  # a sync endpoint: Starlette runs it in the thread pool
        return HTMLResponse(FIXED_PAGE)

    app = Starlette(routes=[Route("/", direct), Route("/sync", pooled)])
    options = {"http": "httptools", "lifespan": "off", "log_level": "warning", "access_log": False}
    uvicorn.run(app, host="127.0.0.1", port=port, server_header=False, **options)  # type: ignore[arg-type]


def measure_ceiling(args: argparse.Namespace, directory: Path) -> list[Outcome]:
    from common import stop_server

    port, log = free_port(), directory / "ceiling.log"
    with log.open("wb") as output:
        command = [sys.executable, str(Path(__file__).resolve()), "--serve-trivial", str(port)]
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/", process, log)
        total = args.requests + WARM_UP
        return [
            measure("ceiling async", base, None, ["/"] * total, args.concurrency, process.pid),
            measure("ceiling sync", base, None, ["/sync"] * total, args.concurrency, process.pid),
        ]
    finally:
        stop_server(process)


# --- what to fetch -----------------------------------------------------------------------------------


@dataclass
class Targets:
    paths: dict[str, list[str]]
    thread_sizes: dict[str, int]  # thread page path → posts in that thread
    last_page: int


def id_path(message_id: str) -> str:
    return quote(message_id.strip("<>"), safe="@")


def choose_targets(engine: Any, messages: int, requests: int, seed: int) -> Targets:
    """Random posts (so a thread is picked in proportion to its size, as following links does), list
    pages 1–10 and any page of ta-en, and searches of one or two words of a list's language whose
    frequency ranks are log-uniform between 50 and 20,000 (from words in most posts to rare ones)."""
    from sqlalchemy import func, select

    from listserv.store.models import ArchivedPost, ThreadFigures
    from listserv.web.listing import Cursor

    rng, count = random.Random(seed), requests + WARM_UP
    picked = [rng.randint(1, messages) for _ in range(2 * count)]
    columns = (ArchivedPost.id, ArchivedPost.list_name, ArchivedPost.message_id, ArchivedPost.thread_id)
    with engine.connect() as connection:
        rows = {
            row.id: row
            for row in connection.execute(select(*columns).where(ArchivedPost.id.in_(set(picked))))
        }
        sizes = dict(
            connection.execute(
                select(ArchivedPost.thread_id, func.count())
                .where(ArchivedPost.thread_id.in_({row.thread_id for row in rows.values()}))
                .group_by(ArchivedPost.thread_id)
            ).all()
        )
        threads_en = connection.scalar(
            select(func.count()).where(
                ArchivedPost.list_name == "ta-en", ArchivedPost.id == ArchivedPost.thread_id
            )
        )
        places = connection.execute(  # where an "older" link may lead: anywhere in the list
            select(ThreadFigures.latest_at, ThreadFigures.thread_id)
            .where(ThreadFigures.list_name == "ta-en")
            .order_by(func.random())
            .limit(count)
        ).all()
    last_page = max(1, math.ceil((threads_en or 0) / PAGE_SIZE))
    thread_paths, thread_sizes = [], {}
    for post_id in picked[:count]:
        row = rows[post_id]
        path = f"/lists/{row.list_name}/thread/{id_path(row.message_id)}"
        thread_paths.append(path)
        thread_sizes[path] = sizes[row.thread_id]
    message_paths = [
        f"/lists/{rows[i].list_name}/message/{id_path(rows[i].message_id)}" for i in picked[count:]
    ]
    vocabularies = {language: vocabulary(language) for language in LANGUAGE.values()}

    def query() -> str:
        words = vocabularies[LANGUAGE[rng.choices(LISTS, SHARES)[0]]].words
        low, high = math.log(50), math.log(VOCABULARY_SIZE - 1)
        return " ".join(words[int(math.exp(rng.uniform(low, high)))] for _ in range(rng.randint(1, 2)))

    deepest = min(last_page, 10_000)  # the list page's own limit
    return Targets(
        {
            "static file": ["/static/style.css"] * count,  # serve's HTTP path alone, no handler
            "list p1-10": [f"/lists/ta-en/?page={rng.randint(1, min(10, last_page))}" for _ in range(count)],
            "list any page": [f"/lists/ta-en/?before={Cursor(*place).token}" for place in places],
            "list ?page=N": [f"/lists/ta-en/?page={rng.randint(1, deepest)}" for _ in range(count)],
            "thread": thread_paths,
            "message": message_paths,
            "search": [f"/search?q={quote(query())}" for _ in range(count)],
        },
        thread_sizes,
        last_page,
    )


# --- profiling ---------------------------------------------------------------------------------------


WAITS = (  # leaves of threads blocked in a wait, which py-spy counts as busy
    "Condition.wait (",
    "EpollSelector.select (",
    "_worker (concurrent",
    "Event.wait (",
    "Thread.join (",
    "Spool._next_batch (",
)


def profile(
    py_spy: str, kind: str, base: str, cookies: Any, paths: list[str], args: argparse.Namespace, pid: int
) -> list[str]:
    """The first ``PROFILED`` requests again under ``py-spy record`` (not timed): where the serve
    process spent its CPU, as functions' inclusive and self shares of the samples."""
    output = args.profile / f"{kind.replace(' ', '-')}.txt"
    command = [py_spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--function"]
    spy = subprocess.Popen(
        [*command, "--output", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    time.sleep(1.5)  # attached
    fetch_all(base, cookies, paths[WARM_UP : WARM_UP + PROFILED], args.concurrency)
    spy.send_signal(signal.SIGINT)
    _, errors = spy.communicate(timeout=120)
    if not output.exists():
        return [f"  py-spy wrote nothing: {errors.decode(errors='replace')[-500:]}"]
    return summarise_profile(output, kind)


def summarise_profile(path: Path, kind: str, top: int = 14) -> list[str]:
    """Shares of the samples taken inside ``listserv.web.app._run`` (the handler, in the thread pool):
    inclusive per function of listserv and its templates (and the driver's execute), then self; the
    other busy samples (uvicorn, middleware, serve's background workers) by their leaf. Samples of
    threads blocked in a wait are dropped: py-spy's idle detection misses some of them."""
    inclusive, own, outside, handler, waiting = Counter[str](), Counter[str](), Counter[str](), 0, 0
    for line in path.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        frames, count = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")], int(number)
        if frames[-1].startswith(WAITS):
            waiting += count
            continue
        inside = next((i for i, f in enumerate(frames) if f.startswith("_run (") and "web/app.py" in f), None)
        if inside is None:
            outside[frames[-1]] += count
            continue
        handler += count
        for frame in set(frames[inside + 1 :]):
            if "listserv/" in frame or ".html)" in frame or frame.startswith("DefaultDialect.do_execute"):
                inclusive[frame] += count  # ours and the templates; SQLAlchemy's layers only as "SQL"
        own[frames[-1]] += count
    if not handler:
        return [f"  {kind}: no samples inside the handlers"]
    busy = handler + sum(outside.values())
    return [
        f"  {kind}: {handler:,} samples in the handler (listserv.web.app._run), {busy - handler:,} elsewhere "
        f"on CPU, {waiting:,} waiting (dropped); % of the handler's samples:",
        "    inclusive: "
        + "; ".join(f"{n / handler:.0%} {frame}" for frame, n in inclusive.most_common(top)),
        "    self: " + "; ".join(f"{n / handler:.0%} {frame}" for frame, n in own.most_common(8)),
        "    elsewhere (% of all on-CPU): "
        + "; ".join(f"{n / busy:.0%} {f}" for f, n in outside.most_common(4)),
    ]


# --- report ------------------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def latencies(outcome: Outcome) -> list[float]:
    return [seconds * 1000 for seconds, _, status, _, _ in outcome.records if status == 200]


def print_table(outcomes: list[Outcome]) -> None:
    print(
        f"{'page':<14} {'ok':>4} {'fail':>4} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7} "
        f"{'req/s':>6} {'KB/page':>7} {'serve CPU ms/req':>16} {'rest of machine':>15}"
    )
    for outcome in outcomes:
        ok, count, cpu = latencies(outcome), len(outcome.records), outcome.cpu
        size = sum(record[3] for record in outcome.records) / max(count, 1) / 1024
        rest = max(0.0, cpu.machine - cpu.server - cpu.clients) / cpu.wall * 100 if cpu.wall else math.nan
        print(
            f"{outcome.kind:<14} {len(ok):>4} {count - len(ok):>4} {percentile(ok, 0.5):>7.1f} "
            f"{percentile(ok, 0.95):>7.1f} {percentile(ok, 0.99):>7.1f} {max(ok, default=math.nan):>7.1f} "
            f"{count / outcome.wall:>6.1f} {size:>7.1f} {cpu.server / max(count, 1) * 1000:>16.1f} "
            f"{rest:>13.0f} %"
        )


def details(outcome: Outcome, targets: Targets) -> list[str]:
    lines = []
    failures = [(status, path) for _, path, status, _, _ in outcome.records if status != 200]
    for status, path in failures[:5]:
        lines.append(f"  {outcome.kind}: FAILED {status or 'no answer'} {path}")
    slowest = sorted(outcome.records, reverse=True)[:3]
    shown = ", ".join(f"{seconds * 1000:.0f} ms {path[:90]}" for seconds, path, *_ in slowest)
    lines.append(f"  {outcome.kind} slowest: {shown}")
    if outcome.kind == "thread":
        sizes = [(1, 1), (2, 5), (6, 15), (16, 30)]
        by_size = buckets(outcome, lambda record: targets.thread_sizes[record[1]], sizes, "posts")
        lines.append(f"  thread pages by the thread's size: {by_size}")
    if outcome.kind == "search":
        hits = [(0, 0), (1, 100), (101, 1_000), (1_001, 10_000), (10_001, 10**9)]
        by_hits = buckets(outcome, lambda record: int(record[4]) if record[4] else -1, hits, "hits")
        lines.append(f"  searches by hits: {by_hits}")
    return lines


def buckets(outcome: Outcome, measure_of: Any, bounds: list[tuple[int, int]], unit: str) -> str:
    parts = []
    for low, high in bounds:
        inside = [r[0] * 1000 for r in outcome.records if r[2] == 200 and low <= measure_of(r) <= high]
        if inside:
            label = f"{low:,}" if low == high else f"{low:,}–{high:,}" if high < 10**9 else f">{low - 1:,}"
            parts.append(
                f"{label} {unit}: {len(inside)} pages, p50 {percentile(inside, 0.5):.0f} / "
                f"p95 {percentile(inside, 0.95):.0f} ms"
            )
    return "; ".join(parts)


def print_loaded(loaded: Loaded, reused: bool, directory: Path, size: int | None, split: str) -> None:
    per_list = ", ".join(f"{name} {round(share * 100)} %" for name, share in zip(LISTS, SHARES, strict=True))
    print(
        f"archive: {loaded.messages:,} posts ({per_list}), {loaded.threads:,} threads of 1–30 posts "
        f"(mean {loaded.messages / loaded.threads:.1f}), dated {loaded.first_date} … {loaded.last_date}"
    )
    share = {
        name: loaded.kinds.get(name, 0) / loaded.messages
        for name in ("plain", "html", "alternative", "mixed")
    }
    p50, p95, largest = loaded.sizes
    print(
        f"posts: raw message bytes {mb(loaded.raw_bytes)} (p50 {p50 / 1024:.1f} KB, p95 {p95 / 1024:.1f} KB, "
        f"max {largest / 1024:.1f} KB); text/plain {share['plain']:.0%}, HTML only {share['html']:.0%}, "
        f"multipart/alternative {share['alternative']:.0%}, "
        f"multipart/mixed with an attachment {share['mixed']:.0%}"
    )
    where = f" (in an earlier run, kept in {directory})" if reused else ""
    print(
        f"load{where}: {loaded.messages:,} posts in {loaded.load_seconds:,.1f} s "
        f"({loaded.messages / loaded.load_seconds:,.0f} posts/s), generation included"
    )
    print(
        f"derived text{where}: {loaded.derive_seconds:,.1f} s of CPU in the load's {POOL} processes "
        f"({loaded.derive_seconds / loaded.messages * 1000:.2f} ms a post: display.derive + search_source)"
    )
    print(
        f"index build{where}: listserv.archive.index.reindex {loaded.index_seconds:,.1f} s "
        f"({loaded.messages / loaded.index_seconds:,.0f} posts/s)"
    )
    ratio = f"{size / loaded.text_bytes:.2f} × the raw text ({mb(loaded.text_bytes)})" if size else "unknown"
    print(f"index size: {mb(size) if size else '?'} = {ratio}")
    print(f"  {split}")
    print(
        "  raw text = UTF-8 bytes of the subject + the decoded text body (the text/plain part with its "
        "quotes and signature; the HTML source for HTML-only mail; no attachments, no headers) + the "
        f"sender's address, counted by the generator; {loaded.sample_check}"
    )


TARGETS = (  # page kind, p95 ms, serve CPU ms per page (None: no target) — the issue's, at 100,000 posts
    ("message", 25, 3),
    ("thread", 40, 8),
    ("search", 100, 15),
    ("list p1-10", 40, None),
    ("list any page", 40, None),
)
START_SECONDS, IDLE_RSS_MB = 0.6, 80


def print_targets(
    outcomes: list[Outcome], ceiling: list[Outcome], loaded: Loaded, size: int | None, server: Any
) -> None:
    """Every figure of the issue's Performance section against its target, the ceiling beside it."""
    p95 = {outcome.kind: percentile(latencies(outcome), 0.95) for outcome in outcomes}
    cpu = {outcome.kind: outcome.cpu.server / max(len(outcome.records), 1) * 1000 for outcome in outcomes}
    roof = ", ".join(f"{o.kind} p95 {percentile(latencies(o), 0.95):.1f} ms" for o in ceiling)
    slack = 1.5 if loaded.messages >= 1_000_000 else 1.0  # the issue: "the same within 1.5×" at a million
    print(f"targets at {loaded.messages:,} posts (×{slack}), concurrency 4; the ceiling in this run: {roof}")
    for kind, latency, cpu_ms in TARGETS:
        limit = latency * slack
        line = f"  {kind:<14} p95 < {limit:g} ms: {verdict(p95[kind] < limit)} ({p95[kind]:.1f} ms)"
        if cpu_ms is not None:
            line += f"; serve CPU ≤ {cpu_ms} ms/page: {verdict(cpu[kind] <= cpu_ms)} ({cpu[kind]:.1f} ms)"
        print(line)
    old = "list ?page=N"
    print(f"  {old} (old links, by offset; no target): p95 {p95[old]:.1f} ms, serve CPU {cpu[old]:.1f} ms")
    if size:
        ratio = size / loaded.text_bytes
        print(f"  index ≤ 1× raw text: {verdict(ratio <= 1)} ({ratio:.2f}×; HyperKitty's Whoosh: ~3×)")
    started = server.start_seconds
    print(
        f"  start < {START_SECONDS} s (spawn → first SMTP 220): {verdict(started < START_SECONDS)} "
        f"({started:.2f} s); idle RSS < {IDLE_RSS_MB} MB (2 s after start, before any page): "
        f"{verdict(server.idle_rss_mb < IDLE_RSS_MB)} ({server.idle_rss_mb:.0f} MB)"
    )
    failed = sum(1 for outcome in outcomes for record in outcome.records if record[2] != 200)
    print(f"  every answer 200: {verdict(failed == 0)} ({failed} not)")


# --- main --------------------------------------------------------------------------------------------


def prepare(
    args: argparse.Namespace, space: Workspace, engine: Any, settings: Any
) -> tuple[Loaded, int | None, str]:
    """Load and index (or reuse a kept load); the index's size and how it splits."""
    from listserv.admin.provision import initialise

    loaded, fallback = space.loaded, None
    if loaded is None or args.reindex:
        if loaded is None:
            initialise(engine, settings)
            loaded, counted = load_posts(engine, args.messages)
            analyse(engine)
            loaded.sample_check = check_text_sizes(engine, counted)
            loaded.pg_database = space.pg_name
            loaded.created = datetime.now(UTC).isoformat(timespec="seconds")
        missing = dbstat_missing(engine)
        before = sqlite_pages(engine) if missing else 0
        progress(f"building the search index of {args.messages:,} posts")
        loaded.index_seconds, _ = build_index(engine, settings)
        analyse(engine)
        if missing:
            fallback = sqlite_pages(engine) - before
        if args.keep:
            (space.directory / "meta.json").write_text(json.dumps(loaded.__dict__, indent=1))
    if fallback is not None:
        return (
            loaded,
            fallback,
            "SQLite without dbstat: the file's pages after VACUUM, after the build less before",
        )
    if dbstat_missing(engine):
        return loaded, None, "SQLite without dbstat on a kept load: run with --reindex to measure it"
    size, split = index_size(engine)
    return loaded, size, split


def run(args: argparse.Namespace) -> None:
    from common import rss_mb

    from listserv.config import load_settings
    from listserv.store.db import make_engine

    with workspace(args) as space:
        smtp_port = free_port()
        config = write_config(space.directory, space.url, smtp_port)
        web_port = int(yaml.safe_load(config.read_text())["web"]["port"])
        settings = load_settings(config)
        engine = make_engine(settings.database.url)
        loaded, size, split = prepare(args, space, engine, settings)
        if args.load_only:
            print_loaded(loaded, space.loaded is not None and not args.reindex, space.directory, size, split)
            return
        total = database_size(engine)
        add_reader(engine, settings)
        targets = choose_targets(engine, args.messages, args.requests, args.seed)
        engine.dispose()
        ceiling = measure_ceiling(args, space.directory)
        profiles: list[str] = []
        series: list[tuple[int, list[Outcome], Any, float]] = []  # workers, outcomes, server, RSS after
        for workers in args.workers:
            raw = yaml.safe_load(config.read_text())
            raw["web"]["workers"] = workers
            config.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
            log = space.directory / f"serve-{workers}.log"
            outcomes: list[Outcome] = []
            with running(listserv_command(config, "serve"), smtp_port, log) as server:
                base, pid = f"http://127.0.0.1:{web_port}", server.process.pid
                server.measure_idle_rss()  # before any page: what an idle serve holds
                wait_http(base + "/login", server.process, log)
                cookies = sign_in(base)
                for kind, paths in targets.paths.items():
                    outcomes.append(measure(f"{kind}", base, cookies, paths, args.concurrency, pid))
                serve_rss = rss_mb(pid)
                for kind, paths in list(targets.paths.items())[1:] if args.profile and workers == 1 else ():
                    progress(f"profiling {kind}")
                    profiles += profile(args.py_spy, kind, base, cookies, paths, args, pid)
            series.append((workers, outcomes, server, serve_rss))
        print_loaded(loaded, space.loaded is not None and not args.reindex, space.directory, size, split)
        print(f"  database: {mb(total)} in all; {space.label}")
        print(f"listserv: {describe_source()}")
        print(
            f"HTTP: httpx2, {args.concurrency} clients in threads of this process (keep-alive, signed in "
            f"as {READER}), {args.requests} requests per page after {WARM_UP} warm-up; ta-en has "
            f"{targets.last_page:,} list pages"
        )
        print(
            "machine: 2 cores shared with other engineers' tests and benchmarks; 'rest of machine' is the "
            "CPU everything but serve (and its web workers) and this script took meanwhile, % of one core "
            "(PostgreSQL's backends included)"
        )
        for workers, outcomes, server, serve_rss in series:
            print(f"--- web.workers: {workers} (serve RSS {serve_rss:.0f} MB after the pages) ---")
            print_table(ceiling + outcomes)
            for outcome in outcomes:
                for line in details(outcome, targets):
                    print(line)
            if server.errors:
                print(f"serve logged {len(server.errors)} ERROR/Traceback line(s): {server.errors[0][:200]}")
            print_targets(outcomes, ceiling, loaded, size, server)
        if profiles:
            print(
                f"profiles (py-spy record --function, 250 Hz, serve's on-CPU samples; raw in {args.profile}):"
            )
            print("\n".join(profiles))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=100_000, help="posts in the archive (100000)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--requests", type=int, default=300, help="measured requests per page kind (300)")
    parser.add_argument("--concurrency", type=int, default=4, help="HTTP clients at once (4)")
    parser.add_argument("--seed", type=int, default=1, help="picks the pages fetched")
    parser.add_argument(
        "--workers",
        type=lambda value: [int(n) for n in value.split(",")],
        default=[1, 2],
        help="web.workers of each serve run, in turn (1,2)",
    )
    parser.add_argument("--keep", type=Path, metavar="DIR", help="load into DIR once, reuse it in later runs")
    parser.add_argument("--reindex", action="store_true", help="with --keep: build the index again, timed")
    parser.add_argument("--load-only", action="store_true", help="with --keep: load and index, then stop")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="then profile each page kind with py-spy")
    parser.add_argument(
        "--py-spy", default=shutil.which("py-spy"), help="the py-spy binary (default: on PATH)"
    )
    parser.add_argument("--serve-trivial", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.profile and not args.py_spy:
        parser.error("--profile needs py-spy: pip install py-spy (anywhere), then --py-spy PATH")
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    return args


def main() -> None:
    args = parse_args()
    if args.serve_trivial:
        serve_trivial(args.serve_trivial)
        return
    run(args)


if __name__ == "__main__":
    main()

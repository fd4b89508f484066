"""Notices written as bytes (``outgoing/notice_bytes``) are the email package's own output: for every
message of the corpus of hard messages, in English, French and Spanish, with and without the original
attached, with and without a reply address, the notice ``Notifier`` writes byte for byte is the one
``EmailMessage`` builds from the same parts (the same boundary: the same random draw)."""

from __future__ import annotations

import email.policy
import random

import jinja2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2.filters import do_wordwrap

from listserv.config import parse_settings
from listserv.forum import build_parts
from listserv.mail.rawmime import LINE_END, PLAIN_SUBJECT, subject_field
from listserv.mail.templates import RenderedMail, wordwrap
from listserv.outgoing import notice_bytes
from listserv.outgoing.notices import Notifier
from tests.conftest import make_config
from tests.fuzzing import ANY_MAIL, EXAMPLES, FUZZ
from tests.test_notice_building import CORPUS

LANGUAGES = ("en", "fr", "es")
BODIES = {
    "ascii": "A message to ta-en is awaiting your decision.\n\nFrom: Ana <ana@example.org>\n",
    "accents": "Un message à ta-fr attend votre décision.\n\nDe : Élodie <e@example.org>\n",
    "long-ascii": "word " * 40 + "\n" + "short\n" * 12,
    "long-accents": "décision " * 30 + "\n" + "ligne brève\n" * 12,
    "long-few-lines": "señal " * 30 + "\n",
    "empty": "",
}


@pytest.fixture(scope="module")
def notifier(tmp_path_factory: pytest.TempPathFactory) -> Notifier:
    tmp = tmp_path_factory.mktemp("notices")
    settings = parse_settings(make_config(tmp, f"sqlite:///{tmp / 'db.sqlite'}"))
    return build_parts(settings).notifier


def both_ways(
    notifier: Notifier, list_name: str, rendered: RenderedMail, reply_to: str | None, attach: bytes | None
) -> tuple[bytes | None, bytes | None]:
    fields = notifier._fields(list_name, "mod-en@forum.example.org", rendered.subject)
    random.seed(7)
    written = notifier._write(fields, rendered, reply_to, attach)
    random.seed(7)
    built = notifier._email_package(fields, rendered, reply_to, attach, inline=True)
    return written, built


@pytest.mark.parametrize(("name", "raw"), CORPUS, ids=[name for name, _ in CORPUS])
def test_a_notice_with_the_original_is_the_email_packages(name: str, raw: bytes, notifier: Notifier) -> None:
    for language in LANGUAGES:
        list_name = f"ta-{language}"
        rendered = RenderedMail(
            f"[#K7QXM-2PAB9-ZT4HD] Message to moderate: {name}", BODIES["ascii"], language
        )
        written, built = both_ways(
            notifier, list_name, rendered, f"{list_name}-moderate+K7QXM-2PAB9-ZT4HD@forum.example.org", raw
        )
        if written is not None:  # None: a shape left to the email package (an original it cannot send)
            assert written == built, f"{name} in {language}"


@pytest.mark.parametrize("body", sorted(BODIES))
def test_each_text_encoding_is_the_email_packages(body: str, notifier: Notifier) -> None:
    for language in LANGUAGES:
        rendered = RenderedMail("Votre message est en attente — ñandú", BODIES[body], language)
        for reply_to in (None, "ta-en-moderate+CODE@forum.example.org"):
            for attach in (None, CORPUS[0][1]):
                written, built = both_ways(notifier, f"ta-{language}", rendered, reply_to, attach)
                assert written is not None and written == built, (body, language, reply_to, attach is None)


def test_the_usual_posts_are_written_without_the_email_package() -> None:
    """The shortcut must cover what is common, or it buys nothing: a single-part post (long header
    lines refolded as the policy does) is taken as it is; a multipart one is generated again."""
    plain = [raw for name, raw in CORPUS if name in ("fr-qp-subject", "es-latin1-8bit", "lf-only")]
    for raw in plain:
        crlf = LINE_END.sub(b"\r\n", raw)
        assert notice_bytes.single_part_original(crlf) == notice_bytes.generated_original(crlf)
    long_header = b"From: a@example.org\r\nUser-Agent: " + b"x " * 60 + b"\r\nSubject: s\r\n\r\nbody\r\n"
    assert notice_bytes.single_part_original(long_header) == notice_bytes.generated_original(long_header)
    multipart = dict(CORPUS)["multipart-alternative-empty"]
    assert notice_bytes.single_part_original(LINE_END.sub(b"\r\n", multipart)) is None


def test_every_single_part_shortcut_is_what_the_email_package_writes() -> None:
    for name, raw in CORPUS:
        crlf = LINE_END.sub(b"\r\n", raw)
        shortcut = notice_bytes.single_part_original(crlf)
        if shortcut is not None:
            assert shortcut == notice_bytes.generated_original(crlf), name


def test_a_boundary_never_appears_in_the_text() -> None:
    random.seed(3)
    first = notice_bytes.boundary_for(b"")
    random.seed(3)
    taken = notice_bytes.boundary_for(b"text\r\n--" + first + b"\r\nmore")
    assert taken == first + b".0"


PIECES = ["a", "word", "-", "\t", " ", "\xa0", "é", "\x0b", "\u3000", "\n", "x" * 30]


@settings(FUZZ, max_examples=max(EXAMPLES, 500))
@given(
    text=st.lists(st.sampled_from(["a", "word", "-", "\t", " ", "\xa0", "é", "\x0b", "\u3000", "\n"])).map(
        "".join
    )
    | st.text(max_size=60),
    width=st.sampled_from([10, 20, 72]),
    break_long_words=st.booleans(),
)
def test_the_wordwrap_filter_is_jinjas(text: str, width: int, break_long_words: bool) -> None:
    """Notices wrap the post's excerpt with ``wordwrap``; the filter skips textwrap for lines that fit."""
    environment = jinja2.Environment()
    assert wordwrap(environment, text, width, break_long_words) == do_wordwrap(
        environment, text, width, break_long_words
    )


SUBJECT_PIECES = [*"abcXYZ09 []#()-:;,.?!'\"=_/\\<>@", "=?", "  ", "?=", "\t", "word", "[#K7QXM-2PAB9-ZT4HD]"]


@settings(FUZZ, max_examples=max(EXAMPLES, 500))
@given(st.lists(st.sampled_from(SUBJECT_PIECES), max_size=30).map("".join))
def test_a_plain_subject_is_written_as_the_folder_writes_it(text: str) -> None:
    """``subject_field`` writes a short plain ASCII Subject without the stdlib's folder: same bytes."""
    policy = email.policy.SMTP
    try:
        folded = policy.header_factory("Subject", text).fold(policy=policy).encode("ascii")
    except Exception:  # the folder's own failures are subject_field's fallback's business
        return
    if PLAIN_SUBJECT.fullmatch(text) and "=?" not in text and len("Subject: " + text) <= 78:
        assert subject_field(text) == folded


@settings(FUZZ, max_examples=max(EXAMPLES, 300))
@given(ANY_MAIL)
def test_a_hostile_original_is_attached_as_the_email_package_would(raw: bytes) -> None:
    """The shortcut for single-part originals gives the email package's bytes, or stands aside."""
    crlf = LINE_END.sub(b"\r\n", raw)
    shortcut = notice_bytes.single_part_original(crlf)
    if shortcut is not None:
        assert shortcut == notice_bytes.generated_original(crlf)

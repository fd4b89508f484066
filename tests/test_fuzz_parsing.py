"""Property-based fuzzing of what reads mail (issue 20, bad input): the message parser and every reader of
commands in mail (moderators' reply codes, ``-request`` commands, ``-owner`` and ``invite`` lines).

The public readers end in a catch-all (``except Exception``: hostile mail must never stop the worker).
That net would also hide a parser bug, so the tests call the same steps without it: an exception the
net would have swallowed fails here. Settings and strategies: tests/fuzzing.py.
"""

from __future__ import annotations

import email
import email.policy
import re

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from listserv.config import SHIPPED_TEMPLATES
from listserv.mail import own_text
from listserv.mail.message import body_text_of, ensure_message_id, find_message_id, parse_post
from listserv.mail.templates import MailTemplates
from listserv.mail.text import fold, has_control_characters
from listserv.membership import owner_text, request_text
from listserv.membership.guest_text import invite_words, read_invitations
from listserv.moderation import reply_text
from listserv.moderation.vocabulary import standalone_words, vocabulary
from tests.fuzzing import ANY_MAIL, FUZZ, HOSTILE_TEXT, LINE_ENDS

pytestmark = pytest.mark.security

LANGUAGES = ["en", "fr", "es", "ar", "zh", "ru"]
TEMPLATES = MailTemplates((SHIPPED_TEMPLATES,), "UTC")
REPLY_WORDS = vocabulary(TEMPLATES, LANGUAGES)
STANDALONE = standalone_words(TEMPLATES, LANGUAGES)
REQUEST_CATALOGUES = [
    yaml.safe_load((SHIPPED_TEMPLATES / "mail" / lang / "requests.yaml").read_text("utf-8"))
    for lang in LANGUAGES
]
REQUEST_VERBS, PERIOD_WORDS = request_text.vocabulary_from(REQUEST_CATALOGUES)
OWNER_VERBS = owner_text.vocabulary_from(TEMPLATES.catalogue(lang, "owner.yaml") for lang in LANGUAGES)
INVITE_WORDS = invite_words(TEMPLATES.catalogue(lang, "guests.yaml") for lang in LANGUAGES)
CODE = re.compile(r"[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}")
ADDRESS = re.compile(r"[^\s<>@]+@[^\s<>@]+")

# --- messages -------------------------------------------------------------------------------------------


@FUZZ
@given(ANY_MAIL)
@example(b'Content-Type: text/plain; charset="utf\x00-8"\r\n\r\nhello\r\n')  # atheris found it: ValueError
@example(b"Date: Mon, 03 Jun 2024 10:00:00 +0033333333333333333333\r\n\r\n")  # atheris: OverflowError
def test_any_bytes_parse_into_a_post(raw: bytes) -> None:
    post = parse_post(raw)
    assert not has_control_characters(post.sender_name), post.sender_name
    assert not has_control_characters(post.subject), post.subject
    for name, value in post.headers:
        assert "\r" not in value and "\n" not in value, (name, value)
    assert post.message_id == (find_message_id(raw) or "")
    body_text_of(raw)


@FUZZ
@given(ANY_MAIL)
def test_a_message_id_is_one_token_on_one_line(raw: bytes) -> None:
    """The ID is stored, indexed and written into References of notices and digests."""
    stored, message_id = ensure_message_id(raw, "forum.example.org")
    assert len(message_id) <= 250
    assert not re.search(r"\s", message_id), f"white space in {message_id!r}"
    assert stored.endswith(raw)
    assert find_message_id(stored) == message_id


# --- commands in mail ------------------------------------------------------------------------------------

COMMAND_WORDS = sorted(
    {*REPLY_WORDS, *STANDALONE, *OWNER_VERBS, *INVITE_WORDS, "confirm", "accept", "subscribe"}
)
CODES = st.one_of(
    st.from_regex(CODE, fullmatch=True),
    st.from_regex(r"\[#[0-9A-Za-z -]{13,27}\]", fullmatch=True),
    st.text("0123456789ABCDEFGHJKMNPQRSTVWXYZOIL- \t", max_size=20),
)
ARGUMENTS = st.one_of(
    HOSTILE_TEXT,
    CODES,
    st.sampled_from(["ana@example.org", "<a@b.org>", "@", "a@", "x" * 300, "(CL)", "fr", "weekly"]),
)


@st.composite
def command_lines(draw: st.DrawFn) -> str:
    words = [draw(st.sampled_from(COMMAND_WORDS) | HOSTILE_TEXT)]
    words += draw(st.lists(ARGUMENTS, max_size=4))
    prefix = draw(st.sampled_from(["", "> ", ">> ", "  ", "-- ", "On Monday Ana wrote:", "\u202e"]))
    return prefix + draw(st.sampled_from([" ", "\t", ": ", ""])).join(words)


@st.composite
def command_mail(draw: st.DrawFn) -> bytes:
    """A reply or request with command lines, quotes, signatures, in a random charset and encoding."""
    end = draw(LINE_ENDS).decode()
    lines = draw(st.lists(command_lines(), min_size=0, max_size=8))
    charset = draw(st.sampled_from(["utf-8", "iso-8859-1", "gb2312", "koi8-r", "utf-16", "x-bogus"]))
    html = draw(st.booleans())
    text = end.join(lines)
    if html:
        text = "<html><body><p>" + "</p><p>".join(lines) + "</p></body></html>"
    body = (
        text.encode("utf-8", "surrogatepass") if charset in ("x-bogus", "utf-8") else _encode(text, charset)
    )
    subject = draw(st.one_of(command_lines(), HOSTILE_TEXT)).encode("utf-8", "surrogatepass")
    head = [
        b"From: Ana <ana@example.org>",
        b"Subject: " + subject,
        b"Content-Type: text/" + (b"html" if html else b"plain") + b"; charset=" + charset.encode(),
    ]
    return end.encode().join(head) + (end + end).encode() + body


def _encode(text: str, charset: str) -> bytes:
    return text.encode(charset, "replace") if charset != "utf-16" else text.encode("utf-16", "surrogatepass")


COMMAND_MAIL = st.one_of(command_mail(), ANY_MAIL)


def own_blocks_unguarded(raw: bytes) -> list[list[str]]:
    """``own_text.own_blocks`` without its catch-all."""
    text = own_text._body_text(email.message_from_bytes(raw, policy=email.policy.compat32))
    return own_text._own_blocks(text) if text is not None else []


@FUZZ
@given(COMMAND_MAIL)
def test_a_moderators_reply_reads_into_commands(raw: bytes) -> None:
    blocks = own_blocks_unguarded(raw)
    lines = [line for line in blocks[0] if line] if blocks else []
    words = {fold(word): action for word, action in REPLY_WORDS.items()}
    reply_text._decide(lines, words, frozenset(map(fold, STANDALONE)))
    reading = reply_text.read_reply(raw, REPLY_WORDS, STANDALONE)
    for command in reading.commands:
        assert command.action in ("approve", "reject", "discard")
        assert command.code is None or CODE.fullmatch(command.code), command.code
        assert "\n" not in command.reason and "\r" not in command.reason, command.reason


@FUZZ
@given(COMMAND_MAIL)
def test_a_request_reads_into_requests(raw: bytes) -> None:
    words = request_text._compile(REQUEST_VERBS, PERIOD_WORDS)
    reading = request_text._read(request_text._subject(raw), own_text.own_lines(raw), words)
    assert reading.requests, "no command reads as help, never as nothing"
    assert len(reading.unknown) <= 5
    for request in reading.requests:
        assert not has_control_characters(request.argument), request


@FUZZ
@given(COMMAND_MAIL)
def test_owner_and_invite_lines_read_into_commands(raw: bytes) -> None:
    for line in own_blocks_unguarded(raw):
        for written in line:
            command = owner_text.read_line(written, OWNER_VERBS)
            if command is not None:
                assert command.address is None or ADDRESS.fullmatch(command.address), command
                assert not has_control_characters(command.name), command
    for invitation in read_invitations(raw, INVITE_WORDS):
        assert invitation.address is None or ADDRESS.fullmatch(invitation.address), invitation
        assert not has_control_characters(invitation.name), invitation

"""What an erasure needs to know of mail, without touching any store (pure: bytes and text in, out).

- ``pseudonym``: what audit rows keep of an erased person (``store.keys.key_hash``, the site secret).
- ``Fingerprint`` / ``mentions``: does a stored mail (a notice in the outbox, a moderator's reply, a
  bounce) carry the erased message? Yes when its bytes name the Message-ID (an attached original, a
  bounce's returned headers) or a reply code of its held item, or its decoded text — every part,
  attached messages included, quote markers and line wrapping ignored — quotes at least half of the
  runs of ``SHINGLE`` words that begin the message; its subject counts in mail to its sender only.
- ``replace_person``: a member's address and name out of a message's address fields, byte-edited.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from email.header import Header

from listserv.mail.rawmime import CRLF, LINE_END, address_field, field_name, mailboxes, split_entity
from listserv.mail.text import decode_bytes, decode_header
from listserv.store.keys import key_hash

SHINGLE = 8  # words in a row that make a quotation; fewer in a message shorter than that
MIN_SHINGLE = 3  # a message of one or two words is found by its Message-ID only
MIN_SUBJECT = 12  # characters: "Hello" in a notice's subject says nothing about which message
QUOTED_SHINGLES = 60  # runs of words at the start of a message: a notice shows its first 40 lines
QUOTE_MARKS = re.compile(r"(?m)^[ \t]*(?:>[ \t]?)+")
WORD = re.compile(r"\w+", re.UNICODE)
ADDRESS_FIELDS = ("from", "sender", "reply-to", "to", "cc", "resent-from", "resent-sender")
# In place of an erased person's address; their name becomes templates/mail/<lang>/erasure.yaml's.
FORMER_ADDRESS = "former.participant@invalid"  # RFC 2606: .invalid never delivers


def pseudonym(secret: bytes, address: str) -> str:
    """What audit rows say instead of an erased person's address: stable, so that one person's
    actions still read as one person's."""
    return "erased:" + key_hash(secret, "member", address)[:16]


def words(text: str) -> list[str]:
    return WORD.findall(QUOTE_MARKS.sub(" ", text).lower())


def readable_text(raw: bytes) -> str:
    """Every header and every leaf part decoded, attached messages included, in one string."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    chunks: list[str] = []
    defects: list[str] = []
    for part in message.walk():
        chunks += [decode_header(value, defects) for value in part.values()]
        if part.is_multipart() or part.get_content_maintype() == "message":
            continue
        data = part.get_payload(decode=True)
        if isinstance(data, bytes):
            chunks.append(decode_bytes(data, part.get_content_charset()))
    return "\n".join(chunks)


@dataclass(frozen=True)
class Fingerprint:
    """What identifies a message inside other mail. Deleting a stranger's notice is worse than keeping a
    quotation, so the evidence is strong: the Message-ID, a reply code of its held item (notices,
    reminders and moderators' replies carry ``[#CODE]``), or a quotation of at least half of its first
    ``QUOTED_SHINGLES`` runs of words. Its subject counts only in mail to its own sender."""

    message_id: bytes
    codes: tuple[bytes, ...]
    shingles: frozenset[tuple[str, ...]]
    first: frozenset[tuple[str, ...]]  # the shingles of its beginning, what a notice's excerpt shows
    subject: tuple[str, ...]  # its words, () when too short to count

    def _size(self) -> int:
        return len(next(iter(self.shingles))) if self.shingles else 0

    def is_quoted_in(self, text_words: list[str]) -> bool:
        """Any run of its words: enough to *list* a reply as quoting it (``--quotes``)."""
        size = self._size()
        return bool(size) and any(
            tuple(text_words[i : i + size]) in self.shingles for i in range(len(text_words))
        )

    def is_carried_by(self, text_words: list[str]) -> bool:
        """At least half of its beginning's runs of words: enough to *delete* the mail holding them."""
        size = self._size()
        if not size:
            return False
        seen = {tuple(text_words[i : i + size]) for i in range(len(text_words))}
        return len(self.first & seen) * 2 >= len(self.first)

    def subject_in(self, text_words: list[str]) -> bool:
        size = len(self.subject)
        return bool(size) and any(
            tuple(text_words[i : i + size]) == self.subject for i in range(len(text_words))
        )


def fingerprint(raw: bytes, message_id: str, subject_key: str, codes: tuple[str, ...] = ()) -> Fingerprint:
    body = words(_body_text(raw))
    size = min(SHINGLE, len(body))
    runs = [tuple(body[i : i + size]) for i in range(len(body) - size + 1)] if size >= MIN_SHINGLE else []
    subject = tuple(words(subject_key)) if len(subject_key.strip()) >= MIN_SUBJECT else ()
    return Fingerprint(
        message_id.strip().encode("utf-8", "replace"),
        tuple(code.encode("ascii") for code in codes),
        frozenset(runs),
        frozenset(runs[:QUOTED_SHINGLES]),
        subject,
    )


def _body_text(raw: bytes) -> str:
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    chunks = []
    for part in message.walk():
        if part.get_content_maintype() == "text":
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                chunks.append(decode_bytes(data, part.get_content_charset()))
    return "\n".join(chunks)


def mentions(raw: bytes, print_: Fingerprint, to_sender: bool = False) -> bool:
    """Does this stored mail carry the message? ``to_sender``: it is addressed to the message's sender
    (their "held" or "rejected" notice), where its subject alone identifies it."""
    if print_.message_id and print_.message_id in raw:
        return True
    if any(code in raw for code in print_.codes):
        return True
    text_words = words(readable_text(raw))
    return print_.is_carried_by(text_words) or (to_sender and print_.subject_in(text_words))


def names_person(raw: bytes, address: str, names: set[str]) -> bool:
    """Does this mail carry the address (any case, raw or encoded) or one of the names?"""
    if address.lower().encode() in raw.lower():
        return True
    readable = readable_text(raw).lower()
    return address.lower() in readable or any(name.lower() in readable for name in names if name.strip())


def replace_person(raw: bytes, address: str, name: str, shown: str) -> bytes:
    """``address`` (any case) becomes ``shown`` ("former participant (France)") at ``FORMER_ADDRESS``
    in the message's address fields, and ``name`` becomes ``shown`` anywhere in its header block; the
    other fields and the body keep their bytes."""
    wanted = address.lower()
    top = split_entity(LINE_END.sub(CRLF, raw))
    fields = []
    for field in top.fields:
        key = field_name(field)
        if key in ADDRESS_FIELDS:
            pairs = mailboxes(field.split(b":", 1)[1])
            if any(addr.lower() == wanted for _, addr in pairs):
                field = address_field(
                    field.split(b":", 1)[0].decode("latin-1"),
                    [(shown, FORMER_ADDRESS) if pair[1].lower() == wanted else pair for pair in pairs],
                )
        fields.append(field)
    edited = b"".join(fields) + CRLF + top.body
    if not name.strip():
        return edited
    # A name left in another field (Disposition-Notification-To, an X- header); the body is the
    # person's words to others, not an address field: it is not edited.
    head, separator, body = edited.partition(CRLF + CRLF)
    written = shown.encode() if shown.isascii() else Header(shown, "utf-8").encode().encode()
    return head.replace(name.encode(), written) + separator + body

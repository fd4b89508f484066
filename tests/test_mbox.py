"""``mail/mbox.py``: the mailbox flavours met when moving in, read without a database."""

from __future__ import annotations

import gzip
import io
from datetime import UTC, datetime

from listserv.mail import mbox

TAKEOUT = (
    b"From 1785432170123456789@xxx Mon Jan 05 10:00:00 +0000 2015\r\n"
    b"X-GM-THRID: 1785432170123456789\r\n"
    b"X-Gmail-Labels: Groups\r\n"
    b"From: Ana <ana@example.org>\r\n"
    b"Subject: Hello\r\n"
    b"\r\n"
    b"From the start.\r\n"
    b"\r\n"
    b"From 1785432170123456790@xxx Tue Jan 06 11:30:00 +0000 2015\r\n"
    b"From: Bo <bo@example.org>\r\n"
    b"Subject: Re: Hello\r\n"
    b"\r\n"
    b">From here on, and\r\n"
    b">>From there.\r\n"
)


def test_takeout_crlf_and_separators_with_an_offset() -> None:
    messages = list(mbox.read_mbox(io.BytesIO(TAKEOUT)))
    assert [m.position for m in messages] == [1, 2]
    assert messages[0].raw.endswith(b"\r\n\r\nFrom the start.\r\n")  # a body line, not a separator
    assert messages[1].raw.endswith(b"\r\nFrom here on, and\r\n>From there.\r\n")  # mboxrd: one level off
    assert mbox.envelope_date(messages[1].envelope) == datetime(2015, 1, 6, 11, 30, tzinfo=UTC)


def test_gzip_is_recognised_by_its_bytes_not_its_name() -> None:
    packed = io.BytesIO(gzip.compress(TAKEOUT))
    assert len(list(mbox.read_mbox(mbox.decompressed(packed)))) == 2
    assert len(list(mbox.read_mbox(mbox.decompressed(io.BytesIO(TAKEOUT))))) == 2


def test_pipermail_addresses_and_dates() -> None:
    raw = b"From: jane at example.org (Jane Roe)\nTo: list at example.org\n\nwrite to me at home\n"
    assert mbox.unhide_addresses(raw) == (
        b"From: jane@example.org (Jane Roe)\nTo: list at example.org\n\nwrite to me at home\n"
    )
    assert mbox.envelope_date(b"From jane at example.org  Tue Mar  3 11:00:00 2009").day == 3  # type: ignore[union-attr]
    received = b"Received: from a by b;\n\tWed, 4 Mar 2009 12:00:00 +0100\nDate: soon\n\nx"
    assert mbox.received_date(received) == datetime(2009, 3, 4, 11, 0, tzinfo=UTC)
    assert mbox.received_date(b"Subject: none\n\nx") is None


def test_a_message_without_id_gets_the_same_one_from_the_same_bytes() -> None:
    first, again = mbox.synthetic_message_id(b"x"), mbox.synthetic_message_id(b"x")
    assert first == again != mbox.synthetic_message_id(b"y")
    assert mbox.with_message_id(b"Subject: a\r\n\r\nb", first).startswith(f"Message-ID: {first}\r\n".encode())

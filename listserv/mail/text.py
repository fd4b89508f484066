"""Decoding that never raises: charsets, RFC 2047 encoded words, payloads, filenames, dates, RFC 3676
flowed text, and the accent- and case-folding every reader of words shares.

Mail lies about its charsets, mangles its headers and ships payloads no decoder accepts; every reader
of mail (the parser, the archive's reader, reply and request reading) needs the same tolerant answers,
so they live here once. Pure: text and ``compat32`` messages in, text out; what is wrong is appended
to the caller's ``defects`` list instead of raised.
"""

from __future__ import annotations

import codecs
import email.header
import re
import unicodedata
from datetime import UTC, datetime
from email.errors import MessageError
from email.message import Message
from email.utils import parsedate_to_datetime

LATIN_1_NAMES = ("iso-8859-1", "latin-1", "latin1")
# Labels mail clients write for what is really the label's superset (as browsers read them, WHATWG
# Encoding): "gb2312" mail is GBK more often than not, and a strict gb2312 decoder fails on it.
SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "euc-cn": "gb18030",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "shift_jis": "cp932",
    "x-sjis": "cp932",
}

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
WHITE_SPACE = str.maketrans("\t\n\r\x0b\x0c", "     ")


def decode_bytes(
    data: bytes, charset: str | None, *, windows_1252: bool = False, keep_nul: bool = False
) -> str:
    """Declared charset, else UTF-8, else Latin-1 (which cannot fail).

    ``windows_1252``: a declared ISO-8859-1 is read as its superset windows-1252 (clients that say
    Latin-1 send curly quotes and euro signs in 0x80-0x9F). ``keep_nul``: NUL characters stay, for a
    caller that removes them itself later; by default they go, since the text may be stored
    (PostgreSQL refuses NUL in text)."""
    if windows_1252 and charset in LATIN_1_NAMES:
        charset = "windows-1252"
    charset = SUPERSETS.get((charset or "").lower(), charset)
    for candidate in (charset, "utf-8"):
        if not candidate:
            continue
        try:
            codecs.lookup(candidate)
            text = data.decode(candidate)
        except (LookupError, ValueError):  # ValueError: a NUL in the label ("embedded null character")
            continue
        return text if keep_nul else text.replace("\x00", "")
    text = data.decode("latin-1")
    return text if keep_nul else text.replace("\x00", "")


def decode_header(value: object, defects: list[str]) -> str:
    """An RFC 2047 header value → text on one line; raw 8-bit bytes are read as UTF-8, else Latin-1."""
    if not isinstance(value, str):
        value = str(value)
    if any("\udc80" <= char <= "\udcff" for char in value):
        # compat32 smuggles undecodable 8-bit bytes as surrogates: recover them. Other non-ASCII
        # (U+FFFD, say) may sit beside them, so encode as UTF-8, not ASCII.
        value = decode_bytes(value.encode("utf-8", "surrogateescape"), "utf-8")
    try:
        chunks = email.header.decode_header(value)
    except (LookupError, UnicodeError, ValueError, AssertionError, MessageError):
        defects.append("UndecodableHeader")
        return clean_text(value)
    # Each chunk decoded tolerantly (adjacent encoded words of one charset arrive joined, so a
    # character split across two words is whole again); a wrong label falls back, never raises.
    text = "".join(
        decode_bytes(chunk, charset or "ascii") if isinstance(chunk, bytes) else chunk
        for chunk, charset in chunks
    )
    return clean_text(text)


def clean_text(text: str) -> str:
    """Text safe to put on one header line: line breaks and tabs become spaces, other control
    characters (C0, DEL, C1) go, lone surrogates become U+FFFD, runs of white space one space."""
    text = text.encode("utf-8", "replace").decode("utf-8") if has_surrogates(text) else text
    return " ".join(CONTROL.sub("", text.translate(WHITE_SPACE)).split())


def has_control_characters(text: str) -> bool:
    """True when ``text`` holds CR, LF, NUL or another control character (what input must refuse)."""
    return CONTROL.search(text) is not None


def has_surrogates(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text)


def parse_date(value: str | None, defects: list[str]) -> datetime | None:
    """A Date header → an aware UTC datetime (a zoneless one is taken as UTC); None when absent or bad."""
    if not value:
        defects.append("MissingDate")
        return None
    try:  # OverflowError: an offset of "+0033333333" days, or year 1 moved to UTC (found by atheris)
        parsed = parsedate_to_datetime(value)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):
        defects.append("InvalidDate")
        return None


def payload(part: Message, defects: list[str]) -> bytes:
    """A leaf's content, transfer-decoded; as written when its transfer encoding cannot be undone."""
    try:
        data = part.get_payload(decode=True)
    except (ValueError, TypeError, LookupError, AssertionError):
        defects.append("UndecodablePayload")
        data = None
    if isinstance(data, bytes):
        return data
    raw = part.get_payload()
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""


def filename(part: Message, defects: list[str]) -> str:
    """A part's filename, decoded, its last path element only; '' when it has none."""
    try:
        name = part.get_filename()
    except (LookupError, UnicodeError, ValueError, TypeError):
        defects.append("UndecodableFilename")
        return ""
    if name and "\ufffd" in name:
        name = _raw_filename(part) or name
    if not name:
        return ""
    # Only the last path element: a filename is never a path (``../../etc/passwd``).
    return decode_header(name, defects).replace("\\", "/").rsplit("/", 1)[-1]


def _raw_filename(part: Message) -> str | None:
    """compat32 hands over a raw 8-bit name ("café.pdf" unencoded, common) with U+FFFD in place of its
    bytes: read it again from the raw headers, as UTF-8, else Latin-1."""
    fixed = Message()
    try:
        for key, value in part.raw_items():
            if key.lower() in ("content-type", "content-disposition"):
                fixed[key] = decode_bytes(str(value).encode("utf-8", "surrogateescape"), "utf-8")
        return fixed.get_filename()
    except (LookupError, UnicodeError, ValueError, TypeError):
        return None


def fold(text: str) -> str:
    """Case- and accent-insensitive form: 'Sí' and 'si', 'APPROUVER' and 'approuver', 'Café' and 'cafe'
    match."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if not unicodedata.combining(char)).casefold()


def unflow(lines: list[str], delsp: bool, *, quote_depth: bool = True) -> list[str]:
    """RFC 3676: join soft-broken lines (those ending in a space) into one and undo space-stuffing;
    with ``delsp`` (DelSp=yes) the soft break's space goes too. The signature separator "-- " never flows.

    ``quote_depth`` (display): quoted lines flow too, within their depth, and come out as ">> text".
    Without it (reading the sender's own lines): a line that starts with ">" once unstuffed is left as
    it is and ends the paragraph before it, because quotes are cut away next and own text must never be
    joined into one."""
    out: list[str] = []
    paragraph, paragraph_depth = "", -1  # -1: no paragraph open
    for raw in lines:
        depth = len(raw) - len(raw.lstrip(">")) if quote_depth else 0
        line = raw[depth + 1 :] if raw[depth : depth + 1] == " " else raw[depth:]  # undo space-stuffing
        kept_whole = not quote_depth and line[:1] == ">"
        flowed = line.endswith(" ") and line != "-- " and not kept_whole
        if paragraph_depth != -1 and (paragraph_depth != depth or kept_whole):
            out.append(_quoted(paragraph, paragraph_depth))
            paragraph = ""
        paragraph, paragraph_depth = paragraph + (line[:-1] if flowed and delsp else line), depth
        if not flowed:
            out.append(_quoted(paragraph, depth))
            paragraph, paragraph_depth = "", -1
    return out if paragraph_depth == -1 else [*out, _quoted(paragraph, paragraph_depth)]


def _quoted(line: str, depth: int) -> str:
    return f"{'>' * depth} {line}" if depth else line

"""What a reader sees of a post, derived once when it is archived and stored beside the raw bytes.

Parsing MIME again on every page view was most of the CPU of a thread page and of a search (``reading``
and ``parse_post`` of every post shown). ``derive`` does it once: the sender, To and Cc; the text body as
blocks of lines (the quoted-part and signature boundaries) without blank lines at their ends; the
sanitised HTML, with inline images pointing at this message's parts; the attachment list; and the
search snippet's source text. ``post.display`` holds it as JSON, ``post.search_text`` the snippet source.
Both are rebuilt by ``listserv reindex`` and emptied or rebuilt by erasure with the raw bytes.

``view`` turns the stored JSON back into ``reading.MessageView`` — only links are found again (cheap,
and the stored text stays plain). Pure: no database.
"""

from __future__ import annotations

import json
from typing import Any

from listserv.archive.index_text import body_text
from listserv.archive.plaintext import Block, linkify
from listserv.archive.reading import Address, AttachmentInfo, Headers, MessageView, read_message
from listserv.archive.urls import attachment_path
from listserv.mail.message import Post as ParsedPost
from listserv.mail.message import body_text_of

VERSION = 1  # bump when what ``derive`` stores changes: older rows are derived again on view


def derive(raw: bytes, list_name: str, message_id: str) -> str:
    """The JSON of what the message and thread pages show of ``raw``."""

    def url(index: int) -> str:
        return attachment_path(list_name, message_id, index)

    shown = read_message(raw, attachment_url=url)  # as a page shows it by default
    html_only = shown.html is not None
    full = shown if html_only or not shown.has_html else read_message(raw, show_html=True, attachment_url=url)
    stored: dict[str, Any] = {
        "v": VERSION,
        "from": _pair(shown.headers.sender) if shown.headers.sender else None,
        "to": [_pair(address) for address in shown.headers.to],
        "cc": [_pair(address) for address in shown.headers.cc],
        "blocks": [[block.kind, lines] for block in shown.body if (lines := _tidy(block))],
        # Mail with a text part shows it, and its HTML only when asked; HTML-only mail shows the HTML.
        "html_only": html_only,
        "html": full.html,
        "blocked": full.blocked_images,
        "attachments": [[a.index, a.filename, a.content_type, a.size] for a in shown.attachments],
    }
    return json.dumps(stored, ensure_ascii=False, separators=(",", ":"))


def search_source(raw: bytes, parsed: ParsedPost | None = None) -> str:
    """The text a search hit's snippet is cut from: the body without quotes or tags."""
    return body_text(parsed.text if parsed is not None else body_text_of(raw))


def view(stored: str, show_html: bool = False) -> MessageView:
    data = json.loads(stored)
    sender = data["from"]
    html = data["html"] if data["html"] is not None and (show_html or data["html_only"]) else None
    return MessageView(
        headers=Headers(
            Address(*sender) if sender else None,
            tuple(Address(*pair) for pair in data["to"]),
            tuple(Address(*pair) for pair in data["cc"]),
            None,
            "",
            None,
            None,
            None,
        ),
        body=tuple(Block(kind, tuple(linkify(line) for line in lines)) for kind, lines in data["blocks"]),
        html=html,
        has_html=data["html"] is not None,
        blocked_images=data["blocked"] if html is not None else 0,
        text="",
        attachments=tuple(AttachmentInfo(*item) for item in data["attachments"]),
        defects=(),
    )


def is_current(stored: str | None) -> bool:
    return stored is not None and stored.startswith(f'{{"v":{VERSION},')


def _pair(address: Address) -> list[str]:
    return [address.name, address.address]


def _tidy(block: Block) -> list[str]:
    """The block's lines as text, without blank lines at either end (they become the space between
    paragraphs); no lines left: the block goes."""
    lines = ["".join(text for text, _ in line) for line in block.lines]
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    return lines

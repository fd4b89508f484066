"""A message's exact bytes and its attachments, served as downloads that cannot run in our origin:
``nosniff``, ``Content-Security-Policy: sandbox``, and attachments always ``Content-Disposition:
attachment`` — an HTML or SVG file sent to a list must never open as a page of this site."""

from __future__ import annotations

from urllib.parse import quote

from starlette.responses import Response

from listserv.archive import reading
from listserv.web.app import Ctx, Page, Problem
from listserv.web.archive import archived_post, readable_list, readable_post

DOWNLOAD_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}


def raw_message(ctx: Ctx) -> Response:
    """The exact archived bytes: readable in the browser when they are UTF-8, else a download."""
    post = archived_post(ctx, readable_list(ctx))
    try:
        post.raw.decode("utf-8")
        headers = {"Content-Type": "text/plain; charset=utf-8"}
    except UnicodeDecodeError:
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Disposition": 'attachment; filename="message.eml"',
        }
    return Response(post.raw, headers={**headers, **DOWNLOAD_HEADERS})


def attachment_download(ctx: Ctx) -> Response:
    """An attachment is part of the discussion, so a guest of that thread may open it too (the raw
    message stays the list's: its headers carry every participant's address, which guests never see)."""
    _, post = readable_post(ctx)
    found = reading.attachment(post.raw, int(ctx.param("index")))
    if found is None:
        raise Problem(404, "no_attachment")
    content_type = found.content_type
    if found.charset and content_type.startswith("text/"):
        content_type += f"; charset={found.charset}"
    headers = {
        "Content-Type": content_type,
        "Content-Disposition": content_disposition(found.filename),
        **DOWNLOAD_HEADERS,
    }
    return Response(found.data, headers=headers)


def content_disposition(filename: str) -> str:
    """Always ``attachment`` (an HTML or SVG file must not open in our origin); RFC 6266 ``filename*``
    carries the real name, ``filename`` an ASCII stand-in for old clients."""
    fallback = "".join(
        ch if ch.isascii() and ch.isprintable() and ch not in '"\\;%' else "_" for ch in filename
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


PAGES = [
    Page("/lists/{list}/raw/{message_id:path}", raw_message, name="raw"),
    Page("/lists/{list}/attachment/{index:int}/{message_id:path}", attachment_download, name="attachment"),
]

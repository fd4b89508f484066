"""HTML mail for display, sanitised with nh3 (ammonia): no script, no event handlers, no remote
resources loaded when the page opens (a remote image is a read receipt), links that cannot reach back
into the page that opened them."""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable
from functools import cache
from types import ModuleType
from urllib.parse import unquote

BLOCK_END = re.compile(r"<(?:br|/p|/div|/h[1-6]|/li|/tr|/blockquote)\b[^>]*>", re.IGNORECASE)
LINK_REL = "nofollow noopener noreferrer"
DROPPED_CONTENT = {"script", "style", "title"}

AttachmentUrl = Callable[[int], str]


@cache
def _nh3() -> ModuleType:
    """nh3, imported with the first HTML mail archived or shown: its library is ~2.5 MB of an idle
    serve's memory (issue 18), and most mail is plain text."""
    import nh3

    return nh3


@cache
def _allowed() -> tuple[set[str], dict[str, set[str]]]:
    """The tags and attributes kept: nh3's defaults less image maps, and no style attribute."""
    nh3 = _nh3()
    attributes = {
        **{tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()},
        # No style: the pages' CSP (style-src 'self') would refuse it anyway, and every refusal is a
        # console report; emphasis still shows through the tags (b, i, u, em, strong).
        "*": {"title", "lang", "dir"},
    }
    return nh3.ALLOWED_TAGS - {"area", "map"}, attributes


def sanitise_html(
    source: str, content_ids: dict[str, int], attachment_url: AttachmentUrl | None, remote_src: str | None
) -> tuple[str, int]:
    trusted: set[str] = set()  # URLs we produced ourselves: the only relative URLs allowed through
    blocked = 0

    def keep(tag: str, name: str, value: str) -> str | None:
        # nh3 checks schemes *before* this filter and not after: what we return here is final.
        nonlocal blocked
        if name == "src" and tag != "img":  # nh3 also asks about tags it is about to drop (iframe)
            return None
        if name == "src":
            if value.strip().lower().startswith("cid:"):
                index = content_ids.get(unquote(value.strip()[4:]).strip("<>").lower())
                url = attachment_url(index) if index is not None and attachment_url else None
            else:
                blocked += 1  # any other src makes the browser fetch something when the page opens
                url = remote_src
            if url:
                trusted.add(url)
            return url
        if name in ("href", "cite"):
            return value if value.strip().lower().startswith(("http:", "https:", "mailto:")) else None
        return value

    tags, attributes = _allowed()
    cleaned = _nh3().clean(
        source,
        tags=tags,
        clean_content_tags=DROPPED_CONTENT,
        attributes=attributes,
        attribute_filter=keep,
        link_rel=LINK_REL,
        url_schemes={"http", "https", "mailto", "cid"},
        url_relative=lambda url: url if url in trusted else None,
    )
    return cleaned, blocked


def html_text(source: str) -> str:
    stripped = _nh3().clean(BLOCK_END.sub("\n", source), tags=set(), clean_content_tags=DROPPED_CONTENT)
    lines = (" ".join(line.split()) for line in html_lib.unescape(stripped).splitlines())
    return "\n".join(line for line in lines if line)

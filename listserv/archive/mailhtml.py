"""HTML mail for display, sanitised with nh3 (ammonia): no script, no event handlers, no remote
resources loaded when the page opens (a remote image is a read receipt), links that cannot reach back
into the page that opened them."""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable
from urllib.parse import unquote

import nh3

BLOCK_END = re.compile(r"<(?:br|/p|/div|/h[1-6]|/li|/tr|/blockquote)\b[^>]*>", re.IGNORECASE)
HTML_TAGS = nh3.ALLOWED_TAGS - {"area", "map"}
HTML_ATTRIBUTES = {
    **{tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()},
    "*": {"title", "lang", "dir", "style"},
}
# Properties that cannot fetch anything (no url() value is valid for them) nor move content over the page.
STYLE_PROPERTIES = {"color", "background-color", "font-weight", "font-style", "text-decoration", "text-align"}
LINK_REL = "nofollow noopener noreferrer"
DROPPED_CONTENT = {"script", "style", "title"}

AttachmentUrl = Callable[[int], str]


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

    cleaned = nh3.clean(
        source,
        tags=HTML_TAGS,
        clean_content_tags=DROPPED_CONTENT,
        attributes=HTML_ATTRIBUTES,
        attribute_filter=keep,
        link_rel=LINK_REL,
        url_schemes={"http", "https", "mailto", "cid"},
        url_relative=lambda url: url if url in trusted else None,
        filter_style_properties=STYLE_PROPERTIES,
    )
    return cleaned, blocked


def html_text(source: str) -> str:
    stripped = nh3.clean(BLOCK_END.sub("\n", source), tags=set(), clean_content_tags=DROPPED_CONTENT)
    lines = (" ".join(line.split()) for line in html_lib.unescape(stripped).splitlines())
    return "\n".join(line for line in lines if line)

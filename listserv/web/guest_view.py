"""What a guest of one discussion reads differs in one way: members' names, never their addresses —
in the headers (the templates' ``names_only``) and in the text (quoted attributions, signatures, mailto
links), here. Pure: blocks and sanitised HTML in, the same without addresses out."""

from __future__ import annotations

import re
from dataclasses import replace

from markupsafe import Markup

from listserv.archive import reading

ADDRESS = re.compile(r"[^\s<>()\[\]{},;:\"'&]+@[^\s<>()\[\]{},;:\"'&]+")
HIDDEN = "[…]"


def hide_addresses(
    blocks: tuple[reading.Block, ...], html: Markup | None
) -> tuple[tuple[reading.Block, ...], Markup | None]:
    """Replacing text in nh3's output keeps it safe: what the pattern matches holds no markup."""
    hidden = tuple(
        replace(block, lines=tuple(tuple(_hide(text, url) for text, url in line) for line in block.lines))
        for block in blocks
    )
    return hidden, (Markup(ADDRESS.sub(HIDDEN, str(html))) if html is not None else None)


def _hide(text: str, url: str | None) -> tuple[str, str | None]:
    named = url is not None and (url.lower().startswith("mailto:") or ADDRESS.search(url) is not None)
    return ADDRESS.sub(HIDDEN, text), None if named else url

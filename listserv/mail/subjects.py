"""Subjects as people and lists write them: reply and forward markers ("Re:", "AW:", "Fwd[2]:") and the
list's prefix ("[TA-EN]"), added once, stripped for threading and for digests.

Threading, decoration and digests must agree on what a subject "really" is, or a reply would land in
a new thread or get its prefix twice; so the one reading lives here. Pure string work.
"""

from __future__ import annotations

import re

MARKER = re.compile(r"(re|fwd?|aw|wg|tr|rv|res|sv|antw)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*", re.IGNORECASE)
MAX_KEY_CHARS = 300  # the archive's subject_key column


def strip_prefix(subject: str, prefix: str) -> str:
    """The subject without reply markers and list prefixes: 'Re: [TA-EN] Re: [TA-EN] x' → 'x'."""
    return _split_subject(subject, prefix)[1]


def prefix_subject(subject: str, prefix: str) -> str:
    """'x' → '[TA-EN] x'; 'Re: [TA-EN] Re: x' → 'Re: [TA-EN] x'; the first marker is kept as written."""
    marker, rest = _split_subject(subject, prefix)
    return " ".join(part for part in (marker, prefix, rest) if part)


def subject_key(subject: str, prefix: str) -> str:
    """What a reply without In-Reply-To or References is threaded by: the bare subject, lowercased."""
    return " ".join(strip_prefix(subject, prefix).lower().split())[:MAX_KEY_CHARS]


def _split_subject(subject: str, prefix: str) -> tuple[str, str]:
    marker, rest = "", " ".join(subject.split())
    while True:
        if prefix and rest.lower().startswith(prefix.lower()):
            rest = rest[len(prefix) :].lstrip()
        elif match := MARKER.match(rest):
            marker, rest = marker or match.group(1) + ":", rest[match.end() :]
        else:
            return marker, rest

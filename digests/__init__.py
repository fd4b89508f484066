"""Digests: select → build (pure) → enqueue.

``send_digests`` (``send.py``) is what the scheduler calls, inside one transaction; its module docstring
states the rules (period keys, windows, recipients, idempotence). ``build_mime_digest`` and
``build_plain_digest`` (``build.py``) turn a ``DigestIssue`` (``issue.py``: plain data) into a message,
with no database and no clock, and are tested alone.
"""

from digests.build import build_mime_digest, build_plain_digest
from digests.issue import DigestIssue, DigestPost
from digests.send import send_digests

__all__ = ["DigestIssue", "DigestPost", "build_mime_digest", "build_plain_digest", "send_digests"]

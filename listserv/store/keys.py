"""The site secret (reply codes now; signed cookies and links with the web archive).

Kept in a file outside the database, so that a copy of the database alone cannot produce reply
codes. Created on first use with owner-only permissions; several ``serve`` processes on one database
must share the same file.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

from itsdangerous import URLSafeTimedSerializer

SECRET_BYTES = 32
PASSWORD_LINK_SALT = "password-reset"


def load_or_create_secret(path: Path) -> bytes:
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(SECRET_BYTES)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(secret.hex())
    return secret


def key_hash(secret: bytes, kind: str, value: str) -> str:
    """An erasure tombstone's key: HMAC-SHA256 of a Message-ID (``kind`` message, without its angle
    brackets, case kept) or an address (``kind`` member, lowercased). It proves that *this* id was
    erased to whoever holds the id, and tells nothing to whoever holds only the database."""
    wanted = value.strip().strip("<>") if kind == "message" else value.strip().lower()
    return hmac.new(secret, f"{kind}:{wanted}".encode(), hashlib.sha256).hexdigest()


def password_fingerprint(password_hash: str | None) -> str:
    """Ties a session and a password link to the password they were made with: changing the password
    ends other sessions and spends every link."""
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:16]


def password_link_token(secret: bytes, member_id: int, password_hash: str | None, valid: timedelta) -> str:
    """A signed, single-use link to set a password: a reset (hours) or a guest's invitation (days). The
    validity is signed with the rest, so nobody can lengthen it."""
    hours = max(1, int(valid.total_seconds() // 3600))
    data = {"m": member_id, "f": password_fingerprint(password_hash), "h": hours}
    return password_links(secret).dumps(data)


def password_links(secret: bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=PASSWORD_LINK_SALT)


def link_hours(data: Any, default: int) -> int:
    """The validity a password link carries (links made before it carried one: ``default``)."""
    hours = data.get("h") if isinstance(data, dict) else None
    return hours if isinstance(hours, int) and hours > 0 else default

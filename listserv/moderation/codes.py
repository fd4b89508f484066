"""Reply codes: minted, hashed, found again.

A reply code is 75 bits in Crockford base32 (``K7QXM-2PAB9-ZT4HD``: no I, L, O or U, so it reads
aloud and survives retyping), derived as HMAC(site secret, random nonce): the database keeps the nonce
and the code's SHA-256, never the code, so a leaked database decides nothing, yet an escalation can
send the chief moderators the very code the list's moderators have.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.moderation.reply_text import normalise_code
from listserv.store.models import Held

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@dataclass(frozen=True)
class MintedCode:
    code: str  # sent to the moderators, never stored
    nonce: str  # stored: derives the code again for reminders and escalations
    code_hash: str  # stored: finds the held row from a reply


def derive_code(secret: bytes, nonce: str) -> str:
    number = int.from_bytes(hmac.new(secret, nonce.encode("ascii"), hashlib.sha256).digest()[:10], "big")
    symbols = "".join(CROCKFORD[(number >> (5 * i)) & 31] for i in range(15))
    return f"{symbols[:5]}-{symbols[5:10]}-{symbols[10:]}"


def hash_code(code: str) -> str:
    return hashlib.sha256(code.encode("ascii")).hexdigest()


def mint_code(secret: bytes) -> MintedCode:
    nonce = secrets.token_hex(16)
    code = derive_code(secret, nonce)
    return MintedCode(code, nonce, hash_code(code))


def held_code(minted: MintedCode, now: datetime, ttl_days: int) -> dict[str, object]:
    """The columns every held item stores about its code: hash, nonce, when it was held and expires."""
    return {
        "code_hash": minted.code_hash,
        "code_nonce": minted.nonce,
        "held_at": now,
        "expires_at": now + timedelta(days=ttl_days),
    }


def find_held(session: Session, code_or_id: str) -> Held | None:
    """A held post by its reply code (any spelling) or, for operators, its number."""
    code = normalise_code(code_or_id)
    if code is not None:
        return session.scalars(select(Held).where(Held.code_hash == hash_code(code))).first()
    if code_or_id.strip().lstrip("#").isdigit():
        return session.get(Held, int(code_or_id.strip().lstrip("#")))
    return None

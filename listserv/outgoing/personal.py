"""Personal copies: one signed token per member and list, put into a copy built once.

The token rides in three places of a personal copy: the RFC 8058 ``List-Unsubscribe`` URL, the footer's
unsubscribe link (``/u/TOKEN``) and the VERP envelope (``ta-en-bounces+TOKEN@``). It is 32 characters
of lowercase base32 (an address's local part may lose its case on the way back): the member's id, the
list's id and an HMAC-SHA256 of both under the member key (``data_dir/member-key``, not the site
secret: rotating the secret that signs web sessions must not kill the links in mail already sent).

The decorated copy is built once per post with ``PLACEHOLDER`` where the token goes; per recipient the
bytes are copied with the token substituted — no parse, no re-encoding. Both are 32 ASCII letters and
digits, so a line keeps its length and no transfer encoding is disturbed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from dataclasses import dataclass, field

from listserv.config import DeliveryConfig

TOKEN_LENGTH = 32
# Characters outside base32 (0, 1, 8, 9) so that it can never be a real token.
PLACEHOLDER = b"0listserv1member8token9here01890"
SHADOW = b"1listserv0member9token8here10981"  # a second stand-in: proves substitution is exact
_IDS = struct.Struct(">IH")  # member id, list id
_SIGNATURE_BYTES = 20 - _IDS.size  # 20 bytes → 32 base32 characters, no padding


@dataclass(frozen=True)
class Recipient:
    """A member of a list as the token names them."""

    member_id: int
    list_id: int


MADE_KEPT = 200_000  # tokens kept made: ~20 MB at most; a fan-out asks for the same members' again


@dataclass(eq=False)
class MemberTokens:
    key: bytes
    _made: dict[tuple[int, int], str] = field(default_factory=dict, repr=False)

    def make(self, member_id: int, list_id: int) -> str:
        """The member's token for the list. Kept once made: an HMAC and Python's base32 cost ~6 µs, once
        per recipient of every personal fan-out otherwise (bench/fanout.py (b))."""
        token = self._made.get((member_id, list_id))
        if token is None:
            if len(self._made) >= MADE_KEPT:
                self._made.clear()
            ids = _IDS.pack(member_id, list_id)
            token = base64.b32encode(ids + self._sign(ids)).decode("ascii").lower()
            self._made[(member_id, list_id)] = token
        return token

    def read(self, token: str) -> Recipient | None:
        """Whom the token names, or None when it is not one of ours (edited, truncated, forged)."""
        if len(token) != TOKEN_LENGTH:
            return None
        try:
            data = base64.b32decode(token.upper())
        except ValueError:
            return None
        ids, signature = data[: _IDS.size], data[_IDS.size :]
        if not hmac.compare_digest(signature, self._sign(ids)):
            return None
        member_id, list_id = _IDS.unpack(ids)
        return Recipient(member_id, list_id)

    def _sign(self, ids: bytes) -> bytes:
        return hmac.new(self.key, b"member-token:" + ids, hashlib.sha256).digest()[:_SIGNATURE_BYTES]


def personal_copy(raw: bytes, token: str) -> bytes:
    return raw.replace(PLACEHOLDER, token.encode("ascii"))


def verp(bounces: str, token: str) -> str:
    """``ta-en-bounces@forum.example.org`` → ``ta-en-bounces+TOKEN@forum.example.org``."""
    local, _, domain = bounces.rpartition("@")
    return f"{local}+{token}@{domain}"


def one_click_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/u/{token}"


def offers_one_click(delivery: DeliveryConfig, base_url: str) -> bool:
    """Whether personal copies carry the RFC 8058 header (it requires https; ``always`` for tests)."""
    if delivery.personalize == "off" or delivery.one_click == "off":
        return False
    return delivery.one_click == "always" or base_url.startswith("https://")

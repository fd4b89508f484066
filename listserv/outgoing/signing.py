"""DKIM signatures (RFC 6376) and ARC seals (RFC 8617) on every message as it leaves, with dkimpy.

Signing happens in ``transport.py``, the one door both the outbox (notices) and the fan-out (posts,
prompts, digests) go through, so nothing leaves unsigned and the signed bytes are exactly the bytes
sent. A list copy goes out in batches of the same bytes: its signature is computed once and reused
(dkimpy's RSA is pure Python: ~14 ms a signature here, ~25 more for an ARC set).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
from pathlib import Path

from listserv.config import DkimConfig

log = logging.getLogger(__name__)
KEY_BITS = 2048
# Headers signed: dkimpy's defaults plus the list headers we add (so they cannot be altered on the way).
LIST_HEADERS = (b"list-id", b"list-post", b"list-unsubscribe", b"list-help", b"list-owner", b"list-archive")
CACHED = 64  # header blocks kept for reuse, keyed by the message's digest: a few KB, never the message


class SigningSetupError(Exception):
    """The key file cannot be used."""


class Signer:
    def __init__(self, config: DkimConfig, arc: bool, authserv_id: str) -> None:
        self._config = config
        self._arc = arc
        self._authserv_id = authserv_id  # ours: the name in the Authentication-Results the seal records
        self._key = _read_key(config.key_file)
        self._selector = config.selector.encode("ascii")
        self._domain = config.domain.encode("ascii")
        self._cache: OrderedDict[bytes, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def sign(self, raw: bytes) -> bytes:
        """``raw`` with a DKIM-Signature (and an ARC set when it is a list copy in its author's name)."""
        raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # dkimpy canonicalises CRLF lines
        digest = hashlib.sha256(raw).digest()
        with self._lock:
            added = self._cache.get(digest)
        if added is None:
            added = self._header_fields(raw)
            with self._lock:
                self._cache[digest] = added
                while len(self._cache) > CACHED:
                    self._cache.popitem(last=False)
        return added + raw

    def _header_fields(self, raw: bytes) -> bytes:
        """The fields to put on top of ``raw``: DKIM-Signature, and for a sealed copy the ARC set."""
        import dkim  # late: serve imports it with the first mail it signs, not at start (lazy imports)

        include = tuple(dkim.DKIM(raw).default_sign_headers()) + LIST_HEADERS
        added = dkim.sign(raw, self._selector, self._domain, self._key, include_headers=list(include))
        if self._arc and is_relayed_post(raw, self._config.domain):
            added = self._seal(added + raw) + added
        return added

    def _seal(self, signed: bytes) -> bytes:
        """ARC set i=1 over the copy as sent. Authentication-Results from the MTA in front (or ``none``:
        we verified nothing ourselves) become the seal's ARC-Authentication-Results."""
        srv_id = self._authserv_id.encode("ascii")
        results = b""
        if not _has_results_from(signed, srv_id):
            results = b"Authentication-Results: " + srv_id + b"; none\r\n"
        import dkim  # late, as above

        headers = dkim.arc_sign(results + signed, self._selector, self._domain, self._key, srv_id)
        if not headers:
            log.warning("ARC: no seal added (dkimpy found no usable chain)")
            return results
        return b"".join(headers) + results


def is_relayed_post(raw: bytes, own_domain: str) -> bool:
    """A list copy (List-Id) whose From is not ours: the author's domain signed it, and we changed it."""
    fields = BytesHeaderParser(policy=compat32).parsebytes(raw)
    if fields["List-Id"] is None:
        return False
    addresses = getaddresses([str(fields["From"] or "")])
    domain = addresses[0][1].rpartition("@")[2].lower() if addresses else ""
    return bool(domain) and domain != own_domain.lower() and not domain.endswith("." + own_domain.lower())


def _has_results_from(raw: bytes, srv_id: bytes) -> bool:
    head = raw.split(b"\r\n\r\n", 1)[0].lower()
    return b"\r\nauthentication-results: " + srv_id.lower() + b";" in b"\r\n" + head


def _read_key(path: Path) -> bytes:
    # late, as cryptography in generate_key: ~7 MB that a serve without DKIM keys never needs
    from cryptography.hazmat.primitives import serialization

    try:
        key = path.read_bytes()
        serialization.load_pem_private_key(key, password=None)
    except OSError as error:
        raise SigningSetupError(f"cannot read the DKIM key {path}: {error.strerror}") from None
    except (ValueError, TypeError):
        raise SigningSetupError(f"{path} is not a PEM private key without a passphrase") from None
    return key


def generate_key(selector: str, domain: str, out: Path) -> str:
    """Write a new RSA key to ``out`` (mode 0600, never over an existing file); return the TXT record."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # "BEGIN RSA PRIVATE KEY", as opendkim writes
        serialization.NoEncryption(),
    )
    with open(out, "xb", opener=_open_private) as file:  # created 0600 before a byte is written
        file.write(pem)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return dns_record(selector, domain, base64.b64encode(public).decode("ascii"))


def _open_private(path: str, flags: int) -> int:

    return os.open(path, flags, 0o600)


def dns_record(selector: str, domain: str, public_b64: str) -> str:
    """The zone-file line; the value split into 255-character strings, as DNS TXT requires."""
    value = f"v=DKIM1; k=rsa; p={public_b64}"
    chunks = " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255))
    return f"{selector}._domainkey.{domain}. IN TXT ( {chunks} )"

"""The signature every webhook delivery carries, and how a receiver checks it.

Header ``Mesh-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is
HMAC-SHA256(subscription secret, ``"<t>." + body``). Signing the timestamp with the body lets a
receiver refuse replays of an old request (check that ``t`` is recent); signing the exact body
bytes means the receiver must verify before parsing. Each attempt is signed anew, so a retry
carries a fresh timestamp.

In binary mode the CloudEvents attributes travel in ``ce-*`` headers, which the signature does
not cover (only timestamp and body, as the contract says); a receiver that needs authenticated
attributes should use structured mode, where they are part of the body.

``verify`` is what a Python receiver can copy; docs/delivery.md shows the ten-line version.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from functools import lru_cache

__all__ = ["SIGNATURE_HEADER", "SignatureError", "sign", "signature_header", "verify"]

SIGNATURE_HEADER = "Mesh-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """A signature header that is missing, malformed, stale or wrong."""


@lru_cache(maxsize=1024)
def _keyed(secret: str):
    """An HMAC already keyed with ``secret``; copying it skips the key setup on every event."""
    return hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha256)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>." + body`` under ``secret`` (UTF-8)."""
    mac = _keyed(secret).copy()
    mac.update(b"%d." % timestamp)
    mac.update(body)
    return mac.hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The value of the ``Mesh-Signature`` header for ``body``, signed now (or at ``timestamp``)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={sign(secret, t, body)}"


def verify(
    secret: str, header: str | None, body: bytes, *, tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """Check a ``Mesh-Signature`` header; return its timestamp or raise :class:`SignatureError`.

    Several ``v1=`` values may appear (a receiver may be sent more than one during a secret
    rotation); one matching is enough. The comparison is constant-time.
    """
    if not header:
        raise SignatureError(f"the {SIGNATURE_HEADER} header is missing")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureError(f"the {SIGNATURE_HEADER} header must look like t=<seconds>,v1=<hex>")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError(f"the signature timestamp is more than {tolerance} seconds away from now")
    expected = sign(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise SignatureError("the signature does not match the body")
    return timestamp

"""HMAC-SHA256 request signing for event webhooks (Stripe-style header).

``X-Ordergraph-Signature: t=<unix seconds>,v1=<hex hmac>`` where the HMAC covers
``"<t>." + body`` with the sending source's secret. Because the timestamp is signed, a
replayed request older than the tolerance is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

HEADER = "X-Ordergraph-Signature"
DEFAULT_TOLERANCE_SECONDS = 300
# ASCII digits only (str.isdigit also takes "²"), and few enough to be a time: a 400-digit
# number cannot be compared with the clock. The MAC: SHA-256 in lower-case hex.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_MAC = re.compile(r"[0-9a-f]{64}")


class SignatureError(ValueError):
    """The signature is missing, malformed, wrong or too old."""


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The signature header value for ``body``."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(
    secret: str, body: bytes, header: str | None, *, now: float | None = None, tolerance: float = DEFAULT_TOLERANCE_SECONDS
) -> int:
    """Check a signature header; returns its timestamp or raises SignatureError."""
    if not header:
        raise SignatureError(f"missing {HEADER} header")
    parts: dict[str, str] = {}
    for item in header.split(","):
        k, sep, v = item.strip().partition("=")
        if sep:
            parts[k] = v
    if "t" not in parts or "v1" not in parts:
        raise SignatureError(f"malformed {HEADER} header: expected t=<unix seconds>,v1=<hex>")
    if not _TIMESTAMP.fullmatch(parts["t"]):
        raise SignatureError(f"malformed {HEADER} header: t must be Unix seconds (at most 12 digits)")
    if not _MAC.fullmatch(parts["v1"]):
        raise SignatureError(f"malformed {HEADER} header: v1 must be 64 lower-case hex digits (HMAC-SHA256)")
    t = int(parts["t"])
    current = time.time() if now is None else now
    if abs(current - t) > tolerance:
        raise SignatureError(f"signature timestamp outside the {int(tolerance)} s window (replayed or clock skew)")
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, parts["v1"]):
        raise SignatureError("signature does not match the body")
    return t

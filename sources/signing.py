"""HMAC-SHA256 request signing for event webhooks (Stripe-style header).

``X-Ordergraph-Signature: t=<unix seconds>,v1=<hex hmac>`` where the HMAC covers
``"<t>." + body`` with the sending source's secret. Because the timestamp is signed, a
replayed request older than the tolerance is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Ordergraph-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


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
    if "t" not in parts or "v1" not in parts or not parts["t"].isdigit():
        raise SignatureError(f"malformed {HEADER} header: expected t=<unix seconds>,v1=<hex>")
    t = int(parts["t"])
    current = time.time() if now is None else now
    if abs(current - t) > tolerance:
        raise SignatureError(f"signature timestamp outside the {int(tolerance)} s window (replayed or clock skew)")
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, parts["v1"]):
        raise SignatureError("signature does not match the body")
    return t

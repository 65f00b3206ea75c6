"""Cursors that are opaque to clients: sealed with the gateway's key.

Every cursor the API gives out (order pages, the exception board, ``Order.history``, the
resume cursors of ``orderChanges``/``orderUpdated`` and ``exceptionsChanged``) is its
position (a journal sequence, a sort key, an order number) encrypted and authenticated
with ChaCha20-Poly1305 under the gateway's cursor key, with a fresh nonce each time. A
client learns nothing from a cursor (the exception board's sort key holds the value at
risk, the journal's sequences count the whole plant's changes) and cannot make one up;
the kind of cursor is bound in, so one kind is never read as another.

The key comes from the gateway (``gateway/app.py``: ``[gateway] cursor_secret``, else a
key kept beside the journal, in Redis for replicas): every replica must use the same key,
and a restart must keep it, so a client can resume anywhere with the cursor it holds.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from graphql import GraphQLError

KEY_BYTES = 32
_NONCE_BYTES = 12
_MAX_CURSOR_CHARS = 1024  # a cursor longer than this was never ours


def derive_key(secret: str | bytes) -> bytes:
    """A cursor key from a configured secret of any length."""
    raw = secret.encode() if isinstance(secret, str) else secret
    return hashlib.sha256(b"ordergraph cursor key\x00" + raw).digest()


class Cursors:
    """Seals and opens cursors under one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a cursor key has {KEY_BYTES} bytes")
        self._aead = ChaCha20Poly1305(key)

    @classmethod
    def from_secret(cls, secret: str | bytes) -> Cursors:
        return cls(derive_key(secret))

    @classmethod
    def random(cls) -> Cursors:
        """A key of this process only (cursors die with it): tests and in-memory journals."""
        return cls(os.urandom(KEY_BYTES))

    def seal(self, kind: str, position: str) -> str:
        """The cursor of ``position`` (a cursor of ``kind``)."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, position.encode(), kind.encode())
        return base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()

    def open(self, kind: str, cursor: str, hint: str = "use a cursor from a previous answer") -> str:
        """The position a cursor of ``kind`` holds; BAD_USER_INPUT for anything else."""
        try:
            if len(cursor) > _MAX_CURSOR_CHARS:
                raise ValueError("too long")
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            if len(raw) <= _NONCE_BYTES:
                raise ValueError("too short")
            return self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], kind.encode()).decode()
        except (ValueError, binascii.Error, InvalidTag, UnicodeDecodeError) as exc:
            shown = cursor if len(cursor) <= 60 else cursor[:60] + "…"
            raise GraphQLError(f"Invalid cursor {shown!r}: {hint}.", extensions={"code": "BAD_USER_INPUT"}) from exc


@functools.cache
def process_cursors() -> Cursors:
    """A per-process fallback for contexts built without the gateway's cursors (tests)."""
    return Cursors.random()

"""Pagination: every cursor the API gives out, and the page info of its connections.

Cursors are opaque to clients: sealed with the gateway's key. Every cursor the API gives out (order pages, the exception board, ``Order.history``, the
resume cursors of ``orderChanges``/``orderUpdated`` and ``exceptionsChanged``) is its
position (a journal sequence, a sort key, an order number) encrypted and authenticated
with ChaCha20-Poly1305 under the gateway's cursor key, with a fresh nonce each time. A
client learns nothing from a cursor (the exception board's sort key holds the value at
risk, the journal's sequences count the whole plant's changes) and cannot make one up;
the kind of cursor is bound in, so one kind is never read as another.

Each kind has its codec here, and only here: ``order_cursor`` (a page of orders by number),
``sorted_cursor`` (a sorted listing's position), ``board_cursor`` (the exception board),
``transition_cursor`` (``exceptionsChanged``), ``change_cursor`` (``orderChanges`` and
``orderUpdated``), ``history_cursor`` (``Order.history``) and ``workflow_cursor``
(``exceptionWorkflowChanged``). This module imports nothing of the project, so every
room may use it.

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

import orjson
import strawberry
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


# --- the kinds of cursor, each with its codec ----------------------------------------------

ORDER_CURSOR = "order"
SORTED_CURSOR = "order-sorted"
BOARD_CURSOR = "exceptions"
TRANSITION_CURSOR = "transition"
CHANGE_CURSOR = "change"
HISTORY_CURSOR = "history"
WORKFLOW_CURSOR = "workflow"

_PAGE_HINT = "use a cursor from a previous page"
_MESSAGE_HINT = "use the cursor of a message you received"


def _bad_cursor(hint: str) -> GraphQLError:
    # What a cursor we sealed ourselves can never fail with; but say so clearly.
    return GraphQLError(f"Invalid cursor: {hint}.", extensions={"code": "BAD_USER_INPUT"})


def _open_int(cursors: Cursors, kind: str, cursor: str, hint: str) -> int:
    """The number a cursor of ``kind`` holds (a journal or audit sequence)."""
    text = cursors.open(kind, cursor, hint)
    try:
        return int(text)
    except ValueError as exc:
        raise _bad_cursor(hint) from exc


def encode_order_cursor(cursors: Cursors, sales_order: str) -> str:
    """The cursor of a page of orders in sales order number order."""
    return cursors.seal(ORDER_CURSOR, sales_order)


def decode_order_cursor(cursors: Cursors, cursor: str) -> str:
    """The sales order number a cursor points at; a clear error for anything else."""
    return cursors.open(ORDER_CURSOR, cursor, _PAGE_HINT)


def encode_sorted_cursor(cursors: Cursors, sort: str, key: tuple) -> str:
    """The cursor of a sorted listing (``resolvers/listing.py``): its sort and position."""
    return cursors.seal(SORTED_CURSOR, orjson.dumps([sort, list(key)]).decode())


def decode_sorted_cursor(cursors: Cursors, sort: str, cursor: str) -> tuple:
    """The position a sorted listing's cursor holds; BAD_USER_INPUT for another sort's."""
    hint = "use a cursor from a previous page of the same sort"
    raw = cursors.open(SORTED_CURSOR, cursor, hint)
    try:
        cursor_sort, key = orjson.loads(raw)
        ok = cursor_sort == sort and isinstance(key, list) and key and isinstance(key[-1], str)
    except (orjson.JSONDecodeError, ValueError, TypeError):
        ok = False
    if not ok:
        raise _bad_cursor(hint)
    return tuple(key)


def encode_board_cursor(cursors: Cursors, sort_key: tuple[int, float, str]) -> str:
    """The cursor of an exception on the board: its ``ExceptionRecord.sort_key()``."""
    rank, value, eid = sort_key
    return cursors.seal(BOARD_CURSOR, f"{rank}:{value!r}:{eid}")


def decode_board_cursor(cursors: Cursors, cursor: str) -> tuple[int, float, str]:
    text = cursors.open(BOARD_CURSOR, cursor, _PAGE_HINT)
    try:
        rank, value, eid = text.split(":", 2)
        return int(rank), float(value), eid
    except ValueError as exc:
        raise _bad_cursor(_PAGE_HINT) from exc


def encode_transition_cursor(cursors: Cursors, cursor: int) -> str:
    """The resume cursor of an exception transition (``exceptionsChanged(after:)``)."""
    return cursors.seal(TRANSITION_CURSOR, str(cursor))


def decode_transition_cursor(cursors: Cursors, cursor: str) -> int:
    """Inverse of :func:`encode_transition_cursor`; a clear error for anything else."""
    value = _open_int(cursors, TRANSITION_CURSOR, cursor, _MESSAGE_HINT)
    if value < 0:
        raise _bad_cursor(_MESSAGE_HINT)
    return value


def encode_change_cursor(cursors: Cursors, seq: int, sales_order: str) -> str:
    """A resume cursor: the journal sequence and the order within it, sealed."""
    return cursors.seal(CHANGE_CURSOR, f"{seq}:{sales_order}")


def decode_change_cursor(cursors: Cursors, cursor: str) -> tuple[int, str]:
    text = cursors.open(CHANGE_CURSOR, cursor, _MESSAGE_HINT)
    try:
        seq, so = text.split(":", 1)
        return int(seq), so
    except ValueError as exc:
        raise _bad_cursor(_MESSAGE_HINT) from exc


def encode_history_cursor(cursors: Cursors, seq: int) -> str:
    """The cursor of an entry of ``Order.history``: its journal sequence."""
    return cursors.seal(HISTORY_CURSOR, str(seq))


def decode_history_cursor(cursors: Cursors, cursor: str) -> int:
    return _open_int(cursors, HISTORY_CURSOR, cursor, _PAGE_HINT)


def encode_workflow_cursor(cursors: Cursors, seq: int) -> str:
    """The resume cursor of a workflow action (``exceptionWorkflowChanged``): its audit seq."""
    return cursors.seal(WORKFLOW_CURSOR, str(seq))


def decode_workflow_cursor(cursors: Cursors, cursor: str) -> int:
    return max(0, _open_int(cursors, WORKFLOW_CURSOR, cursor, _MESSAGE_HINT))


# --- connections ----------------------------------------------------------------------------


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


def page_info(cursors: list[str], *, has_next: bool, has_previous: bool) -> PageInfo:
    """The Relay page info of a page whose edges carry ``cursors``, in order."""
    return PageInfo(
        has_next_page=has_next,
        has_previous_page=has_previous,
        start_cursor=cursors[0] if cursors else None,
        end_cursor=cursors[-1] if cursors else None,
    )

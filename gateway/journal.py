"""The event journal: what every journal offers (``Journal``), and the records it keeps.

Two implementations satisfy the protocol: :class:`gateway.sqlite_journal.SQLiteJournal` (the
embedded default, one SQLite file) and :class:`gateway.redis_journal.RedisJournal` (Redis
Streams, shared by gateway replicas). Everything else (ingress, processor, subscription hub,
exception tracker, ``Order.history``, the CLI) speaks to ``Journal`` only.

Capabilities that differ are declared, not discovered: ``Journal.publishes`` says whether
:meth:`Journal.record_processed` also publishes the changes on the bus, in the same atomic
step that records them (the Redis journal: gap-free cursors across replicas); otherwise the
processor publishes them after recording.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from sources.events import SourceEvent

    from .bus import OrderChanged

__all__ = [
    "Appended",
    "ExceptionTransition",
    "Journal",
    "JournalEvent",
    "OrderChangeRow",
    "ParkedEvent",
    "Processed",
    "StoredEvent",
    "UnknownCursor",
    "WatermarkKey",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# How many parsed events a journal keeps for the processor (a bound, not a working size:
# they leave when processed; events another replica processes would otherwise stay).
_PARSED_KEPT = 20_000

WatermarkKey = tuple[str, str, str]  # (source, entity, record key)


class UnknownCursor(LookupError):
    """A paging cursor that does not (or no longer) name an item of the requested list."""


@dataclass(slots=True, frozen=True)
class JournalEvent:
    """A source event as ingestion appends it (CloudEvents attributes + receive time)."""

    source: str  # system: erp/mes/wms/qms/tms
    event_id: str  # CloudEvents id; (source, event_id) is unique
    type: str  # CloudEvents type
    subject: str | None  # CloudEvents subject (the record key)
    occurred_at: datetime  # business time (CloudEvents `time`), tz-aware
    data: dict[str, Any] | None  # CloudEvents data (None for notification-only events)
    received_at: datetime
    # The event as the door parsed it: the journal hands it back with the stored row
    # (``StoredEvent.event``), so applying it needs no second parse. Not persisted: a row
    # read after a restart, or journaled by another replica or a poll, comes back without.
    event: SourceEvent | None = dataclasses.field(default=None, compare=False)

    @classmethod
    def of(cls, event: SourceEvent, received_at: datetime) -> JournalEvent:
        """The journal entry of a parsed event."""
        return cls(
            source=event.system,
            event_id=event.id,
            type=event.type,
            subject=event.key,
            occurred_at=event.occurred_at,
            data=event.data,
            received_at=received_at,
            event=event,
        )


@dataclass(slots=True, frozen=True)
class Appended:
    """Outcome of appending one event."""

    seq: int  # journal cursor (monotonic integer)
    duplicate: bool  # True: (source, event_id) was already journaled; seq is the original's


@dataclass(slots=True, frozen=True)
class StoredEvent:
    """A journaled event with its cursor, processing state and the orders it affected."""

    seq: int
    source: str
    event_id: str
    type: str
    subject: str | None
    occurred_at: datetime
    received_at: datetime
    data: dict[str, Any] | None
    processed: bool
    stale: bool
    orders: tuple[str, ...]
    # The parsed event, when this process journaled it and it is not processed yet.
    event: SourceEvent | None = dataclasses.field(default=None, compare=False)


@dataclass(slots=True, frozen=True)
class ParkedEvent:
    """A dead letter: a journaled event whose processing failed for good, and why."""

    event: StoredEvent
    reason: str
    attempts: int  # processing attempts before it was parked
    parked_at: datetime


@dataclass(slots=True, frozen=True)
class OrderChangeRow:
    """One (event, order) pair, for history and subscription resume."""

    seq: int
    sales_order: str
    customer: str | None
    source: str
    type: str
    occurred_at: datetime
    stale: bool


@dataclass(slots=True, frozen=True)
class ExceptionTransition:
    """One RAISED/CLEARED step of an exception, with its own monotonic cursor."""

    cursor: int
    exception_id: str
    kind: str
    action: Literal["RAISED", "CLEARED"]
    payload: dict[str, Any]
    at: datetime


def _to_us(value: datetime, name: str) -> int:
    # A naive time is ambiguous (whose local time?); refuse it rather than guess.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return (value - _EPOCH) // _MICROSECOND


def _from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)




@dataclass(slots=True, frozen=True)
class Processed:
    """What applying one event did, for :meth:`Journal.record_processed`.

    ``orders``: the ``(sales_order, customer)`` pairs it changed. ``stale``: older than what
    was applied already (kept for history, changed nothing). ``changes`` and ``invalidate``:
    the bus message, which a journal that ``publishes`` sends in the same step."""

    seq: int
    orders: tuple[tuple[str, str | None], ...]
    stale: bool = False
    changes: tuple[OrderChanged, ...] = ()
    invalidate: frozenset[tuple[str, str]] = frozenset()


class ParsedEvents:
    """The parsed events a journal hands back with their rows (bounded; see ``_PARSED_KEPT``)."""

    def __init__(self, most: int = _PARSED_KEPT) -> None:
        self._events: OrderedDict[int, SourceEvent] = OrderedDict()
        self._most = most

    def keep(self, seq: int, event: SourceEvent | None) -> None:
        if event is None:
            return
        self._events[seq] = event
        if len(self._events) > self._most:
            self._events.popitem(last=False)

    def get(self, seq: int) -> SourceEvent | None:
        return self._events.get(seq)

    def done(self, seqs: Sequence[int]) -> None:
        for seq in seqs:
            self._events.pop(seq, None)

    def attach(self, stored: StoredEvent) -> StoredEvent:
        event = self._events.get(stored.seq)
        return stored if event is None else dataclasses.replace(stored, event=event)


class Journal(Protocol):
    """The durable event log every gateway part uses; see the module docstring.

    Seqs are the journal's cursors (monotonic); dedupe is by ``(source, event_id)``;
    watermarks are the newest business time applied per record."""

    #: True: :meth:`record_processed` publishes each event's changes on the bus itself.
    publishes: bool

    async def close(self) -> None: ...

    # events
    async def append(self, events: list[JournalEvent]) -> list[Appended]:
        """Journal ``events`` (durable on return); duplicates get the original's seq."""
        ...

    async def unprocessed(self, limit: int = 1000) -> list[StoredEvent]:
        """Events to apply now, oldest first (parked ones excluded)."""
        ...

    async def mark_processed(self, seq: int, orders: list[tuple[str, str | None]], *, stale: bool = False) -> None:
        """Record one event as applied (no publish)."""
        ...

    async def record_processed(self, batch: Sequence[Processed]) -> list[bool]:
        """Record a batch of applied events, in order; with ``publishes``, also send each
        one's changes on the bus in the same atomic step. Per event: False when it was
        already recorded (another replica finished it), and then nothing was published."""
        ...

    async def get(self, seq: int) -> StoredEvent | None: ...
    async def count(self) -> int: ...
    async def backlog(self) -> int: ...
    async def last_seq(self) -> int: ...
    async def oldest_seq(self) -> int: ...

    # dead letters
    async def park(self, seq: int, reason: str, *, attempts: int, at: datetime) -> bool: ...
    async def parked(self, *, limit: int = 1000, after_seq: int = 0) -> list[ParkedEvent]: ...
    async def parked_count(self) -> int: ...
    async def unpark(self, seqs: list[int] | None = None) -> list[int]: ...

    # history and resume
    async def changes_after(
        self,
        after_seq: int,
        *,
        sales_order: str | None = None,
        customer: str | None = None,
        limit: int = 1000,
        include_stale: bool = False,
    ) -> list[OrderChangeRow]: ...

    async def history(self, sales_order: str, *, first: int = 50, after_seq: int | None = None) -> list[StoredEvent]: ...

    # watermarks
    async def watermark(self, source: str, entity: str, key: str) -> datetime | None: ...
    async def watermarks(self, keys: Sequence[WatermarkKey]) -> list[datetime | None]:
        """:meth:`watermark` of many records at once."""
        ...

    async def advance_watermark(self, source: str, entity: str, key: str, occurred_at: datetime) -> bool: ...
    async def advance_watermarks(self, marks: Sequence[tuple[WatermarkKey, datetime]]) -> list[bool]:
        """:meth:`advance_watermark` for each mark, decided in order (a later mark of the
        same record sees the earlier ones); durable on return."""
        ...

    async def cap_watermarks(self, ceiling: datetime, to: datetime) -> int: ...

    # exceptions
    async def record_exception_transition(
        self,
        exception_id: str,
        kind: str,
        action: Literal["RAISED", "CLEARED"],
        payload: dict[str, Any],
        at: datetime,
        fingerprint: str = "",
    ) -> int: ...

    async def exception_transitions_after(self, after: int, limit: int = 1000) -> list[ExceptionTransition]: ...
    async def cleared_exceptions_before(self, before: int | None, limit: int = 1000) -> list[ExceptionTransition]: ...
    async def last_exception_cursor(self) -> int: ...
    async def open_exceptions(self) -> dict[str, dict[str, Any]]: ...

    # retention
    async def prune(self, now: datetime) -> int: ...

"""The embedded event journal: one SQLite file (``Journal`` of ``gateway/journal.py``).

Every accepted source event is journaled here before it is acknowledged; the journal is
the gateway's memory for dedupe (``source`` + CloudEvents ``id``), order history,
subscription resume cursors, out-of-order protection (watermarks) and exception
bookkeeping.

Threading: SQLite calls block, so all of them run on ONE dedicated worker thread that owns
the only connection; coroutines hand work to it with ``run_in_executor``. Writes go through
an asyncio queue drained by a writer task that commits everything queued while the
previous commit was running as one transaction -- one fsync for many requests (group
commit). Each writer's await resolves only after its transaction committed, and with WAL +
``synchronous=FULL`` a committed transaction survives a crash of the process (or the host).

Times are stored as integer microseconds since the Unix epoch (UTC), so they sort and
compare exactly; they come back as timezone-aware UTC datetimes.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson

from .journal import (
    Appended,
    ExceptionTransition,
    JournalEvent,
    OrderChangeRow,
    ParkedEvent,
    ParsedEvents,
    Processed,
    StoredEvent,
    UnknownCursor,
    WatermarkKey,
    _from_us,
    _to_us,
)

__all__ = ["SQLiteJournal"]

T = TypeVar("T")
_Op = Callable[[sqlite3.Connection], Any]
_WatermarkKey = WatermarkKey

# 2: dead letters (parked events). 3: open exceptions by cursor (``open_exception_cursors``).
_SCHEMA_VERSION = 3
# Enough to amortise one fsync over a burst, small enough that one transaction stays short.
_MAX_OPS_PER_COMMIT = 512
# Prune deletes in slices so appends keep flowing between them.
_PRUNE_SLICE = 5_000
_WATERMARK_CACHE_SIZE = 100_000

_SCHEMA = f"""
BEGIN;
-- AUTOINCREMENT: a seq is never reused, even after the newest rows were pruned, so a
-- client's resume cursor can never point at a different event later.
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    source      TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    subject     TEXT,
    occurred_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    data        BLOB,
    processed   INTEGER NOT NULL DEFAULT 0,
    stale       INTEGER NOT NULL DEFAULT 0,
    UNIQUE (source, event_id)
);
CREATE INDEX IF NOT EXISTS events_unprocessed ON events (seq) WHERE processed = 0;
CREATE INDEX IF NOT EXISTS events_received_at ON events (received_at);

-- One row per (event, order it affected), written by mark_processed.
CREATE TABLE IF NOT EXISTS order_changes (
    seq         INTEGER NOT NULL,
    sales_order TEXT    NOT NULL,
    customer    TEXT,
    PRIMARY KEY (seq, sales_order)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS order_changes_by_order ON order_changes (sales_order, seq);
CREATE INDEX IF NOT EXISTS order_changes_by_customer ON order_changes (customer, seq);

-- Dead letters: events whose processing failed for good, kept (never pruned) until they
-- are replayed. A parked event is not handed to the processor.
CREATE TABLE IF NOT EXISTS dead_letters (
    seq       INTEGER PRIMARY KEY,
    reason    TEXT    NOT NULL,
    attempts  INTEGER NOT NULL,
    parked_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS watermarks (
    source      TEXT    NOT NULL,
    entity      TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    occurred_at INTEGER NOT NULL,
    PRIMARY KEY (source, entity, key)
) WITHOUT ROWID;

-- Exception transitions have their own cursor space (not the event seq).
CREATE TABLE IF NOT EXISTS exception_transitions (
    cursor       INTEGER PRIMARY KEY AUTOINCREMENT,
    exception_id TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    action       TEXT    NOT NULL CHECK (action IN ('RAISED', 'CLEARED')),
    payload      BLOB    NOT NULL,
    at           INTEGER NOT NULL
);
-- Derived state kept in step with the log, so open_exceptions() reads only what is open:
-- each open exception's latest RAISED transition (its payload is read from the log, which
-- is never pruned). Schema 2 kept a copy of the payload here, in a table keyed by the id:
-- every step wrote its payload twice, the second time into the middle of a B-tree of large
-- rows (the first evaluation at 100,000 orders journals 29,000 payloads, 60 MB: 4 s of the
-- writer's CPU of 5, growing 7 times for 5 times the orders; bench/README.md).
CREATE TABLE IF NOT EXISTS open_exception_cursors (
    exception_id TEXT    PRIMARY KEY,
    cursor       INTEGER NOT NULL
) WITHOUT ROWID;
{{migrate}}
PRAGMA user_version = {_SCHEMA_VERSION};
COMMIT;
"""

# From schema 2 (in the same transaction as the rest, before the version says 3).
_MIGRATE_OPEN_EXCEPTIONS = """
INSERT OR REPLACE INTO open_exception_cursors (exception_id, cursor)
    SELECT exception_id, cursor FROM open_exceptions;
DROP TABLE open_exceptions;
"""

# StoredEvent columns; the order ids come along as a JSON array.
_EVENT_COLUMNS = """
    e.seq, e.source, e.event_id, e.type, e.subject, e.occurred_at, e.received_at, e.data,
    e.processed, e.stale,
    (SELECT json_group_array(c.sales_order) FROM order_changes c WHERE c.seq = e.seq)
"""


def _json(value: Any) -> bytes:
    return orjson.dumps(value)


def _stored_event(row: tuple[Any, ...]) -> StoredEvent:
    seq, source, event_id, type_, subject, occurred, received, data, processed, stale, orders = row
    return StoredEvent(
        seq=seq,
        source=source,
        event_id=event_id,
        type=type_,
        subject=subject,
        occurred_at=_from_us(occurred),
        received_at=_from_us(received),
        data=None if data is None else orjson.loads(data),
        processed=bool(processed),
        stale=bool(stale),
        orders=tuple(orjson.loads(orders)),
    )


def _connect(path: str) -> sqlite3.Connection:
    # Runs on the worker thread, which then owns the connection (check_same_thread stays on).
    # isolation_level=None: no implicit transactions; the writer issues BEGIN/COMMIT itself.
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: the WAL is fsynced at every commit, so "append returned" means "on disk".
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA busy_timeout = 5000")
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > _SCHEMA_VERSION:
            raise RuntimeError(
                f"journal {path!r} has schema version {version}; this gateway knows up to "
                f"{_SCHEMA_VERSION}"
            )
        if version < _SCHEMA_VERSION:
            # New or older: create or complete the schema, in one transaction that ends by
            # setting the version (every change to _SCHEMA bumps _SCHEMA_VERSION). A current
            # journal needs nothing, so opening it takes no write lock: a reader beside a
            # busy gateway (``ordergraph events parked``) does not wait on its commits.
            old = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'open_exceptions'"
            ).fetchone()
            conn.executescript(_SCHEMA.replace("{migrate}", _MIGRATE_OPEN_EXCEPTIONS if old else ""))
    except BaseException:
        conn.close()
        raise
    return conn


def _commit(conn: sqlite3.Connection, ops: list[_Op]) -> list[tuple[bool, Any]]:
    """Run ops in one transaction (worker thread); return (ok, result-or-exception) per op."""
    outcomes: list[tuple[bool, Any]] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for op in ops:
            # A savepoint per op: one caller's bad input must not fail the others' batch.
            conn.execute("SAVEPOINT journal_op")
            try:
                result = op(conn)
            except Exception as exc:
                conn.execute("ROLLBACK TO journal_op")
                conn.execute("RELEASE journal_op")
                outcomes.append((False, exc))
            else:
                conn.execute("RELEASE journal_op")
                outcomes.append((True, result))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


# --- write operations (run inside _commit on the worker thread) -----------------------


def _append_op(events: list[JournalEvent], conn: sqlite3.Connection) -> list[Appended]:
    out: list[Appended] = []
    for event in events:
        row = (
            event.source,
            event.event_id,
            event.type,
            event.subject,
            _to_us(event.occurred_at, "occurred_at"),
            _to_us(event.received_at, "received_at"),
            None if event.data is None else _json(event.data),
        )
        # ON CONFLICT (not INSERT OR IGNORE): only the dedupe key is tolerated; a NOT NULL
        # violation still raises.
        cur = conn.execute(
            "INSERT INTO events (source, event_id, type, subject, occurred_at, received_at, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, event_id) DO NOTHING",
            row,
        )
        if cur.rowcount == 1:
            assert cur.lastrowid is not None
            out.append(Appended(seq=cur.lastrowid, duplicate=False))
        else:
            (seq,) = conn.execute(
                "SELECT seq FROM events WHERE source = ? AND event_id = ?",
                (event.source, event.event_id),
            ).fetchone()
            out.append(Appended(seq=seq, duplicate=True))
    return out


def _mark_processed_op(
    seq: int, orders: list[tuple[str, str | None]], stale: bool, conn: sqlite3.Connection
) -> None:
    cur = conn.execute(
        "UPDATE events SET processed = 1, stale = ? WHERE seq = ?", (int(stale), seq)
    )
    if cur.rowcount == 0:
        raise KeyError(f"no journaled event with seq {seq}")
    # Upsert: replaying an event after a crash records the same rows again harmlessly.
    conn.executemany(
        "INSERT INTO order_changes (seq, sales_order, customer) VALUES (?, ?, ?)"
        " ON CONFLICT (seq, sales_order) DO UPDATE SET customer = excluded.customer",
        [(seq, sales_order, customer) for sales_order, customer in orders],
    )


def _mark_processed_many_op(items: list[tuple[int, list[tuple[str, str | None]], bool]], conn: sqlite3.Connection) -> None:
    for seq, orders, stale in items:
        _mark_processed_op(seq, orders, stale, conn)


def _park_op(seq: int, reason: str, attempts: int, at_us: int, conn: sqlite3.Connection) -> bool:
    # A processed event is done: nothing to park (another path finished it meanwhile).
    row = conn.execute("SELECT processed FROM events WHERE seq = ?", (seq,)).fetchone()
    if row is None:
        raise KeyError(f"no journaled event with seq {seq}")
    if row[0]:
        return False
    conn.execute(
        "INSERT INTO dead_letters (seq, reason, attempts, parked_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (seq) DO UPDATE SET reason = excluded.reason, attempts = excluded.attempts,"
        " parked_at = excluded.parked_at",
        (seq, reason, attempts, at_us),
    )
    return True


def _unpark_op(seqs: list[int] | None, conn: sqlite3.Connection) -> list[int]:
    if seqs is None:
        released = [seq for (seq,) in conn.execute("SELECT seq FROM dead_letters ORDER BY seq")]
        conn.execute("DELETE FROM dead_letters")
        return released
    released = []
    for seq in seqs:
        if conn.execute("DELETE FROM dead_letters WHERE seq = ?", (seq,)).rowcount:
            released.append(seq)
    return released


def _read_watermark_op(key: _WatermarkKey, conn: sqlite3.Connection) -> int | None:
    row = conn.execute(
        "SELECT occurred_at FROM watermarks WHERE source = ? AND entity = ? AND key = ?", key
    ).fetchone()
    return None if row is None else row[0]


def _store_watermark_op(key: _WatermarkKey, occurred_us: int, conn: sqlite3.Connection) -> None:
    # max() in SQL: the table holds the maximum whatever order the writes land in.
    conn.execute(
        "INSERT INTO watermarks (source, entity, key, occurred_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (source, entity, key)"
        " DO UPDATE SET occurred_at = max(occurred_at, excluded.occurred_at)",
        (*key, occurred_us),
    )


def _read_watermarks_op(keys: list[_WatermarkKey], conn: sqlite3.Connection) -> list[int | None]:
    return [_read_watermark_op(key, conn) for key in keys]


def _store_watermarks_op(marks: list[tuple[_WatermarkKey, int]], conn: sqlite3.Connection) -> None:
    for key, occurred_us in marks:
        _store_watermark_op(key, occurred_us, conn)


def _exception_op(
    exception_id: str,
    kind: str,
    action: str,
    payload: bytes,
    at_us: int,
    conn: sqlite3.Connection,
) -> int:
    cur = conn.execute(
        "INSERT INTO exception_transitions (exception_id, kind, action, payload, at)"
        " VALUES (?, ?, ?, ?, ?)",
        (exception_id, kind, action, payload, at_us),
    )
    cursor = cur.lastrowid
    assert cursor is not None
    if action == "RAISED":
        conn.execute(
            "INSERT INTO open_exception_cursors (exception_id, cursor) VALUES (?, ?)"
            " ON CONFLICT (exception_id) DO UPDATE SET cursor = excluded.cursor",
            (exception_id, cursor),
        )
    else:
        conn.execute("DELETE FROM open_exception_cursors WHERE exception_id = ?", (exception_id,))
    return cursor


def _delete_events(conn: sqlite3.Connection, select_seqs: str, params: tuple[Any, ...]) -> int:
    seqs = [(seq,) for (seq,) in conn.execute(select_seqs, params).fetchall()]
    conn.executemany("DELETE FROM order_changes WHERE seq = ?", seqs)
    conn.executemany("DELETE FROM events WHERE seq = ?", seqs)
    return len(seqs)


def _prune_slice_op(cutoff_us: int, max_events: int, conn: sqlite3.Connection) -> int:
    # Only processed events are candidates: an unprocessed one still has effects to apply.
    deleted = _delete_events(
        conn,
        "SELECT seq FROM events WHERE processed = 1 AND received_at < ? LIMIT ?",
        (cutoff_us, _PRUNE_SLICE),
    )
    if deleted < _PRUNE_SLICE:
        (total,) = conn.execute("SELECT count(*) FROM events").fetchone()
        excess = min(total - max_events, _PRUNE_SLICE - deleted)
        if excess > 0:
            deleted += _delete_events(
                conn,
                "SELECT seq FROM events WHERE processed = 1 ORDER BY seq LIMIT ?",
                (excess,),
            )
    return deleted


# --- the journal ------------------------------------------------------------------------


class SQLiteJournal:
    """Append-only event journal on one SQLite connection owned by one worker thread.

    Create with ``await SQLiteJournal.open(path)``; release with ``await journal.close()`` (or use
    ``async with``). All methods are coroutines and never block the event loop.
    """

    publishes = False  # record_processed records only: the processor publishes on the bus

    def __init__(
        self,
        conn: sqlite3.Connection,
        executor: ThreadPoolExecutor,
        *,
        retention_days: float,
        max_events: int,
    ) -> None:
        """Internal: use :meth:`SQLiteJournal.open`."""
        self.retention_days = retention_days
        self.max_events = max_events
        #: Number of committed write transactions (group commit makes it < number of writes).
        self.commits = 0
        self._parsed = ParsedEvents()
        self._conn = conn
        self._executor = executor
        self._queue: asyncio.Queue[tuple[_Op, asyncio.Future[Any]] | None] = asyncio.Queue()
        self._closed = False
        # Watermark cache in front of the table (the durable truth): LRU, occurred_at in µs.
        self._watermarks: OrderedDict[_WatermarkKey, int | None] = OrderedDict()
        self._writer = asyncio.get_running_loop().create_task(
            self._write_loop(), name="journal-writer"
        )

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        retention_days: float = 30,
        max_events: int = 1_000_000,
    ) -> SQLiteJournal:
        """Open (creating if needed) the journal at ``path``; ``":memory:"`` for a throwaway one.

        ``retention_days`` and ``max_events`` bound what :meth:`prune` keeps.
        """
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        try:
            conn = await asyncio.get_running_loop().run_in_executor(executor, _connect, str(path))
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(conn, executor, retention_days=retention_days, max_events=max_events)

    async def close(self) -> None:
        """Commit whatever writes are queued, then close the connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        await self._writer
        await asyncio.get_running_loop().run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown(wait=False)

    async def __aenter__(self) -> SQLiteJournal:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- plumbing --------------------------------------------------------------------------

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise RuntimeError("journal is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, self._conn)

    async def _write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        # If the caller is cancelled after queueing, the op still runs (and may commit); only
        # the answer is dropped. Safe: every write here is idempotent or append-only.
        if self._closed:
            raise RuntimeError("journal is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((op, future))
        return await future

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            item = await self._queue.get()
            if item is None:
                return
            batch = [item]
            # Everything that queued up while the previous commit ran joins this transaction.
            while len(batch) < _MAX_OPS_PER_COMMIT:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            try:
                outcomes = await loop.run_in_executor(
                    self._executor, _commit, self._conn, [op for op, _ in batch]
                )
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:  # the commit failed: nothing in this batch is durable
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.commits += 1
            for (ok, value), (_, future) in zip(outcomes, batch, strict=True):
                if future.done():  # the caller gave up waiting
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    # -- events ----------------------------------------------------------------------------

    async def append(self, events: list[JournalEvent]) -> list[Appended]:
        """Journal ``events`` atomically; durable when this returns.

        Dedupes by ``(source, event_id)``, also within ``events``: a duplicate gets the
        original's seq and ``duplicate=True``. Results are in the order of ``events``.
        Dedupe reaches as far back as retention does: a pruned event is forgotten.
        """
        if not events:
            return []
        results = await self._write(partial(_append_op, list(events)))
        for event, result in zip(events, results, strict=True):
            if not result.duplicate:
                self._parsed.keep(result.seq, event.event)
        return results

    async def mark_processed(
        self, seq: int, orders: list[tuple[str, str | None]], *, stale: bool = False
    ) -> None:
        """Record that event ``seq`` was applied and which ``(sales_order, customer)`` it affected.

        ``stale=True``: the event was older than what was already known; it is kept for the
        order history but had no effect (and is left out of :meth:`changes_after` by default).
        Raises ``KeyError`` for an unknown seq.
        """
        await self._write(partial(_mark_processed_op, seq, list(orders), stale))
        self._parsed.done([seq])

    async def record_processed(self, batch: Sequence[Processed]) -> list[bool]:
        """Record a batch of applied events in one transaction (see ``Journal``); publishes
        nothing (``publishes`` is False). Raises ``KeyError`` for an unknown seq (nothing of
        the batch is then recorded)."""
        if not batch:
            return []
        items = [(p.seq, list(p.orders), p.stale) for p in batch]
        await self._write(partial(_mark_processed_many_op, items))
        self._parsed.done([p.seq for p in batch])
        return [True] * len(batch)

    async def unprocessed(self, limit: int = 1000) -> list[StoredEvent]:
        """Accepted events whose processing never finished (e.g. crash after append), oldest
        first; parked events (dead letters) are not among them."""

        def read(conn: sqlite3.Connection) -> list[StoredEvent]:
            rows = conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events e WHERE e.processed = 0"
                " AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.seq = e.seq)"
                " ORDER BY e.seq LIMIT ?",
                (limit,),
            ).fetchall()
            return [_stored_event(row) for row in rows]

        return [self._parsed.attach(e) for e in await self._read(read)]

    # -- dead letters ----------------------------------------------------------------------

    async def park(self, seq: int, reason: str, *, attempts: int, at: datetime) -> bool:
        """Park event ``seq`` as a dead letter: kept, not processed until replayed.

        Returns False when the event was processed meanwhile (nothing to park). Raises
        ``KeyError`` for an unknown seq. Durable on return."""
        parked = await self._write(partial(_park_op, seq, reason, attempts, _to_us(at, "at")))
        self._parsed.done([seq])
        return parked

    async def parked(self, *, limit: int = 1000, after_seq: int = 0) -> list[ParkedEvent]:
        """Parked events with ``seq > after_seq``, oldest first."""

        def read(conn: sqlite3.Connection) -> list[ParkedEvent]:
            rows = conn.execute(
                f"SELECT {_EVENT_COLUMNS}, d.reason, d.attempts, d.parked_at"
                " FROM dead_letters d JOIN events e ON e.seq = d.seq WHERE d.seq > ? ORDER BY d.seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
            return [
                ParkedEvent(event=_stored_event(row[:11]), reason=row[11], attempts=row[12], parked_at=_from_us(row[13]))
                for row in rows
            ]

        return await self._read(read)

    async def parked_count(self) -> int:
        """How many events are parked."""
        return await self._read(lambda conn: int(conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]))

    async def backlog(self) -> int:
        """Accepted events not processed yet (parked ones excluded): the event backlog."""
        return await self._read(
            lambda conn: int(
                conn.execute(
                    "SELECT count(*) FROM events e WHERE e.processed = 0"
                    " AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.seq = e.seq)"
                ).fetchone()[0]
            )
        )

    async def unpark(self, seqs: list[int] | None = None) -> list[int]:
        """Hand parked events back to the processor (``None``: every one); returns the seqs
        that were parked. The processor takes them in seq order, like any unprocessed event;
        another process on the same file (``ordergraph events replay``) may call this while
        the gateway runs: its processor looks for such work every few seconds."""
        return await self._write(partial(_unpark_op, None if seqs is None else list(seqs)))

    async def changes_after(
        self,
        after_seq: int,
        *,
        sales_order: str | None = None,
        customer: str | None = None,
        limit: int = 1000,
        include_stale: bool = False,
    ) -> list[OrderChangeRow]:
        """(event, order) rows with ``seq > after_seq`` in (seq, sales_order) order.

        Optionally for one ``sales_order`` and/or one ``customer``. Rows exist only for
        processed events. To keep resume gap-free, one event's rows are never split: the
        result may exceed ``limit`` by the remaining rows of its last seq, so resuming from
        the last row's seq misses nothing.
        """
        where = ["c.seq > ?"]
        params: list[Any] = [after_seq]
        if sales_order is not None:
            where.append("c.sales_order = ?")
            params.append(sales_order)
        if customer is not None:
            where.append("c.customer = ?")
            params.append(customer)
        if not include_stale:
            where.append("e.stale = 0")
        select = (
            "SELECT c.seq, c.sales_order, c.customer, e.source, e.type, e.occurred_at, e.stale"
            " FROM order_changes c JOIN events e ON e.seq = c.seq WHERE "
        )

        def read(conn: sqlite3.Connection) -> list[OrderChangeRow]:
            rows = conn.execute(
                select + " AND ".join(where) + " ORDER BY c.seq, c.sales_order LIMIT ?",
                (*params, limit),
            ).fetchall()
            if rows and len(rows) >= limit:
                last_seq, last_order = rows[-1][0], rows[-1][1]
                rows += conn.execute(
                    select
                    + " AND ".join([*where[1:], "c.seq = ?", "c.sales_order > ?"])
                    + " ORDER BY c.sales_order",
                    (*params[1:], last_seq, last_order),
                ).fetchall()
            return [
                OrderChangeRow(
                    seq=seq,
                    sales_order=order,
                    customer=cust,
                    source=source,
                    type=type_,
                    occurred_at=_from_us(occurred),
                    stale=bool(stale),
                )
                for seq, order, cust, source, type_, occurred, stale in rows
            ]

        return await self._read(read)

    async def history(
        self, sales_order: str, *, first: int = 50, after_seq: int | None = None
    ) -> list[StoredEvent]:
        """The order's timeline: events that affected it (stale ones included, flagged).

        Oldest first by business time (``occurred_at``), ties by seq -- the order the plant
        lived it, not the order the gateway heard of it. ``after_seq`` is the seq of the last
        event of the previous page (a position in that order, not a seq threshold); raises
        :class:`UnknownCursor` if it is not (or no longer) in this order's history.
        """

        def read(conn: sqlite3.Connection) -> list[StoredEvent]:
            where = "c.sales_order = ?"
            params: list[Any] = [sales_order]
            if after_seq is not None:
                row = conn.execute(
                    "SELECT e.occurred_at FROM order_changes c JOIN events e ON e.seq = c.seq"
                    " WHERE c.sales_order = ? AND c.seq = ?",
                    (sales_order, after_seq),
                ).fetchone()
                if row is None:
                    raise UnknownCursor(
                        f"seq {after_seq} is not in the history of sales order {sales_order!r}"
                    )
                where += " AND (e.occurred_at, e.seq) > (?, ?)"
                params += [row[0], after_seq]
            rows = conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM order_changes c JOIN events e ON e.seq = c.seq"
                f" WHERE {where} ORDER BY e.occurred_at, e.seq LIMIT ?",  # one order: small sort
                (*params, first),
            ).fetchall()
            return [_stored_event(row) for row in rows]

        return await self._read(read)

    async def get(self, seq: int) -> StoredEvent | None:
        """The event with this seq, or None (never journaled, or pruned)."""

        def read(conn: sqlite3.Connection) -> StoredEvent | None:
            row = conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events e WHERE e.seq = ?", (seq,)
            ).fetchone()
            return None if row is None else _stored_event(row)

        return await self._read(read)

    async def count(self) -> int:
        """Number of events currently retained."""

        def read(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])

        return await self._read(read)

    async def last_seq(self) -> int:
        """The highest seq ever assigned (survives pruning); 0 for a new journal."""
        return await self._read(_last_seq)

    async def oldest_seq(self) -> int:
        """The smallest retained seq, or ``last_seq() + 1`` when nothing is retained.

        A subscriber resuming from cursor ``c`` misses nothing iff ``c >= oldest_seq() - 1``;
        otherwise events after its cursor were pruned and it must be told to start over.
        """

        def read(conn: sqlite3.Connection) -> int:
            (oldest,) = conn.execute("SELECT min(seq) FROM events").fetchone()
            return _last_seq(conn) + 1 if oldest is None else int(oldest)

        return await self._read(read)

    # -- watermarks --------------------------------------------------------------------------

    async def watermark(self, source: str, entity: str, key: str) -> datetime | None:
        """The newest business time seen for one record of one source, or None."""
        value = await self._cached_watermark((source, entity, key))
        return None if value is None else _from_us(value)

    async def advance_watermark(
        self, source: str, entity: str, key: str, occurred_at: datetime
    ) -> bool:
        """Raise the record's watermark to ``occurred_at``; False if the event is stale.

        Stale means strictly older than the stored watermark. An equal time is not stale, so
        replaying an event (resume after a crash) applies again idempotently. Durable on
        return when it advanced; a stale or equal check costs no I/O once the key is cached.
        """
        occurred_us = _to_us(occurred_at, "occurred_at")
        key_ = (source, entity, key)
        current = await self._cached_watermark(key_)
        if current is not None and occurred_us <= current:
            return occurred_us == current
        # Decide and update the cache without awaiting in between, so concurrent callers for
        # the same key see each other's decisions.
        self._remember_watermark(key_, occurred_us)
        try:
            await self._write(partial(_store_watermark_op, key_, occurred_us))
        except Exception:
            self._watermarks.pop(key_, None)  # the table is the truth: reload it next time
            raise
        return True

    async def watermarks(self, keys: Sequence[WatermarkKey]) -> list[datetime | None]:
        """The watermarks of many records: the cached ones at once, the rest in one read."""
        known = await self._cached_watermarks(list(keys))
        return [None if (v := known[k]) is None else _from_us(v) for k in keys]

    async def advance_watermarks(self, marks: Sequence[tuple[WatermarkKey, datetime]]) -> list[bool]:
        """``advance_watermark`` for each mark, decided in order, stored in one transaction."""
        if not marks:
            return []
        known = await self._cached_watermarks([k for k, _ in marks])
        out: list[bool] = []
        stored: dict[WatermarkKey, int] = {}
        for key, occurred_at in marks:
            occurred_us = _to_us(occurred_at, "occurred_at")
            current = known[key]
            if current is not None and occurred_us <= current:
                out.append(occurred_us == current)
                continue
            known[key] = stored[key] = occurred_us
            self._remember_watermark(key, occurred_us)
            out.append(True)
        if stored:
            try:
                await self._write(partial(_store_watermarks_op, list(stored.items())))
            except Exception:
                for key in stored:
                    self._watermarks.pop(key, None)  # the table is the truth: reload it next time
                raise
        return out

    async def _cached_watermarks(self, keys: list[WatermarkKey]) -> dict[WatermarkKey, int | None]:
        cache = self._watermarks
        known: dict[WatermarkKey, int | None] = {}
        missing = []
        for key in dict.fromkeys(keys):
            if key in cache:
                cache.move_to_end(key)
                known[key] = cache[key]
            else:
                missing.append(key)
        if missing:
            # Through the writer queue, as _cached_watermark does (it sees queued writes).
            found = await self._write(partial(_read_watermarks_op, missing))
            for key, value in zip(missing, found, strict=True):
                if key in cache:  # a concurrent caller's value is at least as new
                    value = cache[key]
                known[key] = value
                self._remember_watermark(key, value)
        return known

    async def cap_watermarks(self, ceiling: datetime, to: datetime) -> int:
        """Lower every watermark later than ``ceiling`` to ``to``; returns how many.

        A watermark far in the future (an event with a wrong clock, journaled before the
        door checked ``time``) would mark every real event of its record as stale."""
        ceiling_us, to_us = _to_us(ceiling, "ceiling"), _to_us(to, "to")

        def op(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE watermarks SET occurred_at = ? WHERE occurred_at > ?", (to_us, ceiling_us)
            ).rowcount

        lowered = await self._write(op)
        if lowered:
            self._watermarks.clear()  # the table is the truth
        return lowered

    async def _cached_watermark(self, key: _WatermarkKey) -> int | None:
        cache = self._watermarks
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        # Read through the writer queue, not straight from the executor: it then sees every
        # watermark write queued before it, which makes evicting cache entries always safe.
        stored = await self._write(partial(_read_watermark_op, key))
        if key in cache:  # a concurrent caller filled it meanwhile; theirs is at least as new
            return cache[key]
        self._remember_watermark(key, stored)
        return stored

    def _remember_watermark(self, key: _WatermarkKey, value: int | None) -> None:
        cache = self._watermarks
        if key not in cache:
            # Held for as long as the record stays among the 100,000 last touched: the
            # source's and entity's names shared (a handful of them), not two new strings
            # from each event's JSON per entry (349 -> 226 bytes an entry).
            source, entity, record = key
            key = (sys.intern(source), sys.intern(entity), record)
        cache[key] = value
        cache.move_to_end(key)
        if len(cache) > _WATERMARK_CACHE_SIZE:
            cache.popitem(last=False)

    # -- exceptions --------------------------------------------------------------------------

    async def record_exception_transition(
        self,
        exception_id: str,
        kind: str,
        action: Literal["RAISED", "CLEARED"],
        payload: dict[str, Any],
        at: datetime,
        fingerprint: str = "",
    ) -> int:
        """Append a RAISED/CLEARED step of an exception; returns its cursor (durable on return).

        Cursors are their own monotonic sequence (table ``exception_transitions``), separate
        from event seqs. ``fingerprint`` matters only to journals shared by several
        replicas (``RedisJournal``): one process is the only writer here.
        """
        if action not in ("RAISED", "CLEARED"):
            raise ValueError(f"action must be 'RAISED' or 'CLEARED', got {action!r}")
        at_us = _to_us(at, "at")
        return await self._write(
            partial(_exception_op, exception_id, kind, action, _json(payload), at_us)
        )

    async def exception_transitions_after(
        self, after: int, limit: int = 1000
    ) -> list[ExceptionTransition]:
        """Exception transitions with ``cursor > after``, oldest first."""

        def read(conn: sqlite3.Connection) -> list[ExceptionTransition]:
            rows = conn.execute(
                "SELECT cursor, exception_id, kind, action, payload, at"
                " FROM exception_transitions WHERE cursor > ? ORDER BY cursor LIMIT ?",
                (after, limit),
            ).fetchall()
            return [_transition(*row) for row in rows]

        return await self._read(read)

    async def cleared_exceptions_before(self, before: int | None, limit: int = 1000) -> list[ExceptionTransition]:
        """CLEARED transitions with ``cursor < before`` (None: every one), newest first: the
        exception tracker's start reads the recently cleared exceptions from the log's end
        instead of reading (and parsing) the whole log, which grows with the plant's history."""

        def read(conn: sqlite3.Connection) -> list[ExceptionTransition]:
            rows = conn.execute(
                "SELECT cursor, exception_id, kind, action, payload, at FROM exception_transitions"
                " WHERE action = 'CLEARED' AND cursor < ? ORDER BY cursor DESC LIMIT ?",
                (2**62 if before is None else before, limit),
            ).fetchall()
            return [_transition(*row) for row in rows]

        return await self._read(read)

    async def last_exception_cursor(self) -> int:
        """The cursor of the latest exception transition (0 when there is none)."""

        def read(conn: sqlite3.Connection) -> int:
            (last,) = conn.execute("SELECT max(cursor) FROM exception_transitions").fetchone()
            return int(last or 0)

        return await self._read(read)

    async def open_exceptions(self) -> dict[str, dict[str, Any]]:
        """Exceptions whose latest transition is RAISED: id -> latest payload, oldest first."""

        def read(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
            rows = conn.execute(
                "SELECT o.exception_id, t.payload FROM open_exception_cursors o"
                " JOIN exception_transitions t ON t.cursor = o.cursor ORDER BY o.cursor"
            ).fetchall()
            return {exception_id: orjson.loads(payload) for exception_id, payload in rows}

        return await self._read(read)

    # -- retention ---------------------------------------------------------------------------

    async def prune(self, now: datetime) -> int:
        """Delete processed events received before ``now - retention_days``, then the oldest
        processed ones beyond ``max_events``; returns how many events were deleted.

        Unprocessed events are never deleted. Works in slices so appends interleave. The
        exception log and watermarks are not pruned (both are small and must stay true).
        """
        cutoff_us = _to_us(now - timedelta(days=self.retention_days), "now")
        total = 0
        while True:
            deleted = await self._write(partial(_prune_slice_op, cutoff_us, self.max_events))
            total += deleted
            if deleted < _PRUNE_SLICE:
                return total


def _transition(cursor: int, exception_id: str, kind: str, action: Any, payload: bytes, at: int) -> ExceptionTransition:
    return ExceptionTransition(
        cursor=cursor, exception_id=exception_id, kind=kind, action=action, payload=orjson.loads(payload), at=_from_us(at)
    )


def _last_seq(conn: sqlite3.Connection) -> int:
    # sqlite_sequence keeps AUTOINCREMENT's high-water mark even when those rows are gone.
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return 0 if row is None else int(row[0])

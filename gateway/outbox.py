"""The notices outbox: what each customer was told, notices decided, their deliveries.

One SQLite file (WAL, ``synchronous=FULL``), one connection on one worker thread. The
step that decides a notice writes the order's new state and the notice in ONE
transaction (``record``): a crash either keeps both or neither, so a decided notice is
never lost and never decided twice.

Tables:
- ``order_state``: per order, what its customer was last told (``NoticeState`` JSON).
- ``notices``: one row per notice, keyed by its id (the idempotency key: ``webhook-id``,
  ``Message-ID``). ``waiting`` while in its debounce window (later decisions for the same
  customer and order fold into it), then ``released`` with one delivery per endpoint
  (``no_endpoint`` when the customer has none), or ``cancelled`` when folding left
  nothing to say.
- ``deliveries``: one per notice and endpoint: ``pending`` (attempts, next attempt time,
  last error) → ``sent`` | ``dead`` (a dead letter; ``replay`` makes it pending again).
- ``endpoints``: customers' webhook URLs and email addresses, with the kinds of notice
  they want; customer ``""`` holds the internal endpoints from ``[notices]``.
- ``watch``: CRITICAL exceptions seen unacknowledged, since when, and whether told.

Times are wall-clock seconds since the epoch (floats).
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import sqlite3
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

T = TypeVar("T")
INTERNAL = ""  # the customer id of internal endpoints and notices

_SCHEMA = """
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS order_state (
    sales_order TEXT PRIMARY KEY,
    customer TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS notices (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    customer TEXT NOT NULL,
    subject TEXT NOT NULL,
    items TEXT NOT NULL,
    context TEXT NOT NULL,
    decisions INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL,
    send_at REAL NOT NULL,
    status TEXT NOT NULL,
    released_at REAL
);
CREATE INDEX IF NOT EXISTS notices_subject ON notices (customer, subject, status);
CREATE INDEX IF NOT EXISTS notices_due ON notices (status, send_at);
CREATE TABLE IF NOT EXISTS endpoints (
    id TEXT PRIMARY KEY,
    customer TEXT NOT NULL,
    channel TEXT NOT NULL,
    target TEXT NOT NULL,
    secret TEXT NOT NULL,
    language TEXT,
    kinds TEXT NOT NULL,
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS endpoints_customer ON endpoints (customer);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    notice_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    target TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    sent_at REAL,
    UNIQUE (notice_id, endpoint_id)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_at);
CREATE TABLE IF NOT EXISTS watch (
    exception_id TEXT PRIMARY KEY,
    since REAL NOT NULL,
    notified INTEGER NOT NULL DEFAULT 0
);
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a customer (or the plant, customer ``""``) wants notices."""

    id: str
    customer: str
    channel: str  # "webhook" | "email"
    target: str  # URL or address
    secret: str  # whsec_… for webhooks; "" for email
    language: str | None
    kinds: tuple[str, ...]
    created_at: float
    created_by: str

    @classmethod
    def new(
        cls,
        customer: str,
        channel: str,
        target: str,
        *,
        kinds: Iterable[str],
        language: str | None,
        created_by: str,
        now: float,
        endpoint_id: str | None,
        secret: str | None,
    ) -> Endpoint:
        """A new endpoint (both outboxes' ``add_endpoint``): an id unless given, and a fresh
        signing secret for a webhook unless given."""
        return cls(
            id=endpoint_id or f"ep_{uuid.uuid4().hex[:16]}",
            customer=customer,
            channel=channel,
            target=target,
            secret=(secret or new_secret()) if channel == "webhook" else "",
            language=language,
            kinds=tuple(kinds),
            created_at=now,
            created_by=created_by,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    notice_id: str
    endpoint_id: str
    channel: str
    target: str
    status: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    sent_at: float | None


@dataclasses.dataclass(frozen=True, slots=True)
class Notice:
    id: str
    seq: int
    customer: str
    subject: str  # the sales order (or, internal, the exception id)
    items: list[dict[str, Any]]
    context: dict[str, Any]
    decisions: int
    created_at: float
    send_at: float
    status: str
    released_at: float | None

    @property
    def kinds(self) -> list[str]:
        return [i["kind"] for i in self.items]


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """One order's new state and, when there is something to tell, the notice items."""

    sales_order: str
    customer: str
    state: dict[str, Any]
    items: list[dict[str, Any]]
    context: dict[str, Any]
    # The state this decision was made against (None: the order had none). A shared
    # outbox (gateway/redis_outbox.py) applies a decision only if the state is still
    # this one, so replicas deciding on the same event decide once.
    expected: dict[str, Any] | None = None


Merge = Callable[[list[dict[str, Any]], list[dict[str, Any]]], list[dict[str, Any]]]


def new_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` + base64 of 24 random bytes."""
    import base64

    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def new_notice_id() -> str:
    return f"ntc_{uuid.uuid4().hex}"


class Outbox:
    """The SQLite outbox; every method is a coroutine run on the store's own thread."""

    def __init__(self, conn: sqlite3.Connection, executor: ThreadPoolExecutor, path: str) -> None:
        self._conn = conn
        self._executor = executor
        self.path = path

    @classmethod
    async def open(cls, path: str) -> Outbox:
        """Open (creating) the outbox at ``path`` (``:memory:`` for tests)."""
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.executescript(_SCHEMA)
            conn.execute("PRAGMA synchronous = FULL")
            return conn

        conn = await asyncio.get_running_loop().run_in_executor(executor, connect)
        return cls(conn, executor, path)

    async def close(self) -> None:
        await self._run(lambda c: c.close())
        self._executor.shutdown(wait=False)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, self._conn)

    async def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run(c: sqlite3.Connection) -> T:
            c.execute("BEGIN IMMEDIATE")
            try:
                out = fn(c)
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")
            return out

        return await self._run(run)

    # --- order state and decisions ------------------------------------------------------

    async def states(self, sales_orders: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The last-told state of each of ``sales_orders`` that has one."""
        ids = list(sales_orders)

        def read(c: sqlite3.Connection) -> dict[str, dict[str, Any]]:
            out = {}
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                q = f"SELECT sales_order, state FROM order_state WHERE sales_order IN ({','.join('?' * len(chunk))})"
                out.update({so: orjson.loads(st) for so, st in c.execute(q, chunk)})
            return out

        return await self._run(read)

    async def record(self, decisions: list[Decision], now: float, window: float, merge: Merge) -> list[str]:
        """Write every order's new state and its notice, in ONE transaction.

        A notice for a customer and order that already has one waiting (in its debounce
        window) is folded into that one (``merge``); otherwise it is due at once, or when
        the window after the last released one ends. Returns the ids of notices written."""

        def write(c: sqlite3.Connection) -> list[str]:
            ids = []
            for d in decisions:
                c.execute(
                    "INSERT INTO order_state (sales_order, customer, state, updated_at) VALUES (?,?,?,?) "
                    "ON CONFLICT (sales_order) DO UPDATE SET customer=excluded.customer, state=excluded.state, "
                    "updated_at=excluded.updated_at",
                    (d.sales_order, d.customer, orjson.dumps(d.state).decode(), now),
                )
                if d.items:
                    ids.append(_add_notice(c, d.customer, d.sales_order, d.items, d.context, now, window, merge))
            return ids

        return await self._tx(write)

    async def add_internal(self, subject: str, items: list[dict[str, Any]], context: dict[str, Any], now: float) -> str:
        """An internal notice (not debounced: the caller decides once per subject)."""

        def write(c: sqlite3.Connection) -> str:
            nid = new_notice_id()
            c.execute(
                "INSERT INTO notices (id, customer, subject, items, context, created_at, send_at, status) "
                "VALUES (?,?,?,?,?,?,?, 'waiting')",
                (nid, INTERNAL, subject, orjson.dumps(items).decode(), orjson.dumps(context).decode(), now, now),
            )
            return nid

        return await self._tx(write)

    # --- release and delivery ----------------------------------------------------------

    async def release_due(self, now: float) -> int:
        """Notices whose window is over get one pending delivery per endpoint that wants
        one of their kinds. Returns the number of notices released."""

        def release(c: sqlite3.Connection) -> int:
            rows = c.execute(
                "SELECT id, customer, items FROM notices WHERE status='waiting' AND send_at <= ? ORDER BY seq LIMIT 500",
                (now,),
            ).fetchall()
            for nid, customer, items in rows:
                kinds = {i["kind"] for i in orjson.loads(items)}
                endpoints = [
                    e for e in _endpoints(c, customer) if not e.kinds or kinds & set(e.kinds)
                ]
                for e in endpoints:
                    c.execute(
                        "INSERT OR IGNORE INTO deliveries (notice_id, endpoint_id, channel, target, status, next_attempt_at) "
                        "VALUES (?,?,?,?, 'pending', ?)",
                        (nid, e.id, e.channel, e.target, now),
                    )
                c.execute(
                    "UPDATE notices SET status=?, released_at=? WHERE id=?",
                    ("released" if endpoints else "no_endpoint", now, nid),
                )
            return len(rows)

        return await self._tx(release)

    async def due(self, now: float, limit: int = 50) -> list[tuple[Delivery, Notice, Endpoint | None]]:
        """Pending deliveries whose attempt is due, with their notice and endpoint."""

        def read(c: sqlite3.Connection) -> list[tuple[Delivery, Notice, Endpoint | None]]:
            rows = c.execute(
                f"SELECT {_DELIVERY_COLS} FROM deliveries WHERE status='pending' AND next_attempt_at <= ? "
                "ORDER BY next_attempt_at, id LIMIT ?",
                (now, limit),
            ).fetchall()
            out = []
            for row in rows:
                d = Delivery(*row)
                notice = _notice(c, d.notice_id)
                if notice is None:
                    continue
                out.append((d, notice, _endpoint(c, d.endpoint_id)))
            return out

        return await self._run(read)

    async def next_due(self) -> float | None:
        """When the next pending delivery or waiting notice falls due."""

        def read(c: sqlite3.Connection) -> float | None:
            a = c.execute("SELECT MIN(next_attempt_at) FROM deliveries WHERE status='pending'").fetchone()[0]
            b = c.execute("SELECT MIN(send_at) FROM notices WHERE status='waiting'").fetchone()[0]
            times = [t for t in (a, b) if t is not None]
            return min(times) if times else None

        return await self._run(read)

    async def mark_sent(self, delivery_id: int, now: float) -> None:
        await self._tx(
            lambda c: c.execute(
                "UPDATE deliveries SET status='sent', sent_at=?, attempts=attempts+1, last_error=NULL WHERE id=?",
                (now, delivery_id),
            )
        )

    async def mark_failed(self, delivery_id: int, error: str, next_attempt_at: float | None) -> None:
        """One failed attempt: retried at ``next_attempt_at``, or dead (None)."""
        status = "dead" if next_attempt_at is None else "pending"
        await self._tx(
            lambda c: c.execute(
                "UPDATE deliveries SET status=?, attempts=attempts+1, last_error=?, next_attempt_at=? WHERE id=?",
                (status, error[:500], next_attempt_at if next_attempt_at is not None else 0.0, delivery_id),
            )
        )

    async def dead(self, limit: int = 100) -> list[tuple[Delivery, Notice]]:
        """Dead letters: deliveries that failed every attempt, oldest first."""

        def read(c: sqlite3.Connection) -> list[tuple[Delivery, Notice]]:
            rows = c.execute(
                f"SELECT {_DELIVERY_COLS} FROM deliveries WHERE status='dead' ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
            out = []
            for row in rows:
                d = Delivery(*row)
                n = _notice(c, d.notice_id)
                if n is not None:
                    out.append((d, n))
            return out

        return await self._run(read)

    async def replay(self, delivery_ids: list[int] | None, now: float) -> int:
        """Dead deliveries (all when ``delivery_ids`` is None) go back to pending, due now,
        with their attempts counted afresh. Returns how many."""

        def write(c: sqlite3.Connection) -> int:
            if delivery_ids is None:
                cur = c.execute(
                    "UPDATE deliveries SET status='pending', attempts=0, next_attempt_at=? WHERE status='dead'", (now,)
                )
            else:
                cur = c.execute(
                    f"UPDATE deliveries SET status='pending', attempts=0, next_attempt_at=? "
                    f"WHERE status='dead' AND id IN ({','.join('?' * len(delivery_ids))})",
                    (now, *delivery_ids),
                )
            return cur.rowcount

        return await self._tx(write)

    async def counts(self) -> dict[str, int]:
        """Deliveries by state (``retrying`` = pending after a failed attempt) and notices
        waiting in their window."""

        def read(c: sqlite3.Connection) -> dict[str, int]:
            out = {"pending": 0, "retrying": 0, "sent": 0, "dead": 0}
            for status, retrying, n in c.execute(
                "SELECT status, attempts > 0, COUNT(*) FROM deliveries GROUP BY status, attempts > 0"
            ):
                out[status] = out.get(status, 0) + n
                if status == "pending" and retrying:
                    out["retrying"] += n
            out["waiting"] = c.execute("SELECT COUNT(*) FROM notices WHERE status='waiting'").fetchone()[0]
            return out

        return await self._run(read)

    # --- reading notices ---------------------------------------------------------------

    async def notices(
        self, customer: str | None, *, subject: str | None = None, limit: int = 50
    ) -> list[tuple[Notice, list[Delivery]]]:
        """Newest first: one customer's (``customer``), or everyone's (None)."""

        def read(c: sqlite3.Connection) -> list[tuple[Notice, list[Delivery]]]:
            where, args = [], []
            if customer is not None:
                where.append("customer = ?")
                args.append(customer)
            if subject is not None:
                where.append("subject = ?")
                args.append(subject)
            sql = f"SELECT {_NOTICE_COLS} FROM notices"
            if where:
                sql += " WHERE " + " AND ".join(where)
            rows = c.execute(sql + " ORDER BY seq DESC LIMIT ?", (*args, limit)).fetchall()
            out = []
            for row in rows:
                n = _notice_of(row)
                ds = [
                    Delivery(*r)
                    for r in c.execute(f"SELECT {_DELIVERY_COLS} FROM deliveries WHERE notice_id=? ORDER BY id", (n.id,))
                ]
                out.append((n, ds))
            return out

        return await self._run(read)

    # --- endpoints -----------------------------------------------------------------------

    async def add_endpoint(
        self,
        customer: str,
        channel: str,
        target: str,
        *,
        kinds: Iterable[str] = (),
        language: str | None = None,
        created_by: str = "",
        now: float,
        endpoint_id: str | None = None,
        secret: str | None = None,
    ) -> Endpoint:
        """Register an endpoint (an id given and known: replaced)."""
        e = Endpoint.new(
            customer, channel, target, kinds=kinds, language=language, created_by=created_by, now=now,
            endpoint_id=endpoint_id, secret=secret,
        )  # fmt: skip

        def write(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT OR REPLACE INTO endpoints (id, customer, channel, target, secret, language, kinds, created_at, created_by) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                (e.id, e.customer, e.channel, e.target, e.secret, e.language, orjson.dumps(list(e.kinds)).decode(), now, created_by),
            )

        await self._tx(write)
        return e

    async def endpoints(self, customer: str | None) -> list[Endpoint]:
        """One customer's endpoints (``INTERNAL`` for the plant's), or all (None)."""
        return await self._run(lambda c: _endpoints(c, customer))

    async def endpoint(self, endpoint_id: str) -> Endpoint | None:
        return await self._run(lambda c: _endpoint(c, endpoint_id))

    async def update_endpoint(self, endpoint_id: str, *, kinds: Iterable[str] | None, language: str | None | bool) -> None:
        """Change what an endpoint wants (``language=False``: leave it)."""

        def write(c: sqlite3.Connection) -> None:
            if kinds is not None:
                c.execute("UPDATE endpoints SET kinds=? WHERE id=?", (orjson.dumps(list(kinds)).decode(), endpoint_id))
            if language is not False:
                c.execute("UPDATE endpoints SET language=? WHERE id=?", (language, endpoint_id))

        await self._tx(write)

    async def remove_endpoint(self, endpoint_id: str) -> bool:
        """Remove an endpoint; its pending deliveries are dropped (nobody to send them to)."""

        def write(c: sqlite3.Connection) -> bool:
            gone = c.execute("DELETE FROM endpoints WHERE id=?", (endpoint_id,)).rowcount > 0
            c.execute(
                "UPDATE deliveries SET status='dropped', last_error='endpoint removed' "
                "WHERE endpoint_id=? AND status IN ('pending', 'dead')",
                (endpoint_id,),
            )
            return gone

        return await self._tx(write)

    # --- CRITICAL exceptions watched -----------------------------------------------------

    async def watch(self, unacknowledged: set[str], now: float, after: float) -> list[tuple[str, float]]:
        """Keep ``unacknowledged`` (CRITICAL, open, not acknowledged) in view; forget the
        rest. Returns (exception id, since) of those unacknowledged for ``after`` seconds
        and not yet told, marking them told, in one transaction with nothing else: the
        caller writes their notices next (``add_internal``)."""

        def write(c: sqlite3.Connection) -> list[tuple[str, float]]:
            known = {eid for (eid,) in c.execute("SELECT exception_id FROM watch")}
            for eid in known - unacknowledged:
                c.execute("DELETE FROM watch WHERE exception_id=?", (eid,))
            for eid in unacknowledged - known:
                c.execute("INSERT INTO watch (exception_id, since) VALUES (?,?)", (eid, now))
            due = c.execute(
                "SELECT exception_id, since FROM watch WHERE notified=0 AND since <= ?", (now - after,)
            ).fetchall()
            for eid, _since in due:
                c.execute("UPDATE watch SET notified=1 WHERE exception_id=?", (eid,))
            return [(eid, since) for eid, since in due]

        return await self._tx(write)


_DELIVERY_COLS = "id, notice_id, endpoint_id, channel, target, status, attempts, next_attempt_at, last_error, sent_at"
_NOTICE_COLS = "id, seq, customer, subject, items, context, decisions, created_at, send_at, status, released_at"
_ENDPOINT_COLS = "id, customer, channel, target, secret, language, kinds, created_at, created_by"


def _notice_of(row: tuple) -> Notice:
    nid, seq, customer, subject, items, context, decisions, created, send_at, status, released = row
    return Notice(nid, seq, customer, subject, orjson.loads(items), orjson.loads(context), decisions, created, send_at, status, released)


def _notice(c: sqlite3.Connection, notice_id: str) -> Notice | None:
    row = c.execute(f"SELECT {_NOTICE_COLS} FROM notices WHERE id=?", (notice_id,)).fetchone()
    return _notice_of(row) if row else None


def _endpoint_of(row: tuple) -> Endpoint:
    eid, customer, channel, target, secret, language, kinds, created, by = row
    return Endpoint(eid, customer, channel, target, secret, language, tuple(orjson.loads(kinds)), created, by)


def _endpoint(c: sqlite3.Connection, endpoint_id: str) -> Endpoint | None:
    row = c.execute(f"SELECT {_ENDPOINT_COLS} FROM endpoints WHERE id=?", (endpoint_id,)).fetchone()
    return _endpoint_of(row) if row else None


def _endpoints(c: sqlite3.Connection, customer: str | None) -> list[Endpoint]:
    if customer is None:
        rows = c.execute(f"SELECT {_ENDPOINT_COLS} FROM endpoints ORDER BY created_at, id")
    else:
        rows = c.execute(f"SELECT {_ENDPOINT_COLS} FROM endpoints WHERE customer=? ORDER BY created_at, id", (customer,))
    return [_endpoint_of(r) for r in rows]


def _add_notice(
    c: sqlite3.Connection,
    customer: str,
    subject: str,
    items: list[dict[str, Any]],
    context: dict[str, Any],
    now: float,
    window: float,
    merge: Merge,
) -> str:
    waiting = c.execute(
        "SELECT id, items FROM notices WHERE customer=? AND subject=? AND status='waiting' ORDER BY seq DESC LIMIT 1",
        (customer, subject),
    ).fetchone()
    if waiting is not None:
        nid, old = waiting
        merged = merge(orjson.loads(old), items)
        c.execute(
            "UPDATE notices SET items=?, context=?, decisions=decisions+1, status=? WHERE id=?",
            (orjson.dumps(merged).decode(), orjson.dumps(context).decode(), "waiting" if merged else "cancelled", nid),
        )
        return nid
    last = c.execute(
        "SELECT MAX(released_at) FROM notices WHERE customer=? AND subject=? AND status IN ('released', 'no_endpoint')",
        (customer, subject),
    ).fetchone()[0]
    send_at = now if last is None else max(now, last + window)
    nid = new_notice_id()
    c.execute(
        "INSERT INTO notices (id, customer, subject, items, context, created_at, send_at, status) VALUES (?,?,?,?,?,?,?, 'waiting')",
        (nid, customer, subject, orjson.dumps(merge([], items)).decode(), orjson.dumps(context).decode(), now, send_at),
    )
    return nid

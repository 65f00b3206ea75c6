"""Durable workflow state: exception workflow, order escalations, the audit trail and the
client mutation ids already answered. Two implementations of one protocol:

- ``SQLiteWorkflowStore`` (the embedded default): a file next to the journal
  (``var/journal.sqlite`` → ``var/workflow.sqlite``). Each command is one ``BEGIN
  IMMEDIATE`` transaction on the store's own worker thread, so two processes on the same
  file act one after the other; WAL + ``synchronous=FULL``: a committed action survives a
  crash.
- ``RedisWorkflowStore`` (several replicas, ``[scaleout] redis_url``): the same data under
  ``<key_prefix>workflow:``. A command reads its idempotency key and its target's state in
  one MULTI, is decided in Python (``resolvers.workflow.decide``), and is stored by one Lua
  script that first checks the target's state is still the one it was decided on
  (compare-and-set) and the id still unanswered; otherwise it is decided again on the new
  state. Only commands on the same exception (or order) contend, and within one replica
  those wait their turn on a lock. The script also publishes on
  ``<key_prefix>workflow:changed`` so every replica pushes the change to its subscribers.

Why Redis and not PostgreSQL for the shared store: the data is a handful of small
documents per exception and an append-only trail, read by id or by order, never joined or
queried ad hoc; the replicas already share a Redis (journal, bus, fence), and optimistic
MULTI/EXEC gives the one property needed (each command decided on the latest state) with
nothing new to run.

The audit trail is numbered 1, 2, 3, … store-wide (``seq``); ``entries_after(seq)`` is how
a replica catches up on what others did.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson

from resolvers.workflow import (
    AuditEntry,
    Command,
    Escalation,
    ExceptionWorkflow,
    Outcome,
    WorkflowRefused,
    decide,
    result_json,
)

T = TypeVar("T")

MAX_ATTEMPTS = 100  # optimistic retries of one command when other replicas act on the same target (Redis)


def _conflict(cmd: Command) -> WorkflowRefused:
    return WorkflowRefused(
        f"clientMutationId {cmd.client_mutation_id!r} was already used for a different input; "
        "send a new id for a new action.",
        "IDEMPOTENCY_CONFLICT",
    )


class WorkflowStore(Protocol):
    """Where workflow state lives; every method is safe to call from several replicas."""

    async def act(self, cmd: Command) -> Outcome:
        """Decide ``cmd`` on the latest state and store state, audit entry and result in one
        atomic step; or replay the result first stored under its client mutation id."""
        ...

    async def state(self, exception_id: str) -> ExceptionWorkflow | None: ...

    async def states(self) -> dict[str, ExceptionWorkflow]: ...

    async def escalations(self) -> dict[str, Escalation]: ...

    async def trail(self, exception_id: str) -> list[AuditEntry]: ...

    async def order_trail(self, sales_order: str) -> list[AuditEntry]: ...

    async def entries_after(self, seq: int, limit: int = 500) -> list[AuditEntry]: ...

    async def last_seq(self) -> int: ...

    async def close(self) -> None: ...


# --- SQLite ----------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS workflow_state (exception_id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS escalation (sales_order TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY, exception_id TEXT, target TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_by_target ON audit (target, seq);
CREATE TABLE IF NOT EXISTS audit_order (sales_order TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (sales_order, seq));
CREATE TABLE IF NOT EXISTS idempotency (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, result TEXT NOT NULL);
"""


class SQLiteWorkflowStore:
    """The embedded store: one SQLite file, one connection on one worker thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ordergraph-workflow")
        self._conn: sqlite3.Connection | None = None

    @classmethod
    async def open(cls, path: str) -> SQLiteWorkflowStore:
        store = cls(path)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        await store._run(store._connect)
        return store

    def _connect(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(_SCHEMA)
        self._conn = conn

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def close(self) -> None:
        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self._run(shut)
        self._executor.shutdown(wait=True)

    # --- writes ----------------------------------------------------------------------

    async def act(self, cmd: Command) -> Outcome:
        return await self._run(self._act, cmd)

    def _act(self, cmd: Command) -> Outcome:
        conn = self._conn
        assert conn is not None, "workflow store closed"
        key = cmd.idempotency_key()
        conn.execute("BEGIN IMMEDIATE")  # the write lock first: decide on the latest state
        try:
            row = conn.execute("SELECT fingerprint, result FROM idempotency WHERE key = ?", (key,)).fetchone()
            if row is not None:
                conn.execute("ROLLBACK")
                if row[0] != cmd.fingerprint():
                    raise _conflict(cmd)
                return Outcome.from_json(orjson.loads(row[1]), replayed=True)
            workflow = escalation = None
            if cmd.exception_id is not None:
                r = conn.execute("SELECT body FROM workflow_state WHERE exception_id = ?", (cmd.exception_id,)).fetchone()
                workflow = ExceptionWorkflow.from_json(orjson.loads(r[0])) if r else None
            if cmd.sales_order is not None:
                r = conn.execute("SELECT body FROM escalation WHERE sales_order = ?", (cmd.sales_order,)).fetchone()
                escalation = Escalation.from_json(orjson.loads(r[0])) if r else None
            decision = decide(cmd, workflow, escalation)
            seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM audit").fetchone()[0]
            result = result_json(decision, seq)
            conn.execute(
                "INSERT INTO audit (seq, exception_id, target, body) VALUES (?, ?, ?, ?)",
                (seq, cmd.exception_id, cmd.target, orjson.dumps(result["entry"]).decode()),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO audit_order (sales_order, seq) VALUES (?, ?)",
                [(so, seq) for so in decision.entry.sales_orders],
            )
            if decision.workflow is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO workflow_state (exception_id, body) VALUES (?, ?)",
                    (cmd.exception_id, orjson.dumps(result["workflow"]).decode()),
                )
            if decision.escalation is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO escalation (sales_order, body) VALUES (?, ?)",
                    (cmd.sales_order, orjson.dumps(result["escalation"]).decode()),
                )
            conn.execute(
                "INSERT INTO idempotency (key, fingerprint, result) VALUES (?, ?, ?)",
                (key, cmd.fingerprint(), orjson.dumps(result).decode()),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return Outcome.from_json(result, replayed=False)

    # --- reads -----------------------------------------------------------------------

    def _all(self, sql: str, *args: Any) -> list[tuple]:
        assert self._conn is not None, "workflow store closed"
        return self._conn.execute(sql, args).fetchall()

    async def state(self, exception_id: str) -> ExceptionWorkflow | None:
        rows = await self._run(self._all, "SELECT body FROM workflow_state WHERE exception_id = ?", exception_id)
        return ExceptionWorkflow.from_json(orjson.loads(rows[0][0])) if rows else None

    async def states(self) -> dict[str, ExceptionWorkflow]:
        rows = await self._run(self._all, "SELECT body FROM workflow_state")
        out = (ExceptionWorkflow.from_json(orjson.loads(r[0])) for r in rows)
        return {w.exception_id: w for w in out}

    async def escalations(self) -> dict[str, Escalation]:
        rows = await self._run(self._all, "SELECT body FROM escalation")
        out = (Escalation.from_json(orjson.loads(r[0])) for r in rows)
        return {e.sales_order: e for e in out}

    async def trail(self, exception_id: str) -> list[AuditEntry]:
        rows = await self._run(self._all, "SELECT body FROM audit WHERE target = ? ORDER BY seq", exception_id)
        return [AuditEntry.from_json(orjson.loads(r[0])) for r in rows]

    async def order_trail(self, sales_order: str) -> list[AuditEntry]:
        rows = await self._run(
            self._all,
            "SELECT a.body FROM audit_order o JOIN audit a ON a.seq = o.seq WHERE o.sales_order = ? ORDER BY o.seq",
            sales_order,
        )
        return [AuditEntry.from_json(orjson.loads(r[0])) for r in rows]

    async def entries_after(self, seq: int, limit: int = 500) -> list[AuditEntry]:
        rows = await self._run(self._all, "SELECT body FROM audit WHERE seq > ? ORDER BY seq LIMIT ?", seq, limit)
        return [AuditEntry.from_json(orjson.loads(r[0])) for r in rows]

    async def last_seq(self) -> int:
        rows = await self._run(self._all, "SELECT COALESCE(MAX(seq), 0) FROM audit")
        return int(rows[0][0])


# --- Redis -----------------------------------------------------------------------------------


# One action, atomically: store it only if the target's state is still what the command
# was decided on (compare-and-set on the raw value) and its client mutation id is still
# unanswered; then number it (INCR), append it to the log, the target's trail and each
# order's history, write the state and the result under the id, and wake every replica.
# Returns the new seq; 0 when the state changed (decide again); -1 when the id was answered.
_ACT = """
local current = redis.call('HGET', KEYS[2], ARGV[1])
if not current then current = '' end
if current ~= ARGV[2] then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
local seq = redis.call('INCR', KEYS[1])
local entry = '{"seq":' .. seq .. ',' .. string.sub(ARGV[4], 10)
redis.call('RPUSH', KEYS[4], entry)
redis.call('RPUSH', KEYS[5], entry)
for i = 7, #KEYS do redis.call('RPUSH', KEYS[i], entry) end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('SET', KEYS[3], '{"fingerprint":"' .. ARGV[5] .. '","result":{"entry":' .. entry .. ',' .. ARGV[6] .. '}}')
redis.call('PUBLISH', KEYS[6], seq)
return seq
"""


class RedisWorkflowStore:
    """The shared store of several replicas: hashes and lists under ``<prefix>workflow:``."""

    def __init__(self, url: str, *, prefix: str) -> None:
        import redis.asyncio as redis

        self.url = url
        self.base = f"{prefix}workflow:"
        self.channel = f"{self.base}changed"
        self.conflicts = 0  # EXECs that failed because another replica wrote first
        self._client = redis.from_url(url)
        self._seq = f"{self.base}seq"
        self._state = f"{self.base}state"
        self._escalation = f"{self.base}escalation"
        self._log = f"{self.base}log"  # every entry, index seq-1
        self._script = self._client.register_script(_ACT)
        self._locks: dict[str, list] = {}  # target -> [lock, commands holding or waiting]

    @classmethod
    async def open(cls, url: str, *, prefix: str) -> RedisWorkflowStore:
        store = cls(url, prefix=prefix)
        await store._client.ping()
        return store

    async def close(self) -> None:
        await self._client.aclose()

    def _idem(self, key: str) -> str:
        return f"{self.base}idem:{hashlib.sha256(key.encode()).hexdigest()}"

    def _trail_key(self, target: str) -> str:
        return f"{self.base}trail:{target}"

    def _order_key(self, sales_order: str) -> str:
        return f"{self.base}order:{sales_order}"

    async def act(self, cmd: Command) -> Outcome:
        # Commands on one target through this replica go one at a time (no point racing
        # ourselves); the script's compare-and-set settles races with other replicas.
        slot = self._locks.setdefault(cmd.target, [asyncio.Lock(), 0])
        slot[1] += 1  # commands holding or waiting for it; the lock goes when none is left
        try:
            async with slot[0]:
                return await self._act(cmd)
        finally:
            slot[1] -= 1
            if slot[1] == 0:
                del self._locks[cmd.target]

    async def _act(self, cmd: Command) -> Outcome:
        idem = self._idem(cmd.idempotency_key())
        on_order = cmd.exception_id is None
        table, field = (self._escalation, cmd.sales_order) if on_order else (self._state, cmd.exception_id)
        assert field is not None
        for attempt in range(MAX_ATTEMPTS):
            # One snapshot: the idempotency key and the target's state, read together.
            async with self._client.pipeline(transaction=True) as pipe:
                stored, raw = await pipe.get(idem).hget(table, field).execute()
            if stored is not None:
                kept = orjson.loads(stored)
                if kept["fingerprint"] != cmd.fingerprint():
                    raise _conflict(cmd)
                return Outcome.from_json(kept["result"], replayed=True)
            current = orjson.loads(raw) if raw else None
            decision = decide(
                cmd,
                None if on_order else (ExceptionWorkflow.from_json(current) if current else None),
                (Escalation.from_json(current) if current else None) if on_order else None,
            )  # a refusal stands: it was decided on one consistent snapshot
            result = result_json(decision, 0)
            entry = orjson.dumps(result["entry"])
            assert entry.startswith(b'{"seq":0,')
            rest = b'"workflow":' + orjson.dumps(result["workflow"]) + b',"escalation":' + orjson.dumps(result["escalation"])
            new_value = orjson.dumps(result["escalation"] if on_order else result["workflow"])
            keys = [self._seq, table, idem, self._log, self._trail_key(cmd.target), self.channel]
            keys += [self._order_key(so) for so in decision.entry.sales_orders]
            seq = int(await self._script(keys=keys, args=[field, raw or b"", new_value, entry, cmd.fingerprint(), rest]))
            if seq > 0:
                return Outcome.from_json(result_json(decision, seq), replayed=False)
            if seq < 0:
                continue  # the same id was answered meanwhile: replay it
            # Another replica changed the target since our read: decide again, after a
            # short random pause so that two replicas do not collide in step.
            self.conflicts += 1
            await asyncio.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
        raise WorkflowRefused("The workflow store is too busy; try again.", "UNAVAILABLE")

    async def state(self, exception_id: str) -> ExceptionWorkflow | None:
        raw = await self._client.hget(self._state, exception_id)
        return ExceptionWorkflow.from_json(orjson.loads(raw)) if raw else None

    async def states(self) -> dict[str, ExceptionWorkflow]:
        raw = await self._client.hgetall(self._state)
        return {k.decode(): ExceptionWorkflow.from_json(orjson.loads(v)) for k, v in raw.items()}

    async def escalations(self) -> dict[str, Escalation]:
        raw = await self._client.hgetall(self._escalation)
        return {k.decode(): Escalation.from_json(orjson.loads(v)) for k, v in raw.items()}

    async def trail(self, exception_id: str) -> list[AuditEntry]:
        return [AuditEntry.from_json(orjson.loads(r)) for r in await self._client.lrange(self._trail_key(exception_id), 0, -1)]

    async def order_trail(self, sales_order: str) -> list[AuditEntry]:
        return [AuditEntry.from_json(orjson.loads(r)) for r in await self._client.lrange(self._order_key(sales_order), 0, -1)]

    async def entries_after(self, seq: int, limit: int = 500) -> list[AuditEntry]:
        rows = await self._client.lrange(self._log, seq, seq + limit - 1)  # entry n sits at index n-1
        return [AuditEntry.from_json(orjson.loads(r)) for r in rows]

    async def last_seq(self) -> int:
        return int(await self._client.get(self._seq) or 0)


def sqlite_path(journal_path: str) -> str:
    """The workflow file beside the journal: ``var/journal.sqlite`` → ``var/workflow.sqlite``;
    a journal named otherwise keeps its name in it (``var/plant-a.sqlite`` →
    ``var/plant-a.workflow.sqlite``), so two gateways' journals in one folder never share one.
    ``:memory:`` stays in memory (tests)."""
    if journal_path == ":memory:":
        return ":memory:"
    p = Path(journal_path)
    suffix = p.suffix or ".sqlite"
    return str(p.with_name("workflow" + suffix if p.stem == "journal" else f"{p.stem}.workflow{suffix}"))

"""The scale-out event journal on Redis, shared by every gateway replica.

Satisfies :class:`gateway.journal.Journal`, as the SQLite default does, so ingestion, the
subscription hub and ``Order.history`` use either. It ``publishes``: recording an event's
effects also publishes its bus message, in one script. What changes with several replicas:

- **One seq space, one dedupe.** ``append`` runs one Lua script: per event, look up
  ``source``+``id`` in the dedupe hash; if new, ``INCR`` the seq counter and ``XADD`` the
  event to the events stream with entry id ``<seq>-0``. Scripts run atomically, so the same
  event sent to replica A and then to B is journaled once.
- **Processing hand-out.** The events stream has one consumer group; each replica is a
  consumer (its replica id). :meth:`unprocessed` returns what *this* replica should process
  now: its own pending entries (a retry), then entries other replicas took but left idle
  longer than the lease (``XAUTOCLAIM``: a dead replica's events are taken over), then new
  ones (``XREADGROUP >``). Reading its pending entries again renews this replica's lease.
- **Exactly once.** :meth:`record_processed` runs one script per event (pipelined for a
  batch), as :meth:`mark_processed_and_publish` does for one: if the event is
  already recorded (another replica finished it first, e.g. after a lease ran out under a
  slow source) it changes nothing and returns 0; otherwise it records the change rows,
  ``XACK``\\s the entry and ``PUBLISH``\\es the bus message. Each event's effects are
  recorded and published once, whichever replicas raced for it.
- **Dead letters.** An event whose processing failed for good is parked: recorded in
  ``parked`` and acknowledged, so no replica is handed it again. Replaying moves it to the
  ``replay`` set, which replicas take from first, each event under a lease as above.
- **Global, gap-free cursors.** Replicas process in parallel, so events finish out of seq
  order. Change rows are therefore numbered by a *change position* taken in that same
  script (``INCR``), and the bus message is published in it too: positions increase in
  exactly the order clients receive messages, on every replica. The subscription cursor is
  that position (``OrderChangeRow.seq`` / ``OrderChanged.seq``), so a client that resumes
  on another replica with the last cursor it saw misses nothing. (With one SQLite journal
  and one processor the event seq already has that property.) Event seqs remain the
  cursors of ``append``, ``get``, ``history`` and ``unprocessed``.

Durability: ``append`` returning (and so ``202 Accepted``) means Redis executed the script.
That survives a Redis crash only if Redis runs with ``appendonly yes`` and
``appendfsync always`` (every write fsynced before the reply). With the default
``appendfsync everysec`` up to a second of accepted events can be lost; with persistence off
(as the Redis started by ``.ci/run`` and on dev machines) a Redis restart loses everything.
Replication to a Redis replica is asynchronous: a failover can lose acknowledged events
unless clients also use ``WAITAOF``. :meth:`open` logs a warning when the server's settings
do not give "202 = durable".

Keys (all under ``prefix``): ``seq``, ``events`` (stream), ``dedupe`` (hash), ``done``
(hash seq → processing record), ``pos`` and ``changes`` (hash position → change record),
``chg:all`` / ``chg:so:<order>`` / ``chg:cust:<customer>`` (sorted sets, score = position),
``hist:<order>`` (sorted set, score = business time), ``wm`` (hash), ``exc:*``, ``parked``
(hash seq → dead-letter record; a parked event leaves the group's pending list), ``replay``
(sorted set of replayed seqs) and ``replay:claims`` (hash seq → replica|lease end). Scripts build
some key names from the prefix, so this needs one Redis primary (not Redis Cluster).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson
import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .bus import OrderChanged
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
from .redis_bus import CacheKey, bus_channel, encode_message_tail

__all__ = ["RedisJournal", "default_replica_id"]

log = logging.getLogger("ordergraph.journal")

GROUP = "processors"
# At most this many new or taken-over events per hand-out: what a replica takes it should
# finish well within its lease, or another replica takes it over (harmless, but wasted).
_HANDOUT = 100
_PRUNE_SLICE = 1000
_POOL_SIZE = 32
_POOL_WAIT_SECONDS = 20.0

# KEYS: seq counter, dedupe hash, events stream.
# ARGV: per event: number of stream fields+values n, dedupe field, then n field/value items.
_APPEND = """
local out = {}
local i = 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local field = ARGV[i + 1]
  local seq = redis.call('HGET', KEYS[2], field)
  if seq then
    out[#out + 1] = {tonumber(seq), 1}
  else
    seq = redis.call('INCR', KEYS[1])
    redis.call('HSET', KEYS[2], field, seq)
    redis.call('XADD', KEYS[3], seq .. '-0', unpack(ARGV, i + 2, i + 1 + n))
    out[#out + 1] = {seq, 0}
  end
  i = i + 2 + n
end
return out
"""

# KEYS: events stream, done hash, position counter, changes hash, chg:all, replay zset,
# replay claims hash.
# ARGV: seq, group, prefix, done record tail, change record, business time (µs), channel
# ('' = do not publish), message tail, then (sales order, customer or '') pairs.
# Returns the new change position, or 0 when the event was already recorded.
_MARK = """
local seq = ARGV[1]
local entry = seq .. '-0'
redis.call('ZREM', KEYS[6], seq)
redis.call('HDEL', KEYS[7], seq)
if redis.call('HEXISTS', KEYS[2], seq) == 1 then
  redis.call('XACK', KEYS[1], ARGV[2], entry)
  return 0
end
if #redis.call('XRANGE', KEYS[1], entry, entry) == 0 then
  return redis.error_reply('UNKNOWN_SEQ no journaled event with seq ' .. seq)
end
local pos = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[2], seq, '{"pos":' .. pos .. ',' .. ARGV[4])
redis.call('HSET', KEYS[4], pos, ARGV[5])
local padded = string.format('%020d', tonumber(seq))
for i = 9, #ARGV, 2 do
  local so, cust = ARGV[i], ARGV[i + 1]
  local member = pos .. '|' .. so
  redis.call('ZADD', KEYS[5], pos, member)
  redis.call('ZADD', ARGV[3] .. 'chg:so:' .. so, pos, member)
  if cust ~= '' then
    redis.call('ZADD', ARGV[3] .. 'chg:cust:' .. cust, pos, member)
  end
  redis.call('ZADD', ARGV[3] .. 'hist:' .. so, ARGV[6], padded)
end
redis.call('XACK', KEYS[1], ARGV[2], entry)
if ARGV[7] ~= '' then
  redis.call('PUBLISH', ARGV[7], '{"pos":' .. pos .. ',' .. ARGV[8])
end
return pos
"""

# KEYS: watermark hash. ARGV: field, business time (µs). 1 = fresh (or equal), 0 = stale.
_WATERMARK = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
local occurred = tonumber(ARGV[2])
if current then
  current = tonumber(current)
  if occurred < current then return 0 end
  if occurred == current then return 1 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# KEYS: events stream, done hash, parked hash, replay zset, replay claims hash.
# ARGV: seq, group, parked record. 1 = parked; 0 = already processed (nothing to park).
# The entry leaves the group's pending list, so no replica is handed it again.
_PARK = """
local seq = ARGV[1]
if redis.call('HEXISTS', KEYS[2], seq) == 1 then return 0 end
if #redis.call('XRANGE', KEYS[1], seq .. '-0', seq .. '-0') == 0 then
  return redis.error_reply('UNKNOWN_SEQ no journaled event with seq ' .. seq)
end
redis.call('HSET', KEYS[3], seq, ARGV[3])
redis.call('XACK', KEYS[1], ARGV[2], seq .. '-0')
redis.call('ZREM', KEYS[4], seq)
redis.call('HDEL', KEYS[5], seq)
return 1
"""

# KEYS: parked hash, replay zset. ARGV: seqs. Moves each parked one to the replay set.
_UNPARK = """
local out = {}
for i = 1, #ARGV do
  if redis.call('HDEL', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], tonumber(ARGV[i]), ARGV[i])
    out[#out + 1] = tonumber(ARGV[i])
  end
end
return out
"""

# KEYS: replay zset, replay claims hash. ARGV: replica id, lease (ms), most to take.
# Replayed events left the stream's pending list when they were parked, so they are
# handed out from here, under the same kind of lease: a replica takes those nobody holds,
# those it holds already (renewing its lease) and those whose holder's lease ran out.
_CLAIM_REPLAY = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for _, seq in ipairs(redis.call('ZRANGE', KEYS[1], 0, 999)) do
  if #out >= tonumber(ARGV[3]) then break end
  local claim = redis.call('HGET', KEYS[2], seq)
  local take = true
  if claim then
    local sep = string.find(claim, '|', 1, true)
    take = string.sub(claim, 1, sep - 1) == ARGV[1] or tonumber(string.sub(claim, sep + 1)) < now
  end
  if take then
    redis.call('HSET', KEYS[2], seq, ARGV[1] .. '|' .. (now + tonumber(ARGV[2])))
    out[#out + 1] = tonumber(seq)
  end
end
return out
"""

# KEYS: watermark hash. ARGV: ceiling (µs), new value (µs), then fields. Lowers each one
# above the ceiling to the new value.
_CAP_WATERMARKS = """
local lowered = 0
local ceiling = tonumber(ARGV[1])
for i = 3, #ARGV do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  if current and tonumber(current) > ceiling then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[2])
    lowered = lowered + 1
  end
end
return lowered
"""

# KEYS: cursor counter, transitions stream, open zset (score = cursor), open payload hash,
# state fingerprint hash, last cursor hash.
# ARGV: exception id, kind, action, payload, at (µs), fingerprint of the state.
# Several replicas evaluate the same orders: a step that leaves the shared state as it is
# (RAISED with the fingerprint already recorded, CLEARED of an exception not open) is not
# journaled again; the answer is then minus the cursor that recorded that state.
_EXCEPTION = """
if ARGV[6] ~= '' then
  local open = redis.call('ZSCORE', KEYS[3], ARGV[1])
  if ARGV[3] == 'RAISED' and open and redis.call('HGET', KEYS[5], ARGV[1]) == ARGV[6] then
    return -tonumber(open)
  end
  if ARGV[3] == 'CLEARED' and not open then
    local last = redis.call('HGET', KEYS[6], ARGV[1])
    if last then return -tonumber(last) end
  end
end
local cursor = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[5], ARGV[1], ARGV[6])
redis.call('HSET', KEYS[6], ARGV[1], cursor)
redis.call('XADD', KEYS[2], cursor .. '-0', 'id', ARGV[1], 'kind', ARGV[2], 'action', ARGV[3],
  'payload', ARGV[4], 'at', ARGV[5])
if ARGV[3] == 'RAISED' then
  redis.call('ZADD', KEYS[3], cursor, ARGV[1])
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
else
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('HDEL', KEYS[4], ARGV[1])
end
return cursor
"""


def default_replica_id() -> str:
    """``hostname-pid``: unique per running gateway process."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _transition(entry_id: bytes, f: dict[bytes, bytes]) -> ExceptionTransition:
    return ExceptionTransition(
        cursor=_seq_of(entry_id),
        exception_id=f[b"id"].decode(),
        kind=f[b"kind"].decode(),
        action=f[b"action"].decode(),  # type: ignore[arg-type]
        payload=orjson.loads(f[b"payload"]),
        at=_from_us(int(f[b"at"])),
    )


def _seq_of(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(slots=True, frozen=True)
class _Done:
    """What ``done`` holds per processed event."""

    pos: int
    stale: bool
    orders: tuple[tuple[str, str | None], ...]

    @classmethod
    def parse(cls, raw: bytes) -> _Done:
        d = orjson.loads(raw)
        return cls(int(d["pos"]), bool(d["stale"]), tuple((so, c) for so, c in d["orders"]))


class RedisJournal:
    """The event journal on Redis Streams; see the module docstring for the layout.

    Create with ``await RedisJournal.open(url, ...)``; release with ``await close()``.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str,
        replica_id: str,
        lease_seconds: float,
        channel: str | None,
        retention_days: float,
        max_events: int,
    ) -> None:
        """Internal: use :meth:`RedisJournal.open`."""
        self.prefix = prefix
        self.replica_id = replica_id
        self.lease_seconds = lease_seconds
        self.channel = channel
        self.retention_days = retention_days
        self.max_events = max_events
        self.taken_over = 0  # events this replica claimed from others after their lease
        # Opened with ``publish``: record_processed publishes each event's changes itself.
        self.publishes = channel is not None
        self._parsed = ParsedEvents()
        self._r = client
        self._closed = False
        self._k_seq = f"{prefix}seq"
        self._k_events = f"{prefix}events"
        self._k_dedupe = f"{prefix}dedupe"
        self._k_done = f"{prefix}done"
        self._k_pos = f"{prefix}pos"
        self._k_changes = f"{prefix}changes"
        self._k_all = f"{prefix}chg:all"
        self._k_wm = f"{prefix}wm"
        self._k_parked = f"{prefix}parked"
        self._k_replay = f"{prefix}replay"
        self._k_replay_claims = f"{prefix}replay:claims"
        self._k_exc = (
            f"{prefix}exc:seq",
            f"{prefix}exc:log",
            f"{prefix}exc:open",
            f"{prefix}exc:payload",
            f"{prefix}exc:fingerprint",
            f"{prefix}exc:last",
        )
        self._append = client.register_script(_APPEND)
        self._mark = client.register_script(_MARK)
        self._watermark = client.register_script(_WATERMARK)
        self._cap_watermarks = client.register_script(_CAP_WATERMARKS)
        self._park = client.register_script(_PARK)
        self._unpark = client.register_script(_UNPARK)
        self._claim_replay = client.register_script(_CLAIM_REPLAY)
        self._exception = client.register_script(_EXCEPTION)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        prefix: str = "ordergraph:",
        replica_id: str | None = None,
        lease_seconds: float = 30.0,
        publish: bool = True,
        retention_days: float = 30,
        max_events: int = 1_000_000,
    ) -> RedisJournal:
        """Connect to Redis at ``url`` and join the processing group as ``replica_id``.

        ``publish``: processed changes go out on the bus channel of ``prefix`` (what
        :class:`gateway.redis_bus.RedisBus` listens to) from inside the recording script.
        Raises ``redis.exceptions.ConnectionError`` if Redis is unreachable.
        """
        # Blocking pool: a burst of concurrent calls waits for a connection instead of failing
        # (Redis runs one command at a time anyway, so more connections would not be faster).
        client = redis.Redis.from_pool(
            redis.BlockingConnectionPool.from_url(url, max_connections=_POOL_SIZE, timeout=_POOL_WAIT_SECONDS)
        )
        try:
            journal = cls(
                client,
                prefix=prefix,
                replica_id=replica_id or default_replica_id(),
                lease_seconds=lease_seconds,
                channel=bus_channel(prefix) if publish else None,
                retention_days=retention_days,
                max_events=max_events,
            )
            await journal._create_group()
            await journal._check_durability()
        except BaseException:
            await client.aclose()
            raise
        return journal

    async def _check_durability(self) -> None:
        try:
            aof = await self._r.config_get("appendonly")
            fsync = await self._r.config_get("appendfsync")
        except ResponseError:  # CONFIG disabled (managed Redis): cannot tell
            return
        settings = {_str(k): _str(v) for k, v in {**aof, **fsync}.items()}
        if settings.get("appendonly") != "yes" or settings.get("appendfsync") != "always":
            log.warning(
                "Redis runs with appendonly=%s appendfsync=%s: accepted events can be lost if "
                "Redis crashes; use appendonly yes + appendfsync always for 202 = durable",
                settings.get("appendonly"),
                settings.get("appendfsync"),
            )

    async def close(self) -> None:
        """Leave the group (only if nothing is pending here) and disconnect. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            # A consumer with pending entries stays: after the lease, others take them over.
            info = await self._r.xpending_range(
                self._k_events, GROUP, min="-", max="+", count=1, consumername=self.replica_id
            )
            if not info:
                await self._r.xgroup_delconsumer(self._k_events, GROUP, self.replica_id)
        except Exception:  # closing must not fail because Redis went away
            log.debug("redis journal: could not leave the group cleanly", exc_info=True)
        finally:
            await self._r.aclose()

    async def __aenter__(self) -> RedisJournal:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("journal is closed")

    # -- events ----------------------------------------------------------------------------

    async def append(self, events: list[JournalEvent]) -> list[Appended]:
        """Journal ``events`` atomically (one script); dedupes by ``(source, event_id)``.

        Validated before anything is written, so a bad event fails the whole call and
        stores nothing. Durable on return as far as Redis persistence goes (module docs).
        """
        self._check_open()
        if not events:
            return []
        args: list[Any] = []
        for event in events:
            fields: list[Any] = [
                "src", event.source,
                "id", event.event_id,
                "type", event.type,
                "occ", _to_us(event.occurred_at, "occurred_at"),
                "rcv", _to_us(event.received_at, "received_at"),
            ]  # fmt: skip
            if event.subject is not None:
                fields += ["subj", event.subject]
            if event.data is not None:
                fields += ["data", orjson.dumps(event.data)]
            args += [len(fields), _dedupe_field(event.source, event.event_id), *fields]
        result = await self._append(keys=[self._k_seq, self._k_dedupe, self._k_events], args=args)
        out = [Appended(seq=int(seq), duplicate=bool(dup)) for seq, dup in result]
        for event, appended in zip(events, out, strict=True):
            if not appended.duplicate:
                self._parsed.keep(appended.seq, event.event)
        return out

    async def mark_processed(
        self, seq: int, orders: list[tuple[str, str | None]], *, stale: bool = False
    ) -> None:
        """Record that event ``seq`` was applied and which orders it affected; no publish.

        A second call for the same seq changes nothing. Raises ``KeyError`` for an unknown seq.
        """
        await self._record(seq, orders, stale=stale, changes=None, invalidate=())

    async def mark_processed_and_publish(
        self,
        seq: int,
        orders: list[tuple[str, str | None]],
        changes: Sequence[OrderChanged],
        invalidate: Iterable[CacheKey] = (),
    ) -> int:
        """Record event ``seq`` as applied and publish ``changes`` + ``invalidate`` on the bus.

        One atomic step: returns the change position (the changes' cursor; it replaces their
        ``seq`` in the published message), or 0 if the event was already recorded -- then
        nothing was published. Publishes only if the journal was opened with ``publish``.
        """
        return await self._record(seq, orders, stale=False, changes=changes, invalidate=invalidate)

    async def record_processed(self, batch: Sequence[Processed]) -> list[bool]:
        """Record a batch of applied events (see ``Journal``): one script per event, all in
        one pipeline, in order; each publishes its changes when the journal ``publishes``.
        False for an event another replica had recorded already (nothing published)."""
        self._check_open()
        if not batch:
            return []
        stored = await self._get_many([p.seq for p in batch])
        async with self._r.pipeline(transaction=False) as pipe:
            for p, event in zip(batch, stored, strict=True):
                if event is None:
                    raise KeyError(f"no journaled event with seq {p.seq}")
                keys, args = self._record_call(
                    event, list(p.orders), stale=p.stale, changes=p.changes, invalidate=p.invalidate
                )
                await self._mark(keys=keys, args=args, client=pipe)
            try:
                results = await pipe.execute()
            except ResponseError as exc:
                if "UNKNOWN_SEQ" in str(exc):  # pruned between the read and the scripts
                    raise KeyError(str(exc)) from exc
                raise
        self._parsed.done([p.seq for p in batch])
        return [int(pos) > 0 for pos in results]

    async def _record(
        self,
        seq: int,
        orders: list[tuple[str, str | None]],
        *,
        stale: bool,
        changes: Sequence[OrderChanged] | None,
        invalidate: Iterable[CacheKey],
    ) -> int:
        self._check_open()
        stored = await self.get(seq)
        if stored is None:
            raise KeyError(f"no journaled event with seq {seq}")
        keys, args = self._record_call(stored, orders, stale=stale, changes=changes, invalidate=invalidate)
        try:
            pos = await self._mark(keys=keys, args=args)
        except ResponseError as exc:
            if "UNKNOWN_SEQ" in str(exc):  # pruned between get() and the script
                raise KeyError(f"no journaled event with seq {seq}") from exc
            raise
        self._parsed.done([seq])
        return int(pos)

    def _record_call(
        self,
        stored: StoredEvent,
        orders: list[tuple[str, str | None]],
        *,
        stale: bool,
        changes: Sequence[OrderChanged] | None,
        invalidate: Iterable[CacheKey],
    ) -> tuple[list[str], list[Any]]:
        """The keys and arguments of the recording script (``_MARK``) for one event."""
        seq = stored.seq
        by_order = dict(sorted(orders))
        done_tail = orjson.dumps({"stale": stale, "orders": sorted(by_order.items())}).decode()[1:]
        change = orjson.dumps(
            {
                "seq": seq,
                "src": stored.source,
                "type": stored.type,
                "occ": _to_us(stored.occurred_at, "occurred_at"),
                "stale": stale,
                "orders": by_order,
            }
        )
        invalidate = set(invalidate)
        publish = self.channel is not None and changes is not None and bool(changes or invalidate)
        args: list[Any] = [
            seq,
            GROUP,
            self.prefix,
            done_tail,
            change,
            _to_us(stored.occurred_at, "occurred_at"),
            self.channel if publish else "",
            encode_message_tail(changes or (), invalidate) if publish else "",
        ]
        for so, customer in by_order.items():
            args += [so, customer or ""]
        keys = [
            self._k_events,
            self._k_done,
            self._k_pos,
            self._k_changes,
            self._k_all,
            self._k_replay,
            self._k_replay_claims,
        ]
        return keys, args

    async def unprocessed(self, limit: int = 1000) -> list[StoredEvent]:
        """The events this replica should process now, oldest first (each handed to one replica).

        Its own pending ones first (a retry; reading them renews its lease), then events
        other replicas left idle longer than the lease (taken over), then new ones. Taking an
        event makes it this replica's to process: call :meth:`mark_processed` (or
        ``..._and_publish``) when done, or it is handed to another replica after the lease.
        """
        self._check_open()
        if limit <= 0:
            return []
        try:
            return [self._parsed.attach(e) for e in await self._hand_out(limit)]
        except (RedisConnectionError, RedisTimeoutError) as exc:
            # Redis away: nothing to hand out now. The processor polls again, and whatever
            # this replica had taken stays in its pending list (or goes to another replica).
            log.warning("redis journal: cannot hand out events: %s", exc)
            return []
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # The group is gone (a Redis restarted without persistence): join a new one.
            log.warning("redis journal: processing group missing; creating it again")
            await self._create_group()
            return []

    async def _create_group(self) -> None:
        try:
            await self._r.xgroup_create(self._k_events, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _hand_out(self, limit: int) -> list[StoredEvent]:
        replayed = await self._replayed(min(limit, _HANDOUT))
        if replayed:
            # Older seqs than anything new: processed first, like the SQLite journal does.
            return replayed
        r, stream, me = self._r, self._k_events, self.replica_id
        entries: list[tuple[bytes, dict[bytes, bytes]]] = []
        [[_, mine]] = await r.xreadgroup(GROUP, me, {stream: "0"}, count=limit) or [[stream, []]]
        entries += mine
        want = min(limit - len(entries), _HANDOUT)
        start: bytes | str = "0-0"
        lease_ms = int(self.lease_seconds * 1000)
        for _ in range(10):  # XAUTOCLAIM scans a bounded slice of the group's pending list
            if want <= 0:
                break
            # [next start, entries] (+ deleted ids on Redis 7)
            answer = await r.xautoclaim(stream, GROUP, me, lease_ms, start_id=start, count=want)
            start, claimed = answer[0], answer[1]
            entries += claimed
            self.taken_over += len(claimed)
            want -= len(claimed)
            if start in (b"0-0", "0-0"):
                break
        if want > 0:
            fresh = await r.xreadgroup(GROUP, me, {stream: ">"}, count=want)
            if fresh:
                entries += fresh[0][1]
        if not entries:
            return []
        entries.sort(key=lambda e: _seq_of(e[0]))
        seqs = [_seq_of(entry_id) for entry_id, _ in entries]
        done = await r.hmget(self._k_done, seqs)
        out: list[StoredEvent] = []
        settled: list[str] = []
        for (_, fields), seq, record in zip(entries, seqs, done, strict=True):
            if record is not None or not fields:  # already recorded elsewhere, or pruned
                settled.append(f"{seq}-0")
                continue
            out.append(_stored_event(seq, fields, None))
        if settled:
            await r.xack(stream, GROUP, *settled)
        return out

    async def _replayed(self, limit: int) -> list[StoredEvent]:
        seqs = await self._claim_replay(
            keys=[self._k_replay, self._k_replay_claims],
            args=[self.replica_id, int(self.lease_seconds * 1000), limit],
        )
        if not seqs:
            return []
        events = await self._get_many([int(s) for s in seqs])
        out = []
        for seq, event in zip(seqs, events, strict=True):
            if event is None or event.processed:  # pruned, or finished elsewhere: settle it
                await self._r.zrem(self._k_replay, seq)
                await self._r.hdel(self._k_replay_claims, seq)
            else:
                out.append(event)
        return out

    # -- dead letters ----------------------------------------------------------------------

    async def park(self, seq: int, reason: str, *, attempts: int, at: datetime) -> bool:
        """Park event ``seq`` as a dead letter (kept; handed to no replica until replayed).

        False when the event was processed meanwhile. Raises ``KeyError`` for an unknown seq."""
        self._check_open()
        record = orjson.dumps({"reason": reason, "attempts": attempts, "at": _to_us(at, "at")})
        try:
            result = await self._park(
                keys=[self._k_events, self._k_done, self._k_parked, self._k_replay, self._k_replay_claims],
                args=[seq, GROUP, record],
            )
        except ResponseError as exc:
            if "UNKNOWN_SEQ" in str(exc):
                raise KeyError(f"no journaled event with seq {seq}") from exc
            raise
        self._parsed.done([seq])
        return bool(result)

    async def parked(self, *, limit: int = 1000, after_seq: int = 0) -> list[ParkedEvent]:
        """Parked events with ``seq > after_seq``, oldest first."""
        self._check_open()
        records = {int(k): orjson.loads(v) for k, v in (await self._r.hgetall(self._k_parked)).items()}
        seqs = sorted(s for s in records if s > after_seq)[:limit]
        events = await self._get_many(seqs)
        return [
            ParkedEvent(
                event=event,
                reason=records[seq]["reason"],
                attempts=int(records[seq]["attempts"]),
                parked_at=_from_us(int(records[seq]["at"])),
            )
            for seq, event in zip(seqs, events, strict=True)
            if event is not None
        ]

    async def parked_count(self) -> int:
        """How many events are parked (all replicas together)."""
        self._check_open()
        return int(await self._r.hlen(self._k_parked))

    async def unpark(self, seqs: list[int] | None = None) -> list[int]:
        """Hand parked events back for processing (``None``: every one); returns the seqs
        that were parked. Any replica takes them, under a lease, before newer events."""
        self._check_open()
        if seqs is None:
            seqs = sorted(int(k) for k in await self._r.hkeys(self._k_parked))
        released: list[int] = []
        for i in range(0, len(seqs), 1000):
            chunk = seqs[i : i + 1000]
            released += [int(s) for s in await self._unpark(keys=[self._k_parked, self._k_replay], args=chunk)]
        return released

    async def changes_after(
        self,
        after_seq: int,
        *,
        sales_order: str | None = None,
        customer: str | None = None,
        limit: int = 1000,
        include_stale: bool = False,
    ) -> list[OrderChangeRow]:
        """(change, order) rows with position ``> after_seq``, in (position, sales_order) order.

        Positions are the subscription cursors (module docstring). As in the SQLite journal,
        one position's rows are never split, so the result may exceed ``limit`` by the rest
        of its last position.
        """
        self._check_open()
        if sales_order is not None:
            key = f"{self.prefix}chg:so:{sales_order}"
        elif customer is not None:
            key = f"{self.prefix}chg:cust:{customer}"
        else:
            key = self._k_all
        rows: list[OrderChangeRow] = []
        after = after_seq
        while len(rows) < limit:
            want = limit - len(rows)
            members = await self._r.zrangebyscore(key, f"({after}", "+inf", start=0, num=want)
            if not members:
                break
            pairs = [_member(m) for m in members]
            if len(members) == want:  # the last position may have more rows: take them all
                last = pairs[-1][0]
                tail = [_member(m) for m in await self._r.zrangebyscore(key, last, last)]
                pairs = [p for p in pairs if p[0] != last] + tail
            positions = sorted({pos for pos, _ in pairs})
            raw = await self._r.hmget(self._k_changes, positions)
            details = {pos: orjson.loads(d) for pos, d in zip(positions, raw, strict=True) if d is not None}
            for pos, so in pairs:
                d = details.get(pos)
                if d is None:  # pruned meanwhile
                    continue
                cust = d["orders"].get(so)
                if customer is not None and cust != customer:
                    continue
                if d["stale"] and not include_stale:
                    continue
                rows.append(
                    OrderChangeRow(
                        seq=pos,
                        sales_order=so,
                        customer=cust,
                        source=d["src"],
                        type=d["type"],
                        occurred_at=_from_us(d["occ"]),
                        stale=bool(d["stale"]),
                    )
                )
            after = pairs[-1][0]
        return rows

    async def history(
        self, sales_order: str, *, first: int = 50, after_seq: int | None = None
    ) -> list[StoredEvent]:
        """The order's timeline, oldest first by business time, ties by seq (stale included).

        ``after_seq`` is the event seq of the previous page's last entry; raises
        :class:`UnknownCursor` if it is not (or no longer) in this order's history.
        """
        self._check_open()
        key = f"{self.prefix}hist:{sales_order}"
        start = 0
        if after_seq is not None:
            rank = await self._r.zrank(key, f"{after_seq:020d}")
            if rank is None:
                raise UnknownCursor(f"seq {after_seq} is not in the history of sales order {sales_order!r}")
            start = rank + 1
        if first <= 0:
            return []
        members = await self._r.zrange(key, start, start + first - 1)
        events = await self._get_many([int(m) for m in members])
        return [e for e in events if e is not None]

    async def get(self, seq: int) -> StoredEvent | None:
        """The event with this seq, or None (never journaled, or pruned)."""
        self._check_open()
        [event] = await self._get_many([seq])
        return event

    async def _get_many(self, seqs: list[int]) -> list[StoredEvent | None]:
        if not seqs:
            return []
        async with self._r.pipeline(transaction=False) as pipe:
            for seq in seqs:
                pipe.xrange(self._k_events, f"{seq}-0", f"{seq}-0")
            pipe.hmget(self._k_done, seqs)
            *found, done = await pipe.execute()
        out: list[StoredEvent | None] = []
        for seq, entries, record in zip(seqs, found, done, strict=True):
            if not entries:
                out.append(None)
                continue
            out.append(_stored_event(seq, entries[0][1], None if record is None else _Done.parse(record)))
        return out

    async def count(self) -> int:
        """Number of events currently retained."""
        self._check_open()
        return int(await self._r.xlen(self._k_events))

    async def backlog(self) -> int:
        """Accepted events no replica has finished processing yet (all replicas together)."""
        self._check_open()
        async with self._r.pipeline(transaction=True) as pipe:
            retained, processed, parked = await (
                pipe.xlen(self._k_events).hlen(self._k_done).hlen(self._k_parked).execute()
            )
        return int(retained) - int(processed) - int(parked)

    async def last_seq(self) -> int:
        """The highest seq ever assigned (survives pruning); 0 for a new journal."""
        self._check_open()
        return int(await self._r.get(self._k_seq) or 0)

    async def oldest_seq(self) -> int:
        """The smallest retained seq, or ``last_seq() + 1`` when nothing is retained."""
        self._check_open()
        first = await self._r.xrange(self._k_events, "-", "+", count=1)
        return _seq_of(first[0][0]) if first else await self.last_seq() + 1

    # -- watermarks ------------------------------------------------------------------------

    async def watermark(self, source: str, entity: str, key: str) -> datetime | None:
        """The newest business time seen for one record of one source, or None."""
        self._check_open()
        value = await self._r.hget(self._k_wm, _watermark_field(source, entity, key))
        return None if value is None else _from_us(int(value))

    async def advance_watermark(self, source: str, entity: str, key: str, occurred_at: datetime) -> bool:
        """Raise the record's watermark to ``occurred_at``; False if the event is stale.

        Atomic across replicas (one script): of two replicas racing on one record, the
        older event loses. An equal time is not stale (a replay applies again).
        """
        self._check_open()
        occurred_us = _to_us(occurred_at, "occurred_at")
        result = await self._watermark(
            keys=[self._k_wm], args=[_watermark_field(source, entity, key), occurred_us]
        )
        return bool(result)

    async def watermarks(self, keys: Sequence[WatermarkKey]) -> list[datetime | None]:
        """The watermarks of many records, in one round trip."""
        self._check_open()
        if not keys:
            return []
        values = await self._r.hmget(self._k_wm, [_watermark_field(*k) for k in keys])
        return [None if v is None else _from_us(int(v)) for v in values]

    async def advance_watermarks(self, marks: Sequence[tuple[WatermarkKey, datetime]]) -> list[bool]:
        """``advance_watermark`` for each mark: one script each, pipelined in order (one
        round trip), each atomic across replicas."""
        self._check_open()
        if not marks:
            return []
        async with self._r.pipeline(transaction=False) as pipe:
            for key, occurred_at in marks:
                await self._watermark(
                    keys=[self._k_wm], args=[_watermark_field(*key), _to_us(occurred_at, "occurred_at")], client=pipe
                )
            results = await pipe.execute()
        return [bool(r) for r in results]

    async def cap_watermarks(self, ceiling: datetime, to: datetime) -> int:
        """Lower every watermark later than ``ceiling`` to ``to``; returns how many (see
        :meth:`gateway.journal.Journal.cap_watermarks`). Each one is checked and set in one
        script, so a replica advancing a mark meanwhile is never undone."""
        self._check_open()
        ceiling_us, to_us = _to_us(ceiling, "ceiling"), _to_us(to, "to")
        lowered = 0
        async for field, value in self._r.hscan_iter(self._k_wm, count=1000):
            if int(value) > ceiling_us:
                lowered += int(await self._cap_watermarks(keys=[self._k_wm], args=[ceiling_us, to_us, field]))
        return lowered

    # -- exceptions ------------------------------------------------------------------------

    async def record_exception_transition(
        self,
        exception_id: str,
        kind: str,
        action: Literal["RAISED", "CLEARED"],
        payload: dict[str, Any],
        at: datetime,
        fingerprint: str = "",
    ) -> int:
        """Append a RAISED/CLEARED step of an exception; returns its own monotonic cursor.

        With a ``fingerprint`` of the state the step leads to, a step another replica
        already recorded is not appended again: the answer is then ``-cursor`` of that
        record (see ``_EXCEPTION``)."""
        self._check_open()
        if action not in ("RAISED", "CLEARED"):
            raise ValueError(f"action must be 'RAISED' or 'CLEARED', got {action!r}")
        at_us = _to_us(at, "at")
        return int(
            await self._exception(
                keys=list(self._k_exc), args=[exception_id, kind, action, orjson.dumps(payload), at_us, fingerprint]
            )
        )

    async def exception_transitions_after(self, after: int, limit: int = 1000) -> list[ExceptionTransition]:
        """Exception transitions with ``cursor > after``, oldest first."""
        self._check_open()
        entries = await self._r.xrange(self._k_exc[1], f"{after + 1}-0", "+", count=limit)
        return [_transition(entry_id, f) for entry_id, f in entries]

    async def cleared_exceptions_before(self, before: int | None, limit: int = 1000) -> list[ExceptionTransition]:
        """CLEARED transitions with ``cursor < before`` (None: every one), newest first (see
        ``SQLiteJournal.cleared_exceptions_before``): the log is walked back from ``before``
        in slices, and only CLEARED steps' payloads are parsed."""
        self._check_open()
        found: list[ExceptionTransition] = []
        end = "+" if before is None else f"{before - 1}-0"
        while len(found) < limit and end != "-1-0":
            entries = await self._r.xrevrange(self._k_exc[1], end, "-", count=1000)
            if not entries:
                break
            for entry_id, f in entries:
                if f[b"action"] == b"CLEARED":
                    found.append(_transition(entry_id, f))
                    if len(found) >= limit:
                        break
            end = f"{_seq_of(entries[-1][0]) - 1}-0"
        return found

    async def last_exception_cursor(self) -> int:
        """The cursor of the latest exception transition (0 when there is none)."""
        self._check_open()
        entries = await self._r.xrevrange(self._k_exc[1], "+", "-", count=1)
        return _seq_of(entries[0][0]) if entries else 0

    async def open_exceptions(self) -> dict[str, dict[str, Any]]:
        """Exceptions whose latest transition is RAISED: id -> latest payload, oldest first."""
        self._check_open()
        ids = await self._r.zrange(self._k_exc[2], 0, -1)
        if not ids:
            return {}
        payloads = await self._r.hmget(self._k_exc[3], ids)
        return {i.decode(): orjson.loads(p) for i, p in zip(ids, payloads, strict=True) if p is not None}

    # -- retention -------------------------------------------------------------------------

    async def prune(self, now: datetime) -> int:
        """Delete processed events received before ``now - retention_days``, then the oldest
        processed ones beyond ``max_events``; returns how many were deleted.

        Walks the stream oldest first in slices and stops at the first event it must keep
        for its age once the excess is gone (receive times follow seqs up to clock skew
        between replicas). Unprocessed events are never deleted.
        """
        self._check_open()
        cutoff = _to_us(now - timedelta(days=self.retention_days), "now")
        excess = await self.count() - self.max_events
        deleted = 0
        start = "-"
        while True:
            entries = await self._r.xrange(self._k_events, start, "+", count=_PRUNE_SLICE)
            if not entries:
                return deleted
            seqs = [_seq_of(e) for e, _ in entries]
            done = await self._r.hmget(self._k_done, seqs)
            doomed: list[tuple[int, dict[bytes, bytes], _Done]] = []
            stop = False
            for seq, (_, fields), record in zip(seqs, entries, done, strict=True):
                old = int(fields[b"rcv"]) < cutoff
                if not old and excess - len(doomed) <= 0:
                    stop = True
                    break
                if record is not None:
                    doomed.append((seq, fields, _Done.parse(record)))
            await self._delete(doomed)
            deleted += len(doomed)
            excess -= len(doomed)
            if stop or len(entries) < _PRUNE_SLICE:
                return deleted
            start = f"({seqs[-1]}-0"
            await asyncio.sleep(0)  # let appends interleave between slices

    async def _delete(self, doomed: list[tuple[int, dict[bytes, bytes], _Done]]) -> None:
        if not doomed:
            return
        async with self._r.pipeline(transaction=True) as pipe:
            for seq, fields, done in doomed:
                pipe.xdel(self._k_events, f"{seq}-0")
                pipe.hdel(self._k_dedupe, _dedupe_field(fields[b"src"].decode(), fields[b"id"].decode()))
                pipe.hdel(self._k_done, seq)
                pipe.hdel(self._k_changes, done.pos)
                for so, customer in done.orders:
                    member = f"{done.pos}|{so}"
                    pipe.zrem(self._k_all, member)
                    pipe.zrem(f"{self.prefix}chg:so:{so}", member)
                    if customer:
                        pipe.zrem(f"{self.prefix}chg:cust:{customer}", member)
                    pipe.zrem(f"{self.prefix}hist:{so}", f"{seq:020d}")
            await pipe.execute()


def _dedupe_field(source: str, event_id: str) -> str:
    # Source names are system names (no newline), so the split point is unambiguous.
    return f"{source}\n{event_id}"


def _watermark_field(source: str, entity: str, key: str) -> str:
    return f"{source}\n{entity}\n{key}"


def _member(raw: bytes) -> tuple[int, str]:
    pos, so = raw.decode().split("|", 1)
    return int(pos), so


def _stored_event(seq: int, f: dict[bytes, bytes], done: _Done | None) -> StoredEvent:
    data = f.get(b"data")
    return StoredEvent(
        seq=seq,
        source=f[b"src"].decode(),
        event_id=f[b"id"].decode(),
        type=f[b"type"].decode(),
        subject=_text(f.get(b"subj")),
        occurred_at=_from_us(int(f[b"occ"])),
        received_at=_from_us(int(f[b"rcv"])),
        data=None if data is None else orjson.loads(data),
        processed=done is not None,
        stale=done.stale if done else False,
        orders=tuple(so for so, _ in done.orders) if done else (),
    )

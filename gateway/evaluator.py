"""Scale-out: one replica evaluates every order, the others follow it.

Without this, every replica evaluated every order: the full evaluation at start and every
sweep, and each order an event touches, times the number of replicas. Now the replicas
elect one *evaluator* under a Redis lease; it runs the exception tracker (which writes
the order index in the same pass) and shares the results; the others follow:

- **Exceptions.** The evaluator journals its transitions in the shared journal, as
  before. A follower tails the journal (``exception_transitions_after``), applies each
  transition to its own open set and pushes it to its own subscribers.
- **The order index.** Each value the evaluator computes is written to a Redis hash
  (``<prefix>index``) and published on ``<prefix>index``, with the fence position its
  reads began at (``gateway/redis_fence.py``: how far invalidations were applied). A
  follower loads the hash at start and applies the messages; a value clears a follower's
  dirty mark only if its reads began after the fence message that made the order dirty,
  and never replaces a value read later. What a follower cannot get that way (an order
  its own door invalidated, a value not yet shared when a listing arrives) it recomputes
  itself at listing time, as a single replica does: the index is never older than the
  last accepted event on any replica.

Why one evaluator rather than orders split across replicas: an exception (a machine down,
a quality hold) hits orders all over the plant, and its open set, severity and value at
risk are sums over all of them; split evaluation would need those sums merged across
replicas on every change, and takeover would move shares of every exception. One evaluator
keeps the tracker as it was (one task, transitions in order) and makes takeover one step.
The cost: the evaluator carries the whole evaluation (what one replica did before).

When the evaluator dies: its lease (``[scaleout] evaluator_lease_seconds``) runs out; the
first follower to find it free becomes the evaluator, reloads the open set from the
journal and evaluates every order once (what the dead one had in hand is redone, and the
diff against the journal raises and clears only what changed). Until then exceptions and
the index stand still at the last shared state, while every follower still recomputes at
listing time what events made dirty. A replica stopping normally releases the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from typing import Any

import orjson
import redis.asyncio as redis

from resolvers.derived import DerivedValues
from resolvers.enums import DeliveryRisk, OrderStage
from sources.tasks import stop_task

from .exception_tracker import ExceptionTracker, follow, reset
from .order_index import OrderIndex
from .redis_channel import RedisChannel

log = logging.getLogger("ordergraph.evaluator")

# Renew the lease if it is still ours (a replica that lost it must not extend another's).
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def pack(values: DerivedValues | str, position: int) -> bytes:
    """One shared index value (or a bare sales order number: the order is gone)."""
    if isinstance(values, str):
        return orjson.dumps({"gone": values, "p": position})
    v = values
    return orjson.dumps(
        {
            "p": position,
            "v": [
                v.sales_order, v.customer, v.stage.value, v.risk.value,
                v.predicted.isoformat() if v.predicted else None, v.days_late, v.value, v.priority,
                v.open_exceptions, v.confirmed.isoformat() if v.confirmed else None,
                v.production_orders, v.work_centers, v.deliveries, v.queued_on,
            ],
        }
    )  # fmt: skip


def unpack(raw: bytes) -> tuple[DerivedValues | str, int]:
    """Inverse of :func:`pack`; ValueError for anything else."""
    try:
        data = orjson.loads(raw)
        if "gone" in data:
            return str(data["gone"]), int(data["p"])
        row = data["v"]
        # 13 fields: a replica from before ``queued_on`` was shared. Its work centres (every
        # one it has production on, a superset) stand in: a what-if loads a few more orders
        # and finds them untouched, never misses one.
        if len(row) == 13:
            row = [*row, row[11]]
        so, cust, stage, risk, predicted, late, value, priority, exc, confirmed, pos, wcs, dds, queued = row
        values = DerivedValues(
            so, cust, OrderStage(stage), DeliveryRisk(risk),
            dt.date.fromisoformat(predicted) if predicted else None, int(late), float(value), priority, int(exc),
            dt.date.fromisoformat(confirmed) if confirmed else None, tuple(pos), tuple(wcs), tuple(dds),
            tuple(queued),
        )  # fmt: skip
        return values, int(data["p"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a shared index value: {exc}") from exc


class _IndexChannel(RedisChannel):
    role = "redis index"

    def __init__(self, url: str, channel: str, evaluator: Evaluator) -> None:
        super().__init__(url, channel)
        self.evaluator = evaluator

    def received(self, data: bytes | str) -> None:
        self.evaluator._received(data if isinstance(data, bytes) else data.encode())

    async def resubscribed(self) -> None:
        self.evaluator._missed()


class Evaluator:
    """Elects the evaluating replica and shares its results with the others."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        replica_id: str,
        tracker: ExceptionTracker,
        index: OrderIndex,
        lease_seconds: float = 10.0,
        follow_seconds: float = 0.5,
    ) -> None:
        self.url = url
        self.replica_id = replica_id
        self.tracker = tracker
        self.index = index
        self.lease_seconds = lease_seconds
        self.follow_seconds = follow_seconds
        self.lease_key = f"{prefix}evaluator"
        self.hash_key = f"{prefix}index"
        self.complete_key = f"{prefix}index:complete"
        self.leading = False
        self.elections_won = 0
        self.shared = 0  # values this replica shared (as the evaluator)
        self.applied = 0  # values this replica took from the evaluator
        self._client: redis.Redis | None = None
        self._channel = _IndexChannel(url, f"{prefix}index", self)
        self._outbox: dict[str, bytes] = {}
        self._task: asyncio.Task[None] | None = None
        self._follower: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._lost = False
        self._complete_shared = False
        self._clean_shared: int | None = None
        self._clean_at = 0.0
        self._rebuild: asyncio.Task[None] | None = None
        # The fence position this replica started at (set by the gateway): shared values
        # read before it may miss invalidations this replica never saw.
        self.start_position = 0

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        self._client = redis.from_url(self.url)
        self._renew = self._client.register_script(_RENEW)
        self._release = self._client.register_script(_RELEASE)
        await self._channel._subscribe()
        self._channel._listen_in_background()
        self._task = asyncio.create_task(self._elect(), name="ordergraph-evaluator-election")

    async def stop(self, *, release: bool = True) -> None:
        """Stop; ``release=False`` leaves the lease to run out (what a crash does)."""
        for task in (self._task, self._follower, self._flusher, self._rebuild):
            await stop_task(task)
        self._task = self._follower = self._flusher = self._rebuild = None
        if self.leading:
            await self.tracker.stop()
            if release and self._client is not None:
                with contextlib.suppress(Exception):
                    await self._flush()
                    await self._release(keys=[self.lease_key], args=[self.replica_id])
        self.leading = False
        await self._channel.stop()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # --- election -----------------------------------------------------------------------

    async def _elect(self) -> None:
        assert self._client is not None
        lease_ms = int(self.lease_seconds * 1000)
        renewed = time.monotonic()
        self._follower = asyncio.create_task(self._follow(), name="ordergraph-evaluator-follow")
        while True:
            try:
                if self.leading:
                    if await self._renew(keys=[self.lease_key], args=[self.replica_id, lease_ms]):
                        renewed = time.monotonic()
                    else:
                        await self._demote("the lease went to another replica")
                elif await self._client.set(self.lease_key, self.replica_id, nx=True, px=lease_ms):
                    renewed = time.monotonic()
                    await self._promote()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("evaluator election: %s", exc)
                if self.leading and time.monotonic() - renewed > self.lease_seconds:
                    await self._demote("the lease could not be renewed")
            await asyncio.sleep(self.lease_seconds / 3)

    async def _promote(self) -> None:
        log.info("replica %s evaluates every order now (evaluator lease won)", self.replica_id)
        self.elections_won += 1
        await stop_task(self._follower)
        self._follower = None
        self.leading = True
        self.tracker.following = False
        # The followed open set stays (the journal's, reloaded on start); ready again once
        # this replica evaluated every order itself.
        self.tracker.ready.clear()
        self.index.on_computed = self._share
        self.index.on_lost = self.tracker.request_full
        self.index.compute = self.tracker.derive_now
        self._flusher = asyncio.create_task(self._flush_forever(), name="ordergraph-evaluator-share")
        self.tracker.start()

    async def _demote(self, why: str) -> None:
        log.warning("replica %s stops evaluating: %s", self.replica_id, why)
        self.leading = False
        await self.tracker.stop()
        self.index.on_computed = None
        await stop_task(self._flusher)
        self._flusher = None
        self._follower = asyncio.create_task(self._follow(), name="ordergraph-evaluator-follow")

    # --- the evaluator: share what it computes ---------------------------------------------

    def _share(self, values: DerivedValues | str, position: int) -> None:
        so = values if isinstance(values, str) else values.sales_order
        self._outbox[so] = pack(values, position)

    async def _flush_forever(self) -> None:
        self._complete_shared = False
        lingering: set[str] = set()
        last_look = time.monotonic()
        while True:
            try:
                if time.monotonic() - last_look >= 1.0:
                    # Orders dirty for a second that the tracker was not asked about (an
                    # invalidated key reaches more orders than the bus names, e.g. finished
                    # production on a work centre): evaluated here, so followers hear of them.
                    dirty = set(self.index.dirty())
                    todo = sorted(lingering & dirty)
                    lingering = dirty - set(todo)
                    last_look = time.monotonic()
                    if todo:
                        await self.tracker.derive_now(todo)
                await self._flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("evaluator: could not share index values (%s); retrying", exc)
            await asyncio.sleep(0.05)

    async def _flush(self) -> None:
        assert self._client is not None
        batch, self._outbox = self._outbox, {}
        if batch:
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    pipe.hset(self.hash_key, mapping=batch)
                    items = list(batch.values())
                    for i in range(0, len(items), 500):
                        pipe.publish(self._channel.channel, b"\n".join(items[i : i + 500]))
                    await pipe.execute()
            except Exception:
                for so, raw in batch.items():  # keep them for the next round (newer ones win)
                    self._outbox.setdefault(so, raw)
                raise
            self.shared += len(batch)
        if self.index.usable and not self._complete_shared:
            await self._client.set(self.complete_key, self.replica_id)
            await self._client.publish(self._channel.channel, b"complete")
            self._complete_shared = True
        # Nothing dirty here and everything shared: the followers' marks up to this fence
        # position are answered (values that did not change are not sent again).
        clean = self.index.clean_position() if self.index.usable and not self._outbox else None
        # Again every second: a follower that just started waits for one.
        if clean is not None and (clean != self._clean_shared or time.monotonic() - self._clean_at >= 1.0):
            await self._client.publish(self._channel.channel, b"clean %d" % clean)
            self._clean_shared = clean
            self._clean_at = time.monotonic()

    # --- a follower: take what the evaluator shares -----------------------------------------

    def _received(self, data: bytes) -> None:
        if self.leading:
            return
        if data == b"complete":
            self._complete()
            return
        if data.startswith(b"clean "):
            with contextlib.suppress(ValueError):
                self.index.clean_upto(int(data[6:]))
            return
        for raw in data.split(b"\n"):
            try:
                values, position = unpack(raw)
            except ValueError as exc:
                log.error("evaluator: %s; ignored", exc)
                continue
            if self.index.put_shared(values, position):
                self.applied += 1

    def _missed(self) -> None:
        # Shared values may have been missed: reload the hash (each value carries its
        # version; the newest wins).
        self._lost = True

    def _rebuild_here(self) -> None:
        """The index was lost here (the cache dropped wholesale): shared values cannot say
        which of them predate what was missed, so this replica derives every order itself
        once (listings read every order meanwhile)."""
        if self._rebuild is None or self._rebuild.done():
            self._rebuild = asyncio.create_task(self._derive_all(), name="ordergraph-index-rebuild")

    async def _derive_all(self) -> None:
        tracker = self.tracker
        while True:
            try:
                ctx = tracker.context_factory()
                first = ctx.cache.ticket()
                seen: list[str] = []
                token = None
                while True:
                    page = await ctx.sources.erp.list_sales_orders(top=tracker.chunk_size, skip_token=token)
                    ids = [so.sales_order for so in page.records]
                    await tracker.derive_now(ids)
                    seen += ids
                    if not page.next_skip_token or not page.records:
                        break
                    token = page.records[-1].sales_order
                self.index.complete(seen, first)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("order index rebuild failed (%s); retrying", exc)
                await asyncio.sleep(2.0)

    def _complete(self) -> None:
        # The first time only: after a loss here, only this replica's own rebuild completes it.
        if not self.index._built:
            self.index.complete(list(self.index._values), self.index.records.ticket())

    async def _load(self) -> None:
        assert self._client is not None
        cursor = 0
        while True:
            cursor, found = await self._client.hscan(self.hash_key, cursor, count=2000)
            for raw in found.values():
                try:
                    values, position = unpack(raw)
                except ValueError:
                    continue
                if self.index.put_shared(values, position):
                    self.applied += 1
            if cursor == 0:
                break
        if await self._client.get(self.complete_key) is not None:
            self._complete()

    async def _follow(self) -> None:
        """Follow the evaluator: its index values, then its exception transitions."""
        tracker = self.tracker
        tracker.following = True
        self.index.on_computed = None
        self.index.compute = tracker.derive_now
        self.index.on_lost = self._rebuild_here
        reset(tracker)
        while True:
            try:
                await tracker._load_journal()
                await self._load()
                # What was shared before this replica's fence began may predate an
                # invalidation it never saw: dirty until a value read after that point.
                self.index.suspect_before(self.start_position)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("evaluator: could not load the shared state (%s); retrying", exc)
                await asyncio.sleep(1.0)
        while True:
            try:
                if self._lost:
                    self._lost = False
                    await self._load()
                if self.index.usable:
                    tracker.ready.set()
                rows = await tracker.journal.exception_transitions_after(tracker._last_cursor, limit=1000)
                follow(tracker, rows)
                if len(rows) == 1000:
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("evaluator: following the evaluator failed (%s); retrying", exc)
            await asyncio.sleep(self.follow_seconds)

    def stats(self) -> dict[str, Any]:
        return {"leading": self.leading, "shared": self.shared, "applied": self.applied}

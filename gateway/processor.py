"""The event processor: applies journaled events, in journal order, exactly once each.

Stages of one batch (up to ``batch_size`` journaled events, oldest first):

1. the parsed event: as the door parsed it (``StoredEvent.event``), else parsed once from
   the journaled row (a poll's, another replica's, or one from before a restart);
2. the impact, for the batch's events together (``mapping.impacts_of``: at most two rounds
   of look-ups), reusing what the door read for their keys before the 202 (``accepted``);
3. the records seen for the first time: their last change at the source (one round,
   reusing what step 2 read), so an event older than its record is stale;
4. the orders' customers (one read for the batch);
5. watermarks in event order (one journal call): out-of-order events change nothing, and a
   change both pushed and polled reaches subscribers once;
6. cache keys not dropped at the door: dropped, once, by the invalidation handler;
7. one ``Journal.record_processed`` for the batch, which also publishes when the journal
   ``publishes`` (Redis); otherwise one ``bus.publish`` of the batch's changes.

Steps 1-4 read; only 5-7 write, so a batch that fails before them left nothing behind: it is
then applied one event at a time, where each failure is judged for that event alone (retry
with back-off, or park as a dead letter) and the events behind it go on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sources import Sources, tracing
from sources.client import SourceError
from sources.events import EventError, EventRegistry, SourceEvent
from sources.namespaces import SALES_ORDER
from sources.resilience import CIRCUIT_OPEN, BreakerState
from sources.tasks import stop_task

from .bus import Bus, OrderChanged
from .cache import RecordCache
from .invalidation import CacheInvalidation
from .journal import Journal, Processed, StoredEvent, WatermarkKey
from .mapping import NAMESPACE_OF_ENTITY, Lookups, first_read, impacts_of, last_changes_of
from .reconcile_ids import POLLED, is_polled

if TYPE_CHECKING:
    from .telemetry import EventTimeline

log = logging.getLogger("ordergraph.events")

_DOOR_KEPT = 20_000  # impacts from the door kept for the processor (a bound, not a working size)


class EventProcessor:
    """Applies journaled events in batches, in journal order, exactly once each."""

    def __init__(
        self,
        journal: Journal,
        registry: EventRegistry,
        sources: Sources,
        cache: RecordCache,
        bus: Bus,
        wakeup: asyncio.Event,
        *,
        retry_seconds: float = 1.0,
        poll_seconds: float | None = None,
        max_future_seconds: float = 300.0,
        plant_clock: Callable[[], dt.datetime] | None = None,
        park_after: int = 5,
        max_retry_seconds: float = 10.0,
        batch_size: int = 200,
        invalidation: CacheInvalidation | None = None,
    ) -> None:
        self.journal = journal
        self.registry = registry
        self.sources = sources
        self.cache = cache
        self.bus = bus
        self.wakeup = wakeup
        self.retry_seconds = retry_seconds
        # No event moves a record's "newest seen" mark further ahead of its arrival than
        # the clock skew the door allows (events journaled before that check included).
        self.max_future = dt.timedelta(seconds=max_future_seconds)
        self.plant_clock = plant_clock or (lambda: dt.datetime.now(dt.UTC))
        # Scale-out: other replicas' events (and a dead replica's lease) arrive without a
        # local wakeup, so an idle processor looks again this often.
        self.poll_seconds = poll_seconds
        # The one handler that drops cache keys for events (gateway/invalidation.py).
        self.invalidation = invalidation or CacheInvalidation(cache)
        # Events applied together: one round of look-ups, one journal write, one publish.
        self.batch_size = max(1, batch_size)
        # What the door read for an event's impact (whose keys it dropped) before the 202.
        self._door: OrderedDict[int, Lookups] = OrderedDict()
        self.batches = 0  # batches applied whole (more than one event)
        self.timeline: EventTimeline | None = None  # set by the gateway (gateway/telemetry.py)
        self.park_after = max(1, park_after)
        # Sources a reconciliation poll reads (gateway/reconcile.py): their pushed events are
        # checked against what a poll already applied.
        self.polled_sources: set[str] = set()
        self.max_retry_seconds = max_retry_seconds
        self.processed = 0
        self.stale = 0
        self.failures = 0
        self.parked = 0  # events this processor parked as dead letters
        # Failed attempts per event, and its strikes: failures in a row that were not waits
        # for a source or store that was down. In memory: after a restart they start at 0.
        self._attempts: dict[int, int] = {}
        self._strikes: dict[int, int] = {}
        self._journal_down = False
        self.idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def fence(self) -> Any:
        """Scale-out: the fence that tells every replica what to drop before the 202."""
        return self.invalidation.fence

    @fence.setter
    def fence(self, fence: Any) -> None:
        self.invalidation.fence = fence

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ordergraph-event-processor")

    async def stop(self) -> None:
        await stop_task(self._task)

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until every journaled event is processed (tests, shutdown)."""
        async with asyncio.timeout(timeout):
            while await self.journal.unprocessed(limit=1):
                self.wakeup.set()
                await asyncio.sleep(0.01)

    async def accepted(self, events: list[tuple[int, SourceEvent]], budget_seconds: float = 1.0) -> None:
        """Before ``POST /events`` answers: the cache keys its new events touch, dropped here
        and in every replica (one round of look-ups for all of them; a notification-only
        production order names no sales order). What the look-ups read is kept for applying
        the events, so no record is read twice and no key dropped twice.

        Where the look-ups fail or take longer than ``budget_seconds``, the entities' whole
        namespaces go instead (of the events that needed them): the reads after the 202
        must not serve a record older than the event. Applying follows asynchronously."""
        parsed = [e for _, e in events]
        try:
            async with asyncio.timeout(budget_seconds):
                impacts, lookups = await impacts_of(parsed, self.sources, orders=False)
        except (SourceError, TimeoutError) as exc:
            unknown = [e for e in parsed if first_read(e, orders=False) is not None]
            log.warning("events %s: their cache keys are unknown (%s); dropping their namespaces",
                        ", ".join(e.id for e in unknown[:5]), _why(exc))  # fmt: skip
            known = [e for e in parsed if first_read(e, orders=False) is None]
            impacts, _ = await impacts_of(known, self.sources, orders=False)  # reads nothing
            namespaces = {ns for e in unknown if (ns := NAMESPACE_OF_ENTITY.get(e.entity)) is not None}
            await self.invalidation.drop_everywhere({k for i in impacts for k in i.keys}, namespaces)
            return
        for seq, _ in events:
            self._door[seq] = lookups
            if len(self._door) > _DOOR_KEPT:
                self._door.popitem(last=False)
        await self.invalidation.drop_everywhere({k for i in impacts for k in i.keys})

    async def _run(self) -> None:
        while True:
            # Python 3.11's wait_for (used by redis-py) can swallow a cancel; honour it anyway.
            if (task := asyncio.current_task()) is not None and task.cancelling():
                raise asyncio.CancelledError
            try:
                pending = await self.journal.unprocessed(limit=500)
            except Exception as exc:  # the journal's store is away: wait for it
                if not self._journal_down:
                    log.warning("event processor: the journal does not answer (%s); waiting for it", _why(exc))
                    self._journal_down = True
                await asyncio.sleep(self.retry_seconds)
                continue
            if self._journal_down:
                log.info("event processor: the journal answers again")
                self._journal_down = False
            if not pending:
                self.idle.set()
                self.wakeup.clear()
                # Re-check after clearing, so a set() that raced with clear() is not lost.
                if not await self.journal.unprocessed(limit=1):
                    try:
                        async with asyncio.timeout(self.poll_seconds):
                            await self.wakeup.wait()
                    except TimeoutError:
                        pass
                continue
            self.idle.clear()
            for start in range(0, len(pending), self.batch_size):
                if not await self._apply_pending(pending[start : start + self.batch_size]):
                    break  # an event waits for its retry: fetch again after the back-off

    async def _apply_pending(self, batch: list[StoredEvent]) -> bool:
        """Apply ``batch`` whole, or else one event at a time; False when an event failed
        and must be retried (after its back-off) before the events behind it."""
        # Whole: not under tracing (a span per event), nor with an event being retried.
        if len(batch) > 1 and not tracing.enabled() and not any(s.seq in self._attempts for s in batch):
            try:
                await self.apply_batch(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("a batch of %d events failed (%s); applying them one at a time", len(batch), _why(exc))
            else:
                self.batches += 1
                return True
        for stored in batch:
            try:
                await self.apply(stored)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                if await self._failed(stored, exc):
                    continue  # parked: on to the next event at once
                await asyncio.sleep(self._backoff(stored.seq))
                return False
            else:
                if (failed := self._attempts.pop(stored.seq, None)) is not None:
                    self._strikes.pop(stored.seq, None)
                    log.info("event %s (seq %s) applied after %d failed attempts", stored.event_id, stored.seq, failed)
        return True

    async def _failed(self, stored: StoredEvent, exc: Exception) -> bool:
        """Decide what a failed attempt means for ``stored``; True when it was parked.

        Permanent (parked at once): the source refused the request for this event (HTTP
        4xx), or the event no longer parses (e.g. its key fails the configured format).
        Waiting (no strike): the source is down for everyone (its breaker is open) or the
        journal's store is unreachable -- not this event's fault; it also ends a run of
        strikes, which may have been that outage beginning. Anything else is a strike, and
        ``park_after`` strikes in a row park the event."""
        attempts = self._attempts[stored.seq] = self._attempts.get(stored.seq, 0) + 1
        label = f"event {stored.event_id} (seq {stored.seq})"
        if isinstance(exc, SourceError) and exc.client_fault:
            return await self._park(stored, f"{_why(exc)} (refused: will not pass on retry)", attempts)
        if isinstance(exc, EventError):
            return await self._park(stored, f"no longer acceptable: {_why(exc)}", attempts)
        if self._waiting(exc):
            if self._strikes.pop(stored.seq, None) is not None or attempts == 1:
                log.warning("%s waits until its source answers again: %s", label, _why(exc))
            return False
        strikes = self._strikes[stored.seq] = self._strikes.get(stored.seq, 0) + 1
        if strikes >= self.park_after:
            return await self._park(stored, f"failed {strikes} times in a row; last: {_why(exc)}", attempts)
        if isinstance(exc, SourceError):
            log.warning("%s not applied (%d of %d): %s; retrying", label, strikes, self.park_after, _why(exc))
        else:
            log.warning("%s failed (%d of %d); retrying", label, strikes, self.park_after, exc_info=strikes == 1)
        return False

    def _waiting(self, exc: Exception) -> bool:
        if isinstance(exc, SourceError):
            if exc.code == CIRCUIT_OPEN:
                return True
            health = self.sources.health().get(exc.source)
            return health is not None and health.breaker_state is not BreakerState.CLOSED
        return _is_store_outage(exc)

    async def _park(self, stored: StoredEvent, reason: str, attempts: int) -> bool:
        try:
            parked = await self.journal.park(stored.seq, reason, attempts=attempts, at=dt.datetime.now(dt.UTC))
        except Exception as exc:
            log.warning("event %s (seq %s) could not be parked (%s); retrying", stored.event_id, stored.seq, exc)
            return False
        self._attempts.pop(stored.seq, None)
        self._strikes.pop(stored.seq, None)
        if parked:
            self.parked += 1
            log.error(
                "event %s (seq %s, %s %s) parked as a dead letter: %s. Fix the cause, then "
                "`ordergraph events replay %s`",
                stored.event_id,
                stored.seq,
                stored.source,
                stored.type,
                reason,
                stored.seq,
            )
        return True

    def _backoff(self, seq: int) -> float:
        # Doubling per failure of the same event, so a failing event costs the sources little.
        failures = self._attempts.get(seq, 1)
        return min(self.retry_seconds * 2 ** (failures - 1), self.max_retry_seconds)

    def _event_of(self, stored: StoredEvent) -> SourceEvent:
        """The parsed event: the door's, else parsed once from the journaled row (which
        also checks it against today's limits: one that no longer passes is parked)."""
        if stored.event is not None:
            return stored.event
        ce: dict[str, Any] = {
            "specversion": "1.0",
            "id": stored.event_id,
            "source": stored.source,
            "type": stored.type,
            "time": stored.occurred_at.isoformat(),
            "subject": stored.subject,
        }
        if stored.data is not None:
            ce["data"] = stored.data
        return self.registry.parse(ce)

    async def apply(self, stored: StoredEvent) -> None:
        """Apply one journaled event (in an ``event.apply`` span when tracing is on, under
        the event's ingest span when this process accepted it)."""
        if not tracing.enabled():
            return await self.apply_batch([stored])
        timeline = self.timeline
        parent = timeline.applying(stored.seq) if timeline is not None else None
        attributes = {
            "ordergraph.event.seq": stored.seq,
            "cloudevents.event_id": stored.event_id,
            "cloudevents.event_type": stored.type,
            "cloudevents.event_subject": stored.subject or "",
        }
        with tracing.span("event.apply", attributes, parent=parent) as span:
            if timeline is not None and span is not None:
                timeline.applied(stored.seq, tracing.in_span(span))
            await self.apply_batch([stored])

    async def apply_batch(self, batch: list[StoredEvent]) -> None:
        """Apply ``batch`` (journal order) in the stages of the module docstring."""
        events = [self._event_of(s) for s in batch]
        # Journaled by a reconciliation poll (gateway/reconcile.py)?
        polled = [is_polled(s.event_id) for s in batch]
        for stored, event, poll in zip(batch, events, polled, strict=True):
            if not poll:
                # The source spoke: it is alive (health, stale_sources), whatever its API says.
                self.sources.note_event(event.system, stored.received_at)
        door = [self._door.get(s.seq) for s in batch]
        lookups = Lookups()
        for read in dict.fromkeys(d for d in door if d is not None):
            lookups.merge(read)
        impacts, lookups = await impacts_of(events, self.sources, lookups=lookups)
        now = self.plant_clock()
        learned = await self._last_changes(events, polled, now, lookups)
        customers = await self._customers(sorted({so for impact in impacts for so in impact.orders}))

        # Only the journal from here on.
        if learned:
            await self.journal.advance_watermarks(learned)
        fresh = await self._advance(events, polled, now)
        to_drop: set[tuple[str, str]] = set()
        done: list[Processed] = []
        for stored, event, impact, at_door, is_fresh in zip(batch, events, impacts, door, fresh, strict=True):
            orders = tuple((so, customers.get(so)) for so in sorted(impact.orders))
            if not is_fresh and not event.reversal:
                # Older than what we already applied: keep it in history, change nothing.
                done.append(Processed(stored.seq, orders, stale=True))
                continue
            # Keys the door dropped before the 202 are not dropped again (nor sent again).
            keys = frozenset() if at_door is not None else frozenset(impact.keys)
            to_drop |= keys
            invalidated = tuple(sorted(keys))
            changes = tuple(
                OrderChanged(
                    seq=stored.seq,
                    sales_order=so,
                    customer=cust,
                    source=event.system,
                    type=event.type,
                    occurred_at=event.occurred_at,
                    invalidated=invalidated,
                )
                for so, cust in orders
            )
            done.append(Processed(stored.seq, orders, changes=changes, invalidate=keys))
        self.invalidation.drop_here(to_drop)
        # With a journal that publishes (Redis): recorded and published in one step each
        # (ordered, gap-free cursors across replicas); False = another replica had it.
        recorded = await self.journal.record_processed(done)
        for p, new in zip(done, recorded, strict=True):
            if p.stale:
                self.stale += 1
            elif new:
                self.processed += 1
        for stored in batch:
            self._door.pop(stored.seq, None)
        if self.timeline is not None:
            # What no fan-out will ask about again: its accept time is not needed (the
            # timeline would otherwise keep one entry per event until its bound).
            fanned = {p.seq for p, new in zip(done, recorded, strict=True) if new and not p.stale and p.changes}
            self.timeline.forget([s.seq for s in batch if s.seq not in fanned])
        if not self.journal.publishes:
            changes = [c for p, new in zip(done, recorded, strict=True) if new and not p.stale for c in p.changes]
            if changes:
                await self.bus.publish(changes)

    async def _last_changes(
        self, events: list[SourceEvent], polled: list[bool], now: dt.datetime, lookups: Lookups
    ) -> list[tuple[WatermarkKey, dt.datetime]]:
        """Before the first event of a record is judged: its watermark raised to the record's
        own LastChangeDateTime at the source, so an event older than the record is stale
        even when nothing of the record was seen or cached before. For records whose first
        event in the batch was pushed (a poll's time is the source's own last change) and
        that have no watermark yet. Best effort: if the source cannot say now, the events
        are judged by the watermark alone. Like an event's time, a last change beyond the
        clock skew counts as of ``now`` (the plant's clock)."""
        first: dict[WatermarkKey, SourceEvent | None] = {}
        for event, poll in zip(events, polled, strict=True):
            first.setdefault((event.system, event.entity, event.key), None if poll else event)
        candidates = [(k, e) for k, e in first.items() if e is not None]
        if not candidates:
            return []
        marks = await self.journal.watermarks([k for k, _ in candidates])
        unseen = [(k, e) for (k, e), mark in zip(candidates, marks, strict=True) if mark is None]
        if not unseen:
            return []
        try:
            changed = await last_changes_of([e for _, e in unseen], self.sources, lookups)
        except SourceError as exc:
            log.info("events %s: the records' last change is unknown (%s)", ", ".join(e.id for _, e in unseen[:5]), exc)
            return []
        ceiling = now + self.max_future
        return [(k, c if c <= ceiling else now) for (k, _), c in zip(unseen, changed, strict=True) if c is not None]

    async def _advance(self, events: list[SourceEvent], polled: list[bool], now: dt.datetime) -> list[bool]:
        """Each event's watermark step, in order: True when it is fresh (not older than its
        record's watermark, and not a change a poll and a push both reported)."""
        ceiling = now + self.max_future
        # A time beyond the skew (journaled before the door checked it) is not believed:
        # the event counts as of now.
        marks = [e.occurred_at if e.occurred_at <= ceiling else now for e in events]
        plain = [(e.system, e.entity, e.key) for e in events]
        other = [(e.system, e.entity if poll else f"{POLLED}{e.entity}", e.key) for e, poll in zip(events, polled, strict=True)]
        checks = [(poll or e.system in self.polled_sources) and not e.reversal for e, poll in zip(events, polled, strict=True)]
        # One change, pushed and polled, reaches subscribers once: a poll that saw no newer
        # state than what was applied changes nothing, nor does a push of what a poll
        # applied. The batch's earlier events count: simulate the steps in order.
        polled_key = [(e.system, f"{POLLED}{e.entity}", e.key) for e in events]
        wanted = list(dict.fromkeys([*plain, *(o for o, c in zip(other, checks, strict=True) if c), *polled_key]))
        sim = dict(zip(wanted, await self.journal.watermarks(wanted), strict=True))

        def step(key: WatermarkKey, mark: dt.datetime) -> bool:
            current = sim.get(key)
            if current is not None and mark <= current:
                return mark == current
            sim[key] = mark
            return True

        duplicate: list[bool] = []
        steps: list[tuple[WatermarkKey, dt.datetime]] = []
        polled_steps: list[tuple[WatermarkKey, dt.datetime]] = []
        for i, mark in enumerate(marks):
            seen = sim.get(other[i]) if checks[i] else None
            duplicate.append(seen is not None and seen >= mark)
            steps.append((plain[i], mark))
            if step(plain[i], mark) and not duplicate[i] and polled[i]:
                step(polled_key[i], mark)
                polled_steps.append((polled_key[i], mark))
        advanced = await self.journal.advance_watermarks(steps + polled_steps)
        return [ok and not dup for ok, dup in zip(advanced[: len(steps)], duplicate, strict=True)]

    async def _customers(self, orders: list[str]) -> dict[str, str]:
        """The customer of each order; the sold-to party of an order never changes, so a
        cached sales order answers without a call."""
        out: dict[str, str] = {}
        missing = []
        for so in orders:
            # The last good record too: the event at hand has just invalidated the cached
            # one, and the sold-to party is the one field that cannot have changed.
            entry = self.cache.last_good((SALES_ORDER, so))
            if entry is not None and entry.value is not None:
                out[so] = entry.value.sold_to_party
            else:
                missing.append(so)
        if missing:
            found = await self.sources.erp.sales_orders(missing)
            out.update({so: rec.sold_to_party for so, rec in found.items()})
        return out


def _why(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else f"{text[:300]}…"


def _is_store_outage(exc: Exception) -> bool:
    """The journal's store (SQLite file, Redis) failed, not the event: retry without counting."""
    import sqlite3

    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(exc, (OSError, sqlite3.OperationalError, RedisConnectionError, RedisTimeoutError))

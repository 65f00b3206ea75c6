"""The event path: ``POST /events`` → journal → invalidate → bus.

1. ``accept``: size, JSON, signature, CloudEvents validation — all before anything is
   stored; then one durable journal append. 202 means the events will not be lost, and
   that no read after it serves a cached record older than them: before answering,
   ``EventProcessor.invalidate_now`` drops the cache keys the events name (finding the
   ones they do not name with a look-up at the source; if that fails, the whole
   namespace), so later reads go to the sources.
2. ``EventProcessor``: applies journaled events in order — out-of-order check by business
   time, map to cache keys and orders, invalidate, mark processed, publish. Events whose
   processing did not finish (crash, source down) are picked up again from the journal.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from opentelemetry.trace import SpanKind, Status, StatusCode

from sources import Sources, tracing
from sources.client import SourceError
from sources.events import EventError, EventRegistry, SourceEvent, system_of_source
from sources.namespaces import SALES_ORDER
from sources.resilience import CIRCUIT_OPEN, BreakerState
from sources.signing import HEADER, SignatureError, verify
from sources.tasks import stop_task

from .bus import Bus, OrderChanged
from .cache import RecordCache
from .config import EventsConfig
from .journal import Journal, JournalEvent, StoredEvent
from .mapping import NAMESPACE_OF_ENTITY, impact_of, last_change_of
from .reconcile_ids import POLLED, is_polled

if TYPE_CHECKING:
    from .telemetry import EventTimeline

log = logging.getLogger("ordergraph.events")

SINGLE = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


@dataclasses.dataclass(slots=True)
class Rejection(Exception):
    status: int
    message: str


@dataclasses.dataclass(slots=True)
class Accepted:
    accepted: int
    duplicates: int
    cursors: list[int]


class EventIngress:
    """Validates and durably journals incoming events."""

    def __init__(
        self,
        config: EventsConfig,
        registry: EventRegistry,
        journal: Journal,
        clock: Callable[[], dt.datetime],
        plant_clock: Callable[[], dt.datetime] | None = None,
    ):
        self.config = config
        self.registry = registry
        self.journal = journal
        self.clock = clock  # signatures and receive times: the wall clock
        # Business times are checked against the plant's "now" (the demo's plant runs ahead).
        self.plant_clock = plant_clock or clock
        self.wakeup: asyncio.Event = asyncio.Event()
        # Set by the gateway (EventProcessor.invalidate_now): runs on newly journaled events
        # before the 202.
        self.before_ack: Callable[[list[SourceEvent]], Awaitable[None]] | None = None
        # Set by the gateway: seq → ingest trace context and accept time (gateway/telemetry.py).
        self.timeline: EventTimeline | None = None

    async def accept(
        self, body: bytes, content_type: str, signature: str | None, trace_headers: Mapping[str, str] | None = None
    ) -> Accepted:
        """Accept a request body, or raise Rejection (nothing stored)."""
        if len(body) > self.config.max_body_bytes:
            raise Rejection(413, f"body over {self.config.max_body_bytes} bytes")
        ctype = content_type.split(";")[0].strip().lower()
        if ctype not in (SINGLE, BATCH, "application/json"):
            raise Rejection(415, f"Content-Type must be {SINGLE} or {BATCH} (got {ctype or 'none'!r})")
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise Rejection(400, f"malformed JSON: {exc}") from exc
        if ctype == BATCH or (ctype == "application/json" and isinstance(decoded, list)):
            if not isinstance(decoded, list):
                raise Rejection(400, f"{BATCH} needs a JSON array of events")
            raw_events = decoded
        else:
            if not isinstance(decoded, dict):
                raise Rejection(400, f"{SINGLE} needs one JSON object")
            raw_events = [decoded]
        if not raw_events:
            raise Rejection(400, "empty batch")
        if len(raw_events) > self.config.max_batch:
            raise Rejection(413, f"batch over {self.config.max_batch} events")
        systems = {system_of_source(e["source"]) for e in raw_events if isinstance(e, dict) and isinstance(e.get("source"), str)}
        if len(systems) != 1 or len([e for e in raw_events if isinstance(e, dict) and isinstance(e.get("source"), str)]) != len(raw_events):
            raise Rejection(400, "every event needs a `source`, and one request carries events of one source system")
        system = systems.pop()
        secret = self.config.secrets.get(system or "")
        if not system or secret is None:
            shown = repr(system) if len(system or "") <= 40 else f"{system[:40]!r}…"
            raise Rejection(400, f"unknown source system {shown} (known: {', '.join(sorted(self.config.secrets))})")
        try:
            verify(secret, body, signature, now=self.clock().timestamp(), tolerance=self.config.tolerance_seconds)
        except SignatureError as exc:
            raise Rejection(401, f"{HEADER}: {exc}") from exc
        parsed: list[SourceEvent] = []
        plant_now = self.plant_clock()
        for raw in raw_events:
            try:
                parsed.append(self.registry.parse(raw, system=system, now=plant_now))
            except EventError as exc:
                raise Rejection(400, str(exc)) from exc
        if tracing.enabled():
            return await self._traced_store(raw_events, parsed, trace_headers)
        return await self._store(parsed, self._on_journaled)

    def check_window(self, event: SourceEvent) -> None:
        """Raise Rejection(400) when ``event``'s business time lies outside the accepted
        window around the plant's now (for doors that parse events themselves)."""
        try:
            self.registry.check_time(event.id, event.occurred_at, self.plant_clock())
        except EventError as exc:
            raise Rejection(400, str(exc)) from exc

    async def accept_parsed(self, parsed: list[SourceEvent]) -> Accepted:
        """Journal events another door already parsed and checked (``POST /events`` after
        its checks, the MQTT consumer, the carrier endpoints): one durable append, then the
        invalidation before the ack, as for every event."""
        if not parsed:
            return Accepted(accepted=0, duplicates=0, cursors=[])
        return await self._store(parsed, self._on_journaled)

    def _on_journaled(self, results: list[Any]) -> None:
        if self.timeline is not None:
            for r in results:
                if not r.duplicate:
                    self.timeline.accepted(r.seq, None)

    async def _traced_store(
        self, raw_events: list[Any], parsed: list[SourceEvent], trace_headers: Mapping[str, str] | None
    ) -> Accepted:
        """``_store`` with a span per event: ``event.ingest`` (parent: the event's CloudEvents
        ``traceparent``, else the request's) and its child ``event.journal``."""
        tracer = tracing.tracer()
        assert tracer is not None
        request_parent = tracing.extract(trace_headers)
        ingest, journal = [], []
        for raw, e in zip(raw_events, parsed, strict=True):
            carried = {k: raw[k] for k in ("traceparent", "tracestate") if isinstance(raw.get(k), str)}
            parent = tracing.extract(carried) if carried else request_parent
            attributes = {
                "cloudevents.event_id": e.id,
                "cloudevents.event_source": raw.get("source", ""),
                "cloudevents.event_type": e.type,
                "cloudevents.event_subject": e.key,
                "ordergraph.event.traceparent_carried": bool(carried),
            }
            span = tracer.start_span("event.ingest", context=parent, kind=SpanKind.CONSUMER, attributes=attributes)
            ingest.append(span)
            journal.append(tracer.start_span("event.journal", context=tracing.in_span(span)))

        def journaled(results: list[Any]) -> None:
            for span, child, r in zip(ingest, journal, results, strict=True):
                child.set_attributes({"ordergraph.event.seq": r.seq, "ordergraph.event.duplicate": r.duplicate})
                child.end()
                span.set_attribute("ordergraph.event.duplicate", r.duplicate)
                if not r.duplicate and self.timeline is not None:
                    self.timeline.accepted(r.seq, tracing.in_span(span))

        try:
            return await self._store(parsed, journaled)
        except Exception as exc:
            for span in ingest:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
            raise
        finally:
            for child in journal:
                if child.is_recording():
                    child.end()
            for span in ingest:
                span.end()

    async def _store(self, parsed: list[SourceEvent], journaled: Callable[[list[Any]], None]) -> Accepted:
        """Journal ``parsed`` (durable: the ack's promise) and acknowledge."""
        now = self.clock()
        results = await self.journal.append(
            [
                JournalEvent(
                    source=e.system,
                    event_id=e.id,
                    type=e.type,
                    subject=e.key,
                    occurred_at=e.occurred_at,
                    data=e.data,
                    received_at=now,
                )
                for e in parsed
            ]
        )
        journaled(results)
        self.wakeup.set()
        if self.before_ack is not None:
            new = [e for e, r in zip(parsed, results, strict=True) if not r.duplicate]
            if new:
                await self.before_ack(new)
        return Accepted(
            accepted=len(results),
            duplicates=sum(1 for r in results if r.duplicate),
            cursors=[r.seq for r in results],
        )


class EventProcessor:
    """Applies journaled events, in journal order, exactly once each."""

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
        # Scale-out: tells every replica what to drop before the 202 (gateway/redis_fence.py).
        self.fence: Any = None
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
            for stored in pending:
                try:
                    await self.apply(stored)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.failures += 1
                    if await self._failed(stored, exc):
                        continue  # parked: on to the next event at once
                    await asyncio.sleep(self._backoff(stored.seq))
                    break
                else:
                    if (failed := self._attempts.pop(stored.seq, None)) is not None:
                        self._strikes.pop(stored.seq, None)
                        log.info("event %s (seq %s) applied after %d failed attempts", stored.event_id, stored.seq, failed)

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

    async def invalidate_now(self, events: list[SourceEvent], budget_seconds: float = 1.0) -> None:
        """Drop the cache keys ``events`` touch, now (before ``POST /events`` answers).

        Keys an event names are dropped at once; the rest take one look-up at the source
        (a notification-only production order names no sales order). Where a look-up
        fails or takes longer than ``budget_seconds``, the entity's whole namespace goes:
        the reads after the 202 must not serve a record older than the event. Processing
        (history, orders, subscribers) follows asynchronously, as before."""

        async def keys_of(event: SourceEvent) -> set[tuple[str, str]] | None:
            try:
                async with asyncio.timeout(budget_seconds):
                    return (await impact_of(event, self.sources, orders=False)).keys
            except (SourceError, TimeoutError) as exc:
                log.warning("event %s: its cache keys are unknown (%s); dropping its namespace", event.id, exc)
                return None

        found = await asyncio.gather(*(keys_of(e) for e in events))
        keys: set[tuple[str, str]] = set()
        namespaces: set[str] = set()
        for event, ks in zip(events, found, strict=True):
            if ks is not None:
                keys |= ks
            elif (namespace := NAMESPACE_OF_ENTITY.get(event.entity)) is not None:
                namespaces.add(namespace)
        for namespace in namespaces:
            self.cache.invalidate_namespace(namespace)
        if keys:
            self.cache.invalidate(keys)
        if self.fence is not None and (keys or namespaces):
            # Every other replica too, before the 202 (each checks the fence before reading).
            try:
                await self.fence.publish(keys, namespaces)
            except Exception:
                log.exception("could not publish invalidations to the other replicas")

    def _reparse(self, stored: StoredEvent) -> SourceEvent:
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
            return await self._apply(stored)
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
            await self._apply(stored)

    async def _apply(self, stored: StoredEvent) -> None:
        event = self._reparse(stored)
        polled = is_polled(stored.event_id)  # journaled by a reconciliation poll (gateway/reconcile.py)
        if not polled:
            # The source spoke: it is alive (health, stale_sources), whatever its API says.
            self.sources.note_event(event.system, stored.received_at)
        impact = await impact_of(event, self.sources)
        now = self.plant_clock()
        if not polled:  # a poll's time is the source's own LastChangeDateTime
            await self._learn_last_change(event, now)
        # A time beyond the skew (journaled before the door checked it) is not believed:
        # the event counts as of now.
        mark = event.occurred_at if event.occurred_at <= now + self.max_future else now
        # One change, pushed and polled, reaches subscribers once: a poll that saw no newer
        # state than what was applied changes nothing, nor does a push of what a poll applied.
        duplicate = False
        if (polled or event.system in self.polled_sources) and not event.reversal:
            seen = await self.journal.watermark(event.system, event.entity if polled else f"{POLLED}{event.entity}", event.key)
            duplicate = seen is not None and seen >= mark
        fresh = await self.journal.advance_watermark(event.system, event.entity, event.key, mark) and not duplicate
        if polled and fresh:
            await self.journal.advance_watermark(event.system, f"{POLLED}{event.entity}", event.key, mark)
        customers = await self._customers(sorted(impact.orders))
        orders = [(so, customers.get(so)) for so in sorted(impact.orders)]
        if not fresh and not event.reversal:
            # Older than what we already applied: keep it in history, change nothing.
            await self.journal.mark_processed(stored.seq, orders, stale=True)
            self.stale += 1
            return
        self.cache.invalidate(impact.keys)
        changes = [
            OrderChanged(
                seq=stored.seq,
                sales_order=so,
                customer=cust,
                source=event.system,
                type=event.type,
                occurred_at=event.occurred_at,
                invalidated=tuple(sorted(impact.keys)),
            )
            for so, cust in orders
        ]
        record_and_publish = getattr(self.journal, "mark_processed_and_publish", None)
        if record_and_publish is not None:
            # Scale-out journal: records and publishes in one atomic step (ordered, gap-free
            # cursors across replicas); 0 = another replica already recorded this event.
            if await record_and_publish(stored.seq, orders, changes, impact.keys):
                self.processed += 1
            return
        await self.journal.mark_processed(stored.seq, orders)
        self.processed += 1
        if changes:
            await self.bus.publish(changes)

    async def _learn_last_change(self, event: SourceEvent, now: dt.datetime) -> None:
        """Before the first event of a record is judged: raise its watermark to the record's
        own LastChangeDateTime at the source, so an event older than the record is stale
        even when nothing of the record was seen or cached before. Best effort: if the
        source cannot say now, the event is judged by the watermark alone. Like an event's
        time, a last change beyond the clock skew counts as of ``now`` (the plant's clock)."""
        if await self.journal.watermark(event.system, event.entity, event.key) is not None:
            return
        try:
            changed = await last_change_of(event, self.sources)
        except SourceError as exc:
            log.info("event %s: the record's last change is unknown (%s)", event.id, exc)
            return
        if changed is not None:
            mark = changed if changed <= now + self.max_future else now
            await self.journal.advance_watermark(event.system, event.entity, event.key, mark)

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

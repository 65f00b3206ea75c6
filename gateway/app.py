"""The ASGI application: routes, and the ``Gateway`` that owns everything with a lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from resolvers import execution
from resolvers.context import Context
from resolvers.pagination import KEY_BYTES, Cursors, derive_key
from resolvers.policy import Viewer
from resolvers.prediction import PredictionParams
from resolvers.queued import QueuedOrders
from resolvers.schema import build_schema
from sources import Policy, SourceEndpoint, Sources, event_registry
from sources.keys import KeyFormats
from sources.memory import release_free_memory

from .admission import PREFLIGHT_HEADERS, Admission
from .auth import Authenticator, AuthError, AuthUnavailable, bearer_token
from .bus import Bus, LocalBus
from .cache import RecordCache
from .carriers import aftership_endpoint, edi214_endpoint, warn_if_development
from .config import Config, ConfigError, SourceConfig
from .connect import endpoint_settings
from .documents import GuardedDocuments, Safelist
from .exception_tracker import ExceptionTracker
from .graphiql import render_graphiql
from .graphql_http import GraphQLHttp, GraphQLPostFirst
from .ingress import EventIngress, events_endpoint
from .journal import Journal
from .metrics import Metrics
from .mqtt import ShopFloorConsumer, WorkCenterStaleness
from .notices import NoticeEngine, nothing_acknowledged, outbox_path
from .operation import Operations
from .order_index import OrderIndex
from .outbox import Outbox
from .processor import EventProcessor
from .response_cache import ResponseCache

if TYPE_CHECKING:
    from .reconcile import Reconciler
    from .redis_fence import InvalidationFence
from sources.tasks import stop_task

from .sse import stream_endpoint
from .subscriptions import Hub, Scope
from .telemetry import EventTimeline, Telemetry
from .websocket import Connection, SocketFirst
from .workflow import WorkflowChannel, WorkflowService

log = logging.getLogger("ordergraph.gateway")

STATIC_DIR = Path(__file__).parent / "static"
LOCAL_POLL_SECONDS = 2.0
# Young passes per middle-generation pass while serving (Python: 10); see _freeze_periodically.
SERVING_MIDDLE_THRESHOLD = 100

# A full collection that walks a large heap (seconds at 100,000 orders) and finds almost no
# garbage is put off longer each time (``full_pass_spacing``), up to this many times its
# normal spacing; one that finds garbage resets it.
FULL_PASS_LONG_SECONDS = 0.25  # shorter passes keep the normal spacing (the soak's: 25-105 ms)
FULL_PASS_LOW_YIELD = 0.005  # "almost none": under half a percent of the heap's blocks
FULL_PASS_MAX_BACKOFF = 16
# A full pass expected to take this long or more (its last one's CPU; the first one's
# estimated from the heap's allocated blocks, ``sys.getallocatedblocks()``) waits until no
# operation has run for FULL_PASS_QUIET_SECONDS (at most ``[gateway]
# gc_full_defer_seconds``), looking every FULL_PASS_QUIET_POLL. Shorter ones (a small
# plant's: 25-105 ms in the soak, whose memory depends on them) run when due.
# The heap is sized by its blocks, not by ``gc.get_freeze_count()``: that walks every frozen
# object (3.1 million, 440-510 ms with the loop stopped at 100,000 orders), and the loop
# asked it every few seconds while the first pass waited for quiet; the blocks are summed per
# 16 KiB pool (5.8 million blocks in about 1 ms). First passes measured, blocks and CPU:
# 1.3 million and 0.28 s (2,000 orders), 2.9 million and 0.99 s (20,000), 5.8 million and
# 3.46 s (100,000): the estimate keeps the small plant's pass short, the others long.
FULL_PASS_WAIT_SECONDS = 0.25
FULL_PASS_SECONDS_PER_BLOCK = 1.5e-7
FULL_PASS_QUIET_SECONDS = 1.0
FULL_PASS_QUIET_POLL = 0.1


def full_pass_spacing(base_seconds: float, took: float, freed: int, walked: int, backoff: int) -> tuple[float, int]:
    """Seconds until the next full collection, and the backoff factor to carry, after a pass
    that took ``took`` CPU seconds and freed ``freed`` objects of a heap of ``walked`` blocks
    (``sys.getallocatedblocks()``: about twice the objects the pass walks).

    Passes stay at least 100 times their own length apart (at most 1 % of the loop). A long
    pass that freed almost nothing doubles the factor: at 100,000 orders a pass is a 1.2 s
    pause that every request in flight waits for, and it freed 4,905 of 2.3 million
    objects. Short passes (a small plant, where the soak's memory depends on them) and
    passes that free garbage keep the normal spacing."""
    if took >= FULL_PASS_LONG_SECONDS and freed < walked * FULL_PASS_LOW_YIELD:
        backoff = min(backoff * 2, FULL_PASS_MAX_BACKOFF)
    else:
        backoff = 1
    return max(base_seconds, 100 * took) * backoff, backoff
_serving = {"gateways": 0, "before": gc.get_threshold()}


def _serving_collector(step: int) -> None:
    """Serving thresholds while any gateway of this process serves (several run at once in
    tests and replicas benches); Python's own back when the last one stops."""
    if step > 0 and _serving["gateways"] == 0:
        _serving["before"] = before = gc.get_threshold()
        gc.set_threshold(before[0], SERVING_MIDDLE_THRESHOLD, before[2])
    _serving["gateways"] += step
    if step < 0 and _serving["gateways"] == 0:
        gc.set_threshold(*_serving["before"])


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)



def choose_executor(setting: str) -> str:
    """The executor to run (``[gateway] executor``): "fast" unless the setting says
    "standard", or the installed graphql-core or strawberry are not the versions the fast
    executor was tested with (then the standard one, with a warning)."""
    if setting not in execution.EXECUTORS:
        raise ConfigError(f"gateway.executor: {setting!r} is not 'fast' or 'standard'")
    if setting == "fast" and (mismatch := execution.fast_path_mismatch()) is not None:
        log.warning("the fast executor was tested with other versions (%s): running the standard executor", mismatch)
        return "standard"
    return setting


class Gateway:
    """Owns the HTTP session to the sources, the record cache and the metrics."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], dt.datetime] = utc_now,
        bus: Bus | None = None,
        domain_clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.config = config
        self.bus: Bus = bus or LocalBus()
        self._own_bus = bus is None  # scale-out replaces our own LocalBus with a RedisBus
        self.registry = event_registry(config.events.limits())
        self.journal: Journal | None = None
        self.replica_id: str | None = None  # scale-out: this replica's name in the journal's group
        self.ingress: EventIngress | None = None
        self.processor: EventProcessor | None = None
        self.hub: Hub | None = None
        self.exceptions: ExceptionTracker | None = None
        # Proactive notices (gateway/notices.py); None when [notices] is off.
        self.notices: NoticeEngine | None = None
        # Whether an exception is acknowledged, for the internal notice rule (the exception
        # workflow's store answers; until then nothing is acknowledged).
        self.is_acknowledged: Callable[[str], bool | Awaitable[bool]] = nothing_acknowledged
        self.workflow: WorkflowService | None = None  # workflow on exceptions (gateway/workflow.py)
        self.reconciler: Reconciler | None = None  # reconciliation polling, set at start
        self.evaluator: Any = None  # scale-out: gateway/evaluator.py
        # Scale-out: read-after-202 across replicas (gateway/redis_fence.py)
        self.fence: InvalidationFence | None = None
        self.gc_full_passes = 0  # the freeze loop's full collections (gateway/app.py)
        self.gc_full_seconds = 0.0  # and their CPU seconds
        self.gc_full_due: float | None = None  # since when a full pass waits for a quiet moment
        self.cursors: Cursors | None = None  # set at start: the key may live in Redis
        # The shop floor over MQTT ([mqtt]; gateway/mqtt.py) and the work centres whose
        # shop-floor picture it lost (a death or a seq gap), shown as STALE in freshness.
        self.mqtt: ShopFloorConsumer | None = None
        self.shop_floor_stale = WorkCenterStaleness()
        self.clock = clock
        # "Now" of the domain rules (predictions, exceptions): the plant's time. The demo's
        # simulated plant runs faster than the wall clock, which signatures and health use.
        self.domain_clock = domain_clock or clock
        # The prediction model on the configured calendars (plant's factory calendar,
        # ship-tos' delivery calendar): every query, subscription and the tracker use it.
        self.prediction_params = PredictionParams(
            plant=config.calendar.plant_calendar(), delivery=config.calendar.delivery_calendar()
        )
        self.cache = RecordCache(
            maxsize=config.cache.maxsize, ttl_seconds=config.cache.ttl_seconds, ttl_jitter=config.cache.ttl_jitter
        )
        self.responses = ResponseCache(
            self.cache,
            ttl_seconds=min(config.cache.response_ttl_seconds, config.cache.ttl_seconds),
            maxsize=config.cache.response_maxsize,
            max_seconds=min(config.cache.response_max_seconds, config.cache.ttl_seconds),
            domain_clock=self.domain_clock,
        )
        self.metrics = Metrics()
        self.metrics.watch_response_cache(self.responses)
        # Observability (gateway/telemetry.py): traces off unless [telemetry] or OTEL_* say so.
        self.telemetry = Telemetry(config.telemetry)
        self.timeline = EventTimeline()
        self.metrics.watch_record_cache(self.cache)
        self.metrics.watch_full_collections(self)
        # Derived values of every order for filtered and sorted listings (issue 21): kept
        # current by the cache's invalidations and written by the exception tracker.
        self.index = OrderIndex(self.cache)
        # The orders queued on each work centre, for a what-if's pegged orders (issue 21):
        # kept current by the same invalidations.
        self.queued = QueuedOrders(self.cache, ttl_seconds=config.cache.ttl_seconds)
        self.executor = choose_executor(config.gateway.executor)
        fast = self.executor == "fast"
        self.schema = build_schema(fast=fast)
        if config.federation.enabled:  # an Apollo Federation v2 subgraph (resolvers/federation.py)
            from resolvers.federation import subgraph_schema

            self.schema = subgraph_schema(fast=fast)
        self.session: aiohttp.ClientSession | None = None
        self.sources: Sources | None = None
        # The operation pipeline's stages that need no sources (gateway/operation.py):
        # admission (CSRF, identity, rate) and the document checks. The pipeline itself is
        # composed at start, once the fence and the sources exist.
        self.auth = Authenticator(config.auth)
        self.admission = Admission(self.auth, config.limits, csrf=config.auth.csrf_prevention)
        self.safelist = Safelist.load(config.limits.persisted_queries or None)
        self.documents = GuardedDocuments(
            self.schema._schema,
            config.limits,
            max_first=config.gateway.max_first,
            safelist=self.safelist,
            introspection_roles=config.auth.introspection_roles,
        )
        self.metrics.watch_documents(self.documents)
        self.operations: Operations | None = None
        self.http: GraphQLHttp | None = None

    async def start(self) -> None:
        """Open the pooled HTTP session and the connectors."""
        self.telemetry.start()
        limit = sum(s.max_connections for s in self.config.sources.values())
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit, ttl_dns_cache=300))
        endpoints = {
            name: SourceEndpoint(
                base_url=s.base_url,
                timeout_seconds=s.timeout_seconds,
                batch_size=s.batch_size,
                policy=source_policy(s),
                **endpoint_settings(s),  # the connector profile (rest, sap-odata) and its auth
            )
            for name, s in self.config.sources.items()
        }
        self.sources = Sources.connect(
            self.session,
            endpoints,
            on_request=self.metrics.on_source_request,
            clock=self.clock,
            # Single-flight never shares a read that began before a cache invalidation.
            generation=lambda: self.cache.generation,
            # The keys /events accepts are the keys the connectors may send ([events] key_formats).
            key_formats=KeyFormats(self.config.events.key_formats),
        )
        ev = self.config.events
        scaleout = self.config.scaleout
        if scaleout.redis_url:
            await self._start_scaleout()
        else:
            if ev.journal_path != ":memory:":
                Path(ev.journal_path).parent.mkdir(parents=True, exist_ok=True)
            from .sqlite_journal import SQLiteJournal

            self.journal = await SQLiteJournal.open(ev.journal_path, retention_days=ev.retention_days, max_events=ev.max_events)
        assert self.journal is not None
        now = self.domain_clock()  # the plant's time, which business times follow
        ceiling = now + dt.timedelta(seconds=ev.max_future_seconds)
        if lowered := await self.journal.cap_watermarks(ceiling, now):
            log.warning(
                "%d records had a newest-seen business time after %s (events with a wrong clock, journaled before "
                "`time` was checked); lowered to now so their real events apply again",
                lowered,
                ceiling.isoformat(timespec="seconds"),
            )
        self.ingress = EventIngress(ev, self.registry, self.journal, self.clock, plant_clock=self.domain_clock)
        self.cursors = Cursors(await self._cursor_key())
        # One pipeline for every transport and the subscription fan-out.
        self.operations = Operations(
            self.schema._schema,
            self.context,
            documents=self.documents,
            admission=self.admission,
            responses=self.responses,
            fence=self.fence.sync if self.fence is not None else None,  # scale-out: read after 202
            max_body_bytes=self.config.gateway.max_body_bytes,
        )
        self.http = GraphQLHttp(self.operations, observe=self.metrics.on_graphql_request)
        workflow_channel = await self._start_workflow(self.operations, self.cursors)
        self.hub = Hub(self.operations, self.journal, self.cursors, workflow=workflow_channel)
        self.bus.subscribe(self._on_bus)
        await self.bus.start()
        # Scale-out: other replicas' events. SQLite: events replayed by `ordergraph events
        # replay` from another process, which cannot wake this one.
        poll = scaleout.poll_seconds if scaleout.redis_url else LOCAL_POLL_SECONDS
        self.processor = EventProcessor(
            self.journal,
            self.registry,
            self.sources,
            self.cache,
            self.bus,
            self.ingress.wakeup,
            poll_seconds=poll,
            max_future_seconds=ev.max_future_seconds,
            plant_clock=self.domain_clock,
            park_after=ev.park_after_failures,
        )
        self.metrics.watch_parked_events(self.journal.parked_count)
        # Event path: backlog, spans across its tasks, event-to-push lag; live subscriptions.
        self.metrics.watch_event_backlog(self.journal.backlog)
        self.ingress.timeline = self.processor.timeline = self.hub.timeline = self.timeline
        self.hub.on_lag = self.metrics.on_push_lag
        self.metrics.watch_subscriptions(self.hub)
        self.ingress.before_ack = self.processor.accepted
        self.processor.fence = self.fence
        self.hub.start()
        self.processor.start()
        await self._start_notices()
        # Exceptions: evaluated once for every order, then as events change orders.
        self.exceptions = ExceptionTracker(
            self.context,
            self.journal,
            clock=self.domain_clock,
            publish=self.hub.exceptions.publish,
            stale_sources=self.stale_sources,
            prediction_params=self.prediction_params,
            observe=self.notices.observe if self.notices is not None else None,
            index=self.index,
            freeze_gc=self.config.gateway.gc_freeze_seconds > 0,
        )
        self.index.compute = self.exceptions.derive_now
        self.index.on_lost = self.exceptions.request_full
        if scaleout.redis_url:
            # One replica evaluates, the others follow it (gateway/evaluator.py).
            from .evaluator import Evaluator

            assert self.fence is not None
            self.evaluator = Evaluator(
                scaleout.redis_url,
                prefix=scaleout.key_prefix,
                replica_id=self.replica_id,
                tracker=self.exceptions,
                index=self.index,
                lease_seconds=scaleout.evaluator_lease_seconds,
            )
            self.evaluator.start_position = self.fence.applied
            await self.evaluator.start()
        else:
            self.exceptions.start()
        warn_if_development(self.config)
        if self.config.mqtt.url:
            self.mqtt = ShopFloorConsumer(
                self.config.mqtt, self.ingress, self.registry, self.shop_floor_stale, plant_clock=self.domain_clock
            )
            self.mqtt.start()
        if self.notices is not None:
            self.notices.exceptions = self.exceptions
            await self.notices.start()
        # Reconciliation polling of the sources that poll (gateway/reconcile.py).
        from .reconcile import Reconciler

        self.reconciler = Reconciler(
            self.config, self.sources, self.journal, self.registry,
            clock=self.clock, plant_clock=self.domain_clock, wakeup=self.ingress.wakeup,
        )
        self.processor.polled_sources = set(self.reconciler.pollers)
        self.reconciler.start()
        self._prune_task = asyncio.create_task(self._prune_periodically(), name="ordergraph-journal-prune")
        self._gc_task = (
            asyncio.create_task(self._freeze_periodically(), name="ordergraph-gc-freeze")
            if self.config.gateway.gc_freeze_seconds > 0
            else None
        )

    async def _start_notices(self) -> None:
        """The notices outbox and engine, unless ``[notices] enabled = false``."""
        nc = self.config.notices
        if not nc.enabled:
            return
        sc = self.config.scaleout
        outbox: Any
        if sc.redis_url:
            # Replicas share one outbox: each notice decided, released and sent once.
            from .redis_outbox import RedisOutbox

            lease = max(30.0, 3 * nc.timeout_seconds)
            outbox = await RedisOutbox.open(sc.redis_url, prefix=f"{sc.key_prefix}notices:", lease_seconds=lease)
        else:
            outbox = await Outbox.open(outbox_path(nc.outbox_path, self.config.events.journal_path))
        self.notices = NoticeEngine(
            nc,
            outbox,
            prediction_params=self.prediction_params,
            registry=self.metrics.registry,
            is_acknowledged=lambda eid: self.is_acknowledged(eid),
        )

    async def _cursor_key(self) -> bytes:
        """The key cursors are sealed with: every replica's, across restarts (see
        ``[gateway] cursor_secret``)."""
        if self.config.gateway.cursor_secret:
            return derive_key(self.config.gateway.cursor_secret)
        sc = self.config.scaleout
        if sc.redis_url:
            import redis.asyncio as redis

            client = redis.from_url(sc.redis_url)
            try:
                name = f"{sc.key_prefix}cursor-key"
                await client.set(name, os.urandom(KEY_BYTES).hex(), nx=True)  # the first replica's wins
                return bytes.fromhex((await client.get(name)).decode())
            finally:
                await client.aclose()
        path = self.config.events.journal_path
        if path == ":memory:":
            return os.urandom(KEY_BYTES)  # cursors live as long as the journal
        return await asyncio.to_thread(_key_file, Path(path).with_suffix(".cursor-key"))

    async def _freeze_periodically(self) -> None:
        """Keep long-lived objects out of the cyclic garbage collector's full passes.

        A full collection walks every tracked object: with the record cache, the schema and
        a thousand WebSockets that took 25-105 ms here, a pause every subscriber and request
        feels (it was the whole event-to-client p99). ``gc.freeze()`` moves what is alive
        now to a generation the collector skips; acyclic garbage is still freed at once by
        reference counting. Every ``gc_full_seconds`` everything is unfrozen and collected,
        so cycles that died while frozen are reclaimed. Freezing is O(1), so doing it every
        few seconds is cheap. The full pass used to run every five minutes: the cycles of
        the requests in flight at each freeze piled up until then (the soak's RSS grew 4 MiB
        every 30 s up to t = 300 s), and the one long pass fell due with the record cache's
        TTL; once a minute the heap stays at its steady size and each pass is one pause of
        the same length (it walks the live heap, not the garbage's share). That pause grows
        with the heap (seconds at 100,000 orders), so the passes are also spaced at least 100
        times their own length apart: the collector never takes more than 1 % of the loop.
        A long pass that found almost no garbage is put off longer each time, up to 16 times
        (``full_pass_spacing``): a big plant's heap holds few cycles, each pass a pause.
        A long pass (``FULL_PASS_WAIT_SECONDS``) that falls due while operations run waits
        for a quiet moment (no operation for ``FULL_PASS_QUIET_SECONDS``), at most
        ``gc_full_defer_seconds``: the first pass after start-up walks the whole heap the
        first evaluation froze (4.3 s at 100,000 orders on a slow machine), and it landed
        inside a what-if that then took twice as long (bench/README.md). Under load that
        never pauses it runs when the wait is up.
        """
        assert self.exceptions is not None
        with contextlib.suppress(TimeoutError):
            await self.exceptions.settled(300)  # after start-up's bulk of allocations
        # Serving: the middle generation is collected once per SERVING_MIDDLE_THRESHOLD young
        # passes instead of Python's 10 (restored by ``stop``). A request's records and
        # futures live ~0.1-0.3 s: with 10 the middle pass (every ~50 ms under load) caught
        # most of them alive and moved them on to the full passes, where they were walked
        # again; with 100 most have died by then. Cold dashboard pages: the collector's share
        # of the CPU 12-14 % -> 8-9 %, full passes ~20 -> 0-2 per 15 s (bench/README.md).
        # What still dies in cycles is collected before each freeze (``gc.collect(1)`` below).
        _serving_collector(+1)
        self._gc_serving = True
        interval = self.config.gateway.gc_freeze_seconds
        full_every = self.config.gateway.gc_full_seconds or 300.0
        last_full = time.monotonic()
        took = 0.0
        backoff = 1
        sweeps = self.exceptions.full_evaluations_done
        while True:
            # A sweep over every order (every ``sweep_seconds``) leaves its pages' cycles
            # (request contexts, loaders, futures) behind, frozen by the passes below while
            # it ran: collected at once rather than up to ``full_every`` later, so the heap
            # the sweep grew is reused by what follows instead of growing again (the soak's
            # RSS rose in the windows holding the sweeps, bench/README.md). Still at least
            # 100 times the pass's own length apart.
            since = time.monotonic() - last_full
            swept = self.exceptions.full_evaluations_done != sweeps
            if self.gc_full_due is None and (since > full_every or (swept and since > 100 * took * backoff)):
                self.gc_full_due = time.monotonic()
            if self.gc_full_due is not None and (self._full_pass_short(took) or self._quiet_or_overdue(self.gc_full_due)):
                self.gc_full_due = None
                sweeps = self.exceptions.full_evaluations_done
                started = time.process_time()
                walked = sys.getallocatedblocks()  # the heap's size, without walking it
                gc.unfreeze()
                freed = gc.collect()
                release_free_memory()  # what the pass and the bursts since freed (sources/memory.py)
                last_full = time.monotonic()
                took = time.process_time() - started
                base = self.config.gateway.gc_full_seconds or 300.0
                full_every, backoff = full_pass_spacing(base, took, freed, walked, backoff)
                self.gc_full_passes += 1
                self.gc_full_seconds += took
                log.debug("full collection: %d freed (heap: %d blocks), %.1f ms CPU; next in %.0f s", freed, walked, took * 1000, full_every)
            # Young garbage first (the handshakes' cycles, say): frozen, it would stay
            # until the next full pass. A young collection walks only recent objects.
            gc.collect(1)
            gc.freeze()
            if self.gc_full_due is None:
                await asyncio.sleep(interval)
            else:
                await self._quiet_moment(interval, self.gc_full_due)

    def _full_pass_short(self, took: float) -> bool:
        """True when the next full pass is expected to be short: the last one's CPU, or for
        the first the heap's blocks times FULL_PASS_SECONDS_PER_BLOCK."""
        expected = took if self.gc_full_passes else sys.getallocatedblocks() * FULL_PASS_SECONDS_PER_BLOCK
        return expected < FULL_PASS_WAIT_SECONDS

    def _quiet_or_overdue(self, due_since: float) -> bool:
        """True when the full pass due since ``due_since`` may run now: no operation has run
        for ``FULL_PASS_QUIET_SECONDS``, or it has waited ``gc_full_defer_seconds``."""
        operations = self.operations
        if operations is None or operations.quiet_seconds() >= FULL_PASS_QUIET_SECONDS:
            return True
        return time.monotonic() - due_since >= self.config.gateway.gc_full_defer_seconds

    async def _quiet_moment(self, seconds: float, due_since: float) -> None:
        """Sleep ``seconds``, or less: until the waiting full pass may run."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(FULL_PASS_QUIET_POLL, left))
            if self._quiet_or_overdue(due_since):
                return

    async def _prune_periodically(self, interval_seconds: float = 3600.0) -> None:
        """Keep the journal within its retention (age and size), once an hour."""
        while True:
            try:
                assert self.journal is not None
                deleted = await self.journal.prune(self.clock())
                if deleted:
                    log.info("journal retention: pruned %d events", deleted)
            except Exception:
                log.exception("journal prune failed")
            await asyncio.sleep(interval_seconds)

    async def _start_scaleout(self) -> None:
        """Several replicas as one: journal on Redis Streams, bus over Redis pub/sub."""
        from .redis_bus import RedisBus, bus_channel
        from .redis_fence import InvalidationFence
        from .redis_journal import RedisJournal

        sc, ev = self.config.scaleout, self.config.events
        if self._own_bus:
            self.bus = RedisBus(
                sc.redis_url,
                channel=bus_channel(sc.key_prefix),
                invalidate=self.cache.invalidate,
                on_gap=self.cache.invalidate_all,  # messages may be lost: trust no cached record
            )
        elif not isinstance(self.bus, RedisBus):
            # The Redis journal publishes processed changes on the Redis channel itself.
            raise ValueError("scaleout.redis_url is set: the bus must be a RedisBus")
        self.fence = InvalidationFence(
            sc.redis_url,
            prefix=sc.key_prefix,
            invalidate=self.cache.invalidate,
            invalidate_namespace=self.cache.invalidate_namespace,
            invalidate_all=self.cache.invalidate_all,
        )
        await self.fence.start()
        self.index.fence_applying = lambda: self.fence.applying if self.fence is not None else None
        self.index.fence_applied(self.fence.applied)
        self.fence.on_applied = self.index.fence_applied
        journal = await RedisJournal.open(
            sc.redis_url,
            prefix=sc.key_prefix,
            replica_id=sc.replica_id or None,
            lease_seconds=sc.lease_seconds,
            retention_days=ev.retention_days,
            max_events=ev.max_events,
        )
        self.journal, self.replica_id = journal, journal.replica_id

    async def _start_workflow(self, operations: Operations, cursors: Cursors) -> WorkflowChannel:
        """Workflow on exceptions: SQLite beside the journal, or the replicas' Redis."""
        from .workflow_store import (
            RedisWorkflowStore,
            SQLiteWorkflowStore,
            WorkflowStore,
            sqlite_path,
        )

        sc = self.config.scaleout
        store: WorkflowStore
        if sc.redis_url:
            store = await RedisWorkflowStore.open(sc.redis_url, prefix=sc.key_prefix)
        else:
            store = await SQLiteWorkflowStore.open(sqlite_path(self.config.events.journal_path))
        self.workflow = WorkflowService(
            store, clock=self.clock, redis_url=sc.redis_url or None, poll_seconds=sc.poll_seconds if sc.redis_url else LOCAL_POLL_SECONDS
        )
        channel = WorkflowChannel(operations, cursors, self.workflow)
        self.workflow.channel = channel
        await self.workflow.start()
        self.is_acknowledged = self._attended
        return channel

    async def _attended(self, exception_id: str) -> bool:
        """For the internal notice rule: someone has acted on the exception — acknowledged it,
        snoozed it (while the snooze lasts) or resolved it — so nobody needs reminding."""
        assert self.workflow is not None
        w = await self.workflow.state(exception_id)
        return w is not None and (w.acknowledged or w.resolved or w.snoozed(self.workflow.now()))

    def _on_bus(self, changes: list) -> None:
        # Changes published by any replica: fan out. Their cache keys are dropped already
        # (gateway/invalidation.py; other replicas' by the fence or RedisBus.invalidate).
        if self.hub is not None:
            self.hub.on_changes(changes)
        if self.exceptions is not None:
            self.exceptions.on_changes(changes)

    async def stop(self) -> None:
        if self.reconciler is not None:
            await self.reconciler.stop()
        await stop_task(getattr(self, "_prune_task", None))
        if getattr(self, "_gc_task", None) is not None:
            await stop_task(self._gc_task)
            gc.unfreeze()
            if getattr(self, "_gc_serving", False):
                self._gc_serving = False
                _serving_collector(-1)
        if self.mqtt is not None:
            await self.mqtt.stop()
        if getattr(self, "evaluator", None) is not None:
            await self.evaluator.stop()
        if self.exceptions is not None:
            await self.exceptions.stop()
        if self.notices is not None:
            await self.notices.stop()
            await self.notices.outbox.close()
            self.notices = None
        if self.processor is not None:
            await self.processor.stop()
        if self.hub is not None:
            await self.hub.stop()
        if self.workflow is not None:
            await self.workflow.stop()
            self.workflow = None
        await self.bus.stop()
        if self.fence is not None:
            await self.fence.stop()
        if self.journal is not None:
            await self.journal.close()
            self.journal = None
        if self.sources is not None:
            await self.sources.aclose()
        if self.session is not None:
            await self.session.close()
            self.session = None
        await self.auth.close()
        self.documents.close()
        await self.telemetry.stop()

    def stale_sources(self) -> set[str]:
        """Source systems that sent no event and answered no call for longer than their
        ``stale_after_seconds`` (their orders carry DATA_STALE)."""
        if self.sources is None:
            return set()
        now = self.clock()
        return {name for name, h in self.sources.health(now).items() if h.stale}

    def readiness(self) -> tuple[bool, dict]:
        """(can serve, report): per source breaker state, last success, last error."""
        ready = self.sources is not None and self.journal is not None
        sources = {}
        if self.sources is not None:
            sources = {name: h.to_json() for name, h in self.sources.health(self.clock()).items()}
        degraded = sorted(n for n, h in sources.items() if h["breakerState"] != "CLOSED" or h["stale"])
        report: dict = {"sources": sources}
        if self.mqtt is not None:
            # The shop floor over MQTT: a lost broker or stale work centres degrade the answers.
            report["mqtt"] = {
                "connected": self.mqtt.connected.is_set(),
                "staleWorkCenters": sorted(self.shop_floor_stale),
                "received": self.mqtt.stats.received,
                "rebirthsRequested": self.mqtt.stats.rebirths_requested,
            }
            if not self.mqtt.connected.is_set() or self.shop_floor_stale:
                degraded.append("mqtt")
        status = "unavailable" if not ready else "degraded" if degraded else "ready"
        if self.reconciler is not None:
            report["freshness"] = self.reconciler.freshness()  # per source: pushed, or polled as of when
        return ready, {"status": status, "degraded": degraded, **report}

    def context(self, request: Request | None = None, *, viewer: Viewer | None = None) -> Context:
        """A fresh per-request context for ``viewer``: new loaders over the shared cache."""
        assert self.sources is not None, "gateway not started"
        return Context.create(
            self.sources,
            self.cache,
            self.domain_clock(),
            max_first=self.config.gateway.max_first,
            list_completed_days=self.config.gateway.list_completed_days,
            journal=self.journal,
            exceptions=self.exceptions,
            viewer=viewer,
            workflow=self.workflow,
            prediction_params=self.prediction_params,
            cursors=self.cursors,
            stale_work_centers=self.shop_floor_stale,
            notices=self.notices,
            index=self.index,
            queued=self.queued,
            freeze_gc=self.config.gateway.gc_freeze_seconds > 0,
        )

    async def internal_viewer(self, request: Request) -> bool:
        """Whether the request carries the token of an internal role (in open mode, no token
        acts as an integrator, as everywhere)."""
        try:
            viewer = await self.auth.viewer(bearer_token(request.headers.get("authorization")))
        except (AuthError, AuthUnavailable):
            return False
        return not viewer.is_customer

    def scope_of(self, viewer: Viewer) -> Scope:
        return Scope.of(viewer)


def _key_file(path: Path) -> bytes:
    """The cursor key kept in ``path`` (created, readable by the owner only, if missing)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = bytes.fromhex(path.read_text().strip())
        if len(key) != KEY_BYTES:
            raise ValueError(f"{path}: not a cursor key ({KEY_BYTES} bytes in hex); delete it to make a new one") from None
        return key
    key = os.urandom(KEY_BYTES)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex())
    return key


def cors_middleware(origins: list[str]) -> list[Middleware]:
    """CORS for the configured origins only (none configured: same origin only)."""
    if not origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Accept", *(h.title() for h in PREFLIGHT_HEADERS)],
            max_age=600,
        )
    ]


def source_policy(s: SourceConfig) -> Policy:
    """The resilience policy of one source, from its configuration."""
    return Policy(
        timeout_seconds=s.timeout_seconds,
        retries=s.retries,
        backoff_seconds=s.backoff_seconds,
        retry_budget_ratio=s.retry_budget_ratio,
        breaker_failures=s.breaker_failures,
        breaker_failure_rate=s.breaker_failure_rate,
        breaker_window=s.breaker_window,
        breaker_cooldown_seconds=s.breaker_cooldown_seconds,
        max_in_flight=s.max_in_flight,
        stale_if_error=s.stale_if_error,
        stale_after_seconds=s.stale_after_seconds,
    )


def create_app(
    config: Config,
    *,
    clock: Callable[[], dt.datetime] = utc_now,
    bus: Bus | None = None,
    domain_clock: Callable[[], dt.datetime] | None = None,
    mailbox: Any = None,
) -> Starlette:
    """Build the gateway's ASGI app; ``app.state.gateway`` is its ``Gateway``.

    ``domain_clock``: the time domain rules run on (default ``clock``); the demo passes the
    simulated plant's accelerated clock. ``mailbox``: the demo's SMTP sink
    (``gateway/smtp_sink.py``), listed on ``/notices``.
    """
    gateway = Gateway(config, clock=clock, bus=bus, domain_clock=domain_clock)
    subs = config.subscriptions

    async def graphql_endpoint(request: Request) -> Response:
        # A browser opening /graphql (or /graphql?query=...) gets GraphiQL, which then runs
        # the query with a JSON POST: a page load never executes anything (CSRF).
        if (
            request.method == "GET"
            and config.gateway.graphiql
            and "text/html" in request.headers.get("accept", "")
            and not any(request.headers.get(h) for h in PREFLIGHT_HEADERS)
        ):
            return HTMLResponse(render_graphiql())
        assert gateway.http is not None
        return await gateway.http.handle(request)

    async def graphql_ws(scope: Any, receive: Any, send: Any) -> None:
        # A plain ASGI app (SocketFirst below): no Starlette frames kept per idle connection.
        assert gateway.hub is not None and gateway.operations is not None
        conn = Connection(
            scope,
            receive,
            send,
            gateway.hub,
            gateway.operations,
            init_timeout=subs.connection_init_timeout_seconds,
            max_subscriptions=subs.max_per_connection,
            queue_size=subs.queue_size,
            max_message_bytes=config.gateway.max_body_bytes,
        )
        await conn.run()

    async def graphql_stream(request: Request) -> Response:
        assert gateway.hub is not None and gateway.operations is not None
        return await stream_endpoint(
            request, gateway.hub, gateway.operations, queue_size=subs.queue_size, keepalive_seconds=subs.keepalive_seconds
        )

    async def page(request: Request) -> Response:
        # The portal and the board are static pages over the public GraphQL API.
        name = request.url.path.strip("/")
        return FileResponse(STATIC_DIR / f"{name}.html", headers={"Cache-Control": "no-cache"})

    async def healthz(request: Request) -> Response:
        # The process: with `serve --workers N`, which worker answered.
        return JSONResponse({"status": "ok", "pid": os.getpid()})

    async def readyz(request: Request) -> Response:
        # 503 only when the gateway itself cannot serve; a sick source is a 200 "degraded".
        # The source report (hosts, errors) is for internal viewers; anyone else (a load
        # balancer's probe, a customer) gets the status alone.
        ready, report = gateway.readiness()
        if not await gateway.internal_viewer(request):
            report = {"status": report["status"]}
        return JSONResponse(report, status_code=200 if ready else 503)

    async def notices_feed(request: Request) -> Response:
        # Internal: every notice decided, its deliveries, and the demo's mailbox.
        from .notice_pages import feed

        if not await gateway.internal_viewer(request):
            return JSONResponse({"error": "an internal role's token is needed"}, status_code=403)
        return JSONResponse(await feed(gateway, mailbox, limit=request.query_params.get("limit", "200")))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    STATIC_DIR.mkdir(exist_ok=True)
    app = SocketFirst(
        socket_path="/graphql",
        socket_app=graphql_ws,
        routes=[
            Route("/graphql", graphql_endpoint, methods=["GET", "POST"]),
            Route("/graphql/stream", graphql_stream, methods=["GET", "POST"]),
            Route("/events", events_endpoint(lambda: gateway.ingress), methods=["POST"]),
            Route("/carriers/aftership", aftership_endpoint(gateway), methods=["POST"]),
            Route("/carriers/edi214", edi214_endpoint(gateway), methods=["POST"]),
            Route("/portal", page),
            Route("/board", page),
            Route("/notices", page),
            Route("/notices/feed", notices_feed),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", gateway.metrics.endpoint),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        ],
        lifespan=lifespan,
        # POST /graphql skips the router (gateway/graphql_http.py GraphQLPostFirst)
        middleware=[*cors_middleware(config.auth.cors_origins), Middleware(GraphQLPostFirst, http=lambda: gateway.http)],
    )
    app.state.gateway = gateway
    return app

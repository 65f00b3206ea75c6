"""Live exception tracking: raise, update and clear exceptions as source events arrive.

The ``ExceptionTracker`` (owned by the ``Gateway``) keeps the open exceptions in memory:

1. On start it reloads the open set the journal remembers (and the recently cleared ones,
   and the last transition cursor), then evaluates every order once: the ERP listing is
   paged 500 at a time, each page's order views are batch-loaded through a fresh
   ``Context`` and run through the pure rules (``resolvers/exception_rules.py``). The result is
   diffed against what the journal remembered, so a restart raises what appeared and
   clears what went away while the gateway was down.
2. Afterwards it re-evaluates only the orders named by the bus's ``OrderChanged`` (a burst
   of events within ``debounce_seconds`` is one evaluation), each order again at its next
   due time (``resolvers.exception_rules.next_due``: a scheduled start, an ETA or a ship-by day
   passing — what changes with the clock alone), every order now and then
   (``sweep_seconds``: a backstop, and the prediction's slow drift) and when the set of
   stale sources (``stale_sources``, for DATA_STALE) changes. Due times are on the domain
   clock, which the demo runs accelerated and which may jump: the timers are one heap,
   checked against that clock every ``timer_seconds``, so a due order is evaluated within
   about that much wall time of falling due, however far the clock moved.
3. Each diff records RAISED / UPDATED / CLEARED transitions in the journal (each with its
   own cursor, the resume cursor of ``exceptionsChanged``) and then hands them to the
   subscription hub. UPDATED (severity, value at risk, days late or affected orders
   changed) is journaled as a RAISED step whose payload says ``"action": "UPDATED"``:
   the journal's open set keeps the latest payload either way.

A single task does all of this, so transitions are recorded and pushed in order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import gc
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import orjson

from resolvers.context import Context
from resolvers.derived import derive, order_cache_keys
from resolvers.exception_board import Board, OrderedRecords, Records
from resolvers.exception_rules import Detection, ExceptionParams, ExceptionRecord, detect, next_due
from resolvers.exception_types import affected_orders
from resolvers.fetch import load_orders
from resolvers.loaders import remember_listing
from resolvers.prediction import PredictionParams, predict
from resolvers.view import production_left
from sources.client import SourceError
from sources.memory import gc_paused
from sources.tasks import stop_task, wait_event

from .cache import scanning
from .journal import ExceptionTransition

log = logging.getLogger("ordergraph.exceptions")
T = TypeVar("T")

Publish = Callable[[list[Any]], None]  # journal ExceptionTransition rows, in cursor order


class ExceptionTracker:
    """The open set of exceptions, kept in step with source events."""

    def __init__(
        self,
        context_factory: Callable[[], Context],
        journal: Any,
        *,
        clock: Callable[[], dt.datetime],
        publish: Publish | None = None,
        stale_sources: Callable[[], Iterable[str]] | None = None,
        params: ExceptionParams = ExceptionParams(),
        prediction_params: PredictionParams = PredictionParams(),
        chunk_size: int = 500,
        page_concurrency: int = 2,
        sweep_chunk_size: int = 100,
        sweep_seconds: float = 300.0,
        poll_seconds: float = 5.0,
        debounce_seconds: float = 0.1,
        closed_limit: int = 5_000,
        retry_seconds: float = 2.0,
        timer_seconds: float = 0.5,
        observe: Callable[[list[Any], dt.datetime], Awaitable[Any]] | None = None,
        index: Any = None,
        freeze_gc: bool = False,
    ) -> None:
        self.context_factory = context_factory
        # Sees every (view, customer) pair evaluated, with the evaluation's time: the
        # proactive notices decide there (gateway/notices.py). Its failure is logged only.
        self.observe = observe
        # The order index (gateway/order_index.py): each evaluated order's derived values
        # are written there from the same views, so no order is evaluated twice.
        self.index = index
        self.journal = journal
        self.clock = clock
        self.publish = publish
        # DATA_STALE: which sources count as silent (issue 6's source health); none by default.
        self._stale_provider = stale_sources
        self.params = params
        self.prediction_params = prediction_params
        self.chunk_size = chunk_size
        self.page_concurrency = page_concurrency
        # Passes after the first (the sweeps, every ``sweep_seconds``, and when the set of
        # stale sources changes) run one page of ``sweep_chunk_size`` orders at a time: they
        # are background work, and what a page holds while its rules run (source answers,
        # views, loaders) is what the heap must grow by for it. Two pages of 500 at a time
        # grew the soak's RSS by ~5 MiB per sweep, kept in use by what was allocated
        # meanwhile (bench/README.md); the first pass keeps the wide pages (start-up time).
        self.sweep_chunk_size = sweep_chunk_size
        self.yield_every = 50  # orders whose rules run between two turns of the event loop
        self.freeze_gc = freeze_gc  # freeze the heap page by page during the first pass
        self.pages_in_flight = 0  # pages of a full evaluation being evaluated now
        self.record_slice = 1000  # transitions journaled (and their payloads alive) at a time
        self.sweep_seconds = sweep_seconds
        self.poll_seconds = poll_seconds
        self.debounce_seconds = debounce_seconds
        self.closed_limit = closed_limit
        self.retry_seconds = retry_seconds
        # A page of a pass over every order is tried this many times before the pass ends.
        self.page_attempts = 3
        self.page_retries = 0  # pages (and listing pages) tried again
        self.timer_seconds = timer_seconds
        self.ready = asyncio.Event()  # the first evaluation of every order is done
        self.evaluated = 0  # orders evaluated so far
        self.transitions = 0  # transitions recorded so far
        self.shared_steps = 0  # steps another replica had journaled already (scale-out)
        # Both keep their records in board order as they change (resolvers/exception_board.py):
        # records in them are replaced, never changed in place (``_apply`` works on copies).
        self._open: Records = Records()
        self._closed: OrderedRecords = OrderedRecords()
        self._by_order: dict[str, set[str]] = {}
        self._last_cursor = 0
        self._stale: frozenset[str] = frozenset()
        self._pending: set[str] = set()
        # Next due time per order (domain clock) and a heap of them; an entry whose time is
        # no longer the order's is stale and skipped.
        self._due: dict[str, dt.datetime] = {}
        self._timers: list[tuple[dt.datetime, str]] = []
        self.timer_wakeups = 0  # orders re-evaluated because their due time came
        self.full_evaluations = 0  # evaluations of every order (start, sweeps, stale sources)
        self.full_evaluations_done = 0  # of those, finished (the gateway collects after each)
        self.caught_up = 0  # orders due or changed during the first pass, evaluated before ready
        self._first_pass: tuple[int, float] | None = None  # (orders, perf_counter at its start)
        self._listed: int | None = None  # orders the running pass's listing counts
        self._full = False
        self._busy = False
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Scale-out (gateway/evaluator.py): another replica evaluates; this one follows the
        # journal's transitions (``follow``) and leaves the bus's orders to it.
        self.following = False

    # --- what resolvers read (resolvers.exception_rules.ExceptionSource) ----------------------

    def open_exceptions(self) -> list[ExceptionRecord]:
        """Open exceptions, in no particular order."""
        return list(self._open.values())

    def closed_exceptions(self) -> list[ExceptionRecord]:
        """Recently cleared exceptions (at most ``closed_limit``)."""
        return list(self._closed.values())

    def board(self, closed: bool = False) -> Board:
        """The open (or recently cleared) exceptions in board order, up to date."""
        return (self._closed if closed else self._open).board()

    def get(self, exception_id: str) -> ExceptionRecord | None:
        """An open or recently cleared exception by id."""
        return self._open.get(exception_id) or self._closed.get(exception_id)

    def stale_sources(self) -> frozenset[str]:
        """The stale source systems as of the latest evaluation."""
        return self._stale

    @property
    def last_cursor(self) -> int:
        """Cursor of the latest journaled transition. The open set is updated just before
        its transitions are journaled, so resuming from this cursor may repeat a change the
        open set already shows, never miss one."""
        return self._last_cursor

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ordergraph-exception-tracker")

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None

    def on_changes(self, changes: list[Any]) -> None:
        """Bus handler: re-evaluate the orders these ``OrderChanged`` name (never blocks)."""
        if self.following:
            return
        self._pending.update(ch.sales_order for ch in changes)
        self._idle.clear()
        self._wake.set()

    def request_full(self) -> None:
        """Re-evaluate every order soon (e.g. when source health changes)."""
        if self.following:
            return
        self._full = True
        self._idle.clear()
        self._wake.set()

    async def settled(self, timeout: float = 10.0) -> None:
        """Wait until the first evaluation is done and nothing is pending (tests, tools)."""
        async with asyncio.timeout(timeout):
            await self.ready.wait()
            while self._pending or self._full or self._busy:
                self._idle.clear()
                await self._idle.wait()

    # --- the loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        await self._load_journal()
        waiting_for: str | None = None
        self._reevaluation_failing = False
        while True:
            try:
                self._stale = self._read_stale()
                await self._evaluate_all()
                break
            except SourceError as exc:
                # Expected while a source is down: say so once per source, not every round
                # (the source's own down/up lines come from sources/resilience.py).
                if exc.source != waiting_for:
                    log.warning(
                        "first exception evaluation waits for %s (%s); retrying every %g s",
                        exc.source.upper(), exc.detail, self.retry_seconds,
                    )  # fmt: skip
                    waiting_for = exc.source
                await asyncio.sleep(self.retry_seconds)
            except Exception:
                log.exception("first exception evaluation failed; retrying in %.0f s", self.retry_seconds)
                await asyncio.sleep(self.retry_seconds)
        if waiting_for is not None:
            log.info("first exception evaluation done: the sources answer again")
        caught_up = await self._catch_up()
        # The board's order of every exception found (each one's severity and value at risk
        # over all its orders, and the indexes by order and customer) and each one's orders
        # in page order are made here, once, not by the first page asked for after ready (a
        # third of a second at 100,000 orders); later changes catch up on the next read
        # (resolvers/exception_board.py, ExceptionRecord._over_affected).
        with gc_paused() if self.freeze_gc else contextlib.nullcontext():  # one synchronous step
            self.board()
            self.board(closed=True)
            for record in self._open.values():  # each one's orders sorted, most severe first,
                affected_orders(record)  # and wrapped for the schema (OrderException.affected)
            if self.freeze_gc:
                gc.freeze()  # kept until they change: out of the collector's passes at once
        if self._first_pass is not None:
            # The first pass's line (the gateway's ready, for operators and the scale bench)
            # comes after the board's work too, not before a half-second step at 100,000
            # orders that the first questions would wait behind.
            evaluated, started = self._first_pass
            log.info(
                "exception tracker: %d orders evaluated in %.1f s; %d exceptions open%s",
                evaluated, time.perf_counter() - started, len(self._open),
                f" ({caught_up} orders due or changed meanwhile evaluated again)" if caught_up else "",
            )  # fmt: skip
        self.ready.set()
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + self.sweep_seconds if self.sweep_seconds > 0 else None
        while True:
            self._take_due()
            if not self._pending and not self._full:
                self._idle.set()
                waits = [self.poll_seconds] + ([next_sweep - loop.time()] if next_sweep else [])
                if self._timers:
                    waits.append(self.timer_seconds)
                await wait_event(self._wake, max(0.0, min(waits)))
                self._take_due()
            self._wake.clear()
            stale = self._read_stale()
            if stale != self._stale:
                log.info("stale sources now %s: evaluating every order", sorted(stale) or "none")
                self._stale = stale
                self._full = True
            if next_sweep is not None and loop.time() >= next_sweep:
                self._full = True
                next_sweep = loop.time() + self.sweep_seconds
            self._busy = True
            try:
                if self._full:
                    self._full = False
                    await self._evaluate_all()
                elif self._pending:
                    # Events come in bursts (one plant step changes many records): gather
                    # a burst into one evaluation rather than one per event.
                    await asyncio.sleep(self.debounce_seconds)
                    batch, self._pending = self._pending, set()
                    try:
                        await self._evaluate(batch)
                    except Exception as exc:
                        # A source failed: keep the orders for the next round. Said once
                        # until it works again; a traceback only for the unexpected.
                        self._pending |= batch
                        if not self._reevaluation_failing:
                            log.warning(
                                "exception re-evaluation of %d orders failed (%s); retrying until it works",
                                len(batch), exc if isinstance(exc, SourceError) else type(exc).__name__,
                                exc_info=not isinstance(exc, SourceError),
                            )  # fmt: skip
                            self._reevaluation_failing = True
                        await asyncio.sleep(self.retry_seconds)
                    else:
                        if self._reevaluation_failing:
                            log.info("exception re-evaluation works again")
                            self._reevaluation_failing = False
            except SourceError as exc:
                log.warning("exception sweep could not finish (%s); retrying", exc)
                self._full = True  # the whole pass again (it was taken off before it began)
                await asyncio.sleep(self.retry_seconds)
            except Exception:
                log.exception("exception sweep failed")
                await asyncio.sleep(self.retry_seconds)
            finally:
                self._busy = False

    async def _catch_up(self) -> int:
        """Before ready: the orders whose due time came, or whose records an event changed,
        while the first pass ran are evaluated again now. Their number grows with the
        plant and with the pass's length (a minute at 100,000 orders); evaluated after
        ready, the first questions waited behind them and their journal writes. Returns how
        many; on a source failure they stay pending for the loop's next round."""
        self._take_due()
        if not self._pending:
            return 0
        batch, self._pending = self._pending, set()
        try:
            await self._evaluate(batch)
        except Exception as exc:
            self._pending |= batch
            log.warning("catching up %d orders after the first pass failed (%s); the next round retries", len(batch), exc)
            return 0
        self.caught_up += len(batch)
        return len(batch)

    def _take_due(self) -> None:
        """Orders whose due time has come (on the domain clock) join the pending ones."""
        if not self._timers:
            return
        now = self.clock()
        while self._timers and self._timers[0][0] <= now:
            due, so = heapq.heappop(self._timers)
            if self._due.get(so) == due:
                del self._due[so]
                self._pending.add(so)
                self.timer_wakeups += 1
                self._idle.clear()

    def _set_due(self, sales_order: str, due: dt.datetime | None) -> None:
        if due is None:
            self._due.pop(sales_order, None)
            return
        if self._due.get(sales_order) == due:
            return
        self._due[sales_order] = due
        heapq.heappush(self._timers, (due, sales_order))
        if len(self._timers) > 4 * len(self._due) + 1000:  # drop stale entries now and then
            self._timers = [(d, so) for so, d in self._due.items()]
            heapq.heapify(self._timers)

    def next_due_time(self, sales_order: str) -> dt.datetime | None:
        """When the order is next re-evaluated by its timer (domain clock), if at all."""
        return self._due.get(sales_order)

    def _read_stale(self) -> frozenset[str]:
        if self._stale_provider is None:
            return frozenset()
        try:
            return frozenset(self._stale_provider())
        except Exception:
            log.exception("stale-sources provider failed")
            return self._stale

    async def _load_journal(self) -> None:
        """The open set, recently cleared exceptions and the last cursor the journal knows.

        The cleared ones are read from the log's end back, until ``closed_limit`` distinct
        exceptions (each at its latest clearing): the log keeps every step, so reading it
        whole (and parsing every payload) made each restart slower the longer the plant
        had run (at 100,000 orders its first pass alone journals 53 MB of payloads)."""
        try:
            last = await self.journal.last_exception_cursor()
            cleared: dict[str, ExceptionRecord] = {}  # latest clearing first
            before: int | None = None
            while len(cleared) < self.closed_limit:
                rows = await self.journal.cleared_exceptions_before(before, limit=min(1000, self.closed_limit))
                if not rows:
                    break
                for row in rows:
                    if row.exception_id not in cleared and len(cleared) < self.closed_limit:
                        cleared[row.exception_id] = ExceptionRecord.from_payload(row.payload)
                before = rows[-1].cursor
            for record in reversed(cleared.values()):  # oldest clearing first, as they happened
                self._remember_closed(record)
            self._last_cursor = last
            for payload in (await self.journal.open_exceptions()).values():
                record = ExceptionRecord.from_payload(payload)
                self._closed.pop(record.id, None)
                self._open[record.id] = record
                for so in record.affected:
                    self._by_order.setdefault(so, set()).add(record.id)
        except Exception:
            log.exception("could not reload exceptions from the journal; starting empty")
        if self._open:
            log.info("exception tracker: %d exceptions open from the journal", len(self._open))

    async def _evaluate_all(self) -> None:
        """Every order, page by page; one diff at the end so each exception moves once.

        The pass reads the whole plant through the record cache: its writes keep what fits
        and never evict (``gateway.cache.scanning``; at 100,000 orders the plant's records
        are 2.5 times the default cache)."""
        with scanning():
            await self._evaluate_all_scanning()

    async def _evaluate_all_scanning(self) -> None:
        if not self.freeze_gc or self.ready.is_set():
            await self._evaluate_pages()
            return
        # The first pass (with the heap frozen page by page, ``freeze_gc``) runs with the
        # cyclic collector's automatic passes paused: it allocates most of what the gateway
        # keeps, and each pass still walked what the pages in flight held, more often and
        # longer the larger the plant (6.8 of 57 CPU seconds at 100,000 orders, 1.1 of 11 at
        # 20,000). Reference counting frees what dies meanwhile; the cycles that die wait for
        # the gateway's freeze loop, as those frozen with a page do (gateway/app.py).
        # What the pass's end allocated (the diff, the journal's steps, the exceptions) is
        # frozen too before the collector runs again: its first passes then walked all of
        # it, and with the board's work after it set off full passes (0.24 s at 100,000
        # orders; none at 20,000).
        enabled = gc.isenabled()
        gc.disable()
        try:
            await self._evaluate_pages()
        finally:
            gc.freeze()
            if enabled:
                gc.enable()

    async def _evaluate_pages(self) -> None:
        self.full_evaluations += 1
        started = time.perf_counter()
        level = logging.DEBUG if self.ready.is_set() else logging.INFO  # progress of the first one
        found: dict[str, list[Detection]] = {}
        token: str | None = None
        total: int | None = None
        first_ticket: int | None = None
        # Pages overlap (``page_concurrency`` at a time): while one page's rules run, the
        # sources already answer the next page's reads. One diff at the end either way.
        first = not self.ready.is_set()
        size = self.chunk_size if first else max(1, min(self.chunk_size, self.sweep_chunk_size))
        slots = asyncio.Semaphore(max(1, self.page_concurrency) if first else 1)
        running: set[asyncio.Task[dict[str, list[Detection]]]] = set()

        async def detect_page(ctx: Context, sales_orders: list[str], ticket: int) -> dict[str, list[Detection]]:
            self.pages_in_flight += 1
            try:
                # One slow or failed answer costs this page, not the whole pass (at 100,000
                # orders a pass is a minute of work): tried again with a fresh request context.
                async def attempt(n: int) -> dict[str, list[Detection]]:
                    if n == 1:
                        return await self._detect(ctx, sales_orders, ticket, spare=first)
                    fresh = self.context_factory()
                    return await self._detect(fresh, sales_orders, fresh.cache.ticket(), spare=first)

                page_found = await self._with_retries(f"exception evaluation of {len(sales_orders)} orders", attempt)
            finally:
                self.pages_in_flight -= 1
                slots.release()
            if self.freeze_gc and not self.ready.is_set():
                # The first pass allocates most of what the gateway keeps: out of the
                # collector's full passes at once (each walked the whole growing heap: a
                # quarter of the start-up's CPU at 20,000 orders). The gateway's freeze
                # loop collects what died meanwhile (gateway/app.py).
                gc.freeze()
            found.update(page_found)
            log.log(level, "exception tracker: evaluated %d/%d orders", len(found), total)
            return page_found

        cache = None
        try:
            while True:
                await slots.acquire()
                for task in [t for t in running if t.done()]:
                    running.discard(task)
                    task.result()  # a page's failure ends the pass (the caller retries)
                ctx = self.context_factory()
                cache = ctx.cache
                ticket = ctx.cache.ticket()
                first_ticket = ticket if first_ticket is None else first_ticket
                try:
                    page = await self._with_retries(
                        f"exception evaluation: the order listing after {token or 'the start'}",
                        lambda _n, c=ctx, t=token: c.sources.erp.list_sales_orders(top=size, skip_token=t),
                    )
                except BaseException:
                    slots.release()
                    raise
                remember_listing(ctx.cache, page.records, ticket)
                total = page.count if total is None else total
                self._listed = total
                for so in page.records:
                    ctx.loaders.sales_order.prime(so.sales_order, so)
                running.add(asyncio.create_task(detect_page(ctx, [so.sales_order for so in page.records], ticket)))
                if not page.next_skip_token or not page.records:
                    break
                token = page.records[-1].sales_order
            if running:
                await asyncio.gather(*running)
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
            if first and cache is not None:
                cache.spare_done()
        if self.index is not None and first_ticket is not None:
            self.index.complete(found, first_ticket)
        # Orders the listing no longer shows lose their exceptions too.
        await self._apply(set(found) | set(self._by_order), found)
        self.full_evaluations_done += 1
        if self.ready.is_set():
            log.log(
                level,
                "exception tracker: %d orders evaluated in %.1f s; %d exceptions open",
                len(found),
                time.perf_counter() - started,
                len(self._open),
            )
        else:
            self._first_pass = (len(found), started)  # said once the board is ready too

    async def _with_retries(self, what: str, call: Callable[[int], Awaitable[T]]) -> T:
        """``call(attempt)`` (1, 2, ...) tried up to ``page_attempts`` times while a source
        fails, ``retry_seconds`` apart; the last failure is raised (the pass ends)."""
        attempt = 1
        while True:
            try:
                return await call(attempt)
            except SourceError as exc:
                if attempt >= self.page_attempts:
                    raise
                self.page_retries += 1
                attempt += 1
                log.warning("%s: %s; trying again in %g s (%d of %d)", what, exc, self.retry_seconds, attempt, self.page_attempts)
                await asyncio.sleep(self.retry_seconds)

    async def _evaluate(self, orders: set[str]) -> None:
        ids = sorted(orders)
        found: dict[str, list[Detection]] = {}
        for i in range(0, len(ids), self.chunk_size):
            found.update(await self._detect(self.context_factory(), ids[i : i + self.chunk_size]))
        await self._apply(orders, found)

    async def _detect(
        self, ctx: Context, sales_orders: list[str], ticket: int | None = None, *, spare: bool = False
    ) -> dict[str, list[Detection]]:
        # ``ticket``: taken before the first read of these orders' records (the order index
        # keeps a value only if none of them was invalidated after it). ``spare`` (the first
        # pass): the records of orders with no production left to do are named to the
        # record cache as the ones to give up when it is full (``RecordCache.spare``), so
        # it keeps those of the orders still in production: their documents as they are
        # read (``load_orders``), the orders' own records once evaluated.
        ticket = ctx.cache.ticket() if ticket is None else ticket
        loaded = await load_orders(ctx, sales_orders, spare_done=spare)
        self.evaluated += len(loaded)
        if spare and loaded and self._listed and not ctx.cache.spare_at_once:
            # The records this page's orders occupy (each order's own three keys, two per
            # production order, one per delivery), times the plant's orders: will they fit?
            keys = sum(3 + 2 * len(view.production_orders) + len(view.deliveries) for view, _ in loaded)
            if ctx.cache.expect_scan(keys * self._listed // len(loaded)):
                log.info(
                    "record cache: the plant's ~%d records do not fit in %d; the first pass keeps those of orders"
                    " still in production", keys * self._listed // len(loaded), ctx.cache.maxsize,
                )  # fmt: skip
        found = {}
        for n, (view, customer) in enumerate(loaded):
            if n and not n % self.yield_every:
                # The rules of a page of 500 orders are 100-250 ms of CPU: questions asked
                # meanwhile (and events) are served between slices of it, not after it all.
                # Values stored later are fenced as any read that an event overtakes.
                await asyncio.sleep(0)
            so = view.sales_order.sales_order
            pred = predict(view, ctx.now, self.prediction_params)
            found[so] = detect(
                view,
                customer,
                ctx.now,
                params=self.params,
                prediction_params=self.prediction_params,
                stale_sources=self._stale,
                prediction=pred,
            )
            if self.index is not None:
                self.index.put(
                    derive(
                        view, customer, ctx.now, detections=found[so], prediction_params=self.prediction_params,
                        params=self.params, pred=pred,
                    ),
                    ticket,
                )  # fmt: skip
            self._set_due(so, next_due(view, ctx.now, params=self.params, prediction_params=self.prediction_params))
            if spare and not production_left(view.production_orders):  # its documents' keys were named as read
                ctx.cache.spare(order_cache_keys(so), first=view.is_delivered or view.is_cancelled)
        if self.index is not None:
            for so in set(sales_orders) - found.keys():  # no such order (any more)
                self.index.discard(so, ticket)
        if self.observe is not None:
            try:
                await self.observe(loaded, ctx.now)
            except Exception:
                log.exception("notices: deciding for %d orders failed (they are decided again at their next evaluation)", len(loaded))
        return found

    async def derive_now(self, sales_orders: list[str]) -> None:
        """Recompute these orders into the order index now (a listing's refresh): the same
        rules as an evaluation, without touching the open set (the bus brings these orders
        to the tracker's own loop too)."""
        for i in range(0, len(sales_orders), self.chunk_size):
            ctx = self.context_factory()
            ticket = ctx.cache.ticket()
            chunk = sales_orders[i : i + self.chunk_size]
            loaded = await load_orders(ctx, chunk)
            for view, customer in loaded:
                pred = predict(view, ctx.now, self.prediction_params)
                detections = detect(
                    view, customer, ctx.now, params=self.params, prediction_params=self.prediction_params,
                    stale_sources=self._stale, prediction=pred,
                )  # fmt: skip
                self.index.put(
                    derive(
                        view, customer, ctx.now, detections=detections, prediction_params=self.prediction_params,
                        params=self.params, pred=pred,
                    ),
                    ticket,
                )  # fmt: skip
            for so in set(chunk) - {view.sales_order.sales_order for view, _ in loaded}:
                self.index.discard(so, ticket)

    # --- diff and transitions ------------------------------------------------------------

    async def _apply(self, orders: set[str], found: dict[str, list[Detection]]) -> None:
        """Move the open set to ``found`` for ``orders``; journal and push what changed."""
        now = self.clock()
        before: dict[str, ExceptionRecord | None] = {}
        work: dict[str, ExceptionRecord] = {}

        def working(eid: str, detection: Detection | None = None) -> ExceptionRecord | None:
            if eid not in work:
                current = self._open.get(eid)
                before.setdefault(eid, current)
                if current is not None:
                    work[eid] = current.copy()
                elif detection is not None:
                    work[eid] = ExceptionRecord(eid, detection.kind, detection.root, now)
                else:
                    return None
            return work[eid]

        for so in orders:
            new = {d.id: d for d in found.get(so, [])}
            for eid in self._by_order.get(so, set()) - new.keys():
                record = working(eid)
                if record is not None:
                    record.affected.pop(so, None)
            for eid, d in new.items():
                record = working(eid, d)
                assert record is not None
                record.affected[so] = d
            if new:
                self._by_order[so] = set(new)
            else:
                self._by_order.pop(so, None)

        steps: list[tuple[str, ExceptionRecord, ExceptionRecord | None]] = []
        for eid, old in before.items():
            record = work[eid]
            if not record.affected:
                if old is None:
                    continue
                del self._open[eid]
                cleared = old.copy()
                cleared.cleared_at = now
                self._remember_closed(cleared)
                steps.append(("CLEARED", cleared, old))
                continue
            self._open[eid] = record
            self._closed.pop(eid, None)
            if old is None:
                steps.append(("RAISED", record, None))
            elif _material(old) != _material(record):
                steps.append(("UPDATED", record, old))
        await self._record(steps, now)

    def _remember_closed(self, record: ExceptionRecord) -> None:
        self._closed.pop(record.id, None)
        self._closed[record.id] = record
        while len(self._closed) > self.closed_limit:
            self._closed.popitem(last=False)

    async def _record(self, steps: list[tuple[str, ExceptionRecord, ExceptionRecord | None]], at: dt.datetime) -> None:
        """Journal ``steps`` (each slice's writes queued at once: group commit), then push
        them, in cursor order.

        In slices: the first pass raises every open exception at once (tens of thousands
        with 100,000 orders), and all their payloads alive together were the start-up's
        memory peak. While one slice's writes are committed (the SQLite journal commits on
        its own thread: 2.1 s of the 6.7 s this took at 100,000 orders, the loop waiting),
        the next slice's payloads are built; its writes are queued once the slice before
        is journaled and pushed, so steps still reach subscribers in cursor order."""
        n = self.record_slice
        built = await self._payloads(steps[:n])
        for i in range(0, len(steps), n):
            writes = asyncio.ensure_future(self._journal_steps(built, at))
            try:
                following = steps[i + n : i + 2 * n]
                next_built = await self._payloads(following) if following else []
            finally:
                self._publish_steps(built, await writes, at)
            built = next_built

    async def _payloads(self, steps: list[tuple[str, ExceptionRecord, ExceptionRecord | None]]) -> list[_Step]:
        """Each step with its payload and fingerprint; the loop turns every hundred steps
        (the journal's writer is served meanwhile: its next commit starts)."""
        built = []
        for n, (action, record, old) in enumerate(steps):
            if not n % 100:
                await asyncio.sleep(0)
            built.append(_step(action, record, old))
        return built

    async def _journal_steps(self, built: list[_Step], at: dt.datetime) -> list[int | None]:
        """Each step's cursor (None: not journaled), all written at once (group commit)."""

        async def one(step: _Step) -> int | None:
            action, record = step.action, step.record
            try:
                cursor = await self.journal.record_exception_transition(
                    record.id, record.kind.value, "CLEARED" if action == "CLEARED" else "RAISED", step.payload, at,
                    fingerprint=step.fingerprint or "cleared",
                )
                if cursor < 0:
                    # Another replica journaled this very step: push it here under its
                    # cursor (this replica's subscribers get it once), journal nothing.
                    self.shared_steps += 1
                    return -cursor
                return cursor
            except Exception:
                log.exception("could not journal %s of exception %s", action, record.id)
                return None

        return list(await asyncio.gather(*(one(step) for step in built)))

    def _publish_steps(self, built: list[_Step], cursors: list[int | None], at: dt.datetime) -> None:
        """Push the journaled steps to subscribers, ordered by cursor."""
        steps_by_cursor = sorted(
            ((cursor, step) for step, cursor in zip(built, cursors, strict=True) if cursor is not None),
            key=lambda t: t[0],
        )
        rows = [
            ExceptionTransition(
                cursor=cursor,
                exception_id=step.record.id,
                kind=step.record.kind.value,
                action="CLEARED" if step.action == "CLEARED" else "RAISED",
                payload=step.payload,
                at=at,
            )
            for cursor, step in steps_by_cursor
        ]
        if rows:
            self._last_cursor = max(self._last_cursor, rows[-1].cursor)
            self.transitions += len(rows)
            counts = collections.Counter(r.payload["action"] for r in rows)
            log.debug("exceptions: %s", ", ".join(f"{n} {a.lower()}" for a, n in sorted(counts.items())))
            if self.publish is not None:
                self.publish(rows)


@dataclasses.dataclass(slots=True)
class _Step:
    """One transition of an exception, ready to journal: what ``_publish_steps`` pushes."""

    action: str  # RAISED, UPDATED or CLEARED
    record: ExceptionRecord
    payload: dict[str, Any]
    fingerprint: str  # "" for CLEARED


def _step(action: str, record: ExceptionRecord, old: ExceptionRecord | None) -> _Step:
    payload = record.to_payload()
    payload["action"] = action
    payload["previousSeverity"] = old.severity.value if old is not None else None
    gone = [] if old is None else [so for so in old.affected if so not in record.affected]
    if action == "CLEARED":
        gone = list(record.affected)
    payload["removed"] = [
        {"salesOrder": so, "customer": old.affected[so].customer, "detection": old.affected[so].to_payload()}
        for so in gone
        if old is not None
    ]
    # The orders this step hit anew or changed as their customer sees them: a customer is
    # told of a step only when one of its own orders is among these (or removed), not when
    # other customers' orders come and go.
    payload["changed"] = [
        {"salesOrder": so, "customer": d.customer}
        for so, d in record.affected.items()
        if action != "CLEARED"
        and (old is None or so not in old.affected or _customer_view(old.affected[so]) != _customer_view(d))
    ]
    fingerprint = "" if action == "CLEARED" else orjson.dumps(
        [sorted(record.affected), record.severity.value, record.value_at_risk, record.days_late]
    ).decode()
    return _Step(action, record, payload, fingerprint)


# --- scale-out: following the evaluating replica (gateway/evaluator.py) ----------------------


def follow(tracker: ExceptionTracker, rows: list[ExceptionTransition]) -> None:
    """Apply transitions another replica journaled (cursor order) to ``tracker``'s open
    set, as if it had evaluated them, and push them to this replica's subscribers."""
    fresh = [row for row in rows if row.cursor > tracker._last_cursor]
    for row in fresh:
        record = ExceptionRecord.from_payload(row.payload)
        old = tracker._open.get(row.exception_id)
        for so in old.affected if old is not None else ():
            ids = tracker._by_order.get(so)
            if ids is not None:
                ids.discard(row.exception_id)
                if not ids:
                    del tracker._by_order[so]
        if row.action == "CLEARED":
            tracker._open.pop(row.exception_id, None)
            tracker._remember_closed(record)
            continue
        tracker._closed.pop(row.exception_id, None)
        tracker._open[row.exception_id] = record
        for so in record.affected:
            tracker._by_order.setdefault(so, set()).add(row.exception_id)
    if fresh:
        tracker._last_cursor = fresh[-1].cursor
        tracker.transitions += len(fresh)
        if tracker.publish is not None:
            tracker.publish(fresh)


def reset(tracker: ExceptionTracker) -> None:
    """Forget the open set (before evaluating again from the journal's)."""
    tracker._open.clear()
    tracker._closed.clear()
    tracker._by_order.clear()
    tracker._pending.clear()
    tracker._due.clear()
    tracker._timers.clear()


def _customer_view(d: Detection) -> tuple[Any, ...]:
    """What a customer sees of one order's detection (not values, priorities or root causes)."""
    return (d.severity, d.days_late, d.promised_delivery_date, d.predicted_delivery_date, d.customer_text)


def _material(record: ExceptionRecord) -> tuple[Any, ...]:
    """What makes an UPDATED transition: affected orders, severity, value, days late."""
    return (frozenset(record.affected), record.severity, record.value_at_risk, record.days_late)

"""Proactive notices: decided on the event path, kept in a durable outbox, delivered at
least once.

``NoticeEngine`` (owned by the ``Gateway``):

1. **Decide** (``observe``): the exception tracker hands over every order view it
   evaluates -- the orders events changed, those whose due time came, the sweeps -- and
   the engine compares what the customer may be told now (``resolvers.notice_rules``)
   with what the customer was last told (the outbox's ``order_state``). The new state
   and any notice are written in one transaction (``Outbox.record``). An order seen for
   the first time gets a baseline, not a notice.
2. **Debounce**: a customer gets at most one notice per order per ``debounce_seconds``:
   what is decided while a notice waits folds into it (a delay and its recovery in one
   window cancel out).
3. **Deliver** (``_dispatch``): a released notice gets one delivery per endpoint of its
   customer that wants one of its kinds; each is tried until it succeeds, with
   exponential backoff and jitter, then parked as a dead letter after ``max_attempts``
   (``ordergraph notices dead|replay``). A delivery is marked sent only after the
   receiver accepted it, so a crash re-sends it: at least once, with the same id.
4. **Internal**: a CRITICAL exception that stays unacknowledged for
   ``critical_unacknowledged_minutes`` is told once to the internal endpoints.
   Acknowledgement is the workflow's (``is_acknowledged``; by default nothing is
   acknowledged): pass the workflow store's look-up when there is one.

Counters on ``/metrics``: ``ordergraph_notices_sent_total``, ``…_failed_total`` (failed
attempts), ``…_dead_total``; gauges ``ordergraph_notices_retrying``, ``…_dead_letters``,
``…_waiting``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge

from resolvers.notice_rules import (
    CRITICAL_UNACKNOWLEDGED,
    NoticeRules,
    NoticeState,
    baseline,
    decide,
    merge,
    order_facts,
)
from resolvers.prediction import PredictionParams
from sources.tasks import stop_task, wait_event

from .notice_channels import DeliveryError, send_email, send_webhook
from .outbox import INTERNAL, Decision, Endpoint, Notice

log = logging.getLogger("ordergraph.notices")

IsAcknowledged = Callable[[str], bool | Awaitable[bool]]
SENDS_AT_ONCE = 16


def nothing_acknowledged(exception_id: str) -> bool:
    """The default acknowledgement look-up: until the exception workflow answers, no
    exception counts as acknowledged."""
    return False


class NoticeMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        kw: dict[str, Any] = {"registry": registry}
        self.sent = Counter("ordergraph_notices_sent_total", "Notice deliveries accepted by their receiver.", ["channel"], **kw)
        self.failed = Counter("ordergraph_notices_failed_total", "Notice delivery attempts that failed.", ["channel"], **kw)
        self.dead = Counter(
            "ordergraph_notices_dead_total", "Notice deliveries parked as dead letters after every attempt failed.", ["channel"], **kw
        )
        self.decided = Counter("ordergraph_notices_decided_total", "Notice items decided (before debouncing).", **kw)
        self.retrying = Gauge("ordergraph_notices_retrying", "Notice deliveries waiting for a retry.", **kw)
        self.dead_now = Gauge("ordergraph_notices_dead_letters", "Notice deliveries in the dead letter now (`ordergraph notices dead`).", **kw)
        self.waiting = Gauge("ordergraph_notices_waiting", "Notices waiting in their debounce window.", **kw)


class NoticeEngine:
    """Decides notices from order views, keeps the outbox, delivers."""

    def __init__(
        self,
        config: Any,  # gateway.config.NoticesConfig
        outbox: Any,  # gateway.outbox.Outbox, or gateway.redis_outbox.RedisOutbox with [scaleout]
        *,
        prediction_params: PredictionParams = PredictionParams(),
        registry: CollectorRegistry | None = None,
        exceptions: Any = None,  # the ExceptionTracker (open exceptions), for the internal rule
        is_acknowledged: IsAcknowledged = nothing_acknowledged,
        wall_clock: Callable[[], float] = time.time,
        tick_seconds: float = 0.5,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.prediction_params = prediction_params
        self.rules = NoticeRules(
            date_move_working_days=config.date_move_working_days,
            delayed=config.delayed,
            shipped=config.shipped,
            delivered=config.delivered,
        )
        self.exceptions = exceptions
        self.is_acknowledged = is_acknowledged
        self.wall_clock = wall_clock
        self.tick_seconds = tick_seconds
        self.metrics = NoticeMetrics(registry)
        self.observed = 0  # order evaluations seen
        self.decisions = 0  # notice items decided
        self.session: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight: set[int] = set()
        # Sends at once, whatever the backlog: a plant's mail relay or a customer's
        # receiver is not flooded after an outage.
        self._sending = asyncio.Semaphore(SENDS_AT_ONCE)

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self.session = aiohttp.ClientSession()
        await self._internal_endpoints()
        self._tasks = [
            asyncio.create_task(self._dispatch_loop(), name="ordergraph-notices-dispatch"),
            asyncio.create_task(self._watch_loop(), name="ordergraph-notices-watch"),
        ]

    async def stop(self) -> None:
        for t in self._tasks:
            await stop_task(t)
        self._tasks = []
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def _internal_endpoints(self) -> None:
        """The internal endpoints of ``[notices]`` as endpoints of customer ``""``."""
        c, now = self.config, self.wall_clock()
        known = {e.id: e for e in await self.outbox.endpoints(INTERNAL)}
        wanted: dict[str, tuple[str, str]] = {}
        if c.internal_webhook_url:
            wanted["internal-webhook"] = ("webhook", c.internal_webhook_url)
        for i, address in enumerate(c.internal_emails):
            wanted[f"internal-email-{i}"] = ("email", address)
        for eid in set(known) - set(wanted):
            await self.outbox.remove_endpoint(eid)
        for eid, (channel, target) in wanted.items():
            old = known.get(eid)
            secret = c.internal_webhook_secret or (old.secret if old is not None and old.channel == channel else None)
            if old is None or old.target != target or (secret and secret != old.secret):
                e = await self.outbox.add_endpoint(
                    INTERNAL, channel, target, kinds=(CRITICAL_UNACKNOWLEDGED,), created_by="config", now=now,
                    endpoint_id=eid, secret=secret,
                )  # fmt: skip
                if channel == "webhook" and not c.internal_webhook_secret:
                    log.warning("internal notices webhook %s: signing secret (set [notices] internal_webhook_secret): %s", target, e.secret)

    def wake(self) -> None:
        self._wake.set()

    # --- deciding ----------------------------------------------------------------------

    async def observe(self, loaded: Iterable[tuple[Any, Any]], now: Any) -> int:
        """Decide the notices of freshly evaluated orders ((view, customer) pairs at the
        domain time ``now``); returns the notice items decided."""
        pairs = list(loaded)
        if not pairs:
            return 0
        self.observed += len(pairs)
        states = await self.outbox.states(view.sales_order.sales_order for view, _ in pairs)
        decisions: list[Decision] = []
        items_decided = 0
        for view, customer in pairs:
            facts = order_facts(view, now, self.prediction_params)
            calendar = self.prediction_params.ship_to(customer if customer is not None else view.customer)
            known = states.get(facts.sales_order)
            if known is None:
                state, items = baseline(facts, calendar, self.rules), []
            else:
                old = NoticeState.from_json(known)
                state, items = decide(old, facts, calendar, self.rules)
                if state == old and not items:
                    continue
            items_decided += len(items)
            context = {
                "customerName": facts.customer_name,
                "language": facts.language,
                "purchaseOrder": facts.purchase_order,
                "promised": facts.promised.isoformat(),
                "predicted": facts.predicted.isoformat() if facts.predicted else None,
            }
            decisions.append(Decision(facts.sales_order, facts.customer, state.to_json(), items, context, expected=known))
        if decisions:
            await self.outbox.record(decisions, self.wall_clock(), self.config.debounce_seconds, merge)
        if items_decided:
            self.decisions += items_decided
            self.metrics.decided.inc(items_decided)
            self._wake.set()
        return items_decided

    # --- the internal rule ---------------------------------------------------------------

    async def check_critical(self) -> int:
        """Tell the internal endpoints of CRITICAL exceptions unacknowledged for long."""
        minutes = self.config.critical_unacknowledged_minutes
        if self.exceptions is None or minutes <= 0:
            return 0
        from resolvers.enums import Severity

        # The board's CRITICAL prefix, not every open exception's severity (29,000 of them
        # at 100,000 orders: 90 ms each round, the first one right after ready).
        records = {e.record.id: e.record for e in self.exceptions.board().at_least(Severity.CRITICAL.rank)}
        unacked = set()
        for eid in records:
            try:
                acknowledged = self.is_acknowledged(eid)
                if inspect.isawaitable(acknowledged):  # the workflow store answers asynchronously
                    acknowledged = await acknowledged
                if not acknowledged:
                    unacked.add(eid)
            except Exception:
                log.exception("acknowledgement look-up failed for %s; counting it unacknowledged", eid)
                unacked.add(eid)
        now = self.wall_clock()
        due = await self.outbox.watch(unacked, now, minutes * 60)
        for eid, _since in due:
            r = records[eid]
            context = {
                "kind": r.kind.value,
                "minutes": minutes,
                "description": r.internal_text if hasattr(r, "internal_text") else "",
                "affectedOrders": len(r.affected),
                "valueAtRisk": f"{r.value_at_risk:,.2f} {r.currency}",
                "detectedAt": r.detected_at.isoformat(),
            }
            await self.outbox.add_internal(eid, [{"kind": CRITICAL_UNACKNOWLEDGED, "exceptionId": eid}], context, now)
        if due:
            self._wake.set()
        return len(due)

    async def _watch_loop(self) -> None:
        while True:
            try:
                await self.check_critical()
            except Exception:
                log.exception("checking CRITICAL exceptions failed")
            await asyncio.sleep(max(1.0, min(30.0, self.config.critical_unacknowledged_minutes * 60 / 10)))

    # --- delivering ------------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        failing = False
        while True:
            try:
                await self.dispatch_once()
                if failing:
                    log.info("notices outbox answers again")
                    failing = False
            except Exception as exc:
                if not failing:
                    log.warning("notices: delivery round failed (%s); retrying", exc, exc_info=True)
                    failing = True
            self._wake.clear()
            await wait_event(self._wake, self.tick_seconds)

    async def dispatch_once(self) -> int:
        """Release due notices and try every due delivery once; returns attempts made."""
        now = self.wall_clock()
        await self.outbox.release_due(now)
        due = [t for t in await self.outbox.due(now, limit=100) if t[0].id not in self._in_flight]
        # Claimed before any await: a concurrent round must not send the same delivery.
        self._in_flight.update(t[0].id for t in due)
        if due:
            await asyncio.gather(*(self._attempt(*t) for t in due))
        counts = await self.outbox.counts()
        self.metrics.retrying.set(counts["retrying"])
        self.metrics.dead_now.set(counts["dead"])
        self.metrics.waiting.set(counts["waiting"])
        return len(due)

    async def _attempt(self, delivery: Any, notice: Notice, endpoint: Endpoint | None) -> None:
        try:
            try:
                if endpoint is None:
                    raise DeliveryError("endpoint removed")
                async with self._sending:
                    await self._send(notice, endpoint)
            except DeliveryError as exc:
                await self._failed(delivery, str(exc))
            except Exception as exc:  # a bug in rendering or sending: retried, then parked
                log.exception("notice %s to %s failed unexpectedly", notice.id, delivery.target)
                await self._failed(delivery, f"{type(exc).__name__}: {exc}")
            else:
                await self.outbox.mark_sent(delivery.id, self.wall_clock())
                self.metrics.sent.labels(delivery.channel).inc()
        finally:
            self._in_flight.discard(delivery.id)

    async def _send(self, notice: Notice, endpoint: Endpoint) -> None:
        if endpoint.channel == "webhook":
            assert self.session is not None
            await send_webhook(self.session, notice, endpoint, self.config.timeout_seconds)
        elif endpoint.channel == "email":
            await send_email(notice, endpoint, self.config)
        else:
            raise DeliveryError(f"unknown channel {endpoint.channel!r}")

    async def _failed(self, delivery: Any, error: str) -> None:
        attempts = delivery.attempts + 1
        self.metrics.failed.labels(delivery.channel).inc()
        if attempts >= self.config.max_attempts:
            await self.outbox.mark_failed(delivery.id, error, None)
            self.metrics.dead.labels(delivery.channel).inc()
            log.error(
                "notice %s to %s parked as a dead letter after %d attempts: %s. Fix the cause, then "
                "`ordergraph notices replay %d`",
                delivery.notice_id, delivery.target, attempts, error, delivery.id,
            )  # fmt: skip
            return
        await self.outbox.mark_failed(delivery.id, error, self.wall_clock() + self.backoff(attempts))
        log.warning("notice %s to %s failed (attempt %d of %d): %s", delivery.notice_id, delivery.target, attempts, self.config.max_attempts, error)

    def backoff(self, attempts: int) -> float:
        """Seconds before the next try after ``attempts`` failures: doubling from
        ``backoff_seconds`` up to ``max_backoff_seconds``, with jitter (half to all of it),
        so receivers coming back are not hit by every sender at once."""
        c = self.config
        ceiling = min(c.max_backoff_seconds, c.backoff_seconds * 2 ** (attempts - 1))
        return ceiling * random.uniform(0.5, 1.0)


def outbox_path(notices_path: str, journal_path: str) -> str:
    """The outbox file: ``[notices] outbox_path``, else beside the journal."""
    if notices_path:
        return notices_path
    if journal_path == ":memory:":
        return ":memory:"
    from pathlib import Path

    p = Path(journal_path)
    return str(p.with_name(p.stem + ".notices.sqlite"))

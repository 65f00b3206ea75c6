"""The plant's webhooks: every change in the world goes to the gateway as a signed CloudEvent.

Like real sources, the plant is imperfect on purpose (rates are options): some events are
sent twice, some swap places with the next one, and some are notification-only (keys
without data, as SAP business events are). Delivery is at-least-once: a failed POST is
retried with backoff until the gateway acknowledges it.

``PlantDriver`` moves the plant on an accelerated clock and, now and then, breaks a machine,
makes a component arrive late or delays a truck (lots go on hold in every order's own
lifecycle), so the demo shows orders moving and exceptions appearing and clearing.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import itertools
import logging
import math
import random
import time
import uuid
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from sources import erp, mes, qms, tms, wms
from sources.events import EventType, cloud_event
from sources.signing import HEADER, sign
from sources.tasks import stop_task, wait_event

from .world import PLANT_CALENDAR, Change, World

log = logging.getLogger("ordergraph.simulator.events")

BATCH = "application/cloudevents-batch+json"
HOLD_SECONDS = 0.5  # the longest an event is held back to arrive out of order
EVENT_TYPES: dict[tuple[str, str], EventType] = {
    (t.system, t.entity): t
    for t in (*erp.EVENT_TYPES, *mes.EVENT_TYPES, *wms.EVENT_TYPES, *qms.EVENT_TYPES, *tms.EVENT_TYPES)
}


@dataclasses.dataclass(slots=True)
class EmitterStats:
    sent: int = 0
    duplicates: int = 0
    reordered: int = 0
    notifications: int = 0
    retries: int = 0
    rejected: int = 0
    muted: int = 0  # changes of systems that do not push
    dropped: int = 0  # webhooks lost on purpose (drop_rate)


class EventEmitter:
    """Turns world changes into signed CloudEvents POSTed to ``<gateway>/events``."""

    def __init__(
        self,
        world: World,
        gateway_url: str,
        secrets: Mapping[str, str],
        *,
        source_prefix: str = "/plant/1000",
        duplicate_rate: float = 0.05,
        reorder_rate: float = 0.05,
        notification_rate: float = 0.3,
        seed: int = 7,
        max_batch: int = 100,
        exclude_entity_sets: frozenset[str] = frozenset(),
        muted: frozenset[str] | set[str] = frozenset(),
        drop_rate: float = 0.0,
    ) -> None:
        self.world = world
        # Systems that push nothing (a gateway polls them), and a share of webhooks lost
        # for good (the gateway's reconciliation sweep must heal them).
        self.muted = frozenset(muted)
        self.drop_rate = drop_rate
        self._drop_rng = random.Random(seed + 1)
        self.url = gateway_url.rstrip("/") + "/events"
        self.secrets = dict(secrets)
        self.source_prefix = source_prefix.rstrip("/")
        self.duplicate_rate = duplicate_rate
        self.reorder_rate = reorder_rate
        self.notification_rate = notification_rate
        self.rng = random.Random(seed)
        self.max_batch = max_batch
        # Changes reported another way (the shop floor over MQTT: A_WorkCenter) are not POSTed.
        self.exclude_entity_sets = exclude_entity_sets
        self.stats = EmitterStats()
        self._pending: list[dict[str, Any]] = []
        self._held: dict[str, Any] | None = None  # an event held back to arrive out of order
        self._held_since = 0.0  # monotonic time it was held
        self._ids = itertools.count(1)
        # Event ids must stay unique across emitter restarts, or the gateway's dedupe
        # (source + id) would swallow new events as duplicates.
        self._run_id = uuid.uuid4().hex[:8]
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Any = None
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self._unsubscribe = self.world.subscribe(self.on_change)
        self._task = asyncio.create_task(self._run(), name="plant-event-emitter")

    async def close(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()
        await stop_task(self._task)
        if self._session:
            await self._session.close()

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything emitted so far was acknowledged by the gateway."""
        if self._held is not None:
            self._pending.append(self._held)
            self._held = None
            self._wake.set()
        async with asyncio.timeout(timeout):
            while self._pending or not self._idle.is_set():
                await asyncio.sleep(0.01)

    # --- building events -----------------------------------------------------------

    def event_for(self, change: Change, *, notification: bool = False) -> dict[str, Any]:
        """The CloudEvent for one world change."""
        entity, _, action = change.change_type.partition(".")
        etype = EVENT_TYPES.get((change.system, entity))
        if etype is None:
            raise ValueError(f"no event type for {change.system} {entity}")
        if action not in etype.actions:
            action = "Changed" if "Changed" in etype.actions else sorted(etype.actions)[0]
        data = {etype.key_field: change.key} if notification else change.record.to_api()
        return cloud_event(
            etype,
            action,
            id=f"{change.system}-{self._run_id}-{next(self._ids):09d}",
            source=f"{self.source_prefix}/{change.system}",
            time=change.occurred_at,
            key=change.key,
            data=data,
        )

    def on_change(self, change: Change) -> None:
        """World listener: queue the change's event, with the configured imperfections."""
        if change.entity_set in self.exclude_entity_sets:
            return
        if change.system in self.muted:
            self.stats.muted += 1
            return
        if self.drop_rate > 0 and self._drop_rng.random() < self.drop_rate:
            self.stats.dropped += 1
            return
        notification = self.rng.random() < self.notification_rate
        try:
            event = self.event_for(change, notification=notification)
        except ValueError:
            log.warning("no event type for change %s", change.change_type)
            return
        self.stats.notifications += notification
        out = [event]
        if self.rng.random() < self.duplicate_rate:
            out.append(dict(event))
            self.stats.duplicates += 1
        if self._held is not None:
            out.append(self._held)  # the held one arrives after a newer event
            self._held = None
        elif self.rng.random() < self.reorder_rate:
            self._held = out.pop(0)
            self._held_since = time.monotonic()
            self.stats.reordered += 1
        self._pending.extend(out)
        self._idle.clear()
        self._wake.set()

    # --- sending -------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            if not self._pending:
                self._idle.set()
                self._wake.clear()
                if self._held is None:
                    await self._wake.wait()
                    continue
                # A held event arrives after the next change, or on its own once
                # HOLD_SECONDS pass without one: it never waits for a change that may not come.
                wait = self._held_since + HOLD_SECONDS - time.monotonic()
                if wait > 0:
                    await wait_event(self._wake, wait)
                    continue
                self._pending.append(self._held)
                self._held = None
                self._idle.clear()
                continue
            # One request per system: each is signed with its own system's secret.
            system = self._pending[0]["source"].rsplit("/", 1)[-1]
            batch = [e for e in self._pending if e["source"].endswith("/" + system)][: self.max_batch]
            ok = await self._post(system, batch)
            if ok:
                ids = {id(e) for e in batch}
                self._pending = [e for e in self._pending if id(e) not in ids]
                self.stats.sent += len(batch)
                backoff = 0.2
            else:
                self.stats.retries += 1
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _post(self, system: str, batch: list[dict[str, Any]]) -> bool:
        assert self._session is not None
        body = orjson.dumps(batch)
        headers = {"Content-Type": BATCH, HEADER: sign(self.secrets[system], body)}
        try:
            async with self._session.post(self.url, data=body, headers=headers) as resp:
                if resp.status == 202:
                    return True
                text = await resp.text()
                if 400 <= resp.status < 500 and resp.status not in (408, 429):
                    # The gateway refuses these for good; retrying would not help.
                    self.stats.rejected += len(batch)
                    log.error("gateway refused %d %s events: %s %s", len(batch), system, resp.status, text[:200])
                    return True
                log.warning("gateway answered %s; will retry", resp.status)
                return False
        except (aiohttp.ClientError, OSError) as exc:
            log.warning("gateway unreachable (%s); will retry", exc)
            return False


# Plant days over which the default intake closes a gap in the open orders.
_INTAKE_CORRECTION_DAYS = 5.0


class PlantDriver:
    """Moves the plant forward on an accelerated clock, with new orders and the odd disruption.

    Per interval, each with its own chance: a work centre breaks down for 2–12 h, a
    component of production that has not started goes short for 1–5 days, a truck on its
    way is delayed by 6–48 h; with ``reversal_rate``, a goods issue is reversed, a
    production confirmation cancelled or an item's quantity changed
    a delivery date changed, an item or a whole order cancelled or more ordered after shipment
    (``World.reverse_goods_issue`` / ``cancel_confirmation`` / ``change_quantity`` /
    ``change_date`` / ``cancel_item`` / ``amend_after_shipment`` / ``cancel_order``). New
    orders arrive as a Poisson stream of ``intake_per_day``
    per plant day (default: the steady rate, as many as the plant is due to deliver over the
    next days, estimated again each plant day), from customers in proportion to their orders so far.
    Choices come from a seeded generator over sorted candidates, so the same world, seed
    and steps give the same disruptions and orders.

    ``advance=True`` moves the plant clock ``speed`` x the interval each step (a world whose
    clock is stopped); ``advance=False`` leaves the clock to run by itself (``World.set_speed``)
    and takes what fell due each step.
    """

    def __init__(
        self,
        world: World,
        *,
        speed: float = 600.0,
        interval_seconds: float = 1.0,
        breakdown_rate: float = 0.05,
        shortage_rate: float = 0.03,
        delay_rate: float = 0.03,
        seed: int = 11,
        intake_per_day: float | None = None,
        advance: bool = True,
        reversal_rate: float = 0.0,
    ) -> None:
        self.world = world
        self.speed = speed
        self.advance = advance
        self.reversal_rate = reversal_rate
        # The default rate follows what the plant is due to deliver: estimated again each
        # plant day, so open orders stay about as many as they were however long it runs.
        self._steady = intake_per_day is None
        self.intake_per_day = world.steady_intake_per_day() if intake_per_day is None else float(intake_per_day)
        self._rated_at = world.now()
        self._open_target = world.open_orders() if self._steady else 0
        if self.intake_per_day < 0 or not math.isfinite(self.intake_per_day):
            raise ValueError("intake_per_day must be a finite number >= 0")
        self.placed = 0
        self._last_now = world.now()
        counts = collections.Counter(
            world.get("A_SalesOrder", so).sold_to_party for so in world.sales_orders
        )
        self._customers = sorted(world.customers())
        self._weights = [counts.get(c, 0) + 1 for c in self._customers]
        self.interval = interval_seconds
        self.breakdown_rate = breakdown_rate
        self.shortage_rate = shortage_rate
        self.delay_rate = delay_rate
        self.rng = random.Random(seed)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="plant-driver")

    async def close(self) -> None:
        await stop_task(self._task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.step()
            except Exception:
                log.exception("plant step failed")

    def step(self) -> None:
        """One interval: maybe a disruption or three, then the clock moves on."""
        if self.rng.random() < self.breakdown_rate:
            work_centers = sorted(self.world.tables["A_WorkCenter"].keys())
            wc = self.rng.choice(work_centers)
            self.world.work_center_down(wc, hours=self.rng.choice([2, 4, 8, 12]))
        if self.rng.random() < self.shortage_rate:
            self.short_component()
        if self.rng.random() < self.delay_rate:
            self.delay_truck()
        if self.reversal_rate and self.rng.random() < self.reversal_rate:
            self.take_back()
        if self.advance:
            hours = self.speed * self.interval / 3600.0
            self.world.advance_clock(hours)
            self.take_orders(hours / 24)
        else:
            self.world.tick()
            self.take_orders()

    def take_back(self) -> bool:
        """A goods issue posted by mistake is reversed, or a production confirmation is
        cancelled (one of the two, by chance); False if nothing can be taken back."""
        world = self.world
        choices = [("reverse_goods_issue", world.reversible_goods_issues()),
                   ("cancel_confirmation", world.cancellable_confirmations()),
                   ("change_quantity", world.changeable_quantities()),
                   ("change_date", world.changeable_dates()),
                   ("cancel_item", world.cancellable_items()),
                   ("amend_after_shipment", world.amendable_after_shipment()),
                   ("cancel_order", world.cancellable_orders())]
        choices = [(lever, orders) for lever, orders in choices if orders]
        if not choices:
            return False
        lever, orders = self.rng.choice(choices)
        if lever == "change_quantity":
            # The customer orders more (mostly) or less of one item.
            so, item = self.rng.choice(orders)
            current = next(i for i in world.get("A_SalesOrder", so).items if i.sales_order_item == item)
            factor = self.rng.choice((0.5, 1.5, 1.5, 2.0))
            try:
                world.change_quantity(so, item, max(1.0, float(round(current.requested_quantity * factor))))
            except ValueError:
                return False  # less than production already confirmed
            return True
        if lever == "change_date":
            # The customer postpones (mostly) or pulls in its delivery.
            so = self.rng.choice(orders)
            promised = world.get("A_SalesOrder", so).confirmed_delivery_date
            days = self.rng.choice((-3, -1, 2, 3, 5, 7, 10))
            try:
                world.change_date(so, promised + dt.timedelta(days=days))
            except ValueError:
                return False  # not after today
            return True
        if lever == "cancel_item":
            world.cancel_item(*self.rng.choice(orders))
            return True
        if lever == "amend_after_shipment":
            so, item = self.rng.choice(orders)
            world.amend_after_shipment(so, item, float(self.rng.choice((1, 2, 5))))
            return True
        getattr(world, lever)(self.rng.choice(orders))
        return True

    def take_orders(self, days: float | None = None) -> int:
        """New orders for ``days`` of plant time (default: the plant time since the last
        call), a Poisson count; how many."""
        now = self.world.now()
        if days is None:
            days = max(0.0, (now - self._last_now).total_seconds() / 86400)
        self._last_now = now
        if self._steady and now - self._rated_at >= dt.timedelta(days=1):
            # What falls due, plus a gentle pull toward the open orders there were at the
            # start (new orders deliver later than the world built mid-flight did).
            drift = (self._open_target - self.world.open_orders()) / _INTAKE_CORRECTION_DAYS
            self.intake_per_day = max(0.0, self.world.steady_intake_per_day() + drift)
            self._rated_at = now
        n = _poisson(self.rng, self.intake_per_day * days)
        for _ in range(n):
            customer = self.rng.choices(self._customers, self._weights)[0]
            self.world.place_order(customer, seed=self.rng.randrange(2**31))
        self.placed += n
        return n

    def short_component(self) -> bool:
        """A component of not-yet-started production goes short; False if none can."""
        world = self.world
        waiting = sorted(set(world.orders_in_state("RECEIVED")) | set(world.orders_in_state("RELEASED")))
        candidates = [
            c
            for so in waiting
            for po in world.tables["A_ProductionOrder"].lookup("SalesOrder", [so])
            for c in world.tables["A_ComponentAvailability"].lookup("ManufacturingOrder", [po])
        ]
        components = [world.get("A_ComponentAvailability", key) for key in sorted(candidates)]
        usable = [c for c in components if c is not None and c.shortage_quantity == 0 and c.available_quantity > 0]
        if not usable:
            return False
        component = self.rng.choice(usable)
        quantity = round(component.available_quantity * self.rng.uniform(0.3, 1.0), 3)
        until = PLANT_CALENDAR.local_date(world.now() + dt.timedelta(days=self.rng.randint(1, 5)))
        world.component_short(component.reservation, quantity, until)
        return True

    def delay_truck(self) -> bool:
        """A truck on its way reports a delay; False if none is on the road."""
        world = self.world
        moving = sorted(world.orders_in_state("IN_TRANSIT"))
        trucks = [t for so in moving if (t := world.shipment_of(so)) is not None]
        if not trucks:
            return False
        reason = self.rng.choice(("Traffic congestion", "Weather delay", "Missed linehaul connection"))
        world.shipment_delayed(self.rng.choice(trucks), self.rng.choice([6, 12, 24, 48]), reason)
        return True


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson-distributed count with ``mean`` (Knuth's method; means here are small)."""
    if mean <= 0:
        return 0
    if mean > 30:  # a long pause: the normal approximation is close enough
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1

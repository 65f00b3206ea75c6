"""The simulated plant: a deterministic, seeded world of source records.

``World.generate`` builds customers, sales orders, production orders, component
availability, outbound deliveries, inspection lots and shipments as the typed records of
``sources.records``, spread over the whole order lifecycle. Every order carries a
schedule of lifecycle steps; generation creates the order at its order date and replays
the steps that fall before the plant clock, so generated records and records changed
later by ``advance_order`` / ``advance_clock`` come from the same code and cannot
disagree.

The plant works on its factory calendar (``PLANT_CALENDAR``: Stuttgart, two shifts Mon–Fri,
Baden-Württemberg's holidays): production, quality and warehouse steps happen in its
shifts and their gaps count its working time; carriers drive at any time and deliver in
the ship-to's receiving hours on its working days; promises are confirmed for a working
day of the ship-to, and dates are local dates (the plant's, or the ship-to's for delivery
dates).

Each entity set is a ``Table`` with sorted keys and indexes on its filterable fields, so
a batch read of 1,000 keys is a set union, not a scan. Mutations update the records,
their ``LastChangeDateTime`` and the indexes, then tell subscribers with a ``Change``.
"""

from __future__ import annotations

import datetime as dt
import heapq
import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

from ...records import (
    Record,
    Shipment,
    WorkCenter,
)
from .clock import PlantClock, iso_utc, whole_seconds
from .disruptions import Disruptions
from .generation import Generation
from .lifecycle import Lifecycle
from .master_data import (
    MasterData,
)
from .numbers import NumberRanges
from .orders import (
    DELIVERED,
    GOODS_ISSUED,
    LIFECYCLE_STATES,
    RECEIVED,
    STATE_RANK,
    OrderTrack,
)
from .production import Production
from .shipping import Shipping
from .store import Change, Listener, RecordStore, UnknownKey
from .tables import SYSTEMS, Table
from .working_time import WorkingTime

log = logging.getLogger(__name__)

# --- lifecycle -----------------------------------------------------------------------------



# --- catalogues ----------------------------------------------------------------------------

# --- the world -----------------------------------------------------------------------------


class World:
    """The simulated plant: records of five source systems, a clock and mutations."""

    def __init__(self, *, seed: int = 42, start: dt.datetime | None = None, speed: float = 1.0) -> None:
        self.seed = seed
        self._clock = PlantClock(start, speed)
        self.start = self._clock.start
        self._store = RecordStore()
        self.tables = self._store.tables
        self._numbers = NumberRanges()
        self.latency_ms: dict[str, float] = dict.fromkeys(SYSTEMS, 3.0)
        self._tracks: dict[str, OrderTrack] = {}
        self._master = MasterData()
        self._times = WorkingTime(self.start, self._master.ship_tos)
        self._production = Production(self._store, self._numbers, self._master)
        self._shipping = Shipping(self._store, self._numbers, self._master, self._times, seed)
        self._lifecycle = Lifecycle(self._store, self._times, self._production, self._shipping, seed)
        self._generation = Generation(
            self._store, self._numbers, self._master, self._times, self._production, self._lifecycle, self._tracks, seed
        )
        self._disruptions = Disruptions(self._store, self._clock, self._times, self._master.ship_tos, self._tracks)

    # --- generation ------------------------------------------------------------------

    @classmethod
    def generate(
        cls,
        orders: int = 2000,
        customers: int = 50,
        seed: int = 42,
        start: dt.datetime | None = None,
        *,
        speed: float = 1.0,
    ) -> World:
        """A new world with ``orders`` sales orders spread over the whole lifecycle.

        Deterministic: the same arguments (and the same ``start``) give the same records.
        ``start`` is the plant clock's origin, by default now (UTC) rounded down to the hour;
        ``speed`` is plant seconds per wall second (0: the clock moves only by
        ``advance_clock``, so plant time does not depend on how long generation took).
        """
        world = cls(seed=seed, start=start, speed=speed)
        world._generation.populate(orders, customers)
        return world

    # --- clock -------------------------------------------------------------------------

    def now(self) -> dt.datetime:
        """Plant time: start + hours advanced + speed x wall time elapsed."""
        return self._clock.now()

    @property
    def speed(self) -> float:
        """Plant seconds per wall second."""
        return self._clock.speed

    def set_speed(self, factor: float) -> None:
        """Plant seconds per wall second from now on (0 stops the clock between advances)."""
        self._clock.set_speed(factor)

    def set_latency(self, latency_ms: Mapping[str, float] | float) -> dict[str, float]:
        """Set simulated response latency per system (ms); a number sets every system."""
        updates = dict.fromkeys(SYSTEMS, latency_ms) if isinstance(latency_ms, (int, float)) else dict(latency_ms)
        for system, ms in updates.items():
            if system not in SYSTEMS:
                raise ValueError(f"unknown system {system!r}; expected one of {', '.join(SYSTEMS)}")
            if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not 0 <= ms <= 60_000:
                raise ValueError(f"latency for {system} must be a number of milliseconds in 0..60000")
        for system, ms in updates.items():
            self.latency_ms[system] = float(ms)
        return dict(self.latency_ms)

    # --- listeners ---------------------------------------------------------------------

    def subscribe(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(change)`` after every change; returns an unsubscribe function."""
        return self._store.subscribe(callback)

    # --- mutations ---------------------------------------------------------------------

    def work_center_down(self, work_center: str, hours: float) -> list[Change]:
        """Take a work centre down for ``hours``; production on it pauses until it is up."""
        self._disruptions.work_center_down(work_center, hours)
        return self._store.flush()

    def work_center_up(self, work_center: str) -> list[Change]:
        """Bring a work centre back up (no change when it is already up)."""
        self._disruptions.work_center_up(work_center)
        return self._store.flush()

    def component_short(self, reservation: str, quantity: float, until: dt.date) -> list[Change]:
        """A component goes short by ``quantity`` until ``until`` (see ``Disruptions``)."""
        self._disruptions.component_short(reservation, quantity, until)
        return self._store.flush()

    def shipment_delayed(self, tracking_number: str, hours: float, reason: str = "Traffic congestion") -> list[Change]:
        """The carrier reports a delay: the ETA and the rest of the journey move ``hours`` later."""
        self._disruptions.shipment_delayed(tracking_number, hours, reason)
        return self._store.flush()

    def place_order(self, customer: str, *, seed: int | None = None) -> list[Change]:
        """A new order of ``customer`` arrives (state RECEIVED): a new sales order, its
        production order and reservations, with keys after every existing one."""
        if customer not in self._master.ship_tos:
            raise UnknownKey(customer)
        rng = random.Random(seed if seed is not None else len(self._tracks))
        self._generation.new_order(rng, RECEIVED, customer)
        return self._store.flush()

    def plan_shortfall(
        self, sales_order: str, quantity: float, *, item: str | None = None, rest: str | None = None
    ) -> dict[str, Any]:
        """Make production of one item confirm ``quantity`` less than ordered, so the plant
        ships short (see ``Disruptions``); changes no record until production confirms."""
        return self._disruptions.plan_shortfall(sales_order, quantity, item=item, rest=rest)

    def advance_order(self, sales_order: str) -> list[Change]:
        """Move one order one lifecycle step now (no change once it is delivered).

        A control lever: it applies the step even when the order's work centre is down.
        """
        track = self._tracks.get(sales_order)
        if track is None:
            raise UnknownKey(sales_order)
        if not track.schedule:
            return []
        step = track.schedule.popleft()
        at = whole_seconds(self.now())
        if track.last_step_at is not None and at < track.last_step_at:
            at = track.last_step_at
        self._lifecycle.apply(track, step.name, at, part=step.part)
        return self._store.flush()

    def advance_clock(self, hours: float) -> list[Change]:
        """Move the plant clock forward and apply everything that fell due meanwhile."""
        self._clock.advance(hours)
        return self.tick()

    def tick(self) -> list[Change]:
        """Apply everything due at the current plant time, in time order.

        Work centres whose ``ExpectedUpAt`` passed come back up; orders whose next step
        is due take it, unless production is on a work centre that is down then, in which
        case the rest of their schedule slips until it is up again.
        """
        now = whole_seconds(self.now())
        heap: list[tuple[dt.datetime, int, str]] = []
        for reservation, arrival in self._disruptions.receipts.items():
            if arrival <= now:
                heap.append((arrival, -1, reservation))  # goods first: a start due then may use them
        for record in self.tables["A_WorkCenter"].records():
            assert isinstance(record, WorkCenter)
            if record.state == "DOWN" and record.expected_up_at is not None and record.expected_up_at <= now:
                heap.append((record.expected_up_at, 0, record.work_center))
        for key, track in self._tracks.items():
            if track.schedule and track.schedule[0].due <= now:
                heap.append((track.schedule[0].due, 1, key))
        heapq.heapify(heap)
        while heap:
            due, kind, key = heapq.heappop(heap)
            if kind == -1:
                self._disruptions.receive(key, due)
                continue
            if kind == 0:
                record = self._store.work_center(key)
                if record.state == "DOWN" and record.expected_up_at is not None and record.expected_up_at <= now:
                    self._disruptions.set_up(record, record.expected_up_at)
                continue
            track = self._tracks[key]
            if not track.schedule or track.schedule[0].due != due:
                continue
            step = track.schedule[0]
            # Held by a down machine or a late part, then into the step's working time.
            held = self._disruptions.held_until(track, step, now)
            placed = self._times.place(step.name, held or step.due, track.customer, forward=True)
            if placed > step.due:
                # Held production holds every part that shares it; a step waiting for its
                # shift moves only its own part.
                track.shift(step.part, placed - step.due, production=held is not None)
                if track.schedule[0].due <= now:
                    heapq.heappush(heap, (track.schedule[0].due, 1, key))
                continue
            track.schedule.popleft()
            at = max(due, track.last_step_at) if track.last_step_at is not None else due
            self._lifecycle.apply(track, step.name, at, part=step.part)
            if track.schedule:
                following = track.schedule[0]
                following.due = max(following.due, at)
                if following.due <= now:
                    heapq.heappush(heap, (following.due, 1, key))
        return self._store.flush()

    # --- reading -----------------------------------------------------------------------

    def prerender(self) -> None:
        """Render every record's JSON once, so first reads cost what later reads cost."""
        for table in self.tables.values():
            for key in table.keys():
                table.render(key)

    def table(self, entity_set: str) -> Table:
        """The table of one entity set (KeyError when unknown)."""
        return self.tables[entity_set]

    def get(self, entity_set: str, key: str) -> Record | None:
        """One record by entity set and key, or None."""
        return self.tables[entity_set].get(key)

    @property
    def sales_orders(self) -> list[str]:
        """All sales order numbers in order."""
        return list(self._tracks)

    def shipment_of(self, sales_order: str) -> str | None:
        """Tracking number of the order's current shipment, if it has one: the least advanced
        one still on its way, else the latest."""
        track = self._tracks.get(sales_order)
        if track is None:
            raise UnknownKey(sales_order)
        moving = [p for p in track.parts.values() if p.shipment is not None and p.state != DELIVERED]
        if moving:
            return min(moving, key=lambda p: STATE_RANK[p.state]).shipment
        shipped = [p.shipment for p in track.parts.values() if p.shipment is not None]
        return shipped[-1] if shipped else None

    def state_of(self, sales_order: str) -> str:
        """The lifecycle state of one order (one of LIFECYCLE_STATES)."""
        track = self._tracks.get(sales_order)
        if track is None:
            raise UnknownKey(sales_order)
        return track.state

    def orders_in_state(self, state: str) -> list[str]:
        """Sales orders currently in ``state``."""
        return [k for k, t in self._tracks.items() if t.state == state]

    def is_late(self, sales_order: str) -> bool:
        """Open and already past its promise, or a carrier delay / ETA beyond the promise."""
        track = self._tracks.get(sales_order)
        if track is None:
            raise UnknownKey(sales_order)
        order = self._store.sales_order(sales_order)
        promise = order.confirmed_delivery_date
        if track.state == DELIVERED or promise is None:
            return False
        receiving = self._master.ship_tos[track.customer].receiving
        if promise < receiving.local_date(self.now()):
            return True
        tracking = self.shipment_of(sales_order)
        if tracking is None:
            return False
        shipment = self.tables["Shipment"].get(tracking)
        assert isinstance(shipment, Shipment)
        if shipment.status_code == "SD" or shipment.tag in ("Exception", "AttemptFail"):
            return True
        eta = shipment.estimated_delivery_at
        return eta is not None and receiving.local_date(eta) > promise

    def short_shipped(self) -> list[str]:
        """Orders that shipped short and still owe quantity (a backorder): the last planned
        delivery left, and the rest waits for a decision, is being made again or is on its
        way to the warehouse."""
        out = []
        for key, track in self._tracks.items():
            last = track.parts[track.planned_parts - 1]
            if STATE_RANK[last.state] < STATE_RANK[GOODS_ISSUED]:
                continue
            if any(track.shipped.get(i.sales_order_item, 0.0) < i.requested_quantity and not i.rejection_reason
                   for i in self._store.sales_order(key).items):
                out.append(key)
        return out

    def split_orders(self) -> list[str]:
        """Orders planned to ship in two deliveries (schedule lines on two dates)."""
        return [k for k, t in self._tracks.items() if t.planned_parts > 1]

    def delivery_summary(self) -> dict[str, int]:
        """Orders with a backorder open, with several deliveries, and with a cut (rejected) item."""
        several = 0
        cut = 0
        for key, track in self._tracks.items():
            several += sum(1 for p in track.parts.values() if p.delivery is not None) > 1
            cut += any(i.rejection_reason for i in self._store.sales_order(key).items)
        return {"backorders": len(self.short_shipped()), "severalDeliveries": several, "itemsCut": cut}

    def summary(self) -> dict[str, Any]:
        """Orders per lifecycle state, late orders, work centres down, record counts, clock."""
        states = dict.fromkeys(LIFECYCLE_STATES, 0)
        for track in self._tracks.values():
            states[track.state] += 1
        down = [
            r.work_center
            for r in self.tables["A_WorkCenter"].records()
            if isinstance(r, WorkCenter) and r.state == "DOWN"
        ]
        return {
            "clock": iso_utc(self.now()),
            "start": iso_utc(self.start),
            "speed": self._clock.speed,
            "seed": self.seed,
            "orders": len(self._tracks),
            "states": states,
            "late": sum(1 for k in self._tracks if self.is_late(k)),
            "deliveries": self.delivery_summary(),
            "workCentersDown": down,
            "records": {name: len(t) for name, t in self.tables.items()},
            "latencyMs": dict(self.latency_ms),
        }

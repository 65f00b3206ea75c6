"""The simulated plant as its servers, levers and tests see it: one ``World``.

``World`` composes the concerns of the world, each in its own module, and wires them
together in ``__init__`` (the one place that shows who uses whom):

- ``store`` / ``tables``: the records of the five source systems and their changes;
- ``clock``: plant time; ``numbers``: document numbers;
- ``master_data`` and ``working_time``: products, ship-to places and the calendars
  steps happen on;
- ``orders``, ``planning``, ``quantities``: an order's track, its plan and its quantities;
- ``production``, ``shipping``, ``lifecycle``: the order's steps;
- ``disruptions``: breakdowns, late components, carrier delays, planned shortfalls;
- ``amendments``: goods-issue reversals, production confirmation cancellations and the
  customer's changes (quantities, dates, items or the whole order cancelled, more ordered);
- ``generation``: a world built from a seed; ``scheduler``: what falls due as time moves;
- ``reports``: order states, lateness and deliveries at a glance.

Every lever and tick mutates records through the store, then ``World`` hands the queued
changes to the listeners once (``RecordStore.flush``) and returns them.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Mapping
from typing import Any

from ...records import Record, WorkCenter
from .amendments import Amendments
from .clock import PlantClock, iso_utc, whole_seconds
from .disruptions import Disruptions
from .generation import Generation
from .lifecycle import Lifecycle
from .master_data import MasterData
from .numbers import NumberRanges
from .orders import RECEIVED, OrderTrack, track_of
from .production import Production
from .reports import Reports
from .scheduler import Scheduler
from .shipping import Shipping
from .store import Change, Listener, RecordStore, UnknownKey, gc_paused
from .tables import SYSTEMS, Table
from .working_time import WorkingTime


class World:
    """The simulated plant: records of five source systems, a clock and mutations."""

    def __init__(self, *, seed: int = 42, start: dt.datetime | None = None, speed: float = 1.0) -> None:
        self.seed = seed
        self._clock = PlantClock(start, speed)
        self.start = self._clock.start
        self._store = RecordStore()
        self.tables: dict[str, Table] = self._store.tables
        self.latency_ms: dict[str, float] = dict.fromkeys(SYSTEMS, 3.0)
        self._tracks: dict[str, OrderTrack] = {}  # per sales order, in the order they came in
        numbers = NumberRanges()
        master = MasterData()
        times = WorkingTime(self.start, master.ship_tos)
        production = Production(self._store, numbers, master)
        shipping = Shipping(self._store, numbers, master, times, seed)
        lifecycle = Lifecycle(self._store, times, production, shipping, seed)
        self._master = master
        self._generation = Generation(self._store, numbers, master, times, production, lifecycle, self._tracks, seed)
        self._disruptions = Disruptions(self._store, self._clock, times, master.ship_tos, self._tracks)
        self._scheduler = Scheduler(self._clock, times, lifecycle, self._disruptions, self._tracks)
        self._reports = Reports(self._store, self._clock, master.ship_tos, self._tracks)
        self._amendments = Amendments(self._store, self._clock, times, self._tracks)

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

    # --- clock and latency -------------------------------------------------------------

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

    def subscribe(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(change)`` after every change; returns an unsubscribe function."""
        return self._store.subscribe(callback)

    # --- levers and time: each returns the changes it made, after telling the listeners --

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

    def plan_shortfall(
        self, sales_order: str, quantity: float, *, item: str | None = None, rest: str | None = None
    ) -> dict[str, Any]:
        """Make production of one item confirm ``quantity`` less than ordered, so the plant
        ships short (see ``Disruptions``); changes no record until production confirms."""
        return self._disruptions.plan_shortfall(sales_order, quantity, item=item, rest=rest)

    def reverse_goods_issue(self, sales_order: str) -> list[Change]:
        """Take back a goods issue the carrier has not picked up (see ``Amendments``);
        ValueError when the order has none."""
        self._amendments.reverse_goods_issue(sales_order)
        return self._store.flush()

    def cancel_confirmation(self, sales_order: str) -> list[Change]:
        """Take back the last production confirmation (see ``Amendments``); ValueError when
        the order has none that can be."""
        self._amendments.cancel_confirmation(sales_order)
        return self._store.flush()

    def change_quantity(self, sales_order: str, item: str, quantity: float) -> list[Change]:
        """The customer now orders ``quantity`` of ``item`` (see ``Amendments``); ValueError
        when that item's quantity can no longer change."""
        self._amendments.change_quantity(sales_order, item, quantity)
        return self._store.flush()

    def change_date(self, sales_order: str, requested: dt.date) -> list[Change]:
        """The customer asks for delivery on ``requested`` (see ``Amendments``); ValueError
        when the order's date can no longer change."""
        self._amendments.change_date(sales_order, requested)
        return self._store.flush()

    def cancel_item(self, sales_order: str, item: str) -> list[Change]:
        """The customer cancels one item (see ``Amendments``); ValueError when it cannot be."""
        self._amendments.cancel_item(sales_order, item)
        return self._store.flush()

    def amend_after_shipment(self, sales_order: str, item: str, extra: float) -> list[Change]:
        """The customer orders ``extra`` more of ``item`` after shipment (see ``Amendments``)."""
        self._amendments.amend_after_shipment(sales_order, item, extra)
        return self._store.flush()

    def cancel_order(self, sales_order: str) -> list[Change]:
        """The customer cancels the whole order (see ``Amendments``); ValueError when it
        cannot be (picking started, or cancelled already)."""
        self._amendments.cancel_order(sales_order)
        return self._store.flush()

    def cancellable_orders(self) -> list[str]:
        """Sales orders the customer can still cancel whole."""
        return self._amendments.cancellable_orders()

    def amendable_after_shipment(self) -> list[tuple[str, str]]:
        """(sales order, item) the customer can still order more of after shipment."""
        return self._amendments.amendable_after_shipment()

    def cancellable_items(self) -> list[tuple[str, str]]:
        """(sales order, item) the customer can still cancel alone."""
        return self._amendments.cancellable_items()

    def changeable_dates(self) -> list[str]:
        """Sales orders whose delivery date can still change."""
        return self._amendments.changeable_dates()

    def changeable_quantities(self) -> list[tuple[str, str]]:
        """(sales order, item) whose quantity can still change."""
        return self._amendments.changeable_quantities()

    def reversible_goods_issues(self) -> list[str]:
        """Orders with a goods issue the carrier has not picked up yet."""
        return self._amendments.reversible_goods_issues()

    def cancellable_confirmations(self) -> list[str]:
        """Orders with a production confirmation that can still be taken back."""
        return self._amendments.cancellable_confirmations()

    def place_order(self, customer: str, *, seed: int | None = None) -> list[Change]:
        """A new order of ``customer`` arrives (state RECEIVED): a new sales order, its
        production order and reservations, with keys after every existing one."""
        if customer not in self._master.ship_tos:
            raise UnknownKey(customer)
        rng = random.Random(seed if seed is not None else len(self._tracks))
        self._generation.new_order(rng, RECEIVED, customer, whole_seconds(self._clock.now()))
        return self._store.flush()

    def advance_order(self, sales_order: str) -> list[Change]:
        """Move one order one lifecycle step now (no change once it is delivered).

        A control lever: it applies the step even when the order's work centre is down.
        """
        self._scheduler.step_now(track_of(self._tracks, sales_order))
        return self._store.flush()

    def advance_clock(self, hours: float) -> list[Change]:
        """Move the plant clock forward and apply everything that fell due meanwhile."""
        self._clock.advance(hours)
        return self.tick()

    def tick(self) -> list[Change]:
        """Apply everything due at the current plant time, in time order (see ``Scheduler``)."""
        self._scheduler.run_due()
        return self._store.flush()

    # --- reading -----------------------------------------------------------------------

    def prerender(self) -> None:
        """Render every record's JSON once, so first reads cost what later reads cost
        (millions of long-lived dicts: the cyclic collector waits, see ``gc_paused``)."""
        with gc_paused():
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
        return self._reports.shipment_of(sales_order)

    def state_of(self, sales_order: str) -> str:
        """The lifecycle state of one order (one of LIFECYCLE_STATES)."""
        return self._reports.state_of(sales_order)

    def orders_in_state(self, state: str) -> list[str]:
        """Sales orders currently in ``state``."""
        return self._reports.orders_in_state(state)

    def is_late(self, sales_order: str) -> bool:
        """Open and already past its promise, or a carrier delay / ETA beyond the promise."""
        return self._reports.is_late(sales_order)

    def short_shipped(self) -> list[str]:
        """Orders that shipped short and still owe quantity (a backorder; see ``Reports``)."""
        return self._reports.short_shipped()

    def split_orders(self) -> list[str]:
        """Orders planned to ship in two deliveries (schedule lines on two dates)."""
        return self._reports.split_orders()

    def delivery_summary(self) -> dict[str, int]:
        """Orders with a backorder open, with several deliveries, and with a cut (rejected) item."""
        return self._reports.delivery_summary()

    def steady_intake_per_day(self) -> float:
        """New orders per plant day that keep the number of open orders steady (see ``Reports``)."""
        return self._reports.steady_intake_per_day()

    def open_orders(self) -> int:
        """How many orders are not delivered yet."""
        return self._reports.open_orders()

    def customers(self) -> list[str]:
        """Customer numbers, in order."""
        return list(self._master.ship_tos)

    def summary(self) -> dict[str, Any]:
        """Orders per lifecycle state, late orders, work centres down, record counts, clock."""
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
            "states": self._reports.states(),
            "late": self._reports.late_count(),
            "deliveries": self._reports.delivery_summary(),
            "workCentersDown": down,
            "records": {name: len(t) for name, t in self.tables.items()},
            "latencyMs": dict(self.latency_ms),
        }

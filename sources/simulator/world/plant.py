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

import collections
import datetime as dt
import heapq
import logging
import math
import random
from collections.abc import Callable, Mapping
from typing import Any

from ...records import (
    Customer,
    Record,
    SalesOrder,
    SalesOrderItem,
    Shipment,
    WorkCenter,
)
from .clock import PlantClock, hours_span, iso_utc, whole_seconds
from .disruptions import Disruptions
from .lifecycle import Lifecycle
from .master_data import (
    CITIES,
    CUSTOMER_NAMES,
    FAMILIES,
    RAW_MATERIALS,
    SIZES,
    SUFFIXES,
    WORK_CENTERS,
    MasterData,
    Product,
    ShipTo,
)
from .numbers import NumberRanges
from .orders import (
    DELIVERED,
    GOODS_ISSUED,
    IN_TRANSIT,
    LIFECYCLE_STATES,
    MATERIAL_SHORTAGE,
    OUT_FOR_DELIVERY,
    QUALITY_REJECTED,
    RECEIVED,
    STATE_RANK,
    OrderTrack,
    Part,
    Step,
)
from .planning import (
    LATE_ELIGIBLE,
    SHIPPING_STEPS,
    Flags,
    gap,
    order_steps,
    state_quota,
    states_after,
)
from .production import Production, make_short
from .quantities import (
    add_schedule_lines,
    split_lines,
)
from .shipping import Shipping
from .store import Change, Listener, RecordStore, UnknownKey
from .tables import SYSTEMS, Table
from .working_time import PLANT_CALENDAR, RECEIVING_CALENDAR, WorkingTime

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
        rng = random.Random(seed)
        with world._store.loading():
            world._build_catalogue(rng)
            world._build_work_centers(rng)
            customer_weights = world._build_customers(rng, customers)
            world._build_orders(rng, orders, customer_weights)
            world._take_work_centers_down(rng)
        return world

    def _build_catalogue(self, rng: random.Random) -> None:
        n = 0
        for _family, base_price, work_center in FAMILIES:
            for size in SIZES:
                n += 1
                material = f"FG-{1000 + n}"
                components = rng.sample(RAW_MATERIALS, rng.randint(2, 5))
                bom = tuple(
                    (rm, unit, float(rng.choice((1, 1, 2, 4, 6, 12))) if unit == "PC" else round(rng.uniform(0.5, 25), 1))
                    for rm, unit in components
                )
                self._master.add_product(Product(material, round(base_price * size, 2), work_center, bom))

    def _build_work_centers(self, rng: random.Random) -> None:
        for wc, text in WORK_CENTERS:
            changed = self.start - hours_span(rng.uniform(24, 24 * 30))
            self.tables["A_WorkCenter"].put(
                WorkCenter(work_center=wc, work_center_text=text, last_change_date_time=whole_seconds(changed))
            )

    def _build_customers(self, rng: random.Random, count: int) -> list[float]:
        strategic = max(1, round(count * 0.06))
        high = round(count * 0.18)
        low = round(count * 0.16)
        priorities = ["STRATEGIC"] * strategic + ["HIGH"] * high + ["LOW"] * low
        priorities += ["NORMAL"] * max(0, count - len(priorities))
        priorities = priorities[:count]
        rng.shuffle(priorities)
        order_weight = {"STRATEGIC": 4.0, "HIGH": 2.0, "NORMAL": 1.0, "LOW": 0.6}
        weights = []
        for i in range(count):
            base = CUSTOMER_NAMES[i % len(CUSTOMER_NAMES)]
            suffix = rng.choice(SUFFIXES)
            # Beyond the name list, number the names so customers stay distinct.
            name = f"{base} {suffix}" if i < len(CUSTOMER_NAMES) else f"{base} {i // len(CUSTOMER_NAMES) + 1} {suffix}"
            country, city, region, zone = rng.choice(CITIES)
            key = str(17100001 + i)
            self._master.ship_tos[key] = ShipTo(f"{city}, {country}", RECEIVING_CALENDAR.for_place(country, region, zone))
            changed = self.start - hours_span(rng.uniform(24 * 30, 24 * 400))
            self.tables["A_Customer"].put(
                Customer(
                    customer=key,
                    customer_name=name,
                    commercial_priority=priorities[i],
                    country=country,
                    region=region,
                    time_zone=zone,
                    last_change_date_time=whole_seconds(changed),
                )
            )
            weights.append(order_weight[priorities[i]] * rng.uniform(0.5, 1.5))
        return weights

    def _build_orders(self, rng: random.Random, count: int, customer_weights: list[float]) -> None:
        customers = list(self._master.ship_tos)
        targets = state_quota(count)
        rng.shuffle(targets)
        for target in targets:
            customer = rng.choices(customers, customer_weights)[0]
            self._generate_order(rng, target, customer)

    def _take_work_centers_down(self, rng: random.Random) -> None:
        for wc in sorted(rng.sample([w for w, _ in WORK_CENTERS], 2)):
            record = self.tables["A_WorkCenter"].get(wc)
            assert isinstance(record, WorkCenter)
            record.state = "DOWN"
            record.down_since = whole_seconds(self.start - hours_span(rng.uniform(1, 6)))
            record.expected_up_at = whole_seconds(self.start + hours_span(rng.uniform(2, 12)))
            self._store.touch(record, "WorkCenter.Down", record.down_since, None)

    def _generate_order(self, rng: random.Random, target: str, customer: str) -> None:
        flags = Flags(
            shortage=target == MATERIAL_SHORTAGE or (target != RECEIVED and rng.random() < 0.12),
            reject=target == QUALITY_REJECTED or rng.random() < 0.04,
            block=rng.choice(("credit", "delivery")) if rng.random() < 0.07 else "",
            carrier_delay=rng.random() < (0.3 if target == IN_TRANSIT else 0.08),
            attempt_fail=rng.random() < (0.2 if target == OUT_FOR_DELIVERY else 0.05),
            shortfall=rng.random() < 0.08,
        )
        steps = order_steps(flags)
        production_hours = rng.uniform(8, 96)
        transit_hours = rng.uniform(24, 96)
        gaps = [gap(name, rng, production_hours, transit_hours) for name, _extra in steps]
        lead = rng.uniform(24, 35 * 24)  # order received -> release
        if flags.shortage:
            split = rng.uniform(0.5, 0.9)
            gaps[0], gaps[1] = lead * split, lead * (1 - split) + rng.uniform(2, 24)
        else:
            gaps[0] = lead

        def cumulate() -> list[float]:
            out, total = [], 0.0
            for g in gaps:
                total += g
                out.append(total)
            return out

        # The promise is planned on the nominal path; extra steps (rework, blocks, carrier
        # delays, failed attempts) are what makes real orders late.
        planned: dict[str, float] = {}
        total = 0.0
        for (name, extra), g in zip(steps, gaps, strict=True):
            if not extra:
                total += g
                planned.setdefault(name, total)
        # Planners confirm with some safety time over the plan: two to six days.
        confirmed_rel = planned["deliver"] + rng.uniform(48, 144)
        names = [name for name, _ in steps]
        if flags.carrier_delay:
            # A carrier delay must push delivery past the end of the promised day.
            times = cumulate()
            needed = confirmed_rel + 24 + rng.uniform(12, 48) - times[-1]
            if needed > 0:
                gaps[names.index("delay")] += needed
        times = cumulate()

        states = states_after(steps, flags)
        eligible = [k for k, s in enumerate(states) if s == target] or [0]
        k = rng.choice(eligible)
        # A healthy plant: few orders run late without a disruption to show for it.
        late = rng.random() < (0.06 if target in LATE_ELIGIBLE else 0.05 if target == DELIVERED else 0.0)
        lo = times[k - 1] if k > 0 else 0.0
        if k < len(steps):
            now_rel = lo + rng.uniform(0.02, 0.98) * (times[k] - lo)
            if late:
                now_rel = max(now_rel, confirmed_rel + 24 + rng.uniform(6, 144))
                shift = now_rel + rng.uniform(2, 48) - times[k]
                if shift > 0:
                    gaps[k] += shift
                    times = cumulate()
        else:
            if late:
                j = rng.choice([i for i, n in enumerate(names) if n in ("start", "confirm", "en_route", "pick")])
                shift = confirmed_rel + 24 + rng.uniform(6, 96) - times[-1]
                if shift > 0:
                    gaps[j] += shift
                    times = cumulate()
            now_rel = times[-1] + rng.uniform(1, 24 * 30)

        # Relative hours become instants on the calendars, with now_rel at the plant clock.
        dues, at = self._times.lay_out(names, times, now_rel, customer)
        ordered_at = whole_seconds(at(0.0))
        schedule = collections.deque(Step(name, whole_seconds(due)) for name, due in zip(names, dues, strict=True))
        # Promised for a working day of the ship-to, when its receiving hours allow.
        receiving = self._master.ship_tos[customer].receiving
        confirmed = receiving.local_date(receiving.next_working_time(at(confirmed_rel)))
        track = self._create_order(
            rng,
            customer=customer,
            ordered_at=ordered_at,
            confirmed=confirmed,
            planned_start=self._times.place("start", at(planned["start"]), customer, forward=True),
            planned_end=self._times.place("confirm", at(planned["confirm"]), customer, forward=True),
            flags=flags,
            schedule=schedule,
            # The schedule the order is confirmed with (on the calendars): its schedule lines keep it.
            baseline={
                name: self._times.place(name, at(planned[name]), customer, forward=True)
                for name in ("decide", "pack", "goods_issue")
            },
        )
        track.production_hours = production_hours
        track.exception_on_delay = rng.random() < 0.4
        if flags.carrier_delay:
            track.extra_transit_hours = gaps[names.index("delay")]
        if flags.attempt_fail:
            track.extra_transit_hours += gaps[names.index("attempt_fail")]
        while track.schedule and track.schedule[0].due <= self.start:
            step = track.schedule.popleft()
            self._lifecycle.apply(track, step.name, step.due, rng, part=step.part)

    def _create_order(
        self,
        rng: random.Random,
        *,
        customer: str,
        ordered_at: dt.datetime,
        confirmed: dt.date,
        planned_start: dt.datetime,
        planned_end: dt.datetime,
        flags: Flags,
        schedule: collections.deque[Step],
        baseline: dict[str, dt.datetime],
    ) -> OrderTrack:
        so_key = self._numbers.next("sales_order")
        n_items = rng.choices((1, 2, 3, 4), (40, 30, 20, 10))[0]
        cap = 250_000.0 / n_items
        items: list[SalesOrderItem] = []
        requested = confirmed
        receiving = self._master.ship_tos[customer].receiving
        if rng.random() < 0.3:
            earlier = confirmed - dt.timedelta(days=rng.randint(1, 10))
            ordered_on = PLANT_CALENDAR.local_date(ordered_at)
            requested = receiving.next_working_day(max(ordered_on + dt.timedelta(days=1), earlier))
        for i, product in enumerate(rng.sample(self._master.catalogue, n_items)):
            qty = float(max(1, min(rng.choice((1, 2, 3, 5, 8, 10, 12, 20, 25, 40, 50)), math.floor(cap / product.unit_price))))
            amount = round(qty * product.unit_price * rng.uniform(0.85, 1.0), 2)
            items.append(
                SalesOrderItem(
                    sales_order_item=str(10 * (i + 1)),
                    material=product.material,
                    requested_quantity=qty,
                    net_amount=amount,
                    confirmed_delivery_date=confirmed,
                    confirmed_quantity=qty,
                )
            )
        # Its own generator: a split does not change the rest of the generated world.
        plan = random.Random(f"{self.seed}:{so_key}:plan")
        later = split_lines(plan, items) if not flags.shortfall and plan.random() < 0.08 else {}
        offset = dt.timedelta(0)
        if later:
            # The later lines ship some plant working days after the first: a whole number
            # of days, so the plan's times of day (in shifts) stay as they were.
            issue_day = PLANT_CALENDAR.local_date(baseline["goods_issue"])
            offset = PLANT_CALENDAR.add_working_days(issue_day, plan.randint(3, 8)) - issue_day
        for item in items:
            add_schedule_lines(
                item, later.get(item.sales_order_item, 0.0), requested, confirmed, offset, baseline, receiving
            )
        order = SalesOrder(
            sales_order=so_key,
            sold_to_party=customer,
            sales_order_date=PLANT_CALENDAR.local_date(ordered_at),
            requested_delivery_date=min(requested, confirmed),
            purchase_order_by_customer=f"PO-{customer[-3:]}-{rng.randint(10000, 99999)}",
            confirmed_delivery_date=max(i.confirmed_delivery_date or confirmed for i in items),
            total_net_amount=round(sum(it.net_amount for it in items), 2),
            total_credit_check_status="B" if flags.block == "credit" else "A",
            total_block_status="B" if flags.block else "",
            delivery_block_reason="01" if flags.block == "delivery" else "",
            items=items,
        )
        self._store.touch(order, "SalesOrder.Created", ordered_at, so_key)
        state = MATERIAL_SHORTAGE if flags.shortage else RECEIVED
        track = OrderTrack(
            sales_order=so_key,
            customer=customer,
            made_to_order={},
            schedule=schedule,
            parts={0: Part(state)},
            rejects_pending=1 if flags.reject else 0,
            shortfall=flags.shortfall,
            last_step_at=ordered_at,
        )
        if later:
            # The later schedule lines ship in a second delivery, their own dates after part 0's.
            track.parts[0].quantities = {i.sales_order_item: i.requested_quantity - later.get(i.sales_order_item, 0.0)
                                         for i in items}
            track.add_part(1, Part(state, quantities=dict(later)))
            track.planned_parts = 2
            first: dict[str, dt.datetime] = {}
            for step in schedule:
                first.setdefault(step.name, step.due)
            later_steps: list[Step] = []
            for name in SHIPPING_STEPS:
                # Each step in its working time (plant shifts, the ship-to's hours), in order.
                due = first[name] + offset
                if later_steps:
                    due = max(due, later_steps[-1].due)
                later_steps.append(Step(name, self._times.place(name, due, customer, forward=True), 1))
            track.add_steps(later_steps)
        receipt = next((s.due for s in schedule if s.name == "clear_shortage"), None)
        for i, item in enumerate(items):
            # Most items are made to order; some ship from finished-goods stock.
            if i > 0 and rng.random() < 0.15:
                continue
            po = self._production.create_production_order(
                so_key, item, status="CREATED", at=ordered_at, start=planned_start, end=planned_end
            )
            track.made_to_order[item.sales_order_item] = po.manufacturing_order
            track.parts[0].orders.append(po.manufacturing_order)
            self._production.create_components(rng, po, ordered_at, shortage_until=receipt if flags.shortage else None)
        if flags.shortage and receipt is not None:
            self._ensure_shortage(track, rng, receipt, ordered_at)
        self._tracks[so_key] = track
        return track

    def _ensure_shortage(
        self, track: OrderTrack, rng: random.Random, receipt: dt.datetime, at: dt.datetime
    ) -> None:
        """A shortage order has at least one short component."""
        components = [c for po in track.made_to_order.values() for c in self._store.components(po)]
        if any(c.shortage_quantity > 0 for c in components):
            return
        component = rng.choice(components)
        make_short(component, rng, receipt)
        self._store.touch(component, "ComponentAvailability.ShortageRaised", at, track.sales_order)

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
        self._generate_order(rng, RECEIVED, customer)
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

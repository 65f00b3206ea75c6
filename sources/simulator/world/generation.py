"""Generation: a world built from a seed.

The catalogue (products, bills of material), the work centres, the customers with their
ship-to places, then orders spread over the whole lifecycle: each one is planned (what
will go wrong, its steps and their instants around the plant clock), created at its order
date, and its steps before the plant clock are taken through the lifecycle, as a later
tick would take them. Two work centres are down at the start.

Deterministic: the same seed and start give the same world.
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import math
import random

from ...records import Customer, SalesOrder, SalesOrderItem, WorkCenter
from .clock import hours_span, whole_seconds
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
    MATERIAL_SHORTAGE,
    RECEIVED,
    OrderTrack,
    Part,
    Step,
)
from .planning import SHIPPING_STEPS, Flags, plan_order, state_quota
from .production import Production, make_short
from .quantities import add_schedule_lines, split_lines
from .store import RecordStore
from .working_time import PLANT_CALENDAR, RECEIVING_CALENDAR, WorkingTime

# Items per order 1-4 with weights 40, 30, 20, 10, summed once (the same draws as the weights).
_ITEM_COUNT_CUM_WEIGHTS = list(itertools.accumulate((40, 30, 20, 10)))


class Generation:
    """Builds a world's master data and orders into the store and the order tracks."""

    def __init__(
        self,
        store: RecordStore,
        numbers: NumberRanges,
        master: MasterData,
        times: WorkingTime,
        production: Production,
        lifecycle: Lifecycle,
        tracks: dict[str, OrderTrack],
        seed: int,
    ) -> None:
        self._store = store
        self._numbers = numbers
        self._master = master
        self._times = times
        self._production = production
        self._lifecycle = lifecycle
        self._tracks = tracks
        self._seed = seed
        self._start = times.start

    def populate(self, orders: int, customers: int) -> None:
        """Catalogue, work centres, ``customers`` customers and ``orders`` orders, loaded in
        bulk (no changes are told to anyone)."""
        rng = random.Random(self._seed)
        with self._store.loading():
            self._build_catalogue(rng)
            self._build_work_centers(rng)
            customer_weights = self._build_customers(rng, customers)
            self._build_orders(rng, orders, customer_weights)
            self._take_work_centers_down(rng)

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
            changed = self._start - hours_span(rng.uniform(24, 24 * 30))
            self._store.tables["A_WorkCenter"].put(
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
            changed = self._start - hours_span(rng.uniform(24 * 30, 24 * 400))
            self._store.tables["A_Customer"].put(
                Customer(
                    customer=key,
                    customer_name=name,
                    commercial_priority=priorities[i],
                    country=country,
                    region=region,
                    time_zone=zone,
                    last_change_date_time=whole_seconds(changed),
                    # Correspondence language from the country (no draw: the world stays as it was).
                    language="DE" if country in ("DE", "AT", "CH") else "EN",
                )
            )
            weights.append(order_weight[priorities[i]] * rng.uniform(0.5, 1.5))
        return weights

    def _build_orders(self, rng: random.Random, count: int, customer_weights: list[float]) -> None:
        """``count`` orders spread over the lifecycle states, by customer weight."""
        customers = list(self._master.ship_tos)
        targets = state_quota(count)
        rng.shuffle(targets)
        cum_weights = list(itertools.accumulate(customer_weights))  # what choices() sums each time
        for target in targets:
            customer = rng.choices(customers, cum_weights=cum_weights)[0]
            self.new_order(rng, target, customer)

    def _take_work_centers_down(self, rng: random.Random) -> None:
        """Two work centres are down at the start, with their repair expected soon."""
        for wc in sorted(rng.sample([w for w, _ in WORK_CENTERS], 2)):
            record = self._store.work_center(wc)
            record.state = "DOWN"
            record.down_since = whole_seconds(self._start - hours_span(rng.uniform(1, 6)))
            record.expected_up_at = whole_seconds(self._start + hours_span(rng.uniform(2, 12)))
            self._store.touch(record, "WorkCenter.Down", record.down_since, None)

    def new_order(self, rng: random.Random, target: str, customer: str, now: dt.datetime | None = None) -> None:
        """A new order of ``customer``, now in state ``target``: its plan (flags, steps and
        their instants around the plant clock), its documents at its order date, and the
        steps that fall before now taken. ``now``: the plant clock (default its start)."""
        now = self._start if now is None else now
        plan = plan_order(rng, target)
        # Relative hours become instants on the calendars, with now_rel at the plant clock.
        dues, at = self._times.lay_out(plan.names, plan.times, plan.now_rel, customer, now)
        ordered_at = whole_seconds(at(0.0))
        schedule = collections.deque(Step(name, whole_seconds(due)) for name, due in zip(plan.names, dues, strict=True))
        # Promised for a working day of the ship-to, when its receiving hours allow.
        receiving = self._master.ship_tos[customer].receiving
        confirmed = receiving.local_date(receiving.next_working_time(at(plan.confirmed_rel)))
        track = self._create_order(
            rng,
            customer=customer,
            ordered_at=ordered_at,
            confirmed=confirmed,
            planned_start=self._times.place("start", at(plan.planned["start"]), customer, forward=True),
            planned_end=self._times.place("confirm", at(plan.planned["confirm"]), customer, forward=True),
            flags=plan.flags,
            schedule=schedule,
            # The schedule the order is confirmed with (on the calendars): its schedule lines keep it.
            baseline={
                name: self._times.place(name, at(plan.planned[name]), customer, forward=True)
                for name in ("decide", "pack", "goods_issue")
            },
        )
        track.production_hours = plan.production_hours
        track.exception_on_delay = rng.random() < 0.4
        track.extra_transit_hours = plan.extra_transit_hours
        while track.schedule and track.schedule[0].due <= now:
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
        n_items = rng.choices((1, 2, 3, 4), cum_weights=_ITEM_COUNT_CUM_WEIGHTS)[0]
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
        plan = random.Random(f"{self._seed}:{so_key}:plan")
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

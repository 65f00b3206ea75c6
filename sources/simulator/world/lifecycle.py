"""The order's lifecycle: every step of an order's life, each taken by the concern it
belongs to (production, shipping), and the order-level decisions the ERP takes itself:
releasing a credit or delivery block, and making or cutting a short shipment's rest.

Generation replays the steps that fall before the plant clock through ``apply`` too, so
generated records and records changed later by the clock or a lever come from the same
code and cannot disagree.
"""

from __future__ import annotations

import datetime as dt
import random

from .clock import hours_span, whole_seconds
from .orders import DELIVERED, RELEASED, OrderTrack, Part, Step, StepAction
from .planning import SHIPPING_STEPS, gap
from .production import Production
from .quantities import REJECTION_REASON, open_items, post_delivered_quantities
from .shipping import Shipping
from .store import RecordStore
from .working_time import PLANT_CALENDAR, WorkingTime


class Lifecycle:
    """Applies an order's steps."""

    def __init__(
        self, store: RecordStore, times: WorkingTime, production: Production, shipping: Shipping, seed: int
    ) -> None:
        self._store = store
        self._times = times
        self._production = production
        self._seed = seed
        self._steps: dict[str, StepAction] = {
            **production.steps(),
            **shipping.steps(),
            "unblock": self.unblock,
            "backorder": self.backorder,
        }

    def apply(
        self, track: OrderTrack, name: str, at: dt.datetime, rng: random.Random | None = None, *, part: int = 0
    ) -> None:
        """Take step ``name`` of ``track``'s part ``part`` at ``at``.

        ``rng`` is generation's generator while it replays an order's first part; otherwise
        each step draws from its own seeded generator.
        """
        if rng is None or part > 0:
            # After generation each step draws from its own seeded generator, so an
            # order's story does not depend on how its steps interleave with others'
            # (nor the generated world on an order's later parts).
            rng = random.Random(f"{self._seed}:{track.sales_order}:{track.steps_done}")
        track.part = part
        self._steps[name](track, at, rng)
        track.steps_done += 1
        track.last_step_at = at

    def unblock(self, track: OrderTrack, at: dt.datetime, rng: random.Random) -> None:
        """The credit desk or the delivery block releases the order."""
        order = self._store.sales_order(track.sales_order)
        credit = order.total_credit_check_status == "B"
        change = "SalesOrder.CreditReleased" if credit else "SalesOrder.DeliveryUnblocked"
        order.total_credit_check_status = "A"
        order.delivery_block_reason = ""
        order.total_block_status = ""
        self._store.touch(order, change, at, track.sales_order)

    def backorder(self, track: OrderTrack, at: dt.datetime, rng: random.Random) -> None:
        """The rest of a short shipment: made again and shipped later, or cut (item rejected)."""
        track.backorder_pending = False
        order = self._store.sales_order(track.sales_order)
        owed = open_items(track, order)
        if not owed:
            return
        if (track.rest or ("reproduce" if rng.random() < 0.7 else "cancel")) == "cancel":
            for item, _qty in owed:
                item.rejection_reason = REJECTION_REASON
            post_delivered_quantities(track, order)
            if track.state == DELIVERED:
                order.overall_sd_process_status = "C"
            self._store.touch(order, "SalesOrder.Changed", at, track.sales_order)
            return
        n = track.part
        part = track.add_part(n, Part(RELEASED))
        # On the factory calendar: the run starts in a shift, and its hours are working hours.
        start = whole_seconds(self._times.after("start", at, rng.uniform(8, 48), track.customer))
        for item, qty in owed:
            if item.sales_order_item not in track.made_to_order:
                continue  # from stock: picked with the rest
            hours = max(2.0, track.production_hours * qty / item.requested_quantity)
            end = PLANT_CALENDAR.add_working_time(start, hours_span(hours))
            po = self._production.create_production_order(
                track.sales_order, item, status="RELEASED", at=at, start=start, end=end, quantity=qty
            )
            self._store.touch(po, "ProductionOrder.Released", at, track.sales_order)
            self._production.create_components(rng, po, at, shortage_until=None)
            track.made_to_order[item.sales_order_item] = po.manufacturing_order
            part.orders.append(po.manufacturing_order)
        steps: list[Step] = []
        t = at
        if part.orders:
            t = max(self._store.production_order(k).scheduled_end_date for k in part.orders)
            steps = [Step("start", start, n), Step("confirm", t, n)]
        transit_hours = rng.uniform(24, 96)
        for name in ("inspect", "decide", *SHIPPING_STEPS) if part.orders else SHIPPING_STEPS:
            t = self._times.after(name, t, gap(name, rng, track.production_hours, transit_hours), track.customer)
            steps.append(Step(name, t, n))
        track.add_steps(steps)

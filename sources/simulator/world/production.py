"""Production: the MES, WMS and QMS side of an order's life.

Production orders and their component reservations are created here (for a new order,
a rework, or a backorder's rest), and the steps from a shortage's end to the usage
decision move them: release, start, partial and final confirmation, inspection, the
usage decision and rework.
"""

from __future__ import annotations

import datetime as dt
import math
import random

from ...records import (
    ComponentAvailability,
    InspectionLot,
    ProductionOrder,
    SalesOrderItem,
    UsageDecision,
)
from .clock import hours_span, whole_seconds
from .master_data import MasterData
from .numbers import NumberRanges
from .orders import (
    IN_PRODUCTION,
    PRODUCTION_COMPLETE,
    QUALITY_HOLD,
    QUALITY_REJECTED,
    QUALITY_RELEASED,
    RECEIVED,
    RELEASED,
    OrderTrack,
    StepAction,
)
from .store import RecordStore
from .working_time import PLANT_CALENDAR

# The steps that run on the order's work centre: a breakdown holds them.
PRODUCTION_STEPS = frozenset({"start", "partial", "confirm"})


class Production:
    """Production orders, component reservations and inspection lots of every order."""

    def __init__(self, store: RecordStore, numbers: NumberRanges, master: MasterData) -> None:
        self._store = store
        self._numbers = numbers
        self._master = master

    def steps(self) -> dict[str, StepAction]:
        """The lifecycle steps production takes, by name."""
        return {
            "clear_shortage": self.clear_shortage,
            "release": self.release,
            "start": self.start,
            "partial": self.partial,
            "confirm": self.confirm,
            "inspect": self.inspect,
            "decide": self.decide,
            "rework": self.rework,
        }

    def create_production_order(
        self,
        sales_order: str,
        item: SalesOrderItem,
        *,
        status: str,
        at: dt.datetime,
        start: dt.datetime,
        end: dt.datetime,
        quantity: float | None = None,
    ) -> ProductionOrder:
        """A new production order for ``quantity`` of a sales order item (default: all of it)."""
        work_center = self._master.product(item.material).work_center
        quantity = item.requested_quantity if quantity is None else quantity
        po = ProductionOrder(
            manufacturing_order=self._numbers.next("production_order"),
            material=item.material,
            sales_order=sales_order,
            sales_order_item=item.sales_order_item,
            total_quantity=quantity,
            work_center=work_center,
            scheduled_start_date=whole_seconds(start),
            scheduled_end_date=whole_seconds(end),
            status=status,
            planned_start_date=whole_seconds(start),
            planned_end_date=whole_seconds(end),
            planned_scrap_qty=float(math.floor(quantity * 0.02)),
            actual_release_date=at if status == "RELEASED" else None,
        )
        self._store.touch(po, "ProductionOrder.Created", at, sales_order)
        return po

    def create_components(
        self, rng: random.Random, po: ProductionOrder, at: dt.datetime, *, shortage_until: dt.datetime | None
    ) -> None:
        """The component reservations of a new production order, from its bill of material;
        with ``shortage_until``, some of them short until then."""
        for n, (material, unit, per_unit) in enumerate(self._master.product(po.material).bom, start=1):
            required = round(per_unit * po.total_quantity, 3)
            component = ComponentAvailability(
                reservation=f"{po.manufacturing_order}-{n:02d}",
                manufacturing_order=po.manufacturing_order,
                material=material,
                required_quantity=required,
                available_quantity=required,
                base_unit=unit,
            )
            if shortage_until is not None and rng.random() < 0.45:
                make_short(component, rng, shortage_until)
            self._store.reservations.setdefault(po.manufacturing_order, []).append(component.reservation)
            self._store.touch(component, "ComponentAvailability.Changed", at, po.sales_order)

    def clear_shortage(self, track: OrderTrack, at: dt.datetime, rng: random.Random) -> None:
        """The short components arrive: every reservation of the order is available in
        unrestricted stock."""
        for po in track.made_to_order.values():
            for c in self._store.components(po):
                if c.shortage_quantity > 0 or c.inventory_stock_type != "01":
                    c.available_quantity = c.required_quantity
                    c.shortage_quantity = 0.0
                    c.expected_receipt_date = None
                    c.inventory_stock_type = "01"
                    self._store.touch(c, "ComponentAvailability.Received", at, track.sales_order)
        track.state = RECEIVED

    def release(self, track: OrderTrack, at: dt.datetime, rng: random.Random) -> None:
        """Production orders of the part are released to the shop floor."""
        for po in self._current_orders(track):
            po.status = "RELEASED"
            po.actual_release_date = at
            self._store.touch(po, "ProductionOrder.Released", at, track.sales_order)
        track.state = RELEASED

    def start(self, track: OrderTrack, at: dt.datetime, rng: random.Random) -> None:
        """Production starts: each production order gets its batch."""
        for po in self._current_orders(track):
            po.status = "STARTED"
            po.actual_start_date = at
            po.batch = "B" + self._numbers.next("batch", width=7)
            self._store.touch(po, "ProductionOrder.Started", at, track.sales_order)
        track.state = IN_PRODUCTION

    def partial(self, track: OrderTrack, at: dt.datetime, rng: random.Random) -> None:
        """A partial confirmation: part of each production order's quantity is made."""
        for po in self._current_orders(track):
            po.status = "PARTIALLY_CONFIRMED"
            po.confirmed_yield_qty = float(math.floor(po.total_quantity * rng.uniform(0.3, 0.7)))
            self._store.touch(po, "ProductionOrder.PartiallyConfirmed", at, track.sales_order)
        track.state = IN_PRODUCTION

    def confirm(self, track: OrderTrack, at: dt.datetime, rng: random.Random) -> None:
        """Final confirmation: yield and scrap (a planned shortfall scraps more)."""
        for po in self._current_orders(track):
            scrap = 0.0
            if track.shortfall and track.part == 0 and po.total_quantity >= 5:
                scrap = float(max(1, round(po.total_quantity * rng.uniform(0.05, 0.2))))
            scrap = min(track.forced_scrap.pop(po.sales_order_item, scrap), po.total_quantity)
            po.status = "CONFIRMED"
            po.actual_end_date = at
            po.confirmed_scrap_qty = scrap
            po.confirmed_yield_qty = po.total_quantity - scrap
            self._store.touch(po, "ProductionOrder.Confirmed", at, track.sales_order)
        track.state = PRODUCTION_COMPLETE

    def inspect(self, track: OrderTrack, at: dt.datetime, rng: random.Random) -> None:
        """Goods receipt inspection: one inspection lot per batch, on quality hold."""
        track.lots = []
        for po in self._current_orders(track):
            lot = InspectionLot(
                inspection_lot=self._numbers.next("lot"),
                material=po.material,
                batch=po.batch or "",
                manufacturing_order=po.manufacturing_order,
                created_at=at,
                planned_end_date=at + hours_span(24),
            )
            track.lots.append(lot.inspection_lot)
            self._store.touch(lot, "InspectionLot.Created", at, track.sales_order)
        track.state = QUALITY_HOLD

    def decide(self, track: OrderTrack, at: dt.datetime, rng: random.Random) -> None:
        """The usage decision: a pending reject rejects the lots, else they are accepted and
        the yield is in stock."""
        reject = track.rejects_pending > 0
        if reject:
            track.rejects_pending -= 1
        for lot_key in track.lots:
            lot = self._store.inspection_lot(lot_key)
            lot.has_usage_decision = True
            lot.usage_decision = UsageDecision(
                code="R" if reject else "A",
                code_group="02" if reject else "01",
                valuation="REJECTED" if reject else "ACCEPTED",
                decided_at=at,
                quality_score=round(rng.uniform(35, 70) if reject else rng.uniform(85, 100), 1),
            )
            self._store.touch(lot, "InspectionLot.UsageDecisionMade", at, track.sales_order)
        if reject:
            track.state = QUALITY_REJECTED
            return
        # Accepted: goods receipt of the batch to unrestricted stock completes the order.
        for po in self._current_orders(track):
            po.status = "DELIVERED"
            item = po.sales_order_item
            track.produced[item] = track.produced.get(item, 0.0) + po.confirmed_yield_qty
            self._store.touch(po, "ProductionOrder.Completed", at, track.sales_order)
        track.state = QUALITY_RELEASED

    def rework(self, track: OrderTrack, at: dt.datetime, rng: random.Random) -> None:
        """A rejected batch is scrapped; a new production order remakes each item."""
        order = self._store.sales_order(track.sales_order)
        items = {it.sales_order_item: it for it in order.items}
        start = track.due_of("start") or at + hours_span(8)
        end = track.due_of("confirm") or start + hours_span(track.production_hours)
        part = track.parts[track.part]
        for n, po_key in enumerate(part.orders):
            old = self._store.production_order(po_key)
            old.status = "TECO"
            self._store.touch(old, "ProductionOrder.TechnicallyCompleted", at, track.sales_order)
            item_key = old.sales_order_item
            po = self.create_production_order(
                track.sales_order, items[item_key], status="RELEASED", at=at, start=start, end=end,
                quantity=old.total_quantity,
            )
            self._store.touch(po, "ProductionOrder.Released", at, track.sales_order)
            self.create_components(rng, po, at, shortage_until=None)
            track.made_to_order[item_key] = part.orders[n] = po.manufacturing_order
        track.lots = []
        track.state = RELEASED

    def _current_orders(self, track: OrderTrack) -> list[ProductionOrder]:
        """The production orders of the part the current step moves."""
        return self._store.production_orders(track.parts[track.part].orders)


def make_short(component: ComponentAvailability, rng: random.Random, receipt: dt.datetime) -> None:
    """Make a component short until ``receipt``: some or all of it missing, or blocked."""
    available = round(component.required_quantity * rng.uniform(0.0, 0.8), 3)
    component.available_quantity = available
    component.shortage_quantity = round(component.required_quantity - available, 3)
    component.expected_receipt_date = PLANT_CALENDAR.local_date(receipt)
    # Now and then the stock exists but is blocked, not missing.
    component.inventory_stock_type = "07" if rng.random() < 0.15 else "01"

"""Amendments: a plant's records taken back after the fact, each a real source change with
its event, and the order's steps after it planned again.

- a goods-issue reversal (WMS ``OutboundDelivery.GoodsIssueReversed``): a goods issue
  posted by mistake before the carrier picked the goods up is taken back; the ERP's
  delivered quantities and the production orders' status follow, the order is packed
  again and issues its goods again a few working hours later (on a new carrier label);
- a confirmation cancellation (MES ``ProductionOrder.ConfirmationCancelled``): the last
  confirmation of production is taken back; a final one sends the order back into
  production, which confirms again after the work the cancelled yield stood for;
- a quantity change (ERP ``SalesOrder.Changed``, MES ``ProductionOrder.Changed``): the
  customer orders more or less of an item made to order whose production is not yet
  confirmed; the production order's quantity follows, and for more, the MES reschedules
  its end by the extra work (its basic dates, the plan the promise was made on, stay), and
  the plant really takes that much longer;
- a date change (ERP ``SalesOrder.Changed``): the customer moves the requested delivery
  date of an order not yet shipped and the ERP confirms it. Later: the schedule lines'
  delivery, loading and goods-issue dates move with it and the plant holds the goods
  until then. Earlier: the plant cannot work faster, so the new promise may break (the
  order turns LATE at once, and DISPATCH_MISSED once its new ship day is over unshipped);
- an item cancelled (ERP ``SalesOrder.Changed``, MES ``ProductionOrder.TechnicallyCompleted``):
  the customer cancels one item of an order with others, before its production starts and
  before anything of it is picked; it is rejected with reason ``CANCELLED_BY_CUSTOMER``,
  its production order is closed without yield, and the rest of the order goes on;
- an amendment after shipment (ERP ``SalesOrder.Changed``): the customer orders more of an
  item after the goods left the plant; the ERP confirms the extra on a new schedule line
  two weeks out, the order is open again (partly delivered), and the plant makes the extra
  in a new production order and ships it in a new delivery.
"""

from __future__ import annotations

import collections
import datetime as dt
import operator

from ...records import SalesOrderScheduleLine
from .clock import PlantClock, hours_span, whole_seconds
from .orders import (
    GOODS_ISSUED,
    IN_PRODUCTION,
    MATERIAL_SHORTAGE,
    PACKED,
    PICKED,
    PRODUCTION_COMPLETE,
    RECEIVED,
    RELEASED,
    STATE_RANK,
    OrderTrack,
    Step,
    track_of,
)
from .planning import SHIPPING_STEPS
from .quantities import post_delivered_quantities
from .store import RecordStore
from .working_time import PLANT_CALENDAR, WorkingTime

CANCELLED_BY_CUSTOMER = "Z1"  # a customer-defined rejection reason, as plants add them


class Amendments:
    """Order changes and reversals: goods issues, production confirmations, quantities,
    dates and items."""

    def __init__(self, store: RecordStore, clock: PlantClock, times: WorkingTime, tracks: dict[str, OrderTrack]) -> None:
        self._store = store
        self._clock = clock
        self._times = times
        self._tracks = tracks

    def _now(self, track: OrderTrack) -> dt.datetime:
        now = whole_seconds(self._clock.now())
        return max(now, track.last_step_at) if track.last_step_at is not None else now

    def _live(self):
        """(sales order, track) of the orders not cancelled, in order."""
        return ((k, t) for k, t in self._tracks.items() if not t.cancelled)

    def cancellable_orders(self) -> list[str]:
        """Sales orders the customer can still cancel whole: nothing of them picked yet."""
        return [
            k for k, t in self._live()
            if not t.in_delivery and all(STATE_RANK[p.state] < STATE_RANK[PICKED] for p in t.parts.values())
        ]

    def cancel_order(self, sales_order: str) -> None:
        """The customer cancels the whole order before anything of it is picked: the ERP
        rejects every item (``CANCELLED_BY_CUSTOMER``) and completes the order, the MES
        technically completes its production not yet confirmed, and nothing more happens
        to it (its goods already made stay in stock)."""
        track = track_of(self._tracks, sales_order)
        if sales_order not in self.cancellable_orders():
            raise ValueError(f"order {sales_order} cannot be cancelled: it is cancelled already, or picking started")
        at = self._now(track)
        order = self._store.sales_order(sales_order)
        for item in order.items:
            item.rejection_reason = item.rejection_reason or CANCELLED_BY_CUSTOMER
        post_delivered_quantities(track, order)
        order.total_net_amount = 0.0
        order.overall_sd_process_status = "C"  # nothing left to process
        self._store.touch(order, "SalesOrder.Cancelled", at, sales_order)
        for part in track.parts.values():
            for po in self._store.production_orders(part.orders):
                if po.status in ("CREATED", "RELEASED", "STARTED", "PARTIALLY_CONFIRMED"):
                    po.status = "TECO"
                    self._store.touch(po, "ProductionOrder.TechnicallyCompleted", at, sales_order)
        track.schedule.clear()
        track.cancelled = True

    def reversible_goods_issues(self) -> list[str]:
        """Sales orders with a goods issue the carrier has not picked up yet, in order."""
        return [k for k, t in self._live() if any(p.state == GOODS_ISSUED for p in t.parts.values())]

    def reverse_goods_issue(self, sales_order: str, *, redo_hours: float = 4.0) -> None:
        """Take back the goods issue of the order's part that is goods-issued and not yet
        with the carrier; it is issued again ``redo_hours`` working hours later."""
        track = track_of(self._tracks, sales_order)
        n = next((n for n, p in sorted(track.parts.items()) if p.state == GOODS_ISSUED), None)
        if n is None:
            raise ValueError(
                f"order {sales_order} has no goods issue to reverse: it must be goods-issued and not yet picked up"
            )
        part = track.parts[n]
        at = self._now(track)
        delivery = self._store.delivery(part.delivery)
        delivery.overall_goods_movement_status = "A"
        delivery.actual_goods_movement_date = None
        self._store.touch(delivery, "OutboundDelivery.GoodsIssueReversed", at, sales_order)
        for line in delivery.items:
            key = line.reference_sd_document_item
            track.shipped[key] = max(0.0, track.shipped.get(key, 0.0) - line.actual_delivery_quantity)
        order = self._store.sales_order(sales_order)
        post_delivered_quantities(track, order)
        self._store.touch(order, "SalesOrder.Changed", at, sales_order)
        for po in self._store.production_orders(part.orders):
            if po.status == "TECO":  # back to what goods issue found: made and in stock
                po.status = "DELIVERED"
                self._store.touch(po, "ProductionOrder.Changed", at, sales_order)
        # The label stays with the carrier unused; the new goods issue prints a new one.
        part.shipment = None
        track.part = n
        track.state = PACKED
        redo = self._times.after("goods_issue", at, redo_hours, track.customer)
        self._replan(track, n, "goods_issue", redo)

    def cancellable_confirmations(self) -> list[str]:
        """Sales orders whose production has a confirmation that can still be taken back
        (partly confirmed, or confirmed and not yet inspected), in order."""
        out = []
        for key, track in self._live():
            for part in track.parts.values():
                if part.state not in (IN_PRODUCTION, PRODUCTION_COMPLETE):
                    continue
                pos = self._store.production_orders(part.orders)
                if any(po.status in ("PARTIALLY_CONFIRMED", "CONFIRMED") for po in pos):
                    out.append(key)
                    break
        return out

    def cancel_confirmation(self, sales_order: str) -> None:
        """Take back the last confirmation of the order's production: a partial one leaves
        the order started with nothing confirmed; a final one sends it back into production
        (partly confirmed), to confirm again after the work the cancelled yield stood for."""
        track = track_of(self._tracks, sales_order)
        at = self._now(track)
        for n, part in sorted(track.parts.items()):
            if part.state not in (IN_PRODUCTION, PRODUCTION_COMPLETE):
                continue
            pos = [po for po in self._store.production_orders(part.orders)
                   if po.status in ("PARTIALLY_CONFIRMED", "CONFIRMED")]
            if not pos:
                continue
            final = part.state == PRODUCTION_COMPLETE
            undone = 0.0
            for po in pos:
                if po.status == "CONFIRMED":
                    # The final confirmation goes; what was confirmed before it stays (half).
                    kept = float(po.total_quantity // 2)
                    undone = max(undone, (po.confirmed_yield_qty - kept) / po.total_quantity if po.total_quantity else 0)
                    po.status = "PARTIALLY_CONFIRMED"
                    po.confirmed_yield_qty = kept
                    po.confirmed_scrap_qty = 0.0
                    po.actual_end_date = None
                else:
                    po.status = "STARTED"
                    po.confirmed_yield_qty = 0.0
                self._store.touch(po, "ProductionOrder.ConfirmationCancelled", at, sales_order)
            if final:
                track.part = n
                track.state = IN_PRODUCTION
                hours = max(1.0, track.production_hours * undone)
                self._replan(track, n, "confirm", self._times.after("confirm", at, hours, track.customer))
            return
        raise ValueError(f"order {sales_order} has no production confirmation to cancel")

    def changeable_quantities(self) -> list[tuple[str, str]]:
        """(sales order, item) whose quantity can still change: made to order, production not
        yet confirmed, one delivery planned, in order."""
        out = []
        for key, track in self._live():
            if track.planned_parts != 1 or len(track.parts) != 1:
                continue
            if track.parts[0].state not in (RECEIVED, MATERIAL_SHORTAGE, RELEASED, IN_PRODUCTION):
                continue
            for item, po_key in sorted(track.made_to_order.items()):
                po = self._store.production_order(po_key)
                if po.status in ("CREATED", "RELEASED", "STARTED", "PARTIALLY_CONFIRMED"):
                    out.append((key, item))
        return out

    def change_quantity(self, sales_order: str, item: str, quantity: float) -> None:
        """The customer now orders ``quantity`` of ``item`` (see the module's docstring)."""
        track = track_of(self._tracks, sales_order)
        if (sales_order, item) not in self.changeable_quantities():
            raise ValueError(
                f"item {item!r} of {sales_order} cannot change quantity: it must be made to order, its production "
                "not yet confirmed, and the order planned to ship in one delivery"
            )
        po = self._store.production_order(track.made_to_order[item])
        if not quantity > 0 or quantity != quantity or quantity > 100 * po.total_quantity:
            raise ValueError("quantity must be a positive number (at most 100 times the current one)")
        if po.confirmed_yield_qty >= quantity:
            raise ValueError(f"quantity must be more than the {po.confirmed_yield_qty:g} already confirmed")
        order = self._store.sales_order(sales_order)
        line_item = next(i for i in order.items if i.sales_order_item == item)
        old = line_item.requested_quantity
        if quantity == old:
            return
        at = self._now(track)
        ratio = quantity / old
        line_item.requested_quantity = quantity
        line_item.confirmed_quantity = quantity
        line_item.net_amount = round(line_item.net_amount * ratio, 2)
        for line in line_item.schedule_lines:
            line.order_quantity = round(line.order_quantity * ratio, 3)
            line.confirmed_quantity = round(line.confirmed_quantity * ratio, 3)
            line.open_confirmed_quantity = max(line.confirmed_quantity - line.delivered_quantity, 0.0)
        order.total_net_amount = round(sum(i.net_amount for i in order.items), 2)
        self._store.touch(order, "SalesOrder.Changed", at, sales_order)
        extra = track.production_hours * (ratio - 1)
        po.total_quantity = quantity
        if ratio > 1:
            # The MES reschedules the end by the extra work; the basic dates stay the plan.
            po.scheduled_end_date = whole_seconds(PLANT_CALENDAR.add_working_time(po.scheduled_end_date, hours_span(extra)))
        self._store.touch(po, "ProductionOrder.Changed", at, sales_order)
        for c in self._store.components(po.manufacturing_order):
            c.required_quantity = round(c.required_quantity * ratio, 3)
            c.available_quantity = round(c.available_quantity * ratio, 3)
            self._store.touch(c, "ComponentAvailability.Changed", at, sales_order)
        if ratio > 1 and STATE_RANK[track.parts[0].state] <= STATE_RANK[IN_PRODUCTION]:
            # More to make: what follows production comes that much later (working time).
            pending = [s for s in track.schedule if s.part == 0 and s.name in ("partial", "confirm")]
            if pending:
                first = min(s.due for s in pending)
                delta = self._times.after("confirm", first, extra, track.customer) - first
                for step in track.schedule:
                    if step.part == 0 and step.due >= first:
                        step.due = whole_seconds(step.due + delta)
                track.schedule = collections.deque(sorted(track.schedule, key=operator.attrgetter("due")))
        track.production_hours *= ratio

    def changeable_dates(self) -> list[str]:
        """Sales orders whose delivery date can still change: nothing picked yet, one
        delivery planned, in order."""
        return [
            k for k, t in self._live()
            if t.planned_parts == 1 and len(t.parts) == 1 and STATE_RANK[t.parts[0].state] < STATE_RANK[PICKED]
        ]

    def change_date(self, sales_order: str, requested: dt.date) -> dt.date:
        """The customer asks for delivery on ``requested``; the ERP confirms the ship-to's
        next receiving day from it. Returns the new confirmed date (see the module doc)."""
        track = track_of(self._tracks, sales_order)
        if sales_order not in self.changeable_dates():
            raise ValueError(
                f"order {sales_order} cannot change its date: nothing of it may be picked yet, and it must ship "
                "in one delivery"
            )
        at = self._now(track)
        receiving = self._times.receiving_calendar(track.customer)
        if requested <= receiving.local_date(at):
            raise ValueError("the requested date must be after today")
        order = self._store.sales_order(sales_order)
        old = order.confirmed_delivery_date
        new = receiving.next_working_day(requested) if not receiving.is_working_day(requested) else requested
        if old is None or new == old:
            return new
        days = dt.timedelta(days=(new - old).days)
        order.requested_delivery_date = requested
        order.confirmed_delivery_date = new
        for item in order.items:
            item.confirmed_delivery_date = new
            for line in item.schedule_lines:
                line.requested_delivery_date = requested
                line.confirmed_delivery_date = new
                if days > dt.timedelta(0):
                    # Later: the plant loads and issues the goods that much later too.
                    if line.goods_issue_date is not None:
                        line.goods_issue_date = PLANT_CALENDAR.next_working_day(line.goods_issue_date + days)
                    if line.loading_date is not None:
                        line.loading_date = min(
                            PLANT_CALENDAR.next_working_day(line.loading_date + days),
                            line.goods_issue_date or line.loading_date + days,
                        )
        self._store.touch(order, "SalesOrder.Changed", at, sales_order)
        if days > dt.timedelta(0):
            # The goods wait in stock: the shipping steps move with the date, each in its working time.
            for step in track.schedule:
                if step.part == 0 and step.name in SHIPPING_STEPS:
                    step.due = whole_seconds(self._times.place(step.name, step.due + days, track.customer, forward=True))
            track.schedule = collections.deque(sorted(track.schedule, key=operator.attrgetter("due")))
        return new

    def cancellable_items(self) -> list[tuple[str, str]]:
        """(sales order, item) the customer can still cancel alone, in order."""
        out = []
        for key, track in self._live():
            if track.planned_parts != 1 or len(track.parts) != 1:
                continue
            order = self._store.sales_order(key)
            live = [i for i in order.items if not i.rejection_reason]
            if len(live) < 2:
                continue
            for item in live:
                k = item.sales_order_item
                if track.in_delivery.get(k, 0.0) > 0:
                    continue
                po_key = track.made_to_order.get(k)
                if po_key is not None and self._store.production_order(po_key).status not in ("CREATED", "RELEASED"):
                    continue
                out.append((key, k))
        return out

    def cancel_item(self, sales_order: str, item: str) -> None:
        """The customer cancels ``item`` (see the module's docstring)."""
        track = track_of(self._tracks, sales_order)
        if (sales_order, item) not in self.cancellable_items():
            raise ValueError(
                f"item {item!r} of {sales_order} cannot be cancelled alone: its production must not have started, "
                "nothing of it picked, and the order must keep another item"
            )
        at = self._now(track)
        order = self._store.sales_order(sales_order)
        line_item = next(i for i in order.items if i.sales_order_item == item)
        line_item.rejection_reason = CANCELLED_BY_CUSTOMER
        post_delivered_quantities(track, order)
        order.total_net_amount = round(sum(i.net_amount for i in order.items if not i.rejection_reason), 2)
        self._store.touch(order, "SalesOrder.Changed", at, sales_order)
        po_key = track.made_to_order.pop(item, None)
        if po_key is not None:
            po = self._store.production_order(po_key)
            po.status = "TECO"
            self._store.touch(po, "ProductionOrder.TechnicallyCompleted", at, sales_order)
            for part in track.parts.values():
                if po_key in part.orders:
                    part.orders.remove(po_key)

    def amendable_after_shipment(self) -> list[tuple[str, str]]:
        """(sales order, item made to order) the customer can still order more of after the
        goods left the plant: one delivery planned, all of it shipped, nothing owed."""
        out = []
        for key, track in self._live():
            if track.planned_parts != 1 or len(track.parts) != 1 or track.backorder_pending:
                continue
            if STATE_RANK[track.parts[0].state] < STATE_RANK[GOODS_ISSUED]:
                continue
            order = self._store.sales_order(key)
            for item in order.items:
                k = item.sales_order_item
                if item.rejection_reason or k not in track.made_to_order:
                    continue
                if track.shipped.get(k, 0.0) >= item.requested_quantity:
                    out.append((key, k))
        return out

    def amend_after_shipment(self, sales_order: str, item: str, extra: float) -> dt.date:
        """The customer orders ``extra`` more of ``item`` after shipment (see the module's
        docstring); returns the date the extra is confirmed for."""
        track = track_of(self._tracks, sales_order)
        if (sales_order, item) not in self.amendable_after_shipment():
            raise ValueError(
                f"item {item!r} of {sales_order} cannot be amended after shipment: all of the order must have left "
                "the plant in one delivery, nothing owed, and the item be made to order"
            )
        if not extra > 0 or extra != extra or extra > 1e6:
            raise ValueError("extra must be a positive quantity")
        at = self._now(track)
        order = self._store.sales_order(sales_order)
        line_item = next(i for i in order.items if i.sales_order_item == item)
        unit_price = line_item.net_amount / line_item.requested_quantity if line_item.requested_quantity else 0.0
        receiving = self._times.receiving_calendar(track.customer)
        confirmed = receiving.next_working_day(receiving.local_date(at) + dt.timedelta(days=14))
        issue = PLANT_CALENDAR.next_working_day(PLANT_CALENDAR.local_date(at) + dt.timedelta(days=10))
        line_item.requested_quantity += extra
        line_item.confirmed_quantity = (line_item.confirmed_quantity or 0.0) + extra
        line_item.net_amount = round(line_item.net_amount + unit_price * extra, 2)
        line_item.schedule_lines.append(
            SalesOrderScheduleLine(
                schedule_line=str(len(line_item.schedule_lines) + 1),
                requested_delivery_date=confirmed,
                order_quantity=extra,
                order_quantity_unit=line_item.requested_quantity_unit,
                confirmed_delivery_date=confirmed,
                confirmed_quantity=extra,
                open_confirmed_quantity=extra,
                loading_date=issue,
                goods_issue_date=issue,
            )
        )
        post_delivered_quantities(track, order)
        order.overall_sd_process_status = "B"  # open again: something is owed
        order.total_net_amount = round(sum(i.net_amount for i in order.items if not i.rejection_reason), 2)
        self._store.touch(order, "SalesOrder.Changed", at, sales_order)
        # The plant makes the extra again, as it makes a short shipment's rest.
        track.rest = "reproduce"
        track.backorder_pending = True
        n = max(track.parts) + 1
        track.add_steps([Step("backorder", self._times.after("backorder", at, 2.0, track.customer), n)])
        return confirmed

    def _replan(self, track: OrderTrack, n: int, name: str, due: dt.datetime) -> None:
        """Step ``name`` of part ``n`` again at ``due``, the part's pending steps after it."""
        pending = [s.due for s in track.schedule if s.part == n]
        if pending and min(pending) < due:
            track.shift(n, due - min(pending) + dt.timedelta(seconds=1))
        track.add_steps([Step(name, due, n)])

"""Quantities: what an order's schedule lines promise, what each delivery takes, what is
still owed after a short shipment, and the delivered and open quantities the ERP posts.
Pure functions over an order's track and its sales order.
"""

from __future__ import annotations

import datetime as dt
import math
import random

from ...calendars import FactoryCalendar
from ...records import SalesOrder, SalesOrderItem, SalesOrderScheduleLine
from .clock import whole_seconds
from .orders import OrderTrack
from .working_time import PLANT_CALENDAR

# SalesDocumentRjcnReason when the rest of a short shipment is cut ("delivery date too late").
REJECTION_REASON = "01"


def split_lines(rng: random.Random, items: list[SalesOrderItem]) -> dict[str, float]:
    """What a split order promises on later schedule lines: whole items, or part of one."""
    if len(items) >= 2 and rng.random() < 0.6:
        later = rng.sample(items[1:], rng.randint(1, len(items) - 1))
        return {i.sales_order_item: i.requested_quantity for i in later}
    splittable = [i for i in items if i.requested_quantity >= 2]
    if not splittable:
        return {}
    item = rng.choice(splittable)
    return {item.sales_order_item: float(max(1, math.floor(item.requested_quantity * rng.uniform(0.3, 0.6))))}


def add_schedule_lines(
    item: SalesOrderItem,
    later: float,
    requested: dt.date,
    confirmed: dt.date,
    offset: dt.timedelta,
    baseline: dict[str, dt.datetime],
    receiving: FactoryCalendar,
) -> None:
    """The item's schedule lines as confirmed: what ships on the first date, and ``later``
    on a second date, ``offset`` (whole days to a plant working day) after it. They keep
    the planning dates of confirmation: loading and goods-issue days are the plant's
    working days (its local dates), delivery dates working days of the ship-to."""
    issue_day = PLANT_CALENDAR.local_date(baseline["goods_issue"])
    load_day = PLANT_CALENDAR.local_date(baseline["pack"])
    lines: list[SalesOrderScheduleLine] = []
    for qty, shift in ((item.requested_quantity - later, dt.timedelta(0)), (later, offset)):
        if qty <= 0:
            continue
        issue = issue_day + shift
        lines.append(
            SalesOrderScheduleLine(
                schedule_line=str(len(lines) + 1),
                requested_delivery_date=receiving.next_working_day(requested + shift),
                order_quantity=qty,
                order_quantity_unit=item.requested_quantity_unit,
                confirmed_delivery_date=receiving.next_working_day(confirmed + shift),
                confirmed_quantity=qty,
                open_confirmed_quantity=qty,
                product_availability_date=whole_seconds(baseline["decide"]),
                loading_date=min(PLANT_CALENDAR.next_working_day(load_day + shift), issue),
                goods_issue_date=issue,
            )
        )
    item.schedule_lines = lines
    item.confirmed_delivery_date = max(line.confirmed_delivery_date or confirmed for line in lines)


def pick_quantities(track: OrderTrack, order: SalesOrder) -> list[tuple[SalesOrderItem, float]]:
    """What this part's delivery takes of each item: its planned lines (a backorder part:
    whatever is open), no more than production has released and not yet shipped."""
    planned = track.parts[track.part].quantities
    out = []
    for item in order.items:
        key = item.sales_order_item
        if item.rejection_reason:
            continue
        want = item.requested_quantity - track.in_delivery.get(key, 0.0)
        if planned is not None:
            want = min(want, planned.get(key, 0.0))
        if key in track.made_to_order:
            want = min(want, track.produced.get(key, 0.0) - track.in_delivery.get(key, 0.0))
        if want > 0:
            out.append((item, want))
    return out


def open_items(track: OrderTrack, order: SalesOrder) -> list[tuple[SalesOrderItem, float]]:
    """Items with quantity no delivery has taken yet (rejected items owe nothing)."""
    out = []
    for item in order.items:
        rest = item.requested_quantity - track.in_delivery.get(item.sales_order_item, 0.0)
        if rest > 0 and not item.rejection_reason:
            out.append((item, rest))
    return out


def post_delivered_quantities(track: OrderTrack, order: SalesOrder) -> None:
    """The ERP side of goods issue: delivered and open quantities per schedule line,
    delivery status per item (A / B / C, a rejected item counts as complete) and overall."""
    for item in order.items:
        shipped = track.shipped.get(item.sales_order_item, 0.0)
        rest = shipped
        for line in item.schedule_lines:
            line.delivered_quantity = min(line.order_quantity, rest)
            rest -= line.delivered_quantity
            open_qty = max(line.confirmed_quantity - line.delivered_quantity, 0.0)
            line.open_confirmed_quantity = 0.0 if item.rejection_reason else open_qty
        if item.rejection_reason or shipped >= item.requested_quantity:
            item.delivery_status = "C"
        else:
            item.delivery_status = "B" if shipped > 0 else "A"
    statuses = {item.delivery_status for item in order.items}
    order.overall_delivery_status = "C" if statuses == {"C"} else "A" if statuses == {"A"} else "B"

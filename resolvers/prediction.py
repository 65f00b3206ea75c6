"""Delivery prediction: when will the order arrive, and why.

A deterministic model over the current source records (all times UTC):

1. Delivered: the carrier's delivery time.
2. Goods left the plant and the carrier gives an ETA: the ETA; a failed delivery attempt or
   a carrier exception adds ``failed_attempt_delay_days``.
3. Otherwise estimate goods issue, then add ``transit_days`` calendar days:
   - Production end, per production order: running orders end at max(scheduled end,
     now + duration × (1 − confirmed yield / total quantity)); unstarted orders start at
     max(scheduled start, now, receipt day of short components) and run their scheduled
     duration; a confirmed order short of its yield (total − planned scrap) needs the
     shortfall fraction × duration more. A DOWN work centre (up again at expected_up_at, else
     after ``default_downtime_hours``) pushes a running order's end by the downtime and an
     unstarted order's start to when the work centre is back.
   - Quality release, per production order: accepted lot → its usage decision; lot on hold →
     max(now, lot created + ``quality_lead_hours``); no lot yet → production end +
     ``quality_lead_hours``; rejected lot → rework: one more scheduled duration +
     ``quality_lead_hours``.
   - Goods issue = latest quality release (now for stock orders) + ``picking_hours``; the
     later schedule lines of a split order (planned after its first shipping day) ship not
     before their own planned goods-issue day.
   Quantities: a short production order's missing quantity is made again (the shortfall
   above) unless a later production order of the same item already makes it (then that
   order's run counts) or the item was cut (rejected). After a short shipment the order
   arrives when both the rest and the goods already on their way (carrier ETA) have.
Delivery risk compares the predicted date with the promise (confirmed, else requested
delivery date): LATE after it, AT_RISK within ``at_risk_slack_working_days`` working days
(Mon–Fri), else ON_TRACK. Each prediction lists its drivers, e.g. ``work_center_down:WC-20``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from resolvers.enums import DeliveryRisk
from resolvers.view import (
    DeliveryLeg,
    OrderView,
    component_blocked,
    component_short,
    day_start,
    lot_decided,
    lot_rejected,
    production_completed,
    production_started,
    scheduled_duration,
    shipment_eta,
    work_center_down,
)
from sources.records import ProductionOrder

_DELAYING_TAGS = {"AttemptFail": "delivery_attempt_failed", "Exception": "carrier_exception"}


@dataclass(frozen=True, slots=True)
class PredictionParams:
    """Lead times and thresholds of the prediction model."""

    quality_lead_hours: float = 24
    picking_hours: float = 16
    transit_days: int = 2  # calendar days from goods issue to delivery
    default_downtime_hours: float = 8  # when a DOWN work centre gives no expected up time
    failed_attempt_delay_days: int = 1
    at_risk_slack_working_days: int = 1


@dataclass(frozen=True, slots=True)
class Prediction:
    """Predicted delivery of one order, the reasons behind it and per-stage expectations.

    The per-stage datetimes are the model's expected times (actuals where the stage is
    already done); ``None`` where the stage does not apply or cannot be estimated.
    """

    predicted_delivery_date: dt.date
    ready_to_ship_at: dt.datetime | None  # expected (or actual) goods issue
    drivers: tuple[str, ...] = ()
    materials_available: dt.datetime | None = None
    production_start: dt.datetime | None = None
    production_end: dt.datetime | None = None
    quality_release: dt.datetime | None = None
    goods_issue: dt.datetime | None = None
    delivery: dt.datetime | None = None


def working_days_between(a: dt.date, b: dt.date) -> int:
    """Working days (Mon–Fri) after ``a`` up to and including ``b``; negative if b < a.

    Friday → Monday is 1, Monday → Monday is 0, Monday → Friday is 4.
    """
    if b < a:
        return -working_days_between(b, a)
    weeks, rest = divmod((b - a).days, 7)
    start = a.weekday()
    return weeks * 5 + sum(1 for i in range(1, rest + 1) if (start + i) % 7 < 5)


def predict(
    view: OrderView, now: dt.datetime, params: PredictionParams = PredictionParams()
) -> Prediction:
    """Predict when the order will be delivered, following the module's model."""
    if view.is_delivered:
        delivered_at = view.delivered_at or now
        shipped_at = view.goods_issued_at
        return Prediction(
            predicted_delivery_date=delivered_at.date(),
            ready_to_ship_at=shipped_at,
            drivers=("delivered",),
            goods_issue=shipped_at,
            delivery=delivered_at,
        )

    legs = view.legs
    transit = dt.timedelta(days=params.transit_days)
    if legs and all(leg.goods_issued for leg in legs) and view.all_items_in_deliveries:
        shipped_at = view.goods_issued_at
        carrier = _carrier_prediction(legs, shipped_at, now, params)
        if carrier is not None:
            return carrier
        # Shipped but the carrier gives no ETA: standard transit from goods issue.
        goods_issue = shipped_at or now
        delivery = max(goods_issue + transit, now)
        return Prediction(
            delivery.date(), goods_issue, (), goods_issue=goods_issue, delivery=delivery
        )

    drivers: list[str] = []
    starts: list[dt.datetime] = []
    receipts: list[dt.datetime] = []
    ends: list[dt.datetime] = []
    releases: list[dt.datetime] = []
    for order in view.active_production_orders:
        start, end, receipt = _production_run(view, order, now, params, drivers)
        if start is not None:
            starts.append(start)
        if receipt is not None:
            receipts.append(receipt)
        ends.append(end)
        releases.append(_quality_release(view, order, end, now, params, drivers))

    goods_issue = max([now, *releases]) + dt.timedelta(hours=params.picking_hours)
    line_day = _open_lines_ship_day(view)
    if line_day is not None:
        goods_issue = max(goods_issue, day_start(line_day))
    delivery = goods_issue + transit
    on_the_way = [leg for leg in legs if leg.goods_issued]
    if on_the_way:
        # Part of the order already left: the whole arrives when the goods on their way do too.
        drivers += [f"backorder:{q.item}" for q in view.item_quantities if q.open > 0 and q.shipped > 0]
        carrier = _carrier_prediction(on_the_way, view.goods_issued_at, now, params)
        if carrier is not None and carrier.delivery is not None and carrier.delivery > delivery:
            delivery = carrier.delivery
            drivers += list(carrier.drivers)
    return Prediction(
        predicted_delivery_date=delivery.date(),
        ready_to_ship_at=goods_issue,
        drivers=tuple(dict.fromkeys(drivers)),  # de-duplicated, first-seen order
        materials_available=max([now, *receipts]) if receipts else None,
        production_start=max(starts, default=None),
        production_end=max(ends, default=None),
        quality_release=max(releases, default=None),
        goods_issue=goods_issue,
        delivery=delivery,
    )


def delivery_risk(
    view: OrderView,
    prediction: Prediction,
    now: dt.datetime,
    params: PredictionParams = PredictionParams(),
) -> DeliveryRisk:
    """Compare the prediction with the promise: DELIVERED, LATE, AT_RISK or ON_TRACK."""
    if view.is_delivered:
        return DeliveryRisk.DELIVERED
    promised = view.promised_delivery_date
    # An undelivered order past its promise is late whatever a stale prediction says.
    if prediction.predicted_delivery_date > promised or now.date() > promised:
        return DeliveryRisk.LATE
    slack = working_days_between(prediction.predicted_delivery_date, promised)
    if slack <= params.at_risk_slack_working_days:
        return DeliveryRisk.AT_RISK
    return DeliveryRisk.ON_TRACK


# --- model steps ------------------------------------------------------------------------


def _carrier_prediction(
    legs: list[DeliveryLeg],
    shipped_at: dt.datetime | None,
    now: dt.datetime,
    params: PredictionParams,
) -> Prediction | None:
    """The carrier's ETA for shipped legs; None unless every open leg has one."""
    drivers = ["carrier_eta"]
    arrivals: list[dt.datetime] = []
    for leg in legs:
        if leg.delivered:
            continue
        eta = shipment_eta(leg.shipment) if leg.shipment is not None else None
        if eta is None:
            return None
        assert leg.shipment is not None
        arrival = max(eta, now)  # an ETA in the past is stale: not before now
        reason = _DELAYING_TAGS.get(leg.shipment.tag)
        if reason is not None:
            # The carrier's ETA does not yet account for the next attempt / recovery.
            arrival += dt.timedelta(days=params.failed_attempt_delay_days)
            drivers.append(f"{reason}:{leg.shipment.tracking_number}")
        arrivals.append(arrival)
    if not arrivals:
        return None
    delivery = max(arrivals)
    return Prediction(
        predicted_delivery_date=delivery.date(),
        ready_to_ship_at=shipped_at,
        drivers=tuple(dict.fromkeys(drivers)),
        goods_issue=shipped_at,
        delivery=delivery,
    )


def _production_run(
    view: OrderView,
    order: ProductionOrder,
    now: dt.datetime,
    params: PredictionParams,
    drivers: list[str],
) -> tuple[dt.datetime | None, dt.datetime, dt.datetime | None]:
    """Expected (start if not started, end, receipt of short components) of one order."""
    duration = scheduled_duration(order)
    if production_completed(order):
        end = order.actual_end_date or order.scheduled_end_date
        target = order.total_quantity - order.planned_scrap_qty
        if order.total_quantity > 0 and order.confirmed_yield_qty < target and not rest_taken_care_of(view, order):
            # The missing quantity has to be produced again, starting now at the earliest.
            shortfall = (target - order.confirmed_yield_qty) / order.total_quantity
            end = max(end, now) + duration * shortfall
            drivers.append(f"yield_shortfall:{order.manufacturing_order}")
        return None, end, None

    work_center = view.work_center_for(order)
    up_at: dt.datetime | None = None
    if work_center is not None and work_center_down(work_center, now):
        expected = work_center.expected_up_at
        # An expected-up time already passed while still DOWN is as good as unknown.
        up_at = (
            expected
            if expected and expected > now
            else now + dt.timedelta(hours=params.default_downtime_hours)
        )
    down_driver = f"work_center_down:{order.work_center}"

    if production_started(order):
        done = order.confirmed_yield_qty / order.total_quantity if order.total_quantity > 0 else 0.0
        remaining = duration * (1 - min(max(done, 0.0), 1.0))
        end = max(order.scheduled_end_date, now + remaining)
        if up_at is not None:
            end += up_at - now  # the running order stands still for the whole downtime
            drivers.append(down_driver)
        return None, end, None

    start = max(order.scheduled_start_date, now)
    receipt: dt.datetime | None = None
    for component in view.components_for(order):
        if not component_short(component):
            continue
        kind = "stock_blocked" if component_blocked(component) else "material_shortage"
        drivers.append(f"{kind}:{component.material}")
        if component.expected_receipt_date is not None:
            # Goods received during a day can be staged from that day's start.
            at = day_start(component.expected_receipt_date)
            receipt = at if receipt is None else max(receipt, at)
    if receipt is not None:
        start = max(start, receipt)
    if up_at is not None and up_at > start:
        # Unstarted work waits for the machine only if it would have started before it is back.
        start = up_at
        drivers.append(down_driver)
    return start, start + duration, receipt


def rest_taken_care_of(view: OrderView, order: ProductionOrder) -> bool:
    """True when what a short production order did not make needs no new plan: a later
    production order of the same item makes it, or the item was cut (rejected)."""
    item = next((i for i in view.sales_order.items if i.sales_order_item == order.sales_order_item), None)
    if item is not None and item.rejection_reason:
        return True
    rank = (len(order.manufacturing_order), order.manufacturing_order)
    scrapped = view.scrapped_production_orders
    return any(
        other.sales_order_item == order.sales_order_item
        and (len(other.manufacturing_order), other.manufacturing_order) > rank
        and other.manufacturing_order not in scrapped
        for other in view.production_orders
    )


def _open_lines_ship_day(view: OrderView) -> dt.date | None:
    """The latest planned goods-issue day of the later schedule lines (after the order's
    first shipping day: a split) whose quantity no delivery takes yet. Lines fill in order,
    so an item's open quantity sits on its last lines. The first day itself does not hold
    an order back: a plant ahead of plan ships early."""
    items = view.sales_order.items
    first = min((ln.goods_issue_date for i in items for ln in i.schedule_lines if ln.goods_issue_date), default=None)
    days = []
    open_items = {q.item: q.uncovered for q in view.item_quantities if q.uncovered > 0}
    for item in items:
        rest = open_items.get(item.sales_order_item, 0.0)
        for line in reversed(item.schedule_lines):
            if rest <= 0:
                break
            if line.goods_issue_date is not None and first is not None and line.goods_issue_date > first:
                days.append(line.goods_issue_date)
            rest -= line.order_quantity
    return max(days, default=None)


def _quality_release(
    view: OrderView,
    order: ProductionOrder,
    production_end: dt.datetime,
    now: dt.datetime,
    params: PredictionParams,
    drivers: list[str],
) -> dt.datetime:
    """Expected (or actual) quality release of one production order's output."""
    lead = dt.timedelta(hours=params.quality_lead_hours)
    lot = view.latest_lot(order.manufacturing_order)
    if lot is None:
        return max(production_end + lead, now)
    if not lot_decided(lot):
        drivers.append(f"quality_hold:{lot.inspection_lot}")
        return max(now, lot.created_at + lead, production_end)
    if lot_rejected(lot):
        drivers.append(f"quality_rejected:{lot.inspection_lot}")
        return max(production_end, now) + scheduled_duration(order) + lead
    decided_at = lot.usage_decision.decided_at if lot.usage_decision is not None else None
    return max(decided_at or lot.created_at, production_end)

"""Delivery prediction: when will the order arrive, and why.

A deterministic model over the current source records. Times are instants; lead times of
the plant (production, quality, picking) count working time on the plant's factory
calendar (``PredictionParams.plant``: working days, shifts, public holidays), and transit,
slack and days late count working days on the ship-to's delivery calendar
(``PredictionParams.ship_to``: the delivery calendar at the customer's country, region and
time zone). The predicted delivery date is the ship-to's local date, as is the promise.

1. Delivered: the carrier's delivery time.
2. Goods left the plant and the carrier gives an ETA: the ETA, as the carrier revised it. Only
   a failed delivery attempt or a carrier exception that the carrier gave no new ETA after
   waits ``failed_attempt_delay_days`` working days of the ship-to from the failure. An ETA
   (or padded date) that has passed without delivery is overdue: the prediction is the next
   receiving time from now, never a time in the past.
3. Otherwise estimate goods issue, then add ``transit_days`` working days of the ship-to:
   - Production end, per production order, in working time of the plant: running orders end
     at max(scheduled end, now + work × (1 − confirmed yield / total quantity)); unstarted
     orders start at max(scheduled start, now, receipt day of short components) and run
     their scheduled work; a confirmed order short of its yield (total − planned scrap)
     needs the shortfall fraction × work more. A DOWN work centre (up again at
     expected_up_at, else after ``default_downtime_hours``) pushes a running order's end by
     the working time it is down and an unstarted order's start to when it is back.
   - Quality release, per production order: accepted lot → its usage decision; lot on hold →
     max(now, lot created + ``quality_lead_hours``); no lot yet → production end +
     ``quality_lead_hours``; rejected lot → rework: one more scheduled run +
     ``quality_lead_hours``.
   - Goods issue = latest quality release (now for stock orders) + ``picking_hours`` of
     the plant's working time; the later schedule lines of a split order (planned after its
     first shipping day) ship not before their own planned goods-issue day (a plant date:
     its first working time).
   Quantities: a short production order's missing quantity is made again (the shortfall
   above) unless a later production order of the same item already makes it (then that
   order's run counts) or the item was cut (rejected). After a short shipment the order
   arrives when both the rest and the goods already on their way have: the later of the
   rest's estimate and the carrier's ETA of what left (step 2's rules).
4. A credit or delivery block holds the order until it is released (``Prediction.held_by``):
   the dates are the earliest possible, if it were released now, and not a prediction.
   A block holds what has not left the plant, so it holds the rest of a short or split
   shipment too.
Delivery risk compares the predicted date with the promise (confirmed, else requested
delivery date): LATE after it (or once the promised day is over), AT_RISK within
``at_risk_slack_working_days`` working days or while held, else ON_TRACK. Each prediction
lists its drivers, e.g. ``work_center_down:WC-20``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

from resolvers.enums import DeliveryRisk
from resolvers.view import (
    DeliveryLeg,
    OrderView,
    component_blocked,
    component_short,
    lot_decided,
    lot_rejected,
    open_lines_ship_day,
    production_completed,
    production_started,
    scheduled_duration,
    shipment_due_by,
    shipment_eta,
    work_center_down,
)
from sources.calendars import ROUND_THE_CLOCK, FactoryCalendar
from sources.records import Customer, ProductionOrder

_DELAYING_TAGS = {"AttemptFail": "delivery_attempt_failed", "Exception": "carrier_exception"}


@dataclass(frozen=True, slots=True)
class PredictionParams:
    """Lead times, thresholds and calendars of the prediction model.

    ``plant`` is the plant's factory calendar; ``delivery`` the receiving days and hours
    assumed at a ship-to, placed at each customer's country, region and zone by
    ``ship_to``. The defaults never stop (round the clock, UTC): the gateway passes the
    configured calendars (``[calendar]``).
    """

    quality_lead_hours: float = 24  # working hours of the plant
    picking_hours: float = 16  # working hours of the plant
    transit_days: int = 2  # working days of the ship-to from goods issue to delivery
    default_downtime_hours: float = 8  # when a DOWN work centre gives no expected up time
    failed_attempt_delay_days: int = 1  # working days of the ship-to, when the carrier gives no new ETA
    at_risk_slack_working_days: int = 1
    plant: FactoryCalendar = ROUND_THE_CLOCK
    delivery: FactoryCalendar = ROUND_THE_CLOCK

    def ship_to(self, customer: Customer | None) -> FactoryCalendar:
        """The delivery calendar of a ship-to (the delivery calendar where it is)."""
        if customer is None:
            return self.delivery
        return self.delivery.for_place(customer.country, customer.region, customer.time_zone)


@dataclass(frozen=True, slots=True)
class Prediction:
    """Predicted delivery of one order, the reasons behind it and per-stage expectations.

    The per-stage datetimes are the model's expected times (actuals where the stage is
    already done); ``None`` where the stage does not apply or cannot be estimated.
    """

    predicted_delivery_date: dt.date  # the ship-to's local date
    ready_to_ship_at: dt.datetime | None  # expected (or actual) goods issue
    drivers: tuple[str, ...] = ()
    # Blocks holding the order until release ("credit_block", "delivery_block"): the dates
    # are then the earliest possible, not a prediction; "cancelled": nothing to predict.
    held_by: tuple[str, ...] = ()
    materials_available: dt.datetime | None = None
    production_start: dt.datetime | None = None
    production_end: dt.datetime | None = None
    quality_release: dt.datetime | None = None
    goods_issue: dt.datetime | None = None
    delivery: dt.datetime | None = None


def working_days_between(a: dt.date, b: dt.date) -> int:
    """Working days (Mon–Fri, no holidays) after ``a`` up to and including ``b``; negative
    if b < a. The model itself counts on calendars (``FactoryCalendar.working_days_between``).

    Friday → Monday is 1, Monday → Monday is 0, Monday → Friday is 4.
    """
    if b < a:
        return -working_days_between(b, a)
    weeks, rest = divmod((b - a).days, 7)
    start = a.weekday()
    return weeks * 5 + sum(1 for i in range(1, rest + 1) if (start + i) % 7 < 5)


def hold_reasons(view: OrderView) -> tuple[str, ...]:
    """The ERP blocks that hold the order until release: ``credit_block`` (credit check
    status B) and ``delivery_block`` (a delivery block reason); none once goods left."""
    so = view.sales_order
    reasons = []
    if so.total_credit_check_status == "B":
        reasons.append("credit_block")
    if so.delivery_block_reason:
        reasons.append("delivery_block")
    if reasons and _shipped(view):
        return ()
    return tuple(reasons)


def _shipped(view: OrderView) -> bool:
    legs = view.legs
    return bool(legs) and all(leg.goods_issued for leg in legs) and view.all_items_in_deliveries


def predict(
    view: OrderView, now: dt.datetime, params: PredictionParams = PredictionParams()
) -> Prediction:
    """Predict when the order will be delivered, following the module's model (kept with
    the view for the same time and parameters: the exception rules, the order index and
    the notices each ask for it in one evaluation)."""
    memo = view._memo.get("prediction")
    if memo is not None and memo[0] == now and memo[1] is params:
        return memo[2]
    prediction = _predict(view, now, params)
    view._memo["prediction"] = (now, params, prediction)
    return prediction


def _predict(view: OrderView, now: dt.datetime, params: PredictionParams) -> Prediction:
    ship_to = params.ship_to(view.customer)
    if view.is_cancelled:
        # Nothing will be delivered: no date to predict (the API shows none).
        return Prediction(view.promised_delivery_date, None, ("cancelled",), held_by=("cancelled",))
    if view.is_delivered:
        delivered_at = view.delivered_at or now
        shipped_at = view.goods_issued_at
        return Prediction(
            predicted_delivery_date=ship_to.local_date(delivered_at),
            ready_to_ship_at=shipped_at,
            drivers=("delivered",),
            goods_issue=shipped_at,
            delivery=delivered_at,
        )

    legs = view.legs
    if _shipped(view):
        shipped_at = view.goods_issued_at
        carrier = _carrier_prediction(legs, shipped_at, now, params, ship_to)
        if carrier is not None:
            return carrier
        # Shipped but the carrier gives no ETA: standard transit from goods issue.
        goods_issue = shipped_at or now
        delivery = _transit(goods_issue, params, ship_to)
        drivers: tuple[str, ...] = ()
        if delivery < now:
            delivery = ship_to.next_working_time(now)
            drivers = ("shipment_overdue",)
        return Prediction(
            ship_to.local_date(delivery), goods_issue, drivers, goods_issue=goods_issue, delivery=delivery
        )

    plant = params.plant
    drivers_: list[str] = []
    starts: list[dt.datetime] = []
    receipts: list[dt.datetime] = []
    ends: list[dt.datetime] = []
    releases: list[dt.datetime] = []
    for order in view.active_production_orders:
        start, end, receipt, release, drivers = _order_run(view, order, now, params)
        drivers_ += drivers
        if start is not None:
            starts.append(start)
        if receipt is not None:
            receipts.append(receipt)
        ends.append(end)
        releases.append(release)

    held = hold_reasons(view)
    drivers_ += held
    goods_issue = plant.add_working_time(
        max([now, *releases]), dt.timedelta(hours=params.picking_hours)
    )
    line_day = open_lines_ship_day(view)
    if line_day is not None:
        # A split's later schedule line: picked and issued from its own day's first shift.
        goods_issue = max(goods_issue, plant.next_working_time(plant.day_start(line_day)))
    delivery = _transit(goods_issue, params, ship_to)
    on_the_way = [leg for leg in legs if leg.goods_issued]
    if on_the_way:
        # Part of the order already left: the whole arrives when the goods on their way do too.
        drivers_ += [f"backorder:{q.item}" for q in view.item_quantities if q.open > 0 and q.shipped > 0]
        carrier = _carrier_prediction(on_the_way, view.goods_issued_at, now, params, ship_to)
        if carrier is not None and carrier.delivery is not None and carrier.delivery > delivery:
            delivery = carrier.delivery
            drivers_ += list(carrier.drivers)
    return Prediction(
        predicted_delivery_date=ship_to.local_date(delivery),
        ready_to_ship_at=goods_issue,
        drivers=tuple(dict.fromkeys(drivers_)),  # de-duplicated, first-seen order
        held_by=held,
        materials_available=max([now, *receipts]) if receipts else None,
        production_start=max(starts, default=None),
        production_end=max(ends, default=None),
        quality_release=max(releases, default=None),
        goods_issue=goods_issue,
        delivery=delivery,
    )


def production_end_alone(
    view: OrderView, order: ProductionOrder, now: dt.datetime, params: PredictionParams
) -> dt.datetime | None:
    """``predict(...).production_end`` of ``view`` with ``order`` its only production order
    and no deliveries or shipments: the expected end of that order alone (PRODUCTION_DELAY's
    question), without the rest of such a prediction (picking, schedule lines, transit and
    the ship-to's calendar, which the rule computed and dropped for every open production
    order). Such a view is never delivered or shipped (it has no delivery legs); a whole
    order cancelled predicts no end. ``tests/test_production_end.py`` holds it to the full
    prediction's answer."""
    if view.production_orders == [order] and not view.deliveries and not view.shipments:
        return predict(view, now, params).production_end  # the view's own, already at hand
    alone = dataclasses.replace(view, production_orders=[order], deliveries=[], shipments=[])
    if alone.is_cancelled:
        return None
    ends = [_production_run(alone, o, now, params, [])[1] for o in alone.active_production_orders]
    return max(ends, default=None)


def delivery_risk(
    view: OrderView,
    prediction: Prediction,
    now: dt.datetime,
    params: PredictionParams = PredictionParams(),
) -> DeliveryRisk:
    """Compare the prediction with the promise: DELIVERED, LATE, AT_RISK or ON_TRACK.

    Days are the ship-to's: the promise is over at the end of its day there, and slack
    counts the ship-to's working days. A held order is never ON_TRACK.
    """
    if view.is_delivered:
        return DeliveryRisk.DELIVERED
    if view.is_cancelled:
        return DeliveryRisk.CANCELLED
    ship_to = params.ship_to(view.customer)
    promised = view.promised_delivery_date
    # An undelivered order past its promise is late whatever a stale prediction says.
    if prediction.predicted_delivery_date > promised or ship_to.local_date(now) > promised:
        return DeliveryRisk.LATE
    if prediction.held_by:
        return DeliveryRisk.AT_RISK
    slack = ship_to.working_days_between(prediction.predicted_delivery_date, promised)
    if slack <= params.at_risk_slack_working_days:
        return DeliveryRisk.AT_RISK
    return DeliveryRisk.ON_TRACK


# --- model steps ------------------------------------------------------------------------


def _transit(
    goods_issue: dt.datetime, params: PredictionParams, ship_to: FactoryCalendar
) -> dt.datetime:
    """Arrival after ``transit_days`` working days of the ship-to, within its receiving hours."""
    day = ship_to.add_working_days(ship_to.local_date(goods_issue), params.transit_days)
    return _on_day(ship_to, day, goods_issue)


def _on_day(calendar: FactoryCalendar, day: dt.date, like: dt.datetime) -> dt.datetime:
    """``like``'s local time of day on ``day``, within the calendar's hours of that day."""
    local = like.astimezone(calendar.zone)
    at = dt.datetime.combine(day, local.time(), tzinfo=calendar.zone).astimezone(dt.UTC)
    return calendar.within_working_hours(day, at)


def _failure_at(shipment) -> dt.datetime | None:
    """When the carrier last reported a failed attempt or an exception."""
    times = [e.occurred_at for e in shipment.events if e.tag in _DELAYING_TAGS]
    return max(times) if times else shipment.last_change_date_time


def _carrier_prediction(
    legs: list[DeliveryLeg],
    shipped_at: dt.datetime | None,
    now: dt.datetime,
    params: PredictionParams,
    ship_to: FactoryCalendar,
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
        arrival = eta
        reason = _DELAYING_TAGS.get(leg.shipment.tag)
        if reason is not None:
            drivers.append(f"{reason}:{leg.shipment.tracking_number}")
            failed = _failure_at(leg.shipment)
            if failed is None or eta <= failed:
                # The ETA predates the failure: the carrier gave no new one, so the next
                # attempt is a working day of the ship-to later.
                day = ship_to.add_working_days(
                    ship_to.local_date(failed or now), params.failed_attempt_delay_days
                )
                arrival = max(arrival, _on_day(ship_to, day, eta))
        if arrival < now:
            # The ETA passed without delivery: not before now, within receiving hours.
            arrival = ship_to.next_working_time(now)
            due = shipment_due_by(leg.shipment)
            if due is not None and due < now:
                drivers.append(f"shipment_overdue:{leg.shipment.tracking_number}")
        arrivals.append(arrival)
    if not arrivals:
        return None
    delivery = max(arrivals)
    return Prediction(
        predicted_delivery_date=ship_to.local_date(delivery),
        ready_to_ship_at=shipped_at,
        drivers=tuple(dict.fromkeys(drivers)),
        goods_issue=shipped_at,
        delivery=delivery,
    )


def scheduled_work(order: ProductionOrder, plant: FactoryCalendar) -> dt.timedelta:
    """The production order's scheduled run in working time of the plant.

    A schedule that lies wholly outside working time (a source not planning on the
    calendar) counts its elapsed duration instead.
    """
    work = plant.working_time_between(order.scheduled_start_date, order.scheduled_end_date)
    return work if work > dt.timedelta(0) else scheduled_duration(order)


def _order_run(
    view: OrderView, order: ProductionOrder, now: dt.datetime, params: PredictionParams
) -> tuple[dt.datetime | None, dt.datetime, dt.datetime | None, dt.datetime, tuple[str, ...]]:
    """One production order's run (start if not started, end, receipt of short
    components), its quality release and their drivers. Kept with the view per production
    order and the record of its work centre (``runs``), so a rescheduled copy of the view
    (``OrderView.rescheduled``: the what-if) reuses the runs of the orders it did not move."""
    runs = view._memo.setdefault("runs", {})
    work_center = view.work_center_for(order)
    kept = runs.get(order.manufacturing_order)
    if kept is not None and kept[0] is order and kept[1] is work_center and kept[2] == now and kept[3] is params:
        return kept[4]
    drivers: list[str] = []
    start, end, receipt = _production_run(view, order, now, params, drivers)
    release = _quality_release(view, order, end, now, params, drivers)
    run = (start, end, receipt, release, tuple(drivers))
    runs[order.manufacturing_order] = (order, work_center, now, params, run)
    return run


def _production_run(
    view: OrderView,
    order: ProductionOrder,
    now: dt.datetime,
    params: PredictionParams,
    drivers: list[str],
) -> tuple[dt.datetime | None, dt.datetime, dt.datetime | None]:
    """Expected (start if not started, end, receipt of short components) of one order."""
    plant = params.plant
    work = scheduled_work(order, plant)
    if production_completed(order):
        end = order.actual_end_date or order.scheduled_end_date
        target = order.total_quantity - order.planned_scrap_qty
        if order.total_quantity > 0 and order.confirmed_yield_qty < target and not rest_taken_care_of(view, order):
            # The missing quantity has to be produced again, starting now at the earliest.
            shortfall = (target - order.confirmed_yield_qty) / order.total_quantity
            end = plant.add_working_time(max(end, now), work * shortfall)
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
        remaining = work * (1 - min(max(done, 0.0), 1.0))
        end = max(order.scheduled_end_date, plant.add_working_time(now, remaining))
        if up_at is not None:
            # The running order stands still for the working time the machine is down.
            end = plant.add_working_time(end, plant.working_time_between(now, up_at))
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
            # Goods received during a day can be staged from that day's start (plant's day).
            at = plant.day_start(component.expected_receipt_date)
            receipt = at if receipt is None else max(receipt, at)
    if receipt is not None:
        start = max(start, receipt)
    if up_at is not None and up_at > start:
        # Unstarted work waits for the machine only if it would have started before it is back.
        start = up_at
        drivers.append(down_driver)
    start = plant.next_working_time(start)
    return start, plant.add_working_time(start, work), receipt


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


# The plant's next working time after the last "now" asked (``_next_working_time``): the
# same for every production order of an evaluation (a what-if asks for it twice per order).
_NEXT_WORKING: tuple[FactoryCalendar, dt.datetime, dt.datetime] | None = None


def _next_working_time(plant: FactoryCalendar, now: dt.datetime) -> dt.datetime:
    """``plant.next_working_time(now)``, kept for the last calendar and instant asked."""
    global _NEXT_WORKING
    kept = _NEXT_WORKING
    if kept is not None and kept[1] is now and kept[0] is plant:
        return kept[2]
    at = plant.next_working_time(now)
    _NEXT_WORKING = (plant, now, at)
    return at


def _quality_release(
    view: OrderView,
    order: ProductionOrder,
    production_end: dt.datetime,
    now: dt.datetime,
    params: PredictionParams,
    drivers: list[str],
) -> dt.datetime:
    """Expected (or actual) quality release of one production order's output."""
    plant = params.plant
    lead = dt.timedelta(hours=params.quality_lead_hours)
    lot = view.latest_lot(order.manufacturing_order)
    # Not before the plant works again (a release falls due at the end of a shift, at latest).
    earliest = _next_working_time(plant, now)
    if lot is None:
        return max(plant.add_working_time(production_end, lead), earliest)
    if not lot_decided(lot):
        drivers.append(f"quality_hold:{lot.inspection_lot}")
        return max(earliest, plant.add_working_time(lot.created_at, lead), production_end)
    if lot_rejected(lot):
        drivers.append(f"quality_rejected:{lot.inspection_lot}")
        return plant.add_working_time(max(production_end, now), scheduled_work(order, plant) + lead)
    decided_at = lot.usage_decision.decided_at if lot.usage_decision is not None else None
    return max(decided_at or lot.created_at, production_end)

"""Stage, section statuses and milestones of an order.

Pure functions over an ``OrderView``: no I/O, no GraphQL. Rules in short:

- Section statuses (production, materials, quality, logistics) summarise one source
  system each. Over several production orders or deliveries the least advanced one wins,
  except that a problem anywhere (work centre down, rejected lot, carrier exception) shows.
- ``stage`` is the furthest stage the order has reached, taken per production order (its
  least advanced item decides), with two regressions: a rejected lot puts the order back to
  QUALITY_REJECTED until goods are issued, and short components put an unstarted order to
  AWAITING_MATERIAL even if it was released. Goods that left the plant prove production
  and quality done, so a goods-issued delivery outranks a lagging MES/QMS record. Once
  goods left the plant while quantity is still owed (a short or split shipment), the order
  is PARTIALLY_DELIVERED until the rest has shipped or is cut (item rejected).
- ``milestones`` lists every ``MilestoneKind`` with planned / expected / actual times.
  Over several production orders or deliveries a milestone is done when it is done for all
  of them, at the latest of their actual times. A later milestone being done makes earlier
  ones done (scans get skipped; a carrier pickup proves picking happened). Planned times
  come from one baseline, the schedule the order was confirmed with (each item's first
  production order's basic dates, the schedule lines' planning dates, the promise);
  expected times from the prediction; actual times from the records. While a credit or
  delivery block holds the order (the rest of a partial delivery included), the logistics
  milestones not yet done are ON_HOLD, with no expected time. Date-only plans start at
  local midnight: the plant's for the loading, goods-issue and ship-by days, the ship-to's
  for the promised delivery day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from resolvers.enums import (
    LogisticsStatus,
    MaterialsStatus,
    MilestoneKind,
    MilestoneStatus,
    OrderStage,
    ProductionStatus,
    QualityStatus,
)
from resolvers.exception_rules import ship_by as planned_ship_day
from resolvers.prediction import Prediction, PredictionParams, predict
from resolvers.view import (
    DeliveryLeg,
    OrderView,
    component_short,
    first_event_at,
    lot_decided,
    lot_rejected,
    production_completed,
    production_released,
    production_started,
    shipment_delivered,
    shipment_delivered_at,
    shipment_picked_up_at,
    work_center_down,
)
from sources.calendars import FactoryCalendar
from sources.records import InspectionLot, OutboundDelivery, ProductionOrder

_STAGES = list(OrderStage)
_PRODUCTION_PROGRESS = [
    ProductionStatus.NOT_RELEASED,
    ProductionStatus.RELEASED,
    ProductionStatus.IN_PROGRESS,
    ProductionStatus.COMPLETED,
]
_LOGISTICS_PROGRESS = [
    LogisticsStatus.OPEN,
    LogisticsStatus.PICKED,
    LogisticsStatus.PACKED,
    LogisticsStatus.GOODS_ISSUED,
    LogisticsStatus.IN_TRANSIT,
    LogisticsStatus.OUT_FOR_DELIVERY,
    LogisticsStatus.PARTIALLY_DELIVERED,
    LogisticsStatus.DELIVERED,
]
_LOGISTICS_STAGE = {
    LogisticsStatus.OPEN: OrderStage.READY_FOR_PICKING,
    LogisticsStatus.PICKED: OrderStage.PICKED,
    LogisticsStatus.PACKED: OrderStage.PACKED,
    LogisticsStatus.GOODS_ISSUED: OrderStage.GOODS_ISSUED,
    LogisticsStatus.IN_TRANSIT: OrderStage.IN_TRANSIT,
    LogisticsStatus.OUT_FOR_DELIVERY: OrderStage.OUT_FOR_DELIVERY,
    LogisticsStatus.DELIVERY_FAILED: OrderStage.OUT_FOR_DELIVERY,  # an attempt was made
    LogisticsStatus.PARTIALLY_DELIVERED: OrderStage.PARTIALLY_DELIVERED,
    LogisticsStatus.DELIVERED: OrderStage.DELIVERED,
}


def _rank(stage: OrderStage) -> int:
    return _STAGES.index(stage)


# --- section statuses -------------------------------------------------------------------


def production_status(view: OrderView, now: dt.datetime) -> ProductionStatus:
    """MES state of the order: INTERRUPTED if work that should be running stands on a
    down work centre, otherwise the least advanced production order; NOT_REQUIRED for
    stock orders."""
    if view.from_stock:
        return ProductionStatus.NOT_REQUIRED
    statuses = [
        _order_production_status(view, order, now) for order in view.active_production_orders
    ]
    if ProductionStatus.INTERRUPTED in statuses:
        return ProductionStatus.INTERRUPTED
    return min(statuses, key=_PRODUCTION_PROGRESS.index)


def _order_production_status(
    view: OrderView, order: ProductionOrder, now: dt.datetime
) -> ProductionStatus:
    if production_completed(order):
        return ProductionStatus.COMPLETED
    # Interrupted = work that should be running now stands still: started, or released and
    # past its scheduled start. A down machine does not interrupt next week's order.
    due = production_started(order) or (
        production_released(order) and order.scheduled_start_date <= now
    )
    if due and work_center_down(view.work_center_for(order), now):
        return ProductionStatus.INTERRUPTED
    if production_started(order):
        return ProductionStatus.IN_PROGRESS
    if production_released(order):
        return ProductionStatus.RELEASED
    return ProductionStatus.NOT_RELEASED


def production_status_until(view: OrderView, now: dt.datetime) -> dt.datetime | None:
    """The earliest instant after ``now`` at which ``production_status`` could change with
    the clock alone (no record changing): a released order's scheduled start passing (it
    becomes due, and a down work centre then interrupts it), or an announced downtime of a
    due order's work centre beginning. None when no such instant lies ahead."""
    if view.from_stock:
        return None
    until: dt.datetime | None = None
    for order in view.active_production_orders:
        if production_completed(order):
            continue
        at: dt.datetime | None = None
        started = production_started(order)
        if not started and production_released(order) and not order.scheduled_start_date <= now:
            at = order.scheduled_start_date
        elif started or production_released(order):
            wc = view.work_center_for(order)
            if (
                wc is not None
                and wc.state.upper() == "DOWN"
                and wc.down_since is not None
                and not wc.down_since <= now
            ):
                at = wc.down_since
        if at is not None and (until is None or at < until):
            until = at
    return until


def materials_status(view: OrderView) -> MaterialsStatus:
    """WMS component state: CONSUMED once every production order started, SHORTAGE if a
    component of an unstarted order is short (or in unusable stock), else AVAILABLE."""
    if view.from_stock:
        return MaterialsStatus.NOT_REQUIRED
    waiting = [order for order in view.active_production_orders if not production_started(order)]
    if not waiting:
        return MaterialsStatus.CONSUMED
    if any(component_short(c) for order in waiting for c in view.components_for(order)):
        return MaterialsStatus.SHORTAGE
    return MaterialsStatus.AVAILABLE


def _lot_status(lot: InspectionLot | None) -> QualityStatus:
    if lot is None:
        return QualityStatus.NOT_STARTED
    if not lot_decided(lot):
        return QualityStatus.IN_INSPECTION
    return QualityStatus.REJECTED if lot_rejected(lot) else QualityStatus.ACCEPTED


def quality_status(view: OrderView) -> QualityStatus:
    """QMS state from each production order's latest lot: REJECTED or IN_INSPECTION if any
    lot is, ACCEPTED once all are, else NOT_STARTED; NOT_REQUIRED without production."""
    orders = [order.manufacturing_order for order in view.active_production_orders]
    if not view.production_orders:
        # Lots without their production orders loaded (e.g. a delivery inspection).
        orders = [lot.manufacturing_order for lot in view.inspection_lots]
    if not orders:
        return QualityStatus.NOT_REQUIRED
    statuses = {_lot_status(view.latest_lot(mo)) for mo in orders}
    for problem in (QualityStatus.REJECTED, QualityStatus.IN_INSPECTION):
        if problem in statuses:
            return problem
    if statuses == {QualityStatus.ACCEPTED}:
        return QualityStatus.ACCEPTED
    return QualityStatus.NOT_STARTED


def _warehouse_status(delivery: OutboundDelivery | None) -> LogisticsStatus:
    # A / B / C = not yet / partially / completely processed; only C counts as done.
    if delivery is None:
        return LogisticsStatus.OPEN
    if delivery.overall_goods_movement_status == "C":
        return LogisticsStatus.GOODS_ISSUED
    if delivery.overall_packing_status == "C":
        return LogisticsStatus.PACKED
    if delivery.overall_picking_status == "C":
        return LogisticsStatus.PICKED
    return LogisticsStatus.OPEN


def _leg_status(leg: DeliveryLeg) -> LogisticsStatus:
    s = leg.shipment
    if s is not None:
        if shipment_delivered(s):
            return LogisticsStatus.DELIVERED
        if s.tag == "AttemptFail":
            return LogisticsStatus.DELIVERY_FAILED
        if s.tag in ("Exception", "Expired"):
            return LogisticsStatus.EXCEPTION
        if s.tag in ("OutForDelivery", "AvailableForPickup"):  # last mile either way
            return LogisticsStatus.OUT_FOR_DELIVERY
        if leg.carrier_has_goods:
            return LogisticsStatus.IN_TRANSIT
        # Pending / InfoReceived: a label exists, the carrier has not scanned the goods yet.
    return _warehouse_status(leg.delivery)


def logistics_status(view: OrderView) -> LogisticsStatus:
    """WMS/TMS state of the order's deliveries: EXCEPTION or DELIVERY_FAILED if any leg has
    one, otherwise the least advanced delivery (PARTIALLY_DELIVERED when every delivery
    arrived but quantity is still owed); NOT_CREATED without deliveries."""
    statuses = [_leg_status(leg) for leg in view.legs]
    if not statuses:
        return LogisticsStatus.NOT_CREATED
    for problem in (LogisticsStatus.EXCEPTION, LogisticsStatus.DELIVERY_FAILED):
        if problem in statuses:
            return problem
    least = min(statuses, key=_LOGISTICS_PROGRESS.index)
    if least is LogisticsStatus.DELIVERED and view.open_quantity:
        return LogisticsStatus.PARTIALLY_DELIVERED
    return least


# --- stage ------------------------------------------------------------------------------


def _leg_stage(leg: DeliveryLeg) -> OrderStage:
    status = _leg_status(leg)
    if status is not LogisticsStatus.EXCEPTION:
        return _LOGISTICS_STAGE[status]
    # Carrier exception: the furthest point the scans prove.
    assert leg.shipment is not None
    if first_event_at(leg.shipment, tags=("OutForDelivery",)) is not None:
        return OrderStage.OUT_FOR_DELIVERY
    if leg.carrier_has_goods:
        return OrderStage.IN_TRANSIT
    return _LOGISTICS_STAGE[_warehouse_status(leg.delivery)]


def _item_stage(view: OrderView, order: ProductionOrder) -> OrderStage:
    lot = view.latest_lot(order.manufacturing_order)
    if lot is not None and lot_rejected(lot):
        return OrderStage.QUALITY_REJECTED
    if production_completed(order):
        if lot is None or not lot_decided(lot):
            return OrderStage.IN_QUALITY_INSPECTION  # awaiting or under inspection
        return OrderStage.READY_FOR_PICKING
    if production_started(order):
        return OrderStage.IN_PRODUCTION
    if any(component_short(c) for c in view.components_for(order)):
        return OrderStage.AWAITING_MATERIAL
    if production_released(order):
        return OrderStage.PRODUCTION_RELEASED
    return OrderStage.RECEIVED


def stage(view: OrderView) -> OrderStage:
    """The furthest stage the order as a whole has reached (its least advanced item);
    PARTIALLY_DELIVERED while goods left the plant and quantity is still owed; CANCELLED
    once the customer cancelled the whole order."""
    if view.is_cancelled:
        return OrderStage.CANCELLED
    if view.partially_shipped:
        return OrderStage.PARTIALLY_DELIVERED
    leg_stages = [(leg, _leg_stage(leg)) for leg in view.legs]
    stages: list[OrderStage] = []
    for order in view.active_production_orders:
        own = _item_stage(view, order)
        shipping = [st for leg, st in leg_stages if leg.covers(order)]
        if shipping:
            leg_stage = min(shipping, key=_rank)
            if _rank(leg_stage) >= _rank(OrderStage.GOODS_ISSUED):
                own = leg_stage  # goods left the plant: production and quality are behind it
            elif (
                leg_stage in (OrderStage.PICKED, OrderStage.PACKED)
                and own is not OrderStage.QUALITY_REJECTED
            ):
                own = leg_stage
        stages.append(own)
    if OrderStage.QUALITY_REJECTED in stages:
        return OrderStage.QUALITY_REJECTED
    stages += [st for _, st in leg_stages]
    least = min(stages, key=_rank, default=OrderStage.RECEIVED)
    if least is OrderStage.RECEIVED and OrderStage.AWAITING_MATERIAL in stages:
        return OrderStage.AWAITING_MATERIAL  # a shortage says more than "nothing started"
    return least


# --- milestones -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Milestone:
    """One lifecycle milestone of an order.

    ``planned`` comes from the source records (date-only plans at local midnight of that
    day, overdue only once the day is over), ``expected`` from the prediction (only while
    not done), ``actual`` from the records or tracking events (None if done but not timed).
    """

    kind: MilestoneKind
    status: MilestoneStatus
    planned: dt.datetime | None
    expected: dt.datetime | None
    actual: dt.datetime | None
    source: str  # "erp" / "mes" / "wms" / "qms" / "tms"


@dataclass(slots=True)
class _Row:
    kind: MilestoneKind
    source: str
    applicable: bool = True
    done: bool = False
    actual: dt.datetime | None = None
    planned: dt.datetime | None = None
    deadline: dt.datetime | None = None  # when a not-done milestone becomes overdue
    expected: dt.datetime | None = None
    held: bool = False  # a block holds it until the order is released


def _all_done(items: Iterable[tuple[bool, dt.datetime | None]]) -> tuple[bool, dt.datetime | None]:
    """Done when done for every item, at the latest known actual time."""
    items = list(items)
    if not items or not all(done for done, _ in items):
        return False, None
    return True, max((at for _, at in items if at is not None), default=None)


def _planned_at(at: dt.datetime | None) -> tuple[dt.datetime | None, dt.datetime | None]:
    return at, at


def _planned_day(
    day: dt.date | None, calendar: FactoryCalendar
) -> tuple[dt.datetime | None, dt.datetime | None]:
    if day is None:
        return None, None
    return calendar.day_start(day), calendar.day_end(day)


def _materials_available(
    view: OrderView, order: ProductionOrder
) -> tuple[bool, dt.datetime | None]:
    components = view.components_for(order)
    started = production_started(order)
    if not started and any(component_short(c) for c in components):
        return False, None
    # The WMS record's last change is when the shortage cleared; consumption proves
    # availability by the actual start at the latest.
    changes = [c.last_change_date_time for c in components if c.last_change_date_time]
    cleared = max(changes) if components and len(changes) == len(components) else None
    candidates = [t for t in (cleared, order.actual_start_date if started else None) if t]
    return True, min(candidates, default=None)


def _production_baseline(view: OrderView) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Planned production start and end as confirmed: over the items, the latest basic dates
    of each item's first production order (a rework or the rest of a short shipment gets a
    new order with its own dates; the promise was made on the first)."""
    first: dict[str, ProductionOrder] = {}
    for order in view.production_orders:
        known = first.get(order.sales_order_item)
        rank = (len(order.manufacturing_order), order.manufacturing_order)
        if known is None or rank < (len(known.manufacturing_order), known.manufacturing_order):
            first[order.sales_order_item] = order
    starts = [o.planned_start_date or o.scheduled_start_date for o in first.values()]
    ends = [o.planned_end_date or o.scheduled_end_date for o in first.values()]
    return max(starts, default=None), max(ends, default=None)


def _quality_released(view: OrderView, order: ProductionOrder) -> tuple[bool, dt.datetime | None]:
    lot = view.latest_lot(order.manufacturing_order)
    if lot is None or not lot_decided(lot) or lot_rejected(lot):
        return False, None
    return True, lot.usage_decision.decided_at if lot.usage_decision else None


def milestones(
    view: OrderView,
    now: dt.datetime,
    prediction: Prediction | None = None,
    params: PredictionParams = PredictionParams(),
) -> list[Milestone]:
    """Every milestone of the order in lifecycle order, with status and times.

    Pass ``prediction`` when the caller already computed it, to avoid doing it twice.
    """
    p = prediction if prediction is not None else predict(view, now, params)
    so = view.sales_order
    orders = view.active_production_orders
    legs = view.legs
    leg_stages = [(leg, _leg_stage(leg)) for leg in legs]
    shipping_all_items = view.all_items_in_deliveries

    def per_order(
        fn: Callable[[ProductionOrder], tuple[bool, dt.datetime | None]],
    ) -> tuple[bool, dt.datetime | None]:
        return _all_done(fn(order) for order in orders)

    def per_leg(
        reached: OrderStage, actual: Callable[[DeliveryLeg], dt.datetime | None]
    ) -> tuple[bool, dt.datetime | None]:
        # A partial shipment (an item with no delivery yet) has not reached any of these.
        items = [] if shipping_all_items else [(False, None)]
        for leg, leg_stage in leg_stages:
            at = actual(leg)
            items.append((at is not None or _rank(leg_stage) >= _rank(reached), at))
        return _all_done(items)

    def shipment_time(
        fn: Callable[..., dt.datetime | None],
    ) -> Callable[[DeliveryLeg], dt.datetime | None]:
        return lambda leg: fn(leg.shipment) if leg.shipment is not None else None

    rows: list[_Row] = []

    confirmed = so.confirmed_delivery_date or next(
        (i.confirmed_delivery_date for i in so.items if i.confirmed_delivery_date), None
    )
    rows.append(
        _Row(
            MilestoneKind.ORDER_CONFIRMED,
            "erp",
            done=confirmed is not None,
            actual=params.plant.day_start(so.sales_order_date) if confirmed is not None else None,
        )
    )

    # Production milestones, planned on the baseline: the latest item's first production
    # order (its basic dates), and quality release when the schedule lines expect the goods
    # available, never before planned production end.
    latest_start, latest_end = _production_baseline(view)
    lines = [line for item in so.items if not item.rejection_reason for line in item.schedule_lines]
    quality_plan = max((ln.product_availability_date for ln in lines if ln.product_availability_date), default=None)
    if quality_plan is None and latest_end is not None:
        quality_plan = params.plant.add_working_time(latest_end, dt.timedelta(hours=params.quality_lead_hours))
    if quality_plan is not None and latest_end is not None:
        quality_plan = max(quality_plan, latest_end)
    production_rows = [
        (
            MilestoneKind.MATERIALS_AVAILABLE,
            "wms",
            per_order(lambda o: _materials_available(view, o)),
            latest_start,
            p.materials_available,
        ),
        (
            MilestoneKind.PRODUCTION_RELEASED,
            "mes",
            per_order(lambda o: (production_released(o), o.actual_release_date)),
            latest_start,
            p.production_start,
        ),
        (
            MilestoneKind.PRODUCTION_STARTED,
            "mes",
            per_order(lambda o: (production_started(o), o.actual_start_date)),
            latest_start,
            p.production_start,
        ),
        (
            MilestoneKind.PRODUCTION_COMPLETED,
            "mes",
            per_order(lambda o: (production_completed(o), o.actual_end_date)),
            latest_end,
            p.production_end,
        ),
        (
            MilestoneKind.QUALITY_RELEASED,
            "qms",
            per_order(lambda o: _quality_released(view, o)),
            quality_plan,
            p.quality_release,
        ),
    ]
    for kind, source, (done, actual), planned, expected in production_rows:
        planned, deadline = _planned_at(planned)
        rows.append(
            _Row(
                kind,
                source,
                applicable=not view.from_stock,
                done=done,
                actual=actual,
                planned=planned,
                deadline=deadline,
                expected=expected,
            )
        )

    # Logistics milestones are planned on the schedule lines' loading and goods-issue days;
    # where the ERP gives none, on the ship-by day: the outbound delivery's DeliveryDate
    # (the planned goods-issue day), before a delivery exists the promise minus the
    # standard transit time.
    delivery_dates = [leg.delivery.delivery_date for leg in legs if leg.delivery is not None]
    ship_by = max(delivery_dates, default=None) or planned_ship_day(view, params)
    ship_day = max((ln.goods_issue_date for ln in lines if ln.goods_issue_date), default=ship_by)
    load_day = max((ln.loading_date for ln in lines if ln.loading_date), default=ship_day)
    promised = view.promised_delivery_date
    ship_to = params.ship_to(view.customer)
    logistics_rows = [
        (
            MilestoneKind.PICKED,
            "wms",
            per_leg(
                OrderStage.PICKED,
                lambda leg: leg.delivery.actual_picking_date_time if leg.delivery else None,
            ),
            load_day,
            p.goods_issue,
        ),
        (
            MilestoneKind.PACKED,
            "wms",
            per_leg(
                OrderStage.PACKED,
                lambda leg: leg.delivery.actual_packing_date_time if leg.delivery else None,
            ),
            load_day,
            p.goods_issue,
        ),
        (
            MilestoneKind.GOODS_ISSUED,
            "wms",
            per_leg(
                OrderStage.GOODS_ISSUED,
                lambda leg: leg.delivery.actual_goods_movement_date if leg.delivery else None,
            ),
            ship_day,
            p.goods_issue,
        ),
        (
            MilestoneKind.CARRIER_PICKED_UP,
            "tms",
            per_leg(OrderStage.IN_TRANSIT, shipment_time(shipment_picked_up_at)),
            ship_day,
            p.goods_issue,
        ),
        (
            MilestoneKind.IN_TRANSIT,
            "tms",
            per_leg(
                OrderStage.IN_TRANSIT,
                shipment_time(
                    lambda s: (
                        first_event_at(s, codes=("X6",)) or first_event_at(s, tags=("InTransit",))
                    )
                ),
            ),
            ship_day,
            p.goods_issue,
        ),
        (
            MilestoneKind.OUT_FOR_DELIVERY,
            "tms",
            per_leg(
                OrderStage.OUT_FOR_DELIVERY,
                shipment_time(lambda s: first_event_at(s, tags=("OutForDelivery",))),
            ),
            promised,
            p.delivery,
        ),
        (
            MilestoneKind.DELIVERED,
            "tms",
            per_leg(OrderStage.DELIVERED, shipment_time(shipment_delivered_at)),
            promised,
            p.delivery,
        ),
    ]
    for kind, source, (done, actual), day, expected in logistics_rows:
        on_promise = kind in (MilestoneKind.OUT_FOR_DELIVERY, MilestoneKind.DELIVERED)
        planned, deadline = _planned_day(day, ship_to if on_promise else params.plant)
        rows.append(
            _Row(
                kind,
                source,
                done=done,
                actual=actual,
                planned=planned,
                deadline=deadline,
                expected=None if p.held_by else expected,
                held=bool(p.held_by),
            )
        )

    # A later milestone done proves the earlier ones happened, even without a record of it.
    later_done = False
    for row in reversed(rows):
        if not row.applicable:
            continue
        if row.done:
            later_done = True
        elif later_done:
            row.done = True
    return [_milestone(row, now) for row in rows]


def _milestone(row: _Row, now: dt.datetime) -> Milestone:
    if not row.applicable:
        return Milestone(row.kind, MilestoneStatus.SKIPPED, None, None, None, row.source)
    if row.done:
        return Milestone(row.kind, MilestoneStatus.DONE, row.planned, None, row.actual, row.source)
    if row.held:
        return Milestone(row.kind, MilestoneStatus.ON_HOLD, row.planned, None, None, row.source)
    late = (row.deadline is not None and row.deadline < now) or (
        row.expected is not None and row.expected < now
    )
    status = MilestoneStatus.OVERDUE if late else MilestoneStatus.PENDING
    return Milestone(row.kind, status, row.planned, row.expected, None, row.source)

"""The order view: every source record that belongs to one sales order.

``OrderView`` is what the domain rules (``stage.py``, ``prediction.py``) compute over. The
resolvers fill it from the DataLoaders; tests build it by hand. Besides the view itself this
module holds the few facts that are read straight off a single record (is this production
order started? is this lot rejected? when did the carrier deliver?), so every rule reads
them the same way.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Any

from sources.records import (
    ComponentAvailability,
    Customer,
    InspectionLot,
    OutboundDelivery,
    ProductionOrder,
    SalesOrder,
    SalesOrderItem,
    Shipment,
    WorkCenter,
)

# Production order statuses (sources/records.py PRODUCTION_ORDER_STATUSES). CONFIRMED and
# everything after it counts as production completed.
COMPLETED_PRODUCTION_STATUSES = frozenset({"CONFIRMED", "DELIVERED", "TECO", "CLOSED", "LOCKED"})
STARTED_PRODUCTION_STATUSES = COMPLETED_PRODUCTION_STATUSES | {"STARTED", "PARTIALLY_CONFIRMED"}
RELEASED_PRODUCTION_STATUSES = STARTED_PRODUCTION_STATUSES | {"RELEASED"}

# Only unrestricted stock (01) can be consumed; quality (02), blocked (07) and restricted
# (08) stock is on the shelf but not usable, so it counts as short.
USABLE_STOCK_TYPES = frozenset({"01", ""})

# AfterShip tags that prove the carrier holds the goods (and hence that they left the plant).
CARRIER_HAS_GOODS_TAGS = frozenset(
    {"InTransit", "OutForDelivery", "AttemptFail", "Delivered", "AvailableForPickup"}
)
PICKUP_CODES = ("AF", "X3")  # EDI 214: departed pickup, arrived at pickup (in preference order)

_EPOCH = dt.datetime.min.replace(tzinfo=dt.UTC)


def day_start(day: dt.date) -> dt.datetime:
    """Midnight UTC of ``day``: how a date-only source field becomes a point in time."""
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


# --- facts about one record -------------------------------------------------------------


def production_completed(order: ProductionOrder) -> bool:
    """True once the production order is confirmed (or any later status)."""
    return order.status in COMPLETED_PRODUCTION_STATUSES


def production_left(orders: list[ProductionOrder]) -> bool:
    """True while any of the production orders is not completed."""
    return any(not production_completed(po) for po in orders)


def production_started(order: ProductionOrder) -> bool:
    """True once the production order has started (status or an actual start date)."""
    return order.status in STARTED_PRODUCTION_STATUSES or order.actual_start_date is not None


def production_released(order: ProductionOrder) -> bool:
    """True once the production order is released to the shop floor."""
    return (
        order.status in RELEASED_PRODUCTION_STATUSES
        or order.actual_release_date is not None
        or order.actual_start_date is not None
    )


def scheduled_duration(order: ProductionOrder) -> dt.timedelta:
    """Scheduled end minus scheduled start (never negative)."""
    return max(order.scheduled_end_date - order.scheduled_start_date, dt.timedelta(0))


def component_blocked(component: ComponentAvailability) -> bool:
    """True when the component sits in stock that production cannot consume."""
    return component.inventory_stock_type not in USABLE_STOCK_TYPES


def component_short(component: ComponentAvailability) -> bool:
    """True when the component cannot be fully staged for production today."""
    return (
        component.shortage_quantity > 0
        or component.available_quantity < component.required_quantity
        or component_blocked(component)
    )


def work_center_down(work_center: WorkCenter | None, now: dt.datetime) -> bool:
    """True when the work centre reports DOWN and the downtime has begun."""
    if work_center is None or work_center.state.upper() != "DOWN":
        return False
    # A DOWN record with down_since in the future is announced maintenance, not yet a stop.
    return work_center.down_since is None or work_center.down_since <= now


def lot_decided(lot: InspectionLot) -> bool:
    """True when the inspection lot has a usage decision (the hold is lifted either way)."""
    return lot.has_usage_decision or lot.usage_decision is not None


def lot_rejected(lot: InspectionLot) -> bool:
    """True when the lot's usage decision rejects the batch."""
    decision = lot.usage_decision
    if not lot_decided(lot) or decision is None:
        return False
    return decision.valuation.upper() == "REJECTED" or decision.code.upper() == "R"


def first_event_at(
    shipment: Shipment, *, codes: tuple[str, ...] = (), tags: tuple[str, ...] = ()
) -> dt.datetime | None:
    """Time of the earliest tracking event with one of ``codes`` (EDI 214) or ``tags``."""
    times = [e.occurred_at for e in shipment.events if e.code in codes or e.tag in tags]
    return min(times) if times else None


def shipment_picked_up_at(shipment: Shipment) -> dt.datetime | None:
    """When the carrier took the goods: PickedUpAt, else the AF scan, else the X3 scan."""
    if shipment.picked_up_at is not None:
        return shipment.picked_up_at
    for code in PICKUP_CODES:
        at = first_event_at(shipment, codes=(code,))
        if at is not None:
            return at
    return None


def shipment_delivered_at(shipment: Shipment) -> dt.datetime | None:
    """When the carrier delivered: DeliveredAt, the proof of delivery, or the D1 scan."""
    if shipment.delivered_at is not None:
        return shipment.delivered_at
    if shipment.proof_of_delivery is not None:
        return shipment.proof_of_delivery.delivered_at
    return first_event_at(shipment, codes=("D1",), tags=("Delivered",))


def shipment_delivered(shipment: Shipment) -> bool:
    """True when the carrier reports the shipment delivered (tag or any delivery time)."""
    return shipment.tag == "Delivered" or shipment_delivered_at(shipment) is not None


def shipment_eta(shipment: Shipment) -> dt.datetime | None:
    """The carrier's current ETA (point estimate, else the end of its ETA window)."""
    return shipment.estimated_delivery_at or shipment.eta_window_end


def shipment_due_by(shipment: Shipment) -> dt.datetime | None:
    """The latest the carrier said it would deliver: the end of its ETA window, else its
    ETA. Undelivered after this, the shipment is overdue."""
    return shipment.eta_window_end or shipment.estimated_delivery_at


def shipment_last_activity(shipment: Shipment) -> dt.datetime:
    """Latest time anything happened to the shipment; orders re-shipments of one delivery."""
    times = [e.occurred_at for e in shipment.events]
    times += [t for t in (shipment.last_change_date_time, shipment.picked_up_at) if t]
    return max(times, default=_EPOCH)


# --- the view ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryLeg:
    """One outbound delivery and the carrier shipment currently carrying it.

    Either side may be missing: a delivery not yet handed to a carrier has no shipment; a
    shipment whose delivery record was not loaded has no delivery.
    """

    delivery: OutboundDelivery | None
    shipment: Shipment | None

    @property
    def carrier_has_goods(self) -> bool:
        """True once the carrier has picked the goods up (scan or tag)."""
        s = self.shipment
        return s is not None and (
            s.tag in CARRIER_HAS_GOODS_TAGS
            or shipment_picked_up_at(s) is not None
            or shipment_delivered(s)
        )

    @property
    def goods_issued(self) -> bool:
        """True once goods left the plant: goods movement complete, or the carrier has them."""
        posted = self.delivery is not None and self.delivery.overall_goods_movement_status == "C"
        return posted or self.carrier_has_goods

    @property
    def delivered(self) -> bool:
        """True when the carrier reports this leg delivered."""
        return self.shipment is not None and shipment_delivered(self.shipment)

    def covers(self, order: ProductionOrder) -> bool:
        """True when this leg ships the sales order item the production order makes (the
        production order's own batch, where the delivery names one: the rest of a short
        shipment, made by a new production order, is not in the first delivery).

        A leg without item data is assumed to ship the whole order.
        """
        if self.delivery is None or not self.delivery.items:
            return True
        return any(
            item.reference_sd_document_item == order.sales_order_item
            and (item.batch is None or item.batch == order.batch)
            for item in self.delivery.items
        )


@dataclass(frozen=True, slots=True)
class ItemQuantities:
    """One sales order item's quantities across the systems, in the item's unit.

    ``produced`` is None for an item shipped from stock. ``in_deliveries`` counts every
    delivery, ``shipped`` those whose goods left the plant, ``delivered`` those the carrier
    delivered. ``open`` is what is still owed (ordered minus shipped; 0 once the item is
    rejected), ``uncovered`` what no delivery takes yet; ``open_value`` the open share of
    the item's net value.
    """

    item: str
    material: str
    unit: str
    ordered: float
    confirmed: float | None
    produced: float | None
    in_deliveries: float
    shipped: float
    delivered: float
    open: float
    uncovered: float
    open_value: float
    rejection_reason: str


def _item_quantities(view: OrderView) -> list[ItemQuantities]:
    so = view.sales_order
    own = so.sales_order
    in_deliveries: dict[str, float] = {}
    shipped: dict[str, float] = {}
    delivered: dict[str, float] = {}
    whole: list[DeliveryLeg] = []  # legs without item data: assumed to carry everything
    for leg in view.legs:
        if leg.delivery is None or not leg.delivery.items:
            whole.append(leg)
            continue
        for line in leg.delivery.items:
            if line.reference_sd_document != own:
                continue  # one delivery can carry several orders
            key = line.reference_sd_document_item
            qty = line.actual_delivery_quantity
            in_deliveries[key] = in_deliveries.get(key, 0.0) + qty
            if leg.goods_issued:
                shipped[key] = shipped.get(key, 0.0) + qty
            if leg.delivered:
                delivered[key] = delivered.get(key, 0.0) + qty
    made = {}
    scrapped = view.scrapped_production_orders
    for po in view.production_orders:
        if po.manufacturing_order not in scrapped:
            made[po.sales_order_item] = made.get(po.sales_order_item, 0.0) + po.confirmed_yield_qty
    out = []
    for item in so.items:
        key = item.sales_order_item
        ordered = item.requested_quantity
        lines = [line.confirmed_quantity for line in item.schedule_lines]
        confirmed = sum(lines) if lines else item.confirmed_quantity
        took = in_deliveries.get(key, 0.0)
        left = shipped.get(key, 0.0)
        arrived = delivered.get(key, 0.0)
        if whole:
            took = ordered
            left = ordered if any(leg.goods_issued for leg in whole) else left
            arrived = ordered if any(leg.delivered for leg in whole) else arrived
        rejected = bool(item.rejection_reason)
        open_qty = 0.0 if rejected else max(ordered - left, 0.0)
        price = item.net_amount / ordered if ordered > 0 else 0.0
        out.append(
            ItemQuantities(
                item=key,
                material=item.material,
                unit=item.requested_quantity_unit,
                ordered=ordered,
                confirmed=confirmed,
                produced=made.get(key),
                in_deliveries=took,
                shipped=left,
                delivered=arrived,
                open=open_qty,
                uncovered=0.0 if rejected else max(ordered - took, 0.0),
                open_value=round(open_qty * price, 2),
                rejection_reason=item.rejection_reason,
            )
        )
    return out


def owed_quantity(item: SalesOrderItem, quantities: ItemQuantities, today: dt.date) -> float:
    """What of an item should have shipped and did not (a backorder): schedule lines that a
    goods issue filled only in part, and lines that nothing filled whose goods-issue day is
    over by ``today`` (the plant's local date; the day itself still counts as on time, as
    for a missed dispatch) or, for a line without one, whose delivery day has come. A later
    line of a split order is not owed before then; a cut item owes nothing. Without
    schedule lines, everything still open."""
    if item.rejection_reason or quantities.open <= 0:
        return 0.0
    if not item.schedule_lines:
        return quantities.open
    filled = quantities.shipped
    owed = 0.0
    for line in item.schedule_lines:
        took = min(filled, line.order_quantity)
        filled -= took
        missing = line.order_quantity - took
        if line.goods_issue_date is not None:
            overdue = line.goods_issue_date < today
        else:
            overdue = (line.confirmed_delivery_date or line.requested_delivery_date) <= today
        if missing > 0 and (took > 0 or overdue):
            owed += missing
    return min(owed, quantities.open)


@dataclass(slots=True)
class OrderView:
    """Every source record of one sales order, joined across the five systems."""

    sales_order: SalesOrder
    customer: Customer | None = None
    production_orders: list[ProductionOrder] = field(default_factory=list)
    work_centers: dict[str, WorkCenter] = field(default_factory=dict)  # by WorkCenter id
    components: list[ComponentAvailability] = field(default_factory=list)
    inspection_lots: list[InspectionLot] = field(default_factory=list)
    deliveries: list[OutboundDelivery] = field(default_factory=list)
    shipments: list[Shipment] = field(default_factory=list)
    # Derived joins, computed once per view (a page's rules ask for them hundreds of
    # times). Views are never changed in place: ``dataclasses.replace`` starts a new memo.
    _memo: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    # The derived joins that do not depend on when production is scheduled or on the work
    # centres' states: lots, deliveries and shipments, quantities, scrapped orders, the ship
    # day of open schedule lines; and the
    # prediction's runs per production order ("runs"), each kept with the production order
    # and work centre record it was computed from (the copy shares them: a run of an order it
    # did not move is computed once for both views).
    _SCHEDULE_FREE = ("latest_lot", "legs", "quantities", "scrapped", "lines_day", "runs")

    def rescheduled(self, production_orders: list[ProductionOrder], work_centers: dict[str, WorkCenter]) -> OrderView:
        """A copy with production orders moved in time (the same orders, statuses and
        quantities; other dates) and work centres in other states, keeping the derived joins
        that do not depend on either (a what-if reads both views: computed once)."""
        # Computed here once for both views (the current view's prediction reads them too).
        _ = self.legs, self.item_quantities, self.scrapped_production_orders
        self.latest_lot("")
        self._memo.setdefault("runs", {})
        open_lines_ship_day(self)
        new = replace(self, production_orders=production_orders, work_centers=work_centers)
        for key in self._SCHEDULE_FREE:
            new._memo[key] = self._memo[key]
        return new

    @property
    def promised_delivery_date(self) -> dt.date:
        """The delivery promise: the header's confirmed date, else the requested date."""
        so = self.sales_order
        return so.confirmed_delivery_date or so.requested_delivery_date

    @property
    def from_stock(self) -> bool:
        """True when nothing is produced for this order (shipped from stock)."""
        return not self.production_orders

    def work_center_for(self, order: ProductionOrder) -> WorkCenter | None:
        """The work centre record the production order runs on, if loaded."""
        return self.work_centers.get(order.work_center)

    def components_for(self, order: ProductionOrder) -> list[ComponentAvailability]:
        """Component availability rows of one production order."""
        return [c for c in self.components if c.manufacturing_order == order.manufacturing_order]

    def latest_lot(self, manufacturing_order: str) -> InspectionLot | None:
        """The newest inspection lot of a production order; a re-inspection supersedes."""
        latest = self._memo.get("latest_lot")
        if latest is None:
            latest = {}
            for lot in self.inspection_lots:
                known = latest.get(lot.manufacturing_order)
                if known is None or (lot.created_at, lot.inspection_lot) > (known.created_at, known.inspection_lot):
                    latest[lot.manufacturing_order] = lot
            self._memo["latest_lot"] = latest
        return latest.get(manufacturing_order)

    @property
    def legs(self) -> list[DeliveryLeg]:
        """Each delivery with its latest shipment, plus shipments of unloaded deliveries."""
        legs = self._memo.get("legs")
        if legs is None:
            legs = self._memo["legs"] = self._legs()
        return legs

    def _legs(self) -> list[DeliveryLeg]:
        by_delivery: dict[str, list[Shipment]] = {}
        for s in self.shipments:
            by_delivery.setdefault(s.delivery_document, []).append(s)

        def latest(doc: str) -> Shipment | None:
            return max(by_delivery.get(doc, []), key=shipment_last_activity, default=None)

        legs = [DeliveryLeg(d, latest(d.delivery_document)) for d in self.deliveries]
        known = {d.delivery_document for d in self.deliveries}
        for doc in by_delivery:
            if doc not in known:
                legs.append(DeliveryLeg(None, latest(doc)))
        return legs

    @property
    def active_production_orders(self) -> list[ProductionOrder]:
        """The production orders still in play.

        A technically completed (TECO/CLOSED) order whose batch was rejected is superseded
        once a rework order exists for the same sales order item; until then it stays, so
        the order shows as rejected.
        """
        active = self._memo.get("active")
        if active is None:
            active = self._memo["active"] = self._active_production_orders()
        return active

    def _active_production_orders(self) -> list[ProductionOrder]:
        scrapped = self.scrapped_production_orders
        remade = {o.sales_order_item for o in self.production_orders if o.manufacturing_order not in scrapped}
        # An item cancelled (rejected) before it was made: its production order, closed
        # without yield, is out of play (nothing of it will be made or shipped).
        cancelled = {i.sales_order_item for i in self.sales_order.items if i.rejection_reason}
        return [
            o
            for o in self.production_orders
            if not (o.manufacturing_order in scrapped and o.sales_order_item in remade)
            and not (
                o.sales_order_item in cancelled
                and o.status in ("TECO", "CLOSED")
                and o.confirmed_yield_qty <= 0
                and o.actual_start_date is None
            )
        ]

    @property
    def scrapped_production_orders(self) -> frozenset[str]:
        """Technically completed (TECO/CLOSED) production orders whose batch was rejected."""
        scrapped = self._memo.get("scrapped")
        if scrapped is None:
            scrapped = self._memo["scrapped"] = frozenset(
                o.manufacturing_order
                for o in self.production_orders
                if o.status in ("TECO", "CLOSED")
                and (lot := self.latest_lot(o.manufacturing_order)) is not None
                and lot_rejected(lot)
            )
        return scrapped

    @property
    def item_quantities(self) -> list[ItemQuantities]:
        """Ordered, confirmed, produced, shipped, delivered and open quantity per item.

        Empty when the sales order was read without items (nothing can be said by quantity).
        """
        quantities = self._memo.get("quantities")
        if quantities is None:
            quantities = self._memo["quantities"] = _item_quantities(self)
        return quantities

    @property
    def open_quantity(self) -> bool:
        """True while some item still owes quantity (not shipped, not rejected)."""
        return any(q.open > 0 for q in self.item_quantities)

    @property
    def partially_shipped(self) -> bool:
        """True when goods of the order left the plant but quantity is still owed: the ERP's
        OverallDeliveryStatus B. A short shipment stays so until the rest ships or is cut."""
        if not any(leg.goods_issued for leg in self.legs):
            # Nothing shipped: only a leg whose goods left counts as shipped. Most orders
            # (in production, or picking) need no quantities then: a page's stages ask.
            return False
        quantities = self.item_quantities
        return any(q.shipped > 0 for q in quantities) and any(q.open > 0 for q in quantities)

    @property
    def all_items_in_deliveries(self) -> bool:
        """True when every produced item and every ordered quantity (rejected items aside)
        is in a delivery; False for a partial or short shipment."""
        covered = self._memo.get("covered")
        if covered is None:
            legs = self.legs
            covered = self._memo["covered"] = all(
                any(leg.covers(order) for leg in legs) for order in self.active_production_orders
            ) and not any(q.uncovered > 0 for q in self.item_quantities)
        return covered

    @property
    def latest_shipment(self) -> Shipment | None:
        """The shipment with the most recent carrier activity, if any."""
        return max(self.shipments, key=shipment_last_activity, default=None)

    @property
    def is_cancelled(self) -> bool:
        """True when the customer cancelled the whole order: every item rejected before
        any goods left the plant. (Kept with the view, as ``is_delivered``: every rule asks.)"""
        cancelled = self._memo.get("cancelled")
        if cancelled is None:
            items = self.sales_order.items
            cancelled = self._memo["cancelled"] = (
                bool(items)
                and all(i.rejection_reason for i in items)
                and not any(leg.goods_issued for leg in self.legs)
            )
        return cancelled

    @property
    def is_delivered(self) -> bool:
        """True when every delivery of the order is delivered by its carrier. (Kept with the
        view: the prediction, every exception rule, the derived values and the due time ask.)"""
        delivered = self._memo.get("delivered")
        if delivered is None:
            legs = self.legs
            delivered = self._memo["delivered"] = bool(legs) and all(leg.delivered for leg in legs) and self.all_items_in_deliveries
        return delivered

    @property
    def delivered_at(self) -> dt.datetime | None:
        """When the last delivery arrived (None until all are delivered)."""
        if not self.is_delivered:
            return None
        times = []
        for leg in self.legs:
            assert leg.shipment is not None  # delivered legs have a shipment
            at = shipment_delivered_at(leg.shipment)
            # Tag "Delivered" without any time: the last carrier activity is the best bound.
            times.append(at or shipment_last_activity(leg.shipment))
        return max(times)

    @property
    def goods_issued_at(self) -> dt.datetime | None:
        """When the last delivery was goods-issued (None until all are, or if unknown)."""
        legs = self.legs
        if (
            not legs
            or not all(leg.goods_issued for leg in legs)
            or not self.all_items_in_deliveries
        ):
            return None
        times = []
        for leg in legs:
            at = leg.delivery.actual_goods_movement_date if leg.delivery else None
            if at is None and leg.shipment is not None:
                # Goods movement not posted (or not loaded) but the carrier has the goods.
                at = shipment_picked_up_at(leg.shipment)
            if at is not None:
                times.append(at)
        return max(times, default=None)


def open_lines_ship_day(view: OrderView) -> dt.date | None:
    """The latest planned goods-issue day of the later schedule lines (after the order's
    first shipping day: a split) whose quantity no delivery takes yet. Lines fill in order,
    so an item's open quantity sits on its last lines. The first day itself does not hold
    an order back: a plant ahead of plan ships early. Kept with the view ("lines_day"): the
    prediction and the ship-by day each ask."""
    memo = view._memo
    if "lines_day" not in memo:
        memo["lines_day"] = _open_lines_ship_day(view)
    return memo["lines_day"]


def _open_lines_ship_day(view: OrderView) -> dt.date | None:
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

"""Exceptions: which orders break, why, and how badly. Pure rules over the order view.

The model, in short (no I/O here):

- **Facts per order** (``order_facts``), computed once from the prediction
  (``prediction.py``): the promise (confirmed delivery date), the predicted date, the
  slack between them in working days of the ship-to's delivery calendar, days late
  (working days past the promise, at least 1 once late), the ship-by day (the outbound
  delivery's DeliveryDate, a plant date; else the promise minus the standard transit
  time), whether the order ships within 48 h and whether a block holds it (held orders
  are in jeopardy: at least MEDIUM, their value at risk).
- **Severity** (``severity``), in the spirit of a jeopardy score: predicted after the
  promise → HIGH, and CRITICAL for a STRATEGIC customer or a large value at risk; 0–2
  working days of slack → MEDIUM; otherwise LOW; one level up when the order is due to
  ship within 48 h (capped at CRITICAL).
- **Value at risk** of an order is its net value when its promise is in jeopardy
  (predicted late, or within the MEDIUM slack); 0 while it has comfortable slack.
- **Rules**: one small function per ``ExceptionKind`` (``RULES``) reads one order view and
  returns findings: the kind, the root cause (a record in its source system: work centre,
  inspection lot, material, tracking number, sales order, …) and an internal and a
  customer-safe text. Delivered orders have no exceptions.
- **Aggregation**: findings with the same kind and root cause are one exception, with the
  stable id ``<KIND>:<system>:<key>`` (e.g. ``MACHINE_DOWN:mes:WC-20``). Its severity is
  the maximum over the affected orders, its value at risk and net value the sums, its
  days late the maximum.

The customer text never names internal records, priorities, values or credit status (a
credit and a delivery block read alike: the order awaits release, ``customer_kind``); it
may give the order's new expected delivery date.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from sources.records import COMMERCIAL_PRIORITIES, Customer

from .downtime import held_by_downtime
from .enums import ExceptionKind, Severity
from .prediction import (
    Prediction,
    PredictionParams,
    predict,
    production_end_alone,
    rest_taken_care_of,
    scheduled_work,
)
from .view import (
    OrderView,
    component_blocked,
    component_short,
    lot_decided,
    lot_rejected,
    open_lines_ship_day,
    owed_quantity,
    production_completed,
    production_started,
    shipment_delivered,
    shipment_due_by,
    shipment_eta,
    work_center_down,
)

_STOCK_TYPES = {"02": "quality inspection", "07": "blocked", "08": "restricted"}


@dataclasses.dataclass(frozen=True, slots=True)
class ExceptionParams:
    """Thresholds of the exception rules and of severity."""

    large_value_at_risk: float = 100_000.0  # an order worth this much makes HIGH critical
    medium_slack_working_days: int = 2  # slack up to this is MEDIUM
    ships_soon_hours: float = 48  # due to ship within this: one level up
    production_delay_tolerance_hours: float = 4  # expected end this far past schedule = delay


@dataclasses.dataclass(frozen=True, slots=True)
class RootCause:
    """The record an exception comes from, in its source system."""

    system: str  # erp / mes / wms / qms / tms
    entity: str  # WorkCenter, InspectionLot, Material, Shipment, SalesOrder, ...
    key: str
    label: str = ""  # plant words for the record, e.g. "CNC milling", "batch B0000123"


def exception_id(kind: ExceptionKind, root: RootCause) -> str:
    """The stable id of an exception: ``<KIND>:<system>:<key>``."""
    return f"{kind.value}:{root.system}:{root.key}"


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    """What one rule found on one order."""

    kind: ExceptionKind
    root: RootCause
    internal_text: str
    customer_text: str
    value_at_risk: float | None = None  # what this finding puts at risk, if not the order's


@dataclasses.dataclass(frozen=True, slots=True)
class OrderFacts:
    """What severity and value at risk are decided on, for one order."""

    sales_order: str
    customer: str
    commercial_priority: str
    net_value: float
    currency: str
    promised: dt.date
    predicted: dt.date
    late: bool
    slack: int  # working days from predicted to promised; negative when late
    days_late: int  # working days past the promise; at least 1 once late
    ship_by: dt.date
    shipped: bool
    ships_soon: bool
    severity: Severity
    value_at_risk: float
    work_centers: tuple[str, ...]
    held: bool = False  # a credit or delivery block holds it: the predicted date is the earliest


@dataclasses.dataclass(frozen=True, slots=True)
class Detection:
    """One exception hitting one order, with that order's severity and value at risk."""

    kind: ExceptionKind
    root: RootCause
    sales_order: str
    customer: str
    commercial_priority: str
    severity: Severity
    days_late: int
    value_at_risk: float
    net_value: float
    currency: str
    promised_delivery_date: dt.date
    predicted_delivery_date: dt.date
    work_centers: tuple[str, ...]
    internal_text: str
    customer_text: str
    held: bool = False  # a block holds the order: the predicted date is only the earliest
    slack: int = 0  # working days from predicted to promised delivery; negative when late

    @property
    def promise_holds(self) -> bool:
        """The order is predicted to keep its promise (not late, not held by a block)."""
        return self.days_late == 0 and not self.held

    @property
    def id(self) -> str:
        """The id of the exception this detection belongs to."""
        return exception_id(self.kind, self.root)

    def to_payload(self) -> dict[str, Any]:
        """JSON-ready form (journal payloads)."""
        return {
            "salesOrder": self.sales_order,
            "customer": self.customer,
            "commercialPriority": self.commercial_priority,
            "severity": self.severity.value,
            "daysLate": self.days_late,
            "valueAtRisk": self.value_at_risk,
            "netValue": self.net_value,
            "currency": self.currency,
            "promisedDeliveryDate": self.promised_delivery_date.isoformat(),
            "predictedDeliveryDate": self.predicted_delivery_date.isoformat(),
            "workCenters": list(self.work_centers),
            "internalText": self.internal_text,
            "customerText": self.customer_text,
            "held": self.held,
            "slack": self.slack,
        }

    @classmethod
    def from_payload(cls, kind: ExceptionKind, root: RootCause, data: dict[str, Any]) -> Detection:
        """Inverse of :meth:`to_payload`."""
        return cls(
            kind=kind,
            root=root,
            sales_order=data["salesOrder"],
            customer=data["customer"],
            commercial_priority=data["commercialPriority"],
            severity=Severity(data["severity"]),
            days_late=int(data["daysLate"]),
            value_at_risk=float(data["valueAtRisk"]),
            net_value=float(data["netValue"]),
            currency=data["currency"],
            promised_delivery_date=dt.date.fromisoformat(data["promisedDeliveryDate"]),
            predicted_delivery_date=dt.date.fromisoformat(data["predictedDeliveryDate"]),
            work_centers=tuple(data.get("workCenters", ())),
            internal_text=data["internalText"],
            customer_text=data["customerText"],
            held=bool(data.get("held", False)),
            slack=int(data.get("slack", 0)),
        )


# --- severity -----------------------------------------------------------------------------


def severity(
    *,
    late: bool,
    slack: int,
    commercial_priority: str,
    value: float,
    ships_soon: bool,
    params: ExceptionParams = ExceptionParams(),
) -> Severity:
    """Severity of one order's exception from its slack, priority, value and ship date."""
    if late:
        level = Severity.HIGH
        if commercial_priority == "STRATEGIC" or value >= params.large_value_at_risk:
            level = Severity.CRITICAL
    elif slack <= params.medium_slack_working_days:
        level = Severity.MEDIUM
    else:
        level = Severity.LOW
    return level.raised() if ships_soon else level


def shipped(view: OrderView) -> bool:
    """True once every delivery left the plant and every item is in a delivery."""
    legs = view.legs
    return bool(legs) and all(leg.goods_issued for leg in legs) and view.all_items_in_deliveries


def ship_by(view: OrderView, params: PredictionParams = PredictionParams()) -> dt.date:
    """The planned ship day (a plant date): the latest delivery's DeliveryDate (or, once
    part of a split order is in a delivery, the planned goods-issue day of its later
    schedule lines still in none), else the plant's working day that leaves the transit's
    working days of the ship-to before the promise."""
    dates = [d.delivery_date for d in view.deliveries]
    if dates:
        later = open_lines_ship_day(view)
        return max(dates) if later is None else max(*dates, later)
    ship_to = params.ship_to(view.customer)
    day = view.promised_delivery_date
    for _ in range(params.transit_days):
        day = ship_to.previous_working_day(day - dt.timedelta(days=1))
    return params.plant.previous_working_day(day)


def order_facts(
    view: OrderView,
    customer: Customer | None,
    now: dt.datetime,
    *,
    params: ExceptionParams = ExceptionParams(),
    prediction_params: PredictionParams = PredictionParams(),
    prediction: Prediction | None = None,
    like: OrderFacts | None = None,
) -> OrderFacts:
    """Promise, prediction, slack, severity and value at risk of one order.

    ``like``: the facts of the same order's view before ``OrderView.rescheduled`` (the
    same records, other production dates and work centre states; a what-if asks for both):
    its ship-by day, whether it shipped or ships soon and its work centres do not depend
    on either, so they are taken from it instead of worked out again.

    Kept with the view for the same instant, customer, parameters and prediction: the
    exception rules and the order index's derived values each ask (``derive``)."""
    p = prediction if prediction is not None else predict(view, now, prediction_params)
    if like is None:
        kept = view._memo.get("facts")
        if kept is not None and kept[0] == now and kept[1] is customer and kept[2] is params and kept[3] is prediction_params and kept[4] is p:
            return kept[5]
    facts = _order_facts(view, customer, now, params, prediction_params, p, like)
    if like is None:
        view._memo["facts"] = (now, customer, params, prediction_params, p, facts)
    return facts


def _order_facts(
    view: OrderView,
    customer: Customer | None,
    now: dt.datetime,
    params: ExceptionParams,
    prediction_params: PredictionParams,
    p: Prediction,
    like: OrderFacts | None,
) -> OrderFacts:
    so = view.sales_order
    # Promise and prediction are the ship-to's dates, counted on its delivery calendar; the
    # ship-by day is the plant's.
    ship_to = prediction_params.ship_to(view.customer if view.customer is not None else customer)
    plant = prediction_params.plant
    promised = view.promised_delivery_date
    predicted = p.predicted_delivery_date
    today = ship_to.local_date(now)
    # An undelivered order past its promise is late whatever the prediction says.
    late = predicted > promised or (today > promised and not view.is_delivered)
    slack = ship_to.working_days_between(predicted, promised)
    days_late = max(1, ship_to.working_days_between(promised, max(predicted, today))) if late else 0
    held = bool(p.held_by)
    priority = (customer.commercial_priority if customer else None) or "NORMAL"
    if like is not None:
        is_shipped, day, soon = like.shipped, like.ship_by, like.ships_soon
    else:
        is_shipped = shipped(view)
        day = ship_by(view, prediction_params)
        soon = (
            not is_shipped
            and plant.local_date(now) <= day
            and plant.day_start(day) <= now + dt.timedelta(hours=params.ships_soon_hours)
        )
    in_jeopardy = late or held or slack <= params.medium_slack_working_days
    value = so.total_net_amount if in_jeopardy and not view.is_delivered else 0.0
    level = severity(
        late=late,
        # Held: whatever slack the earliest date leaves is not known to hold.
        slack=min(slack, params.medium_slack_working_days) if held else slack,
        commercial_priority=priority,
        value=value,
        ships_soon=soon,
        params=params,
    )
    work_centers = (
        like.work_centers
        if like is not None
        else tuple(sorted({po.work_center for po in view.active_production_orders if not production_completed(po)}))
    )
    return OrderFacts(
        sales_order=so.sales_order,
        customer=so.sold_to_party,
        commercial_priority=priority,
        net_value=so.total_net_amount,
        currency=so.transaction_currency,
        promised=promised,
        predicted=predicted,
        late=late,
        slack=slack,
        days_late=days_late,
        ship_by=day,
        shipped=is_shipped,
        ships_soon=soon,
        severity=level,
        value_at_risk=value,
        work_centers=work_centers,
        held=held,
    )


# --- rules ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class RuleInput:
    """Everything a rule may read about one order."""

    view: OrderView
    facts: OrderFacts
    now: dt.datetime
    params: ExceptionParams = ExceptionParams()
    prediction_params: PredictionParams = PredictionParams()
    stale_sources: frozenset[str] = frozenset()


Rule = Callable[[RuleInput], list[Finding]]


def _at(value: dt.datetime | None) -> str:
    # Internal texts give instants in UTC, the one zone every reader can convert from.
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "unknown"


def _qty(value: float) -> str:
    return f"{value:g}"


def _open_production(r: RuleInput) -> list:
    """Active production orders not yet completed (none once the goods left)."""
    if r.facts.shipped:
        return []
    return [po for po in r.view.active_production_orders if not production_completed(po)]


def machine_down(r: RuleInput) -> list[Finding]:
    """MACHINE_DOWN: production the downtime holds stands on a work centre that is down: a
    running order, one scheduled to start before the machine is expected back, or one the
    MES rescheduled behind the downtime in the queue (``downtime.held_by_downtime``; work
    the downtime leaves where the plan had it is not held). The order's value is at risk only when its promise
    breaks (predicted late, or held by a block); an order the downtime holds that still
    keeps its promise is listed as affected, with its slack, and puts nothing at risk."""
    out = []
    for po in _open_production(r):
        wc = r.view.work_center_for(po)
        if wc is None or not work_center_down(wc, r.now):
            continue
        if not held_by_downtime(po, wc, r.now, r.prediction_params.default_downtime_hours):
            continue
        out.append(
            Finding(
                ExceptionKind.MACHINE_DOWN,
                RootCause("mes", "WorkCenter", wc.work_center, wc.work_center_text),
                f"Work centre {wc.work_center} ({wc.work_center_text or 'no name'}) is down since "
                f"{_at(wc.down_since)}, expected up {_at(wc.expected_up_at)}; production order "
                f"{po.manufacturing_order} ({po.status}) waits for it.",
                "An equipment issue in our plant is holding up production of your order.",
                value_at_risk=r.facts.value_at_risk if (r.facts.late or r.facts.held) else 0.0,
            )
        )
    return out


def _planned_end(po: Any) -> dt.datetime:
    """The end production is measured against: its scheduled end, or its basic (planned)
    end when that is earlier — the plan the promise was made on, which a reschedule (a
    larger quantity) does not move."""
    planned = po.planned_end_date
    return min(po.scheduled_end_date, planned) if planned is not None else po.scheduled_end_date


def production_delay(r: RuleInput) -> list[Finding]:
    """PRODUCTION_DELAY: a production order is expected to end well after its scheduled end
    (or its basic end, when a reschedule moved the scheduled one later).

    The expected end is the prediction model's, for that production order alone (remaining
    work, downtime, late components).
    """
    out = []
    tolerance = dt.timedelta(hours=r.params.production_delay_tolerance_hours)
    view = r.view
    for po in _open_production(r):
        end = production_end_alone(view, po, r.now, r.prediction_params)
        planned_end = _planned_end(po)
        if end is None or end <= planned_end + tolerance:
            continue
        wc = r.view.work_center_for(po)
        hours = (end - planned_end).total_seconds() / 3600
        which = "scheduled" if planned_end == po.scheduled_end_date else "planned"
        out.append(
            Finding(
                ExceptionKind.PRODUCTION_DELAY,
                RootCause("mes", "WorkCenter", po.work_center, wc.work_center_text if wc else ""),
                f"Production order {po.manufacturing_order} on {po.work_center} is expected to finish "
                f"{_at(end)}, {hours:.0f} h after its {which} end {_at(planned_end)}.",
                "Production of your order is running behind schedule.",
            )
        )
    return out


def yield_shortfall(r: RuleInput) -> list[Finding]:
    """YIELD_SHORTFALL: a confirmed production order delivered less than it should."""
    if r.facts.shipped:
        return []
    out = []
    for po in r.view.active_production_orders:
        target = po.total_quantity - po.planned_scrap_qty
        if not production_completed(po) or po.total_quantity <= 0 or po.confirmed_yield_qty >= target:
            continue
        if rest_taken_care_of(r.view, po):
            continue  # a new production order makes the rest, or the item was cut
        out.append(
            Finding(
                ExceptionKind.YIELD_SHORTFALL,
                RootCause("mes", "ProductionOrder", po.manufacturing_order, po.material),
                f"Production order {po.manufacturing_order} confirmed {_qty(po.confirmed_yield_qty)} of "
                f"{_qty(target)} {po.production_unit} ({_qty(po.confirmed_scrap_qty)} scrapped); "
                f"{_qty(target - po.confirmed_yield_qty)} {po.production_unit} are missing.",
                "Part of your order has to be produced again.",
            )
        )
    return out


def _waiting_components(r: RuleInput):
    """(production order, component) pairs of production that has not started yet."""
    for po in _open_production(r):
        if production_started(po):
            continue  # components are consumed once production runs
        for c in r.view.components_for(po):
            yield po, c


def material_shortage(r: RuleInput) -> list[Finding]:
    """MATERIAL_SHORTAGE: a component of unstarted production is short (usable stock)."""
    out = []
    for po, c in _waiting_components(r):
        if not component_short(c) or component_blocked(c):
            continue
        short = c.shortage_quantity or max(c.required_quantity - c.available_quantity, 0.0)
        receipt = c.expected_receipt_date.isoformat() if c.expected_receipt_date else "not scheduled"
        out.append(
            Finding(
                ExceptionKind.MATERIAL_SHORTAGE,
                RootCause("wms", "Material", c.material),
                f"Component {c.material}: {_qty(short)} {c.base_unit} short for production order "
                f"{po.manufacturing_order}; receipt expected {receipt}.",
                "A component for your order arrives later than planned.",
            )
        )
    return out


def stock_blocked(r: RuleInput) -> list[Finding]:
    """STOCK_BLOCKED: a component of unstarted production sits in unusable stock."""
    out = []
    for po, c in _waiting_components(r):
        if not component_blocked(c):
            continue
        kind = _STOCK_TYPES.get(c.inventory_stock_type, "unusable")
        out.append(
            Finding(
                ExceptionKind.STOCK_BLOCKED,
                RootCause("wms", "Material", c.material),
                f"Component {c.material} for production order {po.manufacturing_order} is in {kind} "
                f"stock (type {c.inventory_stock_type}) and cannot be consumed.",
                "A component for your order is being checked before use.",
            )
        )
    return out


def _lots(r: RuleInput):
    """(production order, latest lot) pairs while the goods are still in the plant."""
    if r.facts.shipped:
        return
    for po in r.view.active_production_orders:
        lot = r.view.latest_lot(po.manufacturing_order)
        if lot is not None:
            yield po, lot


def quality_hold(r: RuleInput) -> list[Finding]:
    """QUALITY_HOLD: an inspection lot without usage decision holds the batch."""
    out = []
    for po, lot in _lots(r):
        if lot_decided(lot):
            continue
        out.append(
            Finding(
                ExceptionKind.QUALITY_HOLD,
                RootCause("qms", "InspectionLot", lot.inspection_lot, f"batch {lot.batch}"),
                f"Inspection lot {lot.inspection_lot} holds batch {lot.batch} of production order "
                f"{po.manufacturing_order} since {_at(lot.created_at)}; no usage decision yet.",
                "Your order is in quality inspection.",
            )
        )
    return out


def quality_rejected(r: RuleInput) -> list[Finding]:
    """QUALITY_REJECTED: the latest lot rejected the batch and no rework replaced it yet."""
    out = []
    for po, lot in _lots(r):
        if not lot_rejected(lot):
            continue
        code = lot.usage_decision.code if lot.usage_decision else "R"
        out.append(
            Finding(
                ExceptionKind.QUALITY_REJECTED,
                RootCause("qms", "InspectionLot", lot.inspection_lot, f"batch {lot.batch}"),
                f"Inspection lot {lot.inspection_lot} rejected batch {lot.batch} of production order "
                f"{po.manufacturing_order} (usage decision {code}); it must be made again.",
                "Part of your order did not pass our quality inspection and is being made again.",
            )
        )
    return out


# One wording for both blocks: a customer must not learn its credit status from the text.
AWAITING_RELEASE_TEXT = "Your order is on hold awaiting release; your account manager will contact you."


def _sales_order_root(r: RuleInput) -> RootCause:
    return RootCause("erp", "SalesOrder", r.view.sales_order.sales_order)


def credit_block(r: RuleInput) -> list[Finding]:
    """CREDIT_BLOCK: the ERP credit check blocks the order."""
    so = r.view.sales_order
    if so.total_credit_check_status != "B" or r.facts.shipped:
        return []
    return [
        Finding(
            ExceptionKind.CREDIT_BLOCK,
            _sales_order_root(r),
            f"Sales order {so.sales_order} is blocked by the credit check (status B); it is held until released.",
            AWAITING_RELEASE_TEXT,
        )
    ]


def delivery_block(r: RuleInput) -> list[Finding]:
    """DELIVERY_BLOCK: the ERP order carries a delivery block."""
    so = r.view.sales_order
    if not so.delivery_block_reason or r.facts.shipped:
        return []
    return [
        Finding(
            ExceptionKind.DELIVERY_BLOCK,
            _sales_order_root(r),
            f"Sales order {so.sales_order} has delivery block {so.delivery_block_reason}; it is held until released.",
            AWAITING_RELEASE_TEXT,
        )
    ]


def dispatch_missed(r: RuleInput) -> list[Finding]:
    """DISPATCH_MISSED: the ship-by day is over and the goods have not left the plant."""
    f = r.facts
    if f.shipped or r.now < r.prediction_params.plant.day_end(f.ship_by):
        return []
    pending = [d for d in r.view.deliveries if d.overall_goods_movement_status != "C"]
    if not pending and any(leg.goods_issued for leg in r.view.legs):
        return []  # what shipped left; a rest that is owed is a BACKORDER
    if pending:
        doc = max(pending, key=lambda d: d.delivery_document)
        root = RootCause("wms", "OutboundDelivery", doc.delivery_document)
        text = f"Delivery {doc.delivery_document} was due to ship on {f.ship_by} and is not goods-issued."
    else:
        root = _sales_order_root(r)
        text = f"Sales order {f.sales_order} was due to ship on {f.ship_by}; nothing has been goods-issued."
    return [
        Finding(ExceptionKind.DISPATCH_MISSED, root, text, "Your order did not leave our plant on the planned day.")
    ]


def backorder(r: RuleInput) -> list[Finding]:
    """BACKORDER: goods of the order left the plant short; quantity that was due is still
    owed (until it ships or the item is cut). Its value at risk is the owed value."""
    view = r.view
    if not view.partially_shipped:
        return []
    items = {i.sales_order_item: i for i in view.sales_order.items}
    today = r.prediction_params.plant.local_date(r.now)  # schedule lines' days are the plant's
    owed = []
    for q in view.item_quantities:
        item = items.get(q.item)
        qty = owed_quantity(item, q, today) if item is not None else 0.0
        if qty > 0:
            price = q.open_value / q.open if q.open > 0 else 0.0
            owed.append((q, qty, round(qty * price, 2)))
    if not owed:
        return []
    so = view.sales_order
    value = round(sum(v for _q, _qty, v in owed), 2)
    lines = "; ".join(
        f"item {q.item} ({q.material}): {_qty(qty)} of {_qty(q.ordered)} {q.unit} owed, "
        f"{_qty(q.shipped)} shipped, {_qty(q.produced) if q.produced is not None else 'from stock'} produced"
        for q, qty, _v in owed
    )
    text = f"Sales order {so.sales_order} shipped short: {lines}; owed value {value:,.2f} {so.transaction_currency}."
    rest = ", ".join(f"{_qty(qty)} {q.unit} of {q.material}" for q, qty, _v in owed)
    return [
        Finding(
            ExceptionKind.BACKORDER,
            _sales_order_root(r),
            text,
            f"Part of your order has shipped; {rest} still to come.",
            value_at_risk=value,
        )
    ]


def _open_shipments(r: RuleInput):
    for leg in r.view.legs:
        if leg.shipment is not None and not shipment_delivered(leg.shipment):
            yield leg.shipment


def _shipment_root(shipment) -> RootCause:
    return RootCause("tms", "Shipment", shipment.tracking_number, shipment.carrier)


def _latest_description(shipment) -> str:
    events = sorted(shipment.events, key=lambda e: e.occurred_at)
    return (events[-1].description or events[-1].code) if events else shipment.tag


def carrier_delay(r: RuleInput) -> list[Finding]:
    """CARRIER_DELAY: the carrier's latest status is a delay (EDI 214 SD) or an exception."""
    out = []
    for s in _open_shipments(r):
        delayed = s.tag == "Exception" or (s.status_code == "SD" and s.tag != "AttemptFail")
        if not delayed:
            continue
        out.append(
            Finding(
                ExceptionKind.CARRIER_DELAY,
                _shipment_root(s),
                f"{s.carrier} shipment {s.tracking_number} reports a delay ({s.status_code or s.tag}: "
                f"{_latest_description(s)}); ETA {_at(shipment_eta(s))}.",
                "The carrier reports a delay in transit.",
            )
        )
    return out


def delivery_attempt_failed(r: RuleInput) -> list[Finding]:
    """DELIVERY_ATTEMPT_FAILED: the carrier tried to deliver and could not."""
    return [
        Finding(
            ExceptionKind.DELIVERY_ATTEMPT_FAILED,
            _shipment_root(s),
            f"{s.carrier} could not deliver shipment {s.tracking_number}: {_latest_description(s)}.",
            "The carrier could not deliver your order and will try again.",
        )
        for s in _open_shipments(r)
        if s.tag == "AttemptFail"
    ]


def eta_beyond_promise(r: RuleInput) -> list[Finding]:
    """ETA_BEYOND_PROMISE: the carrier's ETA falls after the promised delivery date."""
    promised = r.facts.promised
    ship_to = r.prediction_params.ship_to(r.view.customer)
    out = []
    for s in _open_shipments(r):
        eta = shipment_eta(s)
        if eta is None or ship_to.local_date(eta) <= promised:
            continue
        out.append(
            Finding(
                ExceptionKind.ETA_BEYOND_PROMISE,
                _shipment_root(s),
                f"{s.carrier} expects to deliver shipment {s.tracking_number} on {_at(eta)}, after the "
                f"promised date {promised}.",
                "The carrier now expects to deliver after the promised date.",
            )
        )
    return out


def promise_before_plan(r: RuleInput) -> list[Finding]:
    """PROMISE_BEFORE_PLAN: nothing of the order is in a delivery yet, and a schedule line
    plans its goods issue after the ship-by day the promise leaves (e.g. the customer
    pulled the date in and the ERP confirmed it): the plan cannot keep the promise."""
    view = r.view
    if r.facts.shipped or view.deliveries:
        return []
    day = r.facts.ship_by
    planned = [
        line.goods_issue_date
        for item in view.sales_order.items
        if not item.rejection_reason
        for line in item.schedule_lines
        if line.goods_issue_date is not None
    ]
    late = max(planned, default=None)
    if late is None or late <= day:
        return []
    return [
        Finding(
            ExceptionKind.PROMISE_BEFORE_PLAN,
            _sales_order_root(r),
            f"Sales order {r.facts.sales_order} is promised for {r.facts.promised} (ship by {day}), but its "
            f"schedule plans goods issue on {late}.",
            "The requested date comes before we can ship; we are working on it.",
        )
    ]


def shipment_overdue(r: RuleInput) -> list[Finding]:
    """SHIPMENT_OVERDUE: goods left the plant, the carrier's ETA passed, not delivered."""
    out = []
    for leg in r.view.legs:
        s = leg.shipment
        if s is None or shipment_delivered(s) or not leg.goods_issued:
            continue
        due = shipment_due_by(s)
        if due is None or r.now <= due:
            continue
        out.append(
            Finding(
                ExceptionKind.SHIPMENT_OVERDUE,
                _shipment_root(s),
                f"{s.carrier} shipment {s.tracking_number} was due by {_at(due)} and is not delivered "
                f"(last status {s.status_code or s.tag}: {_latest_description(s)}).",
                "Your delivery is taking longer than the carrier expected; we are following up with the carrier.",
            )
        )
    return out


def sources_read(view: OrderView, is_shipped: bool) -> set[str]:
    """The source systems the order's open part depends on."""
    systems = {"erp"}
    if not is_shipped:
        if view.production_orders:
            systems |= {"mes", "wms", "qms"}
        systems.add("wms")  # picking and goods issue
    if view.deliveries or view.shipments:
        systems.add("tms")
    return systems


def data_stale(r: RuleInput) -> list[Finding]:
    """DATA_STALE: a source the order depends on has been silent for too long."""
    return [
        Finding(
            ExceptionKind.DATA_STALE,
            RootCause(system, "SourceSystem", system, system.upper()),
            f"{system.upper()} has sent no data for too long; what this order shows from it may be out of date.",
            "Status information for your order may be delayed.",
        )
        for system in sorted(r.stale_sources & sources_read(r.view, r.facts.shipped))
    ]


RULES: dict[ExceptionKind, Rule] = {
    ExceptionKind.PRODUCTION_DELAY: production_delay,
    ExceptionKind.MACHINE_DOWN: machine_down,
    ExceptionKind.YIELD_SHORTFALL: yield_shortfall,
    ExceptionKind.MATERIAL_SHORTAGE: material_shortage,
    ExceptionKind.STOCK_BLOCKED: stock_blocked,
    ExceptionKind.QUALITY_HOLD: quality_hold,
    ExceptionKind.QUALITY_REJECTED: quality_rejected,
    ExceptionKind.CREDIT_BLOCK: credit_block,
    ExceptionKind.DELIVERY_BLOCK: delivery_block,
    ExceptionKind.DISPATCH_MISSED: dispatch_missed,
    ExceptionKind.CARRIER_DELAY: carrier_delay,
    ExceptionKind.DELIVERY_ATTEMPT_FAILED: delivery_attempt_failed,
    ExceptionKind.ETA_BEYOND_PROMISE: eta_beyond_promise,
    ExceptionKind.SHIPMENT_OVERDUE: shipment_overdue,
    ExceptionKind.BACKORDER: backorder,
    ExceptionKind.PROMISE_BEFORE_PLAN: promise_before_plan,
    ExceptionKind.DATA_STALE: data_stale,
}

# The kind a customer sees: blocks read as one kind, so credit status never shows.
_CUSTOMER_KINDS = {
    ExceptionKind.CREDIT_BLOCK: ExceptionKind.AWAITING_RELEASE,
    ExceptionKind.DELIVERY_BLOCK: ExceptionKind.AWAITING_RELEASE,
}


def customer_kind(kind: ExceptionKind) -> ExceptionKind:
    """The customer-safe kind: AWAITING_RELEASE for a credit or a delivery block."""
    return _CUSTOMER_KINDS.get(kind, kind)


def kinds_matching(kind: ExceptionKind) -> frozenset[ExceptionKind]:
    """The rule kinds a filter on ``kind`` selects (AWAITING_RELEASE: both blocks)."""
    if kind is ExceptionKind.AWAITING_RELEASE:
        return frozenset(_CUSTOMER_KINDS)
    return frozenset({kind})


def customer_text(facts: OrderFacts, text: str) -> str:
    """The customer-safe text of one order: the kind's text plus the new expected date
    (none while a block holds it: there is no date to give until it is released)."""
    if facts.late and not facts.held:
        return f"{text} We now expect to deliver on {facts.predicted.isoformat()}."
    return text


def detect(
    view: OrderView,
    customer: Customer | None,
    now: dt.datetime,
    *,
    params: ExceptionParams = ExceptionParams(),
    prediction_params: PredictionParams = PredictionParams(),
    stale_sources: Iterable[str] = (),
    prediction: Prediction | None = None,
) -> list[Detection]:
    """Every exception hitting one order, one detection per exception id (``prediction``:
    the order's, when the caller has it already). None once it is delivered or cancelled:
    its exceptions close."""
    if view.is_delivered or view.is_cancelled:
        return []
    facts = order_facts(view, customer, now, params=params, prediction_params=prediction_params, prediction=prediction)
    r = RuleInput(view, facts, now, params, prediction_params, frozenset(stale_sources))
    found: dict[str, Detection] = {}
    for rule in RULES.values():
        for finding in rule(r):
            eid = exception_id(finding.kind, finding.root)
            if eid in found:  # e.g. two items of one order on the same work centre
                continue
            found[eid] = Detection(
                kind=finding.kind,
                root=finding.root,
                sales_order=facts.sales_order,
                customer=facts.customer,
                commercial_priority=facts.commercial_priority,
                severity=facts.severity,
                days_late=facts.days_late,
                value_at_risk=facts.value_at_risk if finding.value_at_risk is None else finding.value_at_risk,
                net_value=facts.net_value,
                currency=facts.currency,
                promised_delivery_date=facts.promised,
                predicted_delivery_date=facts.predicted,
                work_centers=facts.work_centers,
                internal_text=finding.internal_text,
                customer_text=customer_text(facts, finding.customer_text),
                slack=facts.slack,
                held=facts.held,
            )
    return list(found.values())


def next_due(
    view: OrderView,
    now: dt.datetime,
    *,
    params: ExceptionParams = ExceptionParams(),
    prediction_params: PredictionParams = PredictionParams(),
) -> dt.datetime | None:
    """The next instant after ``now`` at which the order's exceptions may change with the
    clock alone (no source event): a scheduled start or a production delay's threshold
    passing, a work centre's expected repair, a component's receipt day, a lot's quality
    lead time, a carrier's ETA or the end of its window, the ship-by day (and 48 h before
    it), the promised day, the goods-issue day of a partly shipped order's schedule lines
    (a line nothing filled is owed once it is over). None when nothing is due (delivered,
    or nothing time-driven).

    Re-evaluating then finds what became true; evaluating a little early only finds the
    next due time (the prediction's own slow drift is left to the periodic sweep).
    """
    if view.is_delivered or view.is_cancelled:
        return None
    plant = prediction_params.plant
    ship_to = prediction_params.ship_to(view.customer)
    tolerance = dt.timedelta(hours=params.production_delay_tolerance_hours)
    lead = dt.timedelta(hours=prediction_params.quality_lead_hours)
    is_shipped = shipped(view)
    candidates: list[dt.datetime | None] = [ship_to.day_end(view.promised_delivery_date)]
    if not is_shipped:
        day = ship_by(view, prediction_params)
        candidates += [plant.day_end(day), plant.day_start(day) - dt.timedelta(hours=params.ships_soon_hours)]
        for po in view.active_production_orders:
            lot = view.latest_lot(po.manufacturing_order)
            if lot is not None and not lot_decided(lot):
                candidates.append(plant.add_working_time(lot.created_at, lead))
            if production_completed(po):
                continue
            work = scheduled_work(po, plant)
            if production_started(po):
                done = po.confirmed_yield_qty / po.total_quantity if po.total_quantity > 0 else 0.0
                left = work * (1 - min(max(done, 0.0), 1.0))
            else:
                left = work
                candidates.append(po.scheduled_start_date)
                candidates += [plant.day_start(c.expected_receipt_date) for c in view.components_for(po) if c.expected_receipt_date]
            # From then on the expected end passes the scheduled end by more than the tolerance.
            candidates.append(plant.subtract_working_time(_planned_end(po) + tolerance, left))
            wc = view.work_center_for(po)
            if wc is not None and wc.state.upper() == "DOWN":
                candidates += [wc.down_since, wc.expected_up_at]
                if not production_started(po) and po.scheduled_start_date is not None:
                    # A repair time unknown or passed counts as the default downtime from
                    # now: from then on the downtime reaches this order's start (MACHINE_DOWN).
                    candidates.append(
                        po.scheduled_start_date - dt.timedelta(hours=prediction_params.default_downtime_hours)
                    )
    if view.partially_shipped:
        # A schedule line nothing filled becomes owed (BACKORDER) once its goods-issue day is over.
        for item in view.sales_order.items:
            if item.rejection_reason:
                continue
            for line in item.schedule_lines:
                if line.goods_issue_date is not None:
                    candidates.append(plant.day_end(line.goods_issue_date))
                else:
                    candidates.append(plant.day_start(line.confirmed_delivery_date or line.requested_delivery_date))
    for leg in view.legs:
        s = leg.shipment
        if s is not None and not shipment_delivered(s):
            candidates += [shipment_eta(s), shipment_due_by(s)]
    future = [c for c in candidates if c is not None and c > now]
    return min(future, default=None)


# --- aggregation ----------------------------------------------------------------------------

_HEADLINES: dict[ExceptionKind, str] = {
    ExceptionKind.MACHINE_DOWN: "Work centre {key} ({label}) is down",
    ExceptionKind.PRODUCTION_DELAY: "Production on work centre {key} ({label}) is behind schedule",
    ExceptionKind.YIELD_SHORTFALL: "Production order {key} ({label}) fell short of its yield",
    ExceptionKind.MATERIAL_SHORTAGE: "Component {key} is short",
    ExceptionKind.STOCK_BLOCKED: "Component {key} is in unusable stock",
    ExceptionKind.QUALITY_HOLD: "Inspection lot {key} holds {label}",
    ExceptionKind.QUALITY_REJECTED: "Inspection lot {key} rejected {label}",
    ExceptionKind.CREDIT_BLOCK: "Sales order {key} is credit-blocked",
    ExceptionKind.DELIVERY_BLOCK: "Sales order {key} has a delivery block",
    ExceptionKind.AWAITING_RELEASE: "Sales order {key} awaits release",
    ExceptionKind.DISPATCH_MISSED: "{entity} {key} missed its ship date",
    ExceptionKind.CARRIER_DELAY: "{label} shipment {key} is delayed",
    ExceptionKind.DELIVERY_ATTEMPT_FAILED: "{label} could not deliver shipment {key}",
    ExceptionKind.ETA_BEYOND_PROMISE: "{label} ETA for shipment {key} is after the promise",
    ExceptionKind.SHIPMENT_OVERDUE: "{label} shipment {key} is past its ETA",
    ExceptionKind.BACKORDER: "Sales order {key} shipped short",
    ExceptionKind.PROMISE_BEFORE_PLAN: "Sales order {key} is promised before its plan can ship",
    ExceptionKind.DATA_STALE: "{label} has been silent for too long",
}
_CUSTOMER_TEXTS: dict[ExceptionKind, str] = {
    ExceptionKind.MACHINE_DOWN: "An equipment issue in our plant is holding up production.",
    ExceptionKind.PRODUCTION_DELAY: "Production is running behind schedule.",
    ExceptionKind.YIELD_SHORTFALL: "Part of the quantity has to be produced again.",
    ExceptionKind.MATERIAL_SHORTAGE: "A component arrives later than planned.",
    ExceptionKind.STOCK_BLOCKED: "A component is being checked before use.",
    ExceptionKind.QUALITY_HOLD: "Goods are in quality inspection.",
    ExceptionKind.QUALITY_REJECTED: "Goods did not pass quality inspection and are being made again.",
    ExceptionKind.CREDIT_BLOCK: "An order is on hold awaiting release.",
    ExceptionKind.DELIVERY_BLOCK: "An order is on hold awaiting release.",
    ExceptionKind.AWAITING_RELEASE: "An order is on hold awaiting release.",
    ExceptionKind.DISPATCH_MISSED: "Goods did not leave our plant on the planned day.",
    ExceptionKind.CARRIER_DELAY: "The carrier reports a delay in transit.",
    ExceptionKind.DELIVERY_ATTEMPT_FAILED: "The carrier could not deliver and will try again.",
    ExceptionKind.ETA_BEYOND_PROMISE: "The carrier expects to deliver after the promised date.",
    ExceptionKind.SHIPMENT_OVERDUE: "A delivery is taking longer than the carrier expected.",
    ExceptionKind.BACKORDER: "Part of an order has shipped; the rest is still to come.",
    ExceptionKind.PROMISE_BEFORE_PLAN: "The requested date comes before we can ship; we are working on it.",
    ExceptionKind.DATA_STALE: "Status information may be delayed.",
}
_ENTITY_WORDS = {"OutboundDelivery": "Delivery", "SalesOrder": "Sales order"}


@dataclasses.dataclass(slots=True)
class ExceptionRecord:
    """One exception: a kind and a root cause, with every order it hits.

    ``detected_at`` is when it was first raised (kept while it stays open);
    ``cleared_at`` is set once no order is affected any more.
    """

    id: str
    kind: ExceptionKind
    root: RootCause
    detected_at: dt.datetime
    affected: dict[str, Detection] = dataclasses.field(default_factory=dict)
    cleared_at: dt.datetime | None = None
    # What the properties below computed over the affected orders, for as long as the map
    # holds the same detections (checked on each read: see _over_affected).
    _kept: _OverAffected | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    @property
    def open(self) -> bool:
        """True until the exception is cleared."""
        return self.cleared_at is None

    def _over_affected(self) -> _OverAffected:
        """The affected orders' aggregates, kept between reads while the map is unchanged.

        A board page reads each of its exceptions' severity, value and orders on every
        request, and each walked (or sorted) every affected order in Python: at 100,000
        orders the first 20 exceptions hold 34,000. The check is one list comparison in C:
        identical (or equal: detections are frozen values) detections in the same map order
        give the same answers, so any change to the map, in place or not, computes again."""
        if not self.affected:  # cleared: one shared answer (thousands are kept a while)
            self._kept = None
            return _NONE_AFFECTED
        values = list(self.affected.values())
        kept = self._kept
        if kept is None or kept.values != values:
            kept = _OverAffected(values)
            # A cleared exception keeps its last orders for the record, and thousands are
            # kept a while: read once when journaled, rarely after. Computed when read.
            if self.cleared_at is None:
                self._kept = kept
        return kept

    @property
    def severity(self) -> Severity:
        """The most severe of its orders (LOW when none is left)."""
        kept = self._over_affected()
        if kept.severity is None:
            kept.severity = _most_severe(kept.values)
        return kept.severity

    @property
    def value_at_risk(self) -> float:
        """Sum of the affected orders' value at risk."""
        kept = self._over_affected()
        if kept.value_at_risk is None:
            kept.value_at_risk = round(sum(d.value_at_risk for d in kept.values), 2)
        return kept.value_at_risk

    @property
    def net_value(self) -> float:
        """Sum of the affected orders' net value."""
        kept = self._over_affected()
        if kept.net_value is None:
            kept.net_value = round(sum(d.net_value for d in kept.values), 2)
        return kept.net_value

    @property
    def days_late(self) -> int:
        """The most working days late of its orders."""
        kept = self._over_affected()
        if kept.days_late is None:
            kept.days_late = max((d.days_late for d in kept.values), default=0)
        return kept.days_late

    @property
    def currency(self) -> str:
        """Currency of the amounts (the orders' transaction currency)."""
        return next((d.currency for d in self.affected.values()), "EUR")

    @property
    def customers(self) -> set[str]:
        """Customers of the affected orders."""
        return {d.customer for d in self.affected.values()}

    @property
    def work_centers(self) -> set[str]:
        """The root work centre (if any) and the work centres of the affected orders."""
        out = {wc for d in self.affected.values() for wc in d.work_centers}
        if self.root.entity == "WorkCenter":
            out.add(self.root.key)
        return out

    def orders(self) -> list[Detection]:
        """Affected orders, most severe first, then by value at risk, then number (a new
        list each call: the sort is kept, see _over_affected)."""
        kept = self._over_affected()
        if kept.ordered is None:
            kept.ordered = sorted(kept.values, key=_affected_order)
        return list(kept.ordered)

    def orders_view(self, make: Callable[[list[Detection]], Any]) -> Any:
        """``make(self.orders())``, kept with the aggregates while the map is unchanged: the
        same object each call, so ``make`` must build a value nobody changes (a tuple), and
        be one function per use, the key it is kept by.

        A board page wraps each affected order of its exceptions for the schema on every
        request (34,000 at 100,000 orders); kept, a page reads the same wrappers again."""
        kept = self._over_affected()
        if kept is _NONE_AFFECTED:  # shared by every cleared exception: nothing written to it
            return make([])
        views = kept.views
        if views is None:
            views = kept.views = {}
        made = views.get(make, views)
        if made is views:
            if kept.ordered is None:
                kept.ordered = sorted(kept.values, key=_affected_order)
            made = views[make] = make(list(kept.ordered))
        return made

    @property
    def internal_text(self) -> str:
        """Internal one-line description: the root cause and how many orders it hits."""
        r = self.root
        headline = _HEADLINES[self.kind].format(
            key=r.key, label=r.label or r.key, entity=_ENTITY_WORDS.get(r.entity, r.entity)
        )
        n = len(self.affected)
        if not self.open:
            return f"{headline} (cleared)."
        return f"{headline}: {n} open order{'s' if n != 1 else ''} affected."

    @property
    def customer_text(self) -> str:
        """Customer-safe description, free of internal records and values."""
        return _CUSTOMER_TEXTS[self.kind]

    def sort_key(self) -> tuple[int, float, str]:
        """Board order: most severe first, then highest value at risk, then id."""
        return (-self.severity.rank, -self.value_at_risk, self.id)

    def copy(self) -> ExceptionRecord:
        """A copy whose affected map can change independently."""
        return dataclasses.replace(self, affected=dict(self.affected))

    def to_payload(self) -> dict[str, Any]:
        """JSON-ready form, as journaled with each transition."""
        return {
            "id": self.id,
            "kind": self.kind.value,
            "root": dataclasses.asdict(self.root),
            "detectedAt": self.detected_at.isoformat(),
            "clearedAt": self.cleared_at.isoformat() if self.cleared_at else None,
            "severity": self.severity.value,
            "valueAtRisk": self.value_at_risk,
            "daysLate": self.days_late,
            # a transition's snapshot: sorted here, not kept (the record changes on)
            "affected": [d.to_payload() for d in sorted(self.affected.values(), key=_affected_order)],
        }

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> ExceptionRecord:
        """Inverse of :meth:`to_payload`."""
        kind = ExceptionKind(data["kind"])
        root = RootCause(**data["root"])
        cleared = data.get("clearedAt")
        return cls(
            id=data["id"],
            kind=kind,
            root=root,
            detected_at=dt.datetime.fromisoformat(data["detectedAt"]),
            affected={
                d["salesOrder"]: Detection.from_payload(kind, root, d) for d in data.get("affected", ())
            },
            cleared_at=dt.datetime.fromisoformat(cleared) if cleared else None,
        )


class _OverAffected:
    """An exception's aggregates over one state of its affected map, each computed when
    first read (None until then)."""

    __slots__ = ("values", "severity", "value_at_risk", "net_value", "days_late", "ordered", "views")

    def __init__(self, values: list[Detection]) -> None:
        self.values = values
        self.severity: Severity | None = None
        self.value_at_risk: float | None = None
        self.net_value: float | None = None
        self.days_late: int | None = None
        self.ordered: list[Detection] | None = None
        self.views: dict[Any, Any] | None = None  # orders_view: by the function that made them


def _none_affected() -> _OverAffected:
    out = _OverAffected([])
    # as the properties compute them over no orders (the sums are the int 0, as ever)
    out.severity, out.days_late, out.ordered = Severity.LOW, 0, []
    out.value_at_risk = out.net_value = round(sum(()), 2)
    return out


# Shared: its values are filled in, so no reader writes to it (orders() copies its list).
_NONE_AFFECTED = _none_affected()


# -Severity.rank by the member's name: a C lookup, not the property (a list search) and not
# the member's own hash (Enum.__hash__ is Python); the sort of a large exception's orders
# and its severity call these once per order.
_NEGATIVE_RANK = {s._name_: -s.rank for s in Severity}
_BY_NAME = {s._name_: s for s in Severity}


def _affected_order(d: Detection) -> tuple[int, float, str]:
    return (_NEGATIVE_RANK[d.severity._name_], -d.value_at_risk, d.sales_order)


def _most_severe(values: list[Detection]) -> Severity:
    """The highest-ranked severity of ``values`` (LOW when there are none)."""
    names = {d.severity._name_ for d in values}
    return _BY_NAME[min(names, key=_NEGATIVE_RANK.__getitem__)] if names else Severity.LOW


def aggregate(detections: Iterable[Detection], detected_at: dt.datetime) -> dict[str, ExceptionRecord]:
    """Group detections into exceptions by id."""
    out: dict[str, ExceptionRecord] = {}
    for d in detections:
        record = out.get(d.id)
        if record is None:
            record = out[d.id] = ExceptionRecord(d.id, d.kind, d.root, detected_at)
        record.affected[d.sales_order] = d
    return out


def priority_rank(commercial_priority: str) -> int:
    """0 for STRATEGIC … 3 for LOW (unknown priorities rank as NORMAL)."""
    try:
        return COMMERCIAL_PRIORITIES.index(commercial_priority)
    except ValueError:
        return COMMERCIAL_PRIORITIES.index("NORMAL")


class ExceptionSource(Protocol):
    """What resolvers need of the gateway's exception tracker (``gateway/exception_tracker.py``)."""

    params: ExceptionParams
    prediction_params: PredictionParams

    def open_exceptions(self) -> list[ExceptionRecord]:
        """Open exceptions, in no particular order."""
        ...

    def closed_exceptions(self) -> list[ExceptionRecord]:
        """Recently cleared exceptions (bounded), in no particular order."""
        ...

    def get(self, exception_id: str) -> ExceptionRecord | None:
        """An open or recently cleared exception by id."""
        ...

    def board(self, closed: bool = False) -> Any:
        """The open (or recently cleared) exceptions in board order, up to date with every
        change (``resolvers.exception_board.Board``)."""
        ...

    def stale_sources(self) -> frozenset[str]:
        """Source systems currently considered stale (DATA_STALE)."""
        ...

    @property
    def last_cursor(self) -> int:
        """Cursor of the latest transition the open set reflects."""
        ...

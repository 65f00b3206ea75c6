"""The derived values of one order that listings filter and sort on.

Pure functions over an ``OrderView`` (no I/O): stage, delivery risk, predicted date, days
late, open exception count, value and commercial priority — computed exactly as the
``Order`` fields compute them, so an index of these (``gateway/order_index.py``) can be
checked against the fields one order at a time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Hashable, Iterable

from sources import namespaces as ns
from sources.records import Customer

from . import prediction, stage
from .enums import DeliveryRisk, OrderStage
from .exception_rules import Detection, ExceptionParams, order_facts, priority_rank
from .prediction import Prediction, PredictionParams
from .view import OrderView, production_completed

# Sorts a planner asks for, each in its useful direction; ties by sales order number.
SALES_ORDER = "SALES_ORDER"  # number order (the ERP listing's order)
PREDICTED_DATE = "PREDICTED_DATE"  # earliest predicted delivery first; held orders (no date) last
DAYS_LATE = "DAYS_LATE"  # most working days late first
VALUE = "VALUE"  # highest net value first
PRIORITY = "PRIORITY"  # STRATEGIC first … LOW last; then most days late
SORTS = (SALES_ORDER, PREDICTED_DATE, DAYS_LATE, VALUE, PRIORITY)

_NO_DATE = dt.date.max.toordinal()


@dataclasses.dataclass(frozen=True, slots=True)
class DerivedValues:
    """What an order listing filters and sorts on, for one order at one instant."""

    sales_order: str
    customer: str
    stage: OrderStage
    risk: DeliveryRisk
    predicted: dt.date | None  # None while a block holds the order (as ``predictedDeliveryDate``)
    days_late: int
    value: float  # the order's net value
    priority: str  # the customer's commercial priority (NORMAL when unknown)
    open_exceptions: int
    confirmed: dt.date | None  # the header's confirmed delivery date (``confirmedBefore``)
    # Where it came from: the records whose change may change it.
    production_orders: tuple[str, ...] = ()
    work_centers: tuple[str, ...] = ()
    deliveries: tuple[str, ...] = ()
    # The work centres with a production order of this order not completed: the queues it
    # waits in (a ``workCenterDown`` what-if's pegged orders, ``resolvers/queued.py``).
    queued_on: tuple[str, ...] = ()

    def sort_key(self, sort: str) -> tuple:
        """The position of this order in a listing sorted by ``sort``."""
        so = self.sales_order
        if sort == PREDICTED_DATE:
            return (self.predicted.toordinal() if self.predicted is not None else _NO_DATE, so)
        if sort == DAYS_LATE:
            return (-self.days_late, so)
        if sort == VALUE:
            return (-self.value, so)
        if sort == PRIORITY:
            return (priority_rank(self.priority), -self.days_late, so)
        return (so,)


def order_cache_keys(sales_order: str) -> list[Hashable]:
    """The keys an order's view reads first: the order, its production orders, its deliveries."""
    so = sales_order
    return [(ns.SALES_ORDER, so), (ns.PRODUCTION_ORDERS_BY_SALES_ORDER, so), (ns.DELIVERIES_BY_SALES_ORDER, so)]


def documents_cache_keys(production_orders: Iterable[str], deliveries: Iterable[str]) -> list[Hashable]:
    """The keys read next: each production order's components and inspection lots, each
    delivery's shipments."""
    mos = tuple(production_orders)
    keys: list[Hashable] = [(ns.COMPONENTS_BY_PRODUCTION_ORDER, mo) for mo in mos]
    keys += [(ns.LOTS_BY_PRODUCTION_ORDER, mo) for mo in mos]
    keys += [(ns.SHIPMENTS_BY_DELIVERY, dd) for dd in deliveries]
    return keys


def derive(
    view: OrderView,
    customer: Customer | None,
    now: dt.datetime,
    *,
    detections: list[Detection] | None = None,
    prediction_params: PredictionParams = PredictionParams(),
    params: ExceptionParams = ExceptionParams(),
    pred: Prediction | None = None,
) -> DerivedValues:
    """The derived values of one order now; ``detections`` (the exception rules' findings
    for it) give the open exception count when known."""
    so = view.sales_order
    p = pred if pred is not None else prediction.predict(view, now, prediction_params)
    risk = prediction.delivery_risk(view, p, now, prediction_params)
    if view.is_delivered or view.is_cancelled:
        days_late = 0
    else:
        days_late = order_facts(view, customer, now, params=params, prediction_params=prediction_params, prediction=p).days_late
    priority = (customer.commercial_priority if customer else None) or "NORMAL"
    return DerivedValues(
        sales_order=so.sales_order,
        customer=so.sold_to_party,
        stage=stage.stage(view),
        risk=risk,
        predicted=None if p.held_by else p.predicted_delivery_date,
        days_late=days_late,
        value=float(so.total_net_amount),
        priority=priority,
        open_exceptions=len(detections) if detections is not None else 0,
        confirmed=so.confirmed_delivery_date,
        production_orders=tuple(po.manufacturing_order for po in view.production_orders),
        work_centers=tuple(sorted({po.work_center for po in view.production_orders if po.work_center})),
        deliveries=tuple(d.delivery_document for d in view.deliveries),
        queued_on=queued_on(view),
    )


def queued_on(view: OrderView) -> tuple[str, ...]:
    """The work centres with a production order of the order not completed, sorted."""
    return tuple(sorted({po.work_center for po in view.production_orders if po.work_center and not production_completed(po)}))

"""From a source event to what it touches: the cached records and the affected orders.

Some events name the sales order; others need look-ups along the join chain
(batch → production order → sales order; tracking number → delivery → sales order).
Look-ups go straight to the sources (not the cache), so an event is never mapped with
data older than itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from sources import Sources
from sources import namespaces as ns
from sources.events import SourceEvent

# Production orders in these statuses no longer need their work centre.
FINISHED = frozenset({"CONFIRMED", "DELIVERED", "TECO", "CLOSED"})


@dataclasses.dataclass(slots=True)
class Impact:
    """Cache keys to invalidate and the sales orders whose view changed."""

    keys: set[tuple[str, str]] = dataclasses.field(default_factory=set)
    orders: set[str] = dataclasses.field(default_factory=set)


async def _sales_order_of_production_order(sources: Sources, mo: str) -> str | None:
    po = (await sources.mes.production_orders([mo])).get(mo)
    return po.sales_order if po else None


async def _sales_order_of_delivery(sources: Sources, dd: str) -> str | None:
    d = (await sources.wms.deliveries([dd])).get(dd)
    return d.sales_order if d else None


# The cache namespace each entity's events touch (when their exact keys cannot be found).
NAMESPACE_OF_ENTITY = {
    "SalesOrder": ns.SALES_ORDER,
    "ProductionOrder": ns.PRODUCTION_ORDERS_BY_SALES_ORDER,
    "WorkCenter": ns.WORK_CENTER,
    "ComponentAvailability": ns.COMPONENTS_BY_PRODUCTION_ORDER,
    "OutboundDelivery": ns.DELIVERIES_BY_SALES_ORDER,
    "InspectionLot": ns.LOTS_BY_PRODUCTION_ORDER,
    "Shipment": ns.SHIPMENTS_BY_DELIVERY,
}


async def impact_of(event: SourceEvent, sources: Sources, *, orders: bool = True) -> Impact:
    """What ``event`` touches. Raises ``SourceError`` when a look-up fails (retry later).

    ``orders=False``: the cache keys only, skipping the look-ups that only find orders
    (what ``POST /events`` invalidates before it answers)."""
    out = Impact()
    refs = event.refs
    rec = event.record
    if event.entity == "SalesOrder":
        out.keys.add((ns.SALES_ORDER, event.key))
        if event.action == "Created":  # a new order joins the listings
            out.keys.add(ns.LISTING_KEY)
        out.orders.add(event.key)
    elif event.entity == "ProductionOrder":
        so = getattr(rec, "sales_order", None) or refs.get("SalesOrder")
        so = so or await _sales_order_of_production_order(sources, event.key)
        if so:
            out.keys.add((ns.PRODUCTION_ORDERS_BY_SALES_ORDER, so))
            out.orders.add(so)
    elif event.entity == "WorkCenter":
        out.keys.add((ns.WORK_CENTER, event.key))
        if orders:
            pos = (await sources.mes.production_orders_for_work_centers([event.key])).get(event.key, [])
            out.orders.update(po.sales_order for po in pos if po.status not in FINISHED)
    elif event.entity == "ComponentAvailability":
        mo = getattr(rec, "manufacturing_order", None) or refs.get("ManufacturingOrder")
        if not mo:
            comp = (await sources.wms.components([event.key])).get(event.key)
            mo = comp.manufacturing_order if comp else None
        if mo:
            out.keys.add((ns.COMPONENTS_BY_PRODUCTION_ORDER, mo))
            so = await _sales_order_of_production_order(sources, mo) if orders else None
            if so:
                out.orders.add(so)
    elif event.entity == "OutboundDelivery":
        so = getattr(rec, "sales_order", None) or refs.get("ReferenceSDDocument") or refs.get("SalesOrder")
        so = so or await _sales_order_of_delivery(sources, event.key)
        if so:
            out.keys.add((ns.DELIVERIES_BY_SALES_ORDER, so))
            out.orders.add(so)
    elif event.entity == "InspectionLot":
        mo = getattr(rec, "manufacturing_order", None) or refs.get("ManufacturingOrder")
        if not mo:
            lot = (await sources.qms.inspection_lots([event.key])).get(event.key)
            mo = lot.manufacturing_order if lot else None
        if mo:
            out.keys.add((ns.LOTS_BY_PRODUCTION_ORDER, mo))
            so = refs.get("SalesOrder") or (await _sales_order_of_production_order(sources, mo) if orders else None)
            if so:
                out.orders.add(so)
    elif event.entity == "Shipment":
        dd = getattr(rec, "delivery_document", None) or refs.get("DeliveryDocument")
        if not dd:
            ship = (await sources.tms.shipments([event.key])).get(event.key)
            dd = ship.delivery_document if ship else None
        if dd:
            out.keys.add((ns.SHIPMENTS_BY_DELIVERY, dd))
            so = refs.get("SalesOrder") or (await _sales_order_of_delivery(sources, dd) if orders else None)
            if so:
                out.orders.add(so)
    return out


async def last_change_of(event: SourceEvent, sources: Sources) -> dt.datetime | None:
    """The LastChangeDateTime of the record ``event`` names, read from its source now (None
    when the source does not know it). Raises ``SourceError`` when the read fails."""
    key = [event.key]
    readers = {
        "SalesOrder": sources.erp.sales_orders,
        "ProductionOrder": sources.mes.production_orders,
        "WorkCenter": sources.mes.work_centers,
        "ComponentAvailability": sources.wms.components,
        "OutboundDelivery": sources.wms.deliveries,
        "InspectionLot": sources.qms.inspection_lots,
        "Shipment": sources.tms.shipments,
    }
    read = readers.get(event.entity)
    if read is None:
        return None
    record = (await read(key)).get(event.key)
    return getattr(record, "last_change_date_time", None)

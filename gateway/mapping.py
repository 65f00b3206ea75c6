"""From a source event to what it touches: the cached records and the affected orders.

Some events name the sales order; others need look-ups along the join chain
(batch → production order → sales order; tracking number → delivery → sales order).
Look-ups go straight to the sources (not the cache), so an event is never mapped with
data older than itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

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

    ``orders=False``: the cache keys only, skipping the look-ups that only find orders."""
    [impact], _ = await impacts_of([event], sources, orders=orders)
    return impact


class Lookups:
    """Records read at the sources while mapping a batch of events, by kind and key: the
    look-ups of one batch are made once, and what they found serves later steps too (the
    records' last change)."""

    def __init__(self) -> None:
        self.by_kind: dict[str, dict[str, Any]] = {}

    def found(self, kind: str) -> dict[str, Any]:
        return self.by_kind.setdefault(kind, {})

    def merge(self, other: Lookups) -> None:
        """Take what ``other`` read too."""
        for kind, found in other.by_kind.items():
            self.found(kind).update(found)

    def record(self, entity: str, key: str) -> tuple[bool, Any]:
        """(read already, the record or None) of the record an event of ``entity`` names."""
        kind = _KIND_OF_ENTITY.get(entity)
        found = self.by_kind.get(kind or "", {})
        return (key in found, found.get(key))


# Look-up kind -> the source read that answers it (a batch read by keys).
_READS: dict[str, Callable[[Sources], Callable[[list[str]], Awaitable[dict[str, Any]]]]] = {
    "po": lambda s: s.mes.production_orders,
    "wc_pos": lambda s: s.mes.production_orders_for_work_centers,
    "comp": lambda s: s.wms.components,
    "dlv": lambda s: s.wms.deliveries,
    "lot": lambda s: s.qms.inspection_lots,
    "ship": lambda s: s.tms.shipments,
    "so": lambda s: s.erp.sales_orders,
    "wc": lambda s: s.mes.work_centers,
}
# The kind whose record is the one an event of the entity names.
_KIND_OF_ENTITY = {
    "SalesOrder": "so",
    "ProductionOrder": "po",
    "WorkCenter": "wc",
    "ComponentAvailability": "comp",
    "OutboundDelivery": "dlv",
    "InspectionLot": "lot",
    "Shipment": "ship",
}


async def _read_round(sources: Sources, lookups: Lookups, wanted: dict[str, set[str]]) -> None:
    """One round of reads: one call per kind, all kinds at once; skips keys read already."""
    calls = []
    for kind, keys in wanted.items():
        todo = sorted(k for k in keys if k not in lookups.found(kind))
        if todo:
            calls.append((kind, todo, _READS[kind](sources)(todo)))
    if not calls:
        return
    results = await asyncio.gather(*(c for _, _, c in calls))
    for (kind, keys, _), found in zip(calls, results, strict=True):
        into = lookups.found(kind)
        for key in keys:
            into[key] = found.get(key)


def first_read(e: SourceEvent, *, orders: bool) -> tuple[str, str] | None:
    """The read (kind, key) the event's impact needs first, or None when the event itself
    names what it touches (its record or its join keys)."""
    rec, refs = e.record, e.refs
    if e.entity == "ProductionOrder" and not (getattr(rec, "sales_order", None) or refs.get("SalesOrder")):
        return ("po", e.key)
    if e.entity == "WorkCenter" and orders:
        return ("wc_pos", e.key)
    if e.entity == "ComponentAvailability" and not (getattr(rec, "manufacturing_order", None) or refs.get("ManufacturingOrder")):
        return ("comp", e.key)
    if e.entity == "OutboundDelivery" and not (
        getattr(rec, "sales_order", None) or refs.get("ReferenceSDDocument") or refs.get("SalesOrder")
    ):
        return ("dlv", e.key)
    if e.entity == "InspectionLot" and not (getattr(rec, "manufacturing_order", None) or refs.get("ManufacturingOrder")):
        return ("lot", e.key)
    if e.entity == "Shipment" and not (getattr(rec, "delivery_document", None) or refs.get("DeliveryDocument")):
        return ("ship", e.key)
    return None


async def impacts_of(
    events: Sequence[SourceEvent], sources: Sources, *, orders: bool = True, lookups: Lookups | None = None
) -> tuple[list[Impact], Lookups]:
    """What each of ``events`` touches, with the look-ups of all of them made together: at
    most two rounds of reads (the record an event does not describe; then the order of a
    production order or delivery found that way), one call per source read per round.
    Raises ``SourceError`` when a read fails. Also returns what was read (``Lookups``)."""
    lookups = lookups or Lookups()
    out = [Impact() for _ in events]
    first: dict[str, set[str]] = {}
    for e in events:
        if (read := first_read(e, orders=orders)) is not None:
            first.setdefault(read[0], set()).add(read[1])
    await _read_round(sources, lookups, first)

    def mo_of(e: SourceEvent, kind: str) -> str | None:
        mo = getattr(e.record, "manufacturing_order", None) or e.refs.get("ManufacturingOrder")
        if not mo:
            found = lookups.found(kind).get(e.key)
            mo = found.manufacturing_order if found else None
        return mo

    def dd_of(e: SourceEvent) -> str | None:
        dd = getattr(e.record, "delivery_document", None) or e.refs.get("DeliveryDocument")
        if not dd:
            ship = lookups.found("ship").get(e.key)
            dd = ship.delivery_document if ship else None
        return dd

    second: dict[str, set[str]] = {}
    if orders:
        for e in events:
            if e.entity == "ComponentAvailability" and (mo := mo_of(e, "comp")):
                second.setdefault("po", set()).add(mo)
            elif e.entity == "InspectionLot" and not e.refs.get("SalesOrder") and (mo := mo_of(e, "lot")):
                second.setdefault("po", set()).add(mo)
            elif e.entity == "Shipment" and not e.refs.get("SalesOrder") and (dd := dd_of(e)):
                second.setdefault("dlv", set()).add(dd)
    await _read_round(sources, lookups, second)

    def so_of_po(mo: str) -> str | None:
        po = lookups.found("po").get(mo)
        return po.sales_order if po else None

    def so_of_delivery(dd: str) -> str | None:
        d = lookups.found("dlv").get(dd)
        return d.sales_order if d else None

    for e, impact in zip(events, out, strict=True):
        rec, refs = e.record, e.refs
        if e.entity == "SalesOrder":
            impact.keys.add((ns.SALES_ORDER, e.key))
            if e.action == "Created":  # a new order joins the listings
                impact.keys.add(ns.LISTING_KEY)
            impact.orders.add(e.key)
        elif e.entity == "ProductionOrder":
            so = getattr(rec, "sales_order", None) or refs.get("SalesOrder") or so_of_po(e.key)
            if so:
                impact.keys.add((ns.PRODUCTION_ORDERS_BY_SALES_ORDER, so))
                impact.orders.add(so)
        elif e.entity == "WorkCenter":
            impact.keys.add((ns.WORK_CENTER, e.key))
            if orders:
                pos = lookups.found("wc_pos").get(e.key) or []
                impact.orders.update(po.sales_order for po in pos if po.status not in FINISHED)
        elif e.entity == "ComponentAvailability":
            if mo := mo_of(e, "comp"):
                impact.keys.add((ns.COMPONENTS_BY_PRODUCTION_ORDER, mo))
                if orders and (so := so_of_po(mo)):
                    impact.orders.add(so)
        elif e.entity == "OutboundDelivery":
            so = getattr(rec, "sales_order", None) or refs.get("ReferenceSDDocument") or refs.get("SalesOrder")
            so = so or so_of_delivery(e.key)
            if so:
                impact.keys.add((ns.DELIVERIES_BY_SALES_ORDER, so))
                impact.orders.add(so)
        elif e.entity == "InspectionLot":
            if mo := mo_of(e, "lot"):
                impact.keys.add((ns.LOTS_BY_PRODUCTION_ORDER, mo))
                so = refs.get("SalesOrder") or (so_of_po(mo) if orders else None)
                if so:
                    impact.orders.add(so)
        elif e.entity == "Shipment":
            if dd := dd_of(e):
                impact.keys.add((ns.SHIPMENTS_BY_DELIVERY, dd))
                so = refs.get("SalesOrder") or (so_of_delivery(dd) if orders else None)
                if so:
                    impact.orders.add(so)
    return out, lookups


async def last_changes_of(
    events: Sequence[SourceEvent], sources: Sources, lookups: Lookups | None = None
) -> list[dt.datetime | None]:
    """The LastChangeDateTime of the record each event names, read from its source (None
    when the source does not know it); records ``lookups`` already read are not read again,
    the rest in one round. Raises ``SourceError`` when a read fails."""
    lookups = lookups or Lookups()
    wanted: dict[str, set[str]] = {}
    for e in events:
        kind = _KIND_OF_ENTITY.get(e.entity)
        if kind is not None:
            wanted.setdefault(kind, set()).add(e.key)
    await _read_round(sources, lookups, wanted)
    out: list[dt.datetime | None] = []
    for e in events:
        _, record = lookups.record(e.entity, e.key)
        out.append(getattr(record, "last_change_date_time", None))
    return out


async def last_change_of(event: SourceEvent, sources: Sources) -> dt.datetime | None:
    """The LastChangeDateTime of the record ``event`` names, read from its source now (None
    when the source does not know it). Raises ``SourceError`` when the read fails."""
    [changed] = await last_changes_of([event], sources)
    return changed

"""How current each section of an order is: which source answered, as of when, stale or not.

The loaders log how they served every (namespace, key) of a request (``loaders.Served``:
source, fetch time, served from the last good value). A section's freshness reads that
log for the keys it shows, plus the records' own ``LastChangeDateTime``. A source whose
read failed in this request has no entry: the section's data fields carry its error.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import strawberry

from sources.client import SourceError
from sources.namespaces import (
    COMPONENTS_BY_PRODUCTION_ORDER,
    DELIVERIES_BY_SALES_ORDER,
    LOTS_BY_PRODUCTION_ORDER,
    PRODUCTION_ORDERS_BY_SALES_ORDER,
    SALES_ORDER,
    SHIPMENTS_BY_DELIVERY,
    SOURCE_OF_NAMESPACE,
    WORK_CENTER,
)
from sources.records import SalesOrder

from . import fetch
from .context import Context

T = TypeVar("T")


@strawberry.type(description="How current one source's part of a section is.")
class Freshness:
    source: str = strawberry.field(description="The source system that answered: erp, mes, wms, qms or tms.")
    as_of: dt.datetime = strawberry.field(
        description="The records' own last change (LastChangeDateTime) where they have one, else when the source answered."
    )
    fetched_at: dt.datetime = strawberry.field(
        description="When the source answered (for a cached answer: when it was fetched)."
    )
    stale: bool = strawberry.field(
        description="Served from the last good answer because the source failed, or fetched longer ago than "
        "the source's staleness threshold; for MES in the production section also while the shop floor's "
        "MQTT picture of a work centre the order runs on is lost (a death or a missed message, until it is "
        "born again)."
    )


@dataclasses.dataclass(slots=True)
class Part:
    """Records a section shows, and the loader keys they came from."""

    namespace: str
    keys: Sequence[str]
    records: Sequence[Any]


def freshness(ctx: Context, parts: Sequence[Part]) -> list[Freshness]:
    """One ``Freshness`` per source feeding ``parts``, in source order of first appearance."""
    by_source: dict[str, list[Part]] = {}
    for part in parts:
        by_source.setdefault(SOURCE_OF_NAMESPACE[part.namespace], []).append(part)
    out = []
    for source, group in by_source.items():
        client = ctx.sources.client(source)
        # Wall time (the gateway's clock), not ctx.now: the domain clock may run faster.
        now = client.resilience.clock()
        fetched: list[dt.datetime] = []
        stale = False
        changed: list[dt.datetime] = []
        for part in group:
            for key in part.keys:
                served = ctx.loaders.served.get((part.namespace, key))
                # Not logged: primed from a listing that this request just read.
                fetched.append(served.fetched_at if served else now)
                stale = stale or (served is not None and served.stale)
            changed += [t for r in part.records if (t := getattr(r, "last_change_date_time", None))]
        fetched_at = min(fetched, default=now)
        stale = stale or (now - fetched_at).total_seconds() > client.policy.stale_after_seconds
        out.append(Freshness(source=source, as_of=max(changed, default=fetched_at), fetched_at=fetched_at, stale=stale))
    return out


async def _ok(aw: Awaitable[T]) -> T | None:
    """The awaited value, or None when its source failed (the data fields report it)."""
    try:
        return await aw
    except SourceError:
        return None


async def of_order(ctx: Context, so: SalesOrder) -> list[Freshness]:
    """The order's own (ERP) fields."""
    return freshness(ctx, [Part(SALES_ORDER, [so.sales_order], [so])])


async def of_production(ctx: Context, so: SalesOrder) -> list[Freshness]:
    pos = await _ok(fetch.production_orders(ctx, so.sales_order))
    out = freshness(ctx, [Part(PRODUCTION_ORDERS_BY_SALES_ORDER, [so.sales_order], pos)] if pos is not None else [])
    if pos:
        # The shop floor's picture of a work centre these orders run on was lost (MQTT death
        # or seq gap): MES data about them is not to be trusted until the next birth. The
        # answer depends on the work centres (their stale notices invalidate these keys).
        wcs = {po.work_center for po in pos}
        ctx.deps.update((WORK_CENTER, wc) for wc in wcs)
        if any(wc in ctx.stale_work_centers for wc in wcs):
            out = [dataclasses.replace(f, stale=True) if f.source == "mes" else f for f in out]
    return out


async def _by_production_order(ctx: Context, so: SalesOrder, namespace: str, load: Any) -> list[Freshness]:
    pos = await _ok(fetch.production_orders(ctx, so.sales_order))
    if pos is None:
        return []
    parts = [Part(PRODUCTION_ORDERS_BY_SALES_ORDER, [so.sales_order], pos)]
    mos = [po.manufacturing_order for po in pos]
    records = await _ok(load(ctx, so.sales_order))
    if records is not None:
        parts.append(Part(namespace, mos, records))
    return freshness(ctx, parts)


async def of_materials(ctx: Context, so: SalesOrder) -> list[Freshness]:
    """MES (which production orders) and WMS (their components)."""
    return await _by_production_order(ctx, so, COMPONENTS_BY_PRODUCTION_ORDER, fetch.components)


async def of_quality(ctx: Context, so: SalesOrder) -> list[Freshness]:
    """MES (which production orders) and QMS (their inspection lots)."""
    return await _by_production_order(ctx, so, LOTS_BY_PRODUCTION_ORDER, fetch.inspection_lots)


async def of_logistics(ctx: Context, so: SalesOrder) -> list[Freshness]:
    """WMS (deliveries) and TMS (their shipments)."""
    dels = await _ok(fetch.deliveries(ctx, so.sales_order))
    if dels is None:
        return []
    parts = [Part(DELIVERIES_BY_SALES_ORDER, [so.sales_order], dels)]
    ships = await _ok(fetch.shipments(ctx, so.sales_order))
    if ships is not None:
        parts.append(Part(SHIPMENTS_BY_DELIVERY, [d.delivery_document for d in dels], ships))
    return freshness(ctx, parts)

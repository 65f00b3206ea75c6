"""Fetching an order's records through the request's loaders.

Each function loads only what it needs, so a section's source is called only when one of
its fields is selected; the loaders batch the calls of all orders of a request.
Resolution levels: ERP (sales order) → MES + WMS (production orders, deliveries)
→ MES + WMS + QMS + TMS (work centres, components, inspection lots, shipments).
"""

from __future__ import annotations

import asyncio

from sources.records import (
    ComponentAvailability,
    InspectionLot,
    OutboundDelivery,
    ProductionOrder,
    SalesOrder,
    Shipment,
    WorkCenter,
)

from .context import Context
from .view import OrderView


def _flatten(lists: list[list]) -> list:
    return [x for xs in lists for x in xs]


async def production_orders(ctx: Context, sales_order: str) -> list[ProductionOrder]:
    return await ctx.loaders.production_orders.load(sales_order)


async def work_centers(ctx: Context, orders: list[ProductionOrder]) -> dict[str, WorkCenter]:
    ids = sorted({po.work_center for po in orders})
    found = await ctx.loaders.work_center.load_many(ids)
    return {wc.work_center: wc for wc in found if wc is not None}


async def components(ctx: Context, sales_order: str) -> list[ComponentAvailability]:
    pos = await production_orders(ctx, sales_order)
    return _flatten(await ctx.loaders.components.load_many([po.manufacturing_order for po in pos]))


async def inspection_lots(ctx: Context, sales_order: str) -> list[InspectionLot]:
    pos = await production_orders(ctx, sales_order)
    return _flatten(await ctx.loaders.inspection_lots.load_many([po.manufacturing_order for po in pos]))


async def deliveries(ctx: Context, sales_order: str) -> list[OutboundDelivery]:
    return await ctx.loaders.deliveries.load(sales_order)


async def shipments(ctx: Context, sales_order: str) -> list[Shipment]:
    dels = await deliveries(ctx, sales_order)
    return _flatten(await ctx.loaders.shipments.load_many([d.delivery_document for d in dels]))


async def order_view(ctx: Context, so: SalesOrder) -> OrderView:
    """Every record of one order (all five systems), memoised per request."""
    pending = ctx.views.get(so.sales_order)
    if pending is None:
        pending = asyncio.ensure_future(_assemble(ctx, so))
        ctx.views[so.sales_order] = pending
    return await pending


async def _assemble(ctx: Context, so: SalesOrder) -> OrderView:
    pos, dels = await asyncio.gather(
        ctx.loaders.production_orders.load(so.sales_order), ctx.loaders.deliveries.load(so.sales_order)
    )
    mos = [po.manufacturing_order for po in pos]
    wcs, comps, lots, ships = await asyncio.gather(
        work_centers(ctx, pos),
        ctx.loaders.components.load_many(mos),
        ctx.loaders.inspection_lots.load_many(mos),
        ctx.loaders.shipments.load_many([d.delivery_document for d in dels]),
    )
    return OrderView(
        sales_order=so,
        production_orders=pos,
        work_centers=wcs,
        components=_flatten(comps),
        inspection_lots=_flatten(lots),
        deliveries=dels,
        shipments=_flatten(ships),
    )

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
    Customer,
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
    ready = ctx.ready.get(so.sales_order)
    if ready is not None:
        return ready
    pending = ctx.views.get(so.sales_order)
    if pending is None:
        pending = asyncio.ensure_future(_assemble(ctx, so))
        ctx.views[so.sales_order] = pending
    return await pending


async def production_view(ctx: Context, so: SalesOrder) -> OrderView:
    """The order's view of MES only: production orders and their work centres."""
    pos = await production_orders(ctx, so.sales_order)
    return OrderView(sales_order=so, production_orders=pos, work_centers=await work_centers(ctx, pos))


async def materials_view(ctx: Context, so: SalesOrder) -> OrderView:
    """The order's view of its production orders and their components."""
    pos, comps = await asyncio.gather(production_orders(ctx, so.sales_order), components(ctx, so.sales_order))
    return OrderView(sales_order=so, production_orders=pos, components=comps)


async def quality_view(ctx: Context, so: SalesOrder) -> OrderView:
    """The order's view of its production orders and their inspection lots."""
    pos, lots = await asyncio.gather(production_orders(ctx, so.sales_order), inspection_lots(ctx, so.sales_order))
    return OrderView(sales_order=so, production_orders=pos, inspection_lots=lots)


async def logistics_view(ctx: Context, so: SalesOrder) -> OrderView:
    """The order's view of its deliveries and shipments."""
    dels, ships = await asyncio.gather(deliveries(ctx, so.sales_order), shipments(ctx, so.sales_order))
    return OrderView(sales_order=so, deliveries=dels, shipments=ships)


async def ship_to(ctx: Context, so: SalesOrder) -> Customer | None:
    """The order's ship-to (its customer), whose delivery calendar dates its delivery; None
    when it cannot be read (the prediction then falls back to the default calendar)."""
    try:
        return await ctx.loaders.customer.load(so.sold_to_party)
    except Exception:  # SourceError and friends: Order.customer reports them itself
        return None


async def _assemble(ctx: Context, so: SalesOrder) -> OrderView:
    pos, dels, customer = await asyncio.gather(
        ctx.loaders.production_orders.load(so.sales_order),
        ctx.loaders.deliveries.load(so.sales_order),
        ship_to(ctx, so),
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
        customer=customer,
        production_orders=pos,
        work_centers=wcs,
        components=_flatten(comps),
        inspection_lots=_flatten(lots),
        deliveries=dels,
        shipments=_flatten(ships),
    )


async def prefetch_customers(ctx: Context, orders: list[SalesOrder]) -> None:
    """The customers of a page in one load, so ``Order.customer`` answers synchronously
    from ``ctx.ready_customers`` (the loader's own path reports a fault)."""
    ids = sorted({so.sold_to_party for so in orders} - ctx.ready_customers.keys())
    if not ids:
        return
    try:
        found = await ctx.loaders.customer.load_many(ids)
    except Exception:  # SourceError and friends: Order.customer reports them itself
        return
    ctx.ready_customers.update(zip(ids, found, strict=True))


async def prefetch_page(ctx: Context, orders: list[SalesOrder], *, views: bool, customers: bool) -> None:
    """What a page's selection needs of every order, fetched for all at once."""
    if views and customers:
        await asyncio.gather(prefetch_views(ctx, orders), prefetch_customers(ctx, orders))
    elif views:
        await prefetch_views(ctx, orders)
    elif customers:
        await prefetch_customers(ctx, orders)


async def prefetch_views(ctx: Context, orders: list[SalesOrder]) -> None:
    """Assemble the views of a whole page level by level: two awaits for all orders
    instead of a chain of tasks per order. Derived fields then read ``ctx.ready``
    synchronously. On a source fault nothing is stored and each field falls back to its
    own path, which reports the fault on its own path."""
    todo = [so for so in orders if so.sales_order not in ctx.ready]
    if not todo:
        return
    keys = [so.sales_order for so in todo]
    customer_ids = sorted({so.sold_to_party for so in todo})
    try:
        pos_by, dels_by, ship_tos = await asyncio.gather(
            ctx.loaders.production_orders.load_all(keys),
            ctx.loaders.deliveries.load_all(keys),
            ctx.loaders.customer.load_many(customer_ids),
        )
        pos_l = [pos_by[k] for k in keys]
        dels_l = [dels_by[k] for k in keys]
        mos = [po.manufacturing_order for pos in pos_l for po in pos]
        wc_ids = sorted({po.work_center for pos in pos_l for po in pos})
        dds = [d.delivery_document for dels in dels_l for d in dels]
        wcs_by, comp_by, lot_by, ship_by = await asyncio.gather(
            ctx.loaders.work_center.load_all(wc_ids),
            ctx.loaders.components.load_all(mos),
            ctx.loaders.inspection_lots.load_all(mos),
            ctx.loaders.shipments.load_all(dds),
        )
    except Exception:  # SourceError and friends: the per-field paths report them
        return
    wcs = list(wcs_by.values())
    wc_by = {w.work_center: w for w in wcs if w is not None}
    customers = dict(zip(customer_ids, ship_tos, strict=True))
    for so, pos, dels in zip(todo, pos_l, dels_l, strict=True):
        ctx.ready[so.sales_order] = OrderView(
            sales_order=so,
            customer=customers.get(so.sold_to_party),
            production_orders=pos,
            work_centers={po.work_center: wc_by[po.work_center] for po in pos if po.work_center in wc_by},
            components=[c for po in pos for c in comp_by[po.manufacturing_order]],
            inspection_lots=[lot for po in pos for lot in lot_by[po.manufacturing_order]],
            deliveries=dels,
            shipments=[sh for d in dels for sh in ship_by[d.delivery_document]],
        )

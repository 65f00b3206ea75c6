"""Data access for the resolvers: an order's records through the request's loaders, and
the few reads that are not by an order (a listing page, a what-if's pegged orders, the
request's workflow snapshot). Type modules read through here, never a source directly.

Each function loads only what it needs, so a section's source is called only when one of
its fields is selected; the loaders batch the calls of all orders of a request.
Resolution levels: ERP (sales order) → MES + WMS (production orders, deliveries)
→ MES + WMS + QMS + TMS (work centres, components, inspection lots, shipments).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Iterable
from typing import Any

from sources.memory import gc_paused
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

from . import impact, workflow
from .context import Context
from .derived import documents_cache_keys
from .exception_rules import ExceptionParams, ExceptionRecord, detect
from .loaders import remember_listing
from .queued import UnknownWorkCenter
from .view import OrderView, production_completed, production_left, production_started


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


def _retrieved(task: asyncio.Future[Any]) -> None:
    """Mark a read's failure as seen: the view's own path reads and reports it again."""
    if not task.cancelled():
        task.exception()


async def read_ahead(ctx: Context, sales_orders: list[str]) -> None:
    """The reads of these orders' views, made beside the ERP read that names them rather
    than level after level behind it: by sales order number, their MES production orders and
    WMS deliveries; and, where the order index (``ctx.index``) knows an order, its customer,
    work centres, components, inspection lots and shipments by the ids it last saw. Every
    read is a read of the sources now, through the request's loaders: the view
    (``prefetch_views``) then finds what it needs there, and reads only what changed since
    the index saw it (a new production order, say) or an id the index did not know. A
    full view of one order then waits for one level of source calls instead of three. A
    number that turns out not to exist costs the reads made for it; nothing else is added.
    A customer viewer reads ahead only for orders it owns (its scoped loader's check, from
    its cached listing). A failure here is left to the view's own path (the loaders forget a
    failed key, which is then read again and reported there)."""
    owns = getattr(ctx.loaders.sales_order, "owns", None)
    with contextlib.suppress(Exception):
        if owns is not None:
            flags = await asyncio.gather(*(owns(so) for so in sales_orders))
            sales_orders = [so for so, ok in zip(sales_orders, flags, strict=True) if ok]
        if not sales_orders:
            return
        index = ctx.index if ctx.index is not None and ctx.index.usable else None
        known = [v for so in sales_orders if (v := index.get(so)) is not None] if index is not None else []
        loaders = ctx.loaders
        reads = [loaders.production_orders.load_all(sales_orders), loaders.deliveries.load_all(sales_orders)]
        if known:
            mos = sorted({mo for v in known for mo in v.production_orders})
            wcs = sorted({wc for v in known for wc in v.work_centers})
            dds = sorted({dd for v in known for dd in v.deliveries})
            reads.append(loaders.customer.load_many(sorted({v.customer for v in known})))
            if mos:
                reads += [loaders.components.load_all(mos), loaders.inspection_lots.load_all(mos)]
            if wcs:
                reads.append(loaders.work_center.load_all(wcs))
            if dds:
                reads.append(loaders.shipments.load_all(dds))
        await asyncio.gather(*reads, return_exceptions=True)


def _freeze_gc(freeze: bool) -> None:
    """``gc.freeze()`` when asked (``load_orders``'s ``freeze``)."""
    if freeze:
        gc.freeze()


async def prefetch_views(
    ctx: Context, orders: list[SalesOrder], *, freeze: bool = False, spare_done: bool = False
) -> None:
    """Assemble the views of a whole page level by level: two awaits for all orders
    instead of a chain of tasks per order. Derived fields then read ``ctx.ready``
    synchronously. On a source fault nothing is stored and each field falls back to its
    own path, which reports the fault on its own path. ``freeze``: the heap frozen after
    each level's reads (``load_orders``). ``spare_done`` (the first pass over every
    order): once the production orders are read, the second level's records of the orders
    with no production left to do are named to the record cache as the ones it may give up
    (``RecordCache.spare``): once it is full, they are not stored at all."""
    todo = [so for so in orders if so.sales_order not in ctx.ready]
    if not todo:
        return
    keys = [so.sales_order for so in todo]
    customer_ids = sorted({so.sold_to_party for so in todo})
    # The customers are read beside both levels: the second level does not wait for them
    # (for one order read ahead, ``read_ahead``, they are the only read left after the ERP's).
    customers_read = asyncio.ensure_future(ctx.loaders.customer.load_many(customer_ids))
    customers_read.add_done_callback(_retrieved)
    try:
        pos_by, dels_by = await asyncio.gather(
            ctx.loaders.production_orders.load_all(keys),
            ctx.loaders.deliveries.load_all(keys),
        )
        _freeze_gc(freeze)
        pos_l = [pos_by[k] for k in keys]
        dels_l = [dels_by[k] for k in keys]
        if spare_done:
            ctx.cache.spare(
                key
                for pos, dels in zip(pos_l, dels_l, strict=True)
                if not production_left(pos)
                for key in documents_cache_keys((po.manufacturing_order for po in pos), (d.delivery_document for d in dels))
            )
        mos = [po.manufacturing_order for pos in pos_l for po in pos]
        wc_ids = sorted({po.work_center for pos in pos_l for po in pos})
        dds = [d.delivery_document for dels in dels_l for d in dels]
        wcs_by, comp_by, lot_by, ship_by, ship_tos = await asyncio.gather(
            ctx.loaders.work_center.load_all(wc_ids),
            ctx.loaders.components.load_all(mos),
            ctx.loaders.inspection_lots.load_all(mos),
            ctx.loaders.shipments.load_all(dds),
            customers_read,
        )
    except Exception:  # SourceError and friends: the per-field paths report them
        return
    _freeze_gc(freeze)
    wcs = list(wcs_by.values())
    wc_by = {w.work_center: w for w in wcs if w is not None}
    customers = dict(zip(customer_ids, ship_tos, strict=True))
    with gc_paused():  # a view per order, thousands at once for a what-if (sources.memory)
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


async def sales_order_page(
    ctx: Context,
    filters: dict[str, Any],
    *,
    top: int,
    after: str | None = None,
    prime: bool = False,
    remember: bool = False,
) -> Any:
    """One page of the ERP's sales order listing (``filters`` applied by the ERP), after
    sales order ``after``. ``prime``: the request's loader keeps its records (later reads
    of them make no call); ``remember``: the shared cache keeps them, under a ticket taken
    before the read, so a listing that raced an invalidation writes nothing back."""
    ticket = ctx.cache.ticket() if remember else 0
    page = await ctx.sources.erp.list_sales_orders(top=top, skip_token=after, **filters)
    if remember:
        remember_listing(ctx.cache, page.records, ticket)
    if prime:
        for so in page.records:
            ctx.loaders.sales_order.prime(so.sales_order, so)
    return page


# --- orders by another record, and what hits them ------------------------------------------


async def load_orders(
    ctx: Context, sales_orders: Iterable[str], *, freeze: bool = False, spare_done: bool = False
) -> list[tuple[OrderView, Customer | None]]:
    """Order views and customers of many orders at once (each source read batched).

    Unknown sales orders are left out. ``freeze`` (a what-if over a work centre's whole
    queue): the heap frozen (``gc.freeze()``, O(1)) after each level of reads, so the
    records just read (kept by the record cache; tens of thousands on a what-if's first
    read at 100,000 orders) are out of the collector's passes that the next level's
    allocations set off; the gateway's freeze loop does the same every few seconds and its
    full pass reclaims what died in cycles meanwhile (gateway/app.py).
    """
    ids = sorted(set(sales_orders))
    records = [so for so in await ctx.loaders.sales_order.load_many(ids) if so is not None]
    _freeze_gc(freeze)
    # Level by level for all orders at once (no task per order: the start-up evaluation
    # assembles every order of the plant this way); on a source fault nothing is kept and
    # the per-order path below raises it.
    await prefetch_views(ctx, records, freeze=freeze, spare_done=spare_done)
    missing = [so for so in records if so.sales_order not in ctx.ready]
    assembled, customers = await asyncio.gather(
        asyncio.gather(*(order_view(ctx, so) for so in missing)),
        ctx.loaders.customer.load_many(sorted({so.sold_to_party for so in records})),
    )
    by_so = {view.sales_order.sales_order: view for view in assembled}
    views = [ctx.ready.get(so.sales_order) or by_so[so.sales_order] for so in records]
    by_id = {c.customer: c for c in customers if c is not None}
    return [(view, by_id.get(view.sales_order.sold_to_party)) for view in views]


class UnknownRecord(LookupError):
    """A what-if names a record (work centre, batch, material, tracking number) no source knows."""


async def pegged_orders(ctx: Context, s: impact.Scenario) -> set[str]:
    """The sales orders pegged to a what-if scenario's record (``Query.impact``), from
    batched source look-ups; ``UnknownRecord`` for a record the sources do not know."""
    src = ctx.sources
    match s:
        case impact.WorkCenterDown():
            if ctx.queued is not None:  # kept between requests (resolvers/queued.py)
                try:
                    return await ctx.queued.pegged(ctx, s.work_center)
                except UnknownWorkCenter:
                    raise UnknownRecord(f"Unknown work centre {s.work_center!r}.") from None
            found, pegged = await asyncio.gather(
                src.mes.work_centers([s.work_center]), src.mes.production_orders_for_work_centers([s.work_center])
            )
            if s.work_center not in found:
                raise UnknownRecord(f"Unknown work centre {s.work_center!r}.")
            return {po.sales_order for po in pegged.get(s.work_center, []) if not production_completed(po)}
        case impact.BatchBlocked():
            made = (await src.mes.production_orders_for_batches([s.batch])).get(s.batch, [])
            if not made:
                raise UnknownRecord(f"No production order made batch {s.batch!r}.")
            return {po.sales_order for po in made}
        case impact.MaterialShort():
            reservations = (await src.wms.components_for_materials([s.material])).get(s.material, [])
            if not reservations:
                raise UnknownRecord(f"No production order reserves material {s.material!r}.")
            pos = await src.mes.production_orders(sorted({c.manufacturing_order for c in reservations}))
            # Only production that has not started can still lose its components.
            return {
                po.sales_order
                for po in pos.values()
                if not production_started(po) and not production_completed(po)
            }
        case impact.ShipmentDelayed():
            ship = (await src.tms.shipments([s.tracking_number])).get(s.tracking_number)
            if ship is None:
                raise UnknownRecord(f"Unknown tracking number {s.tracking_number!r}.")
            doc = (await src.wms.deliveries([ship.delivery_document])).get(ship.delivery_document)
            return {doc.sales_order} if doc is not None else set()
        case impact.Expedite():
            # The order, and every order queued on the work centres of its production not
            # started yet.
            if (await ctx.loaders.sales_order.load(s.sales_order)) is None:
                raise UnknownRecord(f"Unknown order {s.sales_order!r}.")
            own = (await src.mes.production_orders_for_sales_orders([s.sales_order])).get(s.sales_order, [])
            waiting = sorted({po.work_center for po in own if not production_started(po) and not production_completed(po)})
            if not waiting:
                raise UnknownRecord(f"Order {s.sales_order} has no production left to expedite.")
            queues = await src.mes.production_orders_for_work_centers(waiting)
            return {s.sales_order} | {
                po.sales_order for wc in waiting for po in queues.get(wc, []) if not production_completed(po)
            }
    return set()


async def workflow_view(ctx: Any) -> workflow.WorkflowView | None:
    """The request's workflow snapshot (read once per request); None for customers or when
    no workflow service runs."""
    viewer = getattr(ctx, "viewer", None)
    service = getattr(ctx, "workflow", None)
    if service is None or (viewer is not None and viewer.is_customer):
        return None
    pending = ctx.workflow_view
    if isinstance(pending, workflow.WorkflowView):
        return pending
    if pending is None:
        # One read for the whole request, however many fields ask at once (a page of
        # orders each resolving Order.exceptions): they all await this one future.
        async def load() -> workflow.WorkflowView:
            states, escalations = await asyncio.gather(service.states(), service.escalations())
            return workflow.WorkflowView.of(service.now(), states, escalations)

        pending = ctx.workflow_view = asyncio.ensure_future(load())
    view = await pending
    ctx.workflow_view = view
    return view


async def order_exceptions(ctx: Context, record: SalesOrder) -> list[ExceptionRecord]:
    """``Order.exceptions``: detected live from the order's view, each restricted to this
    order (escalated one severity for internal viewers when the order is escalated); the
    tracker's first sighting as ``detected_at`` while it is open, else now."""
    view, customer = await asyncio.gather(order_view(ctx, record), ctx.loaders.customer.load(record.sold_to_party))
    tracker = ctx.exceptions
    params = tracker.params if tracker else ExceptionParams()
    stale = tracker.stale_sources() if tracker else frozenset()
    wf = await workflow_view(ctx)
    out = []
    for d in detect(view, customer, ctx.now, params=params, prediction_params=ctx.prediction_params, stale_sources=stale):
        if wf is not None and d.sales_order in wf.escalated:
            d = workflow.escalate_detection(d)
        known = tracker.get(d.id) if tracker else None
        detected_at = known.detected_at if known is not None and known.open else ctx.now
        out.append(ExceptionRecord(d.id, d.kind, d.root, detected_at, {d.sales_order: d}))
    out.sort(key=lambda r: r.sort_key())
    return out

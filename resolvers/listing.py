"""Order listings: ``Query.orders`` and ``Customer.orders`` (``list_orders``), and the
listings over derived values: filtered by stage or delivery risk, sorted by predicted
date, days late, value or priority.

A listing in sales order number order, filtered only on what the ERP filters, reads ERP
pages (``fetch.sales_order_page``). With the gateway's order index (``gateway/order_index.py``, usable once the first
evaluation of every order is done) a page costs about the page: the index names the
candidates in order, and only they are read. The page's orders are checked against their
live values (what their fields will show): one whose stage or risk moved with the clock
since the index saw it is left out, and the index recomputes it. ``totalCount`` comes from
the index's buckets.

Without a usable index (just started, or the record cache was dropped wholesale) a sorted
listing reads every matching order, as filtered listings always did: correct, and as slow
as the plant is large.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Annotated, Any

import strawberry
from graphql import GraphQLError
from strawberry import Info

from sources.namespaces import LISTING_KEY, SALES_ORDER
from sources.records import SalesOrder

from . import derived, enums, fetch, policy, prediction, stage
from .context import Context
from .lazy import schema_type
from .needs import build, page_needs
from .pagination import (
    PageInfo,
    decode_order_cursor,
    decode_sorted_cursor,
    encode_order_cursor,
    encode_sorted_cursor,
    page_info,
)

SCAN_PAGE = 500  # page size when a derived filter (stage, risk) has to look at more orders


@strawberry.enum(description="The order of an order listing; ties go by sales order number.")
class OrderSort(Enum):
    SALES_ORDER = strawberry.enum_value(derived.SALES_ORDER, description="Sales order number (the default).")
    PREDICTED_DATE = strawberry.enum_value(
        derived.PREDICTED_DATE, description="Earliest predicted delivery first; held orders (no date known) last."
    )
    DAYS_LATE = strawberry.enum_value(derived.DAYS_LATE, description="Most working days late first.")
    VALUE = strawberry.enum_value(derived.VALUE, description="Highest net value first.")
    PRIORITY = strawberry.enum_value(
        derived.PRIORITY, description="Commercial priority (STRATEGIC first), then most days late."
    )


@dataclasses.dataclass(slots=True)
class Listed:
    """One page: its sales orders, each one's position, and whether more follow."""

    records: list[SalesOrder]
    keys: list[tuple]
    has_next: bool
    count: Callable[[], Awaitable[int]]


def _wanted(f: Any) -> tuple[set[enums.OrderStage] | None, set[enums.DeliveryRisk] | None]:
    stages = {enums.OrderStage(s.value) for s in f.stage} if f.stage else None
    risks = {enums.DeliveryRisk(r.value) for r in f.delivery_risk} if f.delivery_risk else None
    return stages, risks


def _live(ctx: Context, view: Any) -> tuple[enums.OrderStage, enums.DeliveryRisk]:
    pred = ctx.predictions.get(view.sales_order.sales_order)
    if pred is None:
        pred = ctx.predictions[view.sales_order.sales_order] = prediction.predict(view, ctx.now, ctx.prediction_params)
    return stage.stage(view), prediction.delivery_risk(view, pred, ctx.now, ctx.prediction_params)


async def indexed(
    ctx: Context,
    first: int,
    after: tuple | None,
    f: Any,
    customer: str | None,
    sort: str,
) -> Listed:
    """A page from the order index (``ctx.index``, usable)."""
    index = ctx.index
    await index.refresh()  # nothing older than the last accepted event
    stages, risks = _wanted(f)
    checks = bool(stages or risks)
    selection = {"stages": stages, "risks": risks, "customer": customer, "confirmed_before": f.confirmed_before}
    picked: list[tuple[tuple, SalesOrder]] = []
    has_next = False
    position = after
    moved: list[str] = []
    while True:
        need = first + 1 - len(picked)
        batch = index.select(**selection, sort=sort, after=position, limit=need)
        if not batch:
            break
        position = batch[-1].sort_key(sort)
        records = await ctx.loaders.sales_order.load_many([v.sales_order for v in batch])
        for so in records:
            if so is not None:
                ctx.loaders.sales_order.prime(so.sales_order, so)
        found = [(v, so) for v, so in zip(batch, records, strict=True) if so is not None]
        if checks:
            views = await asyncio.gather(*(fetch.order_view(ctx, so) for _v, so in found))
            kept = []
            for (v, so), view in zip(found, views, strict=True):
                now_stage, now_risk = _live(ctx, view)
                if (stages and now_stage not in stages) or (risks and now_risk not in risks):
                    moved.append(v.sales_order)
                else:
                    kept.append((v, so))
            found = kept
        picked += [(v.sort_key(sort), so) for v, so in found]
        if len(picked) > first:
            has_next = True
            del picked[first:]
            break
        if len(batch) < need:
            break
    if moved and index.compute is not None:
        # What moved with the clock since the index saw it: right for the next listing.
        await index.compute(sorted(moved))

    async def count() -> int:
        return index.count(**selection)

    return Listed([so for _k, so in picked], [k for k, _so in picked], has_next, count)


async def scanned(
    ctx: Context,
    first: int,
    after: tuple | None,
    f: Any,
    filters: dict[str, Any],
    sort: str,
) -> Listed:
    """A sorted page without the index: every matching order read and derived (slow)."""
    stages, risks = _wanted(f)
    matching: list[tuple[tuple, SalesOrder]] = []
    token: str | None = None
    while True:
        page = await fetch.sales_order_page(ctx, filters, top=SCAN_PAGE, after=token, prime=True)
        views = await asyncio.gather(*(fetch.order_view(ctx, so) for so in page.records))
        for so, view in zip(page.records, views, strict=True):
            values = derived.derive(view, view.customer, ctx.now, prediction_params=ctx.prediction_params)
            if (stages and values.stage not in stages) or (risks and values.risk not in risks):
                continue
            matching.append((values.sort_key(sort), so))
        if not page.next_skip_token or not page.records:
            break
        token = page.records[-1].sales_order
    matching.sort(key=lambda t: t[0])
    total = len(matching)
    if after is not None:
        matching = [m for m in matching if m[0] > after]
    page_rows = matching[:first]

    async def count() -> int:
        return total

    return Listed([so for _k, so in page_rows], [k for k, _so in page_rows], len(matching) > first, count)


# --- Query.orders and Customer.orders -------------------------------------------------------


@strawberry.input(description="Filters on orders; all given filters must match.")
class OrderFilter:
    customer: strawberry.ID | None = None
    stage: list[Annotated[OrderStage, strawberry.lazy("resolvers.types")]] | None = None  # noqa: F821
    delivery_risk: list[Annotated[DeliveryRisk, strawberry.lazy("resolvers.types")]] | None = None  # noqa: F821
    confirmed_before: dt.date | None = strawberry.field(
        default=None, description="Confirmed delivery date strictly before this date."
    )
    include_completed: bool = strawberry.field(
        default=False,
        description="Also orders completed (delivered, or cut) longer ago than the gateway keeps them listed "
        "([gateway] list_completed_days); a stage filter with DELIVERED includes them too.",
    )


def _edge_cursor(self) -> str:  # strawberry passes the edge as ``self``
    return self.sealed_cursor()


@strawberry.type
class OrderEdge:
    """An order of a page and its cursor. The cursor is sealed (an AEAD with a fresh nonce,
    resolvers/pagination.py) when first read, once: a page whose selection reads only
    ``nodes`` and ``pageInfo`` seals two cursors, not one per order."""

    cursor: str = strawberry.field(resolver=_edge_cursor)
    node: Annotated[Order, strawberry.lazy("resolvers.types")]  # noqa: F821
    seal: strawberry.Private[Callable[[], str]]
    sealed: strawberry.Private[str | None] = None

    def sealed_cursor(self) -> str:
        if self.sealed is None:
            self.sealed = self.seal()
        return self.sealed


def _end_cursors(edges: list[OrderEdge]) -> list[str]:
    """The first and last edge's cursors (what ``page_info`` reads), the same strings the
    edges answer."""
    return [edges[0].sealed_cursor(), edges[-1].sealed_cursor()] if edges else []


@strawberry.type(description="A page of orders.")
class OrderConnection:
    edges: list[OrderEdge]
    page_info: PageInfo
    count_fn: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field
    def nodes(self) -> list[Annotated[Order, strawberry.lazy("resolvers.types")]]:  # noqa: F821
        return [e.node for e in self.edges]

    @strawberry.field(description="Number of orders matching the filter, over all pages.")
    async def total_count(self) -> int:
        return await self.count_fn()


def _derived(f: OrderFilter) -> bool:
    return bool(f.stage) or bool(f.delivery_risk)


async def _matches(ctx: Context, orders: list[SalesOrder], f: OrderFilter) -> list[bool]:
    """Apply the derived filters (stage, delivery risk) to a batch of orders."""
    views = await asyncio.gather(*(fetch.order_view(ctx, so) for so in orders))
    stages = {enums.OrderStage(s.value) for s in f.stage or []}
    risks = {enums.DeliveryRisk(r.value) for r in f.delivery_risk or []}
    out = []
    for view in views:
        ok = True
        if stages:
            ok = stage.stage(view) in stages
        if ok and risks:
            pred = prediction.predict(view, ctx.now, ctx.prediction_params)
            ok = prediction.delivery_risk(view, pred, ctx.now, ctx.prediction_params) in risks
        out.append(ok)
    return out


def _empty_page(has_previous: bool) -> OrderConnection:
    async def zero() -> int:
        return 0

    return OrderConnection(edges=[], page_info=page_info([], has_next=False, has_previous=has_previous), count_fn=zero)




async def list_orders(
    info: Info, first: int, after: str | None, f: OrderFilter, *, sort: str = derived.SALES_ORDER
) -> OrderConnection:
    """A page of orders (``Query.orders``, ``Customer.orders``): ERP-side filters pushed
    down, derived filters applied here; what the page's selection needs of every order
    (``page_needs``) is prefetched for all of them at once (``needs.build``)."""
    ctx: Context = info.context
    prefetch = page_needs(info)
    order = schema_type(info, "Order")
    if first < 0:
        raise GraphQLError("`first` must not be negative.", extensions={"code": "BAD_USER_INPUT"})
    if first > ctx.max_first:
        raise GraphQLError(
            f"`first` is at most {ctx.max_first}; page with `after`.", extensions={"code": "BAD_USER_INPUT"}
        )
    by_number = sort == derived.SALES_ORDER
    skip = decode_order_cursor(ctx.cursors, after) if after and by_number else None
    position = decode_sorted_cursor(ctx.cursors, sort, after) if after and not by_number else None
    if f.customer is not None:
        ctx.check_key("Customer", str(f.customer), "filter.customer")
    customer = policy.customer_filter(ctx.viewer, f.customer)
    if customer is policy.NO_MATCH:  # another customer's (or an unknown) id, for a customer viewer
        return _empty_page(after is not None)
    filters: dict[str, Any] = {"sold_to_party": customer, "confirmed_before": f.confirmed_before}
    finished = {enums.OrderStage.DELIVERED, enums.OrderStage.CANCELLED}
    if ctx.list_completed_days > 0 and not f.include_completed and not finished & {enums.OrderStage(s.value) for s in f.stage or []}:
        # Orders finished long ago leave the working list; they stay readable by id.
        filters["open_or_changed_since"] = ctx.now - dt.timedelta(days=ctx.list_completed_days)
    if _derived(f) and ctx.index is not None and not ctx.index.usable:
        ctx.index.wanted()
    if not by_number or (_derived(f) and ctx.index is not None and ctx.index.usable):
        # Derived values (issue 21): from the order index when it is usable, else read.
        # The index holds every order; where the listing leaves long-completed orders out
        # and the filter could still match one (no derived filter, or risk DELIVERED), the
        # ERP's listing applies that cut, so read through it (the same set either way).
        cut = "open_or_changed_since" in filters
        completed_may_match = not _derived(f) or any(r.value in ("DELIVERED", "CANCELLED") for r in f.delivery_risk or [])
        if ctx.index is not None and ctx.index.usable and not (cut and completed_may_match):
            listed = await indexed(ctx, first, position or ((skip,) if skip else None), f, customer, sort)
        else:
            if ctx.index is not None and not cut:
                ctx.index.wanted()
            listed = await scanned(ctx, first, position, f, filters, sort)
        ctx.cacheable = False  # depends on derived values, which change without a record's key
        nodes = await build(order, ctx, listed.records, prefetch)
        edges = [
            OrderEdge(
                seal=functools.partial(encode_order_cursor, ctx.cursors, so.sales_order)
                if by_number
                else functools.partial(encode_sorted_cursor, ctx.cursors, sort, key),
                node=node,
            )
            for so, key, node in zip(listed.records, listed.keys, nodes, strict=True)
        ]
        return OrderConnection(
            edges=edges,
            page_info=page_info(_end_cursors(edges), has_next=listed.has_next, has_previous=after is not None),
            count_fn=listed.count,
        )

    picked: list[SalesOrder] = []
    has_next = False
    source_count: int | None = None
    if not _derived(f):
        ahead = None
        if prefetch.views and ctx.index is not None and ctx.index.usable:
            # The page as the index last saw it: its views' reads start beside the ERP's
            # listing (fetch.read_ahead); the listing still decides which orders are shown.
            # (Where the listing leaves long-finished orders out, the guess leaves out every
            # finished one: the index does not know when they finished; a recently finished
            # order on the page is then read with the view, one level later.)
            open_only = {s for s in enums.OrderStage if s not in finished} if "open_or_changed_since" in filters else None
            guess = ctx.index.select(
                stages=open_only, customer=customer, confirmed_before=f.confirmed_before, after=(skip,) if skip else None, limit=first
            )
            ahead = asyncio.ensure_future(fetch.read_ahead(ctx, [v.sales_order for v in guess]))
        page = await fetch.sales_order_page(ctx, filters, top=first + 1, after=skip, remember=True)
        if ahead is not None:
            await ahead
        source_count = page.count
        picked = page.records[:first]
        has_next = len(page.records) > first
    else:
        token = skip
        while True:
            page = await fetch.sales_order_page(ctx, filters, top=SCAN_PAGE, after=token, prime=True)
            flags = await _matches(ctx, page.records, f)
            for so, ok in zip(page.records, flags, strict=True):
                if ok:
                    if len(picked) == first:
                        has_next = True
                        break
                    picked.append(so)
            if has_next or not page.next_skip_token or not page.records:
                break
            token = page.records[-1].sales_order
    for so in picked:
        ctx.loaders.sales_order.prime(so.sales_order, so)
    # The response cache: this page depends on its orders' records and on which orders
    # exist; filters on derived or changeable values (stage, risk, dates) on anything.
    if _derived(f) or f.confirmed_before is not None:
        ctx.cacheable = False
    else:
        ctx.deps.add(LISTING_KEY)
        ctx.deps.update((SALES_ORDER, so.sales_order) for so in picked)
    nodes = await build(order, ctx, picked, prefetch)

    async def count() -> int:
        if source_count is not None:
            return source_count
        total = 0
        token: str | None = None
        while True:
            page = await fetch.sales_order_page(ctx, filters, top=SCAN_PAGE, after=token)
            total += sum(await _matches(ctx, page.records, f))
            if not page.next_skip_token or not page.records:
                return total
            token = page.records[-1].sales_order

    edges = [
        OrderEdge(seal=functools.partial(encode_order_cursor, ctx.cursors, so.sales_order), node=node)
        for so, node in zip(picked, nodes, strict=True)
    ]
    return OrderConnection(
        edges=edges,
        page_info=page_info(_end_cursors(edges), has_next=has_next, has_previous=skip is not None),
        count_fn=count,
    )

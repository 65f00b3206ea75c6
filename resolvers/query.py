"""Root query fields: ``order``, ``orders``, ``customer``."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry import Info

from sources.records import SalesOrder

from . import enums, fetch, listing, policy, prediction, stage
from .context import Context
from .cursors import Cursors
from .exception_types import (
    ExceptionConnection,
    ExceptionFilter,
    ImpactAnalysis,
    ImpactScenario,
    OrderException,
    get_exception,
    list_exceptions,
    run_impact,
)
from .health import SourceStatus, source_statuses
from .impact_compare import ImpactComparison, compare
from .loaders import LISTING_KEY, SALES_ORDER, remember_listing
from .orders import NOTHING, Needs, build_orders, field_needs, page_needs
from .parked import ParkedEvent, parked_events
from .types import Customer, DeliveryRisk, Order, OrderStage
from .workflow_types import workflow_view

ORDER_CURSOR = "order"
SCAN_PAGE = 500  # page size when a derived filter (stage, risk) has to look at more orders


def encode_cursor(cursors: Cursors, sales_order: str) -> str:
    return cursors.seal(ORDER_CURSOR, sales_order)


def decode_cursor(cursors: Cursors, cursor: str) -> str:
    """The sales order number a cursor points at; a clear error for anything else."""
    return cursors.open(ORDER_CURSOR, cursor, "use a cursor from a previous page")


@strawberry.input(description="Filters on orders; all given filters must match.")
class OrderFilter:
    customer: strawberry.ID | None = None
    stage: list[OrderStage] | None = None
    delivery_risk: list[DeliveryRisk] | None = None
    confirmed_before: dt.date | None = strawberry.field(
        default=None, description="Confirmed delivery date strictly before this date."
    )
    include_completed: bool = strawberry.field(
        default=False,
        description="Also orders completed (delivered, or cut) longer ago than the gateway keeps them listed "
        "([gateway] list_completed_days); a stage filter with DELIVERED includes them too.",
    )


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class OrderEdge:
    cursor: str
    node: Order


@strawberry.type(description="A page of orders.")
class OrderConnection:
    edges: list[OrderEdge]
    page_info: PageInfo
    count_fn: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field
    def nodes(self) -> list[Order]:
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

    info = PageInfo(has_next_page=False, has_previous_page=has_previous, start_cursor=None, end_cursor=None)
    return OrderConnection(edges=[], page_info=info, count_fn=zero)


async def list_orders(
    ctx: Context,
    first: int,
    after: str | None,
    f: OrderFilter,
    *,
    prefetch: Needs = NOTHING,
    sort: str = listing.derived.SALES_ORDER,
) -> OrderConnection:
    """A page of orders: ERP-side filters pushed down, derived filters applied here."""
    if first < 0:
        raise GraphQLError("`first` must not be negative.", extensions={"code": "BAD_USER_INPUT"})
    if first > ctx.max_first:
        raise GraphQLError(
            f"`first` is at most {ctx.max_first}; page with `after`.", extensions={"code": "BAD_USER_INPUT"}
        )
    by_number = sort == listing.derived.SALES_ORDER
    skip = decode_cursor(ctx.cursors, after) if after and by_number else None
    position = listing.open_key(ctx, sort, after) if after and not by_number else None
    erp = ctx.sources.erp
    if f.customer is not None:
        ctx.check_key("Customer", str(f.customer), "filter.customer")
    customer = policy.customer_filter(ctx.viewer, f.customer)
    if customer is policy.NO_MATCH:  # another customer's (or an unknown) id, for a customer viewer
        return _empty_page(after is not None)
    filters: dict[str, Any] = {"sold_to_party": customer, "confirmed_before": f.confirmed_before}
    if ctx.list_completed_days > 0 and not f.include_completed and OrderStage.DELIVERED not in (f.stage or []):
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
        completed_may_match = not _derived(f) or any(r.value == "DELIVERED" for r in f.delivery_risk or [])
        if ctx.index is not None and ctx.index.usable and not (cut and completed_may_match):
            listed = await listing.indexed(ctx, first, position or ((skip,) if skip else None), f, customer, sort)
        else:
            if ctx.index is not None and not cut:
                ctx.index.wanted()
            listed = await listing.scanned(ctx, first, position, f, filters, sort)
        ctx.cacheable = False  # depends on derived values, which change without a record's key
        nodes = await build_orders(ctx, listed.records, prefetch)
        edges = [
            OrderEdge(
                cursor=encode_cursor(ctx.cursors, so.sales_order) if by_number else listing.seal_key(ctx, sort, key),
                node=node,
            )
            for so, key, node in zip(listed.records, listed.keys, nodes, strict=True)
        ]
        return OrderConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=listed.has_next,
                has_previous_page=after is not None,
                start_cursor=edges[0].cursor if edges else None,
                end_cursor=edges[-1].cursor if edges else None,
            ),
            count_fn=listed.count,
        )

    picked: list[SalesOrder] = []
    has_next = False
    source_count: int | None = None
    if not _derived(f):
        ticket = ctx.cache.ticket()
        page = await erp.list_sales_orders(top=first + 1, skip_token=skip, **filters)
        remember_listing(ctx.cache, page.records, ticket)
        source_count = page.count
        picked = page.records[:first]
        has_next = len(page.records) > first
    else:
        token = skip
        while True:
            page = await erp.list_sales_orders(top=SCAN_PAGE, skip_token=token, **filters)
            for so in page.records:
                ctx.loaders.sales_order.prime(so.sales_order, so)
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
    nodes = await build_orders(ctx, picked, prefetch)

    async def count() -> int:
        if source_count is not None:
            return source_count
        total = 0
        token: str | None = None
        while True:
            page = await erp.list_sales_orders(top=SCAN_PAGE, skip_token=token, **filters)
            total += sum(await _matches(ctx, page.records, f))
            if not page.next_skip_token or not page.records:
                return total
            token = page.records[-1].sales_order

    edges = [
        OrderEdge(cursor=encode_cursor(ctx.cursors, so.sales_order), node=node) for so, node in zip(picked, nodes, strict=True)
    ]
    return OrderConnection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=has_next,
            has_previous_page=skip is not None,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
        count_fn=count,
    )


@strawberry.type
class Query:
    @strawberry.field(description="One order by sales order number; null when it does not exist.")
    async def order(self, info: Info, id: strawberry.ID) -> Order | None:
        ctx = info.context
        so = await ctx.loaders.sales_order.load(ctx.check_key("SalesOrder", str(id), "id"))
        (order,) = await build_orders(ctx, [so], field_needs(info))
        return order

    @strawberry.field(
        description="Orders, filtered and paged (Relay-style); in sales order number order unless `sort` says otherwise."
    )
    async def orders(
        self,
        info: Info,
        first: int = 50,
        after: str | None = None,
        filter: OrderFilter | None = None,
        sort: listing.OrderSort = listing.OrderSort.SALES_ORDER,
    ) -> OrderConnection:
        return await list_orders(
            info.context, first, after, filter or OrderFilter(), prefetch=page_needs(info), sort=sort.value
        )

    @strawberry.field(description="One customer with its orders; null when it does not exist.")
    async def customer(self, info: Info, id: strawberry.ID) -> Customer | None:
        rec = await info.context.loaders.customer.load(info.context.check_key("Customer", str(id), "id"))
        return Customer(record=rec) if rec else None

    @strawberry.field(
        description="Open exceptions (and, with openOnly: false, recently cleared ones), most severe first, "
        "then by value at risk. Each names its root cause and every order it hits."
    )
    async def exceptions(
        self, info: Info, filter: ExceptionFilter | None = None, first: int = 50, after: str | None = None
    ) -> ExceptionConnection:
        await workflow_view(info.context)  # escalations and workflow filters (internal viewers)
        return list_exceptions(info.context, filter or ExceptionFilter(), first, after)

    @strawberry.field(description="One open or recently cleared exception by id, e.g. MACHINE_DOWN:mes:WC-20.")
    async def exception(self, info: Info, id: strawberry.ID) -> OrderException | None:
        await workflow_view(info.context)
        return get_exception(info.context, str(id))

    @strawberry.field(
        description="What-if: the orders a scenario would hit, their new predicted dates, days late, value at risk "
        "and severity, ranked by commercial priority then days late. Changes nothing in the sources."
    )
    async def impact(self, info: Info, scenario: ImpactScenario) -> ImpactAnalysis:
        return await run_impact(info.context, scenario)

    @strawberry.field(
        description="What-if, side by side: up to 5 scenarios, each analysed as `impact` would at the same instant, "
        "and every order any of them touches with its prediction under each. Changes nothing in the sources."
    )
    async def impact_comparison(self, info: Info, scenarios: list[ImpactScenario]) -> ImpactComparison:
        return await compare(info.context, scenarios)

    @strawberry.field(
        description="Internal roles only: each source system's health (breaker state, last success, last error, last event)."
    )
    def sources(self, info: Info) -> list[SourceStatus]:
        """Internal roles only (to be gated by the auth layer): the same report as /readyz."""
        return source_statuses(info)

    @strawberry.field(
        description="Internal roles only: events parked as dead letters (their processing failed for good), oldest "
        "first. Replay them with `ordergraph events replay SEQ` once the cause is fixed."
    )
    async def parked_events(self, info: Info, first: int = 50) -> list[ParkedEvent]:
        return await parked_events(info, first)

    @strawberry.field(
        description="The instant this answer's predictions, risks and exceptions are judged at: the plant's clock. "
        "On a simulated plant (ordergraph demo) it runs faster than real time, so pages show it as plant time."
    )
    def plant_time(self, info: Info) -> dt.datetime:
        info.context.cacheable = False  # the clock moves without an event
        return info.context.now.replace(microsecond=0)

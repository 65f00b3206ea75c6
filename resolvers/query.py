"""Root query fields: ``order``, ``orders``, ``customer``."""

from __future__ import annotations

import asyncio
import datetime as dt

import strawberry
from strawberry import Info

from sources.memory import gc_paused, gc_paused_for_this_step

from . import fetch, listing
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
from .listing import OrderConnection, OrderFilter, list_orders
from .needs import field_needs
from .orders import build_orders
from .parked import ParkedEvent, parked_events
from .types import Customer, Order


@strawberry.type
class Query:
    @strawberry.field(description="One order by sales order number; null when it does not exist.")
    async def order(self, info: Info, id: strawberry.ID) -> Order | None:
        ctx = info.context
        key = ctx.check_key("SalesOrder", str(id), "id")
        needs = field_needs(info)
        if needs.views:  # the view's reads by order number start with the ERP read
            so, _ = await asyncio.gather(ctx.loaders.sales_order.load(key), fetch.read_ahead(ctx, [key]))
        else:
            so = await ctx.loaders.sales_order.load(key)
        (order,) = await build_orders(ctx, [so], needs)
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
        return await list_orders(info, first, after, filter or OrderFilter(), sort=sort.value)

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
        await fetch.workflow_view(info.context)  # escalations and workflow filters (internal viewers)
        # The page's fields complete in this step, synchronously: no full collections walking
        # the answer meanwhile (its orders grow with the plant; sources.memory).
        gc_paused_for_this_step()
        with gc_paused():  # synchronous: the board brought up to date and read (sources.memory)
            return list_exceptions(info.context, filter or ExceptionFilter(), first, after)

    @strawberry.field(description="One open or recently cleared exception by id, e.g. MACHINE_DOWN:mes:WC-20.")
    async def exception(self, info: Info, id: strawberry.ID) -> OrderException | None:
        await fetch.workflow_view(info.context)
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

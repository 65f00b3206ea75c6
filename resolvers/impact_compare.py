"""Several what-if scenarios side by side (``Query.impactComparison``): each analysed as
``impact`` would, at the same instant over the same records, plus one row per order
touched by any of them with its prediction under each scenario. Read-only toward the
sources, like ``impact``."""

from __future__ import annotations

import datetime as dt

import strawberry
from graphql import GraphQLError

from .context import Context
from .exception_types import ImpactAnalysis, ImpactScenario, OrderImpact, run_impact
from .types import Order

MAX_SCENARIOS = 5


@strawberry.type(description="One order under each compared scenario, in the order the scenarios were given.")
class ComparedOrder:
    order_id: strawberry.ID
    confirmed_delivery_date: dt.date = strawberry.field(description="The delivery promise.")
    current_predicted_delivery_date: dt.date | None = strawberry.field(
        description="Predicted delivery now; null while a block holds the order."
    )
    under: list[OrderImpact | None] = strawberry.field(
        description="The order under each scenario, by position; null where that scenario does not touch it "
        "(its prediction stays the current one)."
    )

    @strawberry.field
    async def order(self, info: strawberry.Info) -> Order | None:
        rec = await info.context.loaders.sales_order.load(str(self.order_id))
        return Order(record=rec) if rec else None


@strawberry.type(description="Several what-if scenarios, each analysed at the same instant; nothing is changed.")
class ImpactComparison:
    evaluated_at: dt.datetime
    scenarios: list[ImpactAnalysis] = strawberry.field(
        description="Each scenario's analysis (orders, totals), in the order given: compare their totals."
    )
    orders: list[ComparedOrder] = strawberry.field(
        description="Every order any scenario touches, in sales order number order, with its prediction under each."
    )


async def compare(ctx: Context, scenarios: list[ImpactScenario]) -> ImpactComparison:
    if not 1 <= len(scenarios) <= MAX_SCENARIOS:
        raise GraphQLError(
            f"impactComparison takes 1 to {MAX_SCENARIOS} scenarios, got {len(scenarios)}.",
            extensions={"code": "BAD_USER_INPUT"},
        )
    # One after the other: every analysis reads the same per-request loaders and clock.
    analyses = [await run_impact(ctx, s) for s in scenarios]
    by_order: dict[str, list[OrderImpact | None]] = {}
    first_seen: dict[str, OrderImpact] = {}
    for i, analysis in enumerate(analyses):
        for row in analysis.orders:
            so = row.impact.sales_order
            by_order.setdefault(so, [None] * len(analyses))[i] = row
            first_seen.setdefault(so, row)
    orders = []
    for so in sorted(by_order):
        seen = first_seen[so].impact
        orders.append(
            ComparedOrder(
                order_id=strawberry.ID(so),
                confirmed_delivery_date=seen.current.promised,
                current_predicted_delivery_date=None if seen.current.held else seen.current.predicted,
                under=by_order[so],
            )
        )
    return ImpactComparison(evaluated_at=ctx.now, scenarios=analyses, orders=orders)

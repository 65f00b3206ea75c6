"""Order listings over derived values: filtered by stage or delivery risk, sorted by
predicted date, days late, value or priority.

With the gateway's order index (``gateway/order_index.py``, usable once the first
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
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

import strawberry

from sources.records import SalesOrder

from . import derived, enums, fetch, prediction, stage
from .context import Context

SCAN_PAGE = 500


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
    erp = ctx.sources.erp
    matching: list[tuple[tuple, SalesOrder]] = []
    token: str | None = None
    while True:
        page = await erp.list_sales_orders(top=SCAN_PAGE, skip_token=token, **filters)
        for so in page.records:
            ctx.loaders.sales_order.prime(so.sales_order, so)
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

"""The order view's short paths (``resolvers/view.py``) answer what the computations they
skip answer, for every order of a simulated plant (its records read through the loaders,
as a page reads them), at its start and with its clock moved on."""

from __future__ import annotations

import dataclasses

import aiohttp

from gateway.cache import RecordCache
from resolvers import fetch, stage
from resolvers.context import Context
from resolvers.view import OrderView, _item_quantities
from sources import SourceEndpoint, Sources

from .servers import running_plant

SYSTEMS = ("erp", "mes", "wms", "qms", "tms")


def partially_shipped_in_full(view: OrderView) -> bool:
    """``OrderView.partially_shipped`` as it was: from every item's quantities."""
    quantities = _item_quantities(dataclasses.replace(view))
    return any(q.shipped > 0 for q in quantities) and any(q.open > 0 for q in quantities)


async def _views(plant, http) -> list[OrderView]:
    sources = Sources.connect(http, {s: SourceEndpoint(base_url=f"{plant.url}/{s}") for s in SYSTEMS})
    ctx = Context.create(sources, RecordCache(), plant.world.now())
    ids = sorted(so.sales_order for so in plant.world.tables["A_SalesOrder"].records())
    return [view for view, _ in await fetch.load_orders(ctx, ids)]


async def test_partially_shipped_answers_what_the_quantities_answer_for_every_order() -> None:
    async with running_plant(orders=400) as plant, aiohttp.ClientSession() as http:
        plant.world.set_speed(0)
        seen = {True: 0, False: 0}
        short_path = 0
        for hours in (0, 30):
            if hours:
                plant.world.advance_clock(hours)
            for view in await _views(plant, http):
                expected = partially_shipped_in_full(view)
                fresh = dataclasses.replace(view)  # a new memo: the short path taken if it can
                assert fresh.partially_shipped is expected, view.sales_order.sales_order
                short_path += "quantities" not in fresh._memo
                # and the stage built on it, from a fresh view and from one whose
                # quantities are known already
                known = dataclasses.replace(view)
                _ = known.item_quantities
                assert stage.stage(dataclasses.replace(view)) is stage.stage(known)
                seen[expected] += 1
        # The plant has both kinds, and orders the short path answers (nothing shipped).
        assert seen[True] > 0 and seen[False] > 0 and short_path > 0

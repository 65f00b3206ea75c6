"""A request's records leave with its answer, by reference counting.

graphql-core's executor holds the request's context in a reference cycle (the executor and
its resolve-info helpers), so whatever the context keeps (the order views a what-if
assembles for a work centre's whole queue, the loaders' futures) would wait for the cyclic
collector; the gateway freezes the heap every few seconds, and a request in flight at a
freeze then kept all of it for minutes (at 100,000 orders each `impact(workCenterDown)`
added ~40 MB of RSS until the next full collection). These tests run a gateway with the
freeze loop off and catch, with ``gc.DEBUG_SAVEALL``, what only the cyclic collector
would have freed.
"""

from __future__ import annotations

import collections
import datetime as dt
import gc
from typing import Any

import aiohttp
import pytest

from resolvers.view import OrderView

from .servers import running_gateway, running_plant

IMPACT = """
query($wc: ID!) {
  impact(scenario: {workCenterDown: {workCenter: $wc, hours: 8}}) { totals { orders } orders { orderId delayDays } }
}
"""
ORDER = "query($id: ID!) { order(id: $id) { id deliveryRisk predictedDeliveryDate production { orders { id status } } } }"


@pytest.fixture
async def still_gateway():
    """A frozen plant and a gateway without the periodic heap freeze: (plant, url, http)."""
    async with running_plant() as plant:
        plant.world.set_speed(0)

        def clock() -> dt.datetime:
            return plant.world.now().replace(microsecond=0)

        async with running_gateway(plant.url, domain_clock=clock, gc_freeze_seconds=0) as (url, app):
            async with aiohttp.ClientSession() as http:
                await app.state.gateway.exceptions.settled(30)
                yield plant, url, http


def _busiest(world: Any) -> str:
    queued: collections.Counter[str] = collections.Counter(
        po.work_center for po in world.tables["A_ProductionOrder"].records() if po.status != "CONFIRMED"
    )
    return queued.most_common(1)[0][0]


async def _cyclic_garbage_of(http: aiohttp.ClientSession, url: str, query: str, variables: dict) -> tuple[dict, list]:
    """The answer to one request, and what of it only the cyclic collector frees."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        async with http.post(f"{url}/graphql", json={"query": query, "variables": variables}) as r:
            body = await r.json()
        gc.collect()
        garbage = list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    return body, garbage


async def test_a_what_if_leaves_no_views_to_the_cyclic_collector(still_gateway) -> None:
    plant, url, http = still_gateway
    wc = _busiest(plant.world)
    body, garbage = await _cyclic_garbage_of(http, url, IMPACT, {"wc": wc})
    assert "errors" not in body, body
    assert body["data"]["impact"]["totals"]["orders"] > 0  # the queue's orders were assembled (how many depends on the hour)
    views = [o for o in garbage if isinstance(o, OrderView)]
    kinds = collections.Counter(type(o).__name__ for o in garbage)
    assert views == [], kinds.most_common(8)
    assert kinds["Future"] == 0 and kinds["Served"] == 0, kinds.most_common(8)


async def test_an_order_read_leaves_no_records_to_the_cyclic_collector(still_gateway) -> None:
    # The response-cached path (a cacheable query) releases its context too, after the
    # answer is stored.
    plant, url, http = still_gateway
    so = next(iter(plant.world.tables["A_SalesOrder"].records())).sales_order
    body, garbage = await _cyclic_garbage_of(http, url, ORDER, {"id": so})
    assert body["data"]["order"]["id"] == so, body
    kinds = collections.Counter(type(o).__name__ for o in garbage)
    assert not any(isinstance(o, OrderView) for o in garbage), kinds.most_common(8)
    assert kinds["Future"] == 0 and kinds["Served"] == 0, kinds.most_common(8)

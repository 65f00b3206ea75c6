"""The response cache's clock bound follows the data.

An answer whose only clock dependence is a production status keeps its entry until the
instant that status could change by the clock alone (a scheduled start, an announced
downtime), not a flat ``response_ttl_seconds``; an answer that reads the clock any other
way still lives at most ``response_ttl_seconds``. Both clocks (the cache's monotonic one
and the domain rules' "now") are driven by the test: no wall-clock assertion.
"""

from __future__ import annotations

import datetime as dt

import pytest

from resolvers import fetch, stage
from resolvers.context import Context
from resolvers.enums import ProductionStatus
from resolvers.stage import production_status

from .servers import running_gateway, running_plant
from .test_domain_stage import HOUR, NOW, make_production_order, make_view, make_work_center

STATUS = "query($id: ID!) { order(id: $id) { id production { status } } }"
RISK = "query($id: ID!) { order(id: $id) { id deliveryRisk } }"


class Clocks:
    """The cache's monotonic seconds and the domain's "now", each moved by the test."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now
        self.mono = 1_000.0

    def domain(self) -> dt.datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono


@pytest.fixture
async def clocked():
    async with running_plant() as plant:
        plant.world.set_speed(0)
        clocks = Clocks(plant.world.now().replace(microsecond=0))
        async with running_gateway(plant.url, domain_clock=clocks.domain) as (url, app):
            gw = app.state.gateway
            await gw.exceptions.settled(30)
            gw.responses.clock = clocks.monotonic
            yield plant, url, gw, clocks


async def _query(http, url: str, query: str, so: str) -> dict:
    async with http.post(f"{url}/graphql", json={"query": query, "variables": {"id": so}}) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert "errors" not in body, body
    return body["data"]["order"]


async def test_the_bound_is_exact_for_every_order_of_the_plant(clocked):
    """Before its bound an order's production status is the same at every instant; at the
    bound of a released order, an announced downtime begun since interrupts it."""
    plant, _url, gw, clocks = clocked
    now = clocks.now
    ctx = Context.create(gw.sources, gw.cache, now, prediction_params=gw.prediction_params)
    bounded = 0
    for so in sorted(plant.world.sales_orders):
        record = await ctx.loaders.sales_order.load(so)
        if record is None:
            continue
        view = await fetch.order_view(ctx, record)
        status = stage.production_status(view, now)
        until = stage.production_status_until(view, now)
        if until is None:
            for later in (now + dt.timedelta(days=d) for d in (1, 30, 400)):
                assert stage.production_status(view, later) == status, so
            continue
        assert until > now
        bounded += 1
        for later in (now + (until - now) * f for f in (0.001, 0.5, 0.999)):
            assert stage.production_status(view, later) == status, so
        assert stage.production_status(view, until - dt.timedelta(microseconds=1)) == status, so
    assert bounded, "the plant has released orders scheduled to start later"


def test_the_bound_names_the_instant_the_status_turns():
    """A released order turns due at its scheduled start, where a down work centre then
    interrupts it; a started order is interrupted when an announced downtime begins."""
    down = make_work_center(state="DOWN", down_since=NOW - HOUR)
    released = make_production_order(status="RELEASED", start=NOW + 3 * HOUR)
    view = make_view(orders=[released], work_centers=[down])
    assert production_status(view, NOW) is ProductionStatus.RELEASED
    assert stage.production_status_until(view, NOW) == NOW + 3 * HOUR
    assert production_status(view, NOW + 3 * HOUR) is ProductionStatus.INTERRUPTED
    assert stage.production_status_until(view, NOW + 3 * HOUR) is None

    announced = make_work_center(state="DOWN", down_since=NOW + 2 * HOUR)
    view = make_view(orders=[make_production_order(status="STARTED")], work_centers=[announced])
    assert production_status(view, NOW) is ProductionStatus.IN_PROGRESS
    assert stage.production_status_until(view, NOW) == NOW + 2 * HOUR
    assert production_status(view, NOW + 2 * HOUR) is ProductionStatus.INTERRUPTED

    # The earliest of several, and nothing for what the clock cannot turn.
    later = make_production_order("1000002", "RELEASED", start=NOW + 5 * HOUR, item="20")
    view = make_view(orders=[later, make_production_order(status="STARTED")], work_centers=[announced])
    assert stage.production_status_until(view, NOW) == NOW + 2 * HOUR
    view = make_view(orders=[make_production_order(status="CREATED", start=NOW + HOUR)], work_centers=[down])
    assert stage.production_status_until(view, NOW) is None


async def test_an_entry_lives_until_its_clock_bound_and_no_longer(clocked, http):
    plant, url, gw, clocks = clocked
    responses = gw.responses
    ctx = Context.create(gw.sources, gw.cache, clocks.now, prediction_params=gw.prediction_params)
    chosen = None
    for so in sorted(plant.world.sales_orders):
        record = await ctx.loaders.sales_order.load(so)
        if record is None:
            continue
        until = stage.production_status_until(await fetch.order_view(ctx, record), clocks.now)
        if until is not None and (until - clocks.now) < dt.timedelta(days=300):
            chosen = (so, until)
            break
    assert chosen is not None
    so, until = chosen
    first = await _query(http, url, STATUS, so)
    stores, hits = responses.stores, responses.hits

    # Past the flat TTL (5 s) on the cache's clock, before the bound on the domain's: kept.
    clocks.mono += responses.ttl_seconds + 1
    clocks.now = until - dt.timedelta(seconds=1)
    assert await _query(http, url, STATUS, so) == first
    assert (responses.hits, responses.stores) == (hits + 1, stores)

    # The domain clock reaches the bound: the entry is dropped and the answer recomputed.
    clocks.now = until
    await _query(http, url, STATUS, so)
    assert (responses.hits, responses.stores) == (hits + 1, stores + 1)

    # Never past max_seconds on the cache's own clock, whatever the bound.
    stores, hits = responses.stores, responses.hits
    clocks.mono += responses.max_seconds
    await _query(http, url, STATUS, so)
    assert (responses.hits, responses.stores) == (hits, stores + 1)


async def test_an_answer_that_reads_the_clock_otherwise_lives_the_flat_ttl(clocked, http):
    plant, url, gw, clocks = clocked
    responses = gw.responses
    so = sorted(plant.world.sales_orders)[0]
    await _query(http, url, RISK, so)
    stores, hits = responses.stores, responses.hits
    clocks.mono += responses.ttl_seconds - 1
    await _query(http, url, RISK, so)
    assert (responses.hits, responses.stores) == (hits + 1, stores)
    clocks.mono += 2  # past ttl_seconds: the prediction behind the risk moves with the clock
    await _query(http, url, RISK, so)
    assert (responses.hits, responses.stores) == (hits + 1, stores + 1)

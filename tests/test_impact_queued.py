"""A what-if's pegged orders for a work centre down, kept between requests
(``resolvers/queued.py``), are the orders reading the MES's whole queue answers: on a
simulated plant whose clock moves (production orders released, started, confirmed,
rescheduled by a breakdown), with the record cache invalidated as the event path does for
production order events, for random work centres; a wholesale drop, the cache's lifetime
and an unknown work centre behave as the MES read does."""

from __future__ import annotations

import datetime as dt
import gc
import random
import sys

import aiohttp
import pytest

from gateway.cache import RecordCache
from resolvers import fetch, impact
from resolvers.context import Context
from resolvers.queued import QueuedOrders
from resolvers.view import production_completed
from sources import SourceEndpoint, Sources
from sources import namespaces as ns

from .servers import GraphQLClient, running_plant

SYSTEMS = ("erp", "mes", "wms", "qms", "tms")
NOW = dt.datetime(2026, 11, 30, 14, 0, tzinfo=dt.UTC)


def invalidated_by(changes) -> set[tuple[str, str]]:
    """The record cache keys the event path drops for these changes' production order
    events (``gateway/mapping.py``: a ProductionOrder event names its sales order's list)."""
    return {
        (ns.PRODUCTION_ORDERS_BY_SALES_ORDER, c.record.sales_order)
        for c in changes
        if c.entity_set == "A_ProductionOrder" and c.record.sales_order
    }


async def test_kept_queues_are_what_reading_the_mes_answers() -> None:
    async with running_plant(orders=600) as plant, aiohttp.ClientSession() as http:
        world = plant.world
        world.set_speed(0)
        sources = Sources.connect(http, {s: SourceEndpoint(base_url=f"{plant.url}/{s}") for s in SYSTEMS})
        cache = RecordCache(maxsize=10**6)
        clock = [0.0]
        queued = QueuedOrders(cache, ttl_seconds=300, clock=lambda: clock[0])
        work_centers = sorted(wc.work_center for wc in world.tables["A_WorkCenter"].records())
        every_order = sorted(so.sales_order for so in world.tables["A_SalesOrder"].records())

        async def both(wc: str) -> tuple[set[str], set[str]]:
            scenario = impact.WorkCenterDown(wc, 8)
            kept = await fetch.pegged_orders(Context.create(sources, cache, NOW, queued=queued), scenario)
            read = await fetch.pegged_orders(Context.create(sources, RecordCache(), NOW), scenario)
            return kept, read

        # Every order's production orders in the cache: an invalidation missed would leave
        # an old list there, and the kept set would go wrong with it.
        await Context.create(sources, cache, NOW).loaders.production_orders.load_all(every_order)
        for wc in work_centers:
            kept, read = await both(wc)
            assert kept == read, wc
        assert queued.full_reads == len(work_centers)
        first = {wc: (await both(wc))[1] for wc in work_centers}

        rng = random.Random(21)
        moved = 0
        for step in range(10):
            if step == 3:
                changes = world.work_center_down(rng.choice(work_centers), 6)
            else:
                changes = world.advance_clock(rng.choice([2, 6, 12, 30]))
            cache.invalidate(invalidated_by(changes))
            for wc in rng.sample(work_centers, 4):
                kept, read = await both(wc)
                assert kept == read, (step, wc)
                moved += len(read ^ first[wc])
        assert queued.full_reads == len(work_centers)  # kept throughout: nothing read whole again
        assert queued.rechecked > 0
        assert moved > 0  # orders joined and left queues: the comparison compared something

        # Without the invalidation the kept set would be the old one: the test can fail.
        changes = world.advance_clock(48)
        stale = [wc for wc in work_centers if (pair := await both(wc))[0] != pair[1]]
        assert stale
        cache.invalidate(invalidated_by(changes))
        for wc in work_centers:
            kept, read = await both(wc)
            assert kept == read, wc

        # A wholesale drop forgets every set (read whole again), as does the cache's lifetime.
        cache.invalidate_all()
        kept, read = await both(work_centers[0])
        assert kept == read and queued.full_reads == len(work_centers) + 1
        clock[0] += 301
        kept, read = await both(work_centers[1])
        assert kept == read and queued.full_reads == len(work_centers) + 2

        with pytest.raises(fetch.UnknownRecord, match="Unknown work centre"):
            await fetch.pegged_orders(
                Context.create(sources, cache, NOW, queued=queued), impact.WorkCenterDown("WC-NOPE", 8)
            )


# --- the collector while the answer is completed ---------------------------------------------


async def test_the_answer_is_completed_with_the_collector_paused(frozen_world, collector_on, monkeypatch) -> None:
    """graphql-core completes a field set per affected order right after ``run_impact``
    returns (the whole queue at 100,000 orders): no automatic collection walks it
    meanwhile; the collector is on again for the next request."""
    plant, url, _app, http = frozen_world
    seen: list[bool] = []
    delay_days = impact.OrderImpact.delay_days

    def recording(self: impact.OrderImpact) -> int:
        seen.append(gc.isenabled())
        return delay_days.fget(self)

    queues: dict[str, int] = {}
    for po in plant.world.tables["A_ProductionOrder"].records():
        if not production_completed(po):
            queues[po.work_center] = queues.get(po.work_center, 0) + 1
    wc = max(queues, key=lambda w: queues[w])
    gql = GraphQLClient(url, http)
    query = "query($wc: ID!) { impact(scenario: {workCenterDown: {workCenter: $wc, hours: 40}}) { orders { orderId delayDays } } }"
    data = await gql.query(query, {"wc": wc})
    answered = len(data["impact"]["orders"])
    assert answered  # the downtime touches orders: their fields were completed
    monkeypatch.setattr(impact.OrderImpact, "delay_days", property(recording))
    data = await gql.query(query.replace("hours: 40", "hours: 41"), {"wc": wc})
    assert len(seen) >= len(data["impact"]["orders"]) > 0
    assert not any(seen)
    assert gc.isenabled()


async def test_the_views_leave_the_full_passes_when_the_gateway_freezes_its_heap(frozen_world, monkeypatch) -> None:
    """With ``[gateway] gc_freeze_seconds`` the queue's views are frozen once assembled
    (out of the automatic full passes the rest of the request sets off); without it the
    what-if leaves the collector alone. The answer is the same."""
    _plant, url, app, http = frozen_world
    gw = app.state.gateway
    frozen: list[int] = []

    def freeze() -> None:  # the what-if's freezes only (the gateway's loop freezes every few seconds)
        if sys._getframe(1).f_code.co_name == "run_impact":
            frozen.append(sum(1 for o in gc.get_objects() if type(o).__name__ == "OrderView"))

    monkeypatch.setattr(gc, "freeze", freeze)

    gql = GraphQLClient(url, http)
    query = "query($h: Float!) { impact(scenario: {workCenterDown: {workCenter: \"WC-10\", hours: $h}}) { orders { orderId daysLate } } }"
    assert gw.config.gateway.gc_freeze_seconds > 0
    with_freeze = await gql.query(query, {"h": 7})
    # Once the views are assembled and once the analysis is done, with the views alive
    # (the reads' freezes are ``fetch.load_orders``'s, tests/test_impact_gc.py).
    assert len(frozen) == 2 and frozen[0] > 0 and frozen[1] >= frozen[0]
    monkeypatch.setattr(gw.config.gateway, "gc_freeze_seconds", 0.0)
    # The same question again, past the response cache (a different outage, even by a
    # microsecond, can end on a shift's first instant and legitimately move other orders).
    monkeypatch.setattr(gw.responses, "get", lambda *_a, **_k: None)
    without = await gql.query(query, {"h": 7})
    assert len(frozen) == 2
    assert [o["orderId"] for o in with_freeze["impact"]["orders"]] == [o["orderId"] for o in without["impact"]["orders"]]


async def test_a_change_during_the_first_read_is_read_again() -> None:
    """An invalidation that lands while a work centre's queue is read whole (no set kept
    yet) is kept for the next what-if, which reads that order again."""
    async with running_plant(orders=300) as plant, aiohttp.ClientSession() as http:
        world = plant.world
        world.set_speed(0)
        sources = Sources.connect(http, {s: SourceEndpoint(base_url=f"{plant.url}/{s}") for s in SYSTEMS})
        cache = RecordCache(maxsize=10**6)
        queued = QueuedOrders(cache, ttl_seconds=300)
        queue = [po for po in world.tables["A_ProductionOrder"].records() if not production_completed(po)]
        wc = queue[0].work_center
        so = queue[0].sales_order
        listing = sources.mes.production_orders_for_work_centers

        async def racing(work_centers):  # the MES answers, then an event for ``so`` lands
            answer = await listing(work_centers)
            cache.invalidate([(ns.PRODUCTION_ORDERS_BY_SALES_ORDER, so)])
            return answer

        sources.mes.production_orders_for_work_centers = racing
        ctx = Context.create(sources, cache, NOW, queued=queued)
        assert so in await fetch.pegged_orders(ctx, impact.WorkCenterDown(wc, 8))
        sources.mes.production_orders_for_work_centers = listing
        before = queued.rechecked
        await fetch.pegged_orders(Context.create(sources, cache, NOW, queued=queued), impact.WorkCenterDown(wc, 8))
        assert queued.rechecked == before + 1

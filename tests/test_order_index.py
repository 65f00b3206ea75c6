"""The order index (gateway/order_index.py) against a full recomputation from the sources,
after random event sequences: new orders, lifecycle steps, work centres down and up,
carrier delays, duplicates, out-of-order events and a reversal — each checked right after
the 202 (before the event is processed) and again once everything settled. A what-if's
queue per work centre, taken from the index (resolvers/queued.py), is checked with it
against the MES's own listing."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from gateway.cache import RecordCache
from gateway.config import DEV_SECRETS
from resolvers import derived, fetch, impact
from resolvers.context import Context
from resolvers.exception_rules import detect
from resolvers.fetch import load_orders
from resolvers.view import production_completed
from sources.simulator.emitter import EventEmitter

from .events_util import make_event, post_events
from .servers import GraphQLClient, running_gateway

SORTED = """query($sort: OrderSort!, $risk: [DeliveryRisk!], $after: String) {
  orders(first: 500, sort: $sort, after: $after, filter: {deliveryRisk: $risk}) {
    totalCount edges { cursor node { id deliveryRisk } } pageInfo { hasNextPage endCursor } } }"""


async def _recompute(gw) -> dict[str, derived.DerivedValues]:
    """Every order's derived values read straight from the sources (an empty cache)."""
    ctx = Context.create(gw.sources, RecordCache(), gw.domain_clock(), prediction_params=gw.prediction_params)
    ids: list[str] = []
    token = None
    while True:
        page = await gw.sources.erp.list_sales_orders(top=500, skip_token=token)
        ids += [so.sales_order for so in page.records]
        if not page.next_skip_token or not page.records:
            break
        token = page.records[-1].sales_order
    tracker = gw.exceptions
    out = {}
    for view, customer in await load_orders(ctx, ids):
        found = detect(
            view, customer, ctx.now, params=tracker.params, prediction_params=gw.prediction_params,
            stale_sources=tracker.stale_sources(),
        )  # fmt: skip
        values = derived.derive(view, customer, ctx.now, detections=found, prediction_params=gw.prediction_params)
        out[values.sales_order] = values
    return out


async def _check(gw, gql: GraphQLClient, step: str) -> None:
    """The index equals a full recomputation, and listings say what the recomputation says."""
    # What a listing does first: recompute what events accepted so far made dirty.
    await gw.index.refresh()
    expected = await _recompute(gw)
    got = {so: gw.index.get(so) for so in expected}
    wrong = {so: (got[so], v) for so, v in expected.items() if got[so] != v}
    assert not wrong, f"{step}: {len(wrong)} orders differ, e.g. {next(iter(wrong.items()))}"
    assert len(gw.index) == len(expected), step
    for sort in ("DAYS_LATE", "PREDICTED_DATE", "PRIORITY", "VALUE"):
        data = await gql.query(SORTED, {"sort": sort})
        ids = [e["node"]["id"] for e in data["orders"]["edges"]]
        assert ids == [v.sales_order for v in sorted(expected.values(), key=lambda v: v.sort_key(sort))], (step, sort)
    for risk in ("LATE", "AT_RISK", "ON_TRACK"):
        data = await gql.query(SORTED, {"sort": "SALES_ORDER", "risk": [risk]})
        want = sorted(so for so, v in expected.items() if v.risk.value == risk)
        assert data["orders"]["totalCount"] == len(want), (step, risk)
        assert [e["node"]["id"] for e in data["orders"]["edges"]] == want, (step, risk)
    await _check_queues(gw, sorted({wc for v in expected.values() for wc in v.work_centers}), step)


async def _check_queues(gw, work_centers: list[str], step: str) -> None:
    """A ``workCenterDown`` what-if's pegged orders (its first on a work centre taken from
    the index, later ones kept and rechecked) are what the MES's listing says."""
    assert len(work_centers) > 1
    listing = await gw.sources.mes.production_orders_for_work_centers(work_centers)
    for wc, pos in listing.items():
        ctx = gw.context()
        try:
            got = await fetch.pegged_orders(ctx, impact.WorkCenterDown(wc, 8))
        finally:
            ctx.release()
        assert got == {po.sales_order for po in pos if not production_completed(po)}, (step, wc)
    assert gw.queued.full_reads == 0 and gw.queued.from_index > 0  # no queue read whole from the MES


@pytest.mark.parametrize("seed", [21, 2021])
async def test_index_agrees_with_full_recomputation(plant, http, seed):
    plant.world.set_speed(0)  # the clock stands still: values change by events alone
    async with running_gateway(plant.url, domain_clock=plant.world.now) as (url, app):
        gw = app.state.gateway
        await gw.exceptions.settled(60)
        assert gw.index.usable
        gql = GraphQLClient(url, http)
        await _check(gw, gql, "start")
        rng = random.Random(seed)
        emitter = EventEmitter(plant.world, url, DEV_SECRETS, duplicate_rate=0, reorder_rate=0, notification_rate=0)
        world = plant.world
        sent: list[list[dict]] = []
        issued = []  # goods issues, to reverse one
        customers = world.table("A_Customer").keys()
        work_centers = world.table("A_WorkCenter").keys()
        ops = ["advance"] * 6 + ["place", "down", "up", "delay", "duplicate", "out_of_order", "reverse"]
        for step in range(36):
            op = rng.choice(ops)
            changes = []
            if op == "advance":
                for so in rng.sample(world.sales_orders, 5):
                    changes += world.advance_order(so)
            elif op == "place":
                changes = world.place_order(rng.choice(customers), seed=rng.randrange(10**6))
            elif op == "down":
                changes = world.work_center_down(rng.choice(work_centers), rng.choice([4, 24, 96]))
            elif op == "up":
                changes = world.work_center_up(rng.choice(work_centers))
            elif op == "delay":
                for so in rng.sample(world.sales_orders, 60):
                    tracking = world.shipment_of(so)
                    try:
                        changes = world.shipment_delayed(tracking, rng.choice([12, 72])) if tracking else []
                    except ValueError:  # delivered already
                        continue
                    if changes:
                        break
            events = [emitter.event_for(c) for c in changes]
            issued += [c for c in changes if c.change_type == "OutboundDelivery.GoodsIssued"]
            if op == "duplicate" and sent:
                events = rng.choice(sent)  # the same ids again: harmless
            elif op == "out_of_order" and sent:
                # An older state of a record, under a new id, after the newer one was applied.
                old = rng.choice(rng.choice(sent))
                events = [{**old, "id": f"late-{step}-{old['id']}"}]
            elif op == "reverse" and issued:
                change = issued.pop(rng.randrange(len(issued)))
                delivery = world.get(change.entity_set, change.key)
                delivery.overall_goods_movement_status = "A"
                delivery.actual_goods_movement_date = None
                world.table(change.entity_set).put(delivery)  # the source now says: not issued
                events = [
                    make_event(
                        "wms", "OutboundDelivery", "GoodsIssueReversed", change.key,
                        data=delivery.to_api(), time=change.occurred_at,  # no later than the issue
                    )  # fmt: skip
                ]
            if not events:
                continue
            by_system: dict[str, list[dict]] = {}
            for e in events:
                by_system.setdefault(e["source"].rsplit("/", 1)[-1], []).append(e)
            for batch in by_system.values():
                if rng.random() < 0.5:
                    batch = batch[::-1]  # newest first: out of order within the batch
                status, body = await post_events(http, url, batch)
                assert status == 202, body
                sent.append(batch)
            if step % 4 == 3:
                # Right after the 202: nothing processed yet need be, the index is current.
                await _check(gw, gql, f"step {step} ({op}), before processing")
        await gw.processor.drain()
        await gw.exceptions.settled(60)
        await _check(gw, gql, "settled")
        assert gw.index.stats()["dirty"] == 0


async def test_lost_index_falls_back_and_is_rebuilt(plant, http):
    """A wholesale cache drop makes the index unusable; listings still answer (reading every
    order), and the first one asks for a full evaluation that makes it usable again."""
    plant.world.set_speed(0)
    async with running_gateway(plant.url, domain_clock=plant.world.now) as (url, app):
        gw = app.state.gateway
        await gw.exceptions.settled(60)
        gql = GraphQLClient(url, http)
        before = await gql.query(SORTED, {"sort": "DAYS_LATE"})
        full = gw.exceptions.full_evaluations
        gw.cache.invalidate_all()
        assert not gw.index.usable
        during = await gql.query(SORTED, {"sort": "DAYS_LATE"})
        assert [e["node"]["id"] for e in during["orders"]["edges"]] == [
            e["node"]["id"] for e in before["orders"]["edges"]
        ]
        await gw.exceptions.settled(60)
        assert gw.exceptions.full_evaluations == full + 1
        assert gw.index.usable


async def test_sorted_cursor_pages_and_refuses_another_sort(plant, http):
    plant.world.set_speed(0)
    async with running_gateway(plant.url, domain_clock=plant.world.now) as (url, app):
        gw = app.state.gateway
        await gw.exceptions.settled(60)
        gql = GraphQLClient(url, http)
        q = """query($after: String, $sort: OrderSort!) { orders(first: 7, sort: $sort, after: $after) {
          totalCount nodes { id } pageInfo { hasNextPage endCursor } } }"""
        seen: list[str] = []
        after = None
        while True:
            conn = (await gql.query(q, {"after": after, "sort": "VALUE"}))["orders"]
            seen += [n["id"] for n in conn["nodes"]]
            if not conn["pageInfo"]["hasNextPage"]:
                break
            after = conn["pageInfo"]["endCursor"]
        assert len(seen) == len(set(seen)) == conn["totalCount"] == len(gw.index)
        values = [gw.index.get(so).value for so in seen]
        assert values == sorted(values, reverse=True)
        status, body = await gql.post(q, {"after": after, "sort": "DAYS_LATE"})
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert "same sort" in body["errors"][0]["message"]


def test_index_is_current_at_the_202_by_ticket():
    """Unit: a value read before an invalidation never clears the order's dirty mark."""
    from gateway.order_index import OrderIndex
    from resolvers.enums import DeliveryRisk, OrderStage
    from sources.namespaces import PRODUCTION_ORDERS_BY_SALES_ORDER, SALES_ORDER

    cache = RecordCache()
    index = OrderIndex(cache)

    def values(so: str, risk: DeliveryRisk) -> derived.DerivedValues:
        return derived.DerivedValues(
            so, "C1", OrderStage.IN_PRODUCTION, risk, dt.date(2026, 12, 1), 0, 10.0, "NORMAL", 0, None,
            production_orders=("MO1",),
        )  # fmt: skip

    t0 = cache.ticket()
    index.put(values("1", DeliveryRisk.ON_TRACK), t0)
    index.complete(["1"], t0)
    assert index.usable and index.count(risks={DeliveryRisk.ON_TRACK}) == 1
    read_before = cache.ticket()  # a read starts …
    cache.invalidate([(PRODUCTION_ORDERS_BY_SALES_ORDER, "1")])  # … an event is accepted …
    assert "1" in index.dirty()
    index.put(values("1", DeliveryRisk.ON_TRACK), read_before)  # … the old read lands: still dirty
    assert "1" in index.dirty()
    index.put(values("1", DeliveryRisk.LATE), cache.ticket())  # a read after the event: clean
    assert not index.dirty() and index.count(risks={DeliveryRisk.LATE}) == 1
    index.put(values("1", DeliveryRisk.ON_TRACK), read_before)  # an older value never wins
    assert index.get("1").risk is DeliveryRisk.LATE
    cache.invalidate([(SALES_ORDER, "2")])  # a new order: dirty before the index knows it
    assert "2" in index.dirty()

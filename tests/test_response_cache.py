"""The event-invalidated response cache, and what a 202 from /events promises.

Real plant, real gateway under uvicorn, real HTTP: a repeated query is answered without a
source call; the moment ``POST /events`` answers 202, no read serves data older than the
events (no drain, no waiting for the processor); answers are kept apart per viewer; and
what may not be cached is not.
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.auth import mint_token
from gateway.cache import RecordCache
from gateway.config import AuthConfig
from gateway.response_cache import ResponseCache
from sources import namespaces as ns
from sources.simulator.emitter import EventEmitter

from .events_util import post_events
from .servers import plant_stats, reset_plant_stats, running_gateway

ORDER_VIEW = """query($id: ID!) { order(id: $id) {
  id stage
  production { status orders { id status confirmedYieldQuantity } }
  quality { status inspectionLots { id hasUsageDecision } }
  logistics { status deliveries { id pickingStatus goodsMovementStatus } shipments { status } }
} }"""

CUSTOMER_ORDERS = """query($id: ID!) { customer(id: $id) { id orders(first: 200) {
  pageInfo { hasNextPage } nodes { id stage production { status } } } } }"""


def _emitter(plant, url: str, notification_rate: float = 0.0) -> EventEmitter:
    from gateway.config import DEV_SECRETS

    return EventEmitter(plant.world, url, DEV_SECRETS, duplicate_rate=0, reorder_rate=0, notification_rate=notification_rate)


async def _post_changes(http, url: str, plant, changes, *, notification: bool) -> None:
    """The plant's events for ``changes``, one signed request per system; asserts 202."""
    emitter = _emitter(plant, url)
    by_system: dict[str, list] = {}
    for change in changes:
        by_system.setdefault(change.system, []).append(emitter.event_for(change, notification=notification))
    for events in by_system.values():
        status, body = await post_events(http, url, events)
        assert status == 202, body


async def _order_at(gql, stage: str) -> str:
    data = await gql.query("query($s: [OrderStage!]) { orders(first: 1, filter: {stage: $s}) { nodes { id } } }", {"s": [stage]})
    return data["orders"]["nodes"][0]["id"]


async def _upstream_calls(http, plant_url: str) -> int:
    return sum((await plant_stats(http, plant_url)).values())


@pytest.mark.parametrize("notification", [False, True], ids=["data-event", "notification-only"])
async def test_cached_answer_needs_no_source_call_and_a_202_makes_the_next_read_fresh(gql, http, plant, gateway, notification):
    url, app = gateway
    responses = app.state.gateway.responses
    so = await _order_at(gql, "PRODUCTION_RELEASED")
    before = (await gql.query(ORDER_VIEW, {"id": so}))["order"]

    # Answered again: from the response cache, no source call at all.
    await reset_plant_stats(http, plant.url)
    hits = responses.hits
    assert (await gql.query(ORDER_VIEW, {"id": so}))["order"] == before
    assert responses.hits == hits + 1
    assert await _upstream_calls(http, plant.url) == 0

    # The plant moves on. Until it says so, the cached answer stands (no event, no news).
    changes = plant.world.advance_order(so)
    assert changes
    assert (await gql.query(ORDER_VIEW, {"id": so}))["order"] == before

    # The 202 is the line: the very next read is fresh, without waiting for processing.
    # (A notification-only production order event names no sales order: the gateway
    # looks it up before it answers.)
    # The processor is held, so only what happens before the 202 can make the read fresh.
    processor = app.state.gateway.processor
    await processor.stop()
    processed = processor.processed
    await _post_changes(http, url, plant, changes, notification=notification)
    after = (await gql.query(ORDER_VIEW, {"id": so}))["order"]
    assert after["production"]["orders"][0]["status"] != before["production"]["orders"][0]["status"]
    assert processor.processed == processed
    processor.start()
    await processor.drain()
    assert (await gql.query(ORDER_VIEW, {"id": so}))["order"] == after


async def test_listing_is_dropped_by_a_new_order_and_by_a_change_on_its_page(gql, http, plant, gateway):
    url, app = gateway
    responses = app.state.gateway.responses
    # A customer with an order released to production (one step can still move it).
    released = plant.world.orders_in_state("RELEASED")[0]
    customer = plant.world.get("A_SalesOrder", released).sold_to_party
    first = (await gql.query(CUSTOMER_ORDERS, {"id": customer}))["customer"]["orders"]["nodes"]
    stores = responses.stores
    assert (await gql.query(CUSTOMER_ORDERS, {"id": customer}))["customer"]["orders"]["nodes"] == first
    assert responses.stores == stores  # the second answer came from the cache

    # A new order of this customer joins its listing as soon as its events are accepted.
    placed = plant.world.place_order(customer, seed=7)
    new_so = next(c.key for c in placed if c.entity_set == "A_SalesOrder")
    await _post_changes(http, url, plant, placed, notification=False)
    ids = [n["id"] for n in (await gql.query(CUSTOMER_ORDERS, {"id": customer}))["customer"]["orders"]["nodes"]]
    assert ids == [n["id"] for n in first] + [new_so]

    # A change to one order on the page shows on the page.
    target = next(n for n in first if n["stage"] == "PRODUCTION_RELEASED" or n["stage"] == "ORDER_RECEIVED")
    changes = plant.world.advance_order(target["id"])
    await _post_changes(http, url, plant, changes, notification=True)
    page = (await gql.query(CUSTOMER_ORDERS, {"id": customer}))["customer"]["orders"]["nodes"]
    now = next(n for n in page if n["id"] == target["id"])
    fresh = plant.world.state_of(target["id"])
    assert (now["stage"], now["production"]["status"]) != (target["stage"], target["production"]["status"]), fresh


async def test_what_no_event_announces_is_not_cached(gql, http, plant, gateway):
    _url, app = gateway
    responses = app.state.gateway.responses
    so = plant.world.sales_orders[0]
    stores = responses.stores
    # The tracker's state, the journal's history and derived filters change without an
    # event naming what the answer read.
    await gql.query("query($id: ID!) { order(id: $id) { id exceptions { kind } } }", {"id": so})
    await gql.query("query($id: ID!) { order(id: $id) { id history(first: 5) { entries { cursor } } } }", {"id": so})
    await gql.query("{ orders(first: 3, filter: {stage: [IN_PRODUCTION]}) { nodes { id } } }")
    await gql.query("{ exceptions(first: 3) { nodes { id } } }")
    assert responses.stores == stores
    # Errors are never stored: an unknown id is fine (null), a bad argument is an error.
    _status, bad = await gql.post("query { orders(first: -1) { nodes { id } } }")
    assert bad["errors"]
    assert responses.stores == stores
    # But a plain query is.
    await gql.query("query($id: ID!) { order(id: $id) { id } }", {"id": so})
    assert responses.stores == stores + 1


async def test_answers_are_kept_apart_per_customer(plant, http):
    secret = "test-secret-for-hs256-tokens-only"
    auth = AuthConfig(mode="jwt", hs256_secret=secret, leeway_seconds=0)
    async with running_gateway(plant.url, auth=auth) as (url, _app):
        customers = sorted({plant.world.get("A_SalesOrder", so).sold_to_party for so in plant.world.sales_orders})[:2]
        query = "{ orders(first: 5) { nodes { id customerId } } }"
        seen = {}
        for _round in range(2):  # the second round is served from the cache
            for customer in customers:
                tok = mint_token(secret, role="customer", customer=customer)
                async with http.post(f"{url}/graphql", json={"query": query}, headers={"Authorization": f"Bearer {tok}"}) as resp:
                    assert resp.status == 200
                    nodes = (await resp.json())["data"]["orders"]["nodes"]
                assert nodes and {n["customerId"] for n in nodes} == {customer}
                assert seen.setdefault(customer, nodes) == nodes
        assert seen[customers[0]] != seen[customers[1]]


async def test_a_source_down_at_accept_time_drops_the_whole_namespace(gql, http, plant, gateway):
    url, app = gateway
    gw = app.state.gateway
    so = await _order_at(gql, "PRODUCTION_RELEASED")
    before = (await gql.query(ORDER_VIEW, {"id": so}))["order"]
    assert gw.cache.get((ns.PRODUCTION_ORDERS_BY_SALES_ORDER, so)) is not None
    changes = plant.world.advance_order(so)
    async with http.post(f"{plant.url}/control/faults", json={"mes": {"mode": "down"}}) as resp:
        assert resp.status == 200
    try:
        # A notification-only production order event: its sales order is unknown without
        # MES, so every cached production order list goes.
        await _post_changes(http, url, plant, [c for c in changes if c.system == "mes"], notification=True)
        assert not [k for k in gw.cache.keys() if k[0] == ns.PRODUCTION_ORDERS_BY_SALES_ORDER]
        assert len(gw.responses) == 0
    finally:
        async with http.delete(f"{plant.url}/control/faults") as resp:
            assert resp.status == 200
    await gw.processor.drain()
    after = (await gql.query(ORDER_VIEW, {"id": so}))["order"]
    assert after["production"]["orders"][0]["status"] != before["production"]["orders"][0]["status"]


def test_an_answer_computed_across_an_invalidation_is_not_stored():
    records = RecordCache()
    responses = ResponseCache(records)
    key, dep = ("q", None, b"{}", None), (ns.SALES_ORDER, "1")
    ticket = responses.ticket()
    records.invalidate([dep])  # an event lands while the answer is being computed
    assert not responses.put(key, b"old", [dep], ticket)
    assert responses.get(key) is None
    ticket = responses.ticket()
    assert responses.put(key, b"new", [dep], ticket)
    assert responses.get(key) == b"new"
    records.invalidate([(ns.SALES_ORDER, "2")])  # another order: still valid
    assert responses.get(key) == b"new"
    records.invalidate([dep])
    assert responses.get(key) is None
    # A namespace-wide drop fences reads of that namespace begun before it.
    ticket = responses.ticket()
    records.invalidate_namespace(ns.SALES_ORDER)
    assert not responses.put(key, b"old", [dep], ticket)


async def test_identical_requests_in_flight_share_one_computation(gql, http, plant, gateway):
    _url, app = gateway
    responses = app.state.gateway.responses
    so = plant.world.sales_orders[3]
    app.state.gateway.cache.invalidate_all()
    await reset_plant_stats(http, plant.url)
    answers = await asyncio.gather(*(gql.query(ORDER_VIEW, {"id": so}) for _ in range(8)))
    assert all(a == answers[0] for a in answers)
    assert responses.stores == 1 or responses.shared + responses.hits >= 7
    calls = await plant_stats(http, plant.url)
    assert calls.get("erp", 0) <= 2, calls  # not eight times the sources


async def test_an_answer_read_since_stored_is_computed_again_when_an_event_drops_it(gql, http, plant, gateway):
    """The entry goes at the 202 (never served after it), and is computed again without
    waiting for a reader: the next read finds the new state stored. An answer nobody read
    is only dropped."""
    url, app = gateway
    gw = app.state.gateway
    responses = gw.responses
    so = await _order_at(gql, "PRODUCTION_RELEASED")
    before = (await gql.query(ORDER_VIEW, {"id": so}))["order"]
    await gql.query(ORDER_VIEW, {"id": so})  # read once from the cache: worth refreshing
    customer = plant.world.get("A_SalesOrder", so).sold_to_party
    await gql.query(CUSTOMER_ORDERS, {"id": customer})  # stored, never read from the cache
    refreshed, stores = responses.refreshed, responses.stores

    changes = plant.world.advance_order(so)
    await _post_changes(http, url, plant, changes, notification=False)
    assert responses.refreshed == refreshed + 1  # the order's view, not the unread listing
    while gw.operations._refreshing:
        await asyncio.sleep(0.01)
    assert responses.stores == stores + 1
    hits = responses.hits
    after = (await gql.query(ORDER_VIEW, {"id": so}))["order"]
    assert responses.hits == hits + 1
    assert after["production"]["orders"][0]["status"] != before["production"]["orders"][0]["status"]

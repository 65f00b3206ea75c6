"""Subscriptions over real WebSockets (graphql-transport-ws) and SSE, against real events."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json

from gateway.bus import OrderChanged

from .events_util import send_changes
from .servers import plant_stats, reset_plant_stats
from .ws_client import WsClient

ORDER_UPDATED = "subscription($id: ID!, $after: String) { orderUpdated(id: $id, after: $after) { id production { orders { status } } } }"
ORDER_CHANGES = "subscription($c: ID, $after: String) { orderChanges(customer: $c, after: $after) { cursor eventType sources order { id customerId } } }"


async def _released_order(gql) -> dict:
    data = await gql.query("{ orders(first: 1, filter: {stage: [PRODUCTION_RELEASED]}) { nodes { id customerId } } }")
    return data["orders"]["nodes"][0]


async def _advance_and_send(plant, url, http, so: str) -> int:
    changes = plant.world.advance_order(so)
    assert changes
    return await send_changes(http, url, plant.world, changes)


async def test_order_updated_pushes_after_event(gql, http, plant, gateway):
    url, app = gateway
    order = await _released_order(gql)
    ws = await WsClient.open(url)
    await ws.subscribe("1", ORDER_UPDATED, {"id": order["id"]})
    first = await ws.next("1")  # current state first, with a cursor
    assert first["data"]["orderUpdated"]["id"] == order["id"]
    assert first["extensions"]["cursor"]
    status_before = first["data"]["orderUpdated"]["production"]["orders"][0]["status"]
    await _advance_and_send(plant, url, http, order["id"])
    pushed = await ws.next("1")
    assert pushed["data"]["orderUpdated"]["production"]["orders"][0]["status"] != status_before
    assert pushed["extensions"]["cursor"] != first["extensions"]["cursor"]
    await ws.close()


async def test_identical_subscriptions_share_one_resolution(gql, http, plant, gateway):
    url, app = gateway
    hub = app.state.gateway.hub
    order = await _released_order(gql)
    clients = [await WsClient.open(url) for _ in range(5)]
    for c in clients:
        await c.subscribe("s", ORDER_UPDATED, {"id": order["id"]})
        await c.next("s")
    executions = hub.executions
    n = await _advance_and_send(plant, url, http, order["id"])
    received = [[await c.next("s") for _ in range(n)] for c in clients]
    assert all(r == received[0] for r in received)
    assert len({p["extensions"]["cursor"] for p in received[0]}) == n
    # one execution per change, shared by all five subscribers
    assert hub.executions - executions == n
    for c in clients:
        await c.close()


async def test_resume_with_cursor_gets_every_missed_change(gql, http, plant, gateway):
    url, app = gateway
    order = await _released_order(gql)
    customer = order["customerId"]
    ws = await WsClient.open(url)
    await ws.subscribe("c", ORDER_CHANGES, {"c": customer})
    n = await _advance_and_send(plant, url, http, order["id"])
    seen = [await ws.next("c") for _ in range(n)][-1]
    cursor = seen["data"]["orderChanges"]["cursor"]
    assert seen["extensions"]["cursor"] == cursor
    await ws.close()

    # Offline: three more changes to this customer's order.
    missed = 0
    for _ in range(3):
        missed += await _advance_and_send(plant, url, http, order["id"])
    await app.state.gateway.processor.drain()

    ws = await WsClient.open(url)
    await ws.subscribe("c", ORDER_CHANGES, {"c": customer, "after": cursor})
    replayed = [await ws.next("c") for _ in range(missed)]
    cursors = [r["data"]["orderChanges"]["cursor"] for r in replayed]
    assert len(set(cursors)) == missed and cursor not in cursors
    assert all(r["data"]["orderChanges"]["order"]["customerId"] == customer for r in replayed)
    # then live, with no gap
    more = await _advance_and_send(plant, url, http, order["id"])
    live = [await ws.next("c") for _ in range(more)]
    assert all(item["data"]["orderChanges"]["cursor"] not in cursors for item in live)
    assert await ws.nothing()
    await ws.close()


async def test_customer_stream_gets_only_that_customers_orders(gql, http, plant, gateway):
    url, app = gateway
    order = await _released_order(gql)
    ws = await WsClient.open(url)
    await ws.subscribe("other", ORDER_CHANGES, {"c": "C-NOBODY"})
    await ws.subscribe("all", ORDER_CHANGES, {})
    n = await _advance_and_send(plant, url, http, order["id"])
    for _ in range(n):
        msg = await ws.next("all")
        assert msg["data"]["orderChanges"]["order"]["id"] == order["id"]
    assert await ws.nothing()
    await ws.close()


async def test_protocol_rules(gateway):
    url, _app = gateway
    ws = await WsClient.open(url, ack=False)
    await ws.subscribe("1", ORDER_UPDATED, {"id": "x"})
    assert await ws.closed_with() == 4401

    ws = await WsClient.open(url)
    await ws.send({"type": "connection_init"})
    assert await ws.closed_with() == 4429

    ws = await WsClient.open(url)
    await ws.subscribe("dup", ORDER_UPDATED, {"id": "10000001"})
    await ws.subscribe("dup", ORDER_UPDATED, {"id": "10000001"})
    assert await ws.closed_with() == 4409

    ws = await WsClient.open(url)
    await ws.conn.send("not json")
    assert await ws.closed_with() == 4400

    ws = await WsClient.open(url)
    await ws.subscribe("bad", "subscription { nope }")
    msg = await ws.recv()
    assert msg["type"] == "error" and "nope" in msg["payload"][0]["message"]
    await ws.send({"type": "ping"})
    assert (await ws.recv())["type"] == "pong"
    await ws.close()


async def test_legacy_protocol_refused(gateway):
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus, NegotiationError

    url, _app = gateway
    try:
        conn = await connect(url.replace("http://", "ws://") + "/graphql", subprotocols=["graphql-ws"])
    except (InvalidStatus, NegotiationError):
        return
    await conn.close()
    raise AssertionError("legacy graphql-ws subprotocol was accepted")


async def test_sse_subscription(gql, http, plant, gateway):
    url, _app = gateway
    order = await _released_order(gql)
    params = {"query": ORDER_UPDATED, "variables": json.dumps({"id": order["id"]})}
    # a GET is a browser "simple" request: CSRF prevention wants a preflight header (or a token)
    headers = {"Accept": "text/event-stream", "Apollo-Require-Preflight": "true"}
    async with http.get(f"{url}/graphql/stream", params=params, headers=headers) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"

        async def next_event() -> dict:
            data = None
            while True:
                line = (await asyncio.wait_for(resp.content.readline(), 5)).decode().rstrip("\n")
                if line.startswith("data: "):
                    data = json.loads(line[6:])
                elif line == "" and data is not None:
                    return data

        first = await next_event()
        assert first["data"]["orderUpdated"]["id"] == order["id"]
        await _advance_and_send(plant, url, http, order["id"])
        second = await next_event()
        assert second["extensions"]["cursor"] != first["extensions"]["cursor"]


async def test_fan_out_builds_a_batch_of_changed_orders_at_once(http, plant, gateway):
    """Changes to several orders of one customer, pushed to a subscription that selects
    derived fields: the orders are built with their views for all of them at once, so the
    plant sees at most one call per source and level, however many orders changed."""
    url, app = gateway
    gw = app.state.gateway
    customers = collections.Counter(plant.world.get("A_SalesOrder", so).sold_to_party for so in plant.world.sales_orders)
    customer = customers.most_common(1)[0][0]
    orders = [so for so in plant.world.sales_orders if plant.world.get("A_SalesOrder", so).sold_to_party == customer][:8]
    assert len(orders) >= 4
    ws = await WsClient.open(url)
    await ws.subscribe(
        "c",
        "subscription($c: ID) { orderChanges(customer: $c) { order { id stage deliveryRisk customer { name } production { status } } } }",
        {"c": customer},
    )
    while customer not in gw.hub.by_customer:
        await asyncio.sleep(0.01)
    seq = 1_000_000
    calls = []
    for batch in (orders[:2], orders):
        gw.cache.invalidate_all()
        await reset_plant_stats(http, plant.url)
        now = dt.datetime.now(dt.UTC)
        await gw.hub.fan_out(
            [OrderChanged(seq + i, so, customer, "erp", "SalesOrder.Changed", now) for i, so in enumerate(batch)]
        )
        seq += len(batch)
        pushed = [(await ws.next("c"))["data"]["orderChanges"]["order"] for _ in batch]
        assert sorted(p["id"] for p in pushed) == sorted(batch)
        assert all(p["stage"] and p["deliveryRisk"] and p["customer"]["name"] and p["production"] for p in pushed)
        calls.append(await plant_stats(http, plant.url))
    few, many = calls
    assert many["erp"] <= 2 and many["mes"] <= 2 and many["wms"] <= 2, many
    assert many.get("qms", 0) <= 1 and many.get("tms", 0) <= 1, many
    assert sum(many.values()) <= sum(few.values()) + 1, (few, many)  # + TMS: the larger batch may have shipments
    await ws.close()

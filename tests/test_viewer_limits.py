"""Requests that used to answer 5xx or drop the connection, and resource caps that were
missing: each must be a 4xx (or a WebSocket close code) with a clear message.

Real gateway under uvicorn on loopback, real HTTP, WebSocket and raw socket clients.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from gateway.auth import mint_token
from gateway.config import AuthConfig, LimitsConfig

from .servers import running_gateway
from .ws_client import WsClient

SECRET = "test-secret-for-the-viewer-limit-tests"
SSE = {"Accept": "text/event-stream"}
STREAMS = {
    "orderChanges": "subscription ($after: String) { orderChanges(after: $after) { cursor } }",
    "exceptionsChanged": "subscription ($after: String) { exceptionsChanged(after: $after) { cursor } }",
    "orderUpdated": 'subscription ($after: String) { orderUpdated(id: "%s", after: $after) { id } }',
}
BAD_CURSORS = ["not-a-cursor", base64.urlsafe_b64encode(b"change:x:y").decode(), "%%%", "Y2hhbmdlOjE="]


def bearer(role: str = "service", customer: str | None = None, subject: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(SECRET, role=role, customer=customer, subject=subject)}"}


@pytest.fixture
async def secured(plant):
    async with running_gateway(plant.url, auth=AuthConfig(mode="jwt", hs256_secret=SECRET), max_body_bytes=8000) as (url, app):
        yield url, app


async def test_sse_with_a_bad_after_cursor_is_400(secured, http, plant):
    url, _app = secured
    order = next(iter(plant.world.tables["A_SalesOrder"].records())).sales_order
    for field, query in STREAMS.items():
        for cursor in BAD_CURSORS:
            body = {"query": query % order if "%s" in query else query, "variables": {"after": cursor}}
            async with http.post(f"{url}/graphql/stream", json=body, headers={**SSE, **bearer()}) as resp:
                assert resp.status == 400, (field, cursor, resp.status, await resp.text())
                err = (await resp.json(content_type=None))["errors"][0]
                assert err["extensions"]["code"] == "BAD_USER_INPUT" and "cursor" in err["message"], (field, err)
        # over WebSocket the same cursor is a subscription error, the connection stays
        ws = await WsClient.open(url, init=bearer())
        await ws.subscribe("c", query % order if "%s" in query else query, {"after": BAD_CURSORS[0]})
        msg = await ws.recv()
        assert msg["type"] == "error" and msg["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT", msg
        await ws.send({"type": "ping"})
        assert (await ws.recv())["type"] == "pong"
        await ws.close()


async def test_binary_websocket_frame_closes_with_4400(secured):
    url, _app = secured
    ws = await WsClient.open(url, init=bearer())
    await ws.conn.send(b'{"type": "ping"}')  # a binary frame
    assert await ws.closed_with() == 4400
    assert "binary" in ws.conn.close_reason


async def test_one_size_limit_for_http_bodies_and_websocket_messages(secured, http):
    url, _app = secured  # max_body_bytes = 8000
    big = {"query": "{ __typename }", "variables": {}, "extensions": {"pad": "x" * 9000}}
    async with http.post(f"{url}/graphql", json=big, headers=bearer()) as resp:
        assert resp.status == 413
    ws = await WsClient.open(url, init=bearer())
    await ws.send({"id": "1", "type": "subscribe", "payload": big})
    assert await ws.closed_with() == 1009  # message too big, before it is read whole
    # just under the limit passes on both
    small = {"query": "{ __typename }", "extensions": {"pad": "x" * 7000}}
    async with http.post(f"{url}/graphql", json=small, headers=bearer()) as resp:
        assert resp.status == 200
    ws = await WsClient.open(url, init=bearer())
    await ws.send({"id": "1", "type": "subscribe", "payload": small})
    assert (await ws.next("1"))["data"] == {"__typename": "Query"}
    await ws.close()


async def _raw_request(url: str, head: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 10)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


async def test_request_header_size_is_capped(secured):
    url, _app = secured
    # a 1 MB Authorization header: refused with 431 as soon as the head passes the limit
    huge = b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + b"a" * 1_000_000 + b"\r\n\r\n"
    answer = await _raw_request(url, huge)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    # a normal head, and a large but allowed one (a long JWT), pass
    ok = b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + b"a" * 16_000 + b"\r\nConnection: close\r\n\r\n"
    answer = await _raw_request(url, ok)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


async def test_undeclared_variables_are_refused(secured, http):
    url, _app = secured
    q = "query ($n: Int!) { orders(first: $n) { nodes { id } } }"
    async with http.post(f"{url}/graphql", json={"query": q, "variables": {"n": 1, "pad": "x" * 100}}, headers=bearer()) as resp:
        assert resp.status == 400
        err = (await resp.json(content_type=None))["errors"][0]
        assert err["extensions"]["code"] == "UNDECLARED_VARIABLES" and "$pad" in err["message"], err
    sub = "subscription { orderChanges { cursor } }"
    async with http.post(f"{url}/graphql/stream", json={"query": sub, "variables": {"pad": "x"}}, headers={**SSE, **bearer()}) as resp:
        assert resp.status == 400
        assert (await resp.json(content_type=None))["errors"][0]["extensions"]["code"] == "UNDECLARED_VARIABLES"
    ws = await WsClient.open(url, init=bearer())
    await ws.subscribe("u", sub, {"pad": "x"})
    msg = await ws.recv()
    assert msg["type"] == "error" and msg["payload"][0]["extensions"]["code"] == "UNDECLARED_VARIABLES", msg
    await ws.close()


async def test_sse_streams_share_the_websocket_cap_per_viewer(plant, http):
    limits = LimitsConfig(connections_per_viewer=2, rate_per_second=1000, rate_burst=1000)
    async with running_gateway(plant.url, auth=AuthConfig(mode="jwt", hs256_secret=SECRET), limits=limits) as (url, app):
        guard = app.state.gateway.admission
        viewer = bearer(subject="greedy")
        body = {"query": "subscription { orderChanges { cursor } }"}
        opened: list[Any] = []
        try:
            for _ in range(2):
                resp = await http.post(f"{url}/graphql/stream", json=body, headers={**SSE, **viewer})
                assert resp.status == 200
                assert (await asyncio.wait_for(resp.content.readline(), 5)).startswith(b": connected")
                opened.append(resp)
            async with http.post(f"{url}/graphql/stream", json=body, headers={**SSE, **viewer}) as resp:
                assert resp.status == 429
                err = (await resp.json(content_type=None))["errors"][0]
                assert err["extensions"]["code"] == "TOO_MANY_CONNECTIONS" and "at most 2" in err["message"]
            # a WebSocket of the same viewer counts against the same cap
            ws = await WsClient.open(url, ack=False)
            await ws.send({"type": "connection_init", "payload": viewer})
            assert await ws.closed_with() == 4429
            # another viewer is not affected
            async with http.post(f"{url}/graphql/stream", json=body, headers={**SSE, **bearer(subject="calm")}) as resp:
                assert resp.status == 200
        finally:
            for resp in opened:
                resp.close()
        # a stream that ends gives its slot back
        for _ in range(50):
            if not guard.connections:
                break
            await asyncio.sleep(0.1)
        assert guard.connections == {}, guard.connections
        resp = await http.post(f"{url}/graphql/stream", json=body, headers={**SSE, **viewer})
        assert resp.status == 200
        resp.close()



async def test_ids_are_checked_against_the_key_format_before_any_source_call(secured, http, plant):
    url, app = secured
    status, body = await _post(http, url, "{ orders(first: 50) { nodes { id customerId } } }", bearer())
    customers = sorted({n["customerId"] for n in body["data"]["orders"]["nodes"]})
    a, b = customers[:2]
    gateway = app.state.gateway
    await gateway.exceptions.settled(30)
    erp_calls = gateway.sources.erp.client.resilience
    for query, argument in (
        (f'{{ orders(first: 50, filter: {{ customer: "{a},{b}" }}) {{ nodes {{ id customerId }} }} }}', "filter.customer"),
        ('{ order(id: "10000001,10000002") { id } }', "id"),
        (f'{{ customer(id: "{a},{b}") {{ id }} }}', "id"),
        ('{ impact(scenario: { workCenterDown: { workCenter: "WC-10,WC-20", hours: 4 } }) { totals { orders } } }', "workCenterDown.workCenter"),
    ):
        calls = erp_calls.calls
        status, body = await _post(http, url, query, bearer("planner"))
        assert status == 200, body
        err = body["errors"][0]
        assert err["extensions"]["code"] == "BAD_USER_INPUT" and f"`{argument}`" in err["message"], err
        assert "not a valid key" in err["message"]
        assert erp_calls.calls == calls  # nothing reached the ERP
    # the connectors never send such a key, whoever asks
    found = await gateway.sources.erp.sales_orders(["10000001,10000002"])
    assert found == {}
    ws = await WsClient.open(url, init=bearer())
    await ws.subscribe("k", 'subscription { orderUpdated(id: "1,2") { id } }')
    msg = await ws.recv()
    assert msg["type"] == "error" and msg["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT", msg
    await ws.close()


async def _post(http: Any, url: str, query: str, headers: dict[str, str]) -> tuple[int, dict]:
    async with http.post(f"{url}/graphql", json={"query": query}, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)

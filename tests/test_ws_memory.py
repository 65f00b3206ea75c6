"""The WebSocket server protocol lets go of the handshake once a connection is accepted.

uvicorn keeps the upgrade's request and response objects (with their headers) for a
connection's whole life; `gateway/server.py` drops them after the 101, a few KiB per idle
subscription (bench/README.md, memory per idle subscription). Real uvicorn, real clients.
"""

from __future__ import annotations

import asyncio
import gc

import pytest
from websockets.http11 import Request

from gateway.server import slim_websocket_protocol

from .events_util import send_changes
from .ws_client import WsClient

ORDER_UPDATED = "subscription($id: ID!) { orderUpdated(id: $id) { id production { orders { status } } } }"


def _live_protocols(cls: type) -> list:
    return [o for o in gc.get_objects() if type(o) is cls]


async def test_accepted_connections_keep_no_handshake_and_still_work(gql, http, plant, gateway):
    cls = slim_websocket_protocol()
    if cls is None:
        pytest.skip("uvicorn's sans-I/O WebSocket protocol is not installed: uvicorn's default is used")
    url, _app = gateway
    data = await gql.query("{ orders(first: 1, filter: {stage: [PRODUCTION_RELEASED]}) { nodes { id } } }")
    so = data["orders"]["nodes"][0]["id"]
    ws = await WsClient.open(url)
    await ws.subscribe("1", ORDER_UPDATED, {"id": so})
    await ws.next("1")  # the current state first

    live = _live_protocols(cls)
    assert live, "the gateway's server does not run the slim protocol"
    from websockets.protocol import Protocol

    for protocol in live:
        assert protocol.handshake_complete
        assert protocol.request is None and protocol.response is None
        # websockets' frame parser no longer holds the handshake request in its frame
        assert protocol.conn.parser.gi_code is Protocol.parse.__code__
        assert not any(isinstance(v, Request) for v in protocol.conn.parser.gi_frame.f_locals.values())
        # and the scope kept only the trace context of the handshake's headers
        assert not [h for h in protocol.scope["headers"] if h[0] not in (b"traceparent", b"tracestate", b"baggage")]

    # the connection still carries frames both ways after letting go of the handshake
    changes = plant.world.advance_order(so)
    assert changes
    await send_changes(http, url, plant.world, changes)
    msg = await ws.next("1", timeout=10)
    assert msg["data"]["orderUpdated"]["id"] == so
    await ws.send({"type": "ping"})
    assert (await ws.pong())["type"] == "pong"
    await ws.conn.close()


async def test_a_refused_handshake_still_answers(gateway):
    """The refusal path (no graphql-transport-ws subprotocol) is answered as before: 403."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    url, _app = gateway
    with pytest.raises(InvalidStatus) as refused:
        await connect(url.replace("http://", "ws://") + "/graphql", subprotocols=["graphql-ws"])
    assert refused.value.response.status_code == 403


async def test_an_idle_connection_runs_no_task_of_its_own(gql, http, plant, gateway):
    """An idle subscription holds only the server's task for its connection: the init
    timeout is a timer handle, and a writer task exists only while messages wait. The
    writer comes back for the next message, and the init timeout still closes a silent
    connection (tests/test_limits.py checks its 4408)."""
    url, _app = gateway
    data = await gql.query("{ orders(first: 1, filter: {stage: [PRODUCTION_RELEASED]}) { nodes { id } } }")
    so = data["orders"]["nodes"][0]["id"]
    ws = await WsClient.open(url)
    await ws.subscribe("1", ORDER_UPDATED, {"id": so})
    await ws.next("1")
    await ws.send({"type": "ping"})
    assert (await ws.pong())["type"] == "pong"
    await asyncio.sleep(0.05)  # the writer ends once its queue is empty

    def own_tasks() -> list[asyncio.Task]:  # tasks running gateway/websocket.py's code (not the client's)
        codes = (getattr(t.get_coro(), "cr_code", None) for t in asyncio.all_tasks())
        return [c.co_qualname for c in codes if c is not None and c.co_filename.endswith("gateway/websocket.py")]

    assert own_tasks() == []
    changes = plant.world.advance_order(so)
    assert changes
    await send_changes(http, url, plant.world, changes)
    msg = await ws.next("1", timeout=10)
    assert msg["data"]["orderUpdated"]["id"] == so
    await asyncio.sleep(0.05)
    assert own_tasks() == []
    await ws.conn.close()

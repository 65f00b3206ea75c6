"""The event path over real HTTP: signed CloudEvents in, fresh answers out."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest

from gateway.config import DEV_SECRETS
from sources.signing import sign
from sources.simulator.emitter import EventEmitter

from .events_util import BATCH, make_event, post_events, send_changes

ORDER_VIEW = """query($id: ID!) { order(id: $id) {
  id stage
  production { status orders { id status confirmedYieldQuantity } }
  quality { status }
  logistics { status deliveries { id pickingStatus goodsMovementStatus } shipments { status } }
} }"""


async def _find(gql, stage: str) -> str:
    data = await gql.query("query($s: [OrderStage!]) { orders(first: 1, filter: {stage: $s}) { nodes { id } } }", {"s": [stage]})
    nodes = data["orders"]["nodes"]
    assert nodes, f"no order at stage {stage} in the plant"
    return nodes[0]["id"]


def _emitter(plant, url: str) -> EventEmitter:
    return EventEmitter(plant.world, url, DEV_SECRETS, duplicate_rate=0, reorder_rate=0, notification_rate=0)


async def _journal_count(app) -> int:
    return await app.state.gateway.journal.count()


@pytest.mark.parametrize("notification", [False, True], ids=["data-event", "notification-only"])
async def test_signed_event_changes_next_query(gql, http, plant, gateway, notification):
    url, app = gateway
    so = await _find(gql, "PRODUCTION_RELEASED")
    before = (await gql.query(ORDER_VIEW, {"id": so}))["order"]
    # The plant moves on; until it says so, the gateway serves its cached view.
    changes = plant.world.advance_order(so)
    assert changes
    assert (await gql.query(ORDER_VIEW, {"id": so}))["order"] == before
    emitter = _emitter(plant, url)
    events = [emitter.event_for(c, notification=notification) for c in changes]
    status, body = await post_events(http, url, events)
    assert status == 202, body
    assert body["accepted"] == len(events) and body["duplicates"] == 0
    await app.state.gateway.processor.drain()
    after = (await gql.query(ORDER_VIEW, {"id": so}))["order"]
    assert after != before
    assert after["production"]["orders"][0]["status"] != before["production"]["orders"][0]["status"]


async def test_duplicate_has_no_second_effect(gql, http, plant, gateway):
    url, app = gateway
    so = await _find(gql, "PRODUCTION_RELEASED")
    changes = plant.world.advance_order(so)
    event = _emitter(plant, url).event_for(changes[0])
    status, body = await post_events(http, url, event)
    assert status == 202 and body["duplicates"] == 0
    await app.state.gateway.processor.drain()
    processed = app.state.gateway.processor.processed
    count = await _journal_count(app)
    status, body2 = await post_events(http, url, event)
    assert status == 202 and body2 == {**body, "duplicates": 1}
    await app.state.gateway.processor.drain()
    assert await _journal_count(app) == count
    assert app.state.gateway.processor.processed == processed


async def test_older_event_does_not_regress(gql, http, plant, gateway):
    url, app = gateway
    so = await _find(gql, "PRODUCTION_RELEASED")
    [po] = [c for c in plant.world.advance_order(so) if c.entity_set == "A_ProductionOrder"][:1]
    newer = make_event("mes", "ProductionOrder", "Started", po.key, data=po.record.to_api(), time=po.occurred_at)
    old_data = {**po.record.to_api(), "OrderStatus": "RELEASED", "MfgOrderActualStartDate": None}
    older = make_event(
        "mes", "ProductionOrder", "Released", po.key, data=old_data, time=po.occurred_at - dt.timedelta(hours=3)
    )
    assert (await post_events(http, url, newer))[0] == 202
    await app.state.gateway.processor.drain()
    state = (await gql.query(ORDER_VIEW, {"id": so}))["order"]
    assert (await post_events(http, url, older))[0] == 202
    await app.state.gateway.processor.drain()
    assert app.state.gateway.processor.stale == 1
    assert (await gql.query(ORDER_VIEW, {"id": so}))["order"] == state
    history = await gql.query(
        "query($id: ID!) { order(id: $id) { history { entries { eventType stale occurredAt } } } }", {"id": so}
    )
    entries = history["order"]["history"]["entries"]
    assert [e["stale"] for e in entries] == [True, False]  # oldest business time first, kept but not applied


async def test_bad_requests_are_refused_and_store_nothing(gql, http, gateway):
    url, app = gateway
    count = await _journal_count(app)
    good = make_event("mes", "WorkCenter", "Down", "WC-10")
    cases = {
        "malformed JSON": dict(body=b'[{"specversion": "1.0",', events=[good]),
        "missing id": dict(events=[{k: v for k, v in good.items() if k != "id"}]),
        "missing time": dict(events=[{k: v for k, v in good.items() if k != "time"}]),
        "unknown source": dict(events=[{**good, "source": "/plant/1000/crm"}], system="mes"),
        "unknown type": dict(events=[{**good, "type": "com.example.Thing.Happened.v1"}]),
        "type of another system": dict(events=[{**good, "type": "sap.s4.beh.salesorder.v1.SalesOrder.Changed.v1"}]),
        "no key": dict(events=[{**good, "subject": None, "data": {}}]),
        "bad signature": dict(events=[good], secret="wrong"),
        "missing signature": dict(events=[good], signature=None),
        "malformed signature": dict(events=[good], signature="sha256=abc"),
        "replayed (old timestamp)": dict(events=[good], timestamp=int(dt.datetime.now(dt.UTC).timestamp()) - 3600),
        "wrong content type": dict(events=[good], content_type="text/plain"),
        "empty batch": dict(events=[], system="mes"),
    }
    expected = {
        "malformed JSON": 400, "missing id": 400, "missing time": 400, "unknown source": 400, "unknown type": 400,
        "type of another system": 400, "no key": 400, "bad signature": 401, "missing signature": 401,
        "malformed signature": 401, "replayed (old timestamp)": 401, "wrong content type": 415, "empty batch": 400,
    }
    for name, kwargs in cases.items():
        events = kwargs.pop("events")
        status, body = await post_events(http, url, events, **kwargs)
        assert status == expected[name], (name, status, body)
        assert body["error"], name
    # one good event among bad ones: the whole batch is refused
    status, _ = await post_events(http, url, [good, {**good, "id": "x2", "type": "nope.v1"}])
    assert status == 400
    # oversized body
    big = orjson.dumps([{**good, "id": f"big-{i}", "data": {"WorkCenter": "WC-10", "pad": "x" * 1000}} for i in range(1200)])
    headers = {"Content-Type": BATCH, "X-Ordergraph-Signature": sign(DEV_SECRETS["mes"], big)}
    async with http.post(f"{url}/events", data=big, headers=headers) as resp:
        assert resp.status == 413
    assert await _journal_count(app) == count
    # and the same good event is still accepted afterwards
    status, _ = await post_events(http, url, good)
    assert status == 202
    assert await _journal_count(app) == count + 1


async def test_cache_race_read_before_invalidation_does_not_write_back(gql, http, plant, gateway):
    """A slow read that began before an event must not put its old answer in the cache."""
    import asyncio

    url, app = gateway
    so = await _find(gql, "PRODUCTION_RELEASED")
    cache = app.state.gateway.cache
    q = "query($id: ID!) { order(id: $id) { production { orders { id status } } } }"
    before = (await gql.query(q, {"id": so}))["order"]["production"]["orders"]
    cache.invalidate_all()
    plant.world.set_latency({"mes": 400})
    slow = asyncio.create_task(gql.query(q, {"id": so}))  # reads MES: old state, slowly
    await asyncio.sleep(0.15)
    changes = plant.world.advance_order(so)  # the plant changes meanwhile ...
    plant.world.set_latency({"mes": 0})
    await send_changes(http, url, plant.world, changes)  # ... and says so
    await app.state.gateway.processor.drain()
    stale_answer = (await slow)["order"]["production"]["orders"]
    assert stale_answer == before  # the in-flight read saw the old state
    refused = cache.refused_writes
    assert refused >= 1
    after = (await gql.query(q, {"id": so}))["order"]["production"]["orders"]
    assert after != before  # and it did not write it back

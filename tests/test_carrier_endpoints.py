"""Carrier tracking over HTTP: AfterShip webhooks and EDI 214 against the gateway under
uvicorn, through the event path's door (journaled, deduplicated, all or nothing)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest

from gateway.config import CarriersConfig
from sources.carriers.aftership import HEADER, sign

SECRET = CarriersConfig().aftership_secret
TOKEN = CarriersConfig().edi214_token


def shipped(world: Any) -> tuple[str, str, str]:
    """(tracking number, delivery document, sales order) of a shipment of the plant."""
    for key in sorted(world.tables["Shipment"].keys()):
        ship = world.get("Shipment", key)
        delivery = world.get("A_OutbDeliveryHeader", ship.delivery_document)
        if delivery is not None:
            return ship.tracking_number, ship.delivery_document, delivery.sales_order
    raise AssertionError("the plant has no shipment")


def webhook(tracking: str, delivery: str, *, tag: str = "InTransit", when: dt.datetime, **msg: Any) -> bytes:
    body = {
        "event": "tracking_update",
        "event_id": "6c1c3a0a-0f5e-4d3f-9a1e-2d3c4b5a6f70",
        "ts": int(when.timestamp()),
        "msg": {
            "tracking_number": tracking,
            "slug": "dhl",
            "tag": tag,
            "subtag": f"{tag}_001",
            "order_number": delivery,
            "checkpoints": [
                {"checkpoint_time": when.isoformat(), "location": "Stuttgart, DE", "message": "Departed", "tag": tag},
            ],
            **msg,
        },
    }
    return orjson.dumps(body)


def edi(tracking: str, delivery: str, when: dt.datetime, *, status: str = "X6") -> str:
    day, hhmm = when.strftime("%Y%m%d"), when.strftime("%H%M")
    body = [
        "ST*214*0001",
        f"B10*{tracking}*{delivery}*DHLF",
        f"L11*{delivery}*DO",
        "LX*1",
        f"AT7*{status}*NS***{day}*{hhmm}*UT",
        "MS1*HEILBRONN*BW*DE",
        "AT8*G*K*1250*3",
    ]
    return "~\n".join([*body, f"SE*{len(body) + 1}*0001"]) + "~\n"


async def journal(gw: Any) -> list[Any]:
    last = await gw.journal.last_seq()
    return [e for seq in range(1, last + 1) if (e := await gw.journal.get(seq)) is not None]


@pytest.fixture
def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=10)


# --- AfterShip ---------------------------------------------------------------------------


async def test_aftership_webhook_becomes_shipment_events_of_the_order(gateway, plant, http, now):
    url, app = gateway
    gw = app.state.gateway
    tracking, delivery, so = shipped(plant.world)
    body = webhook(tracking, delivery, when=now)
    async with http.post(f"{url}/carriers/aftership", data=body, headers={HEADER: sign(SECRET, body)}) as resp:
        assert resp.status == 202, await resp.text()
        first = await resp.json()
    assert first["accepted"] == 1 and first["duplicates"] == 0
    await gw.processor.drain()
    (event,) = [e for e in await journal(gw) if e.subject == tracking]
    assert event.source == "tms" and event.type.endswith("Shipment.StatusUpdated.v1")
    assert event.data["Tag"] == "InTransit" and event.data["StatusCode"] == "X6" and event.data["Carrier"] == "dhl"
    assert event.processed and so in event.orders  # mapped to the customer order

    # AfterShip retries (at least once): the same webhook again changes nothing.
    async with http.post(f"{url}/carriers/aftership", data=body, headers={HEADER: sign(SECRET, body)}) as resp:
        assert resp.status == 202 and (await resp.json())["duplicates"] == 1
    assert len([e for e in await journal(gw) if e.subject == tracking]) == 1


async def test_aftership_signature_is_required(gateway, plant, http, now):
    url, app = gateway
    tracking, delivery, _so = shipped(plant.world)
    body = webhook(tracking, delivery, when=now)
    before = await app.state.gateway.journal.last_seq()
    for headers in ({}, {HEADER: sign("not-the-secret", body)}, {HEADER: "%%%"}, {HEADER: sign(SECRET, body + b" ")}):
        async with http.post(f"{url}/carriers/aftership", data=body, headers=headers) as resp:
            assert resp.status == 401, headers
            assert HEADER in (await resp.json())["error"] or "secret" in (await resp.json())["error"]
    assert await app.state.gateway.journal.last_seq() == before


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda m: m.pop("tracking_number"), "msg.tracking_number"),
        (lambda m: m.update(tag="Teleported"), "msg.tag"),
        (lambda m: m["checkpoints"][0].update(checkpoint_time="yesterday"), "msg.checkpoints[0].checkpoint_time"),
        (lambda m: m.update(checkpoints="none"), "msg.checkpoints"),
    ],
)
async def test_bad_aftership_webhook_is_400_naming_the_field(gateway, plant, http, now, change, field):
    url, app = gateway
    tracking, delivery, _so = shipped(plant.world)
    doc = orjson.loads(webhook(tracking, delivery, when=now))
    change(doc["msg"])
    body = orjson.dumps(doc)
    before = await app.state.gateway.journal.last_seq()
    async with http.post(f"{url}/carriers/aftership", data=body, headers={HEADER: sign(SECRET, body)}) as resp:
        assert resp.status == 400
        assert field in (await resp.json())["error"]
    assert await app.state.gateway.journal.last_seq() == before


# --- EDI 214 -------------------------------------------------------------------------------


def edi_headers(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/edi-x12"}


async def test_edi214_becomes_shipment_events_of_the_order(gateway, plant, http, now):
    url, app = gateway
    gw = app.state.gateway
    tracking, delivery, so = shipped(plant.world)
    text = edi(tracking, delivery, now, status="AF")
    async with http.post(f"{url}/carriers/edi214", data=text, headers=edi_headers()) as resp:
        assert resp.status == 202, await resp.text()
        assert (await resp.json())["accepted"] == 1
    await gw.processor.drain()
    (event,) = [e for e in await journal(gw) if e.subject == tracking]
    assert event.data["StatusCode"] == "AF" and event.data["Carrier"] == "DHLF"
    assert event.data["DeliveryDocument"] == delivery and event.data["Weight"] == "1250"
    assert event.data["TrackingEvents"][0]["Location"].startswith("HEILBRONN")
    assert event.processed and so in event.orders


@pytest.mark.parametrize(
    "mutate, segment, where",
    [
        (lambda t: t.replace("*NS***", "*NS***2026139"), "AT7", "AT7 element 5"),
        (lambda t: t.replace("AT7*AF", "AT7*ZZ"), "AT7", "AT7 element 1: unknown shipment status code 'ZZ'"),
        (lambda t: t.replace("*DHLF", "*"), "B10", "B10 element 3"),
        (lambda t: t.replace("SE*8", "SE*6"), "SE", "SE element 1"),
        (lambda t: "HELLO*WORLD~", "HELLO", "not a segment id"),
    ],
)
async def test_bad_edi214_is_400_naming_the_segment_and_nothing_applied(gateway, plant, http, now, mutate, segment, where):
    url, app = gateway
    tracking, delivery, _so = shipped(plant.world)
    good = edi(tracking, delivery, now, status="AF")
    # Two transaction sets, the second bad: the first is not applied either.
    second = mutate(edi(tracking, delivery, now + dt.timedelta(minutes=5), status="AF").replace("0001", "0002"))
    before = await app.state.gateway.journal.last_seq()
    async with http.post(f"{url}/carriers/edi214", data=good + second, headers=edi_headers()) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert where in body["error"]
    if segment is not None:
        assert body["segment"] == segment and isinstance(body["position"], int)
    assert await app.state.gateway.journal.last_seq() == before


async def test_edi214_needs_its_token_and_a_bounded_text_body(gateway, plant, http, now):
    url, app = gateway
    tracking, delivery, _so = shipped(plant.world)
    text = edi(tracking, delivery, now)
    for headers in ({"Content-Type": "text/plain"}, edi_headers("wrong")):
        async with http.post(f"{url}/carriers/edi214", data=text, headers=headers) as resp:
            assert resp.status == 401
    async with http.post(f"{url}/carriers/edi214", data=text, headers={**edi_headers(), "Content-Type": "application/json"}) as resp:
        assert resp.status == 415
    limit = app.state.gateway.config.events.max_body_bytes
    async with http.post(f"{url}/carriers/edi214", data=text + "X" * limit, headers=edi_headers()) as resp:
        assert resp.status == 413
    async with http.post(f"{url}/carriers/aftership", data=b"{" + b" " * limit, headers={HEADER: "x"}) as resp:
        assert resp.status == 413

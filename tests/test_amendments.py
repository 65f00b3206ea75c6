"""Things taken back in the simulated plant — a goods-issue reversal, a production
confirmation cancelled — each a real source change with its event, and the gateway's view
following them (stage back, history, prediction), against the plant and the gateway under
uvicorn."""

from __future__ import annotations

import asyncio
import datetime as dt

import aiohttp
import pytest

from sources.simulator.emitter import PlantDriver
from sources.simulator.world import World

from .events_util import send_changes
from .servers import GraphQLClient, running_gateway, running_plant

START = dt.datetime(2025, 3, 10, 8, 0, tzinfo=dt.UTC)
VIEW = """query($id: ID!) { order(id: $id) {
  stage items { item shippedQuantity openQuantity }
  logistics { deliveries { id goodsMovementStatus goodsIssuedAt } }
  production { orders { id status confirmedYieldQuantity } }
  history(first: 200) { entries { eventType } } } }"""


@pytest.fixture
async def frozen():
    async with running_plant(start=START) as plant:
        plant.world.set_speed(0)

        def clock() -> dt.datetime:
            return plant.world.now().replace(microsecond=0)

        async with running_gateway(plant.url, domain_clock=clock) as (url, app):
            async with aiohttp.ClientSession() as http:
                yield plant, url, http, app


async def send(http, url: str, world, changes: list, app) -> None:
    """Send the plant's changes as its webhooks do, and wait until the gateway applied them
    (history and exceptions follow the event processor, after the 202)."""
    for start in range(0, len(changes), 200):  # within the gateway's body limit
        await send_changes(http, url, world, changes[start : start + 200])
    gw = app.state.gateway
    await gw.processor.drain()
    await asyncio.wait_for(gw.processor.idle.wait(), 10)
    await gw.exceptions.settled()


async def test_a_goods_issue_reversal_moves_the_stage_back_and_the_order_ships_again(frozen) -> None:
    plant, url, http, app = frozen
    world = plant.world
    gql = GraphQLClient(url, http)
    so = world.reversible_goods_issues()[0]
    before = (await gql.query(VIEW, {"id": so}))["order"]
    assert before["stage"] == "GOODS_ISSUED"
    assert all(i["openQuantity"] == 0 for i in before["items"])

    # The control API, as a plant operator would: 409 when there is nothing to take back.
    told: list = []
    world.subscribe(told.append)
    async with http.post(f"{plant.url}/control/orders/{so}/reverse-goods-issue") as resp:
        assert resp.status == 200
        answer = await resp.json()
    assert (answer["from"], answer["to"]) == ("GOODS_ISSUED", "PACKED")
    types = [c["changeType"] for c in answer["changes"]]
    assert "OutboundDelivery.GoodsIssueReversed" in types and "SalesOrder.Changed" in types
    async with http.post(f"{plant.url}/control/orders/{so}/reverse-goods-issue") as resp:
        assert resp.status == 409 and "no goods issue to reverse" in (await resp.json())["error"]["message"]
    # The plant's webhooks send what changed.
    assert [c.change_type for c in told] == types
    await send(http, url, world, told, app)

    after = (await gql.query(VIEW, {"id": so}))["order"]
    assert after["stage"] == "PACKED"  # back: the goods have not left the plant
    assert all(d["goodsMovementStatus"] != "COMPLETE" for d in after["logistics"]["deliveries"])
    assert all(i["shippedQuantity"] == 0 and i["openQuantity"] > 0 for i in after["items"])
    history = [e["eventType"] for e in after["history"]["entries"]]
    assert any("GoodsIssueReversed" in t for t in history), history

    # The plant issues the goods again a few working hours later.
    shipped = []
    for _ in range(48):
        shipped = world.advance_clock(1)
        if world.state_of(so) != "PACKED":
            break
    assert world.state_of(so) == "GOODS_ISSUED"
    await send(http, url, world, shipped, app)
    again = (await gql.query(VIEW, {"id": so}))["order"]
    assert again["stage"] == "GOODS_ISSUED"
    assert all(i["openQuantity"] == 0 for i in again["items"])


async def test_a_cancelled_final_confirmation_sends_the_order_back_into_production(frozen) -> None:
    plant, url, http, app = frozen
    world = plant.world
    gql = GraphQLClient(url, http)
    so = next(s for s in world.cancellable_confirmations() if world.state_of(s) == "PRODUCTION_COMPLETE")
    before = (await gql.query(VIEW, {"id": so}))["order"]
    assert before["stage"] == "IN_QUALITY_INSPECTION"  # made, awaiting inspection
    told: list = []
    world.subscribe(told.append)
    async with http.post(f"{plant.url}/control/orders/{so}/cancel-confirmation") as resp:
        assert resp.status == 200
        answer = await resp.json()
    assert answer["to"] == "IN_PRODUCTION"
    await send(http, url, world, told, app)
    after = (await gql.query(VIEW, {"id": so}))["order"]
    assert after["stage"] == "IN_PRODUCTION"
    made = {p["id"]: p for p in before["production"]["orders"]}
    for po in after["production"]["orders"]:
        if made[po["id"]]["status"] == "CONFIRMED":
            assert po["status"] == "PARTIALLY_CONFIRMED"
            assert po["confirmedYieldQuantity"] < made[po["id"]]["confirmedYieldQuantity"]
    assert any("ConfirmationCancelled" in e["eventType"] for e in after["history"]["entries"])
    # Production confirms again later, and the order goes on to inspection.
    for _ in range(120):
        world.advance_clock(1)
        if world.state_of(so) != "IN_PRODUCTION":
            break
    assert world.state_of(so) in ("PRODUCTION_COMPLETE", "QUALITY_HOLD")


async def test_cancel_confirmation_refuses_an_order_with_nothing_to_take_back(frozen) -> None:
    plant, _url, http, _app = frozen
    delivered = plant.world.orders_in_state("DELIVERED")[0]
    async with http.post(f"{plant.url}/control/orders/{delivered}/cancel-confirmation") as resp:
        assert resp.status == 409
    async with http.post(f"{plant.url}/control/orders/99999999/cancel-confirmation") as resp:
        assert resp.status == 404


def test_the_driver_takes_things_back_now_and_then_deterministically() -> None:
    def run() -> list[tuple[str, str]]:
        world = World.generate(300, start=START, speed=0)
        seen: list = []
        world.subscribe(seen.append)
        driver = PlantDriver(world, speed=3600, breakdown_rate=0, shortage_rate=0, delay_rate=0,
                             intake_per_day=0, reversal_rate=0.5, seed=5)
        for _ in range(24):
            driver.step()
        return [(c.change_type, c.key) for c in seen]

    first = run()
    kinds = {t for t, _ in first}
    assert {"OutboundDelivery.GoodsIssueReversed", "ProductionOrder.ConfirmationCancelled"} <= kinds
    assert "ProductionOrder.Changed" in kinds  # a quantity change
    assert "SalesOrder.Changed" in kinds
    assert run() == first



async def test_a_larger_quantity_on_running_production_is_a_production_delay(frozen) -> None:
    plant, url, http, app = frozen
    world = plant.world
    gql = GraphQLClient(url, http)
    running = [
        (so, item) for so, item in world.changeable_quantities()
        if world.get("A_ProductionOrder", _po_of(world, so, item)).status in ("STARTED", "PARTIALLY_CONFIRMED")
    ]
    so, item = running[0]
    q = """query($id: ID!) { order(id: $id) { items { item quantity } netValue { amount } predictedDeliveryDate
      exceptions { kind } history(first: 200) { entries { eventType } } } }"""
    before = (await gql.query(q, {"id": so}))["order"]
    qty = next(i["quantity"] for i in before["items"] if i["item"] == item)
    told: list = []
    world.subscribe(told.append)
    async with http.post(f"{plant.url}/control/orders/{so}/quantity", json={"item": item, "quantity": qty * 4}) as resp:
        assert resp.status == 200, await resp.text()
    await send(http, url, world, told, app)
    after = (await gql.query(q, {"id": so}))["order"]
    assert next(i["quantity"] for i in after["items"] if i["item"] == item) == qty * 4
    assert after["netValue"]["amount"] > before["netValue"]["amount"]
    assert after["predictedDeliveryDate"] > before["predictedDeliveryDate"]
    # Four times the work on the schedule planned for one: production runs late.
    assert "PRODUCTION_DELAY" in {x["kind"] for x in after["exceptions"]}
    history = [e["eventType"] for e in after["history"]["entries"]]
    assert sum("Changed" in t for t in history) > sum("Changed" in e["eventType"] for e in before["history"]["entries"])

    # Nothing to change once production is confirmed; a bad body is a 400.
    done = next(
        so for so in world.orders_in_state("QUALITY_RELEASED") if world.get("A_SalesOrder", so).items
    )
    first_item = world.get("A_SalesOrder", done).items[0].sales_order_item
    async with http.post(f"{plant.url}/control/orders/{done}/quantity", json={"item": first_item, "quantity": 3}) as resp:
        assert resp.status == 409
    async with http.post(f"{plant.url}/control/orders/{so}/quantity", json={"quantity": "many"}) as resp:
        assert resp.status == 400


def _po_of(world, so: str, item: str) -> str:
    return next(
        po.manufacturing_order for po in world.tables["A_ProductionOrder"].records()
        if po.sales_order == so and po.sales_order_item == item and po.status not in ("TECO",)
    )


DATES = """query($id: ID!) { order(id: $id) { confirmedDeliveryDate predictedDeliveryDate deliveryRisk stage
  items { scheduleLines { confirmedDeliveryDate goodsIssueDate } } history(first: 200) { entries { eventType } } } }"""


EXCEPTIONS = 'query($id: ID!) { order(id: $id) { exceptions { id kind daysLate } } }'


async def test_a_date_pulled_in_before_the_plan_raises_its_exception_before_the_ship_by_day(frozen) -> None:
    plant, url, http, app = frozen
    world = plant.world
    gql = GraphQLClient(url, http)
    today = world.now().date()
    so, planned = next(
        (s, line.goods_issue_date)
        for s in world.changeable_dates()
        if world.state_of(s) in ("RECEIVED", "RELEASED")
        for line in world.get("A_SalesOrder", s).items[0].schedule_lines
        if line.goods_issue_date and line.goods_issue_date >= today + dt.timedelta(days=12)
    )
    assert not {e["kind"] for e in (await gql.query(EXCEPTIONS, {"id": so}))["order"]["exceptions"]} & {
        "PROMISE_BEFORE_PLAN", "DISPATCH_MISSED"}
    told: list = []
    world.subscribe(told.append)
    requested = today + dt.timedelta(days=7)  # its ship-by day is days ahead, before the planned goods issue
    async with http.post(f"{plant.url}/control/orders/{so}/date", json={"requested": requested.isoformat()}) as resp:
        assert resp.status == 200, await resp.text()
    await send(http, url, world, told, app)
    order = (await gql.query(DATES, {"id": so}))["order"]
    assert order["confirmedDeliveryDate"] < planned.isoformat()
    assert order["deliveryRisk"] == "LATE"
    found = {e["kind"]: e for e in (await gql.query(EXCEPTIONS, {"id": so}))["order"]["exceptions"]}
    assert "PROMISE_BEFORE_PLAN" in found and found["PROMISE_BEFORE_PLAN"]["daysLate"] > 0
    assert "DISPATCH_MISSED" not in found  # the ship-by day has not come yet
    record = (await gql.query('query($id: ID!) { exception(id: $id) { open rootCause { system entity key } } }',
                              {"id": found["PROMISE_BEFORE_PLAN"]["id"]}))["exception"]
    assert record["open"] and record["rootCause"] == {"system": "erp", "entity": "SalesOrder", "key": so}


async def test_a_postponed_date_moves_the_promise_and_the_plant_ships_later(frozen) -> None:
    plant, url, http, app = frozen
    world = plant.world
    gql = GraphQLClient(url, http)
    so = next(s for s in world.changeable_dates() if world.state_of(s) == "QUALITY_RELEASED")
    before = (await gql.query(DATES, {"id": so}))["order"]
    old = dt.date.fromisoformat(before["confirmedDeliveryDate"])
    told: list = []
    world.subscribe(told.append)
    requested = old + dt.timedelta(days=14)
    async with http.post(f"{plant.url}/control/orders/{so}/date", json={"requested": requested.isoformat()}) as resp:
        assert resp.status == 200, await resp.text()
        confirmed = dt.date.fromisoformat((await resp.json())["confirmed"])
    assert confirmed >= requested
    await send(http, url, world, told, app)
    after = (await gql.query(DATES, {"id": so}))["order"]
    assert after["confirmedDeliveryDate"] == confirmed.isoformat()
    lines = [line for i in after["items"] for line in i["scheduleLines"]]
    assert all(line["confirmedDeliveryDate"] == confirmed.isoformat() for line in lines)
    assert min(line["goodsIssueDate"] for line in lines) > min(
        line["goodsIssueDate"] for i in before["items"] for line in i["scheduleLines"]
    )
    assert after["deliveryRisk"] == "ON_TRACK"
    assert len(after["history"]["entries"]) > len(before["history"]["entries"])
    # The plant holds the goods: no goods issue before the new goods-issue day.
    issue_day = min(dt.date.fromisoformat(line["goodsIssueDate"]) for line in lines)
    while world.state_of(so) not in ("GOODS_ISSUED", "IN_TRANSIT", "OUT_FOR_DELIVERY", "DELIVERED"):
        world.advance_clock(6)
    delivery = world.tables["A_OutbDeliveryHeader"].lookup("ReferenceSDDocument", [so])
    issued = [world.get("A_OutbDeliveryHeader", d).actual_goods_movement_date for d in delivery]
    assert min(issued).date() >= issue_day - dt.timedelta(days=1)  # plant-local day, UTC instant


async def test_a_date_pulled_in_beyond_what_the_plant_can_make_is_late_at_once(frozen) -> None:
    plant, url, http, app = frozen
    world = plant.world
    gql = GraphQLClient(url, http)
    candidates = [s for s in world.changeable_dates() if world.state_of(s) == "RELEASED"]
    tomorrow = (world.now() + dt.timedelta(days=1)).date()
    so = candidates[0]
    before = (await gql.query(DATES, {"id": so}))["order"]
    told: list = []
    world.subscribe(told.append)
    async with http.post(f"{plant.url}/control/orders/{so}/date", json={"requested": tomorrow.isoformat()}) as resp:
        assert resp.status == 200, await resp.text()
    await send(http, url, world, told, app)
    after = (await gql.query(DATES, {"id": so}))["order"]
    assert after["confirmedDeliveryDate"] < before["confirmedDeliveryDate"]
    assert after["predictedDeliveryDate"] > after["confirmedDeliveryDate"]
    assert after["deliveryRisk"] == "LATE"  # the new promise cannot be kept: said at once
    # ... and raises its exceptions at once: the plan cannot ship for it, and its ship-by day is over.
    found = (await gql.query(EXCEPTIONS, {"id": so}))["order"]["exceptions"]
    assert {e["kind"] for e in found} >= {"PROMISE_BEFORE_PLAN", "DISPATCH_MISSED"}
    # Refused: a date in the past, an order already shipping, a malformed body.
    async with http.post(f"{plant.url}/control/orders/{so}/date", json={"requested": "2000-01-01"}) as resp:
        assert resp.status == 409
    shipped = world.orders_in_state("IN_TRANSIT")[0]
    async with http.post(f"{plant.url}/control/orders/{shipped}/date", json={"requested": "2030-01-01"}) as resp:
        assert resp.status == 409
    async with http.post(f"{plant.url}/control/orders/{so}/date", json={"requested": "soon"}) as resp:
        assert resp.status == 400


async def test_a_cancelled_item_owes_nothing_and_the_rest_of_the_order_goes_on(frozen) -> None:
    plant, url, http, app = frozen
    world = plant.world
    gql = GraphQLClient(url, http)
    so, item = next((s, i) for s, i in world.cancellable_items() if world.state_of(s) == "RELEASED")
    q = """query($id: ID!) { order(id: $id) { stage netValue { amount }
      items { item quantity openQuantity rejectionReason } production { orders { id status } } } }"""
    before = (await gql.query(q, {"id": so}))["order"]
    told: list = []
    world.subscribe(told.append)
    async with http.post(f"{plant.url}/control/orders/{so}/items/{item}/cancel") as resp:
        assert resp.status == 200, await resp.text()
    async with http.post(f"{plant.url}/control/orders/{so}/items/{item}/cancel") as resp:
        assert resp.status == 409  # once is enough
    await send(http, url, world, told, app)
    after = (await gql.query(q, {"id": so}))["order"]
    cancelled = next(i for i in after["items"] if i["item"] == item)
    assert cancelled["rejectionReason"] and cancelled["openQuantity"] == 0
    assert after["netValue"]["amount"] < before["netValue"]["amount"]
    assert after["stage"] == before["stage"] == "PRODUCTION_RELEASED"  # the closed order does not hold it
    # The rest is made and shipped; the cancelled item never is.
    for _ in range(400):
        world.advance_clock(4)
        if world.state_of(so) in ("GOODS_ISSUED", "IN_TRANSIT", "OUT_FOR_DELIVERY", "DELIVERED"):
            break
    assert world.state_of(so) in ("GOODS_ISSUED", "IN_TRANSIT", "OUT_FOR_DELIVERY", "DELIVERED")
    deliveries = world.tables["A_OutbDeliveryHeader"].lookup("ReferenceSDDocument", [so])
    shipped_items = {line.reference_sd_document_item for d in deliveries for line in world.get("A_OutbDeliveryHeader", d).items}
    assert item not in shipped_items and shipped_items


async def test_more_ordered_after_shipment_reopens_the_order_and_ships_the_extra(frozen) -> None:
    plant, url, http, app = frozen
    world = plant.world
    gql = GraphQLClient(url, http)
    so, item = next((s, i) for s, i in world.amendable_after_shipment() if world.state_of(s) == "DELIVERED")
    q = """query($id: ID!) { order(id: $id) { stage deliveryRisk
      items { item quantity shippedQuantity openQuantity scheduleLines { confirmedQuantity confirmedDeliveryDate } }
      history(first: 200) { entries { eventType } } } }"""
    before = (await gql.query(q, {"id": so}))["order"]
    assert before["stage"] == "DELIVERED"
    told: list = []
    world.subscribe(told.append)
    async with http.post(f"{plant.url}/control/orders/{so}/items/{item}/amend", json={"extra": 3}) as resp:
        assert resp.status == 200, await resp.text()
    await send(http, url, world, told, app)
    after = (await gql.query(q, {"id": so}))["order"]
    # Goods left and quantity is owed again: never DELIVERED while the records say so.
    assert after["stage"] == "PARTIALLY_DELIVERED"
    amended = next(i for i in after["items"] if i["item"] == item)
    assert amended["openQuantity"] == 3
    assert len(amended["scheduleLines"]) == len(next(i for i in before["items"] if i["item"] == item)["scheduleLines"]) + 1
    assert len(after["history"]["entries"]) > len(before["history"]["entries"])
    # The plant makes and ships the extra; the gateway sees the order delivered again.
    told.clear()
    for _ in range(300):
        world.advance_clock(4)
        if world.state_of(so) == "DELIVERED" and len(told) > 5:
            break
    await send(http, url, world, told, app)
    done = (await gql.query(q, {"id": so}))["order"]
    assert done["stage"] == "DELIVERED"
    assert next(i for i in done["items"] if i["item"] == item)["openQuantity"] == 0
    # Refused when something is still owed, and for a malformed body.
    async with http.post(f"{plant.url}/control/orders/{so}/items/{item}/amend", json={"extra": "lots"}) as resp:
        assert resp.status == 400
    open_order = world.orders_in_state("RELEASED")[0]
    first = world.get("A_SalesOrder", open_order).items[0].sales_order_item
    async with http.post(f"{plant.url}/control/orders/{open_order}/items/{first}/amend", json={"extra": 1}) as resp:
        assert resp.status == 409


async def test_a_cancelled_order_leaves_the_work_its_exceptions_close_and_history_keeps_it(frozen) -> None:
    plant, url, http, app = frozen
    world = plant.world
    gql = GraphQLClient(url, http)
    so = next(s for s in world.cancellable_orders() if world.state_of(s) == "MATERIAL_SHORTAGE")
    q = """query($id: ID!) { order(id: $id) { stage deliveryRisk predictedDeliveryDate
      items { item openQuantity rejectionReason } exceptions { id }
      history(first: 200) { entries { eventType } } } }"""
    before = (await gql.query(q, {"id": so}))["order"]
    assert before["stage"] == "AWAITING_MATERIAL" and before["exceptions"]
    raised = [e["id"] for e in before["exceptions"]]
    told: list = []
    world.subscribe(told.append)
    async with http.post(f"{plant.url}/control/orders/{so}/cancel") as resp:
        assert resp.status == 200, await resp.text()
    async with http.post(f"{plant.url}/control/orders/{so}/cancel") as resp:
        assert resp.status == 409  # once is enough
    async with http.post(f"{plant.url}/control/orders/99999999/cancel") as resp:
        assert resp.status == 404
    await send(http, url, world, told, app)

    after = (await gql.query(q, {"id": so}))["order"]
    assert after["stage"] == "CANCELLED" and after["deliveryRisk"] == "CANCELLED"
    assert after["predictedDeliveryDate"] is None  # nothing will be delivered: no date
    assert all(i["rejectionReason"] and i["openQuantity"] == 0 for i in after["items"])
    assert after["exceptions"] == []
    for eid in raised:  # the exceptions it was in no longer list it
        record = (await gql.query('query($id: ID!) { exception(id: $id) { open affectedOrders { id } } }',
                                  {"id": eid}))["exception"]
        assert record is None or not record["open"] or {"id": so} not in record["affectedOrders"]
    assert any(e["eventType"].endswith("SalesOrder.Cancelled.v1") for e in after["history"]["entries"])
    listed = await gql.query('{ orders(first: 500, filter: {stage: [CANCELLED]}) { nodes { id } } }')
    assert {"id": so} in listed["orders"]["nodes"]
    # Nothing more happens to it in the plant: no production, no shipment.
    world.advance_clock(24 * 14)
    assert world.state_of(so) == "CANCELLED"
    assert not world.tables["A_OutbDeliveryHeader"].lookup("ReferenceSDDocument", [so])
    assert so not in world.cancellable_orders()

"""Things taken back in the simulated plant — a goods-issue reversal, a production
confirmation cancelled — each a real source change with its event, and the gateway's view
following them (stage back, history, prediction), against the plant and the gateway under
uvicorn."""

from __future__ import annotations

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
                yield plant, url, http


async def test_a_goods_issue_reversal_moves_the_stage_back_and_the_order_ships_again(frozen) -> None:
    plant, url, http = frozen
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
    await send_changes(http, url, world, told)

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
    await send_changes(http, url, world, shipped)
    again = (await gql.query(VIEW, {"id": so}))["order"]
    assert again["stage"] == "GOODS_ISSUED"
    assert all(i["openQuantity"] == 0 for i in again["items"])


async def test_a_cancelled_final_confirmation_sends_the_order_back_into_production(frozen) -> None:
    plant, url, http = frozen
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
    await send_changes(http, url, world, told)
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
    plant, _url, http = frozen
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
    assert run() == first


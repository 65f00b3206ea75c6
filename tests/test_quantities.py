"""Quantities on the simulated plant: short, split and cut shipments, driven through the
plant's control API, answered by the gateway over real HTTP; baseline milestones; the
staleness of an old event for a record the gateway never cached."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gateway.config import DEV_SECRETS
from sources.records import OutboundDelivery, ProductionOrder, SalesOrder, parse_datetime
from sources.simulator.emitter import EventEmitter

from .events_util import make_event, post_events

ORDER = """query($id: ID!) { order(id: $id) {
  id stage deliveryRisk predictedDeliveryDate
  erpStatus { overallDeliveryStatus overallProcessStatus }
  items { item material quantity unit confirmedQuantity producedQuantity shippedQuantity deliveredQuantity
          openQuantity openValue { amount currency } deliveryStatus rejectionReason
          scheduleLines { line quantity confirmedDeliveryDate deliveredQuantity openQuantity unit } }
  production { orders { id totalQuantity status scheduledEnd } }
  logistics { status
    deliveries { id goodsMovementStatus items { item salesOrder salesOrderItem material quantity unit } }
    shipments { trackingNumber items { delivery salesOrderItem quantity unit } } }
  exceptions { kind valueAtRisk { amount } affected { description customerDescription } }
} }"""


@pytest.fixture
async def live(plant, gateway) -> AsyncIterator[EventEmitter]:
    """The plant on a stopped clock, its changes sent to the gateway as a real plant would
    (some notification-only, the odd duplicate and swapped pair)."""
    url, _app = gateway
    plant.world.set_speed(0)
    emitter = EventEmitter(
        plant.world, url, DEV_SECRETS, duplicate_rate=0.05, reorder_rate=0.05, notification_rate=0.3, seed=5
    )
    emitter.start()
    try:
        yield emitter
    finally:
        await emitter.close()


async def _settle(emitter: EventEmitter, gateway: Any) -> None:
    await emitter.flush()
    await gateway[1].state.gateway.processor.drain()


async def _control(http: aiohttp.ClientSession, plant: Any, path: str, body: dict | None = None) -> dict:
    async with http.post(f"{plant.url}/control/{path}", json=body or {}) as resp:
        answer = await resp.json()
        assert resp.status == 200, answer
        return answer


async def _advance_until(http, plant, so: str, done, limit: int = 60) -> None:
    """Move the order step by step (control API) until ``done()`` holds."""
    for _ in range(limit):
        if done():
            return
        answer = await _control(http, plant, f"orders/{so}/advance")
        assert answer["changes"], f"{so} has no step left"
    raise AssertionError(f"{so} never got there")


def _deliveries(world, so: str) -> list[OutboundDelivery]:
    table = world.table("A_OutbDeliveryHeader")
    return [table.get(k) for k in sorted(table.lookup("ReferenceSDDocument", [so]))]


def _production_orders(world, so: str) -> list[ProductionOrder]:
    table = world.table("A_ProductionOrder")
    return [table.get(k) for k in sorted(table.lookup("SalesOrder", [so]))]


def _released_order(world) -> tuple[str, SalesOrder, float]:
    """A released order whose first item is made to order in a quantity worth cutting."""
    for so in sorted(world.orders_in_state("RELEASED")):
        order = world.get("A_SalesOrder", so)
        first = order.items[0]
        if first.requested_quantity >= 5 and so not in world.split_orders() and order.total_credit_check_status == "A":
            return so, order, first.requested_quantity
    raise AssertionError("no released order with 5 or more of its first item")


def _kinds(order: dict) -> dict[str, dict]:
    return {e["kind"]: e for e in order["exceptions"]}


async def _short_shipment(http, plant, gql, live, gateway, rest: str) -> tuple[str, float, float, dict]:
    """Drive one order to a short shipment: production confirms ``short`` less of item 10
    and the plant ships what it has. Returns (order, ordered, short, graph answer)."""
    world = plant.world
    so, order, ordered = _released_order(world)
    short = float(max(1, int(ordered // 5)))
    planned = await _control(http, plant, f"orders/{so}/shortfall", {"quantity": short, "item": "10", "rest": rest})
    assert planned["item"] == "10" and planned["shortBy"] == short
    await _advance_until(
        http, plant, so, lambda: any(d.overall_goods_movement_status == "C" for d in _deliveries(world, so))
    )
    await _settle(live, gateway)
    return so, ordered, short, (await gql.query(ORDER, {"id": so}))["order"]


async def test_short_shipment_is_partially_delivered_with_a_backorder_until_the_rest_made_again_arrives(
    http, plant, gateway, gql, live
):
    world = plant.world
    so, ordered, short, got = await _short_shipment(http, plant, gql, live, gateway, "reproduce")
    order = world.get("A_SalesOrder", so)
    item = next(i for i in got["items"] if i["item"] == "10")
    price = order.items[0].net_amount / ordered

    # Not complete: the graph says what shipped and what is owed, with units.
    assert got["stage"] == "PARTIALLY_DELIVERED"
    assert got["deliveryRisk"] != "DELIVERED"
    assert got["erpStatus"]["overallDeliveryStatus"] == "PARTIAL"
    assert (item["quantity"], item["producedQuantity"], item["shippedQuantity"]) == (ordered, ordered - short, ordered - short)
    assert item["openQuantity"] == short and item["unit"] == "PC" and item["deliveryStatus"] == "PARTIAL"
    assert item["openValue"]["amount"] == pytest.approx(short * price, abs=0.01)
    [line] = item["scheduleLines"]
    assert (line["deliveredQuantity"], line["openQuantity"]) == (ordered - short, short)
    [delivery] = got["logistics"]["deliveries"]
    shipped_10 = next(i for i in delivery["items"] if i["salesOrderItem"] == "10")
    assert shipped_10["quantity"] == ordered - short and shipped_10["unit"] == "PC" and shipped_10["salesOrder"] == so
    [shipment] = got["logistics"]["shipments"]
    assert {i["salesOrderItem"]: i["quantity"] for i in shipment["items"]}["10"] == ordered - short

    kinds = _kinds(got)
    backorder = kinds["BACKORDER"]
    assert backorder["valueAtRisk"]["amount"] == pytest.approx(short * price, abs=0.01)
    [affected] = backorder["affected"]
    assert f"{short:g} of {ordered:g} PC owed" in affected["description"]
    assert f"{short:g} PC of {order.items[0].material} still to come" in affected["customerDescription"]
    assert "YIELD_SHORTFALL" in kinds  # nothing planned for the rest yet

    # The plant decides to make the rest again: a new production order for exactly what is owed.
    before = {po.manufacturing_order for po in _production_orders(world, so)}
    await _advance_until(http, plant, so, lambda: len(_production_orders(world, so)) > len(before))
    await _settle(live, gateway)
    got = (await gql.query(ORDER, {"id": so}))["order"]
    [remake] = [po for po in got["production"]["orders"] if po["id"] not in before]
    assert remake["totalQuantity"] == short
    assert got["stage"] == "PARTIALLY_DELIVERED"
    kinds = _kinds(got)
    assert "YIELD_SHORTFALL" not in kinds and "BACKORDER" in kinds
    remake_end = parse_datetime(remake["scheduledEnd"])
    assert dt.date.fromisoformat(got["predictedDeliveryDate"]) > remake_end.date()  # the rest decides

    # The rest ships in a second delivery and arrives: now, and only now, complete.
    await _advance_until(http, plant, so, lambda: world.state_of(so) == "DELIVERED")
    await _settle(live, gateway)
    got = (await gql.query(ORDER, {"id": so}))["order"]
    assert got["stage"] == "DELIVERED" and got["deliveryRisk"] == "DELIVERED"
    assert got["erpStatus"] == {"overallDeliveryStatus": "COMPLETE", "overallProcessStatus": "COMPLETE"}
    item = next(i for i in got["items"] if i["item"] == "10")
    assert (item["shippedQuantity"], item["deliveredQuantity"], item["openQuantity"]) == (ordered, ordered, 0)
    deliveries = got["logistics"]["deliveries"]
    assert len(deliveries) == 2
    assert sorted(i["quantity"] for d in deliveries for i in d["items"] if i["salesOrderItem"] == "10") == sorted(
        [ordered - short, short]
    )
    assert got["exceptions"] == []


async def test_a_cut_rest_completes_the_order_with_what_shipped(http, plant, gateway, gql, live):
    world = plant.world
    so, ordered, short, got = await _short_shipment(http, plant, gql, live, gateway, "cancel")
    assert got["stage"] == "PARTIALLY_DELIVERED" and "BACKORDER" in _kinds(got)
    await _advance_until(http, plant, so, lambda: world.get("A_SalesOrder", so).items[0].rejection_reason != "")
    await _settle(live, gateway)
    got = (await gql.query(ORDER, {"id": so}))["order"]
    item = next(i for i in got["items"] if i["item"] == "10")
    assert item["rejectionReason"] == "01" and item["openQuantity"] == 0 and item["deliveryStatus"] == "COMPLETE"
    assert item["shippedQuantity"] == ordered - short
    assert got["stage"] != "PARTIALLY_DELIVERED" and "BACKORDER" not in _kinds(got)
    assert got["erpStatus"]["overallDeliveryStatus"] == "COMPLETE"
    await _advance_until(http, plant, so, lambda: world.state_of(so) == "DELIVERED")
    await _settle(live, gateway)
    got = (await gql.query(ORDER, {"id": so}))["order"]
    assert got["stage"] == "DELIVERED" and got["deliveryRisk"] == "DELIVERED"
    assert len(got["logistics"]["deliveries"]) == 1


async def test_split_order_ships_its_schedule_lines_in_two_deliveries(http, plant, gateway, gql, live):
    world = plant.world
    so = next(s for s in sorted(world.split_orders()) if world.state_of(s) != "DELIVERED")
    order = world.get("A_SalesOrder", so)
    dates = {ln.confirmed_delivery_date for i in order.items for ln in i.schedule_lines}
    assert len(dates) == 2  # two promised dates in one order
    await _advance_until(http, plant, so, lambda: world.state_of(so) == "DELIVERED")
    await _settle(live, gateway)
    got = (await gql.query(ORDER, {"id": so}))["order"]
    assert got["stage"] == "DELIVERED"
    deliveries = got["logistics"]["deliveries"]
    assert len(deliveries) == 2 and all(d["items"] for d in deliveries)
    per_item: dict[str, float] = {}
    for d in deliveries:
        for i in d["items"]:
            per_item[i["salesOrderItem"]] = per_item.get(i["salesOrderItem"], 0.0) + i["quantity"]
    assert per_item == {i["item"]: i["quantity"] for i in got["items"]}
    assert {ln["confirmedDeliveryDate"] for i in got["items"] for ln in i["scheduleLines"]} == {d.isoformat() for d in dates}
    assert len({s["trackingNumber"] for s in got["logistics"]["shipments"]}) == 2


MILESTONES = """query($first: Int!, $after: String) { orders(first: $first, after: $after) {
  pageInfo { hasNextPage endCursor }
  nodes { id milestones { kind status planned actual } } } }"""


async def test_planned_quality_release_is_never_before_planned_production_end(gql, plant):
    checked = 0
    after = None
    while True:
        page = (await gql.query(MILESTONES, {"first": 100, "after": after}))["orders"]
        for node in page["nodes"]:
            ms = {m["kind"]: m for m in node["milestones"]}
            end, quality = ms["PRODUCTION_COMPLETED"], ms["QUALITY_RELEASED"]
            if end["status"] == "SKIPPED":
                continue
            assert quality["planned"] is not None, node["id"]  # planned before any lot exists
            assert parse_datetime(quality["planned"]) >= parse_datetime(end["planned"]), node["id"]
            checked += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert checked == len(plant.world.sales_orders)  # every order here makes something


async def test_picked_and_packed_actuals_are_the_warehouse_times(gql, http, plant):
    world = plant.world

    def picked_in_full(so: str) -> bool:
        # A delivery short of the ordered quantity (production made less) is not the whole
        # order picked: those milestones wait for the rest.
        order = world.get("A_SalesOrder", so)
        picked: dict[str, float] = {}
        for key in world.table("A_OutbDeliveryHeader").lookup("ReferenceSDDocument", [so]):
            for line in world.get("A_OutbDeliveryHeader", key).items:
                picked[line.reference_sd_document_item] = picked.get(line.reference_sd_document_item, 0.0) + (
                    line.actual_delivery_quantity
                )
        return all(picked.get(i.sales_order_item, 0.0) >= i.requested_quantity for i in order.items)

    so = next(so for so in sorted(world.orders_in_state("PACKED")) if picked_in_full(so))
    async with http.get(f"{plant.url}/wms/A_OutbDeliveryHeader", params={"ReferenceSDDocument": so}) as resp:
        [record] = (await resp.json())["value"]
    got = (await gql.query("query($id: ID!) { order(id: $id) { milestones { kind status actual } } }", {"id": so}))
    ms = {m["kind"]: m for m in got["order"]["milestones"]}
    assert ms["PICKED"]["status"] == ms["PACKED"]["status"] == "DONE"
    assert parse_datetime(ms["PICKED"]["actual"]) == parse_datetime(record["ActualPickingDateTime"])
    assert parse_datetime(ms["PACKED"]["actual"]) == parse_datetime(record["ActualPackingDateTime"])


async def test_an_old_event_for_a_record_never_cached_is_stale(http, plant, gateway, gql):
    url, app = gateway
    world = plant.world
    # A new order the gateway has never read (and heard nothing of).
    changes = world.place_order(sorted(world.table("A_Customer").keys())[0], seed=1)
    so = next(c.key for c in changes if c.change_type == "SalesOrder.Created")
    po = _production_orders(world, so)[0]
    assert app.state.gateway.cache.last_good(("mes.production_orders_by_sales_order", so)) is None
    processor = app.state.gateway.processor
    stale_before = processor.stale
    old = make_event(
        "mes", "ProductionOrder", "Released", po.manufacturing_order,
        data={"ManufacturingOrder": po.manufacturing_order, "SalesOrder": so},
        time=po.last_change_date_time - dt.timedelta(days=30),
    )
    status, body = await post_events(http, url, old)
    assert status == 202, body
    await processor.drain()
    assert processor.stale == stale_before + 1
    history = await gql.query(
        "query($id: ID!) { order(id: $id) { history { entries { eventType stale } } } }", {"id": so}
    )
    assert [e["stale"] for e in history["order"]["history"]["entries"]] == [True]
    # A change at the record's own time is not stale.
    current = make_event(
        "mes", "ProductionOrder", "Changed", po.manufacturing_order,
        data={"ManufacturingOrder": po.manufacturing_order, "SalesOrder": so}, time=po.last_change_date_time,
    )
    assert (await post_events(http, url, current))[0] == 202
    await processor.drain()
    assert processor.stale == stale_before + 1

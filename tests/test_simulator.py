"""The simulated plant: a real aiohttp server on loopback, read with a real client."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from sources.records import (
    InspectionLot,
    OutboundDelivery,
    ProductionOrder,
    SalesOrder,
    Shipment,
    WorkCenter,
)
from sources.simulator.app import Simulator, start_simulator
from sources.simulator.world import ENTITY_SETS, LIFECYCLE_STATES, SYSTEMS, Change, World

START = dt.datetime(2025, 3, 10, 8, 0, tzinfo=dt.UTC)
ORDERS = 300


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = await start_simulator(port=0, orders=ORDERS, latency_ms=0, start=START)
    try:
        yield simulator
    finally:
        await simulator.close()


@pytest.fixture
async def http(sim: Simulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=sim.url) as session:
        yield session


async def get(http: aiohttp.ClientSession, path: str, **params: str) -> tuple[int, Any]:
    async with http.get(path, params=params) as resp:
        return resp.status, orjson.loads(await resp.read())


async def post(http: aiohttp.ClientSession, path: str, body: Any = None) -> tuple[int, Any]:
    data = orjson.dumps(body) if body is not None else b""
    async with http.post(path, data=data, headers={"Content-Type": "application/json"}) as resp:
        return resp.status, orjson.loads(await resp.read())


async def read_all(http: aiohttp.ClientSession, system: str, entity_set: str) -> list[dict[str, Any]]:
    """Every record of an entity set, walking the pages."""
    out: list[dict[str, Any]] = []
    params = {"$top": "1000"}
    while True:
        status, page = await get(http, f"/{system}/{entity_set}", **params)
        assert status == 200, page
        out += page["value"]
        if page["nextSkipToken"] is None:
            return out
        params["$skiptoken"] = page["nextSkipToken"]


# --- reading -------------------------------------------------------------------------------


async def test_url_reports_the_real_port(sim: Simulator, http: aiohttp.ClientSession) -> None:
    assert not sim.url.endswith(":0")
    status, body = await get(http, "/healthz")
    assert status == 200 and body["status"] == "ok"


async def test_batch_read_by_keys_returns_exactly_those_records(sim: Simulator, http: aiohttp.ClientSession) -> None:
    keys = sim.world.table("A_SalesOrder").keys()
    wanted = [keys[7], keys[3], keys[250], keys[3]]
    status, body = await get(http, "/erp/A_SalesOrder", SalesOrder=",".join([*wanted, "99999999"]))
    assert status == 200
    assert [r["SalesOrder"] for r in body["value"]] == sorted({keys[3], keys[7], keys[250]})
    assert body["count"] == 3 and body["nextSkipToken"] is None
    for row in body["value"]:
        assert SalesOrder.from_api(row) == sim.world.get("A_SalesOrder", row["SalesOrder"])


async def test_foreign_key_lookup_matches_the_world(sim: Simulator, http: aiohttp.ClientSession) -> None:
    orders = sim.world.table("A_SalesOrder").keys()[:40]
    status, body = await get(http, "/mes/A_ProductionOrder", SalesOrder=",".join(orders))
    assert status == 200
    got = {r["ManufacturingOrder"] for r in body["value"]}
    expected = {
        po.manufacturing_order
        for po in sim.world.table("A_ProductionOrder").records()
        if isinstance(po, ProductionOrder) and po.sales_order in orders
    }
    assert got == expected and len(got) >= 40  # every order has at least one production order
    for row in body["value"]:
        order = sim.world.get("A_SalesOrder", row["SalesOrder"])
        assert isinstance(order, SalesOrder)
        assert row["SalesOrderItem"] in {it.sales_order_item for it in order.items}


async def test_lookup_of_1000_values_is_one_page_and_1001_is_refused(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    reservations = sim.world.table("A_ComponentAvailability").keys()[:1000]
    status, body = await get(http, "/wms/A_ComponentAvailability", Reservation=",".join(reservations))
    assert status == 200
    assert [r["Reservation"] for r in body["value"]] == list(reservations)
    assert body["count"] == 1000 and body["nextSkipToken"] is None
    too_many = ",".join(str(90000000 + i) for i in range(1001))
    status, body = await get(http, "/erp/A_SalesOrder", SalesOrder=too_many)
    assert status == 400 and body["error"]["code"] == "BadRequest"


async def test_paging_walks_every_sales_order_once(sim: Simulator, http: aiohttp.ClientSession) -> None:
    seen: list[str] = []
    params = {"$top": "37"}
    pages = 0
    while True:
        status, page = await get(http, "/erp/A_SalesOrder", **params)
        assert status == 200 and page["count"] == ORDERS
        assert len(page["value"]) <= 37
        seen += [r["SalesOrder"] for r in page["value"]]
        pages += 1
        if page["nextSkipToken"] is None:
            break
        params["$skiptoken"] = page["nextSkipToken"]
    assert pages == -(-ORDERS // 37)
    assert seen == sorted(set(seen)) == list(sim.world.table("A_SalesOrder").keys())


async def test_default_page_size_applies_to_listings(http: aiohttp.ClientSession) -> None:
    status, page = await get(http, "/erp/A_SalesOrder")
    assert status == 200 and len(page["value"]) == 100 and page["nextSkipToken"]


async def test_filters_combine_with_and(sim: Simulator, http: aiohttp.ClientSession) -> None:
    customer = sim.world.table("A_Customer").keys()[0]
    today = START.date().isoformat()
    status, body = await get(http, "/erp/A_SalesOrder", SoldToParty=customer, confirmedBefore=today)
    assert status == 200
    expected = [
        o.sales_order
        for o in sim.world.table("A_SalesOrder").records()
        if isinstance(o, SalesOrder)
        and o.sold_to_party == customer
        and o.confirmed_delivery_date is not None
        and o.confirmed_delivery_date < START.date()
    ]
    assert [r["SalesOrder"] for r in body["value"]] == expected


async def test_changed_since_sees_a_mutation(sim: Simulator, http: aiohttp.ClientSession) -> None:
    since = sim.world.now().replace(microsecond=0)
    status, before = await get(http, "/mes/A_ProductionOrder", changedSince=since.isoformat())
    assert status == 200 and before["count"] == 0  # generated history lies before the clock
    order = sim.world.orders_in_state("RELEASED")[0]
    status, answer = await post(http, f"/control/orders/{order}/advance")
    assert status == 200 and answer["from"] == "RELEASED" and answer["to"] == "IN_PRODUCTION"
    started = {c["key"] for c in answer["changes"] if c["changeType"] == "ProductionOrder.Started"}
    assert started
    status, after = await get(http, "/mes/A_ProductionOrder", changedSince=since.isoformat())
    assert {r["ManufacturingOrder"] for r in after["value"]} == started
    assert all(r["OrderStatus"] == "STARTED" and r["Batch"] for r in after["value"])


async def test_bad_requests_get_the_error_shape(http: aiohttp.ClientSession) -> None:
    cases = [
        ("/erp/A_SalesOrder", {"Colour": "red"}),
        ("/erp/A_SalesOrder", {"changedSince": "yesterday"}),
        ("/erp/A_SalesOrder", {"confirmedBefore": "soon"}),
        ("/erp/A_SalesOrder", {"$top": "1001"}),
        ("/erp/A_SalesOrder", {"$top": "ten"}),
        ("/erp/A_SalesOrder", {"$skiptoken": "a,b"}),
        ("/mes/A_ProductionOrder", {"confirmedBefore": "2025-01-01"}),
    ]
    for path, params in cases:
        status, body = await get(http, path, **params)
        assert status == 400, (path, params)
        assert body["error"]["code"] == "BadRequest" and body["error"]["message"]
    for path in ("/erp/A_Nothing", "/crm/A_SalesOrder"):
        status, body = await get(http, path)
        assert status == 404 and body["error"]["code"] == "NotFound"


async def test_records_round_trip_through_from_api(sim: Simulator, http: aiohttp.ClientSession) -> None:
    for es in ENTITY_SETS:
        rows = await read_all(http, es.system, es.name)
        assert len(rows) == len(sim.world.table(es.name)) > 0
        for row in rows:
            record = es.record_type.from_api(row)
            assert record == sim.world.get(es.name, record.key)


async def test_openapi_describes_each_entity_set(http: aiohttp.ClientSession) -> None:
    for system in SYSTEMS:
        status, doc = await get(http, f"/{system}/openapi.json")
        assert status == 200 and doc["openapi"].startswith("3.0")
        sets = [es for es in ENTITY_SETS if es.system == system]
        assert set(doc["paths"]) == {f"/{es.name}" for es in sets}
        for es in sets:
            operation = doc["paths"][f"/{es.name}"]["get"]
            names = {p["name"] for p in operation["parameters"]}
            assert set(es.filter_fields) | {"$top", "$skiptoken", "changedSince"} <= names
            schema = doc["components"]["schemas"][es.record_type.__name__]
            assert es.key_field in schema["properties"] and es.key_field in schema["required"]


# --- control API -----------------------------------------------------------------------------


async def test_stats_count_data_requests_per_system(http: aiohttp.ClientSession) -> None:
    status, _ = await post(http, "/control/stats/reset")
    assert status == 200
    for _ in range(3):
        await get(http, "/erp/A_Customer")
    await get(http, "/mes/A_WorkCenter")
    await get(http, "/qms/openapi.json")  # not a data request
    await get(http, "/control/world")  # nor is this
    status, stats = await get(http, "/control/stats")
    assert stats["requests"] == {"erp": 3, "mes": 1, "wms": 0, "qms": 0, "tms": 0}
    await post(http, "/control/stats/reset")
    _, stats = await get(http, "/control/stats")
    assert set(stats["requests"].values()) == {0}


async def test_work_center_down_and_up(sim: Simulator, http: aiohttp.ClientSession) -> None:
    seen: list[Change] = []
    sim.world.subscribe(seen.append)
    wc = next(
        r.work_center
        for r in sim.world.table("A_WorkCenter").records()
        if isinstance(r, WorkCenter) and r.state == "UP"
    )
    status, answer = await post(http, f"/control/work-centers/{wc}/down", {"hours": 8})
    assert status == 200 and answer["workCenter"]["State"] == "DOWN"
    _, body = await get(http, "/mes/A_WorkCenter", WorkCenter=wc)
    record = WorkCenter.from_api(body["value"][0])
    assert record.state == "DOWN" and record.expected_up_at == record.down_since + dt.timedelta(hours=8)
    # The down event first, then the MES reschedules the queue behind it (its own orders).
    assert (seen[0].change_type, seen[0].key, seen[0].system) == ("WorkCenter.Down", wc, "mes")
    assert isinstance(seen[0].record, WorkCenter) and seen[0].record.state == "DOWN"
    assert {c.change_type for c in seen[1:]} <= {"ProductionOrder.Changed"}
    assert all(c.record.work_center == wc for c in seen[1:])

    status, answer = await post(http, f"/control/work-centers/{wc}/up")
    assert status == 200 and answer["workCenter"]["State"] == "UP"
    ups = [c for c in seen if c.change_type == "WorkCenter.Up"]
    assert [c.key for c in ups] == [wc]
    # Up at once: the queue it pushed goes back (the MES reschedules it again), after the Up.
    assert {c.change_type for c in seen[seen.index(ups[0]) + 1:]} <= {"ProductionOrder.Changed"}
    assert seen[0].record.state == "DOWN"  # a Change keeps its own snapshot

    assert (await post(http, "/control/work-centers/WC-99/down", {"hours": 1}))[0] == 404
    assert (await post(http, f"/control/work-centers/{wc}/down", {"hours": "long"}))[0] == 400
    assert (await post(http, f"/control/work-centers/{wc}/down", [1]))[0] == 400


async def test_down_work_center_holds_production(sim: Simulator, http: aiohttp.ClientSession) -> None:
    world = sim.world
    world.set_speed(0)
    pegged = [
        so
        for so in world.orders_in_state("RELEASED")
        if all(
            isinstance(po, ProductionOrder) and po.status == "RELEASED"
            for po in _production_orders(world, so)
        )
    ]
    so = pegged[0]
    wcs = {po.work_center for po in _production_orders(world, so)}
    for wc in wcs:
        await post(http, f"/control/work-centers/{wc}/down", {"hours": 400})
    await post(http, "/control/clock/advance", {"hours": 240})
    assert world.state_of(so) == "RELEASED"  # cannot start while its machines are down
    for wc in wcs:
        await post(http, f"/control/work-centers/{wc}/up")
    await post(http, "/control/clock/advance", {"hours": 240})
    assert world.state_of(so) != "RELEASED"


async def test_clock_advance_moves_orders_and_repairs_machines(sim: Simulator, http: aiohttp.ClientSession) -> None:
    world = sim.world
    world.set_speed(0)
    _, before = await get(http, "/control/world")
    assert before["workCentersDown"]  # a couple are down at the start
    seen: list[Change] = []
    world.subscribe(seen.append)
    status, answer = await post(http, "/control/clock/advance", {"hours": 24})
    assert status == 200 and answer["changeCount"] == len(seen) > 0
    _, after = await get(http, "/control/world")
    assert after["workCentersDown"] == []
    assert after["states"] != before["states"]
    clock = dt.datetime.fromisoformat(after["clock"].replace("Z", "+00:00"))
    assert START + dt.timedelta(hours=24) <= clock < START + dt.timedelta(hours=24, minutes=1)
    times = [c.occurred_at for c in seen]
    assert times == sorted(times) and START <= times[0] and times[-1] <= START + dt.timedelta(hours=24)
    assert (await post(http, "/control/clock/advance", {"hours": -1}))[0] == 400
    assert (await post(http, "/control/clock/advance", {}))[0] == 400


async def test_order_advance_walks_the_whole_lifecycle(sim: Simulator, http: aiohttp.ClientSession) -> None:
    world = sim.world
    so = world.orders_in_state("MATERIAL_SHORTAGE")[0]
    path = [world.state_of(so)]
    change_types: set[str] = set()
    for _ in range(40):
        status, answer = await post(http, f"/control/orders/{so}/advance")
        assert status == 200 and answer["from"] == path[-1]
        change_types |= {c["changeType"] for c in answer["changes"]}
        if not answer["changes"]:
            break
        if answer["to"] != path[-1]:
            path.append(answer["to"])
    assert path[0] == "MATERIAL_SHORTAGE" and path[-1] == "DELIVERED"
    if "QUALITY_REJECTED" not in path:  # a rejection sends the order back to RELEASED
        ranks = [LIFECYCLE_STATES.index(s) for s in path[1:]]
        assert ranks == sorted(ranks)
    assert {"ProductionOrder.Released", "InspectionLot.UsageDecisionMade", "OutboundDelivery.GoodsIssued",
            "Shipment.Delivered"} <= change_types
    _check_order_consistency(world, so)
    _, deliveries = await get(http, "/wms/A_OutbDeliveryHeader", ReferenceSDDocument=so)
    delivery = OutboundDelivery.from_api(deliveries["value"][0])
    _, shipments = await get(http, "/tms/Shipment", DeliveryDocument=delivery.delivery_document)
    shipment = Shipment.from_api(shipments["value"][0])
    assert shipment.tag == "Delivered" and shipment.proof_of_delivery is not None
    assert shipment.bill_of_lading == delivery.bill_of_lading
    assert (await post(http, "/control/orders/99999999/advance"))[0] == 404


async def test_shortfall_lever_refuses_what_cannot_happen(sim: Simulator, http: aiohttp.ClientSession) -> None:
    world = sim.world
    released = sorted(world.orders_in_state("RELEASED"))[0]
    delivered = sorted(world.orders_in_state("DELIVERED"))[0]
    ordered = world.get("A_SalesOrder", released).items[0].requested_quantity
    for so, body in (
        (released, {}),
        (released, {"quantity": "some"}),
        (released, {"quantity": ordered}),  # not less than ordered
        (released, {"quantity": 0.5, "rest": "later"}),
        (released, {"quantity": 0.5, "item": "990"}),  # no such item made to order
        (delivered, {"quantity": 0.5}),  # production already confirmed
    ):
        status, answer = await post(http, f"/control/orders/{so}/shortfall", body)
        assert status == 400 and answer["error"]["message"], (so, body, answer)
    assert (await post(http, "/control/orders/99999999/shortfall", {"quantity": 1}))[0] == 404


async def test_latency_is_configurable_per_system(sim: Simulator, http: aiohttp.ClientSession) -> None:
    status, answer = await post(http, "/control/latency", {"erp": 60})
    assert status == 200 and answer["latencyMs"]["erp"] == 60 and answer["latencyMs"]["mes"] == 0
    started = time.perf_counter()
    await get(http, "/erp/A_Customer")
    assert time.perf_counter() - started >= 0.06  # sleep never returns early
    assert (await post(http, "/control/latency", {"crm": 5}))[0] == 400
    assert (await post(http, "/control/latency", {"erp": "slow"}))[0] == 400


# --- the world -------------------------------------------------------------------------------


def _dump(world: World) -> bytes:
    return orjson.dumps({name: [t.render(k) for k in t.keys()] for name, t in world.tables.items()})


def test_world_is_deterministic_for_a_seed() -> None:
    first = World.generate(orders=150, seed=7, start=START)
    second = World.generate(orders=150, seed=7, start=START)
    assert _dump(first) == _dump(second)
    assert _dump(World.generate(orders=150, seed=8, start=START)) != _dump(first)


def story_of(seed: int) -> str:
    """A digest of a world's life: the generated records, then every change the levers and
    30 days of plant time make (each change's summary and record), in order."""
    world = World.generate(orders=150, seed=seed, start=START, speed=0)
    story = [_dump(world)]

    def told(changes: list[Change]) -> None:
        story.append(orjson.dumps([[c.to_json(), c.record.to_api()] for c in changes]))

    told(world.work_center_down("WC-20", 6))
    for so in world.sales_orders[:25]:
        told(world.advance_order(so))
    told(world.shipment_delayed(world.shipment_of(world.orders_in_state("IN_TRANSIT")[0]) or "", 5))
    told(world.place_order(world.table("A_Customer").keys()[0]))
    world.plan_shortfall(world.orders_in_state("RELEASED")[0], 1, rest="reproduce")
    reservation = world.table("A_ComponentAvailability").keys()[-1]
    told(world.component_short(reservation, 1, (START + dt.timedelta(days=5)).date()))
    for _ in range(120):
        told(world.advance_clock(6))
    assert len(story) > 100 and sum(map(len, story[1:])) > 100_000  # the levers and ticks changed things
    return hashlib.sha256(b"\n".join(story)).hexdigest()


def test_same_seed_tells_the_same_story_in_any_process() -> None:
    """Generation, the lifecycle and the disruptions depend on the seed alone: not on the
    process's string hashing (set and dict orders), nor on wall time (speed 0)."""
    here = story_of(7)
    assert story_of(7) == here
    assert story_of(8) != here
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    code = "from tests.test_simulator import story_of; print(story_of(7))"
    other = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert other.returncode == 0, other.stderr
    assert other.stdout.strip() == here


# The world's modules in layers: each may import only from earlier layers.
_WORLD_LAYERS = (
    {"tables", "clock", "numbers", "master_data"},
    {"store", "working_time"},
    {"orders"},
    {"planning", "quantities"},
    {"production"},
    {"shipping"},
    {"lifecycle", "disruptions", "amendments"},
    {"generation", "scheduler", "reports"},
    {"plant"},
)


def test_world_modules_import_only_downwards() -> None:
    """The concerns of the world depend on each other one way: no module reaches up (no
    cycle), and only World's module knows them all."""
    import ast

    import sources.simulator.world as package

    folder = Path(package.__file__).parent
    layer_of = {name: i for i, layer in enumerate(_WORLD_LAYERS) for name in layer}
    modules = {p.stem for p in folder.glob("*.py")} - {"__init__"}
    assert modules == set(layer_of), "every module of the world has a layer"
    for name in modules:
        tree = ast.parse((folder / f"{name}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1 and n.module}
        assert imported <= modules, (name, imported - modules)
        upward = {m for m in imported if layer_of[m] >= layer_of[name]}
        assert not upward, f"{name} imports {sorted(upward)} from its own layer or above"


def test_lifecycle_spread_covers_every_state() -> None:
    world = World.generate(orders=ORDERS, seed=42, start=START)
    summary = world.summary()
    assert sum(summary["states"].values()) == ORDERS
    assert all(summary["states"][s] > 0 for s in LIFECYCLE_STATES), summary["states"]
    assert summary["late"] > 0
    orders = [o for o in world.table("A_SalesOrder").records() if isinstance(o, SalesOrder)]
    assert any(o.total_credit_check_status == "B" for o in orders)
    assert any(o.delivery_block_reason for o in orders)
    assert any(o.confirmed_delivery_date and o.confirmed_delivery_date > o.requested_delivery_date for o in orders)
    horizon = [(o.confirmed_delivery_date - START.date()).days for o in orders if o.confirmed_delivery_date]
    assert min(horizon) < 0 and max(horizon) > 28
    shipments = [s for s in world.table("Shipment").records() if isinstance(s, Shipment)]
    assert any(s.status_code == "SD" for s in shipments)  # carrier delays
    lots = [lot for lot in world.table("A_InspectionLot").records() if isinstance(lot, InspectionLot)]
    assert any(not lot.has_usage_decision for lot in lots)
    assert any(lot.usage_decision and lot.usage_decision.code == "R" for lot in lots)
    # Quantities: short shipments still owing, split orders with two promised dates, cut rests.
    deliveries = summary["deliveries"]
    assert deliveries["backorders"] > 0 and deliveries["severalDeliveries"] > 0 and deliveries["itemsCut"] > 0
    assert any(o.overall_delivery_status == "B" for o in orders)
    split = [world.get("A_SalesOrder", so) for so in world.split_orders()]
    assert split and all(
        len({ln.confirmed_delivery_date for i in o.items for ln in i.schedule_lines}) == 2 for o in split
    )


def test_every_cross_reference_is_consistent() -> None:
    world = World.generate(orders=ORDERS, seed=3, start=START)
    world.set_speed(0)
    for so in world.sales_orders:
        _check_order_consistency(world, so)
    world.advance_clock(72)
    for so in world.sales_orders:
        _check_order_consistency(world, so)


def _production_orders(world: World, so: str) -> list[ProductionOrder]:
    table = world.table("A_ProductionOrder")
    return [table.get(k) for k in sorted(table.lookup("SalesOrder", [so]))]  # type: ignore[misc]


def _check_order_consistency(world: World, so: str) -> None:
    order = world.get("A_SalesOrder", so)
    assert isinstance(order, SalesOrder)
    assert world.get("A_Customer", order.sold_to_party) is not None
    assert order.total_net_amount == pytest.approx(sum(i.net_amount for i in order.items))
    items = {i.sales_order_item for i in order.items}
    now = world.now()
    for po in _production_orders(world, so):
        assert po.sales_order_item in items and world.get("A_WorkCenter", po.work_center) is not None
        assert po.scheduled_start_date < po.scheduled_end_date
        assert (po.batch is None) == (po.status in ("CREATED", "RELEASED"))
        components = world.table("A_ComponentAvailability").lookup("ManufacturingOrder", [po.manufacturing_order])
        assert 2 <= len(components) <= 5
        for lot_key in world.table("A_InspectionLot").lookup("ManufacturingOrder", [po.manufacturing_order]):
            lot = world.get("A_InspectionLot", lot_key)
            assert isinstance(lot, InspectionLot) and lot.batch == po.batch and lot.material == po.material
            assert lot.has_usage_decision == (lot.usage_decision is not None)
    picked: dict[str, float] = {}
    shipped: dict[str, float] = {}
    for key in world.table("A_OutbDeliveryHeader").lookup("ReferenceSDDocument", [so]):
        delivery = world.get("A_OutbDeliveryHeader", key)
        assert isinstance(delivery, OutboundDelivery) and delivery.ship_to_party == order.sold_to_party
        assert all(i.reference_sd_document == so and i.reference_sd_document_item in items for i in delivery.items)
        assert delivery.items and all(i.actual_delivery_quantity > 0 for i in delivery.items)
        assert delivery.actual_picking_date_time is not None
        assert (delivery.actual_packing_date_time is not None) == (delivery.overall_packing_status == "C")
        for i in delivery.items:
            picked[i.reference_sd_document_item] = picked.get(i.reference_sd_document_item, 0.0) + i.actual_delivery_quantity
            if delivery.overall_goods_movement_status == "C":
                shipped[i.reference_sd_document_item] = (
                    shipped.get(i.reference_sd_document_item, 0.0) + i.actual_delivery_quantity
                )
        for tracking in world.table("Shipment").lookup("DeliveryDocument", [key]):
            shipment = world.get("Shipment", tracking)
            assert isinstance(shipment, Shipment) and delivery.overall_goods_movement_status == "C"
            times = [e.occurred_at for e in shipment.events]
            assert times == sorted(times) and all(t <= now for t in times)
            carried = {(i.delivery_document_item, i.quantity) for i in shipment.items}
            assert carried == {(i.delivery_document_item, i.actual_delivery_quantity) for i in delivery.items}
    # The ERP books what the warehouse shipped: per schedule line, per item, overall.
    statuses = set()
    for item in order.items:
        assert picked.get(item.sales_order_item, 0.0) <= item.requested_quantity
        assert sum(ln.order_quantity for ln in item.schedule_lines) == item.requested_quantity
        assert sum(ln.delivered_quantity for ln in item.schedule_lines) == shipped.get(item.sales_order_item, 0.0)
        left = shipped.get(item.sales_order_item, 0.0)
        expected = "C" if item.rejection_reason or left >= item.requested_quantity else "B" if left else "A"
        assert item.delivery_status == expected, (so, item.sales_order_item)
        statuses.add(expected)
    assert order.overall_delivery_status == ("C" if statuses == {"C"} else "A" if statuses == {"A"} else "B")
    assert (order.overall_sd_process_status == "C") == (world.state_of(so) == "DELIVERED")


def test_a_served_world_leaves_the_collectors_generations():
    """A plant process serving one world (``ordergraph simulate``, ``bench.plant``) freezes
    it: no collection walks its objects again (the first ones after generation stalled the
    gateway reading the plant for 1.4 s and 3.5 s at 100,000 orders)."""
    import gc

    from sources.simulator.app import keep_world_out_of_collections
    from sources.simulator.world import World

    world = World.generate(orders=50)
    try:
        keep_world_out_of_collections()
        frozen = gc.get_freeze_count()
        assert frozen >= len(world.sales_orders) * 10  # the world's records and more
        assert sum(gc.get_count()) < frozen // 100  # nothing of it left to walk
    finally:
        gc.unfreeze()

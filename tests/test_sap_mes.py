"""The MES and QMS as SAP S/4HANA (``profile = "sap-odata"``) against the simulated plant's
OData dialect: production orders over ``API_PRODUCTION_ORDER_2_SRV`` (work centres still
over the MES's REST contract) and inspection lots over ``API_INSPECTIONLOT_SRV``; through
the connectors and through the real gateway."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import signal
import sys

import aiohttp
import orjson
import pytest

from gateway.config import ConfigError, load_config
from sources import SourceEndpoint, Sources
from sources.odata import BasicAuth, ODataError
from sources.resilience import SOURCE_BAD_RESPONSE, Policy, SourceError
from sources.sap_mes import SapMesConnector
from sources.sap_qms import SapQmsConnector
from sources.sap_wms import SapWmsConnector
from sources.simulator.odata import Failure

from .servers import GraphQLClient, free_socket, running_gateway, running_plant
from .test_sap_odata import ROOT, _poll_events, _true, _until, sap_error

PO_SERVICE = "/sap/opu/odata/sap/API_PRODUCTION_ORDER_2_SRV"


@pytest.fixture
async def sim():
    async with running_plant(orders=300) as s:
        yield s


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def no_retries() -> Policy:
    return Policy(timeout_seconds=5.0, retries=0, breaker_failures=1000, breaker_failure_rate=1.0)


def connect(session, sim, *, calls: list | None = None, **mes) -> Sources:
    endpoints = {s: SourceEndpoint(u) for s, u in sim.system_urls.items()}
    endpoints["mes"] = SourceEndpoint(sim.sap_url("mes"), profile="sap-odata", rest_url=sim.system_urls["mes"], **mes)
    hook = (lambda *a: calls.append(a)) if calls is not None else None
    return Sources.connect(session, endpoints, on_request=hook)


async def test_same_production_orders_over_odata_as_over_rest_by_every_key(sim, session):
    """Every look-up the MES answers (by order, sales order, batch, work centre) gives the
    same records over SAP's OData as over REST; a batch of keys is one logical read cut into
    URL-sized chunks that run at once; work centres still come over REST."""
    rest = Sources.connect(session, {s: SourceEndpoint(u) for s, u in sim.system_urls.items()})
    calls: list = []
    odata = connect(session, sim, calls=calls, max_url_length=1500)
    assert isinstance(odata.mes, SapMesConnector)
    table = sim.world.table("A_ProductionOrder")
    keys = table.keys()
    expected = await rest.mes.production_orders(keys)
    sim.world.set_latency({"mes": 30.0})  # overlapping chunks show as requests in flight together
    sim.faults.max_in_flight["mes"] = 0
    got = await odata.mes.production_orders(keys)
    assert got == expected and len(got) == len(keys) > 300
    statuses = {po.status for po in got.values()}
    assert {"CREATED", "RELEASED", "STARTED", "PARTIALLY_CONFIRMED", "TECO"} <= statuses
    assert len(calls) > 1 and all(c[0] == "mes" and c[1] == "A_ProductionOrder_2" for c in calls)
    assert sim.faults.max_in_flight["mes"] > 1
    assert all(len(u) <= 1500 and u.startswith(PO_SERVICE) for u in sim.odata.requests[-len(calls):])
    sim.world.set_latency({"mes": 0.0})

    sales_orders = sorted({po.sales_order for po in expected.values()})[:80]
    assert await odata.mes.production_orders_for_sales_orders(sales_orders) == await rest.mes.production_orders_for_sales_orders(sales_orders)
    batches = sorted({po.batch for po in expected.values() if po.batch})[:40]
    by_batch = await odata.mes.production_orders_for_batches(batches)
    assert by_batch == await rest.mes.production_orders_for_batches(batches) and any(by_batch.values())
    work_centers = sorted({po.work_center for po in expected.values()})
    by_wc = await odata.mes.production_orders_for_work_centers(work_centers)
    assert by_wc == await rest.mes.production_orders_for_work_centers(work_centers) and any(by_wc.values())

    # Work centres are not in SAP's APIs: the MES's REST contract answers them.
    before = len(sim.odata.requests)
    assert await odata.mes.work_centers(work_centers) == await rest.mes.work_centers(work_centers)
    assert len(sim.odata.requests) == before
    # Keys that cannot be keys are never sent; unknown ones are absent.
    assert await odata.mes.production_orders(["x' or 1 eq 1", "999999999"]) == {}


async def test_mes_sap_errors_are_the_mes_s_typed_errors_and_basic_auth_is_sent(sim, session):
    """A 403 of A_ProductionOrder_2 is the MES's typed error and counts on the MES's health
    (one resilience for the OData and REST reads); basic auth goes with every request."""
    sim.odata.basic = ("MESCOMM", "secret")
    sources = connect(session, sim, policy=no_retries(), auth=BasicAuth("MESCOMM", "wrong"))
    mo = sim.world.table("A_ProductionOrder").keys()[0]
    with pytest.raises(ODataError) as err:
        await sources.mes.production_orders([mo])
    assert err.value.status == 401 and err.value.source == "mes"
    sources = connect(session, sim, policy=no_retries(), auth=BasicAuth("MESCOMM", "secret"))
    assert mo in await sources.mes.production_orders([mo])
    sim.odata.failures["A_ProductionOrder_2"] = Failure(403, sap_error("/IWBEP/CM_MGW_RT/034", "No authorization"), times=1)
    with pytest.raises(ODataError) as err:
        await sources.mes.production_orders([mo])
    assert err.value.status == 403 and err.value.code == SOURCE_BAD_RESPONSE and err.value.source == "mes"
    assert sources.health()["mes"].last_error and not sources.health()["erp"].last_error


async def test_wire_format_is_sap_production_order_2(sim, session):
    mo = sim.world.table("A_ProductionOrder").keys()[0]
    url = f"{sim.sap_url('mes')}{PO_SERVICE}/A_ProductionOrder_2('{mo}')?$expand=to_ProductionOrderOperation&$format=json"
    async with session.get(url) as resp:
        body = orjson.loads(await resp.read())["d"]
    assert body["__metadata"]["type"] == "API_PRODUCTION_ORDER_2_SRV.A_ProductionOrder_2Type"
    assert body["MfgOrderScheduledStartDate"].startswith("/Date(") and body["MfgOrderScheduledStartTime"].startswith("PT")
    assert isinstance(body["TotalQuantity"], str) and "." in body["TotalQuantity"]
    assert isinstance(body["OrderIsReleased"], bool) and len(body["LastChangeDateTime"]) == 14
    assert body["to_ProductionOrderOperation"]["results"][0]["WorkCenter"]
    assert "__deferred" in body["to_ProductionOrderItem"]


async def test_changes_since_reads_newer_production_orders(sim, session):
    odata = connect(session, sim)
    since = sim.world.now() - dt.timedelta(seconds=1)
    assert await odata.mes.changes_since(since) == []
    so = sim.world.orders_in_state("RECEIVED")[0]
    changes = sim.world.advance_order(so)  # its production order is released
    changed = {c.key for c in changes if c.entity_set == "A_ProductionOrder"}
    assert changed
    found = await odata.mes.changes_since(since)
    assert {c.key for c in found} == changed
    assert all(c.entity == "ProductionOrder" and c.changed_at > since and c.refs["SalesOrder"] == so for c in found)
    assert [c.changed_at for c in found] == sorted(c.changed_at for c in found)


def test_config_mes_sap_odata_needs_rest_url_qms_does_not(tmp_path):
    path = tmp_path / "og.toml"
    path.write_text('[sources.mes]\nprofile = "sap-odata"\nbase_url = "https://s4.example.com"\n'
                    'rest_url = "https://mes.example.com/mes"\nusername = "COMM"\npassword = "x"\n')
    cfg = load_config(path, env={})
    assert cfg.sources["mes"].profile == "sap-odata" and cfg.sources["mes"].rest_url == "https://mes.example.com/mes"
    path.write_text('[sources.qms]\nprofile = "sap-odata"\nbase_url = "https://s4.example.com"\n')
    assert load_config(path, env={}).sources["qms"].profile == "sap-odata"  # all of it in SAP: no rest_url
    for bad, said in (
        ('[sources.mes]\nprofile = "sap-odata"\n', "rest_url: needed"),
        ('[sources.mes]\nprofile = "sap-odata"\nrest_url = "mes.local"\n', "rest_url: must be"),
        ('[sources.tms]\nprofile = "sap-odata"\n', "served for"),
    ):
        path.write_text(bad)
        with pytest.raises(ConfigError, match=said):
            load_config(path, env={})


PRODUCTION = """query($id: ID!) { order(id: $id) { id production { status orders {
  id status material totalQuantity confirmedYieldQuantity confirmedScrapQuantity workCenterId
  workCenter { id state } scheduledStart scheduledEnd releasedAt startedAt completedAt batch } } } }"""


async def test_gateway_with_the_mes_as_sap_answers_as_with_rest_and_polls_production_orders():
    """The whole gateway with the MES on the sap-odata profile: orders' production reads the
    same as over REST, and a production order's change reaches the journal by polling SAP."""
    async with running_plant(orders=200) as plant, aiohttp.ClientSession() as http:
        mes = {"profile": "sap-odata", "base_url": plant.sap_url("mes"), "rest_url": f"{plant.url}/mes",
               "pushes": False, "poll_seconds": 0.5}
        orders = sorted({po.sales_order for po in plant.world.table("A_ProductionOrder").records()})[:25]
        async with running_gateway(plant.url, domain_clock=plant.world.now) as (rest_url, _app):
            rest = GraphQLClient(rest_url, http)
            expected = [await rest.query(PRODUCTION, {"id": so}) for so in orders]
        async with running_gateway(plant.url, sources={"mes": mes}, domain_clock=plant.world.now) as (url, app):
            gql = GraphQLClient(url, http)
            seen = len(plant.odata.requests)
            got = [await gql.query(PRODUCTION, {"id": so}) for so in orders]
            assert got == expected
            assert any(o["order"]["production"]["orders"] for o in got)
            assert len(plant.odata.requests) > seen  # read from SAP, not the MES's REST
            gw = app.state.gateway
            poller = gw.reconciler.pollers["mes"]
            assert set(poller.readers) == {"A_ProductionOrder", "A_WorkCenter"}
            await _until(lambda: _true(poller.stats.polls > 0))
            so = plant.world.orders_in_state("RECEIVED")[0]
            await asyncio.sleep(1.1)  # SAP's timestamp counts whole seconds
            changes = plant.world.advance_order(so)  # its production order is released; no webhook
            assert any(c.entity_set == "A_ProductionOrder" for c in changes)
            assert any("A_ProductionOrder_2" in u and "LastChangeDateTime" in u for u in plant.odata.requests)
            events = await _until(lambda: _poll_events(gw.journal, so))
            assert {e.type for e in events} == {"sap.s4.beh.productionorder.v1.ProductionOrder.Changed.v1"}


# --- the QMS as SAP: inspection lots (all of the QMS's reads are in SAP's API) ------------------


async def test_same_inspection_lots_over_odata_as_over_rest_by_every_key(sim, session):
    """Inspection lots with their usage decisions read the same over API_INSPECTIONLOT_SRV
    as over REST, by lot, production order and batch; chunks run at once; a lot that says
    it has a decision but comes without one is refused, never read as accepted."""
    rest = Sources.connect(session, {s: SourceEndpoint(u) for s, u in sim.system_urls.items()})
    endpoints = {s: SourceEndpoint(u) for s, u in sim.system_urls.items()}
    endpoints["qms"] = SourceEndpoint(sim.sap_url("qms"), profile="sap-odata", max_url_length=1500, policy=no_retries())
    calls: list = []
    odata = Sources.connect(session, endpoints, on_request=lambda *a: calls.append(a))
    assert isinstance(odata.qms, SapQmsConnector)
    keys = sim.world.table("A_InspectionLot").keys()
    expected = await rest.qms.inspection_lots(keys)
    sim.world.set_latency({"qms": 30.0})
    sim.faults.max_in_flight["qms"] = 0
    got = await odata.qms.inspection_lots(keys)
    assert got == expected and len(got) == len(keys) > 300
    assert {lot.has_usage_decision for lot in got.values()} == {True, False}
    assert any(lot.usage_decision and lot.usage_decision.quality_score for lot in got.values())
    assert {c[1] for c in calls} == {"A_InspectionLot", "A_InspLotUsageDecision"} and all(c[0] == "qms" for c in calls)
    assert sim.faults.max_in_flight["qms"] > 1
    sim.world.set_latency({"qms": 0.0})
    orders = sorted({lot.manufacturing_order for lot in expected.values()})[:60]
    assert await odata.qms.inspection_lots_for_production_orders(orders) == await rest.qms.inspection_lots_for_production_orders(orders)
    batches = sorted({lot.batch for lot in expected.values()})[:60]
    assert await odata.qms.inspection_lots_for_batches(batches) == await rest.qms.inspection_lots_for_batches(batches)

    since = sim.world.now() - dt.timedelta(days=3)
    found = await odata.qms.changes_since(since)
    changed = {k for k, lot in expected.items() if lot.last_change_date_time and lot.last_change_date_time > since}
    assert found and {c.key for c in found} == changed
    assert [c.changed_at for c in found] == sorted(c.changed_at for c in found)
    assert all(c.refs["ManufacturingOrder"] == expected[c.key].manufacturing_order for c in found)

    decided = next(k for k, lot in expected.items() if lot.has_usage_decision)
    sim.odata.failures["A_InspLotUsageDecision"] = Failure(200, orjson.dumps({"d": {"results": []}}))
    with pytest.raises(SourceError, match="InspectionLotHasUsageDecision"):
        await odata.qms.inspection_lots([decided])


async def test_gateway_with_the_qms_as_sap_answers_as_with_rest():
    query = """query($id: ID!) { order(id: $id) { id quality { status inspectionLots { id material batch
      productionOrder origin createdAt hasUsageDecision usageDecision { code codeGroup valuation decidedAt qualityScore } } } } }"""
    async with running_plant(orders=120) as plant, aiohttp.ClientSession() as http:
        orders = sorted({po.sales_order for po in plant.world.table("A_ProductionOrder").records()})[:20]
        async with running_gateway(plant.url, domain_clock=plant.world.now) as (rest_url, _app):
            expected = [await GraphQLClient(rest_url, http).query(query, {"id": so}) for so in orders]
        assert any(o["order"]["quality"]["inspectionLots"] for o in expected)
        qms = {"profile": "sap-odata", "base_url": plant.sap_url("qms"), "pushes": False, "poll_seconds": 0.5}
        async with running_gateway(plant.url, sources={"qms": qms}, domain_clock=plant.world.now) as (url, app):
            seen = len(plant.odata.requests)
            got = [await GraphQLClient(url, http).query(query, {"id": so}) for so in orders]
            assert got == expected and len(plant.odata.requests) > seen
            poller = app.state.gateway.reconciler.pollers["qms"]
            assert set(poller.readers) == {"A_InspectionLot"}
            await _until(lambda: _true(poller.stats.polls > 1))
            assert poller.stats.last_error is None
            assert any("A_InspectionLot" in u and "ChangedDateTime" in u for u in plant.odata.requests)


# --- the WMS as SAP: outbound deliveries over OData, component availability over REST ----------


async def test_same_deliveries_over_odata_as_over_rest_but_what_sap_does_not_keep(sim, session):
    """Deliveries read over API_OUTBOUND_DELIVERY_SRV;v=0002 equal REST's, except what SAP's
    header does not keep: picking and packing confirmation times are not known (empty, not
    guessed) and the change time is its day. Components still come over REST."""
    rest = Sources.connect(session, {s: SourceEndpoint(u) for s, u in sim.system_urls.items()})
    endpoints = {s: SourceEndpoint(u) for s, u in sim.system_urls.items()}
    endpoints["wms"] = SourceEndpoint(
        sim.sap_url("wms"), profile="sap-odata", rest_url=sim.system_urls["wms"], max_url_length=1200
    )
    calls: list = []
    odata = Sources.connect(session, endpoints, on_request=lambda *a: calls.append(a))
    assert isinstance(odata.wms, SapWmsConnector)
    keys = sim.world.table("A_OutbDeliveryHeader").keys()
    expected = await rest.wms.deliveries(keys)
    sim.world.set_latency({"wms": 30.0})
    sim.faults.max_in_flight["wms"] = 0
    got = await odata.wms.deliveries(keys)
    assert sim.faults.max_in_flight["wms"] > 1 and {c[1] for c in calls} == {"A_OutbDeliveryHeader"}
    sim.world.set_latency({"wms": 0.0})

    def as_sap_keeps(d):
        day = d.last_change_date_time.date() if d.last_change_date_time else None
        return dataclasses.replace(
            d, actual_picking_date_time=None, actual_packing_date_time=None,
            last_change_date_time=dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC) if day else None,
        )

    assert got == {k: as_sap_keeps(d) for k, d in expected.items()} and len(got) == len(keys) > 50
    assert any(d.actual_picking_date_time for d in expected.values())  # REST knows them; SAP's header does not
    assert any(d.overall_goods_movement_status == "C" and d.actual_goods_movement_date for d in got.values())
    orders = sorted({d.sales_order for d in expected.values()})[:50] + ["99999999"]
    by_order = await odata.wms.deliveries_for_sales_orders(orders)
    want = await rest.wms.deliveries_for_sales_orders(orders)
    assert by_order == {k: [as_sap_keeps(d) for d in v] for k, v in want.items()} and by_order["99999999"] == []
    before = len(sim.odata.requests)
    mos = sorted({po for po in sim.world.table("A_ProductionOrder").keys()})[:30]
    assert await odata.wms.components_for_production_orders(mos) == await rest.wms.components_for_production_orders(mos)
    assert len(sim.odata.requests) == before  # component availability: the WMS's REST contract


def test_config_wms_sap_odata_needs_rest_url_and_pushes(tmp_path):
    path = tmp_path / "og.toml"
    ok = '[sources.wms]\nprofile = "sap-odata"\nbase_url = "https://s4.example.com"\nrest_url = "https://wms.example.com/wms"\n'
    path.write_text(ok)
    assert load_config(path, env={}).sources["wms"].profile == "sap-odata"
    for bad, said in (
        ('[sources.wms]\nprofile = "sap-odata"\n', "component availability"),
        (ok + "pushes = false\n", "pushes: must stay true"),
    ):
        path.write_text(bad)
        with pytest.raises(ConfigError, match=said):
            load_config(path, env={})


async def test_gateway_with_the_wms_as_sap_reads_deliveries_from_sap_and_sweeps_only_components():
    async with running_plant(orders=120) as plant, aiohttp.ClientSession() as http:
        wms = {"profile": "sap-odata", "base_url": plant.sap_url("wms"), "rest_url": f"{plant.url}/wms", "poll_seconds": 0.5}
        orders = sorted({d.sales_order for d in plant.world.table("A_OutbDeliveryHeader").records()})[:20]
        async with running_gateway(plant.url, domain_clock=plant.world.now) as (rest_url, _app):
            expected = [await GraphQLClient(rest_url, http).query(DELIVERIES, {"id": so}) for so in orders]
        async with running_gateway(plant.url, sources={"wms": wms}, domain_clock=plant.world.now) as (url, app):
            seen = len(plant.odata.requests)
            got = [await GraphQLClient(url, http).query(DELIVERIES, {"id": so}) for so in orders]
            assert got == expected and any(o["order"]["logistics"]["deliveries"] for o in got)
            assert any("A_OutbDeliveryItem" in u for u in plant.odata.requests[seen:])
            assert set(app.state.gateway.reconciler.pollers["wms"].readers) == {"A_ComponentAvailability"}


DELIVERIES = """query($id: ID!) { order(id: $id) { id logistics { status deliveries {
  id deliveryDate shippingPoint pickingStatus packingStatus goodsMovementStatus goodsIssuedAt billOfLading
  items { item salesOrder salesOrderItem material quantity unit batch } } } } }"""


async def test_demo_with_every_sap_system_runs_over_odata(tmp_path):
    """``ordergraph demo --sap-systems erp,mes,wms,qms``: one order's production, logistics and
    quality read without errors, and the metrics show the reads went to SAP's entity sets."""
    ports = []
    for _ in range(2):
        sock = free_socket()
        ports.append(sock.getsockname()[1])
        sock.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERGRAPH_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "demo", "--sap-systems", "erp,mes,wms,qms", "--poll-seconds", "1", "--open",
        "--no-assets", "--orders", "100", "--port", str(ports[0]), "--plant-port", str(ports[1]),
        "--journal", str(tmp_path / "j.sqlite"),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{ports[0]}"
    try:
        async with aiohttp.ClientSession() as http:
            async def ready():
                try:
                    async with http.get(base + "/readyz") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            await _until(ready, timeout=90, step=0.3)
            query = """{ orders(first: 20, filter: {includeCompleted: true}) { nodes { id
              production { orders { id workCenter { id state } } }
              logistics { deliveries { id items { quantity } } } quality { inspectionLots { id usageDecision { valuation } } } } } }"""
            async with http.post(base + "/graphql", json={"query": query}) as resp:
                body = await resp.json()
            assert "errors" not in body, body
            nodes = body["data"]["orders"]["nodes"]
            assert any(n["production"]["orders"] and n["production"]["orders"][0]["workCenter"] for n in nodes)
            assert any(n["logistics"]["deliveries"] for n in nodes) and any(n["quality"]["inspectionLots"] for n in nodes)
            async with http.get(base + "/metrics") as resp:
                metrics = await resp.text()
            for entity_set in ("A_SalesOrder", "A_ProductionOrder_2", "A_OutbDeliveryHeader", "A_InspectionLot"):
                assert f'entity_set="{entity_set}"' in metrics, entity_set
            assert 'entity_set="A_WorkCenter"' in metrics  # the MES's REST contract, as the profile says
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert b"MES as SAP S/4HANA (OData v2)" in out and b"QMS as SAP" in out and b"Traceback" not in out

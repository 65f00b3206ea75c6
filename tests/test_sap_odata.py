"""The ERP as SAP S/4HANA (profile sap-odata) against the simulated plant's OData dialect,
and reconciliation polling (gateway/reconcile.py) through the real gateway."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest

from gateway.config import ConfigError, load_config
from gateway.reconcile import RedisLease, SourcePoller
from gateway.sqlite_journal import SQLiteJournal
from sources import SourceEndpoint, Sources
from sources.odata import BasicAuth, ClientCredentials, ODataClient, ODataError, Query
from sources.resilience import SOURCE_BAD_RESPONSE, SOURCE_UNAVAILABLE, Policy
from sources.sap_erp import Changed
from sources.simulator.odata import Failure

from .events_util import send_changes
from .servers import REDIS_URL, free_socket, running_gateway, running_plant
from .ws_client import WsClient

SO_SERVICE = "/sap/opu/odata/sap/API_SALES_ORDER_SRV"
ORDER_CHANGES = "subscription($c: ID) { orderChanges(customer: $c) { eventType order { id customerId } } }"


def no_retries() -> Policy:
    return Policy(timeout_seconds=5.0, retries=0, breaker_failures=1000, breaker_failure_rate=1.0)


def connect(session, sim, *, calls: list | None = None, policy: Policy | None = None, **erp) -> Sources:
    endpoints = {s: SourceEndpoint(u) for s, u in sim.system_urls.items()}
    endpoints["erp"] = SourceEndpoint(sim.sap_url(), profile="sap-odata", policy=policy, **erp)
    hook = (lambda *a: calls.append(a)) if calls is not None else None
    return Sources.connect(session, endpoints, on_request=hook)


@pytest.fixture
async def sim():
    async with running_plant(orders=300) as s:
        yield s


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


# --- the dialect and the connector ----------------------------------------------------------


async def test_same_records_over_odata_as_over_rest_with_chunks_running_concurrently(sim, session):
    """Every sales order and customer reads the same over SAP's OData as over REST; a batch
    of 300 keys is one logical read cut into URL-sized chunks that run at once."""
    rest = Sources.connect(session, {s: SourceEndpoint(u) for s, u in sim.system_urls.items()})
    calls: list = []
    odata = connect(session, sim, calls=calls, max_url_length=1500)
    keys = sim.world.table("A_SalesOrder").keys()
    sim.world.set_latency({"erp": 30.0})  # overlapping chunks show as requests in flight together
    expected = await rest.erp.sales_orders(keys)
    sim.faults.max_in_flight["erp"] = 0
    got = await odata.erp.sales_orders(keys)
    assert got == expected and len(got) == 300
    assert any(o.items and o.items[0].schedule_lines for o in got.values())
    assert len(calls) > 1 and all(c[1] == "A_SalesOrder" for c in calls)  # each chunk counted
    assert sim.faults.max_in_flight["erp"] > 1
    assert all(len(u) <= 1500 for u in sim.odata.requests[-len(calls):])
    customers = sim.world.table("A_Customer").keys()
    assert await odata.erp.customers(customers) == await rest.erp.customers(customers)
    # Keys that cannot be keys are never sent; unknown ones are absent.
    assert await odata.erp.sales_orders(["x' or 1 eq 1", "99999999"]) == {}


async def test_wire_format_is_sap_dates_decimals_and_times(sim, session):
    so = sim.world.table("A_SalesOrder").keys()[0]
    url = f"{sim.sap_url()}{SO_SERVICE}/A_SalesOrder('{so}')?$expand=to_Item/to_ScheduleLine&$format=json"
    async with session.get(url) as resp:
        body = orjson.loads(await resp.read())["d"]
    assert body["__metadata"]["type"] == "API_SALES_ORDER_SRV.A_SalesOrderType"
    assert body["SalesOrderDate"].startswith("/Date(") and body["LastChangeDateTime"].endswith("+0000)/")
    assert isinstance(body["TotalNetAmount"], str) and "." in body["TotalNetAmount"]
    line = body["to_Item"]["results"][0]["to_ScheduleLine"]["results"][0]
    assert line["ProductAvailabilityTime"].startswith("PT") and isinstance(line["ConfdOrderQtyByMatlAvailCheck"], str)
    # Not expanded: deferred, as SAP serves navigations.
    async with session.get(f"{sim.sap_url()}{SO_SERVICE}/A_SalesOrder('{so}')?$format=json") as resp:
        assert "__deferred" in orjson.loads(await resp.read())["d"]["to_Item"]


async def test_server_paging_next_inlinecount_and_client_top_skip(sim, session):
    sim.odata.page_size = 40
    client = ODataClient("erp", f"{sim.sap_url()}{SO_SERVICE}", session, sap_client="100")
    result = await client.read_all(Query("A_SalesOrder", select=("SalesOrder",), inlinecount=True))
    keys = [r["SalesOrder"] for r in result.rows]
    assert result.count == 300 and result.requests == 8 and keys == sim.world.table("A_SalesOrder").keys()
    assert all("sap-client=100" in u for u in sim.odata.requests[-8:])
    paged = await client.read_all(Query("A_SalesOrder", select=("SalesOrder",), top=95), page_size=30)
    assert [r["SalesOrder"] for r in paged.rows] == keys[:95] and paged.requests == 4


async def test_listing_filters_pages_and_counts_like_rest(sim, session):
    rest = Sources.connect(session, {s: SourceEndpoint(u) for s, u in sim.system_urls.items()})
    odata = connect(session, sim)
    customer = max(sim.world.table("A_Customer").keys(), key=lambda c: len(sim.world.table("A_SalesOrder").lookup("SoldToParty", [c])))
    for kwargs in ({"sold_to_party": customer}, {}, {"confirmed_before": sim.world.now().date() + dt.timedelta(days=20)}):
        tokens: list = [None, None]
        for _ in range(3):
            a = await rest.erp.list_sales_orders(top=4, skip_token=tokens[0], **kwargs)
            b = await odata.erp.list_sales_orders(top=4, skip_token=tokens[1], **kwargs)
            assert (a.records, a.count, a.next_skip_token) == (b.records, b.count, b.next_skip_token), kwargs
            tokens = [a.next_skip_token, b.next_skip_token]
            if tokens[0] is None:
                break
    assert await odata.erp.sales_orders_of_customer(customer) == await rest.erp.sales_orders_of_customer(customer)


async def test_changes_since_reads_newer_sales_orders_oldest_first(sim, session):
    odata = connect(session, sim)
    since = sim.world.now() - dt.timedelta(seconds=1)
    assert await odata.erp.changes_since(since) == []
    a, b = sim.world.orders_in_state("PACKED")[:2]
    sim.world.advance_order(a)
    sim.world.advance_order(b)
    found = await odata.erp.changes_since(since)
    assert {c.key for c in found} == {a, b}
    assert [c.changed_at for c in found] == sorted(c.changed_at for c in found)
    assert all(c.changed_at > since and c.entity == "SalesOrder" for c in found)
    assert next(c for c in found if c.key == a).refs["Customer"] == sim.world.get("A_SalesOrder", a).sold_to_party


# --- auth and errors --------------------------------------------------------------------------


async def test_basic_auth(sim, session):
    sim.odata.basic = ("COMM_USER", "s3cret")
    so = sim.world.table("A_SalesOrder").keys()[0]
    good = connect(session, sim, auth=BasicAuth("COMM_USER", "s3cret"), policy=no_retries())
    assert so in await good.erp.sales_orders([so])
    bad = connect(session, sim, auth=BasicAuth("COMM_USER", "wrong"), policy=no_retries())
    with pytest.raises(ODataError) as err:
        await bad.erp.sales_orders([so])
    assert err.value.status == 401 and err.value.code == SOURCE_BAD_RESPONSE and "Logon failed" in str(err.value)
    anonymous = connect(session, sim, policy=no_retries())
    with pytest.raises(ODataError):
        await anonymous.erp.sales_orders([so])


async def test_oauth_client_credentials_cached_and_refreshed_on_401(sim, session):
    sim.odata.client_credentials = ("ordergraph", "client-secret")
    token_url = f"{sim.sap_url()}/sap/bc/sec/oauth2/token"
    auth = ClientCredentials(token_url, "ordergraph", "client-secret")
    sources = connect(session, sim, auth=auth, policy=no_retries())
    keys = sim.world.table("A_SalesOrder").keys()[:3]
    assert set(await sources.erp.sales_orders(keys)) == set(keys)
    assert set(await sources.erp.customers(sim.world.table("A_Customer").keys()[:2]))
    assert auth.fetched == 1 and sim.odata.token_requests == 1  # cached across calls and services
    sim.odata.tokens.clear()  # revoked at SAP: a 401, then one retry with a fresh token
    assert set(await sources.erp.sales_orders(keys)) == set(keys)
    assert auth.fetched == 2
    wrong = connect(session, sim, auth=ClientCredentials(token_url, "ordergraph", "nope"), policy=no_retries())
    with pytest.raises(Exception) as err:
        await wrong.erp.sales_orders(keys)
    assert "refused the client credentials" in str(err.value)


def sap_error(code: str, text: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": {"lang": "en", "value": text},
                                   "innererror": {"errordetails": [{"code": code, "message": text, "severity": "error"}]}}})


async def test_401_403_500_and_sap_message_errors_are_typed(sim, session):
    sources = connect(session, sim, policy=no_retries())
    so = sim.world.table("A_SalesOrder").keys()[0]
    sim.odata.failures["A_SalesOrder"] = Failure(403, sap_error("/IWBEP/CM_MGW_RT/034", "No authorization for A_SalesOrder"), times=1)
    with pytest.raises(ODataError) as err:
        await sources.erp.sales_orders([so])
    assert err.value.status == 403 and err.value.code == SOURCE_BAD_RESPONSE
    assert err.value.sap_code == "/IWBEP/CM_MGW_RT/034" and "No authorization" in str(err.value)
    sim.odata.failures["A_SalesOrder"] = Failure(401, sap_error("/IWFND/CM_CONSUMER/101", "Logon failed"), times=1)
    with pytest.raises(ODataError) as err:
        await sources.erp.sales_orders([so])
    assert err.value.status == 401 and "refused our credentials" in str(err.value)
    sim.odata.failures["A_SalesOrder"] = Failure(500, sap_error("/IWBEP/CM_MGW_RT/000", "Internal error"), times=1)
    with pytest.raises(ODataError) as err:
        await sources.erp.sales_orders([so])
    assert err.value.status == 500 and err.value.code == SOURCE_UNAVAILABLE
    # A 2xx answer whose sap-message says error is not to be trusted.
    sim.odata.headers["sap-message"] = orjson.dumps(
        {"code": "V1/302", "message": "Sales document is locked", "severity": "error", "target": "", "details": []}
    ).decode()
    with pytest.raises(ODataError) as err:
        await sources.erp.sales_orders([so])
    assert err.value.sap_code == "V1/302" and err.value.code == SOURCE_BAD_RESPONSE
    sim.odata.headers["sap-message"] = orjson.dumps({"code": "V1/001", "message": "note", "severity": "warning"}).decode()
    assert so in await sources.erp.sales_orders([so])  # a warning does not fail the read
    sim.odata.headers.clear()
    # A bad $filter is SAP's 400, the request's fault.
    async with session.get(f"{sim.sap_url()}{SO_SERVICE}/A_SalesOrder?$filter=SalesOrder%20like%20'1'") as resp:
        assert resp.status == 400 and "error" in orjson.loads(await resp.read())


# --- configuration ----------------------------------------------------------------------------


def test_config_profiles_and_polling_are_checked(tmp_path):
    path = tmp_path / "og.toml"
    path.write_text('[sources.erp]\nprofile = "sap-odata"\nbase_url = "https://s4.example.com"\nsap_client = "100"\n'
                    'username = "COMM"\npassword = "x"\npushes = false\npoll_seconds = 5\n')
    cfg = load_config(path, env={})
    assert cfg.sources["erp"].profile == "sap-odata" and cfg.sources["erp"].poll_seconds == 5
    for bad, said in (
        ('[sources.erp]\nprofile = "soap"\n', "profile"),
        ('[sources.mes]\nprofile = "sap-odata"\n', "rest_url"),  # mixed: tests/test_sap_mes.py
        ('[sources.erp]\nsap_client = "1"\n', "sap_client"),
        ('[sources.erp]\npoll_seconds = -1\n', "poll_seconds"),
        ('[sources.erp]\nusername = "a"\noauth_token_url = "https://t"\noauth_client_id = "c"\n', "either"),
    ):
        path.write_text(bad)
        with pytest.raises(ConfigError, match=said):
            load_config(path, env={})


# --- reconciliation polling through the gateway ------------------------------------------------


async def _until(predicate, timeout: float = 15.0, step: float = 0.05):
    async with asyncio.timeout(timeout):
        while not (value := await predicate()):
            await asyncio.sleep(step)
        return value


def _packed(world, n: int = 0) -> str:
    """A packed order: its next step (goods issue) changes the sales order, now."""
    return world.orders_in_state("PACKED")[n]


def _change(world, so: str) -> list:
    changes = world.advance_order(so)
    assert any(c.entity_set == "A_SalesOrder" and c.key == so for c in changes)
    return changes


async def _poll_events(journal, key: str) -> list:
    """The poll's events of one sales order, once processed (its timeline keeps them)."""
    return [e for e in await journal.history(key) if e.event_id.startswith("poll:")]


@pytest.mark.parametrize("profile", ["sap-odata", "rest"])
async def test_a_change_in_an_erp_that_does_not_push_reaches_a_subscriber(profile):
    async with running_plant(orders=200) as plant:
        erp = {"pushes": False, "poll_seconds": 0.5}
        if profile == "sap-odata":
            erp |= {"profile": "sap-odata", "base_url": plant.sap_url()}
        async with running_gateway(plant.url, sources={"erp": erp}, domain_clock=plant.world.now) as (url, app):
            gw = app.state.gateway
            poller = gw.reconciler.pollers["erp"]
            await _until(lambda: _true(poller.stats.polls > 0))
            placed = _packed(plant.world)
            customer = plant.world.get("A_SalesOrder", placed).sold_to_party
            ws = await WsClient.open(url)
            await ws.subscribe("1", ORDER_CHANGES, {"c": customer})
            await asyncio.sleep(0.2)
            _change(plant.world, placed)  # no webhook: only the poll can tell
            async with asyncio.timeout(15):
                while True:
                    msg = await ws.next("1", timeout=15)
                    if msg["data"]["orderChanges"]["order"]["id"] == placed:
                        break
            await ws.close()
            assert len(await _poll_events(gw.journal, placed)) == 1
            fresh = gw.readiness()[1]["freshness"]
            assert fresh["erp"]["how"] == "polled" and fresh["erp"]["asOf"] and fresh["mes"]["how"] == "pushed"


async def _true(value: bool) -> bool:
    return value


async def test_poll_watermark_survives_a_restart(tmp_path):
    journal_path = str(tmp_path / "journal.sqlite")
    # No overlap: only the durable watermark can find a change made while the gateway was down.
    erp = {"pushes": False, "poll_seconds": 0.5, "profile": "sap-odata", "poll_overlap_seconds": 0.0}
    async with running_plant(orders=200) as plant:
        erp["base_url"] = plant.sap_url()
        first, second = _packed(plant.world), _packed(plant.world, 1)
        async with running_gateway(plant.url, journal_path=journal_path, sources={"erp": erp}, domain_clock=plant.world.now) as (_u, app):
            gw = app.state.gateway
            poller = gw.reconciler.pollers["erp"]
            await _until(lambda: _true(poller.stats.polls > 0))
            await asyncio.sleep(1.1)  # the plant stamps whole seconds: change after the first poll's second
            _change(plant.world, first)
            await _until(lambda: _poll_events(gw.journal, first))
            mark = await poller.watermark()
        assert mark is not None and mark >= plant.world.get("A_SalesOrder", first).last_change_date_time
        await asyncio.sleep(1.1)
        _change(plant.world, second)  # while the gateway is down
        await asyncio.sleep(1.1)  # a poll starting afresh at "now" would miss it
        async with running_gateway(plant.url, journal_path=journal_path, sources={"erp": erp}, domain_clock=plant.world.now) as (_u, app):
            gw = app.state.gateway
            poller = gw.reconciler.pollers["erp"]
            assert await poller.watermark() == mark  # resumed, not restarted at now
            await _until(lambda: _poll_events(gw.journal, second))
            await _until(lambda: _true(poller.stats.polls >= 3))
            assert len(await _poll_events(gw.journal, first)) == 1  # not journaled again
            assert len(await _poll_events(gw.journal, second)) == 1


async def test_a_failing_poll_holds_the_watermark_and_the_change_comes_when_sap_answers():
    async with running_plant(orders=200) as plant:
        erp = {"pushes": False, "poll_seconds": 0.5, "profile": "sap-odata", "base_url": plant.sap_url(), "retries": 0}
        async with running_gateway(plant.url, sources={"erp": erp}, domain_clock=plant.world.now) as (_u, app):
            gw = app.state.gateway
            poller = gw.reconciler.pollers["erp"]
            await _until(lambda: _true(poller.stats.polls > 0))
            mark = await poller.watermark()
            plant.odata.failures["A_SalesOrder"] = Failure(503, sap_error("/IWFND/CM_BEC/026", "Backend unavailable"))
            so = _packed(plant.world)
            await asyncio.sleep(1.1)
            _change(plant.world, so)
            await _until(lambda: _true(poller.stats.failures >= 2))
            assert await poller.watermark() == mark and await _poll_events(gw.journal, so) == []
            assert "503" in gw.readiness()[1]["freshness"]["erp"]["lastPollError"]
            del plant.odata.failures["A_SalesOrder"]
            await _until(lambda: _poll_events(gw.journal, so), timeout=30)
            assert await poller.watermark() > mark
            assert "lastPollError" not in gw.readiness()[1]["freshness"]["erp"]


async def test_push_and_poll_of_the_same_change_reach_subscribers_once(http):
    async with running_plant(orders=200) as plant:
        erp = {"profile": "sap-odata", "poll_seconds": 3600.0}  # a sweep; the test runs it by hand
        erp["base_url"] = plant.sap_url()
        async with running_gateway(plant.url, sources={"erp": erp}, domain_clock=plant.world.now) as (url, app):
            gw = app.state.gateway
            poller = gw.reconciler.pollers["erp"]
            await _until(lambda: _true(poller.stats.polls > 0))  # the first poll sets the watermark

            async def published(so: str) -> int:
                return len([r for r in await gw.journal.changes_after(0, sales_order=so) if r.source == "erp"])

            # Pushed first, then the sweep sees the same change: journaled once, published once.
            a, b = _packed(plant.world), _packed(plant.world, 1)
            changes = _change(plant.world, a)
            await send_changes(http, url, plant.world, [c for c in changes if c.system == "erp"])
            await gw.processor.drain()
            await poller.poll_once()
            await gw.processor.drain()
            assert await _poll_events(gw.journal, a) == [] and poller.stats.known >= 1
            assert await published(a) == 1
            # Polled first, then the (late) webhook of the same change: applied once.
            changes = _change(plant.world, b)
            assert await poller.poll_once() >= 1
            await gw.processor.drain()
            assert await published(b) == 1
            await send_changes(http, url, plant.world, [c for c in changes if c.system == "erp"])
            await gw.processor.drain()
            assert await published(b) == 1
            history = await gw.journal.history(b)
            assert len(history) == 2  # both kept in history; the second changed nothing


async def test_a_lost_webhook_is_healed_by_the_sweep(http):
    async with running_plant(orders=200) as plant:
        erp = {"poll_seconds": 3600.0, "profile": "sap-odata", "base_url": plant.sap_url()}
        async with running_gateway(plant.url, sources={"erp": erp}, domain_clock=plant.world.now) as (_url, app):
            gw = app.state.gateway
            poller = gw.reconciler.pollers["erp"]
            await _until(lambda: _true(poller.stats.polls > 0))
            so = plant.world.table("A_SalesOrder").keys()[5]
            before = (await gw.sources.erp.sales_orders([so]))[so]
            # A sales order changes and its webhook is lost.
            record = plant.world.get("A_SalesOrder", so)
            record.delivery_block_reason = "01" if record.delivery_block_reason != "01" else ""
            plant.world._store.touch(record, "SalesOrder.DeliveryBlocked", plant.world.now(), so)
            plant.world._store.flush()
            await poller.poll_once()
            await gw.processor.drain()
            assert await gw.journal.changes_after(0, sales_order=so)
            after = (await gw.sources.erp.sales_orders([so]))[so]
            assert after.delivery_block_reason != before.delivery_block_reason


# --- the lease ---------------------------------------------------------------------------------


async def test_one_replica_polls_under_a_redis_lease_taken_over_when_the_holder_dies(prefix, tmp_path):
    key = f"{prefix}poll-lease:erp"
    reads: dict[str, int] = {"a": 0, "b": 0}

    def reader(name: str):
        async def read(since: dt.datetime) -> list[Changed]:
            reads[name] += 1
            return []

        return read

    journal = await SQLiteJournal.open(str(tmp_path / "j.sqlite"))
    pollers = {
        name: SourcePoller(
            "erp", 0.5, reader(name), journal, _registry(),
            clock=lambda: dt.datetime.now(dt.UTC), plant_clock=lambda: dt.datetime.now(dt.UTC),
            lease=RedisLease(REDIS_URL, key, f"replica-{name}", 1.5), lease_seconds=1.5,
        )
        for name in ("a", "b")
    }
    try:
        pollers["a"].start()
        await _until(lambda: _true(pollers["a"].lease.held))
        pollers["b"].start()
        await _until(lambda: _true(reads["a"] >= 3))
        assert reads["b"] == 0 and not pollers["b"].lease.held  # one poller per source
        # Replica a dies: its task ends without releasing the lease, which then lapses.
        pollers["a"]._task.cancel()
        await asyncio.gather(pollers["a"]._task, return_exceptions=True)
        pollers["a"]._task = None
        await _until(lambda: _true(pollers["b"].lease.held and reads["b"] >= 2), timeout=20)
        assert await pollers["b"].watermark() is not None  # the shared watermark carries on
    finally:
        for p in pollers.values():
            await p.stop()
        await journal.close()


def _registry():
    from sources import event_registry

    return event_registry()


async def test_redis_lease_basics(prefix):
    a = RedisLease(REDIS_URL, f"{prefix}lease", "a", 1.0)
    b = RedisLease(REDIS_URL, f"{prefix}lease", "b", 1.0)
    try:
        assert await a.hold() and not await b.hold()
        assert await a.hold()  # renewed by its holder
        await a.release()
        assert await b.hold() and not await a.hold()
    finally:
        await a.close()
        await b.close()


# --- the demo, as a user runs it -----------------------------------------------------------------


ROOT = Path(__file__).resolve().parents[1]


async def test_demo_with_the_erp_as_sap_odata_runs_the_whole_product(tmp_path):
    ports = []
    for _ in range(2):
        sock = free_socket()
        ports.append(sock.getsockname()[1])
        sock.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERGRAPH_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "demo", "--erp", "sap-odata", "--poll-seconds", "1", "--open", "--no-assets",
        "--orders", "100", "--port", str(ports[0]), "--plant-port", str(ports[1]), "--journal", str(tmp_path / "j.sqlite"),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{ports[0]}"
    try:
        async with aiohttp.ClientSession() as http:
            async def ready():
                try:
                    async with http.get(base + "/readyz") as resp:
                        body = await resp.json()
                        return body if resp.status == 200 and (body.get("freshness", {}).get("erp", {}).get("asOf")) else None
                except aiohttp.ClientError:
                    return None

            report = await _until(ready, timeout=90, step=0.3)
            assert report["freshness"]["erp"]["how"] == "polled" and report["freshness"]["mes"]["how"] == "pushed"
            # Every order (the demo's default listing leaves out orders completed a plant week ago,
            # which over OData is a $filter on OverallSDProcessStatus and LastChangeDateTime).
            query = "{ orders(first: 3, filter: {includeCompleted: true}) { totalCount nodes { id customer { name } } } }"
            async with http.post(base + "/graphql", json={"query": query}) as resp:
                body = await resp.json()
            assert "errors" not in body, body
            assert body["data"]["orders"]["totalCount"] == 100 and all(n["customer"]["name"] for n in body["data"]["orders"]["nodes"])
            async with http.post(base + "/graphql", json={"query": "{ orders(first: 1) { totalCount } }"}) as r:
                listed = (await r.json())["data"]["orders"]["totalCount"]
            assert 0 < listed < 100  # open orders and those completed within the week
            async with http.get(f"http://127.0.0.1:{ports[1]}/control/stats") as resp:
                assert (await resp.json())["requests"]["erp"] > 0  # the ERP was read over OData
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert b"ERP as SAP S/4HANA (OData v2)" in out and b"Traceback" not in out


async def test_two_replicas_on_redis_one_polls_and_the_change_is_journaled_once(prefix):
    async with running_plant(orders=200) as plant:
        erp = {"pushes": False, "poll_seconds": 0.5, "profile": "sap-odata", "base_url": plant.sap_url()}

        def scaleout(name: str) -> dict:
            return {"redis_url": REDIS_URL, "key_prefix": prefix, "replica_id": name, "poll_seconds": 0.1, "lease_seconds": 2.0}

        async with (
            running_gateway(plant.url, sources={"erp": erp}, scaleout=scaleout("a"), domain_clock=plant.world.now) as (_ua, app_a),
            running_gateway(plant.url, sources={"erp": erp}, scaleout=scaleout("b"), domain_clock=plant.world.now) as (_ub, app_b),
        ):
            pollers = [app_a.state.gateway.reconciler.pollers["erp"], app_b.state.gateway.reconciler.pollers["erp"]]
            await _until(lambda: _true(any(p.stats.polls > 1 for p in pollers)))
            await asyncio.sleep(1.0)
            holders = [p for p in pollers if p.lease.held]
            assert len(holders) == 1 and [p for p in pollers if p.stats.polls > 0] == holders
            so = _packed(plant.world)
            await asyncio.sleep(1.1)
            _change(plant.world, so)
            journal = app_b.state.gateway.journal
            await _until(lambda: _poll_events(journal, so))
            await asyncio.sleep(1.5)  # more polls: none journals it again
            assert len(await _poll_events(journal, so)) == 1


async def test_a_rest_source_is_polled_per_entity_set_with_changed_since():
    async with running_plant(orders=200) as plant:
        async with running_gateway(plant.url, sources={"mes": {"pushes": False, "poll_seconds": 0.5}}, domain_clock=plant.world.now) as (_u, app):
            gw = app.state.gateway
            poller = gw.reconciler.pollers["mes"]
            assert set(poller.readers) == {"A_ProductionOrder", "A_WorkCenter"}
            await _until(lambda: _true(poller.stats.polls > 0))
            assert await poller.watermark("A_ProductionOrder") is not None and await poller.watermark("A_WorkCenter") is not None
            so = plant.world.orders_in_state("RECEIVED")[0]
            await asyncio.sleep(1.1)
            changes = plant.world.advance_order(so)  # its production order is released; no webhook is sent
            assert any(c.entity_set == "A_ProductionOrder" for c in changes)
            events = await _until(lambda: _poll_events(gw.journal, so))
            assert {e.type for e in events} == {"sap.s4.beh.productionorder.v1.ProductionOrder.Changed.v1"}

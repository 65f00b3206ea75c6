"""The shop floor over MQTT against a real broker (Mosquitto; .ci/run starts one): the
gateway under uvicorn consumes Sparkplug B (and the JSON profile) into the event path.

Every test uses its own Sparkplug group id (or JSON prefix), so tests and other users of
the shared broker never see each other's messages."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import aiomqtt
import orjson
import pytest

from gateway.app import create_app
from gateway.config import AuthConfig, Config, ConfigError, MqttConfig, check_mqtt, load_config
from gateway.mapping import FINISHED
from gateway.mqtt import ShopFloorConsumer
from sources.sparkplug import DataType, Metric, decode_payload
from sources.sparkplug.session import REBIRTH_METRIC

from .servers import GraphQLClient, running_plant, serve_asgi
from .test_sparkplug import EdgeNodeSim
from .ws_client import WsClient

MQTT_URL = os.environ.get("ORDERGRAPH_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")
BROKER = urlsplit(MQTT_URL)
HOST, PORT = BROKER.hostname or "127.0.0.1", BROKER.port or 1883


@pytest.fixture
async def broker() -> str:
    try:
        _r, w = await asyncio.wait_for(asyncio.open_connection(HOST, PORT), 3)
    except (OSError, TimeoutError) as exc:
        pytest.skip(f"MQTT tests need a broker at {MQTT_URL} (.ci/run starts Mosquitto): {exc}")
    w.close()
    return MQTT_URL


@pytest.fixture
def group() -> str:
    return f"og-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def plant():
    async with running_plant() as sim:
        yield sim


@contextlib.asynccontextmanager
async def mqtt_gateway(plant_url: str, world: Any, **mqtt: Any) -> AsyncIterator[tuple[str, Any]]:
    """The gateway under uvicorn with ``[mqtt]`` set; yields once its consumer is subscribed."""
    cfg = Config.for_plant(plant_url)
    cfg.events.journal_path = ":memory:"
    cfg.auth = AuthConfig(mode="open")
    cfg.mqtt.rebirth_interval_seconds = 0.0  # every loss asks again: the tests count requests
    cfg.mqtt.reconnect_min_seconds = 0.1
    for key, value in mqtt.items():
        setattr(cfg.mqtt, key, value)
    app = create_app(cfg, domain_clock=world.now)
    async with serve_asgi(app) as url:
        gw = app.state.gateway
        await asyncio.wait_for(gw.mqtt.connected.wait(), 10)
        yield url, gw


@contextlib.asynccontextmanager
async def publisher() -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(HOST, PORT, identifier=f"og-test-pub-{uuid.uuid4().hex[:8]}") as client:
        yield client


class Observer:
    """Everything published under a topic filter, decoded as Sparkplug where it can be."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.messages: list[tuple[str, Any]] = []
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        async with aiomqtt.Client(HOST, PORT, identifier=f"og-test-obs-{uuid.uuid4().hex[:8]}") as client:
            await client.subscribe(self.topic, qos=1)
            self.subscribed.set()
            async for m in client.messages:
                body = m.payload if isinstance(m.payload, bytes) else b""
                self.messages.append((str(m.topic), decode_payload(body)))

    def rebirth_requests(self) -> list[str]:
        return [
            t for t, p in self.messages
            if "/NCMD/" in t and (r := p.metric(REBIRTH_METRIC)) is not None and r.value is True
        ]


@contextlib.asynccontextmanager
async def observing(topic: str) -> AsyncIterator[Observer]:
    obs = Observer(topic)
    task = asyncio.create_task(obs.run())
    await asyncio.wait_for(obs.subscribed.wait(), 10)
    try:
        yield obs
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
            await asyncio.sleep(0.05)


async def journal(gw: Any) -> list[Any]:
    last = await gw.journal.last_seq()
    return [e for seq in range(1, last + 1) if (e := await gw.journal.get(seq)) is not None]


def open_order_on(world: Any, work_center: str) -> tuple[str, str]:
    """(sales order, production order) of an unfinished production order on ``work_center``."""
    for key in sorted(world.tables["A_ProductionOrder"].lookup("WorkCenter", [work_center])):
        po = world.get("A_ProductionOrder", key)
        if po.status not in FINISHED:
            return po.sales_order, po.manufacturing_order
    raise AssertionError(f"no open production order on {work_center}")


def state(value: str, alias: int = 10, at: dt.datetime | None = None) -> Metric:
    return Metric("State", alias, DataType.String, value, timestamp=at)


FRESHNESS = """query($id: ID!) { order(id: $id) { production {
  orders { workCenterId }
  freshness { source stale } } } }"""


async def mes_stale(gql: GraphQLClient, so: str) -> bool:
    data = await gql.query(FRESHNESS, {"id": so})
    return next(f["stale"] for f in data["order"]["production"]["freshness"] if f["source"] == "mes")


class Edge(EdgeNodeSim):
    """A hand-driven edge node whose times follow the plant's clock."""

    def __init__(self, group: str, world: Any, edge: str = "line-2") -> None:
        super().__init__(group, edge)
        self.at = world.now() - dt.timedelta(minutes=5)


async def born(pub: aiomqtt.Client, edge: Edge, device: str = "WC-20", value: str = "RUNNING") -> None:
    for topic, body in (edge.nbirth(), edge.device("DBIRTH", device, state(value))):
        await pub.publish(topic, body, qos=1)


# --- the demo path: the simulated plant's shop floor over Sparkplug B ----------------------


async def test_plant_machine_state_over_mqtt_changes_orders_live(broker, plant, group):
    """The simulated plant publishes its work centres over Sparkplug B (as `demo --mqtt`);
    a subscriber of an order on WC-20 sees the machine go down, the node die (STALE) and
    come back (live again)."""
    from sources.simulator.sparkplug_edge import SparkplugEdge

    world = plant.world
    so, _po = open_order_on(world, "WC-20")
    query = """subscription($id: ID!) { orderUpdated(id: $id) { production {
      orders { workCenterId workCenter { state } } freshness { source stale } } } }"""
    async with mqtt_gateway(plant.url, world, url=broker, group=group) as (url, gw):
        edge = SparkplugEdge(world, broker, group=group, edge_node="cell-1", client_id=f"{group}-edge")
        edge.start()
        ws = await WsClient.open(url)
        try:
            await asyncio.wait_for(edge.ready.wait(), 10)
            await until(lambda: gw.mqtt.stats.births >= 9, what="NBIRTH and a DBIRTH per work centre")
            await ws.subscribe("1", query, {"id": so})
            await asyncio.sleep(0.2)

            def wc20(msg: dict) -> tuple[str, bool]:
                prod = msg["data"]["orderUpdated"]["production"]
                states = {o["workCenter"]["state"] for o in prod["orders"] if o["workCenterId"] == "WC-20"}
                stale = next(f["stale"] for f in prod["freshness"] if f["source"] == "mes")
                return states.pop(), stale

            async def pushed(want: tuple[str, bool]) -> None:
                while wc20(await ws.next("1", timeout=15)) != want:
                    pass

            world.work_center_down("WC-20", 8)  # the plant publishes DDATA State=DOWN
            await pushed(("DOWN", False))
            events = [e for e in await journal(gw) if e.subject == "WC-20" and e.event_id.startswith("spb:")]
            assert events and events[-1].type.endswith("WorkCenter.Down.v1") and events[-1].source == "mes"

            await edge.drop()  # the cable pulled: the broker publishes the node's will (NDEATH)
            await pushed(("DOWN", True))
            assert "WC-20" in gw.shop_floor_stale and "NDEATH" in gw.shop_floor_stale["WC-20"].reason

            # The edge reconnects by itself and is born again: live, and the subscriber told.
            await pushed(("DOWN", False))
            assert "WC-20" not in gw.shop_floor_stale
            assert edge.stats.connects == 2 and gw.mqtt.stats.deaths >= 1
        finally:
            await ws.conn.close()
            await edge.close()


# --- births, deaths, gaps ---------------------------------------------------------------


async def test_seq_gap_marks_stale_and_asks_for_a_rebirth_on_the_broker(broker, plant, group):
    world = plant.world
    so, _po = open_order_on(world, "WC-20")
    edge = Edge(group, world)
    async with mqtt_gateway(plant.url, world, url=broker, group=group) as (url, gw), publisher() as pub, \
            observing(f"spBv1.0/{group}/NCMD/#") as ncmd, aiohttp.ClientSession() as http:
        gql = GraphQLClient(url, http)
        await born(pub, edge)
        await pub.publish(*edge.device("DDATA", "WC-20", Metric(None, 10, DataType.String, "DOWN")), qos=1)
        await until(lambda: gw.mqtt.stats.received >= 3)
        assert not await mes_stale(gql, so)

        await pub.publish(*edge.device("DDATA", "WC-20", state("RUNNING", at=edge.at), seq=edge.seq + 5), qos=1)
        await until(lambda: ncmd.rebirth_requests(), what="NCMD Node Control/Rebirth on the broker")
        assert ncmd.rebirth_requests() == [f"spBv1.0/{group}/NCMD/{edge.edge}"]
        assert gw.mqtt.stats.gaps == 1
        assert "seq gap" in gw.shop_floor_stale["WC-20"].reason
        await until(lambda: mes_stale(gql, so), what="freshness STALE for the order on WC-20")
        # The dropped message changed nothing: WC-20 is still the DOWN the last DDATA said.
        downs = [e for e in await journal(gw) if e.subject == "WC-20" and "WorkCenter.Down" in e.type]
        ups = [e for e in await journal(gw) if e.subject == "WC-20" and "WorkCenter.Up" in e.type]
        assert len(downs) == 1 and not ups

        # While stale, DATA is ignored; the rebirth makes the work centre live again.
        await born(pub, edge, value="RUNNING")
        await until(lambda: "WC-20" not in gw.shop_floor_stale, what="WC-20 live after the rebirth")
        await until(lambda: not_(mes_stale(gql, so)), what="freshness no longer STALE")


async def not_(aw: Any) -> bool:
    return not await aw


async def test_ddeath_and_ndeath(broker, plant, group):
    world = plant.world
    edge = Edge(group, world)
    async with mqtt_gateway(plant.url, world, url=broker, group=group) as (url, gw), publisher() as pub, \
            aiohttp.ClientSession() as http:
        await born(pub, edge, "WC-20")
        await pub.publish(*edge.device("DBIRTH", "WC-30", state("RUNNING")), qos=1)
        await until(lambda: gw.mqtt.stats.births == 3)
        assert not gw.shop_floor_stale

        await pub.publish(*edge.device("DDEATH", "WC-30"), qos=1)
        await until(lambda: "WC-30" in gw.shop_floor_stale)
        assert "WC-20" not in gw.shop_floor_stale  # one device died, not the node

        await pub.publish(*edge.ndeath(bd_seq=edge.bd_seq + 7), qos=1)  # a late will of another session
        await pub.publish(*edge.ndeath(), qos=1)
        await until(lambda: "WC-20" in gw.shop_floor_stale)
        assert gw.mqtt.stats.deaths == 2
        async def notices() -> list[Any]:
            return [e for e in await journal(gw) if e.event_id.startswith("spb-session:")]

        async def noticed() -> bool:
            return {e.subject for e in await notices()} >= {"WC-20", "WC-30"}

        await until(noticed, what="stale notices of WC-20 and WC-30 journaled")
        notices = await notices()
        assert all(e.data == {"WorkCenter": e.subject} for e in notices)  # notifications: re-read the MES
        async with http.get(f"{url}/readyz") as resp:  # operators see it too
            report = await resp.json()
        assert report["status"] == "degraded" and "mqtt" in report["degraded"]
        assert {"WC-20", "WC-30"} <= set(report["mqtt"]["staleWorkCenters"]) and report["mqtt"]["connected"]


async def test_duplicates_are_applied_once(broker, plant, group):
    world = plant.world
    edge = Edge(group, world)
    async with mqtt_gateway(plant.url, world, url=broker, group=group) as (_url, gw), publisher() as pub:
        await born(pub, edge)
        down = edge.device("DDATA", "WC-20", Metric(None, 10, DataType.String, "DOWN"))
        await pub.publish(*down, qos=1)
        await pub.publish(*down, qos=1)  # a QoS 1 redelivery
        await until(lambda: gw.mqtt.stats.received == 4)
        await until(lambda: has_down(gw))
        await asyncio.sleep(0.2)  # a second copy, were it taken, would be journaled by now
        assert gw.mqtt.stats.duplicates == 1 and gw.mqtt.stats.gaps == 0
        downs = [e for e in await journal(gw) if "WorkCenter.Down" in e.type]
        assert len(downs) == 1
        # And a gateway that missed the session's memory (the same event id again) is
        # deduplicated by the journal: one record per source + id.
        again = await gw.ingress.accept_parsed([gw.registry.parse(_ce_of(downs[0]), system="mes")])
        assert again.duplicates == 1


def _ce_of(stored: Any) -> dict:
    return {"specversion": "1.0", "id": stored.event_id, "source": stored.source, "type": stored.type,
            "time": stored.occurred_at.isoformat(), "subject": stored.subject, "data": stored.data}


# --- reconnects ----------------------------------------------------------------------------


class Cable:
    """A TCP relay between the gateway and the broker that the test can cut."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(HOST, PORT)
        self.writers += [writer, up_w]

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            w.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    def cut(self) -> None:
        for w in self.writers:
            w.transport.abort()
        self.writers.clear()

    def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()


async def test_reconnect_after_the_connection_drops_and_after_a_restart(broker, plant, group):
    world = plant.world
    edge = Edge(group, world)
    cable = Cable()
    port = await cable.start()
    try:
        async with mqtt_gateway(plant.url, world, url=f"mqtt://127.0.0.1:{port}", group=group) as (_url, gw), \
                publisher() as pub, observing(f"spBv1.0/{group}/NCMD/#") as ncmd:
            await born(pub, edge)
            await until(lambda: gw.mqtt.stats.births == 2)
            cable.cut()
            await until(lambda: not gw.mqtt.connected.is_set(), what="the consumer noticing the cut")
            # Sent while the gateway was away: the broker keeps nothing for a clean session.
            await pub.publish(*edge.device("DDATA", "WC-20", state("DOWN", at=edge.at)), qos=1)
            await asyncio.wait_for(gw.mqtt.connected.wait(), 15)
            assert gw.mqtt.stats.connects == 2
            await pub.publish(*edge.device("DDATA", "WC-20", state("DOWN", at=edge.at)), qos=1)
            # The first message after the reconnect shows what was missed: a gap, a rebirth.
            await until(lambda: ncmd.rebirth_requests(), what="a rebirth request after the reconnect")
            assert gw.mqtt.stats.gaps == 1 and "WC-20" in gw.shop_floor_stale
            await born(pub, edge, value="DOWN")
            await until(lambda: "WC-20" not in gw.shop_floor_stale)

            async def live_noticed() -> bool:  # the stale and the live notice, journaled
                return len([e for e in await journal(gw) if e.event_id.startswith("spb-session:") and e.subject == "WC-20"]) >= 2

            await until(live_noticed, what="WC-20's live notice journaled")
            # A restarted consumer knows no session: the next DATA asks for a rebirth.
            seen = len(await states_of(gw, "WC-20"))
            await gw.mqtt.stop()
            gw.mqtt = ShopFloorConsumer(gw.config.mqtt, gw.ingress, gw.registry, gw.shop_floor_stale, plant_clock=world.now)
            gw.mqtt.start()
            await asyncio.wait_for(gw.mqtt.connected.wait(), 10)
            before = len(ncmd.rebirth_requests())
            await pub.publish(*edge.device("DDATA", "WC-20", state("RUNNING", at=edge.at)), qos=1)
            await until(lambda: len(ncmd.rebirth_requests()) > before, what="a rebirth request from the new consumer")
            await born(pub, edge, value="RUNNING")
            await until(lambda: gw.mqtt.stats.births == 2)
            # The birth restates the machine state to the new consumer: journaled again.
            await until(lambda: states_after(gw, "WC-20", seen), what="WC-20's state journaled after the restart")
    finally:
        cable.close()


async def states_of(gw: Any, wc: str) -> list[Any]:
    return [e for e in await journal(gw) if e.subject == wc and e.event_id.startswith("spb:")]


async def states_after(gw: Any, wc: str, seen: int) -> bool:
    return len(await states_of(gw, wc)) > seen


# --- bad messages ----------------------------------------------------------------------------


async def test_bad_payloads_are_refused_and_change_nothing(broker, plant, group):
    world = plant.world
    edge = Edge(group, world)
    async with mqtt_gateway(plant.url, world, url=broker, group=group) as (url, gw), publisher() as pub, \
            aiohttp.ClientSession() as http:
        await born(pub, edge)
        await until(lambda: gw.mqtt.stats.births == 2)
        await until(lambda: states_after(gw, "WC-20", 0), what="the birth's state journaled")
        before = await gw.journal.last_seq()
        await pub.publish(f"spBv1.0/{group}/DDATA/{edge.edge}/WC-20", b"\xff\xfe not protobuf", qos=1)
        await pub.publish(f"spBv1.0/{group}/XDATA/{edge.edge}", b"", qos=1)  # no such message type
        await pub.publish(f"spBv1.0/{group}/NBIRTH/other", Edge(group, world, "other").node("NDATA")[1], qos=1)  # no bdSeq
        await until(lambda: gw.mqtt.stats.bad == 3)
        assert await gw.journal.last_seq() == before and not gw.shop_floor_stale
        async with http.get(f"{url}/healthz") as resp:
            assert resp.status == 200
        # The session goes on: the next message in sequence is applied.
        await pub.publish(*edge.device("DDATA", "WC-20", Metric(None, 10, DataType.String, "DOWN")), qos=1)
        await until(lambda: has_down(gw))
        assert gw.mqtt.stats.gaps == 0


async def has_down(gw: Any) -> bool:
    return any(e.subject == "WC-20" and "WorkCenter.Down" in e.type for e in await journal(gw))


async def test_json_profile(broker, plant):
    world = plant.world
    prefix = f"og-test-{uuid.uuid4().hex[:12]}/shopfloor"
    async with mqtt_gateway(plant.url, world, url=broker, profile="json", json_prefix=prefix) as (_url, gw), \
            publisher() as pub:
        at = world.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        body = orjson.dumps({"id": "m-1", "state": "DOWN", "at": at, "reason": "spindle"})
        await pub.publish(f"{prefix}/1000/WC-20/state", body, qos=1)
        await pub.publish(f"{prefix}/1000/WC-20/state", body, qos=1)  # the same message id again
        await pub.publish(f"{prefix}/1000/WC-20/state", b"{not json", qos=1)
        await pub.publish(f"{prefix}/1000/WC-20/colour", b"{}", qos=1)
        await until(lambda: gw.mqtt.stats.received == 4)
        await until(lambda: has_down(gw))
        await asyncio.sleep(0.2)
        assert gw.mqtt.stats.bad == 2
        downs = [e for e in await journal(gw) if "WorkCenter.Down" in e.type]
        assert len(downs) == 1 and downs[0].event_id == "json:1000:WC-20:state:m-1"


# --- configuration ----------------------------------------------------------------------------


def test_mqtt_settings_are_checked(tmp_path):
    check_mqtt(MqttConfig(url="mqtts://broker.plant:8883", group="Plant1000"))
    for bad, why in [
        (MqttConfig(url="http://broker"), "not mqtt://"),
        (MqttConfig(url="mqtt://broker:99999"), "mqtt.url"),
        (MqttConfig(profile="opcua"), "mqtt.profile"),
        (MqttConfig(group="a/b"), "mqtt.group"),
        (MqttConfig(qos=3), "mqtt.qos"),
    ]:
        with pytest.raises(ConfigError, match=why):
            check_mqtt(bad)
    path = tmp_path / "og.toml"
    path.write_text('[mqtt]\nurl = "mqtt://127.0.0.1:1883"\nprofile = "json"\n[carriers]\naftership_secret = "s"\n')
    cfg = load_config(path, env={"ORDERGRAPH_MQTT_PASSWORD": "pw"})
    assert (cfg.mqtt.url, cfg.mqtt.profile, cfg.mqtt.password, cfg.carriers.aftership_secret) == (
        "mqtt://127.0.0.1:1883", "json", "pw", "s")
    path.write_text('[mqtt]\nprofile = "modbus"\n')
    with pytest.raises(ConfigError, match="mqtt.profile"):
        load_config(path, env={})


# --- TLS and credentials -------------------------------------------------------------------


def _tls_files(tmp: Any) -> tuple[str, str, str]:
    """A throwaway CA and a server certificate for 127.0.0.1 (PEM paths: ca, cert, key)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ordergraph test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(1).not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (tmp / "ca.pem", tmp / "server.pem", tmp / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return tuple(str(p) for p in paths)  # type: ignore[return-value]


def _start_tls_mosquitto(tmp: Any) -> tuple[Any, int, str] | str:
    """Our own Mosquitto: TLS on a free port, one user (ordergraph / s3cret); the process,
    its port and the CA file, or why it cannot run."""
    import getpass
    import shutil
    import subprocess

    from .servers import free_socket

    mosquitto = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    passwd = shutil.which("mosquitto_passwd")
    if not mosquitto or not passwd:
        return "the TLS test starts its own Mosquitto: mosquitto and mosquitto_passwd are not installed"
    ca, cert, key = _tls_files(tmp)
    users = tmp / "passwd"
    subprocess.run([passwd, "-c", "-b", str(users), "ordergraph", "s3cret"], check=True, capture_output=True)
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
        f"allow_anonymous false\npassword_file {users}\npersistence false\n"
        # Run as root, Mosquitto would switch to its own user, who cannot read our temp dir.
        f"user {getpass.getuser()}\n"
    )
    proc = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, port, ca


@pytest.fixture
async def tls_broker(tmp_path):
    started = _start_tls_mosquitto(tmp_path)
    if isinstance(started, str):
        pytest.skip(started)
    proc, port, ca = started
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                _r, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                break
            await asyncio.sleep(0.05)
        else:
            pytest.skip("our own Mosquitto (TLS) did not start")
        yield port, ca
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 5)


async def test_tls_and_credentials(tls_broker, plant, group):
    port, ca = tls_broker
    world = plant.world
    edge = Edge(group, world)
    url = f"mqtts://127.0.0.1:{port}"
    async with mqtt_gateway(plant.url, world, url=url, group=group, tls_ca_file=ca, username="ordergraph",
                            password="s3cret") as (_url, gw):
        import ssl

        ctx = ssl.create_default_context(cafile=ca)
        async with aiomqtt.Client("127.0.0.1", port, username="ordergraph", password="s3cret", tls_context=ctx) as pub:
            await born(pub, edge)
            await pub.publish(*edge.device("DDATA", "WC-20", Metric(None, 10, DataType.String, "DOWN")), qos=1)
            await until(lambda: has_down(gw), what="a state over TLS journaled")

    # A wrong password is refused by the broker: the consumer keeps trying, never connected.
    cfg = Config.for_plant(plant.url)
    cfg.events.journal_path = ":memory:"
    cfg.auth = AuthConfig(mode="open")
    cfg.mqtt = MqttConfig(url=url, group=group, tls_ca_file=ca, username="ordergraph", password="wrong",
                          reconnect_min_seconds=0.1)
    app = create_app(cfg, domain_clock=world.now)
    async with serve_asgi(app):
        gw = app.state.gateway
        await asyncio.sleep(1.0)
        assert not gw.mqtt.connected.is_set() and gw.mqtt.stats.connects == 0


def test_demo_mqtt_without_a_broker_is_one_line(capsys):
    from gateway.cli import main

    assert main(["demo", "--mqtt", "mqtt://127.0.0.1:1", "--port", "0", "--plant-port", "0", "--no-assets"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no MQTT broker answers on 127.0.0.1:1" in err[0]
    assert main(["demo", "--mqtt", "http://broker", "--port", "0", "--plant-port", "0", "--no-assets"]) == 1
    assert "mqtt.url" in capsys.readouterr().err

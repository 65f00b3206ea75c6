"""The shop floor over MQTT, measured: ingestion to the journal and message-to-subscriber latency.

``python -m bench.mqtt [--broker mqtt://127.0.0.1:1883] [--quick]`` starts, each as its own
OS process, the simulated plant (``bench.plant``), the gateway (``ordergraph serve`` with
``[mqtt]`` on a fresh Sparkplug group id) and, for the latency part, subscriber processes
(``bench.subs``). This process plays the plant's Sparkplug edge node on the real broker.

1. **Ingestion** — after NBIRTH and one DBIRTH per work centre, ``--messages`` DDATA
   messages, each a new good-parts count of one production order (one MES event each), are
   published with QoS 1 as fast as the broker takes them. Messages per second = messages /
   (first publish → the last of their events durable in the gateway's journal, read from
   its SQLite file).
2. **Latency** — ``--subscribers`` WebSocket clients subscribe to ``orderChanges`` of the
   plant's customers (round-robin). Then, each for ``--seconds``, evenly spread:
   ``--rate`` DDATA messages per second, each a good-parts count of one open production
   order (one order changes: the figure to hold against the goal); the same rate of signed
   CloudEvents to ``POST /events`` for the same orders (the pushed-event path, as the
   reference of this run); and ``--state-rate`` DDATA messages per second taking a work
   centre down or up (every open order on it changes: a fan-out of a hundred or more orders
   per message). Latency is the subscriber's clock at arrival minus the change's
   ``occurredAt``: the timestamp (milliseconds) the message was stamped with as it went out.
   Before each part the gateway has processed everything journaled so far.

It prints the figures and writes them as JSON to ``--out`` (default
``bench/results/mqtt-<date>.json``). Goal: p99 ≤ 100 ms at 1,000 subscribers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import aiomqtt

from sources.sparkplug import DataType, Metric, Payload, encode_payload

from . import procs
from .ingest import sales_order_event, signed_request
from .loadgen import percentile
from .procs import ROOT, child_env, free_port, read_subscriber_client, spawn

WORK_CENTERS = [f"WC-{n}0" for n in range(1, 9)]


def say(message: str) -> None:
    print(f"[bench.mqtt {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Edge:
    """This process as a Sparkplug edge node: one device per work centre."""

    def __init__(self, client: aiomqtt.Client, group: str, node: str = "bench-edge") -> None:
        self.client, self.group, self.node = client, group, node
        self.seq = -1

    def _seq(self) -> int:
        self.seq = (self.seq + 1) % 256
        return self.seq

    def topic(self, kind: str, device: str | None = None) -> str:
        return f"spBv1.0/{self.group}/{kind}/{self.node}" + (f"/{device}" if device else "")

    def payload(self, metrics: list[Metric], at: dt.datetime | None = None) -> bytes:
        return encode_payload(Payload(at or dt.datetime.now(dt.UTC), metrics, seq=self._seq()))

    async def births(self, orders: dict[str, str]) -> None:
        self.seq = -1
        node = [Metric("bdSeq", None, DataType.Int64, 0), Metric("Node Control/Rebirth", 0, DataType.Boolean, False)]
        await self.client.publish(self.topic("NBIRTH"), self.payload(node), qos=1)
        for wc in WORK_CENTERS:
            metrics = [Metric("State", 1, DataType.String, "RUNNING")]
            if wc in orders:
                metrics += [
                    Metric("Order/ManufacturingOrder", 2, DataType.String, orders[wc]),
                    Metric("Counts/Good", 3, DataType.UInt64, 0),
                ]
            await self.client.publish(self.topic("DBIRTH", wc), self.payload(metrics), qos=1)


def journal_count(path: Path, like: str) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        return db.execute("SELECT count(*) FROM events WHERE event_id LIKE ?", (like,)).fetchone()[0]


def unprocessed(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        return db.execute("SELECT count(*) FROM events WHERE processed = 0").fetchone()[0]


async def settle(path: Path, timeout: float = 600.0) -> float:
    """Wait until the gateway has processed every journaled event; returns the seconds waited."""
    t0 = time.monotonic()
    while await asyncio.to_thread(unprocessed, path):
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"the gateway still has unprocessed events after {timeout:.0f} s")
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # the last changes' pushes
    return time.monotonic() - t0


async def wait_count(path: Path, like: str, want: int, timeout: float = 300.0) -> float:
    """Monotonic time at which the journal holds ``want`` events like ``like``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(journal_count, path, like) >= want:
            return time.monotonic()
        await asyncio.sleep(0.01)
    raise RuntimeError(f"the journal did not reach {want} events like {like!r} in {timeout:.0f} s")


async def plant_data(http: aiohttp.ClientSession, plant: str) -> tuple[dict[str, str], dict[str, str], list[tuple[str, str, str]]]:
    """(an open production order per work centre, customer of each sales order, open
    production orders with their work centre: one per customer first)."""

    async def every(path: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        token = None
        while True:
            async with http.get(f"{plant}{path}?$top=1000" + (f"&$skiptoken={token}" if token else "")) as resp:
                page = await resp.json()
            out += page["value"]
            token = page.get("nextSkipToken")
            if not token or not page["value"]:
                return out

    customers = {so["SalesOrder"]: so["SoldToParty"] for so in await every("/erp/A_SalesOrder")}
    orders: dict[str, str] = {}
    first: dict[str, tuple[str, str]] = {}
    for po in await every("/mes/A_ProductionOrder"):
        if po.get("OrderStatus", "") not in ("CONFIRMED", "DELIVERED", "TECO", "CLOSED"):
            orders.setdefault(po["WorkCenter"], po["ManufacturingOrder"])
            first.setdefault(customers.get(po["SalesOrder"], ""), (po["WorkCenter"], po["ManufacturingOrder"], po["SalesOrder"]))
    return orders, customers, list(first.values())


async def run(args: argparse.Namespace) -> dict[str, Any]:
    broker = urlsplit(args.broker)
    host, port = broker.hostname or "127.0.0.1", broker.port or 1883
    group = f"bench-{uuid.uuid4().hex[:10]}"
    work = Path(tempfile.mkdtemp(prefix="ordergraph-bench-mqtt-"))
    plant_port, gw_port = free_port(), free_port()
    plant_url, gw_url = f"http://127.0.0.1:{plant_port}", f"http://127.0.0.1:{gw_port}"
    journal = work / "journal.sqlite"
    plant = spawn("plant", [sys.executable, "-m", "bench.plant", "--port", str(plant_port), "--orders", str(args.orders),
                            "--latency-ms", str(args.latency_ms)], plant_url, work, cwd=ROOT)
    config = work / "gateway.toml"
    lines = ["[gateway]", 'host = "127.0.0.1"', f"port = {gw_port}", "graphiql = false", "",
             "[events]", f'journal_path = "{journal}"', "",
             "[auth]", 'mode = "open"', "",
             "[limits]", "max_cost = 1000000000", "rate_per_second = 0", "connections_per_viewer = 1000000", "",
             "[mqtt]", f'url = "{args.broker}"', f'group = "{group}"', ""]
    lines += [line for s in ("erp", "mes", "wms", "qms", "tms") for line in (f"[sources.{s}]", f'base_url = "{plant_url}/{s}"', "max_connections = 100", "")]
    config.write_text("\n".join(lines))
    gateway = None
    result: dict[str, Any] = {"broker": args.broker, "orders": args.orders, "latency_ms_per_source_call": args.latency_ms}
    try:
        await plant.wait_ready("/erp/A_SalesOrder?$top=1")
        gateway = spawn("gateway", [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)], gw_url, work, cwd=ROOT)
        await gateway.wait_ready()
        await asyncio.sleep(3.0)  # the exception tracker's first pass over every order
        async with aiohttp.ClientSession() as http, aiomqtt.Client(host, port, identifier=f"{group}-edge", max_inflight_messages=100) as client:
            po_of, customer_of, targets = await plant_data(http, plant_url)
            edge = Edge(client, group)
            await edge.births(po_of)
            await wait_count(journal, "spb:%", 1, timeout=30)  # the births' state restated

            # 1. ingestion: good-parts counts of one production order, as fast as they go
            wc = next(w for w in WORK_CENTERS if w in po_of)
            n = args.messages
            base = await asyncio.to_thread(journal_count, journal, "spb:%:counts")
            say(f"ingestion: {n} DDATA count messages (QoS 1) on {wc}")
            t0 = time.monotonic()
            window: list[Any] = []
            for i in range(n):
                body = edge.payload([Metric(None, 3, DataType.UInt64, i + 1)])
                window.append(client.publish(edge.topic("DDATA", wc), body, qos=1))
                if len(window) >= 100:
                    await asyncio.gather(*window)
                    window = []
            await asyncio.gather(*window)
            t_published = time.monotonic()
            t_done = await wait_count(journal, "spb:%:counts", base + n)
            result["ingestion"] = {
                "messages": n,
                "published_per_second": round(n / (t_published - t0), 1),
                "journaled_per_second": round(n / (t_done - t0), 1),
                "seconds": round(t_done - t0, 2),
            }
            say(f"   {result['ingestion']['journaled_per_second']} messages/s to the journal "
                f"(publisher: {result['ingestion']['published_per_second']} messages/s)")
            # Before measuring latency, the processor works through the counts (each looks
            # up its sales order and pushes): the figure of processing, not of ingestion.
            processed_s = await settle(journal)
            result["ingestion"]["processed_per_second"] = round(n / (time.monotonic() - t0), 1)
            say(f"   all {n} processed {processed_s:.1f} s after the last was journaled")

            # 2. latency at N subscribers: counts (one order per message), then machine state
            # (every open order on the work centre per message)
            customers = sorted(set(customer_of.values()))
            result["latency"] = await latency(args, edge, gw_url, work, customers, "counts", targets)
            await settle(journal)
            # The same orders' changes as signed CloudEvents to POST /events, same rate: the
            # reference the MQTT path is compared with in this run.
            result["latency_pushed_events"] = await latency(args, edge, gw_url, work, customers, "events", targets, http)
            await settle(journal)
            result["latency_machine_state"] = await latency(args, edge, gw_url, work, customers, "state", targets)
    finally:
        if gateway is not None:
            gateway.stop()
        plant.stop()
    result["work_dir"] = str(work)
    return result


async def latency(
    args: argparse.Namespace, edge: Edge, gw_url: str, work: Path, customers: list[str], kind: str,
    targets: list[tuple[str, str, str]], http: aiohttp.ClientSession | None = None,
) -> dict[str, Any]:
    n = args.subscribers
    per_process = 500
    procs_n = max(1, -(-n // per_process))
    ws_url = gw_url.replace("http://", "ws://") + "/graphql"
    what = {
        "counts": "MQTT good-parts counts of one order",
        "events": "signed CloudEvents (POST /events) of one order",
        "state": "MQTT work-centre state changes (all its open orders)",
    }[kind]
    rate = args.state_rate if kind == "state" else args.rate
    say(f"latency ({kind}): {n} subscribers in {procs_n} processes, {rate:g} {what} per second for {args.seconds:g} s")
    clients = []
    for i in range(procs_n):
        count = n // procs_n + (1 if i < n % procs_n else 0)
        offset = sum(n // procs_n + (1 if j < n % procs_n else 0) for j in range(i))
        p = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.subs", "--url", ws_url, "--count", str(count), "--customers", ",".join(customers),
            "--offset", str(offset), "--init", "{}", "--result", str(work / f"subs-{kind}-{i}.json"),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=str(ROOT), env=child_env(),
        )
        clients.append({"proc": p, "count": 0, "ready": None, "result": None, "file": work / f"subs-{kind}-{i}.json"})

    readers = [asyncio.create_task(read_subscriber_client(c)) for c in clients]
    await procs.subscribers_ready(clients)
    connected = sum(c["ready"][0] for c in clients)
    await asyncio.sleep(1.0)
    since = time.time()
    for c in clients:
        c["proc"].stdin.write(f"START {since}\n".encode())
        await c["proc"].stdin.drain()
    down: set[str] = set()
    sent = 0
    t_end = time.time() + args.seconds
    k = 0
    t0 = time.monotonic()
    while time.time() < t_end:
        # Evenly spread; each message stamped with the wall clock as it goes out.
        await asyncio.sleep(max(0.0, t0 + k / rate - time.monotonic()))
        at = dt.datetime.now(dt.UTC)
        if kind == "events":
            so = targets[k % len(targets)][2]
            body, headers = signed_request([sales_order_event(so, f"bench-mqtt-ref-{k}", at)])
            async with http.post(gw_url + "/events", data=body, headers=headers) as resp:
                await resp.read()
            k += 1
            sent += 1
            continue
        if kind == "counts":
            wc, mo, _so = targets[k % len(targets)]
            metrics = [Metric(None, 2, DataType.String, mo, timestamp=at), Metric(None, 3, DataType.UInt64, 1000 + k, timestamp=at)]
        else:
            wc = WORK_CENTERS[k % len(WORK_CENTERS)]
            metrics = [Metric(None, 1, DataType.String, "RUNNING" if wc in down else "DOWN", timestamp=at)]
            down.symmetric_difference_update({wc})
        k += 1
        await edge.client.publish(edge.topic("DDATA", wc), edge.payload(metrics, at), qos=1)
        sent += 1
    # drain: until nothing arrives for a while
    last, still = -1, time.monotonic()
    while time.monotonic() - still < 5:
        got = sum(c["count"] for c in clients)
        if got != last:
            last, still = got, time.monotonic()
        await asyncio.sleep(0.2)
    await procs.stop_subscriber_clients(clients, readers)
    latencies = sorted(x for c in clients for x in (c["result"] or {}).get("latencies_ms", []))
    row = {
        "kind": kind,
        "rate_per_second": rate,
        "subscribers": n,
        "connected": connected,
        "messages": sent,
        "delivered": len(latencies),
        "errors": sum((c["result"] or {}).get("errors", 0) for c in clients),
        "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 99), 1) if latencies else None,
        "max_ms": round(latencies[-1], 1) if latencies else None,
    }
    say(f"   {row['delivered']} pushes from {sent} messages; message -> subscriber p50 {row['p50_ms']} ms, "
        f"p99 {row['p99_ms']} ms (goal p99 ≤ 100 ms)")
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.mqtt", description=__doc__.split("\n\n")[0])
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="MQTT broker (default mqtt://127.0.0.1:1883)")
    p.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    p.add_argument("--messages", type=int, default=None, help="ingestion messages (default 5000; --quick 500)")
    p.add_argument("--subscribers", type=int, default=None, help="WebSocket subscribers (default 1000; --quick 100)")
    p.add_argument("--rate", type=float, default=10.0, help="count messages (and reference events) per second (default 10)")
    p.add_argument("--state-rate", type=float, default=1.0, help="work-centre state changes per second (default 1)")
    p.add_argument("--seconds", type=float, default=None, help="length of the latency part (default 20 s; --quick 5)")
    p.add_argument("--orders", type=int, default=1000, help="sales orders in the plant (default 1000)")
    p.add_argument("--latency-ms", type=float, default=3.0, help="per-call latency of each source (default 3 ms)")
    p.add_argument("--out", type=Path, default=None, help="JSON result file (default bench/results/mqtt-<time>.json)")
    args = p.parse_args(argv)
    logging.getLogger("mqtt").setLevel(logging.ERROR)  # aiomqtt's note per queued publish
    args.messages = args.messages or (500 if args.quick else 5000)
    args.subscribers = args.subscribers or (100 if args.quick else 1000)
    args.seconds = args.seconds or (5.0 if args.quick else 20.0)
    result = asyncio.run(run(args))
    out = args.out or ROOT / "bench" / "results" / f"mqtt-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    say(f"results: {out}")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

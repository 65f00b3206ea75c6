"""Reconciliation polling, measured: ``python -m bench.reconcile [--quick] [--minutes M]``.

Two scenarios, each with the simulated plant in this process (its clock at the wall
clock's pace, starting now, as a real source's) and the gateway in its own process
(``ordergraph serve``), and the results as markdown (``bench/results/reconcile-*.md``):

1. **Poll latency.** The ERP pushes nothing (its webhooks are muted) and is read as SAP
   S/4HANA over OData (``profile = "sap-odata"``), polled every 5 s. One by one, a sales
   order changes in the ERP (an order's goods issue); a real WebSocket subscriber of
   ``orderChanges`` notes when the gateway tells it. Latency = that moment − the change.
   It must stay within the poll interval + 1 s (p99).
2. **Lost webhooks.** Every system pushes, but 10 % of its webhooks are lost for good
   (besides the plant's usual duplicates, reordering and notification-only events), while
   orders move at a steady rate for the run. Every source has a reconciliation sweep
   (``poll_seconds`` = the sweep interval). After the run, and one sweep, a change counts
   as lost when a record's newest change at the source is newer than the newest change
   the gateway applied for it (the journal's per-record watermark). It must be 0. The
   same run without the sweep shows what the webhooks alone lose.

Changes of one record are kept at least 1.5 s apart: the plant stamps LastChangeDateTime
in whole seconds (as the REST contract renders it), and two changes of one record in one
second cannot be told apart by any poll.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import random
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from . import procs
from .loadgen import percentile
from .procs import free_port, spawn

BENCH_DIR = Path(__file__).resolve().parent
SYSTEMS = ("erp", "mes", "wms", "qms", "tms")
SUBSCRIPTION = "subscription { orderChanges { eventType order { id } } }"


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Bench:
    def __init__(self, args: argparse.Namespace, run_dir: Path) -> None:
        self.args = args
        self.run_dir = run_dir
        self.log_dir = run_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.sim: Any = None
        self.gateway: procs.Proc | None = None
        self.starts = 0

    async def start_plant(self) -> None:
        from sources.simulator.app import start_simulator

        start = dt.datetime.now(dt.UTC).replace(microsecond=0)
        self.sim = await start_simulator("127.0.0.1", 0, orders=self.args.orders, latency_ms=self.args.latency_ms, start=start)
        say(f"plant up at {self.sim.url} ({self.args.orders} orders, {self.args.latency_ms:g} ms per call)")

    def config(self, sources: dict[str, dict[str, Any]]) -> tuple[Path, Path, int]:
        self.starts += 1
        port = free_port()
        journal = self.run_dir / f"journal-{self.starts}.sqlite"
        lines = ["[gateway]", 'host = "127.0.0.1"', f"port = {port}", "graphiql = false", "",
                 "[auth]", 'mode = "open"', "", "[events]", f'journal_path = "{journal}"', ""]
        for s in SYSTEMS:
            lines += [f"[sources.{s}]"]
            for k, v in {"base_url": f"{self.sim.url}/{s}", **sources.get(s, {})}.items():
                lines.append(f"{k} = {json.dumps(v)}")
            lines.append("")
        path = self.run_dir / f"gateway-{self.starts}.toml"
        path.write_text("\n".join(lines))
        return path, journal, port

    async def start_gateway(self, sources: dict[str, dict[str, Any]]) -> Path:
        config, journal, port = self.config(sources)
        self.gateway = spawn(
            f"gateway-{self.starts}", [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
            f"http://127.0.0.1:{port}", self.log_dir, cwd=procs.SOURCE,
        )
        await self.gateway.wait_ready()
        async with aiohttp.ClientSession() as http:  # the start-up evaluation of every order
            for _ in range(600):
                async with http.get(self.gateway.url + "/readyz") as resp:
                    if resp.status == 200:
                        break
                await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)
        return journal

    def stop_gateway(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None

    # --- 1. poll latency ---------------------------------------------------------------------

    async def poll_latency(self) -> dict[str, Any]:
        interval = self.args.poll_seconds
        say(f"1/2 poll latency: ERP pushes off, read over OData, polled every {interval:g} s; {self.args.samples} changes")
        from gateway.config import DEV_SECRETS
        from sources.simulator.emitter import EventEmitter

        await self.start_gateway({"erp": {"profile": "sap-odata", "base_url": self.sim.sap_url(), "pushes": False, "poll_seconds": interval}})
        assert self.gateway is not None
        emitter = EventEmitter(self.sim.world, self.gateway.url, DEV_SECRETS, muted={"erp"})
        emitter.start()
        changed_at: dict[str, float] = {}
        latencies: list[float] = []
        done = asyncio.Event()
        rng = random.Random(11)
        async with aiohttp.ClientSession() as http, http.ws_connect(
            self.gateway.url.replace("http", "ws") + "/graphql", protocols=("graphql-transport-ws",)
        ) as ws:
            await ws.send_json({"type": "connection_init", "payload": {}})
            assert (await ws.receive_json(timeout=10))["type"] == "connection_ack"
            await ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIPTION}})

            async def read() -> None:
                async for msg in ws:
                    data = json.loads(msg.data)
                    if data.get("type") != "next":
                        continue
                    change = data["payload"]["data"]["orderChanges"]
                    so = change["order"]["id"] if change.get("order") else None
                    if ".salesorder." in change["eventType"].lower() and so in changed_at:
                        latencies.append(time.monotonic() - changed_at.pop(so))
                        if len(latencies) >= self.args.samples:
                            done.set()

            reader = asyncio.create_task(read())
            await asyncio.sleep(1.0)
            # Orders whose next step changes the sales order: goods issue (PACKED), the
            # delivery created after quality (QUALITY_RELEASED), proof of delivery
            # (OUT_FOR_DELIVERY). Their changes of other systems are pushed as usual.
            world = self.sim.world
            candidates = [o for st in ("PACKED", "QUALITY_RELEASED", "OUT_FOR_DELIVERY") for o in world.orders_in_state(st)]
            rng.shuffle(candidates)
            triggered = 0
            while triggered < self.args.samples and candidates:
                so = candidates.pop()
                changes = self.sim.world.advance_order(so)
                if not any(c.entity_set == "A_SalesOrder" and c.key == so for c in changes):
                    continue
                changed_at[so] = time.monotonic()
                triggered += 1
                # Spread the changes over the poll cycle (uniform phase), a few per cycle.
                await asyncio.sleep(rng.uniform(0.2, interval / 2))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=interval * 3 + 10)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        await emitter.close()
        self.stop_gateway()
        lat = sorted(latencies)
        result = {
            "poll_seconds": interval,
            "changes": triggered,
            "delivered": len(lat),
            "p50": percentile(lat, 50),
            "p99": percentile(lat, 99),
            "max": lat[-1] if lat else None,
            "bound": interval + 1.0,
        }
        result["within_bound"] = bool(lat) and result["p99"] <= result["bound"] and len(lat) == triggered
        say(f"   {len(lat)}/{triggered} delivered; p50 {result['p50']:.2f} s, p99 {result['p99']:.2f} s, max {result['max'] or 0:.2f} s "
            f"(bound {result['bound']:g} s)")
        return result

    # --- 2. lost webhooks --------------------------------------------------------------------

    async def lost_webhooks(self, *, sweep: bool) -> dict[str, Any]:
        minutes = self.args.minutes if sweep else self.args.baseline_minutes
        label = f"sweep every {self.args.sweep_seconds:g} s" if sweep else "no sweep"
        say(f"2/2 lost webhooks ({self.args.drop_rate:.0%} dropped), {minutes:g} min at {self.args.rate:g} changes/s, {label}")
        from gateway.config import DEV_SECRETS
        from sources.simulator.emitter import EventEmitter

        settings = {s: {"poll_seconds": self.args.sweep_seconds} for s in SYSTEMS} if sweep else {}
        journal = await self.start_gateway(settings)
        assert self.gateway is not None
        world = self.sim.world
        emitter = EventEmitter(world, self.gateway.url, DEV_SECRETS, drop_rate=self.args.drop_rate, seed=17 if sweep else 18)
        emitter.start()
        started = world.now()
        rng = random.Random(23 if sweep else 24)
        orders = [o for o in world.sales_orders if world.state_of(o) not in ("DELIVERED",)]
        last_touched: dict[str, float] = {}
        changes = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < minutes * 60 and orders:
            due = self.args.rate * (time.monotonic() - t0)
            while changes < due and orders:
                so = rng.choice(orders)
                if time.monotonic() - last_touched.get(so, -10.0) < 1.5:
                    continue  # the same records change again only in a later second
                moved = world.advance_order(so)
                if not moved:
                    orders.remove(so)
                    continue
                for c in moved:
                    if c.sales_order:
                        last_touched[c.sales_order] = time.monotonic()
                changes += len(moved)
            await asyncio.sleep(0.05)
        with contextlib.suppress(TimeoutError):
            await emitter.flush(timeout=60)
        stats = emitter.stats
        await emitter.close()
        # One sweep after the last change (and its processing) before counting.
        await asyncio.sleep((self.args.sweep_seconds + 5.0) if sweep else 5.0)
        self.stop_gateway()
        lost, checked, by_system = self.count_lost(journal, started)
        result = {
            "sweep_seconds": self.args.sweep_seconds if sweep else None,
            "minutes": minutes,
            "world_changes": changes,
            "webhooks_sent": stats.sent,
            "webhooks_dropped": stats.dropped,
            "records_changed": checked,
            "lost": lost,
            "lost_by_system": by_system,
            "healed_by_sweep": self.count_polled(journal) if sweep else 0,
        }
        say(f"   {changes} changes, {stats.dropped} webhooks dropped; {checked} records changed, {lost} lost"
            + (f", {result['healed_by_sweep']} healed by the sweep" if sweep else ""))
        return result

    def count_lost(self, journal: Path, since: dt.datetime) -> tuple[int, int, dict[str, int]]:
        """Records changed at the source since ``since`` whose newest change the gateway did
        not apply (journal watermark older than the record's LastChangeDateTime)."""
        from sources import event_registry

        entity_of = {t.record_type.ENTITY_SET: (t.system, t.entity) for t in event_registry().types() if t.record_type is not None}
        con = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
        try:
            marks = {(s, e, k): us for s, e, k, us in con.execute("SELECT source, entity, key, occurred_at FROM watermarks")}
        finally:
            con.close()
        lost = checked = 0
        by_system: dict[str, int] = {}
        for entity_set, (system, entity) in entity_of.items():
            table = self.sim.world.table(entity_set)
            for record in table.records():
                changed = getattr(record, "last_change_date_time", None)
                if changed is None or changed < since:
                    continue
                checked += 1
                mark = marks.get((system, entity, record.key))
                changed_us = int(changed.timestamp() * 1_000_000)
                if mark is None or mark < changed_us:
                    lost += 1
                    by_system[system] = by_system.get(system, 0) + 1
        return lost, checked, by_system

    @staticmethod
    def count_polled(journal: Path) -> int:
        con = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
        try:
            return con.execute("SELECT COUNT(*) FROM events WHERE event_id LIKE 'poll:%' AND stale = 0").fetchone()[0]
        finally:
            con.close()


def markdown(results: dict[str, Any]) -> str:
    m = results["meta"]
    lines = [
        f"Reconciliation polling — {m['mode']} run, {m['date']}, {m['orders']} orders, {m['latency_ms']:g} ms per source call",
        "",
    ]
    p = results.get("poll_latency")
    if p:
        lines += [
            "| ERP pushes off, OData polled every | changes | delivered | p50 | p99 | max | bound (interval + 1 s) | within |",
            "|---|---|---|---|---|---|---|---|",
            f"| {p['poll_seconds']:g} s | {p['changes']} | {p['delivered']} | {p['p50']:.2f} s | {p['p99']:.2f} s "
            f"| {(p['max'] or 0):.2f} s | {p['bound']:g} s | {'yes' if p['within_bound'] else 'NO'} |",
            "",
        ]
    rows = [r for r in (results.get("lost_without_sweep"), results.get("lost_with_sweep")) if r]
    if rows:
        lines += [
            "| 10 % of webhooks lost, run | sweep | world changes | webhooks dropped | records changed | lost at the end | healed by the sweep |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            sweep = f"every {r['sweep_seconds']:g} s" if r["sweep_seconds"] else "off"
            lost = f"{r['lost']}" + (f" ({', '.join(f'{k} {v}' for k, v in sorted(r['lost_by_system'].items()))})" if r["lost"] else "")
            lines.append(
                f"| {r['minutes']:g} min | {sweep} | {r['world_changes']} | {r['webhooks_dropped']} | {r['records_changed']} "
                f"| {lost} | {r['healed_by_sweep']} |"
            )
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.reconcile", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short runs (about four minutes in all; full: about 17)")
    p.add_argument("--orders", type=int, default=2000, help="sales orders in the plant (default 2000)")
    p.add_argument("--latency-ms", type=float, default=20.0, help="per-call latency of every source (default 20 ms)")
    p.add_argument("--poll-seconds", type=float, default=5.0, help="ERP poll interval of scenario 1 (default 5)")
    p.add_argument("--samples", type=int, help="changes measured in scenario 1 (default 100; quick 40)")
    p.add_argument("--minutes", type=float, help="length of each lost-webhook run (default 10; quick 1)")
    p.add_argument("--baseline-minutes", type=float, help="length of the run without a sweep (default 2; quick 1)")
    p.add_argument("--rate", type=float, default=4.0, help="world changes per second in scenario 2 (default 4)")
    p.add_argument("--drop-rate", type=float, default=0.1, help="share of webhooks lost (default 0.1)")
    p.add_argument("--sweep-seconds", type=float, help="sweep interval of every source in scenario 2 (default 60; quick 15)")
    p.add_argument("--only", default="latency,lost", help="comma-separated: latency, lost (default both)")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results", help="results directory (default bench/results)")
    args = p.parse_args(argv)
    args.samples = args.samples or (40 if args.quick else 100)
    args.minutes = args.minutes if args.minutes is not None else (1.0 if args.quick else 10.0)
    args.baseline_minutes = args.baseline_minutes if args.baseline_minutes is not None else (1.0 if args.quick else 2.0)
    args.sweep_seconds = args.sweep_seconds or (15.0 if args.quick else 60.0)
    return args


async def amain(args: argparse.Namespace) -> int:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = args.out / f"reconcile-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    bench = Bench(args, run_dir)
    only = set(args.only.split(","))
    results: dict[str, Any] = {"meta": {"mode": "quick" if args.quick else "full", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                        "orders": args.orders, "latency_ms": args.latency_ms}}
    try:
        await bench.start_plant()
        if "latency" in only:
            results["poll_latency"] = await bench.poll_latency()
        if "lost" in only:
            results["lost_without_sweep"] = await bench.lost_webhooks(sweep=False)
            results["lost_with_sweep"] = await bench.lost_webhooks(sweep=True)
    finally:
        bench.stop_gateway()
        if bench.sim is not None:
            await bench.sim.close()
    (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    table = markdown(results)
    (args.out / f"reconcile-{stamp}.md").write_text(table)
    print()
    print(table)
    ok = results.get("poll_latency", {}).get("within_bound", True) and results.get("lost_with_sweep", {}).get("lost", 0) == 0
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(amain(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())

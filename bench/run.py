"""The benchmark harness: ``python -m bench [--quick] [--out DIR]``.

One run starts the simulated plant, the gateway (under uvicorn) and the Node peer, each in
its own process, drives them with load generators in their own processes, and writes a
markdown table and a JSON file to ``bench/results/``. See ``bench/README.md``.

Scenarios (each figure is measured for ordergraph and the peer in the same run, and
reported as a ratio, because shared machines are noisy):

1. upstream calls per query, 1/10/50/200 orders × (ERP fields only, every section);
2. latency p50/p99 of one order's full view and of a 50-order page, against the critical
   path (resolution levels × one source call's latency);
3. throughput at fixed concurrency: where-is-my-order, a 50-order dashboard page, one
   customer's orders — with a cold cache, and with the warm, event-invalidated cache while
   the plant sends events at a set rate;
4. subscriptions: N real WebSocket subscribers from separate processes, events injected at
   a set rate: event-to-client latency, memory per connection, delivered vs expected;
5. event ingestion: signed events per second accepted durably (HTTP 202);
6. under attack: a hostile viewer sends new, expensive documents at its rate limit while
   the normal workloads run; their p50 and p99 as ratios to the same workloads unloaded;
7. tracing: throughput with OpenTelemetry tracing on (OTLP/HTTP export) as a ratio to off.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from . import procs, report
from . import queries as Q
from .ingest import sales_order_event, signed_request
from .loadgen import have_wrk, percentile, run_load
from .procs import (
    CpuMeter,
    Proc,
    child_env,
    free_port,
    machine,
    raise_fd_limit,
    read_subscriber_client,
    spawn,
)

BENCH_DIR = Path(__file__).resolve().parent
PEER_DIR = BENCH_DIR / "peer"
DEFAULT_OUT = BENCH_DIR / "results"
SYSTEMS = ("erp", "mes", "wms", "qms", "tms")
SCENARIOS = ("upstream", "latency", "throughput", "subscriptions", "ingestion", "attack", "tracing")
# Run only when asked (--only): the soak takes ten minutes, scaleout needs Redis.
EXTRA_SCENARIOS = ("soak", "scaleout", "apply")
LEVELS = 3  # resolution levels of the full view and of a page: ERP → MES+WMS → MES+WMS+QMS+TMS
# Upstream calls the batched ideal makes: one per source and resolution level.
IDEAL_CALLS = {"erp": {"erp": 1}, "all": {"erp": 2, "mes": 2, "wms": 2, "qms": 1, "tms": 1}}
SUBSCRIBERS_PER_PROCESS = 2500
ATTACK_SECRET = "bench-attack-hs256-secret-not-for-production"  # the hostile viewer's tokens
ATTACK_RATE = 50.0  # the hostile viewer's requests per second: the default per-viewer rate limit
# Response-cache TTLs of the cached peers in the warm runs (seconds): what a team adds to yoga.
PEER_CACHE_TTLS = (5, 60)


@dataclasses.dataclass(frozen=True)

class Size:
    """How big a run is."""

    name: str
    orders: int  # sales orders in the plant
    counts: tuple[int, ...]  # orders per query in the upstream-calls table
    latency_seconds: float
    throughput_seconds: float
    warmup_seconds: float
    concurrency: int  # for one order; the 50-order workloads use half
    rounds: int  # each measurement alternates ordergraph and the peer this many times
    event_rate: float  # world changes per second during the warm-cache runs
    subscribers: tuple[int, ...]
    sub_event_rate: float  # events per second injected for the subscribers
    sub_seconds: float
    ingest_seconds: float
    hot_orders: int  # orders the throughput runs read (and the events touch)


SIZES = {
    "full": Size("full", 2000, (1, 10, 50, 200), 15, 20, 3, 16, 2, 10, (1000, 10000), 10, 20, 10, 500),
    "quick": Size("quick", 600, (1, 10, 50, 200), 4, 6, 1, 16, 2, 10, (100, 1000), 10, 5, 3, 300),
    "tiny": Size("tiny", 250, (1, 10, 50, 200), 1, 1, 0, 4, 1, 10, (6, 12), 5, 1.5, 1, 100),
}

_T0 = time.monotonic()


def say(message: str) -> None:
    """Progress output."""
    print(f"[bench {time.monotonic() - _T0:6.1f}s] {message}", flush=True)


class Bench:
    """One benchmark run: its processes, its knowledge of the plant, its results."""

    def __init__(self, size: Size, args: argparse.Namespace, run_dir: Path) -> None:
        self.size = size
        self.args = args
        self.latency_ms = float(args.latency_ms)
        self.run_dir = run_dir
        self.log_dir = run_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.plant: Proc | None = None
        self.gateway: Proc | None = None
        self.peer: Proc | None = None
        self.peer_note = ""
        # The warm runs' extra rivals (section 3b): the peer with a TTL response cache, and
        # ordergraph as `serve --workers N`; servers() lists them while the warm runs last.
        self.cached_peers: list[tuple[str, Proc]] = []
        self.gateway_workers: Proc | None = None
        self.gateway_rttl: Proc | None = None
        self.extra: list[tuple[str, Proc]] = []
        self.current_workload = ""
        self.starts = 0  # gateways started, for fresh journals
        self.http: aiohttp.ClientSession | None = None
        self.headers: dict[str, str] = {}  # sent to ordergraph (auth, when it needs one)
        self.ws_init: dict[str, Any] = {}
        self.auth_note = "none needed"
        self.orders: list[str] = []
        self.customer_of: dict[str, str] = {}
        self.customers: list[str] = []
        self.results: dict[str, Any] = {
            "meta": {},
            "upstream_calls": [],
            "latency": [],
            "throughput": [],
            "freshness": {},
            "subscriptions": [],
            "ingestion": [],
            "attack": [],
            "notes": [],
        }
        self.otlp_sink_url = ""  # bench/tracing.py's OTLP sink, for the traced gateway's config
        self.use_wrk = have_wrk() and not args.no_wrk
        self.redis_prefix = f"ordergraph-bench:{run_dir.name}:"

    # --- processes ----------------------------------------------------------------------

    async def start_plant(self) -> None:
        port = free_port()
        self.plant = spawn(
            "plant",
            [sys.executable, "-m", "bench.plant", "--port", str(port), "--orders", str(self.size.orders), "--latency-ms", str(self.latency_ms)],
            f"http://127.0.0.1:{port}",
            self.log_dir,
            cwd=procs.SOURCE,
        )
        await self.plant.wait_ready(timeout=120)
        say(f"plant up at {self.plant.url} ({self.size.orders} orders, {self.latency_ms:g} ms per source call)")

    def peer_available(self) -> tuple[bool, str]:
        if self.args.no_peer:
            return False, "skipped (--no-peer)"
        if not shutil.which("node") or not shutil.which("npm"):
            return False, "skipped: node/npm not installed"
        return True, ""

    def install_peer(self) -> None:
        modules = PEER_DIR / "node_modules"
        if (modules / "graphql-yoga").exists() and (modules / "@graphql-yoga" / "plugin-response-cache").exists():
            return
        say("installing the peer's packages (npm install in bench/peer) ...")
        out = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=PEER_DIR, capture_output=True, text=True, check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"npm install failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")

    async def start_peer(self) -> None:
        ok, why = self.peer_available()
        if not ok:
            self.peer_note = why
            say(f"peer {why}")
            return
        await asyncio.to_thread(self.install_peer)
        self.peer = await self.spawn_peer("peer", 0)
        say(f"peer (graphql-yoga + dataloader, Node) up at {self.peer.url}")

    async def spawn_peer(self, name: str, cache_ttl_s: float) -> Proc:
        """A peer process; ``cache_ttl_s`` > 0 adds yoga's response cache with that TTL."""
        assert self.plant is not None
        port = free_port()
        env = {"PLANT_URL": self.plant.url, "PORT": str(port), "NODE_ENV": "production"}
        if cache_ttl_s > 0:
            env["RESPONSE_CACHE_TTL_MS"] = str(int(cache_ttl_s * 1000))
        proc = spawn(name, ["node", "server.js"], f"http://127.0.0.1:{port}", self.log_dir, env=env, cwd=PEER_DIR)
        await proc.wait_ready()
        return proc

    async def start_cached_peers(self) -> None:
        """The peer with `@graphql-yoga/plugin-response-cache` at each TTL of --peer-cache-ttl."""
        if self.peer is None:
            return
        for ttl in self.args.peer_cache_ttl:
            name = f"peer-ttl{ttl:g}s"
            self.cached_peers.append((name, await self.spawn_peer(name, ttl)))
            say(f"peer with a {ttl:g} s response cache (@graphql-yoga/plugin-response-cache) up at {self.cached_peers[-1][1].url}")

    def gateway_config(self, mode: str, port: int, workers: int | None = None) -> Path:
        """The generated TOML for a gateway: ``cold`` keeps nothing between requests."""
        assert self.plant is not None
        self.starts += 1
        journal = self.run_dir / f"journal-{self.starts}-{mode}.sqlite"  # fresh: no backlog to recover
        lines = [
            "[gateway]",
            'host = "127.0.0.1"',
            f"port = {port}",
            "graphiql = false",
            "",
            "[events]",
            f'journal_path = "{journal}"',
            "",
        ]
        if mode.startswith("warm-rttl"):
            # the whole-answer cache's clock bound set to the cached peer's TTL (bench 3b)
            lines += ["[cache]", f"response_ttl_seconds = {mode.removeprefix('warm-rttl')}", ""]
        if mode.startswith("cold"):
            # Cold: entries expire after 1 µs, so every request reads its sources.
            lines += ["[cache]", "ttl_seconds = 0.000001", "response_ttl_seconds = 0", ""]
        # Under attack: the normal load stays anonymous (open mode: no per-viewer limits),
        # the hostile viewer has a token, so its rate limit and document budget hold.
        overrides = self.ATTACK_OVERRIDES if mode == "attack" else self.OVERRIDES
        for s in SYSTEMS:
            if s == "erp" and getattr(self.args, "erp", "rest") == "sap-odata":
                # The ERP as SAP S/4HANA: OData v2 under /sap/opu/odata/sap on the plant's port.
                lines += ["[sources.erp]", 'profile = "sap-odata"', f'base_url = "{self.plant.url}"', "max_connections = 100", ""]
                continue
            lines += [f"[sources.{s}]", f'base_url = "{self.plant.url}/{s}"', "max_connections = 100", ""]
        if (workers or self.args.workers) > 1:
            # Several processes act as one through Redis: their own key prefix per gateway.
            lines += ["[scaleout]", f'redis_url = "{self.args.redis_url}"', f'key_prefix = "{self.redis_prefix}{self.starts}:"', ""]
        if mode.endswith("-traced"):  # bench/tracing.py: every request traced, exported over OTLP/HTTP
            lines += ["[telemetry]", "traces = true", f'otlp_endpoint = "{self.otlp_sink_url}"', ""]
        lines += self.extra_config_lines(overrides)
        path = self.run_dir / f"gateway-{self.starts}-{mode}.toml"
        path.write_text("\n".join(lines))
        return path

    # Settings the benchmark needs when the gateway has them: open (demo) mode instead of
    # JWTs, and no per-viewer rate or cost limits (every load generator is one viewer).
    OVERRIDES: tuple[tuple[str, str, str], ...] = (
        ("auth", "mode", '"open"'),
        ("limits", "max_cost", "1000000000"),
        ("limits", "rate_per_second", "0"),
        ("limits", "connections_per_viewer", "1000000"),
    )

    ATTACK_OVERRIDES: tuple[tuple[str, str, str], ...] = (
        ("auth", "mode", '"open"'),
        ("auth", "hs256_secret", f'"{ATTACK_SECRET}"'),
        ("limits", "max_cost", "1000000000"),
    )

    def extra_config_lines(self, overrides: tuple[tuple[str, str, str], ...]) -> list[str]:
        """Overrides for settings the gateway's configuration has (asked of its own source tree)."""
        probe = (
            "import dataclasses, json\n"
            "from gateway.config import load_config\n"
            "cfg = load_config(None, env={})\n"
            "print(json.dumps({f.name: [g.name for g in dataclasses.fields(getattr(cfg, f.name))]"
            " for f in dataclasses.fields(cfg) if dataclasses.is_dataclass(getattr(cfg, f.name))}))\n"
        )
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=child_env(), cwd=procs.SOURCE, check=False)
        fields = json.loads(out.stdout or "{}") if out.returncode == 0 else {}
        lines: list[str] = []
        applied: list[str] = []
        for section in dict.fromkeys(sec for sec, _, _ in overrides):
            chosen = [(k, v) for sec, k, v in overrides if sec == section and k in fields.get(section, [])]
            if chosen:
                lines += [f"[{section}]", *(f"{k} = {v}" for k, v in chosen), ""]
                applied += [f"{section}.{k} = {v}" for k, v in chosen]
        if "auth" in fields:
            self.auth_note = "open mode ([auth] mode = \"open\")"
        self.results["meta"].setdefault("config_overrides", applied)
        return lines

    async def mint_token(self, config: Path) -> None:
        """When the CLI has ``ordergraph token`` and the gateway refuses us, use a token."""
        assert self.http is not None and self.gateway is not None
        async with self.http.post(self.gateway.url + "/graphql", data=Q.body("{ __typename }"), headers={"Content-Type": "application/json"}) as resp:
            if resp.status not in (401, 403):
                return
        token = await asyncio.to_thread(self._mint, config)
        self.headers = {"Authorization": f"Bearer {token}"}
        self.ws_init = {"Authorization": f"Bearer {token}", "token": token}
        self.auth_note = "bearer token from `ordergraph token`"

    @staticmethod
    def _mint(config: Path) -> str:
        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, cwd=procs.SOURCE, env=child_env(), check=False)

        if "token" not in cli("--help").stdout:
            raise RuntimeError("the gateway needs credentials and the CLI has no `token` command")
        args = ["token"]
        if "--config" in cli("token", "--help").stdout:
            args += ["--config", str(config)]
        out = cli(*args)
        lines = [ln.strip() for ln in out.stdout.splitlines() if ln.strip()]
        if out.returncode != 0 or not lines:
            raise RuntimeError(f"`ordergraph token` failed: {out.stderr[-1000:]}")
        return lines[-1].split()[-1]

    async def start_gateway(self, mode: str) -> None:
        self.gateway = await self.spawn_gateway(mode, self.args.workers)
        await self.settle(self.gateway)

    async def spawn_gateway(self, mode: str, workers: int) -> Proc:
        """A gateway process (``workers`` > 1: `serve --workers N` over Redis), ready."""
        port = free_port()
        config = self.gateway_config(mode, port, workers)
        proc = spawn(
            f"gateway-{self.starts}-{mode}",
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)] + (["--workers", str(workers)] if workers > 1 else []),
            f"http://127.0.0.1:{port}",
            self.log_dir,
            cwd=procs.SOURCE,
            # gateway/memdebug.py's opt-in snapshots (child_env drops ORDERGRAPH_* otherwise)
            env={k: v for k, v in os.environ.items() if k.startswith("ORDERGRAPH_DEBUG_TRACEMALLOC")},
        )
        await proc.wait_ready()
        if self.gateway is None:
            self.gateway = proc  # mint_token asks the first gateway
        await self.mint_token(config)
        say(f"ordergraph gateway ({mode} cache{f', {workers} workers' if workers > 1 else ''}) up at {proc.url} [auth: {self.auth_note}]")
        return proc

    async def settle(self, proc: Proc, idle: float = 0.05, timeout: float = 120.0) -> None:
        """Wait until a freshly started server is idle (its start-up work, such as a first
        evaluation of every order, would otherwise land in the first measurements)."""
        t0 = time.monotonic()
        quiet = 0
        while quiet < 2 and time.monotonic() - t0 < timeout:
            c0 = proc.cpu()
            await asyncio.sleep(0.5)
            quiet = quiet + 1 if (proc.cpu() - c0) / 0.5 < idle else 0
        waited = time.monotonic() - t0
        if waited > 1.5:
            say(f"   waited {waited:.1f} s for {proc.name} to go idle (start-up work, events still being applied)")

    def stop_gateway(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None

    def stop_all(self) -> None:
        for p in (self.gateway, self.gateway_workers, self.gateway_rttl, self.peer, *(p for _, p in self.cached_peers), self.plant):
            if p is not None:
                p.stop()

    # --- talking to the servers ------------------------------------------------------------

    def servers(self) -> list[tuple[str, Proc]]:
        out = []
        if self.gateway is not None:
            out.append(("ordergraph", self.gateway))
        if self.peer is not None:
            out.append(("peer", self.peer))
        return out + self.extra

    def hdrs(self, name: str) -> dict[str, str]:
        return self.headers if name.startswith("ordergraph") else {}

    async def gql(self, name: str, proc: Proc, body: bytes) -> dict[str, Any]:
        """Run one query that must succeed; one retry when an idle keep-alive was closed."""
        assert self.http is not None
        for attempt in (1, 2):
            try:
                async with self.http.post(proc.url + "/graphql", data=body, headers={"Content-Type": "application/json", **self.hdrs(name)}) as resp:
                    data = await resp.json(content_type=None)
                    if resp.status != 200 or data.get("errors"):
                        raise RuntimeError(f"{name} answered {resp.status}: {str(data)[:500]}")
                    return data["data"]
            except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def plant_get(self, path: str) -> Any:
        assert self.http is not None and self.plant is not None
        async with self.http.get(self.plant.url + path) as resp:
            return await resp.json()

    async def plant_post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        assert self.http is not None and self.plant is not None
        async with self.http.post(self.plant.url + path, data=orjson.dumps(body or {})) as resp:
            return await resp.json(content_type=None)

    async def learn_plant(self) -> None:
        """Order numbers and customers, read from the plant's ERP directly."""
        token = None
        while True:
            page = await self.plant_get("/erp/A_SalesOrder?$top=1000" + (f"&$skiptoken={token}" if token else ""))
            for so in page["value"]:
                self.orders.append(so["SalesOrder"])
                self.customer_of[so["SalesOrder"]] = so["SoldToParty"]
            token = page.get("nextSkipToken")
            if not token or not page["value"]:
                break
        self.customers = sorted(set(self.customer_of.values()))
        await self.plant_post("/control/stats/reset")

    @property
    def hot(self) -> list[str]:
        return self.orders[: self.size.hot_orders]

    async def page_cursors(self, name: str, proc: Proc, pages: int) -> list[str | None]:
        """The ``after`` of the first ``pages`` 50-order pages, as this server encodes them."""
        cursors: list[str | None] = [None]
        while len(cursors) < pages:
            data = await self.gql(name, proc, Q.body(Q.PAGE_CURSORS, {"first": 50, "after": cursors[-1]}))
            info = data["orders"]["pageInfo"]
            if not info["hasNextPage"]:
                break
            cursors.append(info["endCursor"])
        return cursors

    async def workloads(self, name: str, proc: Proc) -> dict[str, list[bytes]]:
        rng = random.Random(1)
        hot = list(self.hot)
        rng.shuffle(hot)
        cursors = await self.page_cursors(name, proc, max(1, len(self.hot) // 50))
        return {
            "where is my order": [Q.body(Q.WHERE_IS_MY_ORDER, {"id": so}) for so in hot],
            "dashboard page (50)": [Q.body(Q.DASHBOARD, {"first": 50, "after": c}) for c in cursors],
            "customer's orders": [Q.body(Q.CUSTOMER_ORDERS, {"id": c}) for c in self.customers],
        }

    async def check_same_answers(self) -> None:
        """Both servers answer every workload without errors, with the same orders."""
        answers: dict[str, list[str]] = {}
        for name, proc in self.servers():
            data = await self.gql(name, proc, Q.body(Q.DASHBOARD, {"first": 50}))
            answers[name] = [n["id"] for n in data["orders"]["nodes"]]
            await self.gql(name, proc, Q.body(Q.WHERE_IS_MY_ORDER, {"id": self.orders[0]}))
            await self.gql(name, proc, Q.body(Q.CUSTOMER_ORDERS, {"id": self.customers[0]}))
        if len({tuple(v) for v in answers.values()}) > 1:
            raise RuntimeError(f"ordergraph and the peer list different orders: {answers}")

    async def load(self, name: str, proc: Proc, bodies: list[bytes], *, connections: int, seconds: float) -> dict[str, Any]:
        meter = CpuMeter({"server": proc, **({"plant": self.plant} if self.plant else {})})
        out = await run_load(proc.url + "/graphql", bodies, connections=connections, duration=seconds, headers=self.hdrs(name), use_wrk=self.use_wrk)
        cpu = meter.read()
        out["server_cpu"] = cpu["server"]
        out["plant_cpu"] = cpu.get("plant", 0.0)
        return out

    # --- 1. upstream calls ----------------------------------------------------------------------

    async def upstream_calls(self) -> None:
        say("1/6 upstream calls per query (cold cache; plant /control/stats read between queries)")
        for shape, query in (("erp", Q.ERP_LIST), ("all", Q.FULL_LIST)):
            for n in self.size.counts:
                row: dict[str, Any] = {"orders": n, "fields": "ERP only" if shape == "erp" else "every section", "ideal": sum(IDEAL_CALLS[shape].values())}
                for name, proc in self.servers():
                    # The least of three: a server's own background work (e.g. a periodic
                    # sweep over the sources) must not be counted against the query.
                    best: dict[str, int] | None = None
                    for _ in range(3):
                        await self.plant_post("/control/stats/reset")
                        data = await self.gql(name, proc, Q.body(query, {"first": n}))
                        got = len(data["orders"]["nodes"])
                        stats = (await self.plant_get("/control/stats"))["requests"]
                        counted = {s: stats.get(s, 0) for s in SYSTEMS} | {"total": sum(stats.values()), "orders_returned": got}
                        if best is None or counted["total"] < best["total"]:
                            best = counted
                    row[name] = best
                self.results["upstream_calls"].append(row)
                say(f"   {n:>4} orders, {row['fields']:<13}: " + ", ".join(f"{k} {row[k]['total']} calls" for k, _ in self.servers()))

    # --- 2. latency vs the critical path --------------------------------------------------------

    async def compare(
        self, bodies: dict[str, list[bytes]], *, connections: int, seconds: float, prepare: Any = None
    ) -> dict[str, dict[str, Any]]:
        """Measure every server on its bodies, alternating them in rounds.

        Each server gets ``seconds`` in total, in ``size.rounds`` slices taken in turn
        (ordergraph, peer, peer, ordergraph, ...), so a burst of load from elsewhere on a
        shared machine hits both. Requests and time add up over the rounds; p50 and p99 are
        the medians of the rounds'.
        """
        servers = self.servers()
        for name, proc in servers:
            if prepare is not None:
                await prepare(name, proc)
            if self.size.warmup_seconds:
                await self.load(name, proc, bodies[name], connections=connections, seconds=self.size.warmup_seconds)
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in servers}
        slice_s = seconds / self.size.rounds
        for r in range(self.size.rounds):
            for name, proc in servers if r % 2 == 0 else list(reversed(servers)):
                rounds[name].append(await self.load(name, proc, bodies[name], connections=connections, seconds=slice_s))
        out: dict[str, dict[str, Any]] = {}

        def med(runs: list[dict[str, Any]], key: str) -> float:
            return sorted(x[key] for x in runs)[len(runs) // 2]

        for name, runs in rounds.items():
            requests = sum(x["requests"] for x in runs)
            duration = sum(x["duration_s"] for x in runs)
            out[name] = {
                "requests": requests,
                "duration_s": round(duration, 3),
                "requests_per_second": round(requests / max(duration, 1e-9), 1),
                "errors": sum(x["errors"] for x in runs),
                "p50_ms": med(runs, "p50_ms"),
                "p90_ms": med(runs, "p90_ms"),
                "p99_ms": med(runs, "p99_ms"),
                "max_ms": max(x["max_ms"] for x in runs),
                "server_cpu": round(sum(x["server_cpu"] for x in runs) / len(runs), 3),
                "plant_cpu": round(sum(x["plant_cpu"] for x in runs) / len(runs), 3),
                "loadgen_cpu": round(max(x["loadgen_cpu"] for x in runs), 3),
                "rounds": len(runs),
                "connections": connections,
                "tool": runs[0]["tool"],
            }
        return out

    async def latency(self) -> None:
        ideal = LEVELS * self.latency_ms
        say(f"2/6 latency at concurrency 1 vs the critical path ({LEVELS} levels x {self.latency_ms:g} ms = {ideal:g} ms)")
        pages = max(1, len(self.hot) // 50)
        where = {name: [Q.body(Q.WHERE_IS_MY_ORDER, {"id": so}) for so in self.hot] for name, _ in self.servers()}
        page = {
            name: [Q.body(Q.DASHBOARD, {"first": 50, "after": c}) for c in await self.page_cursors(name, proc, pages)]
            for name, proc in self.servers()
        }
        for label, bodies in (("one order, full view", where), ("50-order page", page)):
            row: dict[str, Any] = {"query": label, "ideal_ms": ideal}
            measured = await self.compare(bodies, connections=1, seconds=self.size.latency_seconds)
            for name, out in measured.items():
                row[name] = out | {"p50_ratio": round(out["p50_ms"] / ideal, 2), "p99_ratio": round(out["p99_ms"] / ideal, 2)}
                say(f"   {label:<22} {name:<10} p50 {out['p50_ms']:7.1f} ms ({row[name]['p50_ratio']}x ideal)  p99 {out['p99_ms']:7.1f} ms  [{out['requests']} requests, {out['errors']} errors]")
            self.results["latency"].append(row)

    # --- 3. throughput ---------------------------------------------------------------------------

    async def throughput(self, mode: str) -> None:
        say(f"3/6 throughput, {mode} cache" + (f", plant sending events at {self.size.event_rate:g} changes/s" if mode == "warm" else ""))
        loads = {name: await self.workloads(name, proc) for name, proc in self.servers()}

        async def fill(name: str, proc: Proc, bodies: list[bytes]) -> None:
            # warm mode: every body once through each cache (ordergraph's, the cached
            # peers'), so the caches hold them
            if mode == "warm" and name != "peer":
                for i in range(0, len(bodies), 16):
                    await asyncio.gather(*(self.gql(name, proc, b) for b in bodies[i : i + 16]))

        for workload in loads["ordergraph"]:
            # 50-order pages cost ~50 times one order: half the connections keeps each
            # round many requests long
            c = self.size.concurrency if workload == "where is my order" else max(1, self.size.concurrency // 2)
            bodies = {name: loads[name][workload] for name in loads}
            self.current_workload = workload  # the freshness probe tallies per workload
            measured = await self.compare(
                bodies,
                connections=c,
                seconds=self.size.throughput_seconds,
                prepare=lambda name, proc, w=workload: fill(name, proc, loads[name][w]),
            )
            row: dict[str, Any] = {"workload": workload, "cache": mode, "concurrency": c, **measured}
            for name, out in measured.items():
                say(f"   {workload:<20} c={c:<3} {name:<10} {out['requests_per_second']:8.1f} req/s  p50 {out['p50_ms']:7.1f} ms  p99 {out['p99_ms']:7.1f} ms  cpu {out['server_cpu']:.2f}  [{out['errors']} errors, {out['tool']}]")
            if "peer" in row and row["peer"]["requests_per_second"]:
                row["ratio"] = round(row["ordergraph"]["requests_per_second"] / row["peer"]["requests_per_second"], 2)
            if self.extra:  # ordergraph as a ratio to each rival of the warm runs
                row["ratios"] = {
                    name: round(row["ordergraph"]["requests_per_second"] / out["requests_per_second"], 2)
                    for name, out in measured.items()
                    if name != "ordergraph" and out["requests_per_second"]
                }
            self.results["throughput"].append(row)
            if self.args.profile and workload.startswith("dashboard") and self.gateway is not None:
                await self.profile(self.gateway, bodies["ordergraph"], c, f"{mode}-dashboard")

    async def profile(self, proc: Proc, bodies: list[bytes], connections: int, label: str) -> None:
        """py-spy on the gateway under this load, in an extra run that is not measured."""
        if not shutil.which("py-spy"):
            self.results["notes"].append("--profile: py-spy is not installed (pip install py-spy)")
            return
        from .profiles import summarize

        seconds = max(2, int(self.size.throughput_seconds))
        out_dir = self.run_dir / "profiles"
        out_dir.mkdir(exist_ok=True)
        path = out_dir / f"{label}.txt"
        spy = await asyncio.create_subprocess_exec(
            # --gil: only samples holding the GIL, so idle threads (the journal's executor,
            # the event loop waiting in epoll) do not count as work
            "py-spy", "record", "--pid", str(proc.pid), "--duration", str(seconds), "--rate", "100", "--gil",
            "--format", "raw", "--output", str(path),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        await self.load("ordergraph", proc, bodies, connections=connections, seconds=seconds + 1)
        await spy.wait()
        if path.exists():
            summary = summarize(path)
            (out_dir / f"{label}.md").write_text(summary)
            self.results.setdefault("profiles", {})[label] = summary
            say(f"   profiled the gateway under this load: {path}")

    async def warm_runs(self) -> None:
        assert self.gateway is not None
        # The rivals of the warm runs: ordergraph as `serve --workers N`, the cached peers.
        if self.args.also_workers > 1 and self.args.workers <= 1:
            if await self.redis_reachable():
                self.gateway_workers = await self.spawn_gateway("warm", self.args.also_workers)
                await self.settle(self.gateway_workers)
                self.extra.append((f"ordergraph-w{self.args.also_workers}", self.gateway_workers))
            else:
                self.results["notes"].append(f"--also-workers {self.args.also_workers}: no Redis at {self.args.redis_url}; not measured")
        if self.args.also_response_ttl > 0:
            ttl = f"{self.args.also_response_ttl:g}"
            self.gateway_rttl = await self.spawn_gateway(f"warm-rttl{ttl}", 1)
            await self.settle(self.gateway_rttl)
            self.extra.append((f"ordergraph-rttl{ttl}s", self.gateway_rttl))
        self.extra += self.cached_peers
        gateways = [p.url for p in (self.gateway, self.gateway_workers, self.gateway_rttl) if p is not None]
        await self.plant_post("/bench/driver", {"gateways": gateways, "rate": self.size.event_rate, "orders": self.hot})
        probe = asyncio.create_task(self.freshness_probe())
        try:
            await self.throughput("warm")
        finally:
            probe.cancel()
            await asyncio.wait({probe})  # (suppressing CancelledError here would swallow our own)
            driver = await self.plant_post("/bench/driver/stop")
            self.extra = []
            for attr in ("gateway_workers", "gateway_rttl"):
                if getattr(self, attr) is not None:
                    getattr(self, attr).stop()
                    setattr(self, attr, None)
        self.results["freshness"]["driver"] = driver
        say(f"   plant sent {driver.get('events_sent', 0)} events ({driver.get('changes_per_second', 0)} changes/s, {driver.get('duplicates', 0)} duplicates, {driver.get('retries', 0)} retries)")
        f = self.results["freshness"]
        if f.get("probes"):
            say(
                f"   freshness: {f['probes']} source changes; reads fresh after p50 {f['p50_ms']} ms, max {f['max_ms']} ms; "
                f"{f['never_fresh']} never fresh within {f['timeout_s']} s; {f['stale_after_ack']} older right after the 202"
            )

    async def redis_reachable(self) -> bool:
        import redis.asyncio as redis

        client = redis.from_url(self.args.redis_url, socket_connect_timeout=2)
        try:
            return bool(await client.ping())
        except Exception:  # noqa: BLE001 - any failure means: not measured, with a note
            return False
        finally:
            await client.aclose()

    async def freshness_probe(self) -> None:
        """Change an order at the source, then read it through the warm cache until it shows.

        The plant's emitter sends the change as an event; the time until ordergraph serves
        the new state is the event path's staleness window (source → 202 → invalidation).
        """
        assert self.gateway is not None
        pool = [so for so in self.orders[self.size.hot_orders : self.size.hot_orders + 60]]
        f = self.results["freshness"]
        f.update({"probes": 0, "never_fresh": 0, "stale_after_ack": 0, "acked_ms": [], "timeout_s": 10.0, "samples_ms": [], "errors": 0})
        # every server's read right after the 202, per workload running at the time:
        # {workload: {server: {"probes": n, "stale": n}}}
        f["by_workload"] = {}
        rng = random.Random(3)
        try:
            while pool:
                try:
                    await self._probe_once(pool, rng, f)
                except (RuntimeError, aiohttp.ClientError, OSError) as exc:
                    f["errors"] += 1
                    f["last_error"] = str(exc)[:300]
                await asyncio.sleep(0.5)
        finally:
            samples = sorted(f["samples_ms"])
            if samples:
                f["p50_ms"] = percentile(samples, 50)
                f["p99_ms"] = percentile(samples, 99)
                f["max_ms"] = samples[-1]

    async def _probe_once(self, pool: list[str], rng: random.Random, f: dict[str, Any]) -> None:
        """One probe: cache an order, change it at the source, read until the change shows."""
        assert self.gateway is not None
        name, gw = "ordergraph", self.gateway
        so = rng.choice(pool)
        others = [(n, p) for n, p in self.servers() if n != "ordergraph"]  # the warm runs' rivals too
        body = Q.body(Q.PROBE, {"id": so})
        await self.gql(name, gw, body)  # cached now
        for n, p in others:
            await self.gql(n, p, body)  # in a cached peer's cache now, like a viewer's earlier read
        workload = self.current_workload
        t0 = time.monotonic()
        # Returns once the gateway answered 202 to the change's events (the plant's emitter,
        # with its duplicates, reordering and notification-only events, flushed).
        answer = await self.plant_post(f"/bench/advance/{so}")
        if not answer.get("changes"):
            pool.remove(so)  # delivered: nothing left to change
            return
        # The read right after the 202 must show the change: never older than the last
        # accepted event.
        first = self.normalise(await self.gql(name, gw, body))
        firsts = {n: self.normalise(await self.gql(n, p, body)) for n, p in others}
        truth = await self.truth(so)
        f["probes"] += 1
        f["acked_ms"].append(answer.get("acked_after_ms", 0.0))
        if first != truth:
            f["stale_after_ack"] += 1
        tally = f["by_workload"].setdefault(workload, {})
        for n, seen in (("ordergraph", first), *firsts.items()):
            t = tally.setdefault(n, {"probes": 0, "stale": 0})
            t["probes"] += 1
            t["stale"] += seen != truth
        while True:
            seen = self.normalise(await self.gql(name, gw, Q.body(Q.PROBE, {"id": so})))
            if seen == truth:
                f["samples_ms"].append(round((time.monotonic() - t0) * 1000, 1))
                return
            if time.monotonic() - t0 > f["timeout_s"]:
                f["never_fresh"] += 1
                return
            await asyncio.sleep(0.005)

    async def truth(self, so: str) -> Any:
        """The probe fields straight from the plant's APIs."""
        pos = (await self.plant_get(f"/mes/A_ProductionOrder?SalesOrder={so}"))["value"]
        dels = (await self.plant_get(f"/wms/A_OutbDeliveryHeader?ReferenceSDDocument={so}"))["value"]
        mos = ",".join(p["ManufacturingOrder"] for p in pos)
        lots = (await self.plant_get(f"/qms/A_InspectionLot?ManufacturingOrder={mos}"))["value"] if mos else []
        dds = ",".join(d["DeliveryDocument"] for d in dels)
        ships = (await self.plant_get(f"/tms/Shipment?DeliveryDocument={dds}"))["value"] if dds else []
        names = {"A": "NOT_STARTED", "B": "PARTIAL", "C": "COMPLETE"}
        return (
            sorted((p["ManufacturingOrder"], p["OrderStatus"]) for p in pos),
            sorted((lot["InspectionLot"], lot["InspectionLotHasUsageDecision"]) for lot in lots),
            sorted(
                (d["DeliveryDocument"], names.get(d["OverallPickingStatus"], "NOT_STARTED"), names.get(d["OverallPackingStatus"], "NOT_STARTED"), names.get(d["OverallGoodsMovementStatus"], "NOT_STARTED"))
                for d in dels
            ),
            sorted((s["TrackingNumber"], s["Tag"]) for s in ships),
        )

    @staticmethod
    def normalise(data: dict[str, Any]) -> Any:
        o = data["order"]
        return (
            sorted((p["id"], p["status"]) for p in o["production"]["orders"]),
            sorted((lot["id"], lot["hasUsageDecision"]) for lot in o["quality"]["inspectionLots"]),
            sorted((d["id"], d["pickingStatus"], d["packingStatus"], d["goodsMovementStatus"]) for d in o["logistics"]["deliveries"]),
            sorted((s["trackingNumber"], s["status"]) for s in o["logistics"]["shipments"]),
        )

    # --- 4. subscriptions ------------------------------------------------------------------------

    async def subscriptions(self, n: int) -> None:
        assert self.gateway is not None
        rate, seconds = self.size.sub_event_rate, self.size.sub_seconds
        say(f"4/6 subscriptions: {n} WebSocket subscribers, events at {rate:g}/s for {seconds:g} s")
        customers = self.customers[: max(1, min(len(self.customers), n))]
        per_customer = {c: 0 for c in customers}
        for i in range(n):
            per_customer[customers[i % len(customers)]] += 1
        # orders the event driver never touched (their watermarks are ours alone)
        skip = set(self.orders[: self.size.hot_orders + 60])
        targets = [so for so in self.orders if so not in skip and self.customer_of[so] in per_customer] or list(self.orders)
        procs_n = max(2 if n >= 2 else 1, math.ceil(n / SUBSCRIBERS_PER_PROCESS))
        # Events the gateway is still working through (say, the warm runs' backlog) would
        # reach these subscribers too: start from an idle gateway.
        await self.settle(self.gateway, timeout=180)
        ws_url = self.gateway.url.replace("http://", "ws://") + "/graphql"
        rss0 = self.gateway.rss()
        clients = []
        for i in range(procs_n):
            count = n // procs_n + (1 if i < n % procs_n else 0)
            offset = sum(n // procs_n + (1 if j < n % procs_n else 0) for j in range(i))
            p = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.subs", "--url", ws_url, "--count", str(count),
                "--customers", ",".join(customers), "--offset", str(offset), "--init", json.dumps(self.ws_init),
                "--result", str(self.run_dir / f"subs-{n}-{i}.json"),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=str(procs.SOURCE),
                env=child_env(),
            )
            clients.append({"proc": p, "count": 0, "ready": None, "result": None, "file": self.run_dir / f"subs-{n}-{i}.json"})

        readers = [asyncio.create_task(read_subscriber_client(c)) for c in clients]
        t_connect = time.monotonic()
        await procs.subscribers_ready(clients)
        connected = sum(c["ready"][0] for c in clients)
        failed = sum(c["ready"][1] for c in clients)
        connect_s = time.monotonic() - t_connect
        await asyncio.sleep(1.0)  # let the gateway finish registering the last subscriptions
        rss1 = self.gateway.rss()
        say(f"   {connected} connected and subscribed in {connect_s:.1f} s ({failed} failed); gateway RSS +{(rss1 - rss0) / 1e6:.1f} MB")

        expected = 0
        injected = 0
        refused = 0
        assert self.http is not None
        rng = random.Random(n)
        since = time.time()
        for c in clients:
            assert c["proc"].stdin is not None
            c["proc"].stdin.write(f"START {since}\n".encode())
            await c["proc"].stdin.drain()
        t_start = time.monotonic()
        meter = CpuMeter({"gateway": self.gateway})
        k = 0
        while (elapsed := time.monotonic() - t_start) < seconds:
            due = int(rate * elapsed) + 1
            while injected + refused < due:
                so = rng.choice(targets)
                k += 1
                body, hdrs = signed_request([sales_order_event(so, f"bench-sub-{n}-{os.getpid()}-{k}")])
                async with self.http.post(self.gateway.url + "/events", data=body, headers=hdrs) as resp:
                    if resp.status == 202 and (await resp.json())["duplicates"] == 0:
                        injected += 1
                        expected += per_customer.get(self.customer_of[so], 0)
                    else:
                        refused += 1
            await asyncio.sleep(max(0.0, (injected + refused) / rate - (time.monotonic() - t_start)))
        # drain: wait until everything expected arrived, or nothing moves for a while
        last, still = -1, time.monotonic()
        while True:
            got = sum(c["count"] for c in clients)
            if got >= expected:
                break
            if got != last:
                last, still = got, time.monotonic()
            elif time.monotonic() - still > 10:
                break
            await asyncio.sleep(0.2)
        cpu = meter.read()["gateway"]
        await procs.stop_subscriber_clients(clients, readers)
        latencies = sorted(x for c in clients for x in (c["result"] or {}).get("latencies_ms", []))
        delivered = sum((c["result"] or {}).get("received", 0) for c in clients)
        row = {
            "subscribers": n,
            "connected": connected,
            "failed_connections": failed,
            "client_processes": procs_n,
            "connect_seconds": round(connect_s, 1),
            "event_rate": rate,
            "events": injected,
            "refused_events": refused,
            "expected": expected,
            "delivered": delivered,
            "equal": delivered == expected,
            "errors": sum((c["result"] or {}).get("errors", 0) for c in clients),
            "older_changes": sum((c["result"] or {}).get("foreign", 0) for c in clients),
            "p50_ms": round(percentile(latencies, 50), 1),
            "p99_ms": round(percentile(latencies, 99), 1),
            "max_ms": round(latencies[-1], 1) if latencies else 0.0,
            "rss_delta_bytes": rss1 - rss0,
            "bytes_per_connection": round((rss1 - rss0) / connected) if connected else 0,
            "gateway_cpu": cpu,
        }
        self.results["subscriptions"].append(row)
        say(f"   delivered {delivered} of {expected} expected ({'equal' if row['equal'] else 'NOT EQUAL'}); event-to-client p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms; {row['bytes_per_connection'] / 1024:.1f} KiB per connection")
        await asyncio.sleep(1.0)  # let the gateway close the connections

    # --- 5. ingestion ------------------------------------------------------------------------------

    async def ingestion(self) -> None:
        assert self.gateway is not None
        say(f"5/6 event ingestion: signed events accepted durably (202), {self.size.ingest_seconds:g} s per mode")
        for batch, concurrency in ((1, 16), (100, 4)):
            meter = CpuMeter({"gateway": self.gateway})
            p = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.ingest", "--url", self.gateway.url, "--duration", str(self.size.ingest_seconds),
                "--concurrency", str(concurrency), "--batch", str(batch), "--orders", ",".join(self.hot),
                "--headers", json.dumps({}),
                stdout=asyncio.subprocess.PIPE, cwd=str(procs.SOURCE), env=child_env(),
            )
            stdout, _ = await p.communicate()
            out = json.loads(stdout.decode().strip().splitlines()[-1])
            out["gateway_cpu"] = meter.read()["gateway"]
            self.results["ingestion"].append(out)
            say(f"   batches of {batch:>3}, {concurrency:>2} senders: {out['events_per_second']:8.1f} events/s accepted ({out['requests']} requests, {out['refused']} refused, {out['errors']} errors)")

    async def metric(self, name: str) -> float | None:
        """One sample of the gateway's ``/metrics`` (None when it has no such metric)."""
        assert self.http is not None and self.gateway is not None
        async with self.http.get(self.gateway.url + "/metrics") as resp:
            text = await resp.text()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    # --- 6. under attack ------------------------------------------------------------------------------

    async def under_attack(self) -> None:
        """The normal workloads unloaded and while a hostile viewer sends new, expensive
        documents at its rate limit; rounds alternate (unloaded, attacked, attacked,
        unloaded, ...), so a burst of someone else's work hits both."""
        assert self.gateway is not None
        from gateway.auth import mint_token

        token = mint_token(ATTACK_SECRET, role="customer", customer=self.customers[0], subject="bench-hostile", ttl_seconds=3600)
        say(f"6/6 under attack: a hostile customer token sends new expensive documents at {ATTACK_RATE:g}/s while the normal workloads run")
        loads = await self.workloads("ordergraph", self.gateway)
        slice_s = self.size.throughput_seconds / self.size.rounds
        for workload in ("where is my order", "dashboard page (50)"):
            bodies = loads[workload]
            c = self.size.concurrency // 2 if workload == "where is my order" else max(1, self.size.concurrency // 4)
            for i in range(0, len(bodies), 16):  # warm: every body once, so the caches hold them
                await asyncio.gather(*(self.gql("ordergraph", self.gateway, b) for b in bodies[i : i + 16]))
            if self.size.warmup_seconds:
                await self.load("ordergraph", self.gateway, bodies, connections=c, seconds=self.size.warmup_seconds)
            runs: dict[str, list[dict[str, Any]]] = {"unloaded": [], "attacked": []}
            hostile: list[dict[str, Any]] = []
            for r in range(self.size.rounds):
                for label in ("unloaded", "attacked") if r % 2 == 0 else ("attacked", "unloaded"):
                    if label == "unloaded":
                        runs[label].append(await self.load("ordergraph", self.gateway, bodies, connections=c, seconds=slice_s))
                        continue
                    attacker = await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "bench.attack", "--url", self.gateway.url + "/graphql", "--token", token,
                        "--rate", str(ATTACK_RATE), "--duration", str(slice_s + 1.0),
                        stdout=asyncio.subprocess.PIPE, cwd=str(BENCH_DIR.parent), env=child_env(),
                    )
                    await asyncio.sleep(0.5)  # the attack is under way before the measurement starts
                    worker0 = await self.metric("ordergraph_document_worker_seconds_total")
                    runs[label].append(await self.load("ordergraph", self.gateway, bodies, connections=c, seconds=slice_s))
                    worker1 = await self.metric("ordergraph_document_worker_seconds_total")
                    runs[label][-1]["document_worker_cpu"] = (
                        round((worker1 - worker0) / runs[label][-1]["duration_s"], 3) if worker0 is not None and worker1 is not None else None
                    )
                    out, _ = await attacker.communicate()
                    hostile.append(json.loads(out.decode().strip().splitlines()[-1]))

            def med(xs: list[dict[str, Any]], key: str) -> float:
                return sorted(x[key] for x in xs)[len(xs) // 2]

            row: dict[str, Any] = {"workload": workload, "concurrency": c}
            for label, xs in runs.items():
                row[label] = {
                    "requests": sum(x["requests"] for x in xs),
                    "requests_per_second": round(sum(x["requests"] for x in xs) / max(sum(x["duration_s"] for x in xs), 1e-9), 1),
                    "errors": sum(x["errors"] for x in xs),
                    "p50_ms": med(xs, "p50_ms"),
                    "p99_ms": med(xs, "p99_ms"),
                    "max_ms": max(x["max_ms"] for x in xs),
                    "server_cpu": round(sum(x["server_cpu"] for x in xs) / len(xs), 3),
                }
            statuses: dict[str, int] = {}
            for h in hostile:
                for k, v in h["statuses"].items():
                    statuses[k] = statuses.get(k, 0) + v
            row["hostile"] = {"sent": sum(h["sent"] for h in hostile), "statuses": statuses, "errors": sum(h["errors"] for h in hostile)}
            shares = [x["document_worker_cpu"] for x in runs["attacked"] if x.get("document_worker_cpu") is not None]
            row["document_worker_cpu"] = round(sum(shares) / len(shares), 3) if shares else None
            u, a = row["unloaded"], row["attacked"]
            row["p50_ratio"] = round(a["p50_ms"] / max(u["p50_ms"], 1e-9), 2)
            row["p99_ratio"] = round(a["p99_ms"] / max(u["p99_ms"], 1e-9), 2)
            self.results["attack"].append(row)
            say(
                f"   {workload:<20} c={c:<3} unloaded p50 {u['p50_ms']:.1f} ms p99 {u['p99_ms']:.1f} ms; attacked p50 {a['p50_ms']:.1f} ms "
                f"p99 {a['p99_ms']:.1f} ms ({row['p50_ratio']}x / {row['p99_ratio']}x); hostile sent {row['hostile']['sent']}: {statuses}"
            )

    # --- the run ----------------------------------------------------------------------------------

    async def run(self, scenarios: set[str]) -> dict[str, Any]:
        meta = self.results["meta"]
        meta.update(
            {
                "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "size": self.size.name,
                "machine": machine(),
                "settings": dataclasses.asdict(self.size) | {"latency_ms": self.latency_ms},
                "load_generator": "wrk (Lua script)" if self.use_wrk else "aiohttp workers (2 processes)",
                "ordergraph": f"{self.args.workers} worker processes over Redis (scale-out)" if self.args.workers > 1 else "one process",
                "scenarios": sorted(scenarios),
                "gateway_source": str(procs.SOURCE),
                "loadavg_start": procs.loadavg(),
            }
        )
        say(f"{self.size.name} run; load generator: {meta['load_generator']}; results in {self.run_dir}")
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
                self.http = http
                await self.start_plant()
                await self.learn_plant()
                if scenarios - set(EXTRA_SCENARIOS):  # the soak and scaleout measure ordergraph alone
                    await self.start_peer()
                else:
                    self.peer_note = "not started (the soak and scaleout measure ordergraph alone)"
                if "throughput" in scenarios:
                    await self.start_cached_peers()
                meta["peer"] = "graphql-yoga 5 + dataloader 2 on Node" if self.peer else self.peer_note
                if scenarios & {"upstream", "latency", "throughput"}:
                    await self.start_gateway("cold")
                    await self.check_same_answers()
                    if "upstream" in scenarios:
                        await self.upstream_calls()
                    if "latency" in scenarios:
                        await self.latency()
                    if "throughput" in scenarios:
                        await self.throughput("cold")
                    self.stop_gateway()
                if scenarios & {"throughput", "subscriptions", "ingestion"}:
                    await self.start_gateway("warm")
                    if "throughput" in scenarios:
                        await self.warm_runs()
                    if "subscriptions" in scenarios:
                        for n in self.size.subscribers:
                            # a fresh gateway per size: its RSS growth is then the
                            # connections', not reused heap from an earlier phase
                            self.stop_gateway()
                            await self.start_gateway("warm")
                            await self.subscriptions(n)
                    if "ingestion" in scenarios:
                        await self.ingestion()
                if "attack" in scenarios:
                    self.stop_gateway()
                    await self.start_gateway("attack")
                    await self.under_attack()
                if "tracing" in scenarios:
                    from .tracing import tracing_overhead

                    self.stop_gateway()
                    await tracing_overhead(self)
                if "scaleout" in scenarios:
                    from .scaleout import scaleout_costs

                    await scaleout_costs(self)
                if "soak" in scenarios:
                    from .soak import soak

                    await soak(self)
                if "apply" in scenarios:
                    from .apply import apply_rate

                    await apply_rate(self)
                meta["auth"] = self.auth_note
                meta["loadavg_end"] = procs.loadavg()
        finally:
            self.stop_all()
        return self.results


async def _delete_redis_keys(url: str, prefix: str) -> None:
    import redis.asyncio as redis

    client = redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description="ordergraph benchmark against a Node peer, in one run.")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes, about five minutes")
    size.add_argument("--tiny", action="store_true", help="smallest sizes, seconds (the smoke test)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory (default bench/results)")
    p.add_argument("--latency-ms", type=float, default=20.0, help="per-call latency of every source (default 20 ms)")
    p.add_argument("--no-peer", action="store_true", help="skip the Node peer (ratios become n/a)")
    p.add_argument("--no-wrk", action="store_true", help="use the asyncio load generator even when wrk is installed")
    p.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios (default: {','.join(SCENARIOS)}; also {','.join(EXTRA_SCENARIOS)}, see bench/README.md)",
    )
    p.add_argument("--profile", action="store_true", help="record py-spy profiles of the gateway under the dashboard load")
    p.add_argument("--no-readme", action="store_true", help="do not update bench/README.md with this run's table")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="ordergraph gateway processes (`ordergraph serve --workers N`); more than one runs them as scale-out "
        "replicas on the Redis at --redis-url",
    )
    p.add_argument(
        "--peer-cache-ttl",
        type=lambda v: tuple(float(x) for x in v.split(",") if x.strip() and float(x) > 0),
        default=PEER_CACHE_TTLS,
        help="in the warm runs, also run the peer with @graphql-yoga/plugin-response-cache at these TTLs in seconds "
        f"(default {','.join(str(t) for t in PEER_CACHE_TTLS)}; 0 for none)",
    )
    p.add_argument(
        "--also-workers",
        type=int,
        default=2,
        help="in the warm runs, also run ordergraph as `serve --workers N` over Redis beside the one-process gateway "
        "(default 2; 0 or 1 for none; skipped with a note when Redis is unreachable)",
    )
    p.add_argument(
        "--also-response-ttl",
        type=float,
        default=60.0,
        help="in the warm runs, also ordergraph with [cache] response_ttl_seconds at this value (default 60, the cached "
        "peer's longer TTL: the clock bound alike, events still drop answers at once; 0 for none)",
    )
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="Redis for --workers > 1 (keys under a per-run prefix, deleted after)")
    p.add_argument("--erp", choices=("rest", "sap-odata"), default="rest", help="how ordergraph reads the ERP: the REST contract (default) or SAP's OData v2 (the peer always reads REST)")
    p.add_argument("--apply-factor", type=float, default=4.0, help="--only apply: the plant changes offered, as a multiple of the demo's rate (default 4)")
    p.add_argument("--gateway-src", type=Path, help="run the gateway and plant from another checkout (e.g. a `git worktree` of a commit) to compare")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns a process exit code."""
    args = parse_args(argv)
    raise_fd_limit()
    size = SIZES["tiny" if args.tiny else "quick" if args.quick else "full"]
    scenarios = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = scenarios - set(SCENARIOS) - set(EXTRA_SCENARIOS)
    if unknown:
        print(f"unknown scenario(s): {', '.join(sorted(unknown))}; known: {', '.join(SCENARIOS + EXTRA_SCENARIOS)}", file=sys.stderr)
        return 2
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    out_dir: Path = args.out
    run_dir = out_dir / f"{stamp}-{size.name}"
    run_dir.mkdir(parents=True, exist_ok=True)
    if args.gateway_src is not None:
        procs.SOURCE = args.gateway_src.resolve()
    bench = Bench(size, args, run_dir)
    runner = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.run
    # SIGTERM unwinds like Ctrl-C, so the servers the run started are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        results = runner(bench.run(scenarios))
    finally:
        bench.stop_all()
        if args.workers > 1 or args.also_workers > 1 or "scaleout" in scenarios:
            with contextlib.suppress(Exception):  # no Redis: nothing was written there
                runner(_delete_redis_keys(args.redis_url, bench.redis_prefix))
    table = report.markdown(results)
    json_path = out_dir / f"{stamp}-{size.name}.json"
    md_path = out_dir / f"{stamp}-{size.name}.md"
    json_path.write_text(json.dumps(results, indent=2, default=str))
    md_path.write_text(table)
    print()
    print(table)
    print(f"wrote {md_path} and {json_path} (logs in {run_dir / 'logs'})")
    if size.name == "full" and not args.no_readme and scenarios == set(SCENARIOS):
        report.update_readme(BENCH_DIR / "README.md", report.markdown(results, profiles=False))
        print("updated bench/README.md with this run's table")
    return 0

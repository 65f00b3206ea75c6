"""The scale scenario: the same questions asked of plants of 2,000, 20,000 and 100,000 orders.

``python -m bench.scale [--sizes 2000,20000,100000] [--gateway-src DIR] [--samples 30] [--together [--ready-rounds N]]``

Per size, each part in its own process (the plant is ``bench.plant``, the gateway
``ordergraph serve``): the plant's start to ready (generation included), the gateway's
start to listening and to ready (the first evaluation of every order done: the log line
``orders evaluated in``), the gateway's RSS once ready and after the queries, and for each
question the first answer after ready (cold) and p50/p99 of ``--samples`` more (warm):

- ``order``: one order's full view (a different order each time);
- ``dashboard``: a dashboard page of 50 (the same page: the response cache may answer);
- ``dashboard LATE``: a dashboard page filtered by delivery risk, with ``totalCount``;
- ``exceptions``: the first page of 20 exceptions;
- ``impact``: ``impact(workCenterDown: WC-20, 8 h)``.

``--gateway-src`` measures another checkout (e.g. ``git worktree add /tmp/before main``)
with this harness: before and after a change, on the same machine, one after the other.
The machine's load average is recorded with each size: on a shared machine the figures
are noisy, compare ratios within one run. ``--together`` starts every size first, then asks
each question of the sizes in turn (``ask_sizes``), so the answers a growth ratio divides
are minutes closer in time, after each gateway's first full collection after start-up
(``settle_collectors``; ``--no-settle`` asks at once). ``--ready-rounds N`` then starts each size's gateway again,
the sizes in turn, until each has started N times (its plant keeps running; a new journal
each start): start to ready, its CPU and RSS are the median of the N starts (each one is in
``scale.json``), so their growth does not hang on two starts a minute apart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from . import procs
from .procs import free_port, loadavg, spawn
from .queries import DASHBOARD_FIELDS, FULL_FIELDS, WHERE_IS_MY_ORDER

SYSTEMS = ("erp", "mes", "wms", "qms", "tms")
READY_LINE = "orders evaluated in"

DASHBOARD = "query Dashboard { orders(first: 50) { pageInfo { hasNextPage endCursor } nodes {" + DASHBOARD_FIELDS + "} } }"
DASHBOARD_LATE = (
    "query DashboardLate { orders(first: 50, filter: {deliveryRisk: [LATE]}) { totalCount"
    " pageInfo { hasNextPage endCursor } nodes { deliveryRisk predictedDeliveryDate" + DASHBOARD_FIELDS + "} } }"
)
EXCEPTIONS = (
    "query Exceptions { exceptions(first: 20) { totalCount"
    " edges { node { id kind severity valueAtRisk { amount } affectedOrderCount affected { orderId } } } } }"
)
IMPACT = (
    'query Impact { impact(scenario: {workCenterDown: {workCenter: "WC-20", hours: 8}}) {'
    " totals { orders delayedOrders } orders { orderId predictedDeliveryDate daysLate } } }"
)
_ = FULL_FIELDS  # the full view is WHERE_IS_MY_ORDER's selection
QUESTIONS = ("order", "dashboard", "dashboard LATE", "exceptions", "impact")


def config(run_dir: Path, plant_url: str, port: int, tag: str) -> Path:
    lines = [
        "[gateway]", 'host = "127.0.0.1"', f"port = {port}", "graphiql = false", "",
        "[events]", f'journal_path = "{run_dir / f"journal-{tag}.sqlite"}"', "",
        "[auth]", 'mode = "open"', "",
        "[limits]", "max_cost = 1000000000", "rate_per_second = 0", "",
    ]  # fmt: skip
    for s in SYSTEMS:
        lines += [f"[sources.{s}]", f'base_url = "{plant_url}/{s}"', "max_connections = 100", ""]
    path = run_dir / f"gateway-{tag}.toml"
    path.write_text("\n".join(lines))
    return path


async def wait_for_line(proc: procs.Proc, text: str, timeout: float) -> float:
    """Monotonic time at which ``text`` appeared in the process's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
        if text in proc.log_path.read_text(errors="replace"):
            return time.monotonic()
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{proc.name}: no {text!r} after {timeout:.0f} s:\n{proc.log_tail()}")


async def ask(http: aiohttp.ClientSession, url: str, query: str, variables: dict | None = None) -> tuple[float, str]:
    """Seconds for one answer, from sending the request to its last byte received, and its
    first error ("" for a clean answer: only those are figures; an answer with errors is
    counted and named in the table instead). Decoding the JSON is the client's work, on
    the same cores: for the 764 KB exceptions page at 100,000 orders it added 6 ms at p50
    and 14 ms at p99 when it was timed too (before the twelfth round's last runs)."""
    body = {"query": query, **({"variables": variables} if variables else {})}
    t0 = time.perf_counter()
    async with http.post(url + "/graphql", json=body) as resp:
        raw = await resp.read()
    took = time.perf_counter() - t0
    data = json.loads(raw)
    if resp.status != 200 or data.get("errors"):
        errors = data.get("errors") or [{}]
        return took, str(errors[0].get("extensions", {}).get("code") or errors[0].get("message") or resp.status)
    return took, ""


async def full_collections(http: aiohttp.ClientSession, url: str) -> tuple[float, float]:
    """The gateway's full collections so far and their CPU seconds (``/metrics``; 0, 0 for
    a gateway without those metrics)."""
    return await _full_collections(http, url) or (0.0, 0.0)


async def _full_collections(http: aiohttp.ClientSession, url: str) -> tuple[float, float] | None:
    async with http.get(url + "/metrics") as resp:
        text = await resp.text()
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("ordergraph_gc_full_collection"))
    if "ordergraph_gc_full_collections_total" not in values:
        return None
    return float(values["ordergraph_gc_full_collections_total"]), float(values["ordergraph_gc_full_collection_seconds_total"])


async def settle_collectors(sizes: list[Size], timeout: float = 600.0) -> None:
    """Wait until every gateway has run its first full collection after start-up (due a
    minute after ready, ``[gateway] gc_full_seconds``, once no answer has been computed for
    a second). With several gateways on the same cores (``--together``), one's first pass
    otherwise ran beside another's answer: the 20,000-order gateway's (0.7-0.8 s of CPU) in
    the quiet second the 100,000-order what-if gave it, which that what-if then shared its
    cores with (its cold answer 12-14 % slower than the next). The pass's own cost is kept:
    ``first_full_collection_cpu_s`` per size. Gateways without the metric are not waited for."""
    timeout_at = time.monotonic() + timeout
    t0 = time.monotonic()
    async with aiohttp.ClientSession() as http:
        pending = list(sizes)
        while pending:
            for size in list(pending):
                got = await _full_collections(http, size.gateway.url)
                if got is None or got[0] >= 1:
                    pending.remove(size)
                    if got is not None:
                        size.out["first_full_collection_cpu_s"] = got[1]
                        print(f"  {size.out['orders']} orders: first full collection done after"
                              f" {time.monotonic() - t0:.0f} s ({got[1]:.1f} s CPU)", flush=True)  # fmt: skip
            if pending and time.monotonic() > timeout_at:
                raise RuntimeError(f"no full collection within {timeout:.0f} s: {[s.out['orders'] for s in pending]}")
            await asyncio.sleep(1.0)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


class Size:
    """One size's plant and gateway, running; ``out`` collects its figures."""

    def __init__(self, out: dict[str, Any], plant: procs.Proc, gateway: procs.Proc, questions: dict[str, tuple[str, Any]]):
        self.out, self.plant, self.gateway, self.questions = out, plant, gateway, questions

    def stop(self) -> None:
        self.gateway.stop()
        self.plant.stop()


async def start_gateway(out: dict[str, Any], plant_url: str, run_dir: Path, name: str) -> procs.Proc:
    """One gateway against a running plant (a journal of its own), up to its ready line: its
    listening and ready seconds, CPU and RSS go to ``out``, and to ``out["ready_rounds"]``."""
    port = free_port()
    cfg = config(run_dir, plant_url, port, name)
    t0 = time.monotonic()
    gateway = spawn(
        f"gateway-{name}",
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(cfg)],
        f"http://127.0.0.1:{port}",
        run_dir / "logs",
        cwd=procs.SOURCE,
    )
    try:
        await gateway.wait_ready(timeout=300)
        listening = time.monotonic() - t0
        ready = await wait_for_line(gateway, READY_LINE, 1800) - t0
    except BaseException:
        gateway.stop()
        raise
    rnd = {"listening_s": listening, "ready_s": ready, "rss_ready_mb": gateway.rss() / 2**20, "ready_cpu_s": gateway.cpu()}
    rounds = out.setdefault("ready_rounds", [])
    rounds.append(rnd)
    # One start: its own figures. Several (``--ready-rounds``): the median of each.
    out.update({k: statistics.median(r[k] for r in rounds) for k in rnd})
    print(
        f"  gateway listening in {listening:.1f} s, ready in {ready:.1f} s ({rnd['ready_cpu_s']:.1f} s CPU),"
        f" RSS {rnd['rss_ready_mb']:.0f} MB" + (f" (start {len(rounds)})" if len(rounds) > 1 else ""), flush=True,
    )  # fmt: skip
    return gateway


async def start_size(orders: int, args: argparse.Namespace, run_dir: Path, tag: str) -> Size:
    """The plant and the gateway of one size, started one after the other, the gateway ready."""
    out: dict[str, Any] = {"orders": orders, "gateway": tag, "load_before": loadavg()}
    log_dir = run_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    t0 = time.monotonic()
    plant = spawn(
        f"plant-{orders}-{tag}",
        [sys.executable, "-m", "bench.plant", "--port", str(port), "--orders", str(orders), "--latency-ms", str(args.latency_ms)],
        f"http://127.0.0.1:{port}",
        log_dir,
        cwd=procs.SOURCE,
    )
    try:
        await plant.wait_ready(timeout=1800)
        out["plant_ready_s"] = time.monotonic() - t0
        out["plant_cpu_s"] = plant.cpu()  # generation and pre-rendering: CPU, not the machine's load
        print(f"  plant of {orders} orders ready in {out['plant_ready_s']:.1f} s ({out['plant_cpu_s']:.1f} s CPU)", flush=True)
        gateway = await start_gateway(out, plant.url, run_dir, f"{orders}-{tag}")
    except BaseException:
        plant.stop()
        raise
    rng = random.Random(orders)
    ids = [str(10000001 + i) for i in rng.sample(range(orders), args.samples + 1)]
    questions: dict[str, tuple[str, Any]] = {
        "order": (WHERE_IS_MY_ORDER, lambda i: {"id": ids[i]}),
        "dashboard": (DASHBOARD, lambda i: None),
        "dashboard LATE": (DASHBOARD_LATE, lambda i: None),
        "exceptions": (EXCEPTIONS, lambda i: None),
        "impact": (IMPACT, lambda i: None),
    }
    return Size(out, plant, gateway, questions)


async def ask_sizes(sizes: list[Size], samples: int) -> None:
    """Each question's cold answer, then its warm ones, asked of every size in turn: with
    several sizes running together (``--together``), the sizes' answers to one question are
    minutes closer in time than one size after another, on a machine whose speed drifts."""
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for name in QUESTIONS:
            colds, answers = [], [[] for _ in sizes]
            passes = [await full_collections(http, size.gateway.url) for size in sizes]
            for size in sizes:
                query, variables = size.questions[name]
                colds.append(await ask(http, size.gateway.url, query, variables(0)))
            for i in range(samples):
                for size, got in zip(sizes, answers, strict=True):
                    query, variables = size.questions[name]
                    got.append(await ask(http, size.gateway.url, query, variables(i + 1)))
            for size, (cold, cold_error), got, before in zip(sizes, colds, answers, passes, strict=True):
                warm = [t for t, error in got if not error] or [float("nan")]
                gcs = [a - b for a, b in zip(await full_collections(http, size.gateway.url), before, strict=True)]
                errors = [e for e in [cold_error] + [e for _t, e in got] if e]
                f = size.out.setdefault("queries", {})[name] = {
                    "cold": cold if not cold_error else float("nan"),
                    "p50": statistics.median(warm),
                    "p99": pct(warm, 99),
                    "errors": len(errors),
                    "error": errors[0] if errors else "",
                    "slowest_s": max([cold] + [t for t, _e in got]),
                    # the gateway's full collections from the cold answer to the last (each a
                    # pause of every answer in flight), and their CPU seconds
                    "full_collections": gcs[0],
                    "full_collection_s": gcs[1],
                }
                print(f"  {size.out['orders']} orders, {name}: cold {f['cold'] * 1000:.0f} ms, p50 {f['p50'] * 1000:.0f} ms,"
                      f" p99 {f['p99'] * 1000:.0f} ms"
                      + (f", {gcs[0]:.0f} full collections ({gcs[1]:.1f} s CPU) meanwhile" if gcs[0] else "")
                      + (f", {f['errors']} errors ({f['error']}) after up to {f['slowest_s']:.0f} s" if errors else ""), flush=True)  # fmt: skip
    for size in sizes:
        size.out["rss_after_mb"] = size.gateway.rss() / 2**20
        size.out["load_after"] = loadavg()


async def measure(sizes: list[int], args: argparse.Namespace, run_dir: Path, tag: str) -> list[dict[str, Any]]:
    """Every size's figures: one size after another, or (``args.together``) all started
    first, one after another, then asked in turn."""
    results: list[dict[str, Any]] = []
    running: list[Size] = []
    try:
        for n in sizes:
            print(f"{tag}: {n} orders", flush=True)
            size = await start_size(n, args, run_dir, tag)
            running.append(size)
            if not args.together:
                await ask_sizes([size], args.samples)
                size.stop()
                running.remove(size)
                results.append(size.out)
                (run_dir / "scale.json").write_text(json.dumps(results, indent=2))
        for k in range(2, args.ready_rounds + 1):
            # The gateways started again in turn, each against its plant (still running),
            # with a new journal: start to ready's growth from one size to the next is
            # then a median of starts minutes apart, not of two on a drifting machine.
            for size in running:
                print(f"{tag}: {size.out['orders']} orders, start {k} of {args.ready_rounds}", flush=True)
                size.gateway.stop()
                size.gateway = await start_gateway(size.out, size.plant.url, run_dir, f"{size.out['orders']}-{tag}-{k}")
        if args.together:
            if args.settle:
                print(f"{tag}: waiting for each gateway's first full collection", flush=True)
                await settle_collectors(running)
            print(f"{tag}: asking {', '.join(str(n) for n in sizes)} orders in turn", flush=True)
            await ask_sizes(running, args.samples)
            results = [size.out for size in running]
    finally:
        for size in running:
            size.stop()
    return results


def cell(f: dict[str, Any]) -> str:
    if f.get("errors"):
        return f"{f['errors']} errors ({f['error']}, after up to {f['slowest_s']:.0f} s)"
    gcs = f" ({f['full_collections']:.0f} full GC)" if f.get("full_collections") else ""
    return f"{f['cold'] * 1000:.0f} · {f['p50'] * 1000:.0f} · {f['p99'] * 1000:.0f} ms" + gcs


def _cpu(r: dict[str, Any], key: str) -> str:
    """The process's CPU seconds to that point: on a shared machine the wall time also
    counts others' work, the CPU time does not."""
    return f" ({r[key]:.0f} s CPU)" if key in r else ""


def _rounds(r: dict[str, Any]) -> str:
    n = len(r.get("ready_rounds", ()))
    return f", median of {n} starts" if n > 1 else ""


def table(results: list[dict[str, Any]]) -> str:
    names = list(QUESTIONS)
    head = "| gateway | orders | plant ready (CPU) | gateway listening / ready (CPU) | RSS ready / after | " + " | ".join(
        f"{n} cold · p50 · p99" for n in names
    ) + " | load avg (before → after) |"
    lines = [head, "|" + " --- |" * (7 + len(names) - 1)]
    for r in results:
        q = r["queries"]
        cells = [
            r["gateway"], f"{r['orders']:,}", f"{r['plant_ready_s']:.0f} s" + _cpu(r, "plant_cpu_s"),
            f"{r['listening_s']:.1f} s / {r['ready_s']:.1f} s" + _cpu(r, "ready_cpu_s") + _rounds(r),
            f"{r['rss_ready_mb']:.0f} / {r['rss_after_mb']:.0f} MB",
            *(cell(q[n]) for n in names),
            f"{r['load_before']} → {r['load_after']}",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="2000,20000,100000", help="plant sizes in orders, comma-separated")
    p.add_argument("--samples", type=int, default=30, help="warm answers per question (p50/p99 over them)")
    p.add_argument("--latency-ms", type=float, default=2.0, help="per-call latency of every simulated source")
    p.add_argument("--gateway-src", type=Path, help="measure the gateway and plant of another checkout")
    p.add_argument("--tag", default="", help="name of this gateway in the table (default: after, or before with --gateway-src)")
    p.add_argument("--out", type=Path, default=procs.ROOT / "bench" / "results", help="results folder")
    p.add_argument(
        "--together", action="store_true",
        help="start every size first (one after another), then ask each question of the sizes in turn",
    )  # fmt: skip
    p.add_argument(
        "--ready-rounds", type=int, default=1, metavar="N",
        help="with --together: start each size's gateway N times in turn, start to ready the median (default 1)",
    )  # fmt: skip
    p.add_argument(
        "--no-settle", dest="settle", action="store_false",
        help="with --together: ask at once, not after each gateway's first full collection",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.ready_rounds < 1:
        p.error("--ready-rounds: at least 1")
    if args.ready_rounds > 1 and not args.together:
        p.error("--ready-rounds needs --together (the sizes' gateways start again in turn)")
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        p.error("--sizes: whole numbers separated by commas, e.g. 2000,20000")
    if any(n < 100 for n in sizes):
        p.error("--sizes: at least 100 orders each")
    if args.gateway_src is not None:
        if not (args.gateway_src / "gateway" / "cli.py").is_file():
            p.error(f"--gateway-src {args.gateway_src}: not an ordergraph checkout")
        procs.SOURCE = args.gateway_src.resolve()
    tag = args.tag or ("before" if args.gateway_src else "after")
    run_dir = args.out / f"scale-{time.strftime('%Y%m%d-%H%M%S')}-{tag}"
    run_dir.mkdir(parents=True, exist_ok=True)
    procs.raise_fd_limit()
    results = asyncio.run(measure(sizes, args, run_dir, tag))
    (run_dir / "scale.json").write_text(json.dumps(results, indent=2))
    text = table(results)
    (run_dir / "scale.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

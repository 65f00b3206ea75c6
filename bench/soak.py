"""Soak: ``python -m bench --only soak`` — a long run at twice the demo's load.

One warm gateway (fresh process) carries, for the whole run:

- plant events: the plant's driver moves orders at twice the default demo's rate of world
  changes (``ordergraph demo``: 2,000 orders, plant clock at 600×, which makes about
  ``DEMO_CHANGES_PER_SECOND`` changes per second; measured over 120 plant steps of its
  ``PlantDriver``), every change posted as a signed CloudEvent by the plant's emitter;
- the three query workloads, open loop at a fixed rate each (``QUERY_RATE`` requests per
  second per workload: twice a demo of ten viewers per workload refreshing every second),
  so a slower gateway shows as longer latencies and a growing queue, not as fewer requests;
- 1,000 WebSocket subscribers (``bench.subs``, two processes), one ``orderChanges``
  subscription each, round-robin over the customers.

Every window the harness samples the gateway's RSS (its process tree), its event backlog
(``ordergraph_event_backlog`` on ``/metrics``), its CPU, and each workload's p50/p99 over
the window. The summary: RSS growth after warm-up (the last window against the first window
after the warm-up share of the run), the backlog's trend (first and last third), and p99
drift (the median p99 of the last third of the windows over the first third's).

Full: 10 minutes in 30-second windows; quick: 90 s in 10-second windows; tiny: seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

import aiohttp

from . import procs
from .loadgen import percentile
from .procs import CpuMeter, child_env, read_subscriber_client

if TYPE_CHECKING:
    from .run import Bench

DEMO_CHANGES_PER_SECOND = 23.0  # `ordergraph demo` defaults, measured (see the docstring)
LOAD_FACTOR = 2.0
QUERY_RATE = 2 * 10.0  # requests per second per workload
# (seconds, window seconds, subscribers, warm-up share of the run) per size
SOAK_SIZES = {"full": (600.0, 30.0, 1000, 0.2), "quick": (90.0, 10.0, 1000, 0.2), "tiny": (9.0, 3.0, 20, 0.34)}


async def _open_loop(
    http: aiohttp.ClientSession, url: str, bodies: list[bytes], rate: float, stop: asyncio.Event, window: list[dict[str, Any]], headers: dict[str, str]
) -> None:
    """Send ``rate`` requests per second (each on time, whatever the answers take)."""
    inflight: set[asyncio.Task[None]] = set()

    async def one(body: bytes) -> None:
        t0 = time.perf_counter()
        ok = False
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            async with http.post(url, data=body, headers={"Content-Type": "application/json", **headers}) as resp:
                data = await resp.read()
                ok = resp.status == 200 and b'"errors"' not in data
        window[-1]["latencies"].append((time.perf_counter() - t0) * 1000)
        window[-1]["errors"] += not ok

    start = time.monotonic()
    sent = 0
    while not stop.is_set():
        due = int((time.monotonic() - start) * rate) + 1
        while sent < due:
            task = asyncio.create_task(one(bodies[sent % len(bodies)]))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
            sent += 1
        await asyncio.sleep(max(0.0, sent / rate - (time.monotonic() - start)))
    if inflight:
        await asyncio.wait(inflight, timeout=30)


CACHE_METRICS = {
    "record_cache_entries": "ordergraph_record_cache_entries",
    "response_cache_entries": "ordergraph_response_cache_entries",
    "response_cache_bytes": "ordergraph_response_cache_bytes",
}


async def _cache_sizes(bench: Bench) -> dict[str, float | None]:
    """The caches' sizes from the gateway's ``/metrics`` (summed over their labels)."""
    assert bench.http is not None and bench.gateway is not None
    out: dict[str, float | None] = dict.fromkeys(CACHE_METRICS)
    with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
        async with bench.http.get(bench.gateway.url + "/metrics") as resp:
            text = await resp.text()
        for line in text.splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            for key, metric in CACHE_METRICS.items():
                if name == metric:
                    out[key] = (out[key] or 0.0) + float(line.rsplit(" ", 1)[1])
    return out


async def soak(bench: Bench) -> None:
    """The soak scenario: results in ``bench.results["soak"]``."""
    seconds, window_s, n_subs, warmup_share = SOAK_SIZES[bench.size.name]
    rate = LOAD_FACTOR * DEMO_CHANGES_PER_SECOND
    bench.stop_gateway()
    await bench.start_gateway("warm")
    gw = bench.gateway
    assert gw is not None and bench.http is not None
    from .run import say

    say(
        f"soak: {seconds:g} s at {LOAD_FACTOR:g}x the demo's load: {rate:g} plant changes/s, {QUERY_RATE:g} req/s on each of "
        f"3 workloads (open loop), {n_subs:,} subscribers; {window_s:g}-second windows"
    )
    loads = await bench.workloads("ordergraph", gw)
    # subscribers: two processes, every connection subscribed before the load starts
    customers = bench.customers
    clients = []
    procs_n = 2
    for i in range(procs_n):
        count = n_subs // procs_n + (1 if i < n_subs % procs_n else 0)
        p = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.subs", "--url", gw.url.replace("http://", "ws://") + "/graphql", "--count", str(count),
            "--customers", ",".join(customers), "--offset", str(i), "--init", json.dumps(bench.ws_init),
            "--result", str(bench.run_dir / f"soak-subs-{i}.json"),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=str(procs.SOURCE), env=child_env(),
        )
        clients.append({"proc": p, "ready": None, "count": 0, "file": bench.run_dir / f"soak-subs-{i}.json"})

    readers = [asyncio.create_task(read_subscriber_client(c)) for c in clients]
    await procs.subscribers_ready(clients, "a soak subscriber process")
    connected = sum(c["ready"][0] for c in clients)
    for c in clients:
        c["proc"].stdin.write(f"START {time.time()}\n".encode())
        await c["proc"].stdin.drain()

    await bench.plant_post("/bench/driver", {"gateway": gw.url, "rate": rate, "orders": bench.orders})
    stop = asyncio.Event()
    windows: dict[str, list[dict[str, Any]]] = {w: [{"latencies": [], "errors": 0}] for w in loads}
    senders = [
        asyncio.create_task(_open_loop(bench.http, gw.url + "/graphql", bodies, QUERY_RATE, stop, windows[w], bench.hdrs("ordergraph")))
        for w, bodies in loads.items()
    ]
    samples: list[dict[str, Any]] = []
    snapshots = bool(os.environ.get("ORDERGRAPH_DEBUG_TRACEMALLOC"))
    warm_k = max(1, math.ceil(warmup_share * seconds / window_s))
    t0 = time.monotonic()
    try:
        for k in range(1, math.ceil(seconds / window_s) + 1):
            meter = CpuMeter({"gateway": gw})
            await asyncio.sleep(max(0.0, t0 + k * window_s - time.monotonic()))
            cpu = meter.read()["gateway"]
            row: dict[str, Any] = {
                "t_s": round(time.monotonic() - t0, 1),
                "rss_bytes": gw.rss(),
                "backlog": await bench.metric("ordergraph_event_backlog"),
                "gateway_cpu": cpu,
                # the bounded caches, to tell their filling (warm-up) from growth
                **await _cache_sizes(bench),
            }
            for w, ws in windows.items():
                cur = ws[-1]
                ws.append({"latencies": [], "errors": 0})
                lat = sorted(cur["latencies"])
                row[w] = {"requests": len(lat), "errors": cur["errors"], "p50_ms": round(percentile(lat, 50), 1), "p99_ms": round(percentile(lat, 99), 1)}
            samples.append(row)
            if snapshots and (k == warm_k or k == math.ceil(seconds / window_s)):
                # gateway/memdebug.py: a tracemalloc snapshot after the warm-up and at the end
                os.kill(gw.pid, signal.SIGUSR2)
            say(
                f"   t={row['t_s']:6.1f} s  RSS {row['rss_bytes'] / 2**20:7.1f} MiB  backlog {row['backlog']}  cpu {cpu:.2f}  "
                f"caches {row['record_cache_entries']} records, {row['response_cache_entries']} answers  "
                + "  ".join(f"{w.split()[0]} p99 {row[w]['p99_ms']:.0f} ms" for w in loads)
            )
    finally:
        stop.set()
        await asyncio.gather(*senders, return_exceptions=True)
        driver = await bench.plant_post("/bench/driver/stop")
        await procs.stop_subscriber_clients(clients, readers, tolerant=True)
    results = [json.loads(c["file"].read_text()) for c in clients if c["file"].exists()]
    bench.results["soak"] = summarize(samples, list(loads), seconds=seconds, window_s=window_s, warmup_share=warmup_share) | {
        "event_rate": rate,
        "latency_ms": bench.latency_ms,
        "query_rate_per_workload": QUERY_RATE,
        "subscribers": n_subs,
        "connected": connected,
        "messages": sum(r["received"] + r["foreign"] for r in results),
        "subscriber_errors": sum(r["errors"] for r in results),
        "driver": driver,
        "samples": samples,
    }
    s = bench.results["soak"]
    say(
        f"   RSS growth after warm-up {s['rss_growth_pct']} % (after the caches' steady state at t={s['caches_steady_t_s']} s: "
        f"{s['rss_growth_after_caches_pct']} %); caches at warm-up {s['caches_warm']}, at the end {s['caches_end']}; backlog first third {s['backlog_first']} -> last third {s['backlog_last']} "
        f"(max {s['backlog_max']}); p99 drift " + ", ".join(f"{w} {d}x" for w, d in s["p99_drift"].items())
    )


def summarize(samples: list[dict[str, Any]], workloads: list[str], *, seconds: float, window_s: float, warmup_share: float) -> dict[str, Any]:
    """RSS growth after warm-up, the backlog's trend and p99 drift over the windows."""
    if not samples:
        return {"windows": 0}
    warm = next((i for i, s in enumerate(samples) if s["t_s"] >= warmup_share * seconds), 0)
    base = samples[warm]["rss_bytes"]
    third = max(1, len(samples) // 3)
    first, last = samples[:third], samples[-third:]

    def med(xs: list[float]) -> float:
        xs = sorted(xs)
        return xs[len(xs) // 2]

    backlogs = [s["backlog"] or 0 for s in samples]
    # The caches are bounded: filling them is warm-up, not a leak. "Caches steady" is the
    # first window after the warm-up share from which the record cache's entries stay within
    # 10 % of their final count (the response cache is left out: events empty it again and
    # again, and it holds at most 10,000 answers); growth is also given from there.
    steady = None
    final = samples[-1].get("record_cache_entries") or 0
    for i in range(warm, len(samples)):
        if all(abs((r.get("record_cache_entries") or 0) - final) <= 0.1 * final for r in samples[i:]):
            steady = i
            break
    steady_base = samples[steady]["rss_bytes"] if steady is not None and steady < len(samples) - 1 else None
    return {
        "seconds": seconds,
        "window_s": window_s,
        "windows": len(samples),
        "rss_warm_bytes": base,
        "rss_end_bytes": samples[-1]["rss_bytes"],
        "rss_max_bytes": max(s["rss_bytes"] for s in samples[warm:]),
        "rss_growth_pct": round(100 * (samples[-1]["rss_bytes"] - base) / base, 1) if base else None,
        "caches_steady_t_s": samples[steady]["t_s"] if steady_base else None,
        "rss_caches_steady_bytes": steady_base,
        "rss_growth_after_caches_pct": round(100 * (samples[-1]["rss_bytes"] - steady_base) / steady_base, 1) if steady_base else None,
        "caches_warm": {k: samples[warm].get(k) for k in CACHE_METRICS},
        "caches_end": {k: samples[-1].get(k) for k in CACHE_METRICS},
        "backlog_first": med([b for b in backlogs[:third]]),
        "backlog_last": med([b for b in backlogs[-third:]]),
        "backlog_max": max(backlogs),
        "p99_first_ms": {w: med([s[w]["p99_ms"] for s in first]) for w in workloads},
        "p99_last_ms": {w: med([s[w]["p99_ms"] for s in last]) for w in workloads},
        "p99_drift": {w: round(med([s[w]["p99_ms"] for s in last]) / max(med([s[w]["p99_ms"] for s in first]), 1e-9), 2) for w in workloads},
        "requests": {w: sum(s[w]["requests"] for s in samples) for w in workloads},
        "errors": sum(s[w]["errors"] for s in samples for w in workloads),
    }

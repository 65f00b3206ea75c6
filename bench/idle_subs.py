"""Memory per idle subscription: ``python -m bench.idle_subs --count 3000,10000``.

For each count, a fresh gateway (``ordergraph serve``'s server settings, the bench's warm
configuration) over the bench plant; its RSS once idle, then ``count`` WebSocket
connections (``bench.subs``, up to 5,000 per client process) each holding one
``orderChanges`` subscription, nothing sent to them; the RSS again once all are subscribed
(plus a second's settling). Prints the growth per connection in KiB. ``--gateway-src DIR``
runs another checkout's gateway and plant (a before/after comparison: run it twice). With ``ORDERGRAPH_DEBUG_TRACEMALLOC=PREFIX`` set
the gateway writes a tracemalloc snapshot before and after (``gateway/memdebug.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp

from . import procs
from .procs import child_env, raise_fd_limit, read_subscriber_client
from .run import DEFAULT_OUT, SIZES, Bench, parse_args, say

PER_PROCESS = 5000


async def measure(bench: Bench, count: int) -> dict[str, float]:
    await bench.start_gateway("warm")
    gw = bench.gateway
    assert gw is not None
    await bench.settle(gw)
    rss0 = gw.rss()
    snapshots = bool(os.environ.get("ORDERGRAPH_DEBUG_TRACEMALLOC"))
    if snapshots:  # gateway/memdebug.py: a tracemalloc snapshot before and after
        os.kill(gw.pid, signal.SIGUSR2)
        await asyncio.sleep(5)
    n_procs = max(1, math.ceil(count / PER_PROCESS))
    clients = []
    for i in range(n_procs):
        n = count // n_procs + (1 if i < count % n_procs else 0)
        p = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.subs", "--url", gw.url.replace("http://", "ws://") + "/graphql", "--count", str(n),
            "--customers", ",".join(bench.customers), "--offset", str(i), "--init", json.dumps(bench.ws_init),
            "--result", str(bench.run_dir / f"idle-subs-{count}-{i}.json"),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=str(procs.SOURCE), env=child_env(),
        )
        clients.append({"proc": p, "ready": None, "count": 0, "file": bench.run_dir / f"idle-subs-{count}-{i}.json"})
    readers = [asyncio.create_task(read_subscriber_client(c)) for c in clients]
    t0 = time.monotonic()
    await procs.subscribers_ready(clients)
    connect_s = time.monotonic() - t0
    await asyncio.sleep(1.0)
    await bench.settle(gw)
    rss1 = gw.rss()
    if snapshots:
        os.kill(gw.pid, signal.SIGUSR2)
        await asyncio.sleep(10)
    connected = sum(c["ready"][0] for c in clients)
    await procs.stop_subscriber_clients(clients, readers, tolerant=True)
    bench.stop_gateway()
    row = {
        "count": count,
        "connected": connected,
        "connect_s": round(connect_s, 1),
        "rss_before_mib": round(rss0 / 2**20, 1),
        "rss_after_mib": round(rss1 / 2**20, 1),
        "kib_per_connection": round((rss1 - rss0) / 1024 / max(connected, 1), 1),
    }
    say(f"   {connected} of {count} subscribed in {connect_s:.1f} s: RSS {row['rss_before_mib']} -> {row['rss_after_mib']} MiB, "
        f"{row['kib_per_connection']} KiB per connection")
    return row


async def main_async(bench: Bench, counts: list[int], rounds: int) -> list[dict[str, float]]:
    rows = []
    async with aiohttp.ClientSession() as http:
        bench.http = http
        await bench.start_plant()
        await bench.learn_plant()
        for _ in range(rounds):
            for count in counts:
                rows.append(await measure(bench, count))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.idle_subs")
    p.add_argument("--count", default="3000", help="comma-separated connection counts (default 3000)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--gateway-src", type=Path, help="run the gateway and plant from another checkout")
    a = p.parse_args(argv)
    raise_fd_limit()
    args = parse_args(["--quick", "--no-peer", "--latency-ms", "1", "--also-workers", "0"])
    if a.gateway_src is not None:
        procs.SOURCE = a.gateway_src.resolve()
    run_dir = DEFAULT_OUT / f"{dt.datetime.now(dt.UTC).strftime('%Y%m%d-%H%M%S')}-idle-subs"
    run_dir.mkdir(parents=True, exist_ok=True)
    bench = Bench(SIZES["quick"], args, run_dir)
    try:
        rows = asyncio.run(main_async(bench, [int(c) for c in a.count.split(",")], a.rounds))
    finally:
        bench.stop_all()
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

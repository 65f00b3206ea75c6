"""Scale-out cost: ``python -m bench --only scaleout`` — Redis commands per request and per event.

A gateway started as ``ordergraph serve --workers N`` (default 2; ``--workers`` or
``--also-workers`` set N) on the Redis at ``--redis-url``, under its own key prefix. The
harness watches Redis with ``MONITOR`` and counts the commands that name the prefix (every
key, channel and script call of these replicas does; other clients of a shared Redis do
not), in phases:

1. **idle**: nothing sent; the replicas' own polling (journal hand-out, leases);
2. **events**: signed single-event CloudEvents, one per request, sent at a steady rate,
   then until the backlog is empty;
3. **misses**: every "where is my order" body once (each replica's caches cold for it);
4. **hits**: the same bodies for some seconds at c = 16 with wrk (warm caches).

Each phase's count, less the idle rate over its duration, divided by its events or
requests, is the cost per unit. Round trips (commands a replica sent) are counted apart
from the commands its Lua scripts ran inside Redis (``lua:*``, shown by MONITOR too): the
round trips bound a replica's latency, both load Redis's one thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import time
from typing import TYPE_CHECKING, Any

from . import queries as Q
from .ingest import sales_order_event, signed_request
from .loadgen import run_load

if TYPE_CHECKING:
    from .run import Bench

# (events, event rate, seconds of hits, idle seconds) per size
SCALEOUT_SIZES = {"full": (400, 20.0, 10.0, 5.0), "quick": (150, 20.0, 5.0, 3.0), "tiny": (20, 20.0, 1.0, 1.0)}


class Monitor:
    """Counts the Redis commands that mention ``needle`` (by command name), via MONITOR."""

    def __init__(self, url: str, needle: str) -> None:
        self.url = url
        self.needle = needle
        self.counts: collections.Counter[str] = collections.Counter()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 10)

    async def _run(self) -> None:
        import redis.asyncio as redis

        client = redis.from_url(self.url)
        try:
            async with client.monitor() as m:
                self._ready.set()
                async for cmd in m.listen():
                    text = cmd.get("command", "")
                    if self.needle in text:
                        # commands run inside a script (MONITOR shows them too) are no round trip
                        name = text.split(" ", 1)[0].upper()
                        self.counts[f"lua:{name}" if cmd.get("client_type") == "lua" else name] += 1
        finally:
            await client.aclose()

    def snapshot(self) -> collections.Counter[str]:
        return collections.Counter(self.counts)

    async def settle(self, quiet: float = 0.5) -> None:
        """Give the monitor stream time to deliver what Redis already ran."""
        await asyncio.sleep(quiet)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


def _delta(a: collections.Counter[str], b: collections.Counter[str]) -> dict[str, int]:
    return {k: b[k] - a.get(k, 0) for k in b if b[k] - a.get(k, 0) > 0}


async def scaleout_costs(bench: Bench) -> None:
    """Results in ``bench.results["scaleout"]``."""
    from .run import say

    workers = bench.args.workers if bench.args.workers > 1 else max(2, bench.args.also_workers)
    if not await bench.redis_reachable():
        bench.results["notes"].append(f"scaleout: no Redis at {bench.args.redis_url}; not measured")
        say("scaleout: no Redis reachable; skipped")
        return
    n_events, rate, hit_seconds, idle_seconds = SCALEOUT_SIZES[bench.size.name]
    bench.stop_gateway()
    gw = await bench.spawn_gateway("warm", workers)
    bench.gateway = gw
    await bench.settle(gw)
    prefix = f"{bench.redis_prefix}{bench.starts}:"
    say(f"scaleout: Redis commands of `serve --workers {workers}` (MONITOR, keys under {prefix})")
    mon = Monitor(bench.args.redis_url, prefix)
    await mon.start()
    assert bench.http is not None
    phases: list[dict[str, Any]] = []
    try:
        # 1. idle
        c0, t0 = mon.snapshot(), time.monotonic()
        await asyncio.sleep(idle_seconds)
        await mon.settle(0)
        idle = _delta(c0, mon.snapshot())
        idle_s = time.monotonic() - t0
        idle_rate = sum(idle.values()) / idle_s
        idle_trips = sum(v for k, v in idle.items() if not k.startswith("lua:")) / idle_s
        phases.append({"phase": "idle", "units": None, "seconds": round(idle_s, 2), "commands": idle, "total": sum(idle.values())})

        # 2. events, one per request, at a steady rate; then until the backlog is empty
        targets = bench.orders[bench.size.hot_orders + 60 :] or bench.orders
        c0, t0 = mon.snapshot(), time.monotonic()
        accepted = 0
        for k in range(n_events):
            so = targets[k % len(targets)]
            body, hdrs = signed_request([sales_order_event(so, f"bench-scaleout-{os.getpid()}-{k}")])
            async with bench.http.post(gw.url + "/events", data=body, headers=hdrs) as resp:
                accepted += resp.status == 202
            await asyncio.sleep(max(0.0, (k + 1) / rate - (time.monotonic() - t0)))
        for _ in range(100):
            if not await bench.metric("ordergraph_event_backlog"):
                break
            await asyncio.sleep(0.2)
        await mon.settle()
        phases.append(_phase("events", accepted, c0, mon.snapshot(), time.monotonic() - t0, idle_rate, idle_trips))

        # 3. misses: every body once; 4. hits: wrk on the same bodies
        bodies = [Q.body(Q.WHERE_IS_MY_ORDER, {"id": so}) for so in bench.hot]
        c0, t0 = mon.snapshot(), time.monotonic()
        for i in range(0, len(bodies), 8):
            await asyncio.gather(*(bench.gql("ordergraph", gw, b) for b in bodies[i : i + 8]))
        await mon.settle()
        phases.append(_phase("queries, caches cold (misses)", len(bodies), c0, mon.snapshot(), time.monotonic() - t0, idle_rate, idle_trips))
        c0, t0 = mon.snapshot(), time.monotonic()
        out = await run_load(gw.url + "/graphql", bodies, connections=16, duration=hit_seconds, headers=bench.hdrs("ordergraph"), use_wrk=bench.use_wrk)
        await mon.settle()
        row = _phase("queries, caches warm (mostly hits)", out["requests"], c0, mon.snapshot(), time.monotonic() - t0, idle_rate, idle_trips)
        row["requests_per_second"] = out["requests_per_second"]
        row["errors"] = out["errors"]
        phases.append(row)
    finally:
        await mon.stop()
        bench.stop_gateway()
    bench.results["scaleout"] = {"workers": workers, "idle_commands_per_second": round(idle_rate, 1), "phases": phases}
    for p in phases[1:]:
        say(f"   {p['phase']:<36} {p['units']:>6} units: {p['total']:>7} commands, {p['per_unit']} per unit (net of idle): {p['commands']}")


def _phase(
    name: str, units: int, a: collections.Counter[str], b: collections.Counter[str], seconds: float, idle_rate: float, idle_trips: float
) -> dict[str, Any]:
    commands = _delta(a, b)
    total = sum(commands.values())
    trips = sum(v for k, v in commands.items() if not k.startswith("lua:"))
    net = max(0.0, total - idle_rate * seconds)
    return {
        "phase": name,
        "units": units,
        "seconds": round(seconds, 2),
        "commands": commands,
        "total": total,
        "round_trips": trips,
        "per_unit": round(net / units, 2) if units else None,
        "round_trips_per_unit": round(max(0.0, trips - idle_trips * seconds) / units, 2) if units else None,
        "per_unit_by_command": {k: round(v / units, 3) for k, v in commands.items()} if units else {},
    }

"""The benchmark's simulated plant: ``ordergraph simulate`` plus a rate-controlled event driver.

``python -m bench.plant --port P --orders N --latency-ms 20`` serves the five source APIs
like ``ordergraph simulate --speed 0``, and adds two routes for the harness:

- ``POST /bench/driver`` ``{"gateway": URL, "rate": changes/s, "orders": [ids]}`` starts
  moving the given orders one lifecycle step at a time, at ``rate`` world changes per
  second; the plant's own ``EventEmitter`` posts every change to the gateway as a signed
  CloudEvent (with its usual duplicates, reordering and notification-only events);
  ``"gateways": [URL, ...]`` instead sends every event to each of several gateways;
- ``POST /bench/driver/stop`` stops it and answers what was sent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
from typing import Any

import orjson
from aiohttp import web

from gateway.config import DEV_SECRETS
from sources.simulator.app import SERVER_LIMITS, create_app, keep_world_out_of_collections
from sources.simulator.emitter import EventEmitter
from sources.simulator.world import World

from .procs import raise_fd_limit


class Driver:
    """Moves orders at a set rate of world changes; the emitter sends the events."""

    def __init__(self, world: World, gateway: str | list[str], rate: float, orders: list[str], seed: int = 5) -> None:
        self.world = world
        self.rate = rate
        known = set(world.sales_orders)
        self.orders = [o for o in orders if o in known] or list(world.sales_orders)
        self.rng = random.Random(seed)
        # One emitter per gateway: gateways measured side by side each get every event.
        gateways = [gateway] if isinstance(gateway, str) else list(gateway)
        self.emitters = [EventEmitter(world, g, DEV_SECRETS) for g in gateways]
        self.emitter = self.emitters[0]
        self.changes = 0
        self.advances = 0
        self.started = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Any = None

    def _count(self, change: Any) -> None:
        self.changes += 1

    def start(self) -> None:
        for e in self.emitters:
            e.start()
        self._unsubscribe = self.world.subscribe(self._count)
        self.started = time.monotonic()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        tick = 0.02
        while True:
            due = self.rate * (time.monotonic() - self.started)
            while self.changes < due and self.orders:
                so = self.rng.choice(self.orders)
                if not self.world.advance_order(so):
                    self.orders.remove(so)  # delivered: nothing more to move
                self.advances += 1
            await asyncio.sleep(tick)

    async def stop(self) -> dict[str, Any]:
        seconds = time.monotonic() - self.started
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._unsubscribe:
            self._unsubscribe()
        for e in self.emitters:
            with contextlib.suppress(TimeoutError):
                await e.flush(timeout=30)
            await e.close()
        s = self.emitter.stats  # the first gateway's (every emitter sends the same changes)
        return {
            "seconds": round(seconds, 3),
            "advances": self.advances,
            "changes": self.changes,
            "changes_per_second": round(self.changes / seconds, 2) if seconds else 0,
            "events_sent": s.sent,
            "duplicates": s.duplicates,
            "reordered": s.reordered,
            "notifications": s.notifications,
            "retries": s.retries,
            "rejected": sum(e.stats.rejected for e in self.emitters),
            "gateways": len(self.emitters),
        }


async def serve(host: str, port: int, orders: int, seed: int, latency_ms: float) -> None:
    raise_fd_limit()
    print(f"generating the plant: {orders} orders, seed {seed} ...", flush=True)

    def build() -> World:
        world = World.generate(orders, 50, seed, None)
        world.prerender()
        return world

    world = await asyncio.to_thread(build)
    keep_world_out_of_collections()  # its collections would stall the gateways it serves
    app = create_app(world, latency_ms)
    state: dict[str, Driver | None] = {"driver": None}

    async def start_driver(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read() or b"{}")
        if state["driver"] is not None:
            await state["driver"].stop()
        driver = Driver(world, body.get("gateways") or body["gateway"], float(body.get("rate", 20)), list(body.get("orders") or []))
        driver.start()
        state["driver"] = driver
        return web.json_response({"started": True, "orders": len(driver.orders)})

    async def stop_driver(request: web.Request) -> web.Response:
        driver, state["driver"] = state["driver"], None
        stats = await driver.stop() if driver else {}
        return web.json_response(stats)

    async def advance_acked(request: web.Request) -> web.Response:
        """Move one order one step and answer once the gateway acknowledged (202) every
        event emitted so far: the freshness probe reads right after this."""
        driver = state["driver"]
        if driver is None:
            return web.json_response({"error": "no driver running"}, status=409)
        started = time.monotonic()
        changes = world.advance_order(request.match_info["sales_order"])
        await asyncio.gather(*(e.flush(timeout=30) for e in driver.emitters))
        return web.json_response({"changes": len(changes), "acked_after_ms": round((time.monotonic() - started) * 1000, 1)})

    app.router.add_post("/bench/advance/{sales_order}", advance_acked)
    app.router.add_post("/bench/driver", start_driver)
    app.router.add_post("/bench/driver/stop", stop_driver)
    runner = web.AppRunner(app, access_log=None, **SERVER_LIMITS)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=4096).start()
    print(f"simulated plant on http://{host}:{port} (latency {latency_ms:g} ms per call)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        if state["driver"] is not None:
            await state["driver"].stop()
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.plant", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8100)
    p.add_argument("--orders", type=int, default=2000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--latency-ms", type=float, default=20.0)
    a = p.parse_args(argv)
    run = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        run = uvloop.run  # the plant serves both gateways: keep it from being the bottleneck
    with contextlib.suppress(KeyboardInterrupt):
        run(serve(a.host, a.port, a.orders, a.seed, a.latency_ms))


if __name__ == "__main__":
    main()

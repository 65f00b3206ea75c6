"""How long ``impact`` (what-if) and the first exception evaluation take on the demo plant.

    python -m bench.impact_whatif [--orders 2000] [--latency-ms 3] [--repeat 5]

Starts the simulated plant with ``ordergraph demo``'s defaults (2,000 orders, 3 ms per
source call) and a gateway on loopback, in this process; waits for the exception
tracker's first evaluation of every order; then asks ``impact`` for every work centre
(8 h down), a blocked batch, a short material and a late truck, and prints wall time per
scenario (first call with a cold cache, then the median of ``--repeat`` warm calls) and
the source calls each made. Numbers only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import time

import aiohttp
import uvicorn

from gateway.app import create_app
from gateway.config import AuthConfig, Config
from sources.simulator.app import start_simulator

QUERY = """
query($scenario: ImpactScenario!) {
  impact(scenario: $scenario) {
    totals { orders delayedOrders newlyLateOrders valueAtRisk { amount } }
    orders { orderId predictedDeliveryDate daysLate severity valueAtRisk { amount } }
  }
}
"""


async def _calls(http: aiohttp.ClientSession, plant_url: str) -> int:
    async with http.get(f"{plant_url}/control/stats") as resp:
        return sum((await resp.json())["requests"].values())


async def main(orders: int, latency_ms: float, repeat: int) -> None:
    sim = await start_simulator("127.0.0.1", 0, orders=orders, latency_ms=latency_ms)
    sim.world.set_speed(0)
    cfg = Config.for_plant(sim.url)
    cfg.events.journal_path = ":memory:"
    cfg.auth = AuthConfig(mode="open")
    app = create_app(cfg, domain_clock=sim.world.now)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/graphql"
    gw = app.state.gateway
    started = time.perf_counter()
    await gw.exceptions.settled(300)
    print(
        f"first exception evaluation: {orders} orders in {time.perf_counter() - started:.2f} s, "
        f"{len(gw.exceptions.open_exceptions())} exceptions open"
    )

    world = sim.world
    pos = list(world.tables["A_ProductionOrder"].records())
    batch = next(po.batch for po in pos if po.sales_order in world.orders_in_state("QUALITY_RELEASED") and po.batch)
    released = set(world.orders_in_state("RELEASED"))
    material = next(
        c.material
        for c in world.tables["A_ComponentAvailability"].records()
        if any(po.manufacturing_order == c.manufacturing_order and po.sales_order in released for po in pos)
    )
    truck = world.shipment_of(sorted(world.orders_in_state("IN_TRANSIT"))[0])
    until = (world.now() + dt.timedelta(days=10)).date().isoformat()
    scenarios = {
        **{
            f"{wc} down 8 h": {"workCenterDown": {"workCenter": wc, "hours": 8}}
            for wc in sorted(world.tables["A_WorkCenter"].keys())
        },
        f"batch {batch} blocked": {"batchBlocked": {"batch": batch}},
        f"{material} short 500": {"materialShort": {"material": material, "quantity": 500, "until": until}},
        f"truck {truck} +24 h": {"shipmentDelayed": {"trackingNumber": truck, "hours": 24}},
    }
    async with aiohttp.ClientSession() as http:

        async def ask(scenario: dict) -> tuple[float, dict]:
            t = time.perf_counter()
            async with http.post(url, json={"query": QUERY, "variables": {"scenario": scenario}}) as resp:
                body = await resp.json()
            assert "errors" not in body, body
            return time.perf_counter() - t, body["data"]["impact"]

        print(f"{'scenario':<32} {'orders':>6} {'delayed':>7} {'cold ms':>8} {'calls':>5} {'warm ms (median)':>17}")
        for name, scenario in scenarios.items():
            gw.cache.invalidate_all()  # cold: every record read from the sources
            before = await _calls(http, sim.url)
            cold, result = await ask(scenario)
            calls = await _calls(http, sim.url) - before
            warm = [(await ask(scenario))[0] for _ in range(repeat)]
            totals = result["totals"]
            print(
                f"{name:<32} {totals['orders']:>6} {totals['delayedOrders']:>7} {cold * 1000:>8.0f} {calls:>5}"
                f" {statistics.median(warm) * 1000:>17.0f}"
            )
    server.should_exit = True
    await task
    await sim.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.orders, args.latency_ms, args.repeat))

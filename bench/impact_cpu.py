"""CPU seconds of one what-if (``impact(workCenterDown)``) computation, without the server.

    python -m bench.impact_cpu [--orders 20000] [--work-center WC-20] [--hours 8] [--repeat 5]

Starts the simulated plant in this process (clock stopped, a fixed start: the same records
every run), reads the work centre's queued orders through the gateway's loaders as
``impact`` does, then times ``resolvers.impact.analyse`` alone ``--repeat`` times in CPU
seconds (``time.process_time``: on a shared machine the wall clock says little) and counts
its function calls once under cProfile. Compare two checkouts one after the other
(``PYTHONPATH=/other/checkout``). Numbers only; nothing is asserted.

The analysis runs with the cyclic collector paused, as the gateway runs it
(``resolvers.exception_types.run_impact``): with it running, an automatic full collection
over the in-process plant (5.7 million objects at 100,000 orders) lands in some samples
and adds 3-4 s to them. Calls per queued order compare sizes without the machine's load;
``fingerprint`` (sha256 of the affected orders' repr) shows an optimisation kept the
answer, for the same plant and clock (``--orders`` and this fixed start).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import hashlib
import pstats
import statistics
import time

import aiohttp

from gateway.cache import RecordCache
from gateway.config import Config
from resolvers import fetch, impact
from resolvers.context import Context
from resolvers.exception_rules import ExceptionParams
from resolvers.prediction import PredictionParams
from sources import SourceEndpoint, Sources
from sources.memory import gc_paused
from sources.simulator.app import start_simulator

START = dt.datetime(2026, 11, 30, 14, 0, tzinfo=dt.UTC)  # a Monday afternoon
SYSTEMS = ("erp", "mes", "wms", "qms", "tms")


async def measure(orders: int, work_center: str, hours: float, repeat: int) -> None:
    sim = await start_simulator("127.0.0.1", 0, orders=orders, latency_ms=0.0, start=START, prerender=False)
    sim.world.set_speed(0)
    cfg = Config()
    params = PredictionParams(plant=cfg.calendar.plant_calendar(), delivery=cfg.calendar.delivery_calendar())
    scenario = impact.WorkCenterDown(work_center, hours)
    try:
        async with aiohttp.ClientSession() as http:
            endpoints = {s: SourceEndpoint(base_url=f"{sim.url}/{s}", timeout_seconds=300) for s in SYSTEMS}
            sources = Sources.connect(http, endpoints)
            now = sim.world.now().replace(microsecond=0)
            ctx = Context.create(sources, RecordCache(maxsize=10**7), now, prediction_params=params)
            loaded = await fetch.load_orders(ctx, await fetch.pegged_orders(ctx, scenario))
    finally:
        await sim.close()
    customers = {view.sales_order.sold_to_party: customer for view, customer in loaded}

    def once() -> impact.ImpactResult:
        views = [view for view, _ in loaded]
        for view in views:
            view._memo.clear()  # as the gateway's views of a request: nothing derived yet
        return impact.analyse(scenario, views, customers, now, params=ExceptionParams(), prediction_params=params)

    seconds = []
    for _ in range(repeat):
        with gc_paused():  # as the gateway runs it
            t0 = time.process_time()
            result = once()
            seconds.append(time.process_time() - t0)
    profile = cProfile.Profile()
    with gc_paused():
        profile.runcall(once)
    calls = pstats.Stats(profile).total_calls  # type: ignore[attr-defined]
    fingerprint = hashlib.sha256(repr(result.orders).encode()).hexdigest()[:16]
    print(
        f"{orders} orders, {work_center} down {hours:g} h: {len(loaded)} queued orders, {len(result.orders)} affected;"
        f" analyse CPU min {min(seconds):.3f} s, median {statistics.median(seconds):.3f} s;"
        f" {calls:,} calls ({calls / max(len(loaded), 1):.1f} per queued order); fingerprint {fingerprint}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--orders", type=int, default=20000)
    p.add_argument("--work-center", default="WC-20")
    p.add_argument("--hours", type=float, default=8)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    asyncio.run(measure(args.orders, args.work_center, args.hours, args.repeat))


if __name__ == "__main__":
    main()

"""Event apply rate: ``python -m bench --only apply`` — how fast the processor applies events.

One fresh warm gateway, no queries and no subscribers: the plant's driver offers plant
changes at ``--apply-factor`` times the default demo's rate (default 4: more than the
processor of round one could apply), every change a signed CloudEvent. The harness samples the event
backlog (``ordergraph_event_backlog``) every second while the driver runs, then until the
backlog is empty. With a backlog throughout, the processor never waited for work, so

    applied events/s = new events accepted / (seconds from the first event to an empty backlog)

When the backlog stays near zero the processor kept up, and the figure is the offered rate
(a lower bound of what it could apply). Run it on both trees (``--gateway-src``) for a
before/after; the soak (``--only soak``) shows the same backlog under the full mix.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from .soak import DEMO_CHANGES_PER_SECOND

if TYPE_CHECKING:
    from .run import Bench

APPLY_LOAD_FACTOR = 4.0
# (seconds the driver runs, most seconds to wait for the backlog to empty) per size
APPLY_SIZES = {"full": (60.0, 600.0), "quick": (30.0, 300.0), "tiny": (4.0, 60.0)}


async def apply_rate(bench: Bench) -> None:
    """The apply scenario: results in ``bench.results["apply"]``."""
    from .run import say

    seconds, most_wait = APPLY_SIZES[bench.size.name]
    factor = float(getattr(bench.args, "apply_factor", APPLY_LOAD_FACTOR))
    rate = factor * DEMO_CHANGES_PER_SECOND
    bench.stop_gateway()
    await bench.start_gateway("warm")
    gw = bench.gateway
    assert gw is not None
    say(f"apply: {seconds:g} s of plant changes at {rate:g}/s ({factor:g}x the demo's), no queries; then until the backlog is empty")
    samples: list[dict[str, Any]] = []
    t0 = time.monotonic()
    await bench.plant_post("/bench/driver", {"gateway": gw.url, "rate": rate, "orders": bench.orders})
    driver: dict[str, Any] = {}
    try:
        while time.monotonic() - t0 < seconds:
            await asyncio.sleep(1.0)
            samples.append({"t_s": round(time.monotonic() - t0, 1), "backlog": await bench.metric("ordergraph_event_backlog")})
    finally:
        driver = await bench.plant_post("/bench/driver/stop")
    drive_s = time.monotonic() - t0
    backlog_at_stop = await bench.metric("ordergraph_event_backlog") or 0
    while time.monotonic() - t0 < seconds + most_wait:
        backlog = await bench.metric("ordergraph_event_backlog") or 0
        samples.append({"t_s": round(time.monotonic() - t0, 1), "backlog": backlog})
        if backlog <= 0:
            break
        await asyncio.sleep(0.25)
    empty_s = time.monotonic() - t0
    new_events = int(driver.get("events_sent", 0)) - int(driver.get("duplicates", 0)) - int(driver.get("rejected", 0))
    during = [s["backlog"] or 0 for s in samples if s["t_s"] <= drive_s]
    kept_up = max(during, default=0) < 0.1 * max(new_events, 1)
    bench.results["apply"] = {
        "offered_changes_per_second": rate,
        "drive_seconds": round(drive_s, 1),
        "new_events": new_events,
        "offered_events_per_second": round(new_events / drive_s, 1) if drive_s else None,
        "backlog_at_stop": backlog_at_stop,
        "backlog_max": max((s["backlog"] or 0 for s in samples), default=0),
        "seconds_to_empty": round(empty_s, 1),
        "applied_events_per_second": round(new_events / empty_s, 1) if empty_s else None,
        "kept_up": kept_up,
        "driver": driver,
        "samples": samples,
    }
    r = bench.results["apply"]
    say(
        f"   {new_events:,} new events offered at {r['offered_events_per_second']}/s; backlog {backlog_at_stop:g} when the driver "
        f"stopped (max {r['backlog_max']:g}); empty after {r['seconds_to_empty']} s: "
        f"{'kept up' if kept_up else 'applied'} {r['applied_events_per_second']} events/s"
    )

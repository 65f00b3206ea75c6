"""The what-if's CPU and wall time per answer, cold and warm, one gateway, two ways alternated.

    python -m bench.impact_ab --plant http://127.0.0.1:8100 [--rounds 5] [--profile PREFIX]
    python -m bench.impact_ab --orders 2000 --fingerprint

Starts a ``Gateway`` as ``bench.startup_cpu`` does (the scale scenario's configuration)
against a plant, waits for ready, then asks the scale scenario's ``impact`` question
(``bench.scale.IMPACT``) on the HTTP path's executor (no response cache):

- cold: once right after ready (the start-up pass's records; at 100,000 orders most of the
  work centre's queue is not in the record cache), CPU (``time.process_time``), wall and
  record cache misses;
- warm: ``--rounds`` rounds of A and B, alternated (A first in even rounds): A as before
  this branch (``Gateway.queued`` off: the work centre's production orders read from the
  MES on every what-if; the collector not paused for the answer's completion nor the
  views' assembly), B as now; min and median CPU and wall per side, and the collector's
  passes.

``--fingerprint`` (with ``--orders``: the in-process plant with its clock pinned) hashes
the answers of several scenarios (work centres up and down, hours) under A and under B and
checks they are byte-identical. Numbers only.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import hashlib
import statistics
import time

from gateway.app import Gateway

from .board_cpu import answer_on_gateway_path
from .scale import IMPACT
from .startup_cpu import GcTimes, profiling, ready_scale_gateway, run, scale_gateway

FREEZE_SECONDS = 5.0  # the scale configuration's [gateway] gc_freeze_seconds (the default)
SCENARIOS = [(wc, hours) for wc in ("WC-10", "WC-20", "WC-30", "WC-40", "WC-NONE") for hours in (1, 8, 200)]
# Every field of the answer (the scenario, every total, every field of every order), for
# the fingerprint; an unknown work centre answers an error, which is hashed too.
FULL = (
    "query Impact($wc: ID!, $hours: Float!) { impact(scenario: {workCenterDown: {workCenter: $wc, hours: $hours}}) {"
    " scenario evaluatedAt totals { orders delayedOrders earlierOrders valueAtRiskRelieved { amount currency }"
    " valueAtRiskAdded { amount currency } lateOrders newlyLateOrders maxDaysLate valueAtRisk { amount currency }"
    " addedValueAtRisk { amount currency } bySeverity { severity orders } }"
    " orders { orderId commercialPriority confirmedDeliveryDate currentPredictedDeliveryDate predictedDeliveryDate"
    " delayDays currentDaysLate daysLate newlyLate currentSeverity severity valueAtRisk { amount currency }"
    " netValue { amount currency } } } }"
)


def before(gw: Gateway, yes: bool) -> None:
    """Side A: the what-if as before this branch (besides ``Gateway.queued`` off): the
    collector not paused for the answer's completion nor the views' assembly, the views
    not frozen."""
    import contextlib

    from resolvers import exception_types, fetch
    from sources import memory

    exception_types.gc_paused_for_this_step = (lambda: None) if yes else memory.gc_paused_for_this_step
    # New contexts read it (``Context.freeze_gc``); the freeze loop read it once at its start.
    gw.config.gateway.gc_freeze_seconds = 0.0 if yes else FREEZE_SECONDS
    if hasattr(fetch, "gc_paused"):
        fetch.gc_paused = contextlib.nullcontext if yes else memory.gc_paused


async def full_answer(gw: Gateway, wc: str, hours: float) -> bytes:
    """The serialised answer (data and errors) of ``FULL`` for one scenario."""
    import orjson

    from gateway.operation import Operation
    from resolvers.policy import Role, Viewer

    viewer = Viewer(role=Role.INTEGRATOR, subject="bench")
    ops = gw.operations
    assert ops is not None
    op = await ops.document(Operation({"query": FULL, "variables": {"wc": wc, "hours": hours}}, viewer))
    context = gw.context(viewer=viewer)
    try:
        return orjson.dumps(ops.format(await ops.answer(op, context)))
    finally:
        context.release()


async def ask(gw: Gateway, query: str) -> tuple[bytes, float, float, int]:
    from gateway.operation import Operation
    from resolvers.policy import Role, Viewer

    viewer = Viewer(role=Role.INTEGRATOR, subject="bench")
    ops = gw.operations
    assert ops is not None
    op = await ops.document(Operation({"query": query}, viewer))
    misses, c0, t0 = gw.cache.misses, time.process_time(), time.perf_counter()
    body = await answer_on_gateway_path(gw, op, viewer)
    return body, time.process_time() - c0, time.perf_counter() - t0, gw.cache.misses - misses


async def measure(args: argparse.Namespace) -> None:
    async with scale_gateway(args, "impact_ab") as gw:
        assert gw.config.gateway.gc_freeze_seconds == FREEZE_SECONDS
        await ready_scale_gateway(gw)
        kept = getattr(gw, "queued", None)
        profile = cProfile.Profile(time.process_time) if args.profile else None
        cold_gc = GcTimes()
        gc.callbacks.append(cold_gc)
        try:
            with profiling(profile):
                body, cpu, wall, misses = await ask(gw, IMPACT)
        finally:
            gc.callbacks.remove(cold_gc)
        if profile is not None:
            profile.dump_stats(f"{args.profile}-cold.prof")
        print(
            f"cold: CPU {cpu * 1000:.0f} ms, wall {wall * 1000:.0f} ms, {misses} record cache misses,"
            f" {len(body)} bytes; collector: {cold_gc}"
        )
        # Side A sets [gateway] gc_freeze_seconds to 0; the gateway's freeze loop reads it
        # once when it starts (after the start-up's work has settled): started during an
        # A round, it would collect and freeze on every turn of the event loop from then
        # on, in both sides' rounds. So the rounds wait for it to start.
        for _ in range(1200):
            if getattr(gw, "_gc_serving", False):
                break
            await asyncio.sleep(0.05)
        if args.fingerprint:
            for side, queued in (("A", None), ("B", kept), ("A", None), ("B", kept)):
                gw.queued = queued
                before(gw, side == "A")
                h = hashlib.sha256()
                for wc, hours in SCENARIOS:
                    h.update(await full_answer(gw, wc, hours))
                print(f"fingerprint {side}: {len(SCENARIOS)} scenarios, sha256 {h.hexdigest()[:16]}")
        gc_times = {side: GcTimes() for side in ("A", "B")}
        sides: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
        profiles = {side: cProfile.Profile(time.process_time) for side in sides} if args.profile else {}
        for r in range(args.rounds):
            for side in ("A", "B") if r % 2 == 0 else ("B", "A"):
                gw.queued = kept if side == "B" else None
                before(gw, side == "A")
                gc.callbacks.append(gc_times[side])
                try:
                    with profiling(profiles.get(side)):
                        _, cpu, wall, _ = await ask(gw, IMPACT)
                finally:
                    gc.callbacks.remove(gc_times[side])
                sides[side].append((cpu, wall))
        gw.queued = kept
        before(gw, False)
        for side, runs in sides.items():
            cpus, walls = [c for c, _ in runs], [w for _, w in runs]
            print(
                f"warm {side} x{len(runs)}: CPU min {min(cpus) * 1000:.0f} median {statistics.median(cpus) * 1000:.0f} ms;"
                f" wall min {min(walls) * 1000:.0f} median {statistics.median(walls) * 1000:.0f} ms;"
                f" collector: {gc_times[side]}"
            )
            if side in profiles:
                profiles[side].dump_stats(f"{args.profile}-warm-{side}.prof")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plant", help="URL of a running bench.plant (else one is started in process)")
    p.add_argument("--orders", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--fingerprint", action="store_true")
    p.add_argument("--profile", metavar="PREFIX")
    run(measure, p.parse_args())


if __name__ == "__main__":
    main()

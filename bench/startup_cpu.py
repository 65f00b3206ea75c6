"""CPU seconds of the gateway's start to ready (the first evaluation of every order), in process.

    python -m bench.startup_cpu --plant http://127.0.0.1:8100 [--profile out.prof]
    python -m bench.startup_cpu --orders 2000 [--fingerprint] [--first-questions]

Starts a ``Gateway`` on the scale scenario's configuration (``bench/scale.py``: an SQLite
journal in a temporary directory, open auth) against a plant and waits for the exception
tracker's first evaluation of every order (the ``orders evaluated in`` line), then prints
the process's CPU seconds from before ``Gateway.start`` to ready (``resource.getrusage``:
on a shared machine the wall clock says little), the wall seconds and the peak RSS.

``--plant``: a running ``python -m bench.plant`` (its own process, as ``bench.scale`` runs
it). ``--orders``: a simulated plant started in this process with its clock stopped at a
fixed start (the same records every run; its CPU is counted too), for ``--fingerprint``: a
hash of the open exceptions and of the order index's values once ready, to compare two
checkouts (``PYTHONPATH=/other/checkout``). ``--profile`` writes a cProfile of start to
ready. ``--first-questions``: then the scale scenario's exceptions and impact questions once
each (CPU, record cache misses). Numbers only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime as dt
import gc
import hashlib
import resource
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from gateway.app import Gateway
from gateway.config import load_config

from .scale import config

START = dt.datetime(2026, 11, 30, 14, 0, tzinfo=dt.UTC)  # a Monday afternoon (bench/impact_cpu.py)


class GcTimes:
    """CPU seconds and count of the cyclic collector's passes, by generation."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.count = [0, 0, 0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.thread_time()
        else:
            self.seconds[info["generation"]] += time.thread_time() - self._started
            self.count[info["generation"]] += 1

    def __str__(self) -> str:
        return ", ".join(
            f"gen{g} {n} passes {s:.2f} s"
            for g, (n, s) in enumerate(zip(self.count, self.seconds, strict=True))
        )


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def fingerprint(gw: Gateway) -> str:
    """The open exceptions (their payloads) and every order's derived values, hashed."""
    assert gw.exceptions is not None
    h = hashlib.sha256()
    for record in sorted(gw.exceptions.open_exceptions(), key=lambda r: r.id):
        h.update(orjson.dumps(record.to_payload(), option=orjson.OPT_SORT_KEYS))
    for so in sorted(gw.index._values):
        h.update(repr(gw.index._values[so]).encode())
    return f"{len(gw.exceptions.open_exceptions())} open, {len(gw.index)} indexed, sha256 {h.hexdigest()[:16]}"


async def first_questions(gw: Gateway, repeat: int = 0, profile_prefix: str | None = None) -> None:
    """The scale scenario's exceptions and impact questions once each right after ready, as
    the HTTP path computes them (no response cache): CPU and the record cache's misses.
    ``repeat``: then each question ``repeat`` times more (warm), min and median CPU, and
    with ``profile_prefix`` a cProfile of those runs per question (``PREFIX-NAME.prof``) and of
    the first (``PREFIX-first-NAME.prof``)."""
    from gateway.operation import Operation
    from resolvers.policy import Role, Viewer

    from .board_cpu import answer_on_gateway_path
    from .scale import EXCEPTIONS, IMPACT

    ops = gw.operations
    assert ops is not None
    viewer = Viewer(role=Role.INTEGRATOR, subject="bench")  # open mode's viewer without a token
    for name, query in (("exceptions", EXCEPTIONS), ("impact", IMPACT)):
        op = await ops.document(Operation({"query": query}, viewer))
        first_profile = cProfile.Profile(time.process_time) if profile_prefix else None
        misses, c0, t0 = gw.cache.misses, time.process_time(), time.perf_counter()
        if first_profile is not None:
            first_profile.enable()
        await answer_on_gateway_path(gw, op, viewer)
        if first_profile is not None:
            first_profile.disable()
            first_profile.dump_stats(f"{profile_prefix}-first-{name}.prof")
        print(
            f"first {name} after ready: CPU {time.process_time() - c0:.2f} s, wall {time.perf_counter() - t0:.2f} s,"
            f" {gw.cache.misses - misses} record cache misses"
        )
    for name, query in (("exceptions", EXCEPTIONS), ("impact", IMPACT)) if repeat else ():
        op = await ops.document(Operation({"query": query}, viewer))
        profile = cProfile.Profile(time.process_time) if profile_prefix else None
        times, walls = [], []
        misses, passes = gw.cache.misses, gw.gc_full_passes
        for _ in range(repeat):
            c0, t0 = time.process_time(), time.perf_counter()
            if profile is not None:
                profile.enable()
            await answer_on_gateway_path(gw, op, viewer)
            if profile is not None:
                profile.disable()
            times.append(time.process_time() - c0)
            walls.append(time.perf_counter() - t0)
        print(
            f"{name} warm x{repeat}: CPU min {min(times) * 1000:.1f} ms, median"
            f" {statistics.median(times) * 1000:.1f} ms (wall median {statistics.median(walls) * 1000:.1f} ms,"
            f" max {max(walls) * 1000:.1f} ms), {gw.cache.misses - misses} record cache misses,"
            f" {gw.gc_full_passes - passes} full collections of the freeze loop meanwhile"
        )
        if profile is not None:
            profile.dump_stats(f"{profile_prefix}-{name}.prof")


async def pinned_plant(plant_url: str | None, orders: int) -> tuple[Any, str, Callable[[], dt.datetime] | None]:
    """``(simulator, URL, domain clock)``: the plant at ``plant_url`` with the gateway's own
    clock (simulator None), or else one of ``orders`` orders started in this process with its
    clock stopped. The plant's clock ran a moment before it stopped: the domain rules' "now"
    is its minute (the same every run), so two checkouts' answers compare byte for byte."""
    if plant_url is not None:
        return None, plant_url, None
    from sources.simulator.app import start_simulator

    sim = await start_simulator("127.0.0.1", 0, orders=orders, latency_ms=0.0, start=START, prerender=False)
    sim.world.set_speed(0)
    pinned = sim.world.now().replace(second=0, microsecond=0)
    print(f"plant clock pinned at {pinned.isoformat()}")
    return sim, sim.url, lambda: pinned


@contextlib.asynccontextmanager
async def scale_gateway(args: argparse.Namespace, tag: str) -> AsyncIterator[Gateway]:
    """A ``Gateway`` (not started) on the scale scenario's configuration against
    ``args.plant``, else a pinned in-process plant of ``args.orders`` (``pinned_plant``);
    stopped after the block, and the in-process plant closed."""
    sim, plant_url, domain_clock = await pinned_plant(args.plant, args.orders)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            gw = Gateway(load_config(config(Path(tmp), plant_url, 0, tag)), domain_clock=domain_clock)
            yield gw
            await gw.stop()
    finally:
        if sim is not None:
            await sim.close()


async def ready_scale_gateway(gw: Gateway) -> None:
    """Start ``gw`` and wait until its first evaluation of every order is done."""
    await gw.start()
    assert gw.exceptions is not None
    await gw.exceptions.ready.wait()


@contextlib.contextmanager
def profiling(profile: cProfile.Profile | None) -> Iterator[None]:
    """``profile`` (None: nothing) enabled inside the block."""
    if profile is not None:
        profile.enable()
    try:
        yield
    finally:
        if profile is not None:
            profile.disable()


def run(measure: Callable[[argparse.Namespace], Awaitable[None]], args: argparse.Namespace) -> None:
    """``measure(args)`` on uvloop when installed (as ``ordergraph serve``), else asyncio."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(measure(args))
    else:
        uvloop.run(measure(args))


async def measure(args: argparse.Namespace) -> None:
    async with scale_gateway(args, "startup") as gw:
        profile = cProfile.Profile(time.process_time) if args.profile else None
        gc_times = GcTimes()
        gc.callbacks.append(gc_times)
        c0, t0 = cpu(), time.perf_counter()
        with profiling(profile):
            await ready_scale_gateway(gw)
        assert gw.exceptions is not None
        c1, t1 = cpu(), time.perf_counter()
        gc.callbacks.remove(gc_times)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{gw.exceptions.evaluated} orders evaluated: start to ready CPU {c1 - c0:.2f} s, wall {t1 - t0:.2f} s;"
            f" peak RSS {rss:.0f} MB; record cache {len(gw.cache)} entries"
            f" ({getattr(gw.cache, 'evictions', '?')} evicted,"
            f" {getattr(gw.cache, 'scan_skipped', '?')} not kept by the pass)"
        )
        print(f"collector: {gc_times}; {gc.get_freeze_count()} objects frozen")
        if args.fingerprint:
            print("fingerprint:", fingerprint(gw))
        if args.first_questions:
            await first_questions(gw, args.repeat_questions, args.questions_profile)
        if profile is not None:
            profile.dump_stats(args.profile)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--plant", help="URL of a running bench.plant (else one is started in process)")
    p.add_argument("--orders", type=int, default=2000, help="orders of the in-process plant")
    p.add_argument("--fingerprint", action="store_true")
    p.add_argument("--profile", help="write a cProfile of start to ready here")
    p.add_argument("--first-questions", action="store_true", help="then ask exceptions and impact once each")
    p.add_argument(
        "--repeat-questions", type=int, default=0, metavar="N",
        help="with --first-questions: then each question N times more, warm (min and median CPU)",
    )
    p.add_argument("--questions-profile", metavar="PREFIX", help="cProfile the repeated questions to PREFIX-NAME.prof")
    run(measure, p.parse_args())


if __name__ == "__main__":
    main()

"""CPU seconds of one exception-board page (``exceptions(first: 20)``), in this process.

    python -m bench.board_cpu [--orders 20000] [--repeat 20]

Starts the simulated plant in this process (clock stopped, a fixed start: the same records
every run) and a gateway on it (no HTTP server), waits for the exception tracker's first
evaluation, then times, in CPU seconds (``time.process_time``), ``--repeat`` times each:

- ``list``: ``resolvers.exception_types.list_exceptions`` and its ``totalCount`` alone (the
  list work: filter, order, page, count);
- ``query``: the scale scenario's whole query executed by the schema (list work plus
  the page's fields: the answer's own size);
- a few filtered and paged variants of ``list``.

It prints the open set's size, the detections it holds and the affected orders the first
page carries (the answer's size), and the calls the list makes once under cProfile.
Compare two checkouts one after the other (``PYTHONPATH=/other/checkout``). Numbers only.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import gc
import pstats
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson

from gateway.app import create_app
from gateway.config import AuthConfig, Config
from gateway.operation import Operation
from resolvers import enums
from resolvers.exception_types import ExceptionFilter, Severity, list_exceptions
from sources.simulator.app import start_simulator

from .scale import EXCEPTIONS

START = dt.datetime(2026, 11, 30, 14, 0, tzinfo=dt.UTC)  # a Monday afternoon


def _total_count(conn: Any) -> int:
    """``totalCount`` as the schema reads it (an attribute before issue 21's board, a
    resolver counting on demand after)."""
    count = conn.total_count
    return count() if callable(count) else count


def _cpu(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    seconds = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        seconds.append(time.process_time() - t0)
    return min(seconds), statistics.median(seconds)



async def answer_on_gateway_path(gw: Any, op: Any, viewer: Any = None) -> bytes:
    """Answer a prepared document as ``Operations.respond`` does when the response cache
    does not answer: the executor with the policy middleware, the response's
    serialisation, the context's release. Returns the serialised response."""
    ops = gw.operations
    context = gw.context() if viewer is None else gw.context(viewer=viewer)
    try:
        result = await ops.answer(op, context)
        assert not result.errors, result.errors
        return orjson.dumps(ops.format(result))
    finally:
        context.release()

async def measure(orders: int, repeat: int, profile_path: str | None = None) -> None:
    sim = await start_simulator("127.0.0.1", 0, orders=orders, latency_ms=0.0, start=START)
    sim.world.set_speed(0)
    cfg = Config.for_plant(sim.url)
    cfg.events.journal_path = ":memory:"
    cfg.auth = AuthConfig(mode="open")
    app = create_app(cfg, domain_clock=sim.world.now)
    try:
        async with app.router.lifespan_context(app):
            gw = app.state.gateway
            await gw.exceptions.settled(900)
            tracker = gw.exceptions
            records = tracker.open_exceptions()
            detections = sum(len(r.affected) for r in records)
            ctx = gw.context()
            page = list_exceptions(ctx, ExceptionFilter(), 20, None)
            on_page = sum(len(e.node.record.affected) for e in page.edges)
            print(
                f"{orders} orders: {len(records)} open exceptions holding {detections} detections;"
                f" the first 20 carry {on_page} affected orders; totalCount {_total_count(page)}"
            )
            customer = next(iter(records[0].customers)) if records else None
            variants: dict[str, tuple[ExceptionFilter, str | None]] = {
                "list first 20": (ExceptionFilter(), None),
                "list after page 1": (ExceptionFilter(), page.page_info.end_cursor),
                "list HIGH+": (ExceptionFilter(min_severity=Severity(enums.Severity.HIGH)), None),
                "list customer": (ExceptionFilter(customer=customer), None),
                "list openOnly false": (ExceptionFilter(open_only=False), None),
            }
            for name, (f, after) in variants.items():
                lo, med = _cpu(
                    lambda f=f, after=after: _total_count(
                        list_exceptions(gw.context(), f, 20, after)
                    ),
                    repeat,
                )
                print(f"  {name:<22} CPU min {lo * 1000:7.2f} ms, median {med * 1000:7.2f} ms")
            profile = cProfile.Profile()
            profile.runcall(
                lambda: _total_count(list_exceptions(gw.context(), ExceptionFilter(), 20, None))
            )
            print(f"  list first 20: {pstats.Stats(profile).total_calls:,} calls")  # type: ignore[attr-defined]

            async def query() -> None:
                result = await gw.schema.execute(EXCEPTIONS, context_value=gw.context())
                assert not result.errors, result.errors

            seconds = []
            for _ in range(repeat):
                t0 = time.process_time()
                await query()
                seconds.append(time.process_time() - t0)
            print(
                f"  {'query (schema)':<22} CPU min {min(seconds) * 1000:7.2f} ms,"
                f" median {statistics.median(seconds) * 1000:7.2f} ms"
            )

            # The HTTP path's work without the socket: graphql-core's executor with the policy
            # middleware, the response's serialisation, the context's release (what
            # ``Operations.respond`` does when the response cache does not answer).
            op = await gw.operations.document(Operation({"query": EXCEPTIONS}))

            async def answer() -> None:
                await answer_on_gateway_path(gw, op)

            collections = [0, 0, 0]

            def counted(phase: str, info: dict[str, Any]) -> None:
                if phase == "stop":
                    collections[info["generation"]] += 1

            gc.callbacks.append(counted)
            seconds = []
            for _ in range(repeat):
                t0 = time.process_time()
                await answer()
                seconds.append(time.process_time() - t0)
            gc.callbacks.remove(counted)
            profile = cProfile.Profile()
            profile.enable()
            await answer()
            profile.disable()
            calls = pstats.Stats(profile).total_calls  # type: ignore[attr-defined]
            print(
                f"  {'query (gateway path)':<22} CPU min {min(seconds) * 1000:7.2f} ms,"
                f" median {statistics.median(seconds) * 1000:7.2f} ms, max {max(seconds) * 1000:7.2f} ms;"
                f" {calls:,} calls ({calls / max(1, on_page):.1f} per affected order on the page);"
                f" collections in {repeat} answers: young {collections[0]}, middle {collections[1]}, full {collections[2]}"
            )
            if profile_path:
                profile.dump_stats(profile_path)
    finally:
        await sim.close()


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--orders", type=int, default=20000)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--profile", help="write a cProfile of one answer on the gateway path here")
    args = p.parse_args()
    asyncio.run(measure(args.orders, args.repeat, args.profile))


if __name__ == "__main__":
    main()

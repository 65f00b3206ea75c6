"""CPU milliseconds of one cold-cache answer of the throughput workloads, in this process.

    python -m bench.page_cpu [--orders 600] [--repeat 30] [--workload dashboard|order|customer]
                             [--plant process|inline] [--profile out.prof]

Serves the simulated plant (clock stopped at a fixed start: the same records every run), by
default in a child process so that this process's CPU time is the gateway's alone
(``--plant inline`` serves it in this process, as bench/board_cpu.py does: its handlers'
CPU is then counted too). Starts a gateway on it (no HTTP server) with the record cache
effectively off as the bench's cold mode has it (``[cache] ttl_seconds = 0.000001``,
``response_ttl_seconds = 0``), waits for the exception tracker's first evaluation, then
answers the documents the bench cycles (bench/run.py ``workloads`` at this plant size):

- ``dashboard``: ``DASHBOARD`` over the listing's first hot/50 pages' cursors;
- ``order``: ``WHERE_IS_MY_ORDER`` for the hot orders (at most ``--sample`` of them);
- ``customer``: ``CUSTOMER_ORDERS`` for every customer;

on the gateway path (``bench.board_cpu.answer_on_gateway_path``: the executor, the policy
middleware, the response's serialisation, the context's release), one document after the
other. For each workload it prints the CPU per answer (``time.process_time``; min and
median over ``--repeat`` rounds of all its documents; the cyclic collector's share and
its collections per generation, young/middle/full), the calls of one round under
cProfile per answer, and a fingerprint of the answers (a hash of their JSON, the cursors
opened: they are sealed with a fresh nonce each time) so that a
change can be shown to leave the answers byte-identical. Compare two checkouts one after
the other (run it from each checkout's root). Numbers only.

Instruction counts, steadier than CPU time on a shared machine (one workload; the timed
rounds only, the plant's child not traced):

    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=cg.out \
        python -m bench.page_cpu --workload dashboard --repeat 3 --callgrind
    grep summary cg.out   # Ir of 3 x 6 answers
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import gc
import hashlib
import os
import pstats
import re
import statistics
import subprocess
import sys
import time
from typing import Any

import orjson

from gateway.app import create_app
from gateway.config import AuthConfig, Config
from gateway.operation import Operation
from resolvers.pagination import ORDER_CURSOR, SORTED_CURSOR

from . import queries as Q
from .board_cpu import START, answer_on_gateway_path
from .run import SIZES
from .startup_cpu import GcTimes

WORKLOADS = ("dashboard", "order", "customer")


async def _serve_plant(orders: int) -> None:
    """The child: serve the plant, print its URL and plant time, stop when stdin closes."""
    from sources.simulator.app import start_simulator

    sim = await start_simulator("127.0.0.1", 0, orders=orders, latency_ms=0.0, start=START)
    sim.world.set_speed(0)
    print(sim.url, sim.world.now().isoformat(), flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await sim.close()


def _instrument(on: bool) -> None:
    """Callgrind's instrumentation of this process on or off (blocking on purpose: nothing
    else may run between the switch and the rounds)."""
    subprocess.run(["callgrind_control", f"--instr={'on' if on else 'off'}", str(os.getpid())], check=True, capture_output=True)


_END_CURSOR = re.compile(rb'"endCursor":"([^"]+)"')


def _plain_cursors(gw: Any, answer: bytes) -> bytes:
    """``answer`` with its cursors opened: they are sealed with a fresh nonce each time."""

    def opened(m: re.Match[bytes]) -> bytes:
        for kind in (ORDER_CURSOR, SORTED_CURSOR):
            try:
                return b'"endCursor":' + orjson.dumps(f"{kind}:{gw.cursors.open(kind, m.group(1).decode())}")
            except Exception:  # noqa: BLE001 - not this kind
                continue
        return m.group(0)

    return _END_CURSOR.sub(opened, answer)


async def _data(gw: Any, query: str, variables: dict[str, Any]) -> Any:
    op = await gw.operations.document(Operation({"query": query, "variables": variables}))
    context = gw.context()
    try:
        result = await gw.operations.answer(op, context)
        assert not result.errors, result.errors
        return result.data
    finally:
        context.release()


async def _documents(gw: Any, orders: int, sample: int) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """The workloads' documents as bench/run.py builds them (its size for ``orders``)."""
    hot_orders = next((s.hot_orders for s in SIZES.values() if s.orders == orders), max(50, orders // 2))
    ids: list[str] = []
    customers: set[str] = set()
    after = None
    while True:
        data = await _data(
            gw, "query($after: String) { orders(first: 500, after: $after) { pageInfo { hasNextPage endCursor } nodes { id customerId } } }",
            {"after": after},
        )
        conn = data["orders"]
        ids += [n["id"] for n in conn["nodes"]]
        customers.update(n["customerId"] for n in conn["nodes"])
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    cursors: list[str | None] = [None]
    while len(cursors) < max(1, hot_orders // 50):
        data = await _data(gw, Q.PAGE_CURSORS, {"first": 50, "after": cursors[-1]})
        if not data["orders"]["pageInfo"]["hasNextPage"]:
            break
        cursors.append(data["orders"]["pageInfo"]["endCursor"])
    hot = ids[:hot_orders][:sample]
    return {
        "dashboard": [(Q.DASHBOARD, {"first": 50, "after": c}) for c in cursors],
        "order": [(Q.WHERE_IS_MY_ORDER, {"id": so}) for so in hot],
        "customer": [(Q.CUSTOMER_ORDERS, {"id": c}) for c in sorted(customers)],
    }


def _start_plant(orders: int) -> tuple[subprocess.Popen[str], str, str]:
    """The plant in a child process: the process, its URL and its (stopped) plant time."""
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.page_cpu", "--serve-plant", str(orders)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert child.stdout is not None
    url, now = child.stdout.readline().split()
    return child, url, now


async def measure(args: argparse.Namespace, plant: tuple[str, str] | None) -> dict[str, bytes]:
    """The numbers, printed; returns each workload's answers (for ``--dump``)."""
    sim = None
    dumps: dict[str, bytes] = {}
    if plant is not None:
        url, now = plant
        plant_now = dt.datetime.fromisoformat(now)

        def domain_clock() -> dt.datetime:
            return plant_now
    else:
        from sources.simulator.app import start_simulator

        sim = await start_simulator("127.0.0.1", 0, orders=args.orders, latency_ms=0.0, start=START)
        sim.world.set_speed(0)
        url, domain_clock = sim.url, sim.world.now
    cfg = Config.for_plant(url)
    cfg.events.journal_path = ":memory:"
    cfg.auth = AuthConfig(mode="open")
    cfg.gateway.cursor_secret = "bench-page-cpu"  # the same cursors (and answers) every run
    # bench/run.py's cold mode: entries expire after 1 µs, so every request reads its sources
    cfg.cache.ttl_seconds = 0.000001
    cfg.cache.response_ttl_seconds = 0
    app = create_app(cfg, domain_clock=domain_clock)
    try:
        async with app.router.lifespan_context(app):
            gw = app.state.gateway
            await gw.exceptions.settled(900)
            documents = await _documents(gw, args.orders, args.sample)
            print(
                f"{args.orders} orders, plant {'in a child process (gateway CPU only)' if plant else 'in this process'};"
                f" {args.repeat} rounds; CPU ms per answer"
            )
            for name in args.workload or WORKLOADS:
                docs = documents[name]
                ops = [
                    await gw.operations.document(Operation({"query": q, "variables": v})) for q, v in docs
                ]
                digest = hashlib.sha256()
                answers = [_plain_cursors(gw, await answer_on_gateway_path(gw, op)) for op in ops]
                for answer in answers:
                    digest.update(answer)
                dumps[name] = b"\n".join(answers)
                seconds = []
                collector = GcTimes()
                gc.callbacks.append(collector)
                if args.callgrind:  # instructions of the timed rounds only (see --callgrind)
                    _instrument(True)
                for _ in range(args.repeat):
                    t0 = time.process_time()
                    for op in ops:
                        await answer_on_gateway_path(gw, op)
                    seconds.append((time.process_time() - t0) / len(ops))
                if args.callgrind:
                    _instrument(False)
                gc.callbacks.remove(collector)
                answers_timed = args.repeat * len(ops)
                profile = cProfile.Profile(time.process_time)  # CPU seconds, as measured above
                profile.enable()
                for op in ops:
                    await answer_on_gateway_path(gw, op)
                profile.disable()
                calls = pstats.Stats(profile).total_calls / len(ops)  # type: ignore[attr-defined]
                print(
                    f"  {name:<10} {len(ops):3} documents: CPU min {min(seconds) * 1000:7.3f} ms,"
                    f" median {statistics.median(seconds) * 1000:7.3f} ms; {calls:,.0f} calls;"
                    f" collector {sum(collector.seconds) / answers_timed * 1000:.3f} ms"
                    f" ({'/'.join(f'{n / answers_timed:.2f}' for n in collector.count)} collections);"
                    f" answers {digest.hexdigest()[:16]}",
                    flush=True,
                )
                if args.profile:
                    root, ext = os.path.splitext(args.profile)
                    profile.dump_stats(f"{root}-{name}{ext or '.prof'}" if len(args.workload or WORKLOADS) > 1 else args.profile)
    finally:
        if sim is not None:
            await sim.close()
    return dumps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--orders", type=int, default=600)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--sample", type=int, default=50, help="where-is-my-order: at most this many hot orders")
    p.add_argument("--workload", action="append", choices=WORKLOADS, help="only this workload (repeatable)")
    p.add_argument("--plant", choices=("process", "inline"), default="process")
    p.add_argument("--profile", help="write a cProfile of one round here (-<workload> added when several)")
    p.add_argument(
        "--callgrind",
        action="store_true",
        help="under `valgrind --tool=callgrind --instr-atstart=no`: instrument only the timed rounds"
        " (one workload; instructions per answer = the summary's Ir / (repeat x documents))",
    )
    p.add_argument("--dump", help="write each workload's answers to DUMP-<workload>.json")
    p.add_argument("--serve-plant", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_plant:
        asyncio.run(_serve_plant(args.serve_plant))
        return
    child = None
    plant = None
    if args.plant == "process":
        child, url, now = _start_plant(args.orders)
        plant = (url, now)
    try:
        dumps = asyncio.run(measure(args, plant))
    finally:
        if child is not None:
            assert child.stdin is not None
            child.stdin.close()  # the child stops when its stdin closes
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    if args.dump:
        for name, answers in dumps.items():
            with open(f"{args.dump}-{name}.json", "wb") as f:
                f.write(answers)


if __name__ == "__main__":
    main()

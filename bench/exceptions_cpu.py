"""CPU of the scale scenario's exceptions page (``bench.scale``'s ``EXCEPTIONS``), cold and
warm, per affected order on the page, with the answer's fingerprint.

    python -m bench.plant --port 8100 --orders 100000 --latency-ms 0   # its own process
    python -m bench.exceptions_cpu --plant http://127.0.0.1:8100 [--repeat 20] [--profile PREFIX]

Starts a ``Gateway`` in this process on the scale scenario's configuration (as
``bench.startup_cpu``), waits for ready, then answers the page as the HTTP path does when
the response cache does not answer (``bench.board_cpu.answer_on_gateway_path``): once
right after ready (cold: the records' kept aggregates are computed then), then
``--repeat`` times (warm), then ``--repeat`` times with every exception's kept aggregates
dropped first (``ExceptionRecord._kept``: the cold page's sorting and sums again, without
the first request's other one-time work). Prints CPU (``time.process_time``) min and
median, per affected order on the page, the collector's passes, and a sha256 of the
answer's bytes (the answers of one run must all be equal; across runs only with the
plant's state, so compare two checkouts in one process or against a stopped plant).
Numbers only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import statistics
import time

from gateway.app import Gateway

from .board_cpu import answer_on_gateway_path
from .scale import EXCEPTIONS
from .startup_cpu import GcTimes, profiling, ready_scale_gateway, run, scale_gateway


def drop_kept(gw: Gateway) -> None:
    """Forget every exception's kept aggregates (as before its first read)."""
    assert gw.exceptions is not None
    for record in gw.exceptions.open_exceptions():
        if hasattr(record, "_kept"):
            record._kept = None


async def measure(args: argparse.Namespace) -> None:
    from gateway.operation import Operation
    from resolvers.exception_types import affected_orders
    from resolvers.policy import Role, Viewer

    async with scale_gateway(args, "exceptions") as gw:
        await ready_scale_gateway(gw)
        assert gw.exceptions is not None
        ops = gw.operations
        assert ops is not None
        viewer = Viewer(role=Role.INTEGRATOR, subject="bench")
        op = await ops.document(Operation({"query": EXCEPTIONS}, viewer))
        records = gw.exceptions.open_exceptions()
        print(
            f"{gw.exceptions.evaluated} orders evaluated; {len(records)} open exceptions holding"
            f" {sum(len(r.affected) for r in records)} detections"
        )
        profile = cProfile.Profile(time.process_time) if args.profile else None
        cold_gc = GcTimes()
        gc.callbacks.append(cold_gc)
        c0 = time.process_time()
        with profiling(profile):
            first = await answer_on_gateway_path(gw, op, viewer)
        if profile is not None:
            profile.dump_stats(f"{args.profile}-cold.prof")
        cold = time.process_time() - c0
        gc.callbacks.remove(cold_gc)
        import orjson

        page = orjson.loads(first)["data"]["exceptions"]
        items = sum(len(e["node"]["affected"]) for e in page["edges"])
        digests = {hashlib.sha256(first).hexdigest()[:16]}
        print(f"page: {len(page['edges'])} exceptions, {items} affected orders, {len(first)} bytes")
        print(
            f"cold (first after ready): CPU {cold * 1000:.1f} ms, {cold * 1e6 / max(1, items):.2f} us per affected order;"
            f" collector {cold_gc}"
        )
        for name, before in (("warm", None), ("kept dropped", drop_kept)):
            times = []
            gc_times = GcTimes()
            gc.callbacks.append(gc_times)
            profile = cProfile.Profile(time.process_time) if args.profile else None
            for _ in range(args.repeat):
                if before is not None:
                    before(gw)
                c0 = time.process_time()
                with profiling(profile):
                    out = await answer_on_gateway_path(gw, op, viewer)
                times.append(time.process_time() - c0)
                digests.add(hashlib.sha256(out).hexdigest()[:16])
            gc.callbacks.remove(gc_times)
            if profile is not None:
                profile.dump_stats(f"{args.profile}-{name.replace(' ', '-')}.prof")
            lo, med = min(times), statistics.median(times)
            print(
                f"{name} x{args.repeat}: CPU min {lo * 1000:.1f} ms, median {med * 1000:.1f} ms"
                f" ({lo * 1e6 / max(1, items):.2f} / {med * 1e6 / max(1, items):.2f} us per affected order);"
                f" collector {gc_times}"
            )
        print(f"answers: sha256 {', '.join(sorted(digests))} ({'all equal' if len(digests) == 1 else 'DIFFER'})")
        # What the tracker does once as its first evaluation ends (the board in order, each
        # exception's orders sorted and wrapped), done again here from scratch: its CPU at ready.
        tracker = gw.exceptions
        drop_kept(gw)
        c0 = time.process_time()
        tracker._open._board = type(tracker._open._board)()
        tracker._open._changed.update(tracker._open)
        tracker.board()
        c1 = time.process_time()
        for record in tracker.open_exceptions():
            affected_orders(record)
        c2 = time.process_time()
        print(
            f"at ready, again: the board {(c1 - c0) * 1000:.1f} ms,"
            f" each exception's orders sorted and wrapped {(c2 - c1) * 1000:.1f} ms"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plant", help="URL of a running bench.plant (else one is started in process, clock stopped)")
    p.add_argument("--orders", type=int, default=2000, help="orders of the in-process plant")
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--profile", metavar="PREFIX", help="cProfile to PREFIX-cold.prof, PREFIX-warm.prof, ...")
    run(measure, p.parse_args())


if __name__ == "__main__":
    main()

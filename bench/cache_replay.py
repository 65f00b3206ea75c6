"""The start-up pass's writes into the record cache, replayed without sources or rules.

    python -m bench.cache_replay [--orders 100000] [--rounds 3]

Pages of 500 orders, 7.4 records per order (what the pass reads at 100,000 orders:
~740,000 keys), each record a slotted object of a dozen fields; each page's records are
let go after the page, as the pass's context is. CPU seconds (``time.process_time``,
collector paused) of the whole replay, three ways, alternated round by round:

- ``plain``: every write as a question's (the cache past ``maxsize`` evicts a tenth);
- ``scan``: inside ``gateway.cache.scanning()``, as the tracker's passes write (keeps
  what fits, evicts nothing);
- ``none``: the records made and let go, no cache: the floor both share.

Numbers only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import statistics
import time
from typing import Any

from gateway.cache import RecordCache, scanning

FETCHED_AT = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
NAMESPACES = ("erp.sales_order", "mes.po_by_so", "wms.dl_by_so", "mes.comp_by_po", "qms.lots_by_po", "tms.shipment")


@dataclasses.dataclass(slots=True)
class Rec:
    a: str
    b: str
    c: float
    d: float
    e: str
    f: str
    g: dt.datetime
    h: str
    i: float
    j: str
    k: tuple[int, int]
    m: str


def page_records(page: int, per_order: float = 7.4) -> list[tuple[tuple[str, str], list[Rec]]]:
    out = []
    for i in range(int(500 * per_order)):
        key = (NAMESPACES[i % len(NAMESPACES)], f"{page:05d}{i:05d}")
        out.append((key, [Rec(key[1], "x" * 8, 1.0 * i, 2.0, "EUR", key[0], FETCHED_AT, "y", 3.0, "z", (i, page), "w")]))
    return out


def replay(mode: str, orders: int) -> tuple[float, RecordCache]:
    cache = RecordCache()  # the default maxsize (gateway.cache.DEFAULT_MAXSIZE)
    enabled = gc.isenabled()
    gc.disable()
    try:
        c0 = time.process_time()
        for page in range(orders // 500):
            records = page_records(page)
            ticket = cache.ticket()
            if mode == "plain":
                for key, value in records:
                    cache.put(key, value, ticket, FETCHED_AT)
            elif mode == "scan":
                with scanning():
                    for key, value in records:
                        cache.put(key, value, ticket, FETCHED_AT)
            del records
        return time.process_time() - c0, cache
    finally:
        if enabled:
            gc.enable()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--orders", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    seconds: dict[str, list[float]] = {"plain": [], "scan": [], "none": []}
    for r in range(args.rounds):
        for mode in ("plain", "scan", "none") if r % 2 == 0 else ("none", "scan", "plain"):
            took, cache = replay(mode, args.orders)
            seconds[mode].append(took)
            info: Any = f"{len(cache)} held, {cache.evictions} evicted, {cache.scan_skipped} not kept"
            print(f"round {r + 1} {mode:<5}: {took:.2f} s CPU ({info})", flush=True)
    for mode, xs in seconds.items():
        print(f"{mode:<5}: CPU min {min(xs):.2f} s, median {statistics.median(xs):.2f} s")


if __name__ == "__main__":
    main()

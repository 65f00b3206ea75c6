"""CPU seconds to generate (and prerender) the simulated plant, and a fingerprint of it.

``python -m bench.generation --orders 20000 [--profile]`` builds the world in-process at a
fixed seed and a pinned plant clock, prints CPU seconds (``time.process_time``) of
generation and of prerendering, and a sha256 over every table's rendered records and
indexes and every order track: an optimisation of generation must leave it unchanged.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import hashlib
import pstats
import time

import orjson

from sources.simulator.world import World

START = dt.datetime(2026, 11, 30, 21, 0, tzinfo=dt.UTC)


def fingerprint(world: World) -> str:
    """sha256 over the rendered records, the indexes and the order tracks, in key order."""
    h = hashlib.sha256()
    for name in sorted(world.tables):
        table = world.tables[name]
        for key in table.keys():
            h.update(orjson.dumps([name, key, table.render(key)], option=orjson.OPT_SORT_KEYS))
        for field, index in sorted(table._index.items()):
            for value in sorted(index):
                h.update(orjson.dumps([name, field, value, sorted(index[value])]))
    for track in world._tracks.values():
        h.update(repr(track).encode())
    h.update(repr(sorted(world._master.ship_tos.items())).encode())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.generation", description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=20000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--profile", action="store_true", help="print the top functions by own time")
    p.add_argument("--no-fingerprint", action="store_true")
    a = p.parse_args(argv)
    profile = cProfile.Profile() if a.profile else None
    c0 = time.process_time()
    if profile:
        profile.enable()
    world = World.generate(a.orders, 50, a.seed, START)
    c1 = time.process_time()
    world.prerender()
    c2 = time.process_time()
    if profile:
        profile.disable()
    print(f"orders={a.orders} generate_cpu={c1 - c0:.2f}s prerender_cpu={c2 - c1:.2f}s total={c2 - c0:.2f}s")
    if not a.no_fingerprint:
        print("fingerprint", fingerprint(world))
    if profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()

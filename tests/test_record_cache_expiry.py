"""The record cache's TTL jitter: records written together expire spread over a window,
never past ``ttl_seconds`` and never after an invalidation."""

from __future__ import annotations

import random

from gateway.cache import RecordCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def filled(n: int = 200, *, jitter: float = 0.2, ttl: float = 300.0) -> tuple[RecordCache, Clock, list[tuple[str, str]]]:
    clock = Clock()
    cache = RecordCache(ttl_seconds=ttl, timer=clock, ttl_jitter=jitter, rng=random.Random(7).random)
    keys = [("mes.order", str(i)) for i in range(n)]
    ticket = cache.ticket()
    for k in keys:
        assert cache.put(k, k[1], ticket)
    return cache, clock, keys


def alive(cache: RecordCache, keys: list[tuple[str, str]]) -> int:
    found, _missing = cache.get_entries(keys)
    return len(found)


def test_records_written_together_expire_over_a_window_not_at_one_instant():
    cache, clock, keys = filled()
    clock.now += 300.0 * 0.8 - 1  # before the earliest possible expiry: all alive
    assert alive(cache, keys) == len(keys)
    counts = []
    for _ in range(7):  # through the jitter window (240-300 s), in 10 s steps
        clock.now += 10.0
        counts.append(alive(cache, keys))
    # Some expired early in the window, some late: no single step drops them all.
    assert counts[0] > 0 and counts[-1] == 0
    assert max(a - b for a, b in zip([len(keys), *counts], counts, strict=False)) < len(keys) // 2


def test_no_record_is_served_past_its_ttl():
    cache, clock, keys = filled()
    clock.now += 300.0
    assert alive(cache, keys) == 0
    assert all(cache.get(k) is None for k in keys)
    assert cache.keys() == []


def test_an_invalidation_still_drops_a_record_before_its_jittered_expiry():
    cache, clock, keys = filled()
    ticket = cache.ticket()  # a read that began before the invalidation
    cache.invalidate(keys[:10])
    clock.now += 1.0
    assert all(cache.get(k) is None for k in keys[:10])
    assert not cache.put(keys[0], "old", ticket)  # its late answer is refused
    assert alive(cache, keys) == len(keys) - 10


def test_no_jitter_keeps_the_exact_ttl():
    cache, clock, keys = filled(jitter=0.0)
    clock.now += 300.0 - 0.001
    assert alive(cache, keys) == len(keys)
    clock.now += 0.002
    assert alive(cache, keys) == 0

"""The record cache's batch write (``put_many``, one source answer's keys at once) keeps
every rule of ``put``: a key invalidated after the read's ticket, a namespace dropped
after it, or everything dropped after it refuses the write; expiry, last good values
and the size bound are the same."""

from __future__ import annotations

import datetime as dt
import random

from gateway.cache import RecordCache

FETCHED = dt.datetime(2026, 12, 1, 6, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pair(maxsize: int) -> tuple[RecordCache, RecordCache, Clock]:
    clock = Clock()
    one = RecordCache(maxsize=maxsize, ttl_seconds=60.0, timer=clock, rng=random.Random(3).random)
    many = RecordCache(maxsize=maxsize, ttl_seconds=60.0, timer=clock, rng=random.Random(3).random)
    return one, many, clock


def state(cache: RecordCache, keys: list[tuple[str, str]]) -> tuple:
    found, missing = cache.get_entries(keys)
    return (
        {k: (e.value, e.fetched_at) for k, e in found.items()},
        missing,
        {k: cache.last_good(k) for k in keys},
        cache.refused_writes,
        cache.size(),
    )


def test_a_batch_write_stores_and_refuses_exactly_as_single_writes_after_random_invalidations():
    rng = random.Random(11)
    namespaces = ["mes.po", "wms.comp", "qms.lot"]
    keys = [(ns, str(i)) for ns in namespaces for i in range(40)]
    for maxsize in (1000, 50):  # the second also evicts
        one, many, clock = pair(maxsize)
        for step in range(300):
            # a read takes its ticket, then events may land before its answer is stored
            ticket_one, ticket_many = one.ticket(), many.ticket()
            assert ticket_one == ticket_many
            for _ in range(rng.randrange(3)):
                what = rng.random()
                if what < 0.7:
                    dropped = rng.sample(keys, rng.randrange(1, 6))
                    one.invalidate(dropped)
                    many.invalidate(dropped)
                elif what < 0.9:
                    ns = rng.choice(namespaces)
                    one.invalidate_namespace(ns)
                    many.invalidate_namespace(ns)
                else:
                    one.invalidate_all()
                    many.invalidate_all()
            batch = [(k, (k, step)) for k in rng.sample(keys, rng.randrange(1, 30))]
            stored = sum(one.put(k, v, ticket_one, FETCHED) for k, v in batch)
            assert many.put_many(batch, ticket_many, FETCHED) == stored
            clock.now += rng.random() * 5  # some entries expire (TTL 60 s less jitter)
            assert state(one, keys) == state(many, keys), step
        assert one.refused_writes > 0  # the sequence did exercise the fences


def test_a_batch_read_before_an_invalidation_does_not_bring_the_old_value_back():
    cache = RecordCache(ttl_seconds=60.0)
    ticket = cache.ticket()
    cache.invalidate([("mes.po", "1")])  # an event landed while the read was in flight
    assert cache.put_many([(("mes.po", "1"), "old"), (("mes.po", "2"), "fine")], ticket, FETCHED) == 1
    assert cache.get(("mes.po", "1")) is None
    assert cache.get(("mes.po", "2")) == "fine"


def test_a_written_entry_is_an_entry_with_its_value_fetch_time_and_jittered_expiry():
    """``put_many`` builds its entries without the NamedTuple's ``__new__``: still an
    ``Entry``, with the value, the fetch time and the expiry (the TTL less its jitter)."""
    from gateway.cache import Entry

    clock = Clock()
    draws = random.Random(5)
    cache = RecordCache(ttl_seconds=60.0, ttl_jitter=0.2, timer=clock, rng=random.Random(5).random)
    value = object()
    assert cache.put_many([(("mes.po", "1"), value), (("mes.po", "2"), None)], cache.ticket(), FETCHED) == 2
    for key, expected in ((("mes.po", "1"), value), (("mes.po", "2"), None)):
        entry = cache.last_good(key)
        assert type(entry) is Entry and len(entry) == 3
        assert entry == Entry(expected, FETCHED, clock.now + 60.0 - 12.0 * draws.random())
        assert entry.value is expected and entry.fetched_at is FETCHED
    assert cache.get(("mes.po", "1")) is value

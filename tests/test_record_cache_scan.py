"""A pass over every order keeps what fits in the record cache and evicts nothing
(``gateway.cache.scanning``): at 100,000 orders the start-up pass read 3.7 times the
cache's ``maxsize`` and evicted most of what it stored, unread. Inside a scan a write
replaces a held key, adds a new one only while there is room, and is fenced by
invalidations as any write; outside it (questions, and tasks not started by the scan)
writes evict as before. The tracker's answers do not depend on what the cache kept.

When the plant's records do not all fit, the first pass keeps those of the orders still in
production: it names the records of the others as the ones to give up (``spare``),
delivered and cancelled orders' first.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gateway.cache import RecordCache, scanning
from gateway.exception_tracker import ExceptionTracker
from gateway.sqlite_journal import SQLiteJournal
from resolvers.derived import documents_cache_keys, order_cache_keys
from resolvers.view import production_left
from sources import namespaces as ns


def keys(n: int, start: int = 0) -> list[tuple[str, str]]:
    return [("mes.po_by_so", str(i)) for i in range(start, start + n)]


def test_a_scan_keeps_what_fits_and_evicts_nothing():
    cache = RecordCache(maxsize=10)
    ticket = cache.ticket()
    with scanning():
        stored = [cache.put(k, k[1], ticket) for k in keys(25)]
    assert stored == [True] * 10 + [False] * 15
    assert cache.evictions == 0 and cache.scan_skipped == 15
    found, missing = cache.get_entries(keys(25))
    assert sorted(found) == sorted(keys(10)) and len(missing) == 15  # the first ten, unevicted
    assert all(cache.last_good(k) is not None for k in keys(10))
    assert all(cache.last_good(k) is None for k in keys(15, 10))  # the last-good store's bound too


def test_a_scan_replaces_a_held_key_with_the_newer_answer_when_full():
    cache = RecordCache(maxsize=10)
    old = cache.ticket()
    for k in keys(10):
        cache.put(k, "old", old)
    new = cache.ticket()
    with scanning():
        assert cache.put(keys(10)[3], "new", new)
        assert not cache.put(("mes.po_by_so", "99"), "new", new)  # full: not added
    assert cache.get(keys(10)[3]) == "new" and cache.last_good(keys(10)[3]).value == "new"
    assert len(cache) == 10 and cache.evictions == 0
    assert cache.get(keys(10)[0]) == "old"  # nothing else moved


def test_an_expired_key_the_scan_reads_again_is_kept_again_when_full():
    now = [1000.0]
    cache = RecordCache(maxsize=10, ttl_seconds=300.0, ttl_jitter=0.0, timer=lambda: now[0])
    ticket = cache.ticket()
    for k in keys(10):
        cache.put(k, "old", ticket)
    now[0] += 301.0  # all expired, still held
    _found, missing = cache.get_entries(keys(1))  # the scan's read drops the expired entry
    assert missing == keys(1)
    with scanning():
        assert cache.put(keys(1)[0], "fresh", cache.ticket())
    assert cache.get(keys(1)[0]) == "fresh"


def test_a_scan_write_that_raced_an_invalidation_is_refused():
    cache = RecordCache(maxsize=10)
    ticket = cache.ticket()  # the scan's read began
    cache.invalidate(keys(1))  # an event changed the record meanwhile
    with scanning():
        assert not cache.put(keys(1)[0], "old answer", ticket)  # room enough, still fenced
        assert cache.overtaken(keys(1), ticket)
    assert cache.get(keys(1)[0]) is None and cache.refused_writes == 1
    before_all = cache.ticket()
    cache.invalidate_all()
    with scanning():
        assert not cache.put(keys(1, 5)[0], "old answer", before_all)
    assert cache.get(keys(1, 5)[0]) is None


def filled_by_a_scan(n: int = 10) -> tuple[RecordCache, int]:
    """A cache of ``n`` entries that a scan filled, and the scan's ticket."""
    cache = RecordCache(maxsize=n)
    ticket = cache.ticket()
    with scanning():
        for k in keys(n):
            cache.put(k, k[1], ticket)
    return cache, ticket


def test_writes_outside_a_scan_still_evict_the_oldest():
    cache, ticket = filled_by_a_scan()
    for k in keys(1, 100):  # a question after the pass: room is made as before
        assert cache.put(k, k[1], ticket)
    assert cache.evictions == 2  # a tenth of maxsize less one, then the new key: 9 left + 1
    assert len(cache) == 9 and cache.get(keys(1, 100)[0]) == "100"
    assert cache.get(keys(1)[0]) is None  # the oldest went first


async def test_tasks_started_in_a_scan_scan_and_others_do_not():
    cache = RecordCache(maxsize=10)
    ticket = cache.ticket()
    for k in keys(10):
        cache.put(k, k[1], ticket)
    question_may_write = asyncio.Event()

    async def question() -> bool:  # started before the scan, runs while it does
        await question_may_write.wait()
        return cache.put(("mes.po_by_so", "q"), "q", cache.ticket())

    async def page() -> bool:  # a page of the pass: a task the scan started
        return cache.put(("mes.po_by_so", "p"), "p", cache.ticket())

    asked = asyncio.create_task(question())
    with scanning():
        assert not await asyncio.create_task(page())  # full: not kept, nothing evicted
        assert cache.evictions == 0
        question_may_write.set()
        assert await asked  # the question's write makes room, as always
    assert cache.evictions > 0 and cache.get(("mes.po_by_so", "q")) == "q"
    assert cache.get(("mes.po_by_so", "p")) is None


async def _open_exceptions(
    gw: Any, cache: RecordCache, *, ready: bool = False, chunk_size: int = 100
) -> tuple[dict[str, Any], ExceptionTracker]:
    """A tracker's pass over every order with ``cache`` as the gateway's record cache."""
    shared = gw.cache
    gw.cache = cache
    try:
        tracker = ExceptionTracker(
            gw.context, await SQLiteJournal.open(":memory:"), clock=gw.domain_clock,
            prediction_params=gw.prediction_params, chunk_size=chunk_size,
        )  # fmt: skip
        if ready:
            tracker.ready.set()
        await tracker._evaluate_all()
        return {r.id: r.to_payload() for r in tracker.open_exceptions()}, tracker
    finally:
        gw.cache = shared


async def test_the_pass_evicts_nothing_and_finds_the_same_exceptions(frozen_world):
    _plant, _url, app, _http = frozen_world
    gw = app.state.gateway
    roomy = RecordCache(maxsize=1_000_000)
    expected, whole = await _open_exceptions(gw, roomy)
    assert expected and roomy.evictions == 0
    held = len(roomy)
    assert held > 1000  # the plant's records, several per order

    small = RecordCache(maxsize=held // 3)
    first, tracker = await _open_exceptions(gw, small)
    assert first == expected  # what the cache kept changes no answer
    assert tracker.evaluated == whole.evaluated  # every order was evaluated
    assert small.evictions == 0 and len(small) <= small.maxsize
    # The rest was read, used, and not kept, or kept and then given up (spared).
    assert small.scan_skipped + small.spared >= held - len(small)

    # A question read some records since: a sweep (after ready) does not push them out.
    question = [k for k in roomy.keys() if k not in set(small.keys())][: small.maxsize - len(small) + 50]
    ticket = small.ticket()
    for k in question:
        small.put(k, roomy.get(k), ticket)
    assert small.evictions > 0  # the question made room, as writes outside a scan do
    evicted = small.evictions
    swept, _ = await _open_exceptions(gw, small, ready=True)
    assert swept == expected
    assert small.evictions == evicted
    assert all(small.get(k) is not None for k in question)


def test_a_scan_gives_up_spared_keys_for_room_most_expendable_first():
    cache, ticket = filled_by_a_scan()
    with scanning():
        cache.spare(keys(3), first=False)
        cache.spare([("mes.po_by_so", "gone")] + keys(2, 5), first=True)  # one not held: skipped
        stored = [cache.put(k, k[1], ticket) for k in keys(7, 10)]
    assert stored == [True] * 5 + [False] * 2
    assert cache.spared == 5 and cache.scan_skipped == 2 and cache.evictions == 0
    held = set(cache.keys())
    assert held == set(keys(10)) - set(keys(2, 5)) - set(keys(3)) | set(keys(5, 10))
    assert all(cache.last_good(k) is None for k in keys(3) + keys(2, 5))  # their memory goes too
    # Named before it is written (an idle order's documents): not stored once full, and
    # nothing given up for it.
    cache.spare([("mes.po_by_so", "idle")])
    cache.spare(keys(1, 12))
    with scanning():
        assert not cache.put(("mes.po_by_so", "idle"), "idle", ticket)
    assert cache.spared == 5 and cache.scan_skipped == 3 and len(cache) == 10
    cache.spare(keys(2, 7))
    cache.spare_done()  # the pass is over: nothing spared any more
    with scanning():
        assert not cache.put(("mes.po_by_so", "late"), "late", ticket)
    assert cache.spared == 5


async def test_the_first_pass_keeps_the_records_of_orders_in_production(frozen_world, caplog):
    _plant, _url, app, _http = frozen_world
    gw = app.state.gateway
    roomy = RecordCache(maxsize=1_000_000)
    expected, _ = await _open_exceptions(gw, roomy)
    held = len(roomy)
    in_production = []
    for key in roomy.keys():
        if key[0] != ns.PRODUCTION_ORDERS_BY_SALES_ORDER:
            continue
        pos = roomy.get(key)
        if production_left(pos):
            deliveries = roomy.get((ns.DELIVERIES_BY_SALES_ORDER, key[1]))
            in_production += order_cache_keys(key[1]) + documents_cache_keys(
                [po.manufacturing_order for po in pos], [d.delivery_document for d in deliveries]
            )
    shared = [k for k in roomy.keys() if k[0] in (ns.CUSTOMER, ns.WORK_CENTER)]
    # Room for those and the pages in flight, 20 orders each (a page's records are stored
    # as it reads them, and the records it names spare only make room for later pages).
    room = len(in_production) + len(shared) + 3 * 20 * held // len(expected_orders(roomy))
    assert room < held * 0.7  # the others' records must make way: the test can fail

    small = RecordCache(maxsize=room)
    with caplog.at_level(logging.INFO, logger="ordergraph.exceptions"):
        first, tracker = await _open_exceptions(gw, small, chunk_size=20)
    assert first == expected
    assert small.spared > 0 and small.evictions == 0
    kept = set(small.keys())
    assert set(in_production) <= kept  # every order still in production: all its records
    assert not any(small._spare) and not small.spare_at_once  # the names are forgotten with the pass
    # The pass saw from its first page that the plant would not fit: the records of the
    # orders with no production left were not kept from then on, so the store did not fill
    # up with them (as it did before, to give them up one by one later). Only what the
    # pages read before that decision (two at a time, 20 orders each) is left of them.
    assert "do not fit" in caplog.text
    others = kept - set(in_production) - set(shared)
    per_order = held / len(expected_orders(roomy))
    assert len(others) <= tracker.page_concurrency * 20 * per_order
    assert len(small) < small.maxsize


def test_a_scan_that_expects_more_than_fits_does_not_keep_spared_keys():
    cache = RecordCache(maxsize=10)
    ticket = cache.ticket()
    with scanning():
        for k in keys(3):
            cache.put(k, k[1], ticket)
    assert not cache.expect_scan(10)  # fits: spared keys are given up only for room
    cache.spare(keys(1))
    assert cache.get(keys(1)[0]) == "0"
    assert cache.expect_scan(11)
    cache.spare(keys(1, 2))  # held: dropped now, last-good copy too
    cache.spare([("mes.po_by_so", "idle")])  # named before it is read
    assert cache.get(keys(1, 2)[0]) is None and cache.last_good(keys(1, 2)[0]) is None
    with scanning():
        assert not cache.put(("mes.po_by_so", "idle"), "idle", ticket)  # room, but not kept
        assert cache.put(("mes.po_by_so", "busy"), "busy", ticket)
        assert cache.put(keys(1)[0], "newer", ticket)  # held (named before the switch): replaced
    assert cache.last_good(("mes.po_by_so", "idle")) is None
    assert len(cache) == 3 and cache.spared == 1 and cache.scan_skipped == 1
    cache.spare_done()
    assert not cache.spare_at_once
    with scanning():
        assert cache.put(("mes.po_by_so", "idle"), "idle", ticket)  # a later pass keeps what fits


def expected_orders(cache: RecordCache) -> list[str]:
    return [k[1] for k in cache.keys() if k[0] == ns.SALES_ORDER]


def test_a_scan_keeps_the_held_object_when_the_record_did_not_change():
    """The sweep re-reads records whose TTL ran out: an equal answer keeps the object held
    (the sweep's copy dies with its page), a changed one replaces it."""
    now = [1000.0]
    cache = RecordCache(maxsize=10, ttl_seconds=300.0, ttl_jitter=0.0, timer=lambda: now[0])
    held = {"qty": [1.0, 2.0]}
    changed_before = {"qty": [3.0]}
    cache.put(keys(1)[0], held, cache.ticket())
    cache.put(keys(1, 1)[0], changed_before, cache.ticket())
    now[0] += 301.0  # expired
    cache.get_entries(keys(2))
    copy, changed = {"qty": [1.0, 2.0]}, {"qty": [4.0]}
    with scanning():
        ticket = cache.ticket()
        assert cache.put(keys(1)[0], copy, ticket)
        assert cache.put(keys(1, 1)[0], changed, ticket)
    assert cache.get(keys(1)[0]) is held and cache.last_good(keys(1)[0]).value is held
    assert cache.get(keys(1, 1)[0]) is changed and cache.last_good(keys(1, 1)[0]).value is changed
    # outside a scan a write stores what it was given
    cache.put(keys(1)[0], copy, cache.ticket())
    assert cache.get(keys(1)[0]) is copy


def test_a_full_cache_drops_a_hundredth_at_a_time():
    """Each overflow frees a hundredth of the cache, oldest first: short pauses for the
    question that overflows it (a tenth at once was a 10-30 ms pause at 100,000 orders)."""
    cache = RecordCache(maxsize=1000)
    ticket = cache.ticket()
    for i in range(1001):
        assert cache.put(("mes.po_by_so", str(i)), i, ticket)
    assert cache.evictions == 11 and len(cache) == 990  # 10 for room, and the overflow
    assert cache.get(("mes.po_by_so", "10")) is None and cache.get(("mes.po_by_so", "11")) == 11
    for i in range(1001, 1011):  # the room made: no eviction until full again
        cache.put(("mes.po_by_so", str(i)), i, ticket)
    assert cache.evictions == 11 and len(cache) == 1000


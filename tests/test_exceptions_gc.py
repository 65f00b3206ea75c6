"""The exception tracker's first evaluation of every order runs with the cyclic collector's
automatic passes paused (when the gateway freezes its heap, ``freeze_gc``): each pass walked
what the pages in flight held, a growing share of the start-up's CPU as the plant grows.
The collector is restored afterwards, also when the pass fails, and later sweeps leave it on.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from gateway.exception_tracker import ExceptionTracker
from gateway.sqlite_journal import SQLiteJournal


async def _tracker(
    frozen_world: Any, freeze_gc: bool, seen: list[bool], context_factory: Any = None
) -> ExceptionTracker:
    _plant, _url, app, _http = frozen_world
    gw = app.state.gateway

    async def observe(loaded: list[Any], _now: Any) -> None:
        seen.append(gc.isenabled())  # while each page's orders are evaluated

    journal = await SQLiteJournal.open(":memory:")
    tracker = ExceptionTracker(
        context_factory or gw.context,
        journal,
        clock=gw.domain_clock,
        prediction_params=gw.prediction_params,
        observe=observe,
        chunk_size=100,
        freeze_gc=freeze_gc,
    )
    return tracker


async def test_first_pass_pauses_the_collector_and_sweeps_do_not(frozen_world, collector_on):
    seen: list[bool] = []
    tracker = await _tracker(frozen_world, True, seen)
    await tracker._evaluate_all()
    assert len(seen) >= 3 and not any(seen)  # every page of the first pass: paused
    assert gc.isenabled()  # and on again once it is done
    first = {r.id: r.to_payload() for r in tracker.open_exceptions()}
    assert first  # the plant has exceptions: the pass did evaluate

    tracker.ready.set()  # a later sweep: the collector stays on
    seen.clear()
    await tracker._evaluate_all()
    assert seen and all(seen)
    assert {r.id: r.to_payload() for r in tracker.open_exceptions()} == first


async def test_without_heap_freezing_the_collector_stays_on(frozen_world, collector_on):
    seen: list[bool] = []
    tracker = await _tracker(frozen_world, False, seen)
    await tracker._evaluate_all()
    assert seen and all(seen)


async def test_a_failed_first_pass_restores_the_collector(frozen_world, collector_on):
    _plant, _url, app, _http = frozen_world
    calls = 0

    def failing_after_a_page() -> Any:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise RuntimeError("source gone")
        return app.state.gateway.context()

    seen: list[bool] = []
    tracker = await _tracker(frozen_world, True, seen, context_factory=failing_after_a_page)
    with pytest.raises(RuntimeError):
        await tracker._evaluate_all()
    assert gc.isenabled()


async def test_a_paused_collector_stays_paused(frozen_world, collector_on):
    seen: list[bool] = []
    tracker = await _tracker(frozen_world, True, seen)
    gc.disable()
    await tracker._evaluate_all()
    assert not gc.isenabled()  # as it was before the pass


async def test_from_the_first_pass_end_to_ready_the_collector_walks_nothing(frozen_world, collector_on):
    """What the first pass's end allocates (the diff, the journal's steps) and the board's
    work before ready are frozen, not walked by the collector's passes: they grew with the
    plant (two full passes, 0.24 s, at 100,000 orders; none at 20,000)."""
    seen: list[bool] = []
    tracker = await _tracker(frozen_world, True, seen)
    collections: list[int] = []

    def watch(phase: str, info: dict[str, int]) -> None:
        # From the last page's end (the first pass's line is kept) until the ready line.
        if phase == "start" and tracker._first_pass is not None and not tracker.ready.is_set():
            collections.append(info["generation"])

    gc.callbacks.append(watch)
    try:
        tracker.start()
        await asyncio.wait_for(tracker.ready.wait(), 60)
    finally:
        gc.callbacks.remove(watch)
        await tracker.stop()
    assert seen and not any(seen)  # the pages ran with the collector paused
    assert tracker.open_exceptions()  # and found exceptions, which the board then ranked
    assert collections == []
    assert gc.isenabled()

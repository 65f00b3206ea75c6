"""The first pass's exceptions are journaled in slices (``ExceptionTracker.record_slice``):
while one slice's writes are committed, the next slice's payloads are built; the next
slice's writes are queued only once the slice before is journaled and pushed, so the
steps reach subscribers in cursor order, each once, exactly as the journal holds them."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway import exception_tracker as tracker_module
from gateway.exception_tracker import ExceptionTracker
from gateway.sqlite_journal import SQLiteJournal


class SlowJournal:
    """A SQLite journal whose writes take a moment each (as commits do): notes how many
    payloads were built when each write returned."""

    def __init__(self, inner: SQLiteJournal, built: list[int]) -> None:
        self.inner = inner
        self.built = built
        self.built_at_return: list[int] = []
        self.writes_in_flight = 0
        self.max_in_flight = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def record_exception_transition(self, *args: Any, **kwargs: Any) -> int:
        self.writes_in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.writes_in_flight)
        try:
            await asyncio.sleep(0.01)
            return await self.inner.record_exception_transition(*args, **kwargs)
        finally:
            self.writes_in_flight -= 1
            self.built_at_return.append(self.built[0])


async def test_slices_overlap_and_reach_subscribers_in_cursor_order(frozen_world, monkeypatch):
    _plant, _url, app, _http = frozen_world
    gw = app.state.gateway
    built = [0]
    step = tracker_module._step

    def counting_step(*args: Any) -> Any:
        built[0] += 1
        return step(*args)

    monkeypatch.setattr(tracker_module, "_step", counting_step)
    inner = await SQLiteJournal.open(":memory:")
    journal = SlowJournal(inner, built)
    published: list[list[Any]] = []
    tracker = ExceptionTracker(
        gw.context, journal, clock=gw.domain_clock, prediction_params=gw.prediction_params,  # type: ignore[arg-type]
        publish=lambda rows: published.append(list(rows)),
    )  # fmt: skip
    tracker.record_slice = 7
    try:
        await tracker._evaluate_all()
        opened = tracker.open_exceptions()
        assert len(opened) > 3 * tracker.record_slice  # several slices

        # Pushed in slices, in cursor order, each step once: the journal's log, in full.
        assert [len(rows) for rows in published[:-1]] == [tracker.record_slice] * (len(published) - 1)
        cursors = [row.cursor for rows in published for row in rows]
        assert cursors == sorted(set(cursors))
        logged = await inner.exception_transitions_after(0, limit=100_000)
        assert [(t.cursor, t.exception_id, t.payload) for t in logged] == [
            (row.cursor, row.exception_id, row.payload) for rows in published for row in rows
        ]
        assert {r.id for r in opened} == set(await inner.open_exceptions())
        # One slice's writes at a time, and the next slice built while they were written:
        # when the first slice's writes returned, the second slice's payloads were built.
        assert journal.max_in_flight == tracker.record_slice
        assert journal.built_at_return[0] == 2 * tracker.record_slice
    finally:
        await inner.close()

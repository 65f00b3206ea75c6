"""A restart reads the exception log's end, not the whole log (gateway/exception_tracker.py
``_load_journal``): the recently cleared exceptions, newest first, until ``closed_limit``
distinct ones, and the last cursor. The state it rebuilds is the one reading every step
oldest first gave (``whole_log_state`` below: the former algorithm), on both journals
(SQLite here; Redis when one is reachable, as ``.ci/run`` starts)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.exception_tracker import ExceptionTracker
from gateway.sqlite_journal import SQLiteJournal
from resolvers.enums import ExceptionKind, Severity
from resolvers.exception_rules import Detection, ExceptionRecord, RootCause

from .servers import REDIS_URL

T0 = dt.datetime(2026, 11, 30, 14, 0, tzinfo=dt.UTC)
ROOT = RootCause("mes", "WorkCenter", "WC-20", "CNC milling")


@pytest.fixture(params=["sqlite", "redis"])
async def journal(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Any]:
    if request.param == "sqlite":
        j = await SQLiteJournal.open(str(tmp_path / "journal.sqlite"))
        try:
            yield j
        finally:
            await j.close()
        return
    from gateway.redis_journal import RedisJournal

    prefix = f"ordergraph-test:{uuid.uuid4().hex[:12]}:"
    try:
        j = await RedisJournal.open(REDIS_URL, prefix=prefix, publish=False)
    except Exception as exc:  # noqa: BLE001 - any failure to reach Redis is a skip
        pytest.skip(f"the Redis journal test needs Redis at {REDIS_URL} (.ci/run starts one): {exc}")
    try:
        yield j
    finally:
        keys = [k async for k in j._r.scan_iter(match=f"{prefix}*")]
        if keys:
            await j._r.delete(*keys)
        await j.close()


def _record(exception_id: str, orders: list[str], n: int) -> ExceptionRecord:
    detections = {
        so: Detection(
            kind=ExceptionKind.MACHINE_DOWN, root=ROOT, sales_order=so, customer="C1", commercial_priority="NORMAL",
            severity=Severity.HIGH, days_late=n % 3, value_at_risk=float(n), net_value=float(n + 1), currency="EUR",
            promised_delivery_date=dt.date(2026, 12, 10), predicted_delivery_date=dt.date(2026, 12, 11),
            work_centers=("WC-20",), internal_text=f"step {n}", customer_text="c",
        )  # fmt: skip
        for so in orders
    }
    return ExceptionRecord(id=exception_id, kind=ExceptionKind.MACHINE_DOWN, root=ROOT, detected_at=T0, affected=detections)


async def _random_log(journal: Any, steps: int, ids: int, seed: int) -> None:
    """``steps`` RAISED/CLEARED steps over ``ids`` exceptions, each step's payload its own."""
    rng = random.Random(seed)
    open_: set[str] = set()
    for n in range(steps):
        eid = f"MACHINE_DOWN:mes:WC-{rng.randrange(ids)}"
        record = _record(eid, [f"1000{rng.randrange(50):04d}" for _ in range(rng.randrange(1, 4))], n)
        if eid in open_ and rng.random() < 0.5:
            action = "CLEARED"
            record = dataclasses.replace(record, cleared_at=T0 + dt.timedelta(minutes=n))
            open_.discard(eid)
        else:
            action = "RAISED"
            open_.add(eid)
        await journal.record_exception_transition(eid, "MACHINE_DOWN", action, {**record.to_payload(), "action": action}, T0)


async def whole_log_state(journal: Any, closed_limit: int) -> tuple[list[tuple[str, Any]], set[str], int]:
    """The former ``_load_journal``: every step, oldest first."""
    closed: dict[str, ExceptionRecord] = {}
    cursor = 0
    while rows := await journal.exception_transitions_after(cursor, limit=1000):
        for row in rows:
            if row.action == "CLEARED":
                record = ExceptionRecord.from_payload(row.payload)
                closed.pop(record.id, None)
                closed[record.id] = record
                while len(closed) > closed_limit:
                    del closed[next(iter(closed))]
        cursor = rows[-1].cursor
    opened = set(await journal.open_exceptions())
    for eid in opened:
        closed.pop(eid, None)
    return [(k, r.to_payload()) for k, r in closed.items()], opened, cursor


async def _loaded(journal: Any, closed_limit: int) -> ExceptionTracker:
    tracker = ExceptionTracker(lambda: None, journal, clock=lambda: T0, closed_limit=closed_limit)
    await tracker._load_journal()
    return tracker


async def test_the_log_read_from_its_end(journal: Any) -> None:
    """Newest first, CLEARED only, before a cursor, at most ``limit``; the last cursor."""
    assert await journal.last_exception_cursor() == 0
    assert await journal.cleared_exceptions_before(None) == []
    record = _record("A", ["10000001"], 1)
    c1 = await journal.record_exception_transition("A", "MACHINE_DOWN", "RAISED", record.to_payload(), T0)
    c2 = await journal.record_exception_transition("A", "MACHINE_DOWN", "CLEARED", {"v": 2}, T0)
    c3 = await journal.record_exception_transition("B", "MACHINE_DOWN", "RAISED", {"v": 3}, T0)
    c4 = await journal.record_exception_transition("B", "MACHINE_DOWN", "CLEARED", {"v": 4}, T0)
    c5 = await journal.record_exception_transition("A", "MACHINE_DOWN", "RAISED", {"v": 5}, T0)
    assert c1 < c2 < c3 < c4 < c5
    assert await journal.last_exception_cursor() == c5
    rows = await journal.cleared_exceptions_before(None)
    assert [(r.cursor, r.exception_id, r.action, r.payload) for r in rows] == [
        (c4, "B", "CLEARED", {"v": 4}),
        (c2, "A", "CLEARED", {"v": 2}),
    ]
    assert [r.cursor for r in await journal.cleared_exceptions_before(c4)] == [c2]
    assert [r.cursor for r in await journal.cleared_exceptions_before(None, limit=1)] == [c4]
    assert await journal.cleared_exceptions_before(c2) == []


@pytest.mark.parametrize("closed_limit", [1, 7, 5_000])
async def test_a_restart_rebuilds_what_reading_the_whole_log_did(journal: Any, closed_limit: int) -> None:
    await _random_log(journal, steps=400, ids=30, seed=closed_limit)
    expected_closed, expected_open, expected_cursor = await whole_log_state(journal, closed_limit)
    tracker = await _loaded(journal, closed_limit)
    assert [(k, r.to_payload()) for k, r in tracker._closed.items()] == expected_closed
    assert set(tracker._open) == expected_open
    assert tracker.last_cursor == expected_cursor
    assert expected_open and expected_closed  # the log had both


async def test_a_restart_reads_the_recently_cleared_not_the_whole_log(journal: Any) -> None:
    """A long log and a small cleared set: the start reads about that many steps, not all."""
    await _random_log(journal, steps=1_500, ids=40, seed=3)
    read: list[int] = []

    class Counting:
        def __getattr__(self, name: str) -> Any:
            return getattr(journal, name)

        async def exception_transitions_after(self, after: int, limit: int = 1000) -> Any:
            rows = await journal.exception_transitions_after(after, limit)
            read.extend(r.cursor for r in rows)
            return rows

        async def cleared_exceptions_before(self, before: int | None, limit: int = 1000) -> Any:
            rows = await journal.cleared_exceptions_before(before, limit)
            read.extend(r.cursor for r in rows)
            return rows

    tracker = await _loaded(Counting(), closed_limit=5)
    assert len(tracker._closed) <= 5 and tracker.last_cursor == 1_500
    assert 5 <= len(read) <= 50  # the five most recently cleared (and their repeats), of 1,500 steps

"""The event journal on real SQLite files: dedupe, durability, resume, history, retention."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from gateway import sqlite_journal as journal_module
from gateway.journal import JournalEvent, UnknownCursor
from gateway.sqlite_journal import SQLiteJournal

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2024, 5, 6, 8, 0, tzinfo=UTC)


def event(
    event_id: str,
    *,
    source: str = "erp",
    minutes: float = 0,
    received: datetime | None = None,
    data: dict | None = None,
    subject: str | None = "4500000001",
) -> JournalEvent:
    occurred = T0 + timedelta(minutes=minutes)
    return JournalEvent(
        source=source,
        event_id=event_id,
        type="com.sap.s4.salesorder.changed.v1",
        subject=subject,
        occurred_at=occurred,
        data={"id": event_id} if data is None else data,
        received_at=received or occurred + timedelta(seconds=1),
    )


@pytest.fixture
async def journal(tmp_path: Path):
    j = await SQLiteJournal.open(tmp_path / "journal.db")
    yield j
    await j.close()


async def seqs_of(j: SQLiteJournal, *events: JournalEvent) -> list[int]:
    return [a.seq for a in await j.append(list(events))]


async def test_append_assigns_increasing_seqs_and_dedupes(journal: SQLiteJournal):
    first = await journal.append([event("a"), event("b"), event("a")])
    assert [a.duplicate for a in first] == [False, False, True]
    assert first[0].seq < first[1].seq
    assert first[2].seq == first[0].seq  # duplicate within one batch gets the original's seq

    second = await journal.append([event("b"), event("c"), event("b", source="mes")])
    assert second[0].seq == first[1].seq and second[0].duplicate
    assert not second[1].duplicate and second[1].seq > first[1].seq
    assert not second[2].duplicate  # same id from another source is another event
    assert second[2].seq > second[1].seq
    assert await journal.count() == 4
    assert await journal.last_seq() == second[2].seq


async def test_stored_event_round_trips(journal: SQLiteJournal):
    cest = timezone(timedelta(hours=2))
    original = JournalEvent(
        source="qms",
        event_id="lot-1",
        type="com.sap.s4.inspectionlot.created.v1",
        subject=None,
        occurred_at=datetime(2024, 5, 6, 10, 30, 0, 123456, tzinfo=cest),
        data={"InspectionLot": "010000000123", "qty": 12.5, "tags": ["a", "b"]},
        received_at=datetime(2024, 5, 6, 8, 31, tzinfo=UTC),
    )
    notification = event("ping", data={}, subject="x")
    notification = JournalEvent(**{**_fields(notification), "data": None})
    [a, b] = await journal.append([original, notification])

    stored = await journal.get(a.seq)
    assert stored is not None
    assert stored.occurred_at == datetime(2024, 5, 6, 8, 30, 0, 123456, tzinfo=UTC)
    assert stored.occurred_at.tzinfo is not None and stored.occurred_at.utcoffset() == timedelta(0)
    assert stored.received_at == original.received_at
    assert (stored.source, stored.event_id, stored.type, stored.subject) == (
        "qms",
        "lot-1",
        original.type,
        None,
    )
    assert stored.data == original.data
    assert (stored.processed, stored.stale, stored.orders) == (False, False, ())
    stored_b = await journal.get(b.seq)
    assert stored_b is not None and stored_b.data is None
    assert await journal.get(b.seq + 100) is None


def _fields(e: JournalEvent) -> dict:
    return {name: getattr(e, name) for name in JournalEvent.__slots__}


async def test_bad_batch_is_atomic_and_does_not_fail_its_neighbours(journal: SQLiteJournal):
    naive = JournalEvent(**{**_fields(event("bad")), "occurred_at": datetime(2024, 5, 6, 8)})
    good, bad = await asyncio.gather(
        journal.append([event("good")]),
        journal.append([event("fine-but-with-bad-sibling"), naive]),
        return_exceptions=True,
    )
    assert isinstance(bad, ValueError) and "timezone-aware" in str(bad)
    assert not isinstance(good, BaseException) and not good[0].duplicate
    assert journal.commits == 1  # both were in one transaction; only the bad one rolled back
    assert await journal.count() == 1
    # The rolled-back event is not remembered for dedupe either.
    [again] = await journal.append([event("fine-but-with-bad-sibling")])
    assert not again.duplicate


async def test_everything_survives_close_and_reopen(tmp_path: Path):
    path = tmp_path / "journal.db"
    j = await SQLiteJournal.open(path)
    # WAL (file header bytes 18-19 == 2) and synchronous=FULL (2): commits are fsynced.
    assert path.read_bytes()[18:20] == b"\x02\x02"
    assert await j._read(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0]) == 2
    seqs = await seqs_of(j, event("a"), event("b"), event("c"))
    await j.mark_processed(seqs[0], [("4500000001", "C100")])
    assert await j.advance_watermark("erp", "SalesOrder", "4500000001", T0)
    cursor = await j.record_exception_transition("ex-1", "LATE", "RAISED", {"why": "late"}, T0)
    await j.close()
    await j.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await j.count()

    j = await SQLiteJournal.open(path)
    try:
        assert await j.count() == 3
        assert [e.seq for e in await j.unprocessed()] == seqs[1:]
        stored = await j.get(seqs[0])
        assert stored is not None and stored.processed and stored.orders == ("4500000001",)
        [row] = await j.changes_after(0)
        assert (row.seq, row.sales_order, row.customer) == (seqs[0], "4500000001", "C100")
        assert await j.watermark("erp", "SalesOrder", "4500000001") == T0
        assert not await j.advance_watermark(
            "erp", "SalesOrder", "4500000001", T0 - timedelta(seconds=1)
        )
        assert await j.open_exceptions() == {"ex-1": {"why": "late"}}
        [dup] = await j.append([event("b")])
        assert dup.duplicate and dup.seq == seqs[1]
        [new] = await j.append([event("d")])
        assert new.seq > seqs[-1]
        assert await j.record_exception_transition("ex-1", "LATE", "CLEARED", {}, T0) > cursor
    finally:
        await j.close()


async def test_a_current_journal_opens_while_another_connection_holds_the_write_lock(tmp_path: Path):
    """Opening a journal already at the current schema version takes no write lock (a
    reader such as ``ordergraph events parked`` beside a gateway in the middle of a
    commit); a new one is created, and an older version is brought up to date."""
    import sqlite3

    path = tmp_path / "journal.db"
    j = await SQLiteJournal.open(path)
    seqs = await seqs_of(j, event("a"))
    await j.close()
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # as the gateway's writer holds it during a commit
        writer.execute("UPDATE events SET processed = processed")
        started = asyncio.get_running_loop().time()
        reader = await SQLiteJournal.open(path)
        try:
            assert await reader.count() == 1 and (await reader.get(seqs[0])) is not None
        finally:
            await reader.close()
        assert asyncio.get_running_loop().time() - started < 4  # not the 5 s busy timeout
        writer.execute("ROLLBACK")
        # An older journal (version 1: before the dead letters) is completed on open.
        writer.execute("DROP TABLE dead_letters")
        writer.execute("PRAGMA user_version = 1")
    finally:
        writer.close()
    j = await SQLiteJournal.open(path)
    try:
        assert await j._read(lambda conn: conn.execute("PRAGMA user_version").fetchone()[0]) == journal_module._SCHEMA_VERSION
        assert await j._read(lambda conn: conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]) == 0
        assert await j.count() == 1
    finally:
        await j.close()


async def test_unprocessed_then_mark_processed(journal: SQLiteJournal):
    s1, s2, s3 = await seqs_of(journal, event("a"), event("b"), event("c"))
    assert [e.seq for e in await journal.unprocessed()] == [s1, s2, s3]
    assert [e.seq for e in await journal.unprocessed(limit=2)] == [s1, s2]

    await journal.mark_processed(s2, [("4500000002", "C200"), ("4500000001", None)])
    assert [e.seq for e in await journal.unprocessed()] == [s1, s3]
    stored = await journal.get(s2)
    assert stored is not None and stored.processed and not stored.stale
    assert stored.orders == ("4500000001", "4500000002")

    # Replaying the same processing (resume after a crash) changes nothing.
    await journal.mark_processed(s2, [("4500000002", "C200")])
    assert len(await journal.changes_after(0)) == 2

    await journal.mark_processed(s1, [], stale=True)
    await journal.mark_processed(s3, [])
    assert await journal.unprocessed() == []
    stale = await journal.get(s1)
    assert stale is not None and stale.stale and stale.processed

    with pytest.raises(KeyError):
        await journal.mark_processed(s3 + 99, [("4500000009", None)])
    assert len(await journal.changes_after(0, include_stale=True)) == 2


async def _order_fixture(j: SQLiteJournal) -> list[int]:
    s = await seqs_of(j, *(event(f"e{i}") for i in range(5)))
    await j.mark_processed(s[0], [("SO1", "C1")])
    await j.mark_processed(s[1], [("SO2", "C2")])
    await j.mark_processed(s[2], [("SO3", "C1"), ("SO1", "C1")])
    await j.mark_processed(s[3], [("SO1", "C1")], stale=True)
    await j.mark_processed(s[4], [("SO2", "C2"), ("SO4", "C1")])
    return s


async def test_changes_after_filters_and_orders(journal: SQLiteJournal):
    s = await _order_fixture(journal)

    def pairs(rows):
        return [(r.seq, r.sales_order) for r in rows]

    assert pairs(await journal.changes_after(0)) == [
        (s[0], "SO1"),
        (s[1], "SO2"),
        (s[2], "SO1"),
        (s[2], "SO3"),
        (s[4], "SO2"),
        (s[4], "SO4"),
    ]
    with_stale = await journal.changes_after(0, include_stale=True)
    assert [(r.seq, r.stale) for r in with_stale if r.seq == s[3]] == [(s[3], True)]

    assert pairs(await journal.changes_after(0, sales_order="SO1")) == [
        (s[0], "SO1"),
        (s[2], "SO1"),
    ]
    assert pairs(await journal.changes_after(s[0], sales_order="SO1")) == [(s[2], "SO1")]
    assert pairs(await journal.changes_after(0, customer="C1")) == [
        (s[0], "SO1"),
        (s[2], "SO1"),
        (s[2], "SO3"),
        (s[4], "SO4"),
    ]
    assert pairs(await journal.changes_after(s[2], customer="C1", include_stale=True)) == [
        (s[3], "SO1"),
        (s[4], "SO4"),
    ]
    assert await journal.changes_after(0, customer="nobody") == []

    row = (await journal.changes_after(0, sales_order="SO3"))[0]
    assert (row.customer, row.source, row.type, row.occurred_at) == (
        "C1",
        "erp",
        "com.sap.s4.salesorder.changed.v1",
        T0,
    )

    # limit never splits one event's rows, so resuming from the last seq misses nothing.
    assert pairs(await journal.changes_after(0, limit=1)) == [(s[0], "SO1")]
    assert pairs(await journal.changes_after(0, limit=3)) == [
        (s[0], "SO1"),
        (s[1], "SO2"),
        (s[2], "SO1"),
        (s[2], "SO3"),
    ]
    resumed: list[tuple[int, str]] = []
    cursor = 0
    while rows := await journal.changes_after(cursor, customer="C1", limit=1):
        resumed += pairs(rows)
        cursor = rows[-1].seq
    assert resumed == pairs(await journal.changes_after(0, customer="C1"))


async def test_history_is_oldest_first_by_business_time_and_pages(journal: SQLiteJournal):
    # Heard of out of business order: seq order differs from occurred_at order.
    s = await seqs_of(
        journal,
        event("late", minutes=30),
        event("early", minutes=10),
        event("middle", minutes=20),
        event("early-too", minutes=10),
        event("other-order", minutes=0),
    )
    for seq in s[:4]:
        await journal.mark_processed(seq, [("SO1", "C1")], stale=seq == s[3])
    await journal.mark_processed(s[4], [("SO2", "C1")])

    timeline = await journal.history("SO1")
    assert [e.event_id for e in timeline] == ["early", "early-too", "middle", "late"]
    assert [e.stale for e in timeline] == [False, True, False, False]  # stale kept, flagged
    assert all(e.orders == ("SO1",) for e in timeline)

    page1 = await journal.history("SO1", first=2)
    page2 = await journal.history("SO1", first=2, after_seq=page1[-1].seq)
    page3 = await journal.history("SO1", first=2, after_seq=page2[-1].seq)
    assert [e.seq for e in page1 + page2] == [e.seq for e in timeline]
    assert page3 == []
    assert await journal.history("nobody") == []
    with pytest.raises(UnknownCursor):
        await journal.history("SO1", after_seq=s[4])  # an event of another order


async def test_watermarks_reject_older_events(journal: SQLiteJournal):
    key = ("mes", "ProductionOrder", "1000123")
    assert await journal.watermark(*key) is None
    assert await journal.advance_watermark(*key, T0)
    assert not await journal.advance_watermark(*key, T0 - timedelta(microseconds=1))
    assert await journal.advance_watermark(*key, T0)  # equal: a replay, not stale
    assert await journal.advance_watermark(*key, T0 + timedelta(minutes=5))
    assert await journal.watermark(*key) == T0 + timedelta(minutes=5)
    # Keys are independent.
    assert await journal.advance_watermark(
        "mes", "ProductionOrder", "1000124", T0 - timedelta(days=1)
    )
    assert await journal.advance_watermark("wms", "ProductionOrder", "1000123", T0)

    # Concurrent callers for one key agree: the older one loses.
    other = ("tms", "Shipment", "SH1")
    assert await asyncio.gather(
        journal.advance_watermark(*other, T0 + timedelta(hours=1)),
        journal.advance_watermark(*other, T0),
    ) == [True, False]

    with pytest.raises(ValueError, match="timezone-aware"):
        await journal.advance_watermark(*key, datetime(2024, 1, 1))


async def test_cached_watermarks_share_the_source_and_entity_names(journal: SQLiteJournal):
    """Each event's JSON brings new strings; the cache keeps one copy of each system's and
    entity's name however many records it holds (tens of thousands in a soak)."""
    import json

    marks = []
    for i in range(3):
        event = json.loads(json.dumps({"source": "mes", "entity": "ProductionOrder", "key": str(1000 + i)}))
        marks.append(((event["source"], event["entity"], event["key"]), T0))
    assert await journal.advance_watermarks(marks) == [True] * 3
    assert await journal.advance_watermark(*json.loads('["mes", "ProductionOrder", "2000"]'), T0)
    keys = list(journal._watermarks)
    assert len(keys) == 4
    assert len({id(k[0]) for k in keys}) == 1 and len({id(k[1]) for k in keys}) == 1
    assert await journal.watermark("mes", "ProductionOrder", "1001") == T0  # found by an equal key


async def test_watermark_table_is_the_truth_behind_the_cache(
    journal: SQLiteJournal, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(journal_module, "_WATERMARK_CACHE_SIZE", 1)
    assert await journal.advance_watermark("erp", "SalesOrder", "A", T0)
    assert await journal.advance_watermark("erp", "SalesOrder", "B", T0)  # evicts A
    assert ("erp", "SalesOrder", "A") not in journal._watermarks
    assert not await journal.advance_watermark("erp", "SalesOrder", "A", T0 - timedelta(hours=1))
    assert await journal.watermark("erp", "SalesOrder", "A") == T0


async def test_prune_by_age_keeps_unprocessed(tmp_path: Path):
    now = T0 + timedelta(days=10)
    j = await SQLiteJournal.open(tmp_path / "journal.db", retention_days=1)
    try:
        old = now - timedelta(days=3)
        s = await seqs_of(
            j,
            event("old-1", received=old),
            event("old-unprocessed", received=old),
            event("old-2", received=old),
            event("fresh", received=now - timedelta(hours=1)),
        )
        for seq in (s[0], s[2], s[3]):
            await j.mark_processed(seq, [("SO1", "C1")])

        assert await j.prune(now) == 2
        assert await j.count() == 2
        assert await j.get(s[0]) is None and await j.get(s[2]) is None
        assert [e.event_id for e in await j.unprocessed()] == ["old-unprocessed"]
        assert [r.seq for r in await j.changes_after(0)] == [s[3]]  # order rows went too
        assert await j.oldest_seq() == s[1]
        assert await j.prune(now) == 0
    finally:
        await j.close()


async def test_prune_to_max_events_keeps_unprocessed_and_never_reuses_seqs(tmp_path: Path):
    j = await SQLiteJournal.open(tmp_path / "journal.db", max_events=5)
    try:
        s = await seqs_of(j, *(event(f"e{i}") for i in range(10)))
        for seq in s:
            if seq != s[1]:
                await j.mark_processed(seq, [("SO1", None)])

        assert await j.prune(T0) == 5
        assert sorted(e.seq for e in await _all(j)) == [s[1], *s[6:]]
        assert await j.oldest_seq() == s[1]
        assert [r.seq for r in await j.changes_after(0)] == s[6:]

        # Everything processed and too old: all goes, cursors keep counting up.
        await j.mark_processed(s[1], [])
        j.retention_days = 0
        assert await j.prune(T0 + timedelta(days=1)) == 5
        assert await j.count() == 0
        assert await j.last_seq() == s[-1]
        assert await j.oldest_seq() == s[-1] + 1
        [new] = await j.append([event("after-prune")])
        assert new.seq == s[-1] + 1
    finally:
        await j.close()


async def _all(j: SQLiteJournal):
    return [e for seq in range(1, await j.last_seq() + 1) if (e := await j.get(seq))]


async def test_exception_transitions_and_open_exceptions(journal: SQLiteJournal):
    at = T0
    c1 = await journal.record_exception_transition("A", "LATE", "RAISED", {"v": 1}, at)
    c2 = await journal.record_exception_transition("B", "QUALITY", "RAISED", {"v": 2}, at)
    c3 = await journal.record_exception_transition("A", "LATE", "CLEARED", {}, at)
    c4 = await journal.record_exception_transition("A", "LATE", "RAISED", {"v": 3}, at)
    c5 = await journal.record_exception_transition("C", "SHORT", "CLEARED", {}, at)
    assert c1 < c2 < c3 < c4 < c5

    assert await journal.open_exceptions() == {"B": {"v": 2}, "A": {"v": 3}}
    after = await journal.exception_transitions_after(c2)
    assert [(t.cursor, t.exception_id, t.action) for t in after] == [
        (c3, "A", "CLEARED"),
        (c4, "A", "RAISED"),
        (c5, "C", "CLEARED"),
    ]
    assert (after[1].kind, after[1].payload, after[1].at) == ("LATE", {"v": 3}, T0)
    assert len(await journal.exception_transitions_after(0, limit=2)) == 2

    await journal.record_exception_transition("B", "QUALITY", "CLEARED", {}, at)
    assert await journal.open_exceptions() == {"A": {"v": 3}}
    with pytest.raises(ValueError, match="RAISED"):
        await journal.record_exception_transition("A", "LATE", "OPENED", {}, at)  # type: ignore[arg-type]



async def test_a_schema_2_journal_keeps_its_open_exceptions(tmp_path: Path):
    """Schema 2 kept each open exception's payload in ``open_exceptions``; opening such a
    journal moves it to ``open_exception_cursors`` (the payload read from the log) in one
    transaction, and the open set and what follows are as before."""
    import sqlite3

    path = tmp_path / "journal.db"
    j = await SQLiteJournal.open(path)
    try:
        await j.record_exception_transition("A", "LATE", "RAISED", {"v": 1}, T0)
        await j.record_exception_transition("B", "QUALITY", "RAISED", {"v": 2}, T0)
        await j.record_exception_transition("A", "LATE", "RAISED", {"v": 3}, T0)
        await j.record_exception_transition("C", "SHORT", "RAISED", {"v": 4}, T0)
        await j.record_exception_transition("C", "SHORT", "CLEARED", {}, T0)
    finally:
        await j.close()
    conn = sqlite3.connect(path, isolation_level=None)
    try:  # back to schema 2's table, as a gateway of that version left it
        conn.executescript(
            "BEGIN;"
            "CREATE TABLE open_exceptions (exception_id TEXT PRIMARY KEY, cursor INTEGER NOT NULL,"
            " payload BLOB NOT NULL) WITHOUT ROWID;"
            "INSERT INTO open_exceptions SELECT o.exception_id, o.cursor, t.payload"
            " FROM open_exception_cursors o JOIN exception_transitions t ON t.cursor = o.cursor;"
            "DROP TABLE open_exception_cursors;"
            "PRAGMA user_version = 2;"
            "COMMIT;"
        )
        assert conn.execute("SELECT count(*) FROM open_exceptions").fetchone()[0] == 2
    finally:
        conn.close()
    j = await SQLiteJournal.open(path)
    try:
        assert await j._read(lambda c: c.execute("PRAGMA user_version").fetchone()[0]) == journal_module._SCHEMA_VERSION
        tables = await j._read(lambda c: {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")})
        assert "open_exceptions" not in tables and "open_exception_cursors" in tables
        assert await j.open_exceptions() == {"B": {"v": 2}, "A": {"v": 3}}
        await j.record_exception_transition("B", "QUALITY", "CLEARED", {}, T0)
        await j.record_exception_transition("D", "LATE", "RAISED", {"v": 5}, T0)
        assert await j.open_exceptions() == {"A": {"v": 3}, "D": {"v": 5}}
    finally:
        await j.close()

async def test_concurrent_appends_share_commits(journal: SQLiteJournal):
    before = journal.commits
    results = await asyncio.gather(*(journal.append([event(f"c{i}")]) for i in range(200)))
    seqs = [r.seq for [r] in results]
    assert len(set(seqs)) == 200
    assert not any(r.duplicate for [r] in results)
    assert await journal.count() == 200
    assert 0 < journal.commits - before < 200


async def test_close_commits_queued_writes(tmp_path: Path):
    path = tmp_path / "journal.db"
    j = await SQLiteJournal.open(path)
    pending = asyncio.create_task(j.append([event("in-flight")]))
    await asyncio.sleep(0)  # let it queue
    await j.close()
    [appended] = await pending
    j = await SQLiteJournal.open(path)
    try:
        stored = await j.get(appended.seq)
        assert stored is not None and stored.event_id == "in-flight"
    finally:
        await j.close()


async def test_in_memory_journal():
    j = await SQLiteJournal.open(":memory:")
    try:
        [a] = await j.append([event("a")])
        assert (await j.get(a.seq)) is not None
    finally:
        await j.close()


_KILLED_WRITER = r"""
import asyncio, os, signal, sys
from datetime import datetime, timezone
from gateway.journal import JournalEvent
from gateway.sqlite_journal import SQLiteJournal

async def main(path):
    journal = await SQLiteJournal.open(path)
    now = datetime.now(timezone.utc)

    def event(i):
        return JournalEvent(source="mes", event_id=f"kill-{i}", type="t", subject=str(i),
                            occurred_at=now, data={"i": i}, received_at=now)

    for start in range(0, 60, 6):
        batch = range(start, start + 6)
        results = await asyncio.gather(*(journal.append([event(i)]) for i in batch))
        for i, [appended] in zip(batch, results):
            print(i, appended.seq, flush=True)
    # More appends in flight, never acknowledged: they may or may not survive.
    for i in range(60, 70):
        asyncio.ensure_future(journal.append([event(i)]))
    await asyncio.sleep(0)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main(sys.argv[1]))
"""


async def test_acknowledged_appends_survive_sigkill(tmp_path: Path):
    path = tmp_path / "journal.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _KILLED_WRITER,
        str(path),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=10)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    acknowledged = [tuple(map(int, line.split())) for line in out.decode().splitlines()]
    assert len(acknowledged) == 60
    # Killed before close: the commits live in the WAL, which reopening must recover.
    assert (tmp_path / "journal.db-wal").stat().st_size > 0

    j = await SQLiteJournal.open(path)
    try:
        for i, seq in acknowledged:
            stored = await j.get(seq)
            assert stored is not None, f"acknowledged event kill-{i} (seq {seq}) was lost"
            assert (stored.event_id, stored.data) == (f"kill-{i}", {"i": i})
        assert len(await j.unprocessed(limit=100)) >= 60
    finally:
        await j.close()

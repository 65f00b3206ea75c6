"""The exception board kept in order (issue 21): every page, cursor and total the board
answers is the one the former whole-set sort gave (``reference`` below, kept verbatim),
after random changes to the tracker through its own paths (evaluations' diffs, a
follower replica's journal, a restart from the journal, the cleared set's limit), for
every viewer and filter. Pure: no plant, no server."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import random
import time
import types
from typing import Any

import pytest

from gateway.exception_tracker import ExceptionTracker, follow, reset
from gateway.sqlite_journal import SQLiteJournal
from resolvers import enums, workflow
from resolvers.exception_rules import _NONE_AFFECTED, Detection, ExceptionRecord, RootCause
from resolvers.exception_types import (
    ExceptionFilter,
    _filter_kinds,
    _ready_view,
    _workflow_filter,
    affected_orders,
    list_exceptions,
    matches,
    visible_to,
)
from resolvers.pagination import (
    decode_board_cursor,
    decode_transition_cursor,
    encode_board_cursor,
    encode_transition_cursor,
    process_cursors,
)
from resolvers.policy import Role, Viewer

K = enums.ExceptionKind
S = enums.Severity
T0 = dt.datetime(2026, 11, 30, 14, 0, tzinfo=dt.UTC)
CURSORS = process_cursors()
ORDERS = [f"1000{i:04d}" for i in range(40)]
CUSTOMERS = ["C1", "C2", "C3", "C4"]
CUSTOMER_OF = {so: CUSTOMERS[i % 4] for i, so in enumerate(ORDERS)}
ROOTS = [
    (K.MACHINE_DOWN, RootCause("mes", "WorkCenter", "WC-10")),
    (K.PRODUCTION_DELAY, RootCause("mes", "WorkCenter", "WC-20")),
    (K.PRODUCTION_DELAY, RootCause("mes", "WorkCenter", "WC-30")),
    (K.MATERIAL_SHORTAGE, RootCause("wms", "Material", "RM-1")),
    (K.MATERIAL_SHORTAGE, RootCause("wms", "Material", "RM-2")),
    (K.QUALITY_HOLD, RootCause("qms", "InspectionLot", "L-1")),
    (K.CREDIT_BLOCK, RootCause("erp", "SalesOrder", "B-1")),
    (K.DELIVERY_BLOCK, RootCause("erp", "SalesOrder", "B-2")),
    (K.STOCK_BLOCKED, RootCause("wms", "Material", "RM-3")),
    (K.YIELD_SHORTFALL, RootCause("mes", "WorkCenter", "WC-40")),
]
# Few values, so equal severities and values are common and ids break the ties.
VALUES = [0.0, 0.0, 10.1, 10.2, 20.3, 1234.57, 99999.99, 0.1, 0.2]


def _detection(rng: random.Random, kind: K, root: RootCause, so: str) -> Detection:
    value = rng.choice(VALUES)
    return Detection(
        kind=kind, root=root, sales_order=so, customer=CUSTOMER_OF[so], commercial_priority="NORMAL",
        severity=rng.choice(list(S)), days_late=rng.randrange(3), value_at_risk=value, net_value=value + 1,
        currency=rng.choice(["EUR", "EUR", "USD"]), promised_delivery_date=dt.date(2026, 12, 10),
        predicted_delivery_date=dt.date(2026, 12, 11), work_centers=tuple(rng.sample(["WC-10", "WC-20", "WC-50"], 2)),
        internal_text="i", customer_text="c",
    )  # fmt: skip


def _found(rng: random.Random, orders: set[str]) -> dict[str, list[Detection]]:
    """A random evaluation of ``orders``: each hit by a few exceptions or none."""
    out = {}
    for so in orders:
        roots = rng.sample(ROOTS, rng.choice([0, 0, 1, 1, 2, 3]))
        out[so] = [_detection(rng, kind, root, so) for kind, root in roots]
    return out


def _current(tracker: ExceptionTracker, so: str) -> list[Detection]:
    return [r.affected[so] for r in tracker.open_exceptions() if so in r.affected]


# --- the former algorithm, verbatim but for its inputs --------------------------------------


def reference(ctx: Any, f: ExceptionFilter, first: int, after: str | None) -> dict[str, Any]:
    """``list_exceptions`` before the board: the whole set, visible, escalated, filtered,
    sorted and summed on every request."""
    start = decode_board_cursor(ctx.cursors, after) if after else None
    tracker = ctx.exceptions
    cursor = tracker.last_cursor
    records = tracker.open_exceptions()
    if not f.open_only:
        records += tracker.closed_exceptions()
    visible = [v for r in records if (v := visible_to(ctx, r)) is not None]
    wf = _workflow_filter(ctx, f)
    if (view := _ready_view(ctx)) is not None:
        visible = [workflow.escalate_record(r, view.escalated) for r in visible]
    chosen = [
        r
        for r in visible
        if matches(
            r,
            kinds=_filter_kinds(ctx, f.kinds),
            min_severity=enums.Severity(f.min_severity.value) if f.min_severity else None,
            customer=str(f.customer) if f.customer is not None else None,
            work_center=str(f.work_center) if f.work_center is not None else None,
        )
        and (wf is None or wf(r.id))
    ]
    chosen.sort(key=lambda r: r.sort_key())
    rest = [r for r in chosen if start is None or r.sort_key() > start]
    page = rest[:first]
    currency = next((r.currency for r in chosen), "EUR")
    return {
        "cursors": [opened(encode_board_cursor(ctx.cursors, r.sort_key())) for r in page],
        "records": page,
        "has_next": len(rest) > first,
        "total_count": len(chosen),
        "total": repr(round(sum(r.value_at_risk for r in chosen), 2)),
        "currency": currency,
        "transition": decode_transition_cursor(
            CURSORS, encode_transition_cursor(ctx.cursors, cursor)
        ),
    }


def opened(cursor: str) -> tuple[int, float, str]:
    """What a board cursor says (each sealing differs: compare what they open to)."""
    return decode_board_cursor(CURSORS, cursor)


def board_answer(ctx: Any, f: ExceptionFilter, first: int, after: str | None) -> dict[str, Any]:
    conn = list_exceptions(ctx, f, first, after)
    money = conn.total_value_at_risk()
    assert conn.page_info.has_previous_page == (after is not None)
    assert [conn.page_info.start_cursor, conn.page_info.end_cursor] == (
        [conn.edges[0].cursor, conn.edges[-1].cursor] if conn.edges else [None, None]
    )
    return {
        "cursors": [opened(e.cursor) for e in conn.edges],
        "records": [e.node.record for e in conn.edges],
        "has_next": conn.page_info.has_next_page,
        "total_count": conn.total_count(),
        "total": repr(money.amount),
        "currency": money.currency,
        "transition": decode_transition_cursor(CURSORS, conn.transition_cursor()),
    }


# --- viewers and filters ---------------------------------------------------------------------


def _view(rng: random.Random) -> workflow.WorkflowView:
    me = workflow.Assignee(workflow.AssigneeKind.PERSON, "me")
    other = workflow.Assignee(workflow.AssigneeKind.TEAM, "planning")
    states = {}
    for kind, root in rng.sample(ROOTS, 5):
        eid = f"{kind.value}:{root.system}:{root.key}"
        states[eid] = workflow.ExceptionWorkflow(
            eid,
            acknowledged_at=T0 if rng.random() < 0.5 else None,
            assignee=rng.choice([None, me, other]),
            resolved_at=T0 if rng.random() < 0.2 else None,
        )
    escalated = frozenset(rng.sample(ORDERS, rng.choice([0, 1, 3, 8])))
    return workflow.WorkflowView(T0, states, {}, escalated)


def _ctx(tracker: Any, viewer: Viewer | None, view: workflow.WorkflowView | None) -> Any:
    return types.SimpleNamespace(
        exceptions=tracker, viewer=viewer, workflow_view=view, cursors=CURSORS, max_first=100
    )


def _filters(rng: random.Random, workflow_filters: bool) -> list[ExceptionFilter]:
    out = [ExceptionFilter(), ExceptionFilter(open_only=False)]
    for _ in range(12):
        f = ExceptionFilter(open_only=rng.random() < 0.6)
        if rng.random() < 0.4:
            f.kinds = rng.sample([*list(K)], rng.choice([1, 2, 3]))
        if rng.random() < 0.5:
            f.min_severity = rng.choice(list(S))
        if rng.random() < 0.3:
            f.customer = rng.choice(CUSTOMERS)
        if rng.random() < 0.3:
            f.work_center = rng.choice(["WC-10", "WC-20", "WC-30", "WC-50", "WC-99"])
        if workflow_filters:  # internal viewers with the workflow store
            if rng.random() < 0.3:
                f.status = rng.sample(list(workflow.WorkflowStatus), rng.choice([1, 2]))
            if rng.random() < 0.2:
                f.mine = rng.choice([True, False])
            if rng.random() < 0.2:
                f.unassigned = rng.choice([True, False])
        out.append(f)
    return out


def _check(rng: random.Random, tracker: Any) -> int:
    """Every viewer, a dozen filters each, every page of a few page sizes: the same."""
    checked = 0
    internal = Viewer(Role.PLANNER, subject="me")
    viewers: list[tuple[Viewer | None, workflow.WorkflowView | None]] = [
        (None, None),
        (internal, _view(rng)),
        (internal, _view(rng)),
        (Viewer(Role.CUSTOMER, customer=rng.choice(CUSTOMERS)), None),
    ]
    for viewer, view in viewers:
        ctx = _ctx(tracker, viewer, view)
        for f in _filters(rng, view is not None):
            for first in (rng.choice([0, 1, 2]), rng.choice([3, 7, 100])):
                after = None
                for _ in range(200):
                    want, got = reference(ctx, f, first, after), board_answer(ctx, f, first, after)
                    assert got == want, (viewer, f, first, after)
                    checked += 1
                    if not want["has_next"] or not want["cursors"]:
                        break
                    after = encode_board_cursor(CURSORS, want["cursors"][-1])
            # A cursor from another filter (or an exception since gone) still pages.
            stray = encode_board_cursor(
                CURSORS, (-rng.randrange(4), -rng.choice(VALUES), rng.choice(ROOTS)[1].key)
            )
            assert board_answer(ctx, f, 3, stray) == reference(ctx, f, 3, stray)
    return checked


def _board_whole(tracker: ExceptionTracker) -> None:
    """Each board holds exactly its map's records (the same objects) in sort-key order."""
    for closed, records in ((False, tracker._open), (True, tracker._closed)):
        board = tracker.board(closed=closed)
        assert board.keys == sorted(r.sort_key() for r in records.values())
        assert {eid: e.record for eid, e in board.entries.items()} == dict(records)
        assert all(board.entries[eid].record is r for eid, r in records.items())
        for severity in S:  # each severity's prefix (the notices' CRITICAL check)
            assert [e.record.id for e in board.at_least(severity.rank)] == [
                r.id for r in sorted(records.values(), key=lambda r: r.sort_key()) if r.severity.rank >= severity.rank
            ]
    assert not set(tracker._open) & set(tracker._closed)


# --- the test --------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(minutes=7)
        return self.now


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_board_pages_are_the_full_sorts(tmp_path, seed: int) -> None:
    rng = random.Random(seed)
    journal = await SQLiteJournal.open(tmp_path / "journal.db")
    clock = Clock()

    def tracker() -> ExceptionTracker:
        return ExceptionTracker(lambda: None, journal, clock=clock, closed_limit=12)  # type: ignore[arg-type,return-value]

    main, follower = tracker(), tracker()
    follower.following = True
    checked = closed_checked = 0
    try:
        for step in range(40):
            orders = set(rng.sample(ORDERS, rng.choice([1, 3, 10, 40])))
            found = _found(rng, orders)
            if step % 9 == 8:  # every order evaluated clean: every exception clears
                orders, found = set(ORDERS), {}
            elif step % 9 == 4:  # two roots stop hitting anything (the rest as they were)
                gone = {f"{k.value}:{r.system}:{r.key}" for k, r in rng.sample(ROOTS, 2)}
                orders = set(ORDERS)
                found = {so: [d for d in _current(main, so) if d.id not in gone] for so in orders}
            await main._apply(orders, found)
            follow(
                follower,
                await journal.exception_transitions_after(follower.last_cursor, limit=10_000),
            )
            if step % 13 == 12:
                reset(main)  # a restart: the open set and the recently cleared from the journal
                await main._load_journal()
            for t in (main, follower):
                _board_whole(t)
            if step % 4 == 3 or step % 9 in (4, 8):
                checked += _check(rng, main) + _check(rng, follower)
                closed_checked += len(main._closed) + len(follower._closed)
        assert main.transitions and closed_checked, "the random changes raised, updated and cleared"
        assert checked > 1000
    finally:
        await journal.close()


async def test_a_record_is_never_changed_in_place(tmp_path) -> None:
    """The board keys each record once: the tracker must replace records, not change them.
    After each diff every record it held before is still what it was."""
    rng = random.Random(7)
    journal = await SQLiteJournal.open(tmp_path / "journal.db")
    t = ExceptionTracker(lambda: None, journal, clock=Clock(), closed_limit=5)  # type: ignore[arg-type,return-value]
    try:
        for _ in range(30):
            held = [
                (r, dataclasses.replace(r, affected=dict(r.affected)))
                for r in [*t._open.values(), *t._closed.values()]
            ]
            orders = set(rng.sample(ORDERS, rng.choice([1, 5, 20])))
            await t._apply(orders, _found(rng, orders))
            for record, copy in held:
                assert record == copy
    finally:
        await journal.close()


def test_ties_and_escalations_merge_by_the_shown_key() -> None:
    """A hand-made board: equal severities and values order by id; an escalated order's
    exception moves up among them; a minimum severity counts the escalated one in."""
    t = ExceptionTracker(lambda: None, None, clock=Clock())  # type: ignore[arg-type,return-value]

    def record(key: str, so: str, severity: S, value: float) -> ExceptionRecord:
        root = RootCause("mes", "WorkCenter", key)
        d = dataclasses.replace(
            _detection(random.Random(0), K.MACHINE_DOWN, root, so),
            severity=severity,
            value_at_risk=value,
            currency="EUR",
        )
        return ExceptionRecord(d.id, d.kind, root, T0, {so: d})

    for r in [
        record("A", ORDERS[0], S.MEDIUM, 5.0),
        record("B", ORDERS[1], S.MEDIUM, 5.0),
        record("C", ORDERS[2], S.HIGH, 1.0),
        record("D", ORDERS[3], S.MEDIUM, 9.0),
    ]:
        t._open[r.id] = r
    view = workflow.WorkflowView(T0, {}, {}, frozenset({ORDERS[1]}))
    ctx = _ctx(t, Viewer(Role.PLANNER, subject="me"), view)
    got = board_answer(ctx, ExceptionFilter(), 10, None)
    assert [r.root.key for r in got["records"]] == ["B", "C", "D", "A"]
    assert got == reference(ctx, ExceptionFilter(), 10, None)
    high = ExceptionFilter(min_severity=S.HIGH)
    assert board_answer(ctx, high, 1, None)["total_count"] == 2
    assert board_answer(ctx, high, 1, None) == reference(ctx, high, 1, None)
    plain = _ctx(t, None, None)
    assert [r.root.key for r in board_answer(plain, ExceptionFilter(), 10, None)["records"]] == [
        "C",
        "D",
        "A",
        "B",
    ]


async def test_the_collector_waits_for_the_end_of_the_step_only() -> None:
    """``Query.exceptions`` pauses the cyclic collector while graphql-core completes the
    page in the same step; the loop enables it again once the step is over, and leaves it
    alone when it was off already."""
    import asyncio
    import gc

    from sources.memory import gc_paused_for_this_step

    assert gc.isenabled()
    gc_paused_for_this_step()
    assert not gc.isenabled()
    await asyncio.sleep(0)
    assert gc.isenabled()
    gc.disable()
    try:
        gc_paused_for_this_step()
        await asyncio.sleep(0)
        assert not gc.isenabled()
    finally:
        gc.enable()


# --- an exception's affected orders, kept sorted between reads ------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_affected_orders_and_aggregates_kept_agree_with_a_fresh_computation(seed: int) -> None:
    """``ExceptionRecord.orders`` and the aggregates (severity, values, days late) are kept
    while the map holds the same detections; after every kind of change the map sees (a detection added, replaced by a
    different or an equal one, removed, the map emptied, rebuilt in another order, a copy
    or a replace()d record), it equals a fresh sort, and a caller changing the list it was
    given changes nothing."""
    rng = random.Random(seed)
    kind, root = ROOTS[0]

    def fresh(record: ExceptionRecord) -> list[Detection]:
        return sorted(record.affected.values(), key=lambda d: (-d.severity.rank, -d.value_at_risk, d.sales_order))

    record = ExceptionRecord(f"{kind.value}:mes:WC-10", kind, root, T0)
    records = [record]
    kept_hits = view_hits = 0

    @dataclasses.dataclass(eq=False)
    class Wrapped:
        detection: Detection

    def wrap(ds: list[Detection]) -> tuple[Wrapped, ...]:
        return tuple(Wrapped(d) for d in ds)

    def other_wrap(ds: list[Detection]) -> tuple[tuple[str, Detection], ...]:
        return tuple(("other", d) for d in ds)
    for _ in range(600):
        target = rng.choice(records)
        step = rng.randrange(9)
        so = rng.choice(ORDERS)
        if step <= 2:
            target.affected[so] = _detection(rng, kind, root, so)
        elif step == 3 and so in target.affected:
            target.affected[so] = dataclasses.replace(target.affected[so])  # equal, not identical
        elif step == 4:
            target.affected.pop(so, None)
        elif step == 5 and rng.random() < 0.05:
            target.affected.clear()
        elif step == 6:
            items = list(target.affected.items())
            rng.shuffle(items)
            target.affected = dict(items)
        elif step == 7 and len(records) < 4:
            records.append(rng.choice([target.copy(), dataclasses.replace(target, affected=dict(target.affected))]))
        values = list(target.affected.values())
        for _ in range(2):  # computed, then kept
            assert target.severity == max((d.severity for d in values), key=lambda s: s.rank, default=S.LOW)
            # repr: the same number and the same type (the journal's payload shows 0 or 0.0)
            assert repr(target.value_at_risk) == repr(round(sum(d.value_at_risk for d in values), 2))
            assert repr(target.net_value) == repr(round(sum(d.net_value for d in values), 2))
            assert target.days_late == max((d.days_late for d in values), default=0)
            assert target.sort_key() == (-target.severity.rank, -target.value_at_risk, target.id)
        got = target.orders()
        kept = target._kept
        again = target.orders()
        assert got == fresh(target) and again == got and again is not got
        kept_hits += target._kept is kept
        got.reverse()  # the caller's list is its own
        assert target.orders() == fresh(target)
        assert ExceptionRecord.from_payload(target.to_payload()).orders() == fresh(target)
        # orders_view: the orders made into something else, once per state of the map
        # (the same object while it holds), always in the order of a fresh sort
        made = target.orders_view(wrap)
        assert [w.detection for w in made] == fresh(target)
        assert all(w.detection is d for w, d in zip(made, target.orders(), strict=True))
        if target.affected:
            view_hits += target.orders_view(wrap) is made
        else:
            assert target._kept is None  # a cleared record writes nothing to the shared answer
        assert target.orders_view(other_wrap) == tuple(("other", d) for d in fresh(target))
    assert kept_hits > 0 and view_hits > 0
    assert _NONE_AFFECTED.views is None


def test_a_cleared_exception_answers_its_aggregates_without_keeping_them() -> None:
    """Thousands of cleared exceptions are kept a while with their last orders: their
    aggregates are computed when read (the same answers), not held beside them."""
    rng = random.Random(7)
    kind, root = ROOTS[0]
    record = ExceptionRecord(f"{kind.value}:mes:WC-10", kind, root, T0)
    for so in ORDERS[:5]:
        record.affected[so] = _detection(rng, kind, root, so)
    open_answers = (record.severity, record.value_at_risk, record.days_late, record.orders())
    assert record._kept is not None
    cleared = record.copy()
    cleared.cleared_at = T0
    assert (cleared.severity, cleared.value_at_risk, cleared.days_late, cleared.orders()) == open_answers
    assert cleared.to_payload()["affected"] == record.to_payload()["affected"]
    assert cleared._kept is None


async def test_the_board_is_in_order_when_the_tracker_is_ready(tmp_path, monkeypatch) -> None:
    """The first evaluation's exceptions are put in board order, and each one's orders in
    page order and wrapped for the schema, before ``ready``: the first page asked for after
    ready finds all of it done."""
    journal = await SQLiteJournal.open(tmp_path / "journal.db")
    t = ExceptionTracker(lambda: None, journal, clock=Clock(), closed_limit=5)  # type: ignore[arg-type,return-value]
    rng = random.Random(3)

    async def evaluate_all() -> None:
        await t._apply(set(ORDERS), _found(rng, set(ORDERS)))
        t._first_pass = (len(ORDERS), time.perf_counter())  # as _evaluate_pages leaves it

    steps: list[str] = []
    board = t.board

    def noted_board(closed: bool = False) -> Any:
        steps.append("board")
        return board(closed)

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "orders evaluated in" in record.getMessage():
                steps.append("ready line")

    lines = Lines()
    logger = logging.getLogger("ordergraph.exceptions")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(lines)
    monkeypatch.setattr(t, "board", noted_board)
    monkeypatch.setattr(t, "_evaluate_all", evaluate_all)
    monkeypatch.setattr(t, "_read_stale", lambda: frozenset())
    try:
        t.start()
        await asyncio.wait_for(t.ready.wait(), 10)
        # the ready line (operators', the scale bench's) comes once the board's work is done
        assert steps.count("ready line") == 1 and "board" in steps[: steps.index("ready line")]
        assert "board" not in steps[steps.index("ready line") :]  # all of it before the line
        assert t._open and not t._open._changed  # nothing noted and not yet in the board
        assert sorted(t._open._board.entries) == sorted(t._open)
        for record in t._open.values():  # ... and each one's orders sorted for its pages
            kept = record._kept
            assert kept is not None and kept.ordered == sorted(
                record.affected.values(), key=lambda d: (-d.severity.rank, -d.value_at_risk, d.sales_order)
            )
            # ... and wrapped for the schema (OrderException.affected): the page reads them
            assert kept.views is not None and len(kept.views) == 1
            wrapped = next(iter(kept.views.values()))
            assert affected_orders(record) is wrapped
            assert [a.detection for a in wrapped] == kept.ordered
            assert all(not hasattr(a, "__dict__") for a in wrapped)  # one object each, no instance dict
        _board_whole(t)
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
        await t.stop()
        await journal.close()

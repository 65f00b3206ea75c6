"""The workflow store on real SQLite files and a real Redis: atomic decisions when two
stores (two processes, two replicas) act at once, idempotency, durability."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest

from gateway.workflow_store import RedisWorkflowStore, SQLiteWorkflowStore, sqlite_path
from resolvers.workflow import Command, WorkflowAction, WorkflowRefused, normalise

from .servers import REDIS_URL

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
EID = "MACHINE_DOWN:mes:WC-20"


def cmd(action: WorkflowAction, actor: str, cmid: str, **kw) -> Command:
    kw.setdefault("exception_id", EID if "sales_order" not in kw else None)
    kw.setdefault("sales_orders", ("1000001",))
    return normalise(Command(action=action, actor=actor, role="service", at=NOW, client_mutation_id=cmid, **kw))


async def _open_pair(kind: str, tmp_path, prefix: str | None):
    if kind == "sqlite":
        path = str(tmp_path / "workflow.sqlite")
        return await SQLiteWorkflowStore.open(path), await SQLiteWorkflowStore.open(path)
    assert prefix is not None
    return (await RedisWorkflowStore.open(REDIS_URL, prefix=prefix), await RedisWorkflowStore.open(REDIS_URL, prefix=prefix))


@pytest.fixture(params=["sqlite", "redis"])
async def pair(request, tmp_path):
    """Two stores on the same data: two processes on one SQLite file, or two replicas on
    one Redis (a fresh key prefix, deleted afterwards)."""
    prefix = None
    client = None
    if request.param == "redis":
        import redis.asyncio as redis

        client = redis.from_url(REDIS_URL)
        try:
            await client.ping()
        except (OSError, redis.ConnectionError) as exc:
            await client.aclose()
            pytest.skip(f"the Redis store test needs Redis at {REDIS_URL} (.ci/run starts one): {exc}")
        prefix = f"ordergraph-test:{uuid.uuid4().hex[:12]}:"
    a, b = await _open_pair(request.param, tmp_path, prefix)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()
        if client is not None:
            keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
            if keys:
                await client.delete(*keys)
            await client.aclose()


async def _try(store, c: Command):
    try:
        return await store.act(c)
    except WorkflowRefused as exc:
        return exc


async def test_two_stores_acting_at_once_decide_on_each_others_results(pair) -> None:
    a, b = pair
    # 20 people acknowledge the same exception at once, half through each store: one wins.
    acks = [cmd(WorkflowAction.ACKNOWLEDGED, f"user{i}", f"ack-{i}") for i in range(20)]
    comments = [cmd(WorkflowAction.COMMENTED, f"user{i}", f"c-{i}", text=f"note {i}") for i in range(20)]
    results = await asyncio.gather(*(_try(a if i % 2 else b, c) for i, c in enumerate(acks + comments)))
    won = [r for r in results[:20] if not isinstance(r, WorkflowRefused)]
    lost = [r for r in results[:20] if isinstance(r, WorkflowRefused)]
    assert len(won) == 1 and len(lost) == 19
    assert all(r.code == "CONFLICT" and won[0].entry.actor in r.message for r in lost)
    assert not any(isinstance(r, WorkflowRefused) for r in results[20:])

    # Both stores see the same state and the same gap-free trail.
    for store in (a, b):
        state = await store.state(EID)
        assert state is not None and state.acknowledged_by == won[0].entry.actor
        assert state.comments == 20
        trail = await store.trail(EID)
        assert [e.seq for e in trail] == list(range(1, 22))
        assert sum(e.action is WorkflowAction.ACKNOWLEDGED for e in trail) == 1
        assert [e.seq for e in await store.order_trail("1000001")] == list(range(1, 22))
        assert [e.seq for e in await store.entries_after(15)] == list(range(16, 22))
        assert await store.last_seq() == 21


async def test_a_client_mutation_id_replays_its_first_result_and_refuses_other_input(pair) -> None:
    a, b = pair
    first = await a.act(cmd(WorkflowAction.COMMENTED, "alice", "m-1", text="called the supplier"))
    again = await b.act(cmd(WorkflowAction.COMMENTED, "alice", "m-1", text="called the supplier"))
    assert not first.replayed and again.replayed
    assert again.entry == first.entry and again.workflow == first.workflow
    assert len(await a.trail(EID)) == 1
    with pytest.raises(WorkflowRefused) as err:
        await b.act(cmd(WorkflowAction.COMMENTED, "alice", "m-1", text="something else"))
    assert err.value.code == "IDEMPOTENCY_CONFLICT"
    # Another person's ids are their own.
    other = await b.act(cmd(WorkflowAction.COMMENTED, "bob", "m-1", text="called the supplier"))
    assert not other.replayed and other.entry.seq == 2
    # The same ids at once: one write.
    same = [cmd(WorkflowAction.ACKNOWLEDGED, "carol", "ack-once") for _ in range(10)]
    results = await asyncio.gather(*(s.act(c) for s, c in zip([a, b] * 5, same, strict=True)))
    assert sum(not r.replayed for r in results) == 1
    assert len({r.entry.seq for r in results}) == 1
    assert len(await a.trail(EID)) == 3


async def test_escalation_expires_and_is_withdrawn(pair) -> None:
    a, b = pair
    until = NOW + dt.timedelta(hours=4)
    e = await a.act(cmd(WorkflowAction.ESCALATED, "pat", "e-1", sales_order="1000001", text="key account", until=until))
    assert e.escalation is not None and e.escalation.active(NOW) and not e.escalation.active(until)
    got = (await b.escalations())["1000001"]
    assert got.reason == "key account" and got.expires_at == until
    w = await b.act(cmd(WorkflowAction.ESCALATION_WITHDRAWN, "pat", "w-1", sales_order="1000001"))
    assert w.escalation is not None and not w.escalation.active(NOW)
    with pytest.raises(WorkflowRefused) as err:
        await a.act(cmd(WorkflowAction.ESCALATION_WITHDRAWN, "pat", "w-2", sales_order="1000001"))
    assert err.value.code == "CONFLICT"


async def test_sqlite_state_is_on_disk(tmp_path) -> None:
    path = sqlite_path(str(tmp_path / "journal.sqlite"))
    assert path == str(tmp_path / "workflow.sqlite")
    assert sqlite_path(str(tmp_path / "plant-a.sqlite")) == str(tmp_path / "plant-a.workflow.sqlite")
    assert sqlite_path(":memory:") == ":memory:"
    store = await SQLiteWorkflowStore.open(path)
    await store.act(cmd(WorkflowAction.ACKNOWLEDGED, "alice", "a-1"))
    await store.close()
    reopened = await SQLiteWorkflowStore.open(path)
    try:
        state = await reopened.state(EID)
        assert state is not None and state.acknowledged_by == "alice"
        assert (await reopened.act(cmd(WorkflowAction.ACKNOWLEDGED, "alice", "a-1"))).replayed
    finally:
        await reopened.close()


def test_rules_refuse_what_no_one_could_mean() -> None:
    with pytest.raises(WorkflowRefused, match="future"):
        cmd(WorkflowAction.SNOOZED, "a", "s", until=NOW - dt.timedelta(minutes=1))
    with pytest.raises(WorkflowRefused, match="90 days"):
        cmd(WorkflowAction.SNOOZED, "a", "s", until=NOW + dt.timedelta(days=91))
    with pytest.raises(WorkflowRefused, match="time zone"):
        cmd(WorkflowAction.SNOOZED, "a", "s", until=dt.datetime(2027, 1, 1))
    with pytest.raises(WorkflowRefused, match="reason"):
        cmd(WorkflowAction.RESOLVED, "a", "r", text="  ")
    with pytest.raises(WorkflowRefused, match="clientMutationId"):
        cmd(WorkflowAction.ACKNOWLEDGED, "a", "has space")
    with pytest.raises(WorkflowRefused, match="2000"):
        cmd(WorkflowAction.COMMENTED, "a", "c", text="x" * 2001)


def test_escalation_raises_an_orders_severity_for_internal_viewers_only() -> None:
    from resolvers.enums import ExceptionKind, Severity
    from resolvers.exception_rules import Detection, ExceptionRecord, RootCause
    from resolvers.exception_types import transition_message
    from resolvers.policy import Role, Viewer
    from resolvers.workflow import escalate_record

    root = RootCause("mes", "WorkCenter", "WC-20", "CNC milling")

    def detection(so: str, customer: str, severity: Severity) -> Detection:
        day = dt.date(2026, 12, 10)
        return Detection(
            ExceptionKind.MACHINE_DOWN, root, so, customer, "NORMAL", severity, 0, 0.0, 1000.0, "EUR",
            day, day, ("WC-20",), "internal", "customer text",
        )  # fmt: skip

    record = ExceptionRecord(
        "MACHINE_DOWN:mes:WC-20",
        ExceptionKind.MACHINE_DOWN,
        root,
        NOW,
        {"1": detection("1", "C1", Severity.MEDIUM), "2": detection("2", "C2", Severity.LOW)},
    )
    assert escalate_record(record, frozenset({"9"})) is record
    up = escalate_record(record, frozenset({"2"}))
    assert up.affected["2"].severity is Severity.MEDIUM and up.affected["1"].severity is Severity.MEDIUM
    assert escalate_record(record, frozenset({"1"})).severity is Severity.HIGH
    crit = ExceptionRecord(record.id, record.kind, root, NOW, {"1": detection("1", "C1", Severity.CRITICAL)})
    assert escalate_record(crit, frozenset({"1"})).severity is Severity.CRITICAL  # capped

    payload = {**record.to_payload(), "action": "UPDATED", "changed": [{"salesOrder": "1", "customer": "C1"}]}
    internal = transition_message(payload, 5, NOW, min_severity=Severity.HIGH, customer=None, escalated=frozenset({"1"}))
    assert internal is not None and internal.exception.record.severity is Severity.HIGH
    assert transition_message(payload, 5, NOW, min_severity=Severity.HIGH, customer=None) is None
    customer = Viewer(Role.CUSTOMER, customer="C1")
    seen = transition_message(payload, 5, NOW, min_severity=None, customer="C1", viewer=customer, escalated=frozenset({"1"}))
    assert seen is not None and seen.exception.record.severity is Severity.MEDIUM

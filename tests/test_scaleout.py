"""Scale-out on a real Redis: two gateway replicas (and two journals) that behave as one.

Each test uses its own key prefix and deletes its keys afterwards. Without a Redis at
``ORDERGRAPH_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``; ``.ci/run`` starts one)
the tests are skipped, saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as redis

from gateway.bus import OrderChanged
from gateway.config import DEV_SECRETS
from gateway.journal import JournalEvent, UnknownCursor
from gateway.redis_bus import RedisBus, bus_channel
from gateway.redis_journal import RedisJournal
from resolvers.pagination import decode_change_cursor
from sources.simulator.emitter import EventEmitter

from .events_util import post_events
from .servers import REDIS_URL, GraphQLClient, running_gateway
from .ws_client import WsClient

T0 = datetime(2024, 5, 6, 8, 0, tzinfo=UTC)

ORDER_UPDATED = "subscription($id: ID!) { orderUpdated(id: $id) { id production { orders { id status } } } }"
ORDER_CHANGES = (
    "subscription($c: ID, $after: String) { orderChanges(customer: $c, after: $after) "
    "{ cursor eventType order { id customerId } } }"
)
PRODUCTION = "query($id: ID!) { order(id: $id) { production { orders { id status } } } }"
HISTORY = "query($id: ID!) { order(id: $id) { history(first: 100) { entries { cursor eventType } } } }"


@contextlib.asynccontextmanager
async def journals(prefix: str, *ids: str, lease_seconds: float = 30.0) -> AsyncIterator[list[RedisJournal]]:
    opened = [
        await RedisJournal.open(REDIS_URL, prefix=prefix, replica_id=i, lease_seconds=lease_seconds)
        for i in ids
    ]
    try:
        yield opened
    finally:
        for j in opened:
            await j.close()


def event(event_id: str, *, minutes: float = 0, source: str = "erp") -> JournalEvent:
    at = T0 + timedelta(minutes=minutes)
    return JournalEvent(source, event_id, "com.sap.s4.salesorder.changed.v1", "4500000001", at, {"id": event_id}, at)


async def eventually(check: Any, what: str, timeout: float = 10.0) -> Any:
    """Poll ``check()`` until it returns something truthy (no timing assertion, just a bound)."""
    async with asyncio.timeout(timeout):
        while not (result := await check()):
            await asyncio.sleep(0.05)
    assert result, what
    return result


# --- the journal, shared by two replicas -------------------------------------------------


async def test_append_dedupes_across_replicas_with_one_seq_space(prefix):
    async with journals(prefix, "a", "b") as (a, b):
        first = await a.append([event("x"), event("y"), event("x")])
        assert [(r.seq, r.duplicate) for r in first] == [(1, False), (2, False), (1, True)]
        # The same event sent to the other replica is recognised; seqs are global.
        second = await b.append([event("y"), event("z"), event("y", source="mes")])
        assert [(r.seq, r.duplicate) for r in second] == [(2, True), (3, False), (4, False)]
        assert await a.count() == await b.count() == 4
        assert await b.last_seq() == 4 and await b.oldest_seq() == 1

        stored = await b.get(1)
        assert stored is not None and (stored.event_id, stored.data, stored.processed) == ("x", {"id": "x"}, False)
        assert stored.occurred_at == T0 and stored.occurred_at.utcoffset() == timedelta(0)
        assert await b.get(99) is None
        with pytest.raises(ValueError, match="timezone-aware"):  # validated before anything is written
            await a.append([event("ok"), JournalEvent("erp", "naive", "t", None, datetime(2024, 1, 1), None, T0)])
        assert await a.count() == 4


async def test_each_event_goes_to_one_replica_and_a_dead_replicas_are_taken_over(prefix):
    async with journals(prefix, "a", "b", lease_seconds=0.5) as (a, b):
        seqs = [r.seq for r in await a.append([event(f"e{i}") for i in range(5)])]
        taken_a = [e.seq for e in await a.unprocessed(limit=2)]
        taken_b = [e.seq for e in await b.unprocessed()]
        assert taken_a == seqs[:2] and taken_b == seqs[2:]  # handed out once each
        assert await a.unprocessed(limit=2) != []  # a's own (unfinished) events come back to a
        assert await a.backlog() == 5

        for seq in taken_b:
            assert await b.mark_processed_and_publish(seq, [("SO1", "C1")], []) > 0
        assert await b.backlog() == 2
        # a "dies" holding seqs[0:2]; after the lease b takes them over.
        taken_over = await eventually(b.unprocessed, "b took over a's events")
        assert [e.seq for e in taken_over] == taken_a and b.taken_over == 2
        position = await b.mark_processed_and_publish(taken_a[0], [("SO1", "C1")], [])
        assert position > 0
        # a was only slow: its late attempt for the same event records and publishes nothing.
        assert await a.mark_processed_and_publish(taken_a[0], [("SO1", "C1")], []) == 0
        await a.mark_processed(taken_a[1], [("SO2", None)])
        assert await a.backlog() == 0 and await a.unprocessed() == [] and await b.unprocessed() == []
        assert len(await a.changes_after(0)) == 5  # one row per event: nothing recorded twice
        with pytest.raises(KeyError):
            await a.mark_processed(99, [])


async def test_change_cursor_follows_processing_order_so_resume_misses_nothing(prefix):
    async with journals(prefix, "a", "b") as (a, b):
        s1, s2, s3 = (r.seq for r in await a.append([event("1"), event("2", minutes=5), event("3")]))
        # Replicas finish out of seq order: s2 (on b) before s1 (on a).
        p2 = await b.mark_processed_and_publish(s2, [("SO1", "C1")], [])
        p1 = await a.mark_processed_and_publish(s1, [("SO1", "C1"), ("SO9", "C2")], [])
        assert p1 > p2
        rows = await b.changes_after(0, customer="C1")
        assert [(r.seq, r.sales_order) for r in rows] == [(p2, "SO1"), (p1, "SO1")]
        # A client that saw p2 and resumes gets s1's change although s1 < s2.
        assert [r.seq for r in await b.changes_after(p2, customer="C1")] == [p1]
        assert [(r.sales_order, r.customer) for r in await a.changes_after(p2)] == [("SO1", "C1"), ("SO9", "C2")]
        # limit never splits one position's rows
        assert len(await a.changes_after(p2, limit=1)) == 2
        # stale changes are kept for history but left out of resume by default
        await a.mark_processed(s3, [("SO1", "C1")], stale=True)
        assert len(await a.changes_after(0, sales_order="SO1")) == 2
        assert len(await a.changes_after(0, sales_order="SO1", include_stale=True)) == 3

        # history: by business time, then seq; pages by event seq
        timeline = await b.history("SO1")
        assert [e.seq for e in timeline] == [s1, s3, s2]
        assert [e.stale for e in timeline] == [False, True, False]
        page = await b.history("SO1", first=2)
        assert [e.seq for e in await b.history("SO1", after_seq=page[-1].seq)] == [s2]
        with pytest.raises(UnknownCursor):
            await b.history("SO9", after_seq=s2)


async def test_watermarks_exceptions_and_prune(prefix):
    async with journals(prefix, "a", "b") as (a, b):
        key = ("mes", "ProductionOrder", "1000123")
        assert await a.advance_watermark(*key, T0)
        assert not await b.advance_watermark(*key, T0 - timedelta(seconds=1))  # stale on any replica
        assert await b.advance_watermark(*key, T0)  # equal: a replay applies again
        assert await b.watermark(*key) == T0

        c1 = await a.record_exception_transition("A", "LATE", "RAISED", {"v": 1}, T0)
        c2 = await b.record_exception_transition("B", "QUALITY", "RAISED", {"v": 2}, T0)
        c3 = await a.record_exception_transition("A", "LATE", "CLEARED", {}, T0)
        assert c1 < c2 < c3
        assert await b.open_exceptions() == {"B": {"v": 2}}
        assert [t.exception_id for t in await b.exception_transitions_after(c1)] == ["B", "A"]

        seqs = [r.seq for r in await a.append([event(f"p{i}") for i in range(4)])]
        for seq in seqs[1:]:
            await a.mark_processed(seq, [("SO1", "C1")])
        a.retention_days = 0
        assert await a.prune(T0 + timedelta(days=1)) == 3  # the unprocessed one stays
        assert await a.count() == 1 and await a.oldest_seq() == seqs[0]
        assert await a.changes_after(0) == [] and await a.history("SO1") == []
        [again] = await b.append([event("p1")])  # pruned events are forgotten by dedupe
        assert not again.duplicate and again.seq == seqs[-1] + 1


async def test_bus_delivers_each_message_once_to_every_replica(prefix):
    got: dict[str, list[list[OrderChanged]]] = {"a": [], "b": []}
    dropped: dict[str, list[set]] = {"a": [], "b": []}
    buses = {name: RedisBus(REDIS_URL, channel=bus_channel(prefix), invalidate=dropped[name].append) for name in got}
    for name, bus in buses.items():
        bus.subscribe(got[name].append)
        await bus.start()
    try:
        change = OrderChanged(7, "SO1", "C1", "mes", "t", T0, invalidated=(("mes.po", "SO1"),))
        await buses["a"].publish([change])

        async def both() -> bool:
            return all(got.values())

        await eventually(both, "both replicas got it")
        assert got == {"a": [[change]], "b": [[change]]}  # the publisher once, too
        assert dropped == {"a": [{("mes.po", "SO1")}], "b": [{("mes.po", "SO1")}]}

        # The journal publishes while recording: the change's cursor is its position, and an
        # event that changed no order still reaches every replica's cache.
        async with journals(prefix, "a") as (journal,):
            seq_1, seq_2 = (r.seq for r in await journal.append([event("1"), event("2")]))
            position = await journal.mark_processed_and_publish(seq_1, [("SO1", "C1")], [change], {("mes.po", "SO1")})
            await journal.mark_processed_and_publish(seq_2, [], [], {("mes.work_center", "WC-20")})

            async def delivered() -> bool:
                return all(len(d) == 3 for d in dropped.values())

            await eventually(delivered, "both messages reached both replicas")
        assert got["a"][1:] == got["b"][1:] == [[dataclasses.replace(change, seq=position)]]
        for name in got:
            assert dropped[name][1:] == [{("mes.po", "SO1")}, {("mes.work_center", "WC-20")}]
    finally:
        for bus in buses.values():
            await bus.stop()


# --- two gateway replicas behind one (imaginary) load balancer -------------------------


def _scaleout(prefix: str, replica_id: str, **settings: Any) -> dict[str, Any]:
    return {"redis_url": REDIS_URL, "key_prefix": prefix, "replica_id": replica_id, "poll_seconds": 0.1, **settings}


@contextlib.asynccontextmanager
async def two_replicas(plant_url: str, prefix: str) -> AsyncIterator[tuple[tuple[str, Any], tuple[str, Any]]]:
    async with (
        running_gateway(plant_url, scaleout=_scaleout(prefix, "replica-a")) as a,
        running_gateway(plant_url, scaleout=_scaleout(prefix, "replica-b")) as b,
    ):
        yield a, b


def _step(plant: Any, emitter: EventEmitter, so: str) -> list[list[dict[str, Any]]]:
    """Advance the order one lifecycle step; its signed events, one batch per source system."""
    batches: dict[str, list[dict[str, Any]]] = {}
    for change in plant.world.advance_order(so):
        batches.setdefault(change.system, []).append(emitter.event_for(change))
    assert batches
    return list(batches.values())


async def _send(http: Any, url: str, batches: list[list[dict[str, Any]]]) -> tuple[int, int]:
    """POST each batch; returns (events accepted, of which duplicates)."""
    accepted = duplicates = 0
    for events in batches:
        status, body = await post_events(http, url, events)
        assert status == 202, body
        accepted += body["accepted"]
        duplicates += body["duplicates"]
    return accepted, duplicates


async def _settled(app: Any) -> None:
    """Wait until no replica has an accepted event left to process."""

    async def empty() -> bool:
        return await app.state.gateway.journal.backlog() == 0

    await eventually(empty, "every accepted event processed")


def _processed(*apps: Any) -> int:
    return sum(app.state.gateway.processor.processed for app in apps)


async def _released_order(gql: GraphQLClient) -> tuple[str, str]:
    data = await gql.query("{ orders(first: 1, filter: {stage: [PRODUCTION_RELEASED]}) { nodes { id customerId } } }")
    node = data["orders"]["nodes"][0]
    return node["id"], node["customerId"]


async def test_two_replicas_behave_as_one(plant, http, prefix):
    emitter = EventEmitter(plant.world, "", DEV_SECRETS, duplicate_rate=0, reorder_rate=0, notification_rate=0)
    async with two_replicas(plant.url, prefix) as ((url_a, app_a), (url_b, app_b)):
        gql_a, gql_b = GraphQLClient(url_a, http), GraphQLClient(url_b, http)
        so, customer = await _released_order(gql_b)
        before = (await gql_b.query(PRODUCTION, {"id": so}))["order"]  # now cached on B

        ws_b = await WsClient.open(url_b)
        await ws_b.subscribe("o", ORDER_UPDATED, {"id": so})
        await ws_b.next("o")  # current state
        live = await WsClient.open(url_b)  # connected throughout: the reference stream
        await live.subscribe("c", ORDER_CHANGES, {"c": customer})

        # An event POSTed to A reaches B's subscriber, and B's cache was invalidated too.
        step = _step(plant, emitter, so)
        n, _ = await _send(http, url_a, step)
        pushed = [await ws_b.next("o") for _ in range(n)][-1]
        after = (await gql_b.query(PRODUCTION, {"id": so}))["order"]
        assert after != before
        assert pushed["data"]["orderUpdated"]["production"] == after["production"]
        reference = [await live.next("c") for _ in range(n)]
        await _settled(app_a)
        assert _processed(app_a, app_b) == n

        # The same events sent to B are recognised and have no second effect.
        count = await app_b.state.gateway.journal.count()
        assert await _send(http, url_b, step) == (n, n)
        await _settled(app_b)
        assert await app_b.state.gateway.journal.count() == count
        assert _processed(app_a, app_b) == n
        assert await ws_b.nothing() and await live.nothing()
        await ws_b.close()  # before more changes pile up unread in it

        # A client on A disconnects; changes arrive at both replicas; it resumes on B.
        ws_a = await WsClient.open(url_a)
        await ws_a.subscribe("c", ORDER_CHANGES, {"c": customer})
        m, _ = await _send(http, url_a, _step(plant, emitter, so))
        cursor = [await ws_a.next("c") for _ in range(m)][-1]["extensions"]["cursor"]
        await ws_a.close()
        reference += [await live.next("c") for _ in range(m)]
        missed = 0
        for url in (url_b, url_a, url_b):
            missed += (await _send(http, url, _step(plant, emitter, so)))[0]
            await _settled(app_a)  # one lifecycle step at a time, as the plant lives them
        reference += [await live.next("c") for _ in range(missed)]

        resumed = await WsClient.open(url_b)
        await resumed.subscribe("c", ORDER_CHANGES, {"c": customer, "after": cursor})
        replayed = [await resumed.next("c") for _ in range(missed)]
        assert await resumed.nothing()
        # Exactly what a client connected all along received after that cursor, in order
        # (cursors are sealed with a fresh nonce each time: compare the positions they hold,
        # opened with the key both replicas share).
        expected = reference[-missed:]
        cursors = app_b.state.gateway.cursors

        def position(message: dict) -> tuple[int, str]:
            return decode_change_cursor(cursors, message["extensions"]["cursor"])

        def data(message: dict) -> dict:
            change = dict(message["data"]["orderChanges"])
            change["cursor"] = decode_change_cursor(cursors, change["cursor"])
            return change

        assert [position(r) for r in replayed] == [position(r) for r in expected]
        assert [data(r) for r in replayed] == [data(r) for r in expected]

        # Each accepted event was processed (and published) exactly once across replicas.
        total = n + m + missed
        assert len({position(r) for r in reference}) == len(reference) == total
        assert _processed(app_a, app_b) == total
        history = (await gql_a.query(HISTORY, {"id": so}))["order"]["history"]["entries"]
        assert len(history) == total
        for ws in (live, resumed):
            await ws.close()


async def test_replica_dying_after_accept_is_taken_over(plant, http, prefix):
    emitter = EventEmitter(plant.world, "", DEV_SECRETS, duplicate_rate=0, reorder_rate=0, notification_rate=0)
    async with running_gateway(plant.url, scaleout=_scaleout(prefix, "replica-b", lease_seconds=1.0)) as (url_b, app_b):
        gateway_b = app_b.state.gateway
        so, _ = await _released_order(GraphQLClient(url_b, http))
        ws = await WsClient.open(url_b)
        await ws.subscribe("o", ORDER_UPDATED, {"id": so})
        await ws.next("o")
        await gateway_b.processor.stop()  # so that A, not B, takes the events below

        async with running_gateway(plant.url, scaleout=_scaleout(prefix, "replica-a")) as (url_a, app_a):
            await app_a.state.gateway.processor.stop()
            n, _ = await _send(http, url_a, _step(plant, emitter, so))  # 202: accepted by A
            taken = await app_a.state.gateway.journal.unprocessed()  # A takes them ...
            assert len(taken) == n
        # ... and is gone before applying them (it left its pending events in the group).
        assert await gateway_b.journal.backlog() == n

        gateway_b.processor.start()
        pushed = [await ws.next("o") for _ in range(n)]  # once A's lease ran out
        assert len({p["extensions"]["cursor"] for p in pushed}) == n
        assert gateway_b.journal.taken_over == n and await gateway_b.journal.backlog() == 0
        assert gateway_b.processor.processed == n
        history = (await GraphQLClient(url_b, http).query(HISTORY, {"id": so}))["order"]["history"]["entries"]
        assert len(history) == n
        await ws.close()


# --- read-after-202 across replicas ----------------------------------------------------


@pytest.mark.parametrize("notification", [False, True], ids=["data-event", "notification-only"])
async def test_a_202_from_one_replica_makes_the_next_read_on_another_fresh(plant, http, prefix, notification):
    """Replica A accepts; the very next read on replica B, which has the order cached (its
    answer in the response cache too), shows the change. Neither processor runs, so the
    bus carries nothing: only the invalidation fence can make B's read fresh."""
    emitter = EventEmitter(plant.world, "", DEV_SECRETS, duplicate_rate=0, reorder_rate=0, notification_rate=0)
    async with two_replicas(plant.url, prefix) as ((url_a, app_a), (url_b, app_b)):
        gql_b = GraphQLClient(url_b, http)
        so, _customer = await _released_order(gql_b)
        before = (await gql_b.query(PRODUCTION, {"id": so}))["order"]
        assert (await gql_b.query(PRODUCTION, {"id": so}))["order"] == before  # cached on B
        for app in (app_a, app_b):
            await app.state.gateway.processor.stop()
        batches: dict[str, list[dict[str, Any]]] = {}
        for change in plant.world.advance_order(so):
            batches.setdefault(change.system, []).append(emitter.event_for(change, notification=notification))
        await _send(http, url_a, list(batches.values()))
        after = (await gql_b.query(PRODUCTION, {"id": so}))["order"]
        assert after != before
        assert app_b.state.gateway.fence.applied >= app_a.state.gateway.fence.published > 0
        for app in (app_a, app_b):
            app.state.gateway.processor.start()


async def test_fence_waits_for_a_late_message_and_drops_everything_when_it_never_comes(prefix):
    dropped: dict[str, list[Any]] = {"keys": [], "namespaces": [], "all": []}
    dropped_by_a: list[Any] = []
    from gateway.redis_fence import InvalidationFence

    def fence(wait: float, keys: list[Any]) -> InvalidationFence:
        return InvalidationFence(
            REDIS_URL,
            prefix=prefix,
            invalidate=keys.append,
            invalidate_namespace=dropped["namespaces"].append,
            invalidate_all=lambda: dropped["all"].append(True),
            wait_seconds=wait,
        )

    a, b = fence(1.0, dropped_by_a), fence(0.2, dropped["keys"])
    await a.start()
    await b.start()
    try:
        seq = await a.publish({("erp.sales_order", "1")}, {"mes.production_orders_by_sales_order"})
        await b.sync()  # returns only once the message is applied here
        await a.sync()
        assert b.applied >= seq and a.applied >= seq
        assert ["erp.sales_order", "1"] in [list(k) for ks in dropped["keys"] for k in ks]
        assert "mes.production_orders_by_sales_order" in dropped["namespaces"]
        # A sequence advanced without a message (as if it were lost): B gives up waiting
        # and drops all it caches rather than answer from it.
        client = redis.from_url(REDIS_URL)
        await client.incr(f"{prefix}fence:seq")
        await client.aclose()
        await b.sync()
        assert dropped["all"] and b.timeouts == 1
        # Many concurrent syncs share a few GETs.
        gets = b.gets
        await asyncio.gather(*(b.sync() for _ in range(50)))
        assert b.gets - gets <= 3
    finally:
        await a.stop()
        await b.stop()


async def test_replicas_journal_each_exception_step_once(plant, http, prefix):
    """One replica evaluates every order (gateway/evaluator.py), the other follows its
    journaled steps; the shared journal holds each step of an exception once (even a step
    two replicas raced for would be recognised: ``shared_steps``), and both replicas know
    it."""
    async with two_replicas(plant.url, prefix) as ((url_a, app_a), (_url_b, app_b)):
        trackers = [app.state.gateway.exceptions for app in (app_a, app_b)]
        for t in trackers:
            await t.settled(60)
        # A machine goes down: the evaluating replica re-checks its orders.
        wc = next(w for w in ("WC-10", "WC-20", "WC-30", "WC-40") if plant.world.get("A_WorkCenter", w).state != "DOWN")
        emitter = EventEmitter(plant.world, "", DEV_SECRETS, duplicate_rate=0, reorder_rate=0, notification_rate=0)
        events = [emitter.event_for(c) for c in plant.world.work_center_down(wc, 8)]
        status, body = await post_events(http, url_a, events)
        assert status == 202, body

        async def machine_down_seen() -> bool:
            for t in trackers:
                await t.settled(30)
            rows = await app_a.state.gateway.journal.exception_transitions_after(0, limit=100_000)
            return any(r.exception_id == f"MACHINE_DOWN:mes:{wc}" for r in rows)

        await eventually(machine_down_seen, "the machine-down exception journaled")
        rows = await app_a.state.gateway.journal.exception_transitions_after(0, limit=100_000)
        assert rows
        last: dict[str, tuple] = {}
        for r in rows:
            p = r.payload
            state = (r.action, p.get("severity"), p.get("valueAtRisk"), p.get("daysLate"), tuple(sorted(a["salesOrder"] for a in p.get("affected", []))))
            assert last.get(r.exception_id) != state, f"{r.exception_id} journaled twice: {state}"
            last[r.exception_id] = state
        # The follower repeated no step: it evaluated nothing, and has the exception too.
        follower = next(app.state.gateway for app in (app_a, app_b) if not app.state.gateway.evaluator.leading)
        assert follower.exceptions.evaluated == 0

        async def followed() -> bool:
            return follower.exceptions.get(f"MACHINE_DOWN:mes:{wc}") is not None

        await eventually(followed, "the follower knows the machine-down exception")

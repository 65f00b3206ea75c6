"""The event path as a message bus: events applied in batches keep every guarantee of one
at a time (each record's order, stale events kept but not applied), the cache keys of an
event are dropped once, and both journals speak the same declared protocol."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest

from gateway.bus import OrderChanged
from gateway.journal import Journal, JournalEvent, Processed
from gateway.redis_bus import decode_message
from gateway.redis_journal import RedisJournal
from gateway.sqlite_journal import SQLiteJournal
from resolvers.loaders import PRODUCTION_ORDERS_BY_SALES_ORDER

from .events_util import make_event, post_events
from .servers import REDIS_URL

ORDER_PRODUCTION = "query($id: ID!) { order(id: $id) { production { orders { id status } } } }"
T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)


async def test_a_batch_keeps_each_records_order_and_drops_keys_once(gql, http, plant, gateway):
    url, app = gateway
    gw = app.state.gateway
    table = plant.world.tables["A_ProductionOrder"]
    with_po = [(so, min(mos)) for so in plant.world.sales_orders if (mos := table.lookup("SalesOrder", [so]))]
    (so, mo), (_, other_mo) = with_po[0], with_po[1]
    record = plant.world.get("A_ProductionOrder", mo).to_api()
    now = dt.datetime.now(dt.UTC)
    newer = make_event("mes", "ProductionOrder", "Started", mo, data={**record, "OrderStatus": "STARTED"}, time=now)
    older = make_event("mes", "ProductionOrder", "Released", mo,
                       data={**record, "OrderStatus": "RELEASED"}, time=now - dt.timedelta(hours=3))  # fmt: skip
    elsewhere = make_event("mes", "ProductionOrder", "Changed", other_mo,
                           data=plant.world.get("A_ProductionOrder", other_mo).to_api(), time=now)  # fmt: skip
    await gql.query(ORDER_PRODUCTION, {"id": so})  # cached now
    assert gw.cache.last_good((PRODUCTION_ORDERS_BY_SALES_ORDER, so)) is not None

    await gw.processor.stop()  # the three wait in the journal, to be applied as one batch
    batches, stale, processed = gw.processor.batches, gw.processor.stale, gw.processor.processed
    generation = gw.cache.generation
    status, body = await post_events(http, url, [newer, older, elsewhere])
    assert status == 202 and body["accepted"] == 3, body
    # The door dropped the keys of all three, in one step, before the 202.
    assert gw.cache.generation == generation + 1
    assert gw.cache.get((PRODUCTION_ORDERS_BY_SALES_ORDER, so)) is None

    gw.processor.start()
    await gw.processor.drain()
    assert gw.processor.batches == batches + 1
    assert (gw.processor.processed, gw.processor.stale) == (processed + 2, stale + 1)
    # Applying them (and the bus handlers) dropped nothing a second time.
    assert gw.cache.generation == generation + 1
    [newest] = [o for o in (await gql.query(ORDER_PRODUCTION, {"id": so}))["order"]["production"]["orders"]
                if o["id"] == mo]  # fmt: skip
    assert newest["status"] != "RELEASED", "the older event, behind the newer one in the batch, changed nothing"
    history = await gw.journal.history(so)
    assert [(e.event_id, e.stale) for e in history if e.event_id in (newer["id"], older["id"])] == [
        (older["id"], True),
        (newer["id"], False),
    ]


@pytest.fixture(params=["sqlite", "redis"])
def where(request, tmp_path) -> tuple[str, str]:
    if request.param == "sqlite":
        return "sqlite", str(tmp_path / "j.sqlite")
    return "redis", request.getfixturevalue("prefix")  # skips, visibly, without Redis


@pytest.fixture
async def journal(where: tuple[str, str]) -> AsyncIterator[Journal]:
    kind, place = where
    opened: Journal
    if kind == "sqlite":
        opened = await SQLiteJournal.open(place)
    else:
        opened = await RedisJournal.open(REDIS_URL, prefix=place, replica_id="r1")
    try:
        yield opened
    finally:
        await opened.close()


def test_both_journals_declare_the_protocol() -> None:
    members = {name for name in vars(Journal) if not name.startswith("_")} | set(Journal.__annotations__)
    for implementation in (SQLiteJournal, RedisJournal):
        missing = {name for name in members if not hasattr(implementation, name) and name != "publishes"}
        assert not missing, f"{implementation.__name__} lacks {sorted(missing)}"
    assert SQLiteJournal.publishes is False


async def test_watermarks_in_a_batch_are_decided_in_order(journal: Journal) -> None:
    a, b = ("mes", "ProductionOrder", "1000001"), ("mes", "ProductionOrder", "1000002")
    hour = dt.timedelta(hours=1)
    decided = await journal.advance_watermarks([(a, T0), (a, T0 - hour), (b, T0), (a, T0 + hour), (a, T0 + hour)])
    # Older than an earlier mark of the same record: stale; equal: applies again (a replay).
    assert decided == [True, False, True, True, True]
    assert await journal.watermarks([a, b, ("mes", "ProductionOrder", "none")]) == [T0 + hour, T0, None]
    assert await journal.advance_watermarks([(a, T0)]) == [False]


async def test_record_processed_records_a_batch_once(journal: Journal) -> None:
    appended = await journal.append(
        [JournalEvent("mes", f"e{i}", "t", f"k{i}", T0, None, T0) for i in range(3)]
    )
    seqs = [r.seq for r in appended]
    assert [e.seq for e in await journal.unprocessed()] == seqs
    change = OrderChanged(seqs[0], "SO1", "C1", "mes", "t", T0)
    batch = [
        Processed(seqs[0], (("SO1", "C1"),), changes=(change,)),
        Processed(seqs[1], (("SO1", "C1"),), stale=True),
        Processed(seqs[2], ()),
    ]
    assert await journal.record_processed(batch) == [True, True, True]
    assert await journal.unprocessed() == []
    rows = await journal.changes_after(0, include_stale=True)
    assert [(r.sales_order, r.stale) for r in rows] == [("SO1", False), ("SO1", True)]
    if isinstance(journal, RedisJournal):
        # Recorded already (as after another replica finished it): nothing again.
        assert await journal.record_processed(batch[:1]) == [False]


async def test_the_redis_journal_publishes_what_it_records(prefix) -> None:
    import redis.asyncio as redis

    client = redis.from_url(REDIS_URL)
    pubsub = client.pubsub()
    await pubsub.subscribe(f"{prefix}bus")
    try:
        async with await RedisJournal.open(REDIS_URL, prefix=prefix, replica_id="r1") as j:
            assert j.publishes
            [first, second] = await j.append([JournalEvent("mes", f"p{i}", "t", "k", T0, None, T0) for i in range(2)])
            await j.unprocessed()
            changes = [OrderChanged(s.seq, "SO1", "C1", "mes", "t", T0) for s in (first, second)]
            await j.record_processed([Processed(c.seq, (("SO1", "C1"),), changes=(c,)) for c in changes])
            got: list[int] = []
            async with asyncio.timeout(10):  # a recorded change that is never published fails here
                while len(got) < 2:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                    if message is not None:
                        got.append(decode_message(message["data"])[0][0].seq)
            assert got == sorted(got) and len(set(got)) == 2  # one position each, in order
    finally:
        await pubsub.aclose()
        await client.aclose()

"""No single event can move a record's "newest seen" mark beyond the allowed clock skew.

Before: a WorkCenter event dated 2099 was accepted and set the work centre's mark to 2099,
so the plant's real ``WorkCenter.Down`` was stored as stale and never pushed.
"""

from __future__ import annotations

import datetime as dt

from gateway.journal import JournalEvent
from gateway.redis_journal import RedisJournal
from gateway.sqlite_journal import SQLiteJournal

from .events_util import make_event, post_events
from .servers import REDIS_URL, running_gateway

FAR_FUTURE = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)
SKEW = dt.timedelta(seconds=300)


async def test_an_event_journaled_with_a_far_future_time_does_not_silence_its_record(http, gateway):
    url, app = gateway
    gw = app.state.gateway
    now = dt.datetime.now(dt.UTC)
    # As a journal written before the door checked `time` holds it.
    [poisoned] = await gw.journal.append(
        [
            JournalEvent(
                source="mes",
                event_id="wrong-clock-1",
                type="ordergraph.mes.workcenter.v1.WorkCenter.Changed.v1",
                subject="WC-20",
                occurred_at=FAR_FUTURE,
                data={"WorkCenter": "WC-20"},
                received_at=now,
            )
        ]
    )
    gw.ingress.wakeup.set()
    await gw.processor.drain()
    mark = await gw.journal.watermark("mes", "WorkCenter", "WC-20")
    assert mark is not None and mark <= now + SKEW  # not believed: it counts as of now
    # The plant's real event, a moment later, applies: it is not stale.
    real = make_event("mes", "WorkCenter", "Down", "WC-20", time=now + dt.timedelta(seconds=1))
    status, body = await post_events(http, url, real)
    assert status == 202, body
    await gw.processor.drain()
    stored = await gw.journal.get(body["cursors"][0])
    assert stored is not None and stored.processed and not stored.stale
    assert (await gw.journal.get(poisoned.seq)).processed


async def _assert_capped_at_start(plant, gateway_settings: dict, read_mark) -> None:
    async with running_gateway(plant.url, **gateway_settings):
        mark = await read_mark()
        now = dt.datetime.now(dt.UTC)
        assert mark is not None and now - dt.timedelta(minutes=1) < mark <= now


async def test_a_stored_far_future_mark_is_lowered_at_start_sqlite(plant, tmp_path):
    path = tmp_path / "journal.sqlite"
    async with await SQLiteJournal.open(path) as journal:
        await journal.advance_watermark("mes", "WorkCenter", "WC-20", FAR_FUTURE)
        await journal.advance_watermark("mes", "WorkCenter", "WC-30", dt.datetime(2020, 1, 1, tzinfo=dt.UTC))

    async def read_mark():
        async with await SQLiteJournal.open(path) as j:
            assert await j.watermark("mes", "WorkCenter", "WC-30") == dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
            return await j.watermark("mes", "WorkCenter", "WC-20")

    await _assert_capped_at_start(plant, {"journal_path": str(path)}, read_mark)


async def test_a_stored_far_future_mark_is_lowered_at_start_redis(plant, prefix):
    async with await RedisJournal.open(REDIS_URL, prefix=prefix, publish=False) as journal:
        await journal.advance_watermark("mes", "WorkCenter", "WC-20", FAR_FUTURE)
        await journal.advance_watermark("mes", "WorkCenter", "WC-30", dt.datetime(2020, 1, 1, tzinfo=dt.UTC))

    async def read_mark():
        async with await RedisJournal.open(REDIS_URL, prefix=prefix, publish=False) as j:
            assert await j.watermark("mes", "WorkCenter", "WC-30") == dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
            return await j.watermark("mes", "WorkCenter", "WC-20")

    await _assert_capped_at_start(plant, {"scaleout": {"redis_url": REDIS_URL, "key_prefix": prefix}}, read_mark)

"""A what-if over a work centre's whole queue keeps what it reads and computes out of the
cyclic collector's passes when the gateway freezes its heap (``Context.freeze_gc``): the
heap is frozen after each level of the queue's reads (``fetch.load_orders``'s ``freeze``:
the records the first what-if reads from the plant, tens of thousands at 100,000 orders,
were walked by a full pass, ~170 ms) and after the analysis, before the collector runs
again (its first young pass walked the analysis whole, ~50 ms at 100,000 orders)."""

from __future__ import annotations

import datetime as dt
import gc
import sys

import aiohttp

from gateway.cache import RecordCache
from resolvers import exception_types, fetch
from resolvers.context import Context
from sources import SourceEndpoint, Sources

from .servers import running_plant

SYSTEMS = ("erp", "mes", "wms", "qms", "tms")
NOW = dt.datetime(2026, 11, 30, 14, 0, tzinfo=dt.UTC)


def spy_freezes(monkeypatch, cache: RecordCache, reads: list[int] | None = None) -> list[tuple[int, bool]]:
    """Each ``gc.freeze()`` as (records the cache then holds, collector enabled); those of
    the source clients (``sources.memory.frozen_read``) counted in ``reads`` instead."""
    calls: list[tuple[int, bool]] = []
    real = gc.freeze

    def freeze() -> None:
        if sys._getframe(1).f_code.co_name == "frozen_read":
            if reads is not None:
                reads.append(len(cache))
        else:
            calls.append((len(cache), gc.isenabled()))
        real()

    monkeypatch.setattr(gc, "freeze", freeze)
    return calls


async def test_the_queue_is_frozen_level_by_level_as_it_is_read(monkeypatch) -> None:
    async with running_plant(orders=300) as plant, aiohttp.ClientSession() as http:
        plant.world.set_speed(0)
        sources = Sources.connect(http, {s: SourceEndpoint(base_url=f"{plant.url}/{s}") for s in SYSTEMS})
        orders = sorted(so.sales_order for so in plant.world.tables["A_SalesOrder"].records())[:120]
        try:
            cache = RecordCache(maxsize=10**6)
            calls = spy_freezes(monkeypatch, cache)
            plain = await fetch.load_orders(Context.create(sources, cache, NOW), orders)
            assert calls == []  # not asked: nothing frozen (pages, the tracker)

            cache = RecordCache(maxsize=10**6)
            calls = spy_freezes(monkeypatch, cache)
            frozen = await fetch.load_orders(Context.create(sources, cache, NOW), orders, freeze=True)
            # After the sales orders, after production orders and deliveries, and after the
            # level that reads the rest: each time with more records read and kept.
            assert len(calls) == 3
            held = [n for n, _ in calls]
            assert 0 < held[0] < held[1] < held[2] == len(cache)
            assert [(v.sales_order, c) for v, c in frozen] == [(v.sales_order, c) for v, c in plain]
        finally:
            gc.unfreeze()


async def test_the_analysis_is_frozen_before_the_collector_runs_again(monkeypatch) -> None:
    async with running_plant(orders=300) as plant, aiohttp.ClientSession() as http:
        plant.world.set_speed(0)
        sources = Sources.connect(http, {s: SourceEndpoint(base_url=f"{plant.url}/{s}") for s in SYSTEMS})
        wc = max(
            (w.work_center for w in plant.world.tables["A_WorkCenter"].records()),
            key=lambda w: sum(po.work_center == w for po in plant.world.tables["A_ProductionOrder"].records()),
        )
        scenario = exception_types.ImpactScenario(work_center_down=exception_types.WorkCenterDownInput(work_center=wc, hours=8.0))
        try:
            for freeze_gc in (False, True):
                cache = RecordCache(maxsize=10**6)
                reads: list[int] = []
                calls = spy_freezes(monkeypatch, cache, reads)
                ctx = Context.create(sources, cache, NOW, freeze_gc=freeze_gc)
                answer = await exception_types.run_impact(ctx, scenario)
                assert answer.orders
                if not freeze_gc:
                    assert calls == [] and reads == []
                    continue
                assert len(reads) >= 7  # each source answer once parsed (the queue's listing too)
                # The reads' freezes and the views' (collector on), then the analysis's, with
                # the collector still paused for it.
                assert [enabled for _, enabled in calls] == [True, True, True, True, False]
        finally:
            gc.unfreeze()


async def test_each_source_answer_of_the_queue_is_frozen_once_parsed(monkeypatch) -> None:
    """Inside ``reads_frozen`` (the what-if's reads, when the gateway freezes its heap) each
    source answer is frozen by the client that parsed it, in the loaders' batch tasks too;
    outside, the client freezes nothing."""
    from sources.memory import reads_frozen

    async with running_plant(orders=300) as plant, aiohttp.ClientSession() as http:
        plant.world.set_speed(0)
        sources = Sources.connect(http, {s: SourceEndpoint(base_url=f"{plant.url}/{s}") for s in SYSTEMS})
        orders = sorted(so.sales_order for so in plant.world.tables["A_SalesOrder"].records())[:120]
        by_client: list[str] = []
        real = gc.freeze

        def freeze() -> None:
            if sys._getframe(2).f_code.co_name == "_get_once":  # frozen_read <- the client
                by_client.append("read")
            real()

        monkeypatch.setattr(gc, "freeze", freeze)
        try:
            await fetch.load_orders(Context.create(sources, RecordCache(maxsize=10**6), NOW), orders)
            assert by_client == []
            with reads_frozen():
                await fetch.load_orders(Context.create(sources, RecordCache(maxsize=10**6), NOW), orders)
            # Sales orders, production orders, deliveries, customers, work centres,
            # components, lots (and shipments where there are deliveries): one answer each at least.
            assert len(by_client) >= 7
            by_client.clear()
            await fetch.load_orders(Context.create(sources, RecordCache(maxsize=10**6), NOW), orders)
            assert by_client == []  # the context var was reset on the way out
        finally:
            gc.unfreeze()

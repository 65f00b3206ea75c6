"""The start-up evaluation at scale (issue 21): the bulk path it reads orders with, its
pages in flight side by side, and what a source fault in the middle of a pass leaves.
Real plant and gateway on loopback; no timing thresholds."""

from __future__ import annotations

import asyncio
import datetime as dt

from gateway.cache import RecordCache
from resolvers import fetch
from resolvers.context import Context
from resolvers.fetch import load_orders

from .servers import running_gateway


def _fresh(gw) -> Context:
    """A context over an empty record cache: every record read from the plant."""
    return Context.create(gw.sources, RecordCache(), gw.domain_clock(), prediction_params=gw.prediction_params)


async def test_bulk_views_are_the_per_order_views(plant, http):
    """load_orders assembles a page level by level for all orders at once; each view (and
    customer) is the one the per-order path assembles on its own."""
    plant.world.set_speed(0)
    async with running_gateway(plant.url, domain_clock=plant.world.now) as (_url, app):
        gw = app.state.gateway
        ids = sorted(plant.world.sales_orders)
        bulk = await load_orders(_fresh(gw), ids + ["99999999"])  # an unknown order is left out
        assert [view.sales_order.sales_order for view, _c in bulk] == ids
        ctx = _fresh(gw)
        records = await ctx.loaders.sales_order.load_many(ids)
        alone = await asyncio.gather(*(fetch.order_view(ctx, so) for so in records))
        customers = {c.customer: c for c in await ctx.loaders.customer.load_many(sorted({so.sold_to_party for so in records}))}
        assert [view for view, _c in bulk] == alone
        assert [c for _v, c in bulk] == [customers[so.sold_to_party] for so in records]
        # The views are whole: production, materials, quality and logistics all present.
        assert any(view.components for view, _c in bulk) and any(view.shipments for view, _c in bulk)
        assert any(view.inspection_lots for view, _c in bulk)


async def test_pages_in_flight_evaluate_every_order_once(plant, http):
    """Several small pages at a time give the same index and open set as the start's pass,
    and each order is evaluated exactly once per pass."""
    plant.world.set_speed(0)  # the clock stands still: the second pass must agree with the first
    async with running_gateway(plant.url, domain_clock=plant.world.now) as (_url, app):
        gw = app.state.gateway
        tracker = gw.exceptions
        await tracker.settled(60)
        before_index = {so: gw.index.get(so) for so in plant.world.sales_orders}
        before_open = {r.id: sorted(r.affected) for r in tracker.open_exceptions()}
        assert before_open, "the plant has open exceptions to compare"
        tracker.chunk_size, tracker.page_concurrency = 23, 3  # a sweep: one page of 23 at a time
        evaluated = tracker.evaluated
        tracker.request_full()
        await tracker.settled(60)
        assert tracker.evaluated - evaluated == len(plant.world.sales_orders)
        assert {so: gw.index.get(so) for so in plant.world.sales_orders} == before_index
        assert {r.id: sorted(r.affected) for r in tracker.open_exceptions()} == before_open


async def test_sweeps_after_the_start_run_one_small_page_at_a_time(plant, http):
    """The sweeps are background work: one page of ``sweep_chunk_size`` orders at a time
    (the first pass keeps its wide pages side by side), and every order still once."""
    plant.world.set_speed(0)
    async with running_gateway(plant.url, domain_clock=plant.world.now) as (_url, app):
        gw = app.state.gateway
        tracker = gw.exceptions
        await tracker.settled(60)
        before_index = {so: gw.index.get(so) for so in plant.world.sales_orders}
        tracker.sweep_chunk_size = 7
        pages: list[int] = []
        in_flight, most = [0], [0]
        detect = tracker._detect

        async def watched(ctx, sales_orders, ticket=None, *, spare=False):
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
            pages.append(len(sales_orders))
            try:
                return await detect(ctx, sales_orders, ticket, spare=spare)
            finally:
                in_flight[0] -= 1

        tracker._detect = watched
        tracker.request_full()
        await tracker.settled(60)
        assert most[0] == 1 and max(pages) == 7
        assert sum(pages) == len(plant.world.sales_orders)
        assert {so: gw.index.get(so) for so in plant.world.sales_orders} == before_index


async def test_a_source_fault_mid_pass_ends_it_and_the_retry_finishes(plant, http):
    """The first pass with QMS failing (no last good answer to fall back on): pages fail
    while others are in flight; nothing is half-applied, the gateway does not claim its
    index, and once QMS answers the retried pass evaluates every order."""
    plant.world.set_speed(0)
    async with http.post(f"{plant.url}/control/faults", json={"qms": {"mode": "error"}}) as resp:
        assert resp.status == 200
    async with running_gateway(plant.url, domain_clock=plant.world.now) as (_url, app):
        gw = app.state.gateway
        tracker = gw.exceptions
        tracker.chunk_size, tracker.page_concurrency, tracker.retry_seconds = 23, 3, 0.2
        while tracker.full_evaluations < 3:  # failed passes, retried
            await asyncio.sleep(0.05)
        assert not tracker.ready.is_set()
        assert not gw.index.usable
        assert tracker.open_exceptions() == []
        async with http.delete(f"{plant.url}/control/faults") as resp:
            assert resp.status == 200
        await tracker.settled(60)
        assert tracker.pages_in_flight == 0  # no page of any pass left running
        assert gw.index.usable
        assert {so for so in plant.world.sales_orders if gw.index.get(so) is None} == set()
        assert tracker.open_exceptions()


async def test_an_evaluation_gives_way_to_questions_between_slices_of_its_rules(plant, http, monkeypatch):
    """A page's rules (hundreds of orders) run in slices of ``yield_every`` orders with the
    event loop's other work between them, not as one long step; the answers are the same."""
    import gateway.exception_tracker as tracker_module

    plant.world.set_speed(0)
    async with running_gateway(plant.url, domain_clock=plant.world.now) as (_url, app):
        gw = app.state.gateway
        tracker = gw.exceptions
        await tracker.settled(60)
        ids = sorted(plant.world.sales_orders)
        alone = await tracker._detect(tracker.context_factory(), ids)
        tracker.yield_every = 10
        ticks = [0]
        seen: list[int] = []
        detect = tracker_module.detect

        def watched(*args, **kwargs):
            seen.append(ticks[0])
            return detect(*args, **kwargs)

        async def ticker():
            while True:
                ticks[0] += 1
                await asyncio.sleep(0)

        monkeypatch.setattr(tracker_module, "detect", watched)
        running = asyncio.create_task(ticker())
        try:
            sliced = await tracker._detect(tracker.context_factory(), ids)
        finally:
            running.cancel()
        assert len(seen) == len(ids) > 20
        assert len(set(seen)) >= len(ids) // 10  # another task ran between the slices
        assert sliced == alone


async def test_orders_due_during_the_first_pass_are_evaluated_before_ready(plant, http, monkeypatch):
    """Orders whose due time comes while the first pass runs (a minute at 100,000 orders)
    are evaluated again before the gateway says it is ready, not by the first questions'
    time: at ready nothing is pending, and those orders have their time-driven exceptions."""
    from gateway.exception_tracker import ExceptionTracker

    plant.world.set_speed(0)
    offset = [dt.timedelta(0)]
    first_pass = ExceptionTracker._evaluate_pages

    async def pass_that_takes_17_hours(self):
        await first_pass(self)
        if not self.ready.is_set():
            offset[0] = dt.timedelta(hours=17)  # the domain clock moved on meanwhile

    monkeypatch.setattr(ExceptionTracker, "_evaluate_pages", pass_that_takes_17_hours)
    async with running_gateway(plant.url, domain_clock=lambda: plant.world.now() + offset[0]) as (_url, app):
        tracker = app.state.gateway.exceptions
        await asyncio.wait_for(tracker.ready.wait(), 60)
        assert offset[0], "the first pass ran"
        assert tracker.caught_up > 0 and tracker.timer_wakeups >= tracker.caught_up
        assert not tracker._pending  # nothing left for after ready
        open_at_ready = {r.id: sorted(r.affected) for r in tracker.open_exceptions()}
        # A full evaluation on the same clock finds nothing the catch-up missed.
        tracker.request_full()
        await tracker.settled(60)
        assert {r.id: sorted(r.affected) for r in tracker.open_exceptions()} == open_at_ready

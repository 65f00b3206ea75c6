"""The what-if of a work centre down does its schedule-free work once per order: the
rescheduled view's ship-by day, shipped, ships-soon and work centres are the current
view's (``order_facts``'s ``like``), and the plant's next working time after "now" is
worked out once per evaluation, not per production order (``prediction._next_working_time``).
That the answers are unchanged: tests/test_impact_equivalence.py (every view predicted
from scratch) and ``python -m bench.impact_ab --orders 2000 --fingerprint``."""

from __future__ import annotations

import aiohttp

from gateway.cache import RecordCache
from gateway.config import Config
from resolvers import exception_rules, fetch, impact
from resolvers.context import Context
from resolvers.exception_rules import ExceptionParams
from resolvers.prediction import PredictionParams
from sources import SourceEndpoint, Sources
from sources.calendars import FactoryCalendar

from .servers import running_plant

SYSTEMS = ("erp", "mes", "wms", "qms", "tms")


async def test_schedule_free_work_is_done_once_per_order(monkeypatch) -> None:
    async with running_plant(orders=400) as plant, aiohttp.ClientSession() as http:
        world = plant.world
        world.set_speed(0)
        cfg = Config()
        params = PredictionParams(plant=cfg.calendar.plant_calendar(), delivery=cfg.calendar.delivery_calendar())
        sources = Sources.connect(http, {s: SourceEndpoint(base_url=f"{plant.url}/{s}") for s in SYSTEMS})
        now = world.now().replace(microsecond=0)
        wc = max(
            (w.work_center for w in world.tables["A_WorkCenter"].records()),
            key=lambda w: sum(po.work_center == w for po in world.tables["A_ProductionOrder"].records()),
        )
        scenario = impact.WorkCenterDown(wc, 40.0)
        ctx = Context.create(sources, RecordCache(), now, prediction_params=params)
        loaded = await fetch.load_orders(ctx, await fetch.pegged_orders(ctx, scenario))
        views = [view for view, _ in loaded]
        customers = {view.sales_order.sold_to_party: customer for view, customer in loaded}

        ship_by_calls = []
        real_ship_by = exception_rules.ship_by
        monkeypatch.setattr(exception_rules, "ship_by", lambda view, p: ship_by_calls.append(view) or real_ship_by(view, p))
        next_calls = []
        real_next = FactoryCalendar.next_working_time
        monkeypatch.setattr(
            FactoryCalendar, "next_working_time", lambda cal, at: next_calls.append(at) or real_next(cal, at)
        )
        result = impact.analyse(scenario, views, customers, now, params=ExceptionParams(), prediction_params=params)
        assert len(result.orders) > 20
        assert len(ship_by_calls) == len(result.orders)  # the current views' only
        assert sum(1 for at in next_calls if at is now) == 1

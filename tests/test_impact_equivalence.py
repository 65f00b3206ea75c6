"""The what-if of a work centre down (``resolvers.impact``) shares work between an order's
current and rescheduled views (the joins and production runs the downtime does not move,
``OrderView.rescheduled``); its answer is what predicting every rescheduled view from
scratch answers, on a simulated plant's records, for random work centres and durations
(on work centres up and already down)."""

from __future__ import annotations

import dataclasses
import random

import aiohttp

from gateway.cache import RecordCache
from gateway.config import Config
from resolvers import fetch, impact
from resolvers.context import Context
from resolvers.exception_rules import ExceptionParams, order_facts
from resolvers.prediction import PredictionParams
from sources import SourceEndpoint, Sources

from .servers import running_plant

SYSTEMS = ("erp", "mes", "wms", "qms", "tms")


def from_scratch(scenario: impact.WorkCenterDown, views, customers, now, params: PredictionParams):
    """Each touched order's facts now and under the scenario, every view predicted anew."""
    fresh = [dataclasses.replace(v) for v in views]  # a replaced view starts without memo
    changed = impact.apply(scenario, fresh, now, params)
    out = {}
    for view in fresh:
        so = view.sales_order.sales_order
        if so not in changed or view.is_delivered or view.is_cancelled:
            continue
        customer = customers.get(view.sales_order.sold_to_party)
        current = order_facts(dataclasses.replace(view), customer, now, prediction_params=params)
        new = order_facts(dataclasses.replace(changed[so]), customer, now, prediction_params=params)
        out[so] = (current, new)
    return out


async def test_work_center_down_answers_what_predicting_from_scratch_answers() -> None:
    async with running_plant(orders=800) as plant, aiohttp.ClientSession() as http:
        world = plant.world
        world.set_speed(0)
        world.work_center_down("WC-30", 6)  # one already down: the what-if's hours come on top
        cfg = Config()
        params = PredictionParams(plant=cfg.calendar.plant_calendar(), delivery=cfg.calendar.delivery_calendar())
        sources = Sources.connect(http, {s: SourceEndpoint(base_url=f"{plant.url}/{s}") for s in SYSTEMS})
        now = world.now().replace(microsecond=0)
        work_centers = sorted(wc.work_center for wc in world.tables["A_WorkCenter"].records())
        rng = random.Random(21)
        cases = [("WC-30", 8.0)] + [(rng.choice(work_centers), rng.choice([1, 4, 8, 40, 200]) * 1.0) for _ in range(6)]
        touched = 0
        for wc, hours in cases:
            scenario = impact.WorkCenterDown(wc, hours)
            ctx = Context.create(sources, RecordCache(), now, prediction_params=params)
            loaded = await fetch.load_orders(ctx, await fetch.pegged_orders(ctx, scenario))
            views = [view for view, _ in loaded]
            customers = {view.sales_order.sold_to_party: customer for view, customer in loaded}
            expected = from_scratch(scenario, views, customers, now, params)
            result = impact.analyse(scenario, views, customers, now, params=ExceptionParams(), prediction_params=params)
            got = {o.sales_order: (o.current, o.new) for o in result.orders}
            assert got == expected, (wc, hours)
            touched += sum(1 for current, new in got.values() if new.predicted != current.predicted)
        assert touched > 0  # the downtimes moved some predictions: the comparison compared something

"""PRODUCTION_DELAY asks when each open production order would end alone (its order with
no other production order, delivery or shipment): ``prediction.production_end_alone``
answers that without the rest of a prediction. Its answer is the full prediction's of that
view, for every open production order of a simulated plant, at several instants (work
centres down among them)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import aiohttp

from gateway.cache import RecordCache
from gateway.config import Config
from resolvers import fetch
from resolvers.context import Context
from resolvers.prediction import PredictionParams, predict, production_end_alone
from resolvers.view import production_completed
from sources import SourceEndpoint, Sources

from .servers import running_plant

SYSTEMS = ("erp", "mes", "wms", "qms", "tms")


async def test_the_end_of_a_production_order_alone_is_the_full_predictions() -> None:
    async with running_plant(orders=600) as plant, aiohttp.ClientSession() as http:
        world = plant.world
        world.set_speed(0)
        world.work_center_down("WC-30", 6)
        cfg = Config()
        params = PredictionParams(plant=cfg.calendar.plant_calendar(), delivery=cfg.calendar.delivery_calendar())
        sources = Sources.connect(http, {s: SourceEndpoint(base_url=f"{plant.url}/{s}") for s in SYSTEMS})
        ids = [so.sales_order for so in world.tables["A_SalesOrder"].records()]
        start = world.now().replace(microsecond=0)
        ctx = Context.create(sources, RecordCache(), start, prediction_params=params)
        views = [view for view, _ in await fetch.load_orders(ctx, ids)]
        compared = shared = ended = 0
        for hours in (0, 30, 200):
            now = start + dt.timedelta(hours=hours)
            for view in views:
                for po in view.active_production_orders:
                    if production_completed(po):
                        continue
                    alone = dataclasses.replace(view, production_orders=[po], deliveries=[], shipments=[])
                    expected = predict(alone, now, params).production_end
                    assert production_end_alone(view, po, now, params) == expected, (view.sales_order.sales_order, po)
                    compared += 1
                    shared += len(view.production_orders) > 1 or bool(view.deliveries or view.shipments)
                    ended += expected is not None and expected > po.scheduled_end_date
        # The comparison covered views the short path copies, and ends after the plan.
        assert compared > 300 and shared > 20 and ended > 20, (compared, shared, ended)

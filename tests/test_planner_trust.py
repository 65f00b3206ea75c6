"""Answers a planner can trust, on the simulated plant: working calendars, carrier
revisions and overdue trucks, blocks, the order's own customer text, and time-driven
exceptions at their due time. Real plant, real gateway, real clients on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from gateway.config import CalendarConfig

from .events_util import send_changes
from .servers import running_gateway, running_plant
from .ws_client import WsClient

PLANT = CalendarConfig().plant_calendar()
RECEIVING = CalendarConfig().delivery_calendar()
TIME_DRIVEN = {"PRODUCTION_DELAY", "DISPATCH_MISSED", "SHIPMENT_OVERDUE"}
CHANGES = """
subscription { exceptionsChanged(minSeverity: LOW) {
  action exception { id kind affectedOrders { id } } } }
"""


@pytest.fixture
async def frozen():
    """A plant whose clock only the test moves, and a gateway whose rules run on it."""
    async with running_plant(orders=400) as plant:
        plant.world.set_speed(0)
        async with running_gateway(plant.url, domain_clock=plant.world.now) as (url, app):
            async with aiohttp.ClientSession() as http:
                await app.state.gateway.exceptions.settled(30)
                yield plant, url, app, http


async def settle(app: Any) -> None:
    gw = app.state.gateway
    await gw.processor.drain()
    await asyncio.wait_for(gw.processor.idle.wait(), 10)
    await gw.exceptions.settled(30)


async def transitions(ws: WsClient, quiet: float = 1.5) -> list[dict]:
    """Every exceptionsChanged message until the stream is quiet for ``quiet`` seconds."""
    out = []
    while True:
        try:
            msg = await ws.next("x", timeout=quiet)
        except TimeoutError:
            return out
        out.append(msg["data"]["exceptionsChanged"])


# --- 8. time-driven exceptions at their due time ------------------------------------------------


async def test_time_driven_exceptions_follow_a_plant_clock_jump_without_the_sweep(frozen) -> None:
    plant, url, app, http = frozen
    tracker = app.state.gateway.exceptions
    ws = await WsClient.open(url)
    await ws.subscribe("x", CHANGES)
    try:
        await transitions(ws, quiet=0.5)  # nothing pending before the jump
        sweeps, wakeups = tracker.full_evaluations, tracker.timer_wakeups
        hit_before = {e.id: set(e.affected) for e in tracker.open_exceptions()}

        # The plant's clock jumps 17 h; the plant's own steps reach the gateway as events.
        changes = plant.world.advance_clock(17)
        await send_changes(http, url, plant.world, changes)
        # The orders those events name, directly or through a work centre that changed.
        touched = {c.sales_order for c in changes if c.sales_order}
        changed_wcs = {c.key for c in changes if c.entity_set == "A_WorkCenter"}
        touched |= {
            po.sales_order for po in plant.world.tables["A_ProductionOrder"].records() if po.work_center in changed_wcs
        }
        seen = await transitions(ws)
        await settle(app)
        seen += await transitions(ws, quiet=0.5)

        # Orders no event touched got their time-driven exceptions from their timers ...
        by_timer = {
            (t["exception"]["id"], so)
            for t in seen
            if t["action"] in ("RAISED", "UPDATED") and t["exception"]["kind"] in TIME_DRIVEN
            for so in {o["id"] for o in t["exception"]["affectedOrders"]}
            - hit_before.get(t["exception"]["id"], set()) - touched
        }  # fmt: skip
        assert by_timer, [t["exception"]["id"] for t in seen]
        assert tracker.timer_wakeups > wakeups
        # ... not from a sweep over every order (which the test never gives time to run).
        assert tracker.full_evaluations == sweeps

        # Nothing was left for a sweep to find: a full evaluation now raises nothing new.
        open_before = {e.id for e in tracker.open_exceptions()}
        tracker.request_full()
        await tracker.settled(30)
        raised_late = [t["exception"]["id"] for t in await transitions(ws, quiet=0.5) if t["action"] == "RAISED"]
        assert not set(raised_late) - open_before, raised_late
    finally:
        await ws.close()

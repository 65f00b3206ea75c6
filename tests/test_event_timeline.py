"""The event timeline (gateway/telemetry.py) keeps an event's accept time only until no
fan-out can ask for it: applied events are forgotten once fanned out, or at once when they
change nothing a subscriber sees. It used to keep every event until its bound (50,000),
growing with each event for the first ~20 minutes of a soak."""

from __future__ import annotations

import asyncio

from gateway.telemetry import EventTimeline

from .events_util import send_changes
from .ws_client import WsClient


async def _eventually(check, what: str, timeout: float = 10.0) -> None:
    """Poll ``check()`` until truthy (a bound, not a timing assertion)."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)
    assert check(), what


def test_forget_drops_entries_and_ignores_unknown():
    timeline = EventTimeline(maxsize=10)
    for seq in (1, 2, 3):
        timeline.accepted(seq, None)
    timeline.forget([1, 3, 99])
    assert len(timeline) == 1
    assert timeline.lag(1) is None and timeline.lag(3) is None
    assert timeline.lag(2) is not None


async def test_timeline_empties_once_events_are_applied_and_fanned_out(gql, http, plant, gateway):
    url, app = gateway
    gw = app.state.gateway
    query = "{ orders(first: 30, filter: {stage: [PRODUCTION_RELEASED]}) { nodes { id customerId } } }"
    nodes = (await gql.query(query))["orders"]["nodes"]
    watched = nodes[0]
    unwatched = next(o for o in nodes if o["customerId"] != watched["customerId"])
    ws = await WsClient.open(url)
    await ws.subscribe("c", "subscription($c: ID) { orderChanges(customer: $c) { cursor order { id } } }", {"c": watched["customerId"]})
    await _eventually(lambda: gw.hub.by_customer, "the subscription is registered")
    # events for an order someone watches (pushed) and for one nobody does
    n = await send_changes(http, url, plant.world, plant.world.advance_order(watched["id"]))
    await send_changes(http, url, plant.world, plant.world.advance_order(unwatched["id"]))
    for _ in range(n):
        await ws.next("c")
    await ws.close()
    # every event accepted was applied; none is asked about again, so none is kept
    await _eventually(lambda: len(gw.timeline) == 0, "the timeline forgets applied events")

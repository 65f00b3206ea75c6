"""The expedite what-if against the simulated plant and the gateway under uvicorn: one
order's production goes to the front of its work centres' queues; it gains, the orders it
passes lose, and nothing changes at the sources."""

from __future__ import annotations

import datetime as dt

import pytest

from sources.records import ProductionOrder

from .servers import GraphQLClient

IMPACT = """
query($scenario: ImpactScenario!) {
  impact(scenario: $scenario) {
    scenario
    totals { orders delayedOrders earlierOrders valueAtRisk { amount } valueAtRiskRelieved { amount }
             valueAtRiskAdded { amount } addedValueAtRisk { amount } }
    orders { orderId delayDays predictedDeliveryDate currentPredictedDeliveryDate }
  }
}
"""


@pytest.fixture
def frozen(frozen_world):
    """conftest's frozen plant and gateway: (plant, url, http)."""
    plant, url, _app, http = frozen_world
    return plant, url, http


def _waiting(world, wc: str) -> list[ProductionOrder]:
    return sorted(
        (po for po in world.tables["A_ProductionOrder"].records()
         if po.work_center == wc and po.status in ("CREATED", "RELEASED")),
        key=lambda po: (po.scheduled_start_date, po.manufacturing_order),
    )


def _far_back_order(world) -> tuple[str, str]:
    """An order whose only production waits days behind others on one work centre, with
    nothing short: expediting it can only help it."""
    now = world.now()
    for wc in sorted(world.tables["A_WorkCenter"].keys()):
        if world.get("A_WorkCenter", wc).state != "UP":
            continue
        queue = _waiting(world, wc)
        for po in reversed(queue):
            so = po.sales_order
            own = [p for p in world.tables["A_ProductionOrder"].records() if p.sales_order == so]
            if (
                len(own) == 1
                and world.state_of(so) in ("RECEIVED", "RELEASED")
                and po.scheduled_start_date > max(now, queue[0].scheduled_start_date) + dt.timedelta(days=4)
            ):
                return so, wc
    raise AssertionError("no order waits far back in a queue")


async def test_expedite_moves_an_order_to_the_front_who_gains_who_loses_nothing_changes(frozen) -> None:
    plant, url, http = frozen
    world = plant.world
    gql = GraphQLClient(url, http)
    so, wc = _far_back_order(world)
    before = {po.manufacturing_order: (po.scheduled_start_date, po.scheduled_end_date) for po in _waiting(world, wc)}
    changes: list = []
    world.subscribe(changes.append)

    result = (await gql.query(IMPACT, {"scenario": {"expedite": {"order": so}}}))["impact"]
    rows = {o["orderId"]: o for o in result["orders"]}
    assert so in result["scenario"]
    # The expedited order gains: delivered earlier than predicted now.
    assert rows[so]["delayDays"] < 0
    assert rows[so]["predictedDeliveryDate"] < rows[so]["currentPredictedDeliveryDate"]
    # Everyone else it touches was passed in the queue: none gains, some lose.
    others = [o for k, o in rows.items() if k != so]
    assert others and all(o["delayDays"] >= 0 for o in others)
    totals = result["totals"]
    assert totals["earlierOrders"] == 1
    assert totals["delayedOrders"] == sum(1 for o in others if o["delayDays"] > 0)
    # The value moved: relieved on the gainer, added on the losers; their net is the change.
    relieved, added = totals["valueAtRiskRelieved"]["amount"], totals["valueAtRiskAdded"]["amount"]
    assert relieved >= 0 and added >= 0
    assert added - relieved == pytest.approx(totals["addedValueAtRisk"]["amount"], abs=0.02)

    # Read-only toward the sources: no change, the queue stands as it was.
    assert changes == []
    assert {po.manufacturing_order: (po.scheduled_start_date, po.scheduled_end_date) for po in _waiting(world, wc)} == before


async def test_expedite_refuses_what_it_cannot_mean(frozen) -> None:
    plant, url, http = frozen
    world = plant.world
    gql = GraphQLClient(url, http)
    delivered = sorted(world.orders_in_state("DELIVERED"))[0]
    for order in ("99999999", delivered, "A,B"):
        status, body = await gql.post(IMPACT, {"scenario": {"expedite": {"order": order}}})
        assert status == 200 and body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", (order, body)

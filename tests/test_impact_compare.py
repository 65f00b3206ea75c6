"""Several what-if scenarios side by side, against the simulated plant and the gateway
under uvicorn: each column is what `impact` answers alone, nothing changes at the sources."""

from __future__ import annotations

from collections import defaultdict

import pytest

from .servers import GraphQLClient

ROW = """orderId predictedDeliveryDate currentPredictedDeliveryDate delayDays daysLate severity valueAtRisk { amount }"""
COMPARE = f"""
query($scenarios: [ImpactScenario!]!) {{
  impactComparison(scenarios: $scenarios) {{
    evaluatedAt
    scenarios {{ scenario totals {{ orders delayedOrders newlyLateOrders valueAtRisk {{ amount }} }} orders {{ {ROW} }} }}
    orders {{ orderId confirmedDeliveryDate currentPredictedDeliveryDate under {{ {ROW} }} }}
  }}
}}
"""
IMPACT = f"""
query($scenario: ImpactScenario!) {{
  impact(scenario: $scenario) {{ scenario totals {{ orders delayedOrders newlyLateOrders valueAtRisk {{ amount }} }} orders {{ {ROW} }} }}
}}
"""


@pytest.fixture
def frozen(frozen_world):
    """conftest's frozen plant and gateway: (plant, url, http)."""
    plant, url, _app, http = frozen_world
    return plant, url, http


def _busiest(world) -> str:
    running: dict[str, int] = defaultdict(int)
    for po in world.tables["A_ProductionOrder"].records():
        if po.status in ("STARTED", "PARTIALLY_CONFIRMED"):
            running[po.work_center] += 1
    up = [wc.work_center for wc in world.tables["A_WorkCenter"].records() if wc.state == "UP"]
    return max(up, key=lambda wc: (running[wc], wc))


async def test_scenarios_side_by_side_match_each_alone_and_change_nothing(frozen) -> None:
    plant, url, http = frozen
    world = plant.world
    gql = GraphQLClient(url, http)
    wc = _busiest(world)
    now = world.now()
    moving = next(
        so
        for so in sorted(world.orders_in_state("IN_TRANSIT"))
        if (eta := world.get("Shipment", world.shipment_of(so)).estimated_delivery_at) and eta > now
    )
    scenarios = [
        {"workCenterDown": {"workCenter": wc, "hours": 8}},
        {"workCenterDown": {"workCenter": wc, "hours": 40}},
        {"shipmentDelayed": {"trackingNumber": world.shipment_of(moving), "hours": 72}},
    ]
    changes: list = []
    world.subscribe(changes.append)

    side = (await gql.query(COMPARE, {"scenarios": scenarios}))["impactComparison"]
    alone = [(await gql.query(IMPACT, {"scenario": s}))["impact"] for s in scenarios]
    # Each column is exactly what impact answers for that scenario alone.
    assert side["scenarios"] == alone
    assert side["scenarios"][0]["totals"]["orders"] > 0

    rows = {r["orderId"]: r for r in side["orders"]}
    touched = [{o["orderId"] for o in a["orders"]} for a in alone]
    assert set(rows) == set().union(*touched)
    assert list(rows) == sorted(rows)
    for so, row in rows.items():
        for i, cell in enumerate(row["under"]):
            if so in touched[i]:
                assert cell == next(o for o in alone[i]["orders"] if o["orderId"] == so)
                assert cell["currentPredictedDeliveryDate"] == row["currentPredictedDeliveryDate"]
            else:
                assert cell is None
    # Longer downtime: never earlier than the shorter one, for each order both touch.
    for so in touched[0] & touched[1]:
        short, long = rows[so]["under"][0], rows[so]["under"][1]
        if short["predictedDeliveryDate"] and long["predictedDeliveryDate"]:
            assert long["predictedDeliveryDate"] >= short["predictedDeliveryDate"]
    assert rows[moving]["under"][2]["delayDays"] >= 2
    # Read-only toward the sources.
    assert changes == []
    assert world.get("A_WorkCenter", wc).state == "UP"


@pytest.mark.parametrize("count", [0, 6])
async def test_too_few_or_too_many_scenarios_is_a_clear_error(frozen, count: int) -> None:
    _plant, url, http = frozen
    gql = GraphQLClient(url, http)
    scenarios = [{"workCenterDown": {"workCenter": "WC-10", "hours": 1 + i}} for i in range(count)]
    status, body = await gql.post(COMPARE, {"scenarios": scenarios})
    assert status == 200 and body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "1 to 5 scenarios" in body["errors"][0]["message"]

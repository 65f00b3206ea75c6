"""Source records: the compiled parsers agree with the generic, checked parse."""

from __future__ import annotations

import pytest

from sources import records as R
from sources.simulator.world import World


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(orders=200, seed=11)


def test_every_record_of_a_plant_parses_as_the_checked_parse_and_round_trips(world):
    count = 0
    for table in world.tables.values():
        for key in table.keys():
            record = table.get(key)
            data = record.to_api()
            fast = type(record).from_api(data)
            assert fast == type(record)._from_api_checked(data) == record
            assert repr(fast) == repr(record)
            count += 1
    assert count > 1000


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda d: [], "expected an object"),
        (lambda d: {k: v for k, v in d.items() if k != "SoldToParty"}, "missing field 'SoldToParty'"),
        (lambda d: {**d, "TotalNetAmount": "lots"}, "TotalNetAmount"),
        (lambda d: {**d, "SalesOrderDate": "yesterday"}, "SalesOrderDate"),
        (lambda d: {**d, "SalesOrder": {"x": 1}}, "expected a string"),
        (lambda d: {**d, "to_Item": "none"}, "expected a list"),
    ],
)
def test_malformed_records_get_the_precise_error(world, spoil, message):
    data = world.tables["A_SalesOrder"].get(world.sales_orders[0]).to_api()
    with pytest.raises(R.RecordError, match=message):
        R.SalesOrder.from_api(spoil(data))


def test_unusual_but_valid_values_take_the_checked_path(world):
    so = world.tables["A_SalesOrder"].get(world.sales_orders[0])
    data = so.to_api()
    data["TotalNetAmount"] = str(data["TotalNetAmount"])  # a number sent as a string
    data["CreationDateTime" if "CreationDateTime" in data else "SalesOrderDate"] = data.get("SalesOrderDate")
    parsed = R.SalesOrder.from_api(data)
    assert parsed.total_net_amount == so.total_net_amount

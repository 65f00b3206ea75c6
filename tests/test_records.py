"""Source records: the compiled parsers agree with the generic, checked parse."""

from __future__ import annotations

import datetime as dt

import orjson
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


def _generic_render(kind, value):
    """The field-by-field render the generated renderers unroll (as it was before them)."""
    if value is None:
        return None
    if isinstance(kind, tuple):
        return [_generic_render(kind[1], item) for item in value]
    if kind is dt.datetime:
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if kind is dt.date:
        return value.isoformat()
    if isinstance(value, R.Record):
        return {f: _generic_render(k, getattr(value, n)) for n, f, k, _r in R._fields(type(value))}
    return value


def test_generated_renderers_give_the_generic_json(world):
    for table in world.tables.values():
        for key in table.keys():
            record = table.get(key)
            assert record.to_api() == _generic_render(type(record), record)


def test_parsed_records_share_repeated_values(world):
    """Two parses of the same JSON (two reads of one source record) keep one object per
    repeated string, date, timestamp and number, not one per parse; the values are equal."""
    so = next(iter(world.tables["A_SalesOrder"].records()))
    data = so.to_api()
    a, b = R.SalesOrder.from_api(dict(data)), R.SalesOrder.from_api(orjson.loads(orjson.dumps(data)))
    assert a == b == so
    assert a.sold_to_party is b.sold_to_party
    assert a.sales_order_date is b.sales_order_date
    assert a.last_change_date_time is b.last_change_date_time
    assert a.items[0].material is b.items[0].material
    assert a.total_net_amount is b.total_net_amount
    # Numbers: an integer becomes its float; zero is shared, a negative zero keeps its sign.
    assert R._shared_float(3) == 3.0 and type(R._shared_float(3)) is float
    assert str(R._shared_float(-0.0)) == "-0.0" and str(R._shared_float(0)) == "0.0"


@pytest.mark.parametrize("amount", [3, 3.0, 0, 0.0, -0.0, 2.5, -7, 1e300])
def test_the_parsers_inline_memo_look_ups_give_the_shared_values(world, amount):
    """The compiled parser looks the memos up inline and calls the shared-value functions
    only on a miss: the first parse (a miss) and the second (a hit) give the same value,
    type and sign as ``_shared_float``, ``_shared_date`` and ``_shared_datetime_z``."""
    so = world.tables["A_SalesOrder"].get(world.sales_orders[0])
    data = {**so.to_api(), "TotalNetAmount": amount, "SalesOrderDate": "2031-02-03", "LastChangeDateTime": "2031-02-03T04:05:06Z"}
    first, second = R.SalesOrder.from_api(dict(data)), R.SalesOrder.from_api(dict(data))
    for parsed in (first, second):
        assert parsed == R.SalesOrder._from_api_checked(data)
        assert type(parsed.total_net_amount) is float
        assert repr(parsed.total_net_amount) == repr(R._shared_float(amount)) == repr(float(amount))
        assert parsed.sales_order_date == dt.date(2031, 2, 3)
        assert parsed.last_change_date_time == dt.datetime(2031, 2, 3, 4, 5, 6, tzinfo=dt.UTC)
    assert first.sales_order_date is second.sales_order_date is R._shared_date("2031-02-03")
    assert first.last_change_date_time is second.last_change_date_time
    if amount:
        assert first.total_net_amount is second.total_net_amount is R._shared_float(amount)

"""Source records: the compiled parsers agree with the generic, checked parse."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import pickle

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


# --- lazy parsing ------------------------------------------------------------------------
# ``from_api`` checks every field up front and converts only the fields the gateway has read
# so far (``_LazyPlan``); a fresh plan has read nothing, so every scalar field stays raw
# until read. These tests hold lazy records to the eager parse, field by field.

NESTED_TYPES = (
    R.SalesOrderItem, R.SalesOrderScheduleLine, R.OutboundDeliveryItem, R.UsageDecision,
    R.TrackingEvent, R.ProofOfDelivery, R.ShipmentItem,
)


def _fields_of(record):
    """Every field's value, read attribute by attribute (nested records recursively)."""
    out = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if isinstance(value, R.Record):
            value = _fields_of(value)
        elif isinstance(value, list):
            value = [_fields_of(v) if isinstance(v, R.Record) else v for v in value]
        out[f.name] = (type(value), value)
    return out


def test_a_lazy_record_holds_what_the_eager_parse_holds(world):
    """First with fresh plans (nothing read: every scalar raw, every table parsed before any
    field is read), then with the shared plans that have read some fields: each record
    equals the eager parse and the plant's record, value and type of every field alike."""
    for fresh in (True, False):
        count = 0
        for table in world.tables.values():
            records = [table.get(key) for key in table.keys()]
            cls = type(records[0])
            parse = R._LazyPlan(cls).parse if fresh else cls.from_api
            lazies = [parse(record.to_api()) for record in records]
            for record, lazy in zip(records, lazies, strict=True):
                eager = cls.from_api_eager(record.to_api())
                assert type(lazy) is cls
                if fresh:  # nothing converted yet: the scalars are raw
                    assert len(object.__getattribute__(lazy, "_raw")[0].positions) >= 3
                assert _fields_of(lazy) == _fields_of(eager) == _fields_of(record)
                assert lazy == eager == record and repr(lazy) == repr(record)
                count += 1
        assert count > 1000


def test_a_field_read_once_is_converted_at_parse_from_then_on(world):
    data = world.tables["A_SalesOrder"].get(world.sales_orders[0]).to_api()
    plan = R._LazyPlan(R.SalesOrder)
    first = plan.parse(data)
    layout = object.__getattribute__(first, "_raw")[0]
    assert "sold_to_party" in layout.positions
    assert first.sold_to_party == data["SoldToParty"]
    # read once: the plan converts it at parse; it is no longer among the raw fields
    assert "sold_to_party" in plan.read_fields
    second = plan.parse(data)
    assert "sold_to_party" not in object.__getattribute__(second, "_raw")[0].positions
    assert second.sold_to_party is first.sold_to_party  # interned either way
    # records parsed before the plan changed still convert their raw fields
    assert first.sales_order_date == second.sales_order_date == dt.date.fromisoformat(data["SalesOrderDate"])


def test_lazy_records_keep_no_reference_to_the_payload(world):
    """The payload's dict may change after the parse (a decoder's buffer, an event's data):
    a field read later still holds what was parsed."""
    data = world.tables["A_SalesOrder"].get(world.sales_orders[0]).to_api()
    expected = R.SalesOrder.from_api_eager(data)
    lazy = R._LazyPlan(R.SalesOrder).parse(data)
    data["SoldToParty"] = "99999"
    data["TotalNetAmount"] = 1.0
    data["to_Item"][0]["to_ScheduleLine"][0]["ConfirmedDeliveryDate"] = "2001-01-01"
    assert lazy.sold_to_party == expected.sold_to_party
    assert lazy.total_net_amount == expected.total_net_amount
    assert lazy.items[0].schedule_lines[0] == expected.items[0].schedule_lines[0]


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda d: {k: v for k, v in d.items() if k != "SoldToParty"}, "missing field 'SoldToParty'"),
        (lambda d: {**d, "SoldToParty": None}, "missing field 'SoldToParty'"),
        (lambda d: {**d, "TotalNetAmount": "lots"}, "TotalNetAmount"),
        (lambda d: {**d, "TotalNetAmount": True}, "expected a number"),
        (lambda d: {**d, "SalesOrderDate": "yesterday"}, "SalesOrderDate"),
        (lambda d: {**d, "LastChangeDateTime": "2024-02-30T10:00:00Z"}, "LastChangeDateTime"),
        (lambda d: {**d, "LastChangeDateTime": ["2024-02-03T10:00:00Z"]}, "LastChangeDateTime"),
        (lambda d: {**d, "SalesOrder": {"x": 1}}, "expected a string"),
        (lambda d: {**d, "to_Item": "none"}, "expected a list"),
        (lambda d: {**d, "to_Item": [{**d["to_Item"][0], "Material": None}]}, "missing field 'Material'"),
        (
            lambda d: {**d, "to_Item": [{**d["to_Item"][0], "to_ScheduleLine": [{**d["to_Item"][0]["to_ScheduleLine"][0], "RequestedDeliveryDate": "soon"}]}]},
            "RequestedDeliveryDate",
        ),
    ],
)
def test_a_lazy_parse_refuses_a_bad_field_at_once_even_one_never_read(world, spoil, message):
    """Every field is checked at parse, read or not: the same RecordError as the eager parse."""
    data = world.tables["A_SalesOrder"].get(world.sales_orders[0]).to_api()
    for parse in (R._LazyPlan(R.SalesOrder).parse, R.SalesOrder.from_api, R.SalesOrder.from_api_eager):
        with pytest.raises(R.RecordError, match=message):
            parse(spoil(data))


def test_a_lazy_parse_takes_unusual_values_as_the_checked_parse_does(world):
    so = world.tables["A_SalesOrder"].get(world.sales_orders[0])
    data = so.to_api()
    data["TotalNetAmount"] = str(data["TotalNetAmount"])  # a number sent as a string
    data["SalesOrderDate"] = data["SalesOrderDate"] + "T00:00:00Z"  # a date sent as a timestamp
    data["LastChangeDateTime"] = data["LastChangeDateTime"].removesuffix("Z")  # no zone: UTC
    data["to_Item"][0]["RequestedQuantity"] = 3  # an integer quantity
    parsed = R._LazyPlan(R.SalesOrder).parse(data)
    assert parsed == R.SalesOrder._from_api_checked(data) == R.SalesOrder.from_api_eager(data)
    assert parsed.total_net_amount == so.total_net_amount
    assert parsed.last_change_date_time == so.last_change_date_time
    assert type(parsed.items[0].requested_quantity) is float


def test_copies_and_pickles_of_lazy_records_carry_converted_values(world):
    table = world.tables["Shipment"]
    record = max((table.get(k) for k in table.keys()), key=lambda s: len(s.events))  # with its scans
    assert record.events
    lazy = R._LazyPlan(R.Shipment).parse(record.to_api())
    for twin in (copy.copy(lazy), copy.deepcopy(lazy), pickle.loads(pickle.dumps(lazy))):
        assert twin == record
        with pytest.raises(AttributeError):
            object.__getattribute__(twin, "_raw")


def test_a_missing_attribute_is_still_an_attribute_error(world):
    lazy = R._LazyPlan(R.Customer).parse(world.tables["A_Customer"].get(next(iter(world.tables["A_Customer"].keys()))).to_api())
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        lazy.nonsense  # noqa: B018
    assert getattr(lazy, "nonsense", None) is None
    assert not hasattr(R.Customer(customer="1", customer_name="x"), "_raw")


def test_raw_fields_convert_to_the_shared_values_of_the_eager_parse(world):
    """Converted on first read, a raw field gets the eager parse's value and type, shared as
    the eager parse shares it: an integer amount becomes its float, strings are interned,
    dates and timestamps come from the memos."""
    data = world.tables["A_SalesOrder"].get(world.sales_orders[0]).to_api()
    data["TotalNetAmount"] = 7
    eager = R.SalesOrder.from_api_eager(data)
    lazy = R._LazyPlan(R.SalesOrder).parse(orjson.loads(orjson.dumps(data)))
    assert type(lazy.total_net_amount) is float and lazy.total_net_amount == 7.0
    assert lazy.total_net_amount is eager.total_net_amount
    assert lazy.sold_to_party is eager.sold_to_party
    assert lazy.sales_order_date is eager.sales_order_date
    assert lazy.last_change_date_time is eager.last_change_date_time

"""Impact analysis (what-if) on hand-built order views: scenarios, ranking, totals."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt

import pytest

from resolvers.enums import Severity
from resolvers.impact import (
    BatchBlocked,
    MaterialShort,
    ScenarioError,
    ShipmentDelayed,
    WorkCenterDown,
    analyse,
)
from resolvers.prediction import predict
from sources.records import Customer

from .test_domain_stage import (
    DAY,
    HOUR,
    NOW,
    make_component,
    make_event,
    make_lot,
    make_production_order,
    make_sales_order,
    make_shipment,
    make_view,
    make_work_center,
    shipped_delivery,
)

CUSTOMERS = {
    "C-S": Customer(customer="C-S", customer_name="Strategic", commercial_priority="STRATEGIC"),
    "C-N": Customer(customer="C-N", customer_name="Normal", commercial_priority="NORMAL"),
}


def order(so: str, *, customer: str = "C-N", confirmed: dt.date = dt.date(2024, 5, 20), value: float = 10_000, **view):
    sales_order = make_sales_order(confirmed=confirmed, total_net_amount=value)
    sales_order.sales_order, sales_order.sold_to_party = so, customer
    return make_view(sales_order=sales_order, **view)


def running(mo: str, wc: str = "WC-20", **kw):
    return make_production_order(mo, "STARTED", start=NOW - 4 * HOUR, hours=8, yield_qty=50, work_center=wc, **kw)


def test_work_center_down_matches_the_record_the_mes_would_send() -> None:
    up = make_work_center("WC-20")
    views = [
        order("1", orders=[running("m1")], work_centers=[up]),
        order("2", orders=[make_production_order("m2", "RELEASED", start=NOW + 7 * DAY, work_center="WC-20")], work_centers=[up]),
        order("3", orders=[running("m3", "WC-30")], work_centers=[make_work_center("WC-30")]),
    ]
    before = copy.deepcopy(views)
    result = analyse(WorkCenterDown("WC-20", 20), views, CUSTOMERS, NOW)
    assert views == before  # the sources' records are never touched
    by_so = {o.sales_order: o for o in result.orders}
    # The orders the downtime holds: next week's order on WC-20 is not held, not listed.
    assert set(by_so) == {"1"}
    # What the MES reports when the machine really breaks now for 20 hours:
    broken = make_work_center("WC-20", "DOWN", down_since=NOW, expected_up_at=NOW + 20 * HOUR)
    actual = predict(dataclasses.replace(views[0], work_centers={"WC-20": broken}), NOW)
    assert by_so["1"].new.predicted == actual.predicted_delivery_date
    assert by_so["1"].new.predicted > by_so["1"].current.predicted
    assert result.delayed_orders == 1
    # Down for more than a week: next week's order is held too.
    week = analyse(WorkCenterDown("WC-20", 24 * 9), views, CUSTOMERS, NOW)
    assert {o.sales_order for o in week.orders} == {"1", "2"}


def test_work_center_already_down_keeps_its_down_since() -> None:
    down = make_work_center("WC-20", "DOWN", down_since=NOW - 2 * HOUR, expected_up_at=NOW + HOUR)
    views = [order("1", orders=[running("m1")], work_centers=[down])]
    longer = analyse(WorkCenterDown("WC-20", 48), views, CUSTOMERS, NOW).orders[0]
    assert longer.new.predicted > longer.current.predicted


def test_hours_on_a_machine_already_down_are_additional_hours() -> None:
    # Down for 30 more hours already: a 1 h what-if means it comes back 1 h later, never sooner.
    down = make_work_center("WC-20", "DOWN", down_since=NOW - 2 * HOUR, expected_up_at=NOW + 30 * HOUR)
    unstarted = make_production_order("m2", "RELEASED", start=NOW + 20 * HOUR, work_center="WC-20")
    views = [
        order("1", orders=[running("m1")], work_centers=[down]),
        order("2", orders=[unstarted], work_centers=[down]),
    ]
    result = analyse(WorkCenterDown("WC-20", 1), views, CUSTOMERS, NOW)
    assert {o.sales_order for o in result.orders} == {"1", "2"}
    for o in result.orders:
        assert o.new.predicted >= o.current.predicted  # nothing gets earlier
    later = make_work_center("WC-20", "DOWN", down_since=NOW - 2 * HOUR, expected_up_at=NOW + 31 * HOUR)
    for view, o in zip(views, sorted(result.orders, key=lambda o: o.sales_order), strict=True):
        expected = predict(dataclasses.replace(view, work_centers={"WC-20": later}), NOW)
        assert o.new.predicted == expected.predicted_delivery_date
    # With its repair time unknown, the default downtime from now counts, plus the hours.
    unknown = make_work_center("WC-20", "DOWN", down_since=NOW - 2 * HOUR, expected_up_at=None)
    views = [order("1", orders=[running("m1")], work_centers=[unknown])]
    more = analyse(WorkCenterDown("WC-20", 1), views, CUSTOMERS, NOW).orders[0]
    assert more.new.predicted >= more.current.predicted


def test_batch_blocked_holds_unshipped_goods_only() -> None:
    done = make_production_order("m1", "CONFIRMED", start=NOW - 3 * DAY, yield_qty=100, batch="B1")
    accepted = make_lot("m1", "400", decision="A", decided_at=NOW - DAY)
    in_plant = order("1", orders=[done], lots=[accepted])
    gone = order(
        "2",
        orders=[dataclasses.replace(done, sales_order="2")],
        lots=[accepted],
        deliveries=[shipped_delivery()],
        shipments=[make_shipment("80000001", "InTransit", make_event("AF", "InTransit", NOW - HOUR), eta=NOW + DAY)],
    )
    other = order("3", orders=[dataclasses.replace(done, batch="B2")], lots=[accepted])
    result = analyse(BatchBlocked("B1"), [in_plant, gone, other], CUSTOMERS, NOW)
    by_so = {o.sales_order: o for o in result.orders}
    assert set(by_so) == {"1", "2"}
    # Held now: quality release after the standard lead time, then picking and transit.
    assert by_so["1"].new.predicted == (NOW + 24 * HOUR + 16 * HOUR + 2 * DAY).date()
    assert by_so["1"].delay_days > 0
    assert by_so["2"].delay_days == 0  # already with the carrier


def test_material_short_hits_the_latest_needed_reservations_first() -> None:
    def needing(so: str, start_in_days: int, *, status: str = "RELEASED"):
        po = make_production_order(f"m{so}", status, start=NOW + start_in_days * DAY, hours=8)
        return order(so, orders=[po], components=[make_component(f"m{so}", "RM-1", required=10, available=10)])

    views = [needing("1", 1), needing("2", 2), needing("3", 0, status="STARTED")]
    until = dt.date(2024, 5, 22)
    small = analyse(MaterialShort("RM-1", 6, until), views, CUSTOMERS, NOW)
    assert [o.sales_order for o in small.orders] == ["2"]  # the later start loses the stock
    assert small.orders[0].new.predicted > small.orders[0].current.predicted
    big = analyse(MaterialShort("RM-1", 15, until), views, CUSTOMERS, NOW)
    assert {o.sales_order for o in big.orders} == {"1", "2"}  # started production keeps its parts


def test_shipment_delayed_moves_the_eta() -> None:
    eta = dt.datetime(2024, 5, 16, 12, tzinfo=dt.UTC)
    ship = make_shipment("80000001", "InTransit", make_event("AF", "InTransit", NOW - HOUR), tracking="T1", eta=eta)
    views = [order("1", deliveries=[shipped_delivery()], shipments=[ship])]
    [o] = analyse(ShipmentDelayed("T1", 48), views, CUSTOMERS, NOW).orders
    assert o.current.predicted == eta.date() and o.new.predicted == (eta + 2 * DAY).date()
    assert analyse(ShipmentDelayed("OTHER", 48), views, CUSTOMERS, NOW).orders == []


def test_ranked_by_priority_then_days_late_with_totals() -> None:
    down = make_work_center("WC-20")
    views = [
        order("1", customer="C-N", confirmed=dt.date(2024, 5, 15), value=50_000, orders=[running("m1")], work_centers=[down]),
        order("2", customer="C-N", confirmed=dt.date(2024, 5, 16), value=1_000, orders=[running("m2")], work_centers=[down]),
        order("3", customer="C-S", confirmed=dt.date(2024, 5, 31), value=2_000, orders=[running("m3")], work_centers=[down]),
    ]
    result = analyse(WorkCenterDown("WC-20", 30), views, CUSTOMERS, NOW)
    assert [o.sales_order for o in result.orders] == ["3", "1", "2"]
    first, second, third = result.orders
    assert first.new.commercial_priority == "STRATEGIC"
    assert second.new.days_late > third.new.days_late
    assert second.new.severity is Severity.HIGH and second.new.value_at_risk == 50_000
    assert result.late_orders == 2 and result.value_at_risk == 51_000 + first.new.value_at_risk
    assert result.max_days_late == second.new.days_late
    assert sum(result.by_severity().values()) == 3


@pytest.mark.parametrize(
    "scenario",
    [
        WorkCenterDown("WC-20", 0),
        WorkCenterDown("", 4),
        WorkCenterDown("WC-20", 24 * 400),
        BatchBlocked(""),
        MaterialShort("RM-1", 0, dt.date(2024, 5, 20)),
        ShipmentDelayed("T1", -2),
    ],
)
def test_bad_scenarios_are_refused(scenario) -> None:
    with pytest.raises(ScenarioError):
        analyse(scenario, [], CUSTOMERS, NOW)

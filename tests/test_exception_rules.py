"""Exception rules, severity and aggregation on hand-built source records."""

from __future__ import annotations

import datetime as dt

import pytest

from resolvers.enums import ExceptionKind, Severity
from resolvers.exception_rules import (
    RULES,
    Detection,
    ExceptionParams,
    ExceptionRecord,
    RootCause,
    RuleInput,
    aggregate,
    detect,
    exception_id,
    order_facts,
    severity,
)
from sources.records import Customer

from .test_domain_stage import (
    DAY,
    HOUR,
    NOW,
    make_component,
    make_delivery,
    make_event,
    make_lot,
    make_production_order,
    make_sales_order,
    make_shipment,
    make_view,
    make_work_center,
    produced,
    shipped_delivery,
)

PROMISE = dt.date(2024, 5, 24)  # Friday of the week after NOW (Wednesday 15 May, 08:00)
K = ExceptionKind


def customer(priority: str = "NORMAL") -> Customer:
    return Customer(customer="C-100", customer_name="Test", commercial_priority=priority)


def kinds(view, *, stale: frozenset[str] = frozenset(), cust: Customer | None = None) -> dict[str, Detection]:
    return {d.id: d for d in detect(view, cust or customer(), NOW, stale_sources=stale)}


def rule(kind: ExceptionKind, view, *, stale: frozenset[str] = frozenset()):
    facts = order_facts(view, customer(), NOW)
    return RULES[kind](RuleInput(view, facts, NOW, stale_sources=stale))


def down_wc(wc: str = "WC-20", hours: float = 8) -> object:
    return make_work_center(wc, "DOWN", down_since=NOW - HOUR, expected_up_at=NOW + hours * HOUR)


# --- severity ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("late", "slack", "priority", "value", "soon", "expected"),
    [
        (True, -1, "NORMAL", 10_000, False, Severity.HIGH),
        (True, -3, "LOW", 99_999, False, Severity.HIGH),
        (True, -1, "STRATEGIC", 1_000, False, Severity.CRITICAL),  # strategic customer
        (True, -1, "NORMAL", 100_000, False, Severity.CRITICAL),  # large value at risk
        (False, 0, "STRATEGIC", 500_000, False, Severity.MEDIUM),  # on time, no slack
        (False, 2, "NORMAL", 0, False, Severity.MEDIUM),
        (False, 3, "NORMAL", 0, False, Severity.LOW),
        (False, 3, "NORMAL", 0, True, Severity.MEDIUM),  # ships within 48 h: one up
        (False, 1, "NORMAL", 0, True, Severity.HIGH),
        (True, -1, "NORMAL", 10, True, Severity.CRITICAL),
        (True, -1, "STRATEGIC", 10, True, Severity.CRITICAL),  # capped
    ],
)
def test_severity(late, slack, priority, value, soon, expected) -> None:
    got = severity(late=late, slack=slack, commercial_priority=priority, value=value, ships_soon=soon)
    assert got is expected


def test_severity_thresholds_are_parameters() -> None:
    params = ExceptionParams(large_value_at_risk=5_000, medium_slack_working_days=0)
    assert severity(late=True, slack=-1, commercial_priority="LOW", value=5_000, ships_soon=False, params=params) is Severity.CRITICAL
    assert severity(late=False, slack=1, commercial_priority="LOW", value=0, ships_soon=False, params=params) is Severity.LOW


# --- facts per order -----------------------------------------------------------------------


def test_facts_of_a_late_order() -> None:
    so = make_sales_order(confirmed=dt.date(2024, 5, 16), total_net_amount=42_000)
    view = make_view(sales_order=so, orders=[make_production_order("1", "STARTED", start=NOW - HOUR, hours=80)])
    f = order_facts(view, customer(), NOW)
    assert f.late and f.predicted > f.promised
    assert f.days_late >= 1 and f.slack < 0
    assert f.value_at_risk == 42_000  # the whole order is in jeopardy
    # Late is HIGH; its ship-by day (14 May) is already past, which does not count as "soon".
    assert f.ships_soon is False and f.severity is Severity.HIGH


def test_facts_of_an_order_with_comfortable_slack() -> None:
    so = make_sales_order(total_net_amount=42_000)  # promise Friday 24 May
    view = make_view(sales_order=so, orders=[make_production_order("1", "RELEASED", start=NOW + HOUR, hours=4)])
    f = order_facts(view, customer(), NOW)
    assert not f.late and f.slack > 2
    assert f.value_at_risk == 0  # not in jeopardy
    assert f.severity is Severity.LOW
    assert f.ship_by == PROMISE - 2 * DAY and not f.ships_soon


def test_facts_ship_by_comes_from_the_delivery_and_ships_soon_raises() -> None:
    so = make_sales_order(total_net_amount=1_000)
    view = make_view(sales_order=so, deliveries=[make_delivery(delivery_date=dt.date(2024, 5, 16))])
    f = order_facts(view, customer(), NOW)
    assert f.ship_by == dt.date(2024, 5, 16) and f.ships_soon
    assert f.severity is Severity.MEDIUM  # LOW, one up for shipping within 48 h


def test_delivered_orders_have_no_exceptions() -> None:
    so = make_sales_order(total_credit_check_status="B")
    ship = make_shipment("80000001", "Delivered", make_event("D1", "Delivered", NOW - HOUR), delivered_at=NOW - HOUR)
    view = make_view(sales_order=so, deliveries=[shipped_delivery()], shipments=[ship])
    assert detect(view, customer(), NOW) == []


# --- one rule per kind -----------------------------------------------------------------------


def test_machine_down_on_unfinished_production() -> None:
    view = make_view(orders=[make_production_order("1", "STARTED", work_center="WC-20")], work_centers=[down_wc()])
    [f] = rule(K.MACHINE_DOWN, view)
    assert f.root == RootCause("mes", "WorkCenter", "WC-20", "")
    assert "WC-20" in f.internal_text and "1" in f.internal_text
    assert "WC-20" not in f.customer_text


@pytest.mark.parametrize(
    ("status", "wc"),
    [
        ("STARTED", make_work_center("WC-20")),  # up
        ("CONFIRMED", down_wc()),  # production finished
        ("STARTED", make_work_center("WC-20", "DOWN", down_since=NOW + HOUR)),  # announced, not yet
    ],
)
def test_machine_down_not_raised(status, wc) -> None:
    view = make_view(orders=[make_production_order("1", status, work_center="WC-20", yield_qty=100)], work_centers=[wc])
    assert rule(K.MACHINE_DOWN, view) == []


def test_production_delay_from_downtime() -> None:
    # Started 4 h ago, scheduled 8 h: on schedule while the machine runs...
    po = make_production_order("1", "STARTED", start=NOW - 4 * HOUR, hours=8, yield_qty=50, work_center="WC-20")
    assert rule(K.PRODUCTION_DELAY, make_view(orders=[po], work_centers=[make_work_center("WC-20")])) == []
    # ... 8 h behind once it is down for 8 h.
    [f] = rule(K.PRODUCTION_DELAY, make_view(orders=[po], work_centers=[down_wc(hours=8)]))
    assert f.root.key == "WC-20" and "8 h after" in f.internal_text


def test_production_delay_from_a_late_component() -> None:
    po = make_production_order("1", "RELEASED", start=NOW + HOUR, hours=8)
    late_part = make_component("1", required=10, available=0, shortage=10, receipt=dt.date(2024, 5, 20))
    [f] = rule(K.PRODUCTION_DELAY, make_view(orders=[po], components=[late_part]))
    assert f.kind is K.PRODUCTION_DELAY and f.root.key == "WC-10"


def test_production_delay_tolerates_small_slips() -> None:
    po = make_production_order("1", "STARTED", start=NOW - 4 * HOUR, hours=8, yield_qty=50, work_center="WC-20")
    assert rule(K.PRODUCTION_DELAY, make_view(orders=[po], work_centers=[down_wc(hours=3)])) == []


def test_yield_shortfall() -> None:
    short = make_production_order("1", "CONFIRMED", start=NOW - 2 * DAY, yield_qty=80)
    [f] = rule(K.YIELD_SHORTFALL, make_view(orders=[short]))
    assert f.root == RootCause("mes", "ProductionOrder", "1", "FG-200")
    assert "20" in f.internal_text
    full = make_production_order("1", "CONFIRMED", start=NOW - 2 * DAY, yield_qty=100)
    assert rule(K.YIELD_SHORTFALL, make_view(orders=[full])) == []
    # Once the goods left the plant, the shortfall no longer delays the order.
    shipped = make_view(orders=[short], deliveries=[shipped_delivery()])
    assert rule(K.YIELD_SHORTFALL, shipped) == []


def test_material_shortage_and_stock_blocked() -> None:
    po = make_production_order("1", "RELEASED")
    missing = make_component("1", "RM-1", required=10, available=4, shortage=6, receipt=dt.date(2024, 5, 17))
    blocked = make_component("1", "RM-2", required=10, available=10, stock_type="07")
    view = make_view(orders=[po], components=[missing, blocked])
    [short] = rule(K.MATERIAL_SHORTAGE, view)
    assert short.root == RootCause("wms", "Material", "RM-1") and "6" in short.internal_text
    [block] = rule(K.STOCK_BLOCKED, view)
    assert block.root == RootCause("wms", "Material", "RM-2") and "blocked" in block.internal_text
    # Started production has consumed its components.
    started = make_view(orders=[make_production_order("1", "STARTED")], components=[missing, blocked])
    assert rule(K.MATERIAL_SHORTAGE, started) == rule(K.STOCK_BLOCKED, started) == []


def test_quality_hold_and_release() -> None:
    done = make_production_order("1", "CONFIRMED", start=NOW - 2 * DAY, yield_qty=100)
    [f] = rule(K.QUALITY_HOLD, make_view(orders=[done], lots=[make_lot("1", "400")]))
    assert f.root == RootCause("qms", "InspectionLot", "400", "batch B-1")
    released = make_view(orders=[done], lots=[make_lot("1", "400", decision="A", decided_at=NOW)])
    assert rule(K.QUALITY_HOLD, released) == []


def test_quality_rejected_until_rework_exists() -> None:
    rejected = make_lot("1", "400", decision="R", decided_at=NOW - HOUR)
    old = make_production_order("1", "TECO", start=NOW - 2 * DAY, yield_qty=100)
    [f] = rule(K.QUALITY_REJECTED, make_view(orders=[old], lots=[rejected]))
    assert f.root.key == "400"
    rework = make_production_order("2", "RELEASED")
    assert rule(K.QUALITY_REJECTED, make_view(orders=[old, rework], lots=[rejected])) == []


def test_credit_and_delivery_blocks() -> None:
    credit = make_view(sales_order=make_sales_order(total_credit_check_status="B"))
    [f] = rule(K.CREDIT_BLOCK, credit)
    assert f.root == RootCause("erp", "SalesOrder", "10000001")
    assert rule(K.DELIVERY_BLOCK, credit) == []
    blocked = make_view(sales_order=make_sales_order(delivery_block_reason="01"))
    [g] = rule(K.DELIVERY_BLOCK, blocked)
    assert "01" in g.internal_text and "01" not in g.customer_text
    assert rule(K.CREDIT_BLOCK, blocked) == []


def test_dispatch_missed() -> None:
    overdue = make_delivery(picking="C", delivery_date=dt.date(2024, 5, 14))  # ship-by yesterday
    [f] = rule(K.DISPATCH_MISSED, make_view(deliveries=[overdue]))
    assert f.root == RootCause("wms", "OutboundDelivery", "80000001")
    # No delivery yet: the promise minus transit was yesterday -> the sales order is the root.
    so = make_sales_order(confirmed=dt.date(2024, 5, 16))
    [g] = rule(K.DISPATCH_MISSED, make_view(sales_order=so))
    assert g.root.entity == "SalesOrder"
    assert rule(K.DISPATCH_MISSED, make_view(deliveries=[make_delivery(delivery_date=dt.date(2024, 5, 15))])) == []
    gone = shipped_delivery(delivery_date=dt.date(2024, 5, 14))
    assert rule(K.DISPATCH_MISSED, make_view(deliveries=[gone])) == []


def _in_transit(tag: str, code: str, *, eta: dt.datetime = NOW + DAY):
    ship = make_shipment(
        "80000001", tag, make_event("AF", "InTransit", NOW - 5 * HOUR), make_event(code, tag, NOW - HOUR), eta=eta
    )
    ship.status_code = code
    return make_view(deliveries=[shipped_delivery()], shipments=[ship])


def test_carrier_delay() -> None:
    [f] = rule(K.CARRIER_DELAY, _in_transit("InTransit", "SD"))
    assert f.root == RootCause("tms", "Shipment", "1Z999", "UPS")
    assert len(rule(K.CARRIER_DELAY, _in_transit("Exception", "SD"))) == 1
    assert rule(K.CARRIER_DELAY, _in_transit("InTransit", "X6")) == []
    assert rule(K.CARRIER_DELAY, _in_transit("AttemptFail", "SD")) == []  # its own kind


def test_delivery_attempt_failed() -> None:
    [f] = rule(K.DELIVERY_ATTEMPT_FAILED, _in_transit("AttemptFail", "SD"))
    assert f.root.key == "1Z999"
    assert rule(K.DELIVERY_ATTEMPT_FAILED, _in_transit("OutForDelivery", "X1")) == []


def test_eta_beyond_promise() -> None:
    after = dt.datetime(2024, 5, 25, 10, tzinfo=dt.UTC)
    [f] = rule(K.ETA_BEYOND_PROMISE, _in_transit("InTransit", "X6", eta=after))
    assert "2024-05-24" in f.internal_text
    on_time = dt.datetime(2024, 5, 24, 18, tzinfo=dt.UTC)
    assert rule(K.ETA_BEYOND_PROMISE, _in_transit("InTransit", "X6", eta=on_time)) == []


def test_data_stale_only_for_sources_the_order_depends_on() -> None:
    making = make_view(orders=[make_production_order("1", "RELEASED")])
    found = rule(K.DATA_STALE, making, stale=frozenset({"mes", "tms"}))
    assert [f.root for f in found] == [RootCause("mes", "SourceSystem", "mes", "MES")]
    assert rule(K.DATA_STALE, making) == []  # nothing stale
    in_transit = _in_transit("InTransit", "X6")
    assert [f.root.key for f in rule(K.DATA_STALE, in_transit, stale=frozenset({"mes", "tms"}))] == ["tms"]


def test_every_kind_has_a_rule() -> None:
    # AWAITING_RELEASE is how customers see a credit or delivery block, not a rule of its own.
    assert set(RULES) | {ExceptionKind.AWAITING_RELEASE} == set(ExceptionKind)
    assert ExceptionKind.AWAITING_RELEASE not in RULES


# --- detection and aggregation -----------------------------------------------------------------


def test_detect_names_every_exception_once_with_order_facts() -> None:
    so = make_sales_order(confirmed=dt.date(2024, 5, 17), total_net_amount=9_000)
    pos = [
        make_production_order("1", "STARTED", start=NOW - HOUR, hours=30, work_center="WC-20", item="10"),
        make_production_order("2", "STARTED", start=NOW - HOUR, hours=30, work_center="WC-20", item="20"),
    ]
    found = kinds(make_view(sales_order=so, orders=pos, work_centers=[down_wc()]), cust=customer("STRATEGIC"))
    assert set(found) == {"MACHINE_DOWN:mes:WC-20", "PRODUCTION_DELAY:mes:WC-20"}
    d = found["MACHINE_DOWN:mes:WC-20"]
    assert d.severity is Severity.CRITICAL and d.value_at_risk == 9_000 and d.days_late >= 1
    assert d.work_centers == ("WC-20",)
    assert "We now expect to deliver on" in d.customer_text


def test_aggregate_takes_max_severity_and_sums_value() -> None:
    def det(so: str, sev: Severity, value: float, days: int) -> Detection:
        return Detection(
            K.QUALITY_HOLD, RootCause("qms", "InspectionLot", "400", "batch B1"), so, "C", "NORMAL", sev, days,
            value, value * 2, "EUR", PROMISE, PROMISE, (), "internal", "customer",
        )

    records = aggregate([det("1", Severity.LOW, 0, 0), det("2", Severity.HIGH, 500.5, 3)], NOW)
    [record] = records.values()
    assert record.id == exception_id(K.QUALITY_HOLD, RootCause("qms", "InspectionLot", "400")) == "QUALITY_HOLD:qms:400"
    assert record.severity is Severity.HIGH and record.value_at_risk == 500.5 and record.days_late == 3
    assert record.net_value == 1001.0
    assert [d.sales_order for d in record.orders()] == ["2", "1"]
    assert "batch B1" in record.internal_text and "2 open orders" in record.internal_text
    again = ExceptionRecord.from_payload(record.to_payload())
    assert again == record


def test_quality_hold_on_a_produced_order_is_one_exception() -> None:
    view = produced(lots=[make_lot("1000001", "400")])
    assert list(kinds(view)) == ["QUALITY_HOLD:qms:400"]


# --- what a subscriber gets (exceptionsChanged), per viewer ----------------------------------


def _record(*orders: tuple[str, str, Severity]) -> ExceptionRecord:
    root = RootCause("mes", "WorkCenter", "WC-20", "CNC milling")
    return aggregate(
        [
            Detection(K.MACHINE_DOWN, root, so, cust, "NORMAL", sev, 0, 0.0, 100.0, "EUR", PROMISE, PROMISE, ("WC-20",), "i", "c")
            for so, cust, sev in orders
        ],
        NOW,
    )["MACHINE_DOWN:mes:WC-20"]


def test_transition_message_filters_and_scopes_to_a_customer() -> None:
    from resolvers.exception_types import transition_message
    from resolvers.policy import Role, Viewer

    old = _record(("1", "A", Severity.HIGH), ("2", "B", Severity.LOW))
    new = _record(("2", "B", Severity.LOW))
    payload = {
        **new.to_payload(),
        "action": "UPDATED",
        "previousSeverity": "HIGH",
        "removed": [{"salesOrder": "1", "customer": "A", "detection": old.affected["1"].to_payload()}],
    }
    # Internal: the whole exception; a severity filter still shows it dropping below.
    t = transition_message(payload, 7, NOW, min_severity=Severity.HIGH, customer=None)
    assert t is not None and t.exception.record.severity is Severity.LOW and t.removed_order_ids == ["1"]
    assert transition_message(payload, 7, NOW, min_severity=Severity.CRITICAL, customer=None) is None
    assert transition_message(payload, 7, NOW, min_severity=None, customer="C") is None
    # Customer B sees only its order; customer A sees the exception cleared for it.
    b = transition_message(payload, 7, NOW, min_severity=None, customer="B", viewer=Viewer(Role.CUSTOMER, customer="B"))
    assert b is not None and set(b.exception.record.affected) == {"2"} and b.removed_order_ids == []
    a = transition_message(payload, 7, NOW, min_severity=None, customer="A", viewer=Viewer(Role.CUSTOMER, customer="A"))
    assert a is not None and a.action.value == "CLEARED" and set(a.exception.record.affected) == {"1"}
    assert a.previous_severity is None  # the aggregate's severity speaks of other customers' orders

"""The prediction, risk, milestones and exceptions on working calendars, carrier revisions,
overdue shipments and blocks: pure rules on hand-built records."""

from __future__ import annotations

import dataclasses
import datetime as dt

from resolvers.enums import DeliveryRisk, ExceptionKind, MilestoneKind, MilestoneStatus, Severity
from resolvers.exception_rules import (
    AWAITING_RELEASE_TEXT,
    RULES,
    RuleInput,
    customer_kind,
    detect,
    kinds_matching,
    order_facts,
)
from resolvers.prediction import PredictionParams, delivery_risk, predict
from resolvers.stage import milestones
from sources.calendars import FactoryCalendar
from sources.records import Customer, Shipment

from .test_calendars import STUTTGART
from .test_domain_stage import (
    make_event,
    make_lot,
    make_production_order,
    make_sales_order,
    make_shipment,
    make_view,
    shipped_delivery,
)

UTC = dt.UTC
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
# Wednesday 1 April 2026, 10:00 in Stuttgart. Good Friday (3 Apr) and Easter Monday (6 Apr)
# are public holidays across Germany.
NOW = dt.datetime(2026, 4, 1, 8, 0, tzinfo=UTC)
RECEIVING = FactoryCalendar.build(time_zone="Europe/Berlin", working_days=(0, 1, 2, 3, 4), shifts=((8 * 60, 17 * 60),))
PARAMS = PredictionParams(plant=STUTTGART, delivery=RECEIVING)
MUNICH = Customer(customer="C-100", customer_name="Munich", country="DE", region="BY", time_zone="Europe/Berlin")
CHICAGO = Customer(customer="C-100", customer_name="Chicago", country="US", region="IL", time_zone="America/Chicago")
K = ExceptionKind


def berlin(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=STUTTGART.zone).astimezone(UTC)


def view(customer: Customer = MUNICH, **kw):
    v = make_view(**kw)
    return dataclasses.replace(v, customer=customer)


def in_transit(*events, eta: dt.datetime, window: dt.timedelta = 2 * HOUR, tag: str = "InTransit", **kw):
    ship: Shipment = make_shipment("80000001", tag, make_event("AF", "InTransit", NOW - DAY), *events, eta=eta)
    ship.eta_window_start, ship.eta_window_end = eta - window, eta + window
    return view(deliveries=[shipped_delivery(at=NOW - DAY)], shipments=[ship], **kw)


def produced_and_released(**kw):
    done = make_production_order(status="CONFIRMED", start=NOW - 3 * DAY, yield_qty=100)
    return view(orders=[done], lots=[make_lot(decision="A", decided_at=NOW - DAY)], **kw)


# --- working time and working days -------------------------------------------------------


def test_lead_times_count_working_time_and_delivery_lands_on_a_working_day() -> None:
    # Scheduled on the plant's calendar: Thu 14:00-22:00, then (Good Friday, weekend, Easter
    # Monday) Tue 06:00-14:00.
    order = make_production_order(start=berlin("2026-04-02T14:00"), hours=0)
    order.scheduled_end_date = berlin("2026-04-07T14:00")
    pred = predict(view(orders=[order]), NOW, PARAMS)
    assert pred.production_start == berlin("2026-04-02T14:00")
    assert pred.production_end == berlin("2026-04-07T14:00")  # 16 working hours, not 5 days
    assert pred.quality_release == berlin("2026-04-08T22:00")  # + 24 working hours
    assert pred.goods_issue == berlin("2026-04-09T22:00")  # + 16 working hours
    # Two working days of the ship-to: Fri 10, Mon 13; within its receiving hours.
    assert pred.predicted_delivery_date == dt.date(2026, 4, 13)
    assert pred.delivery == berlin("2026-04-13T17:00")


def test_a_running_order_does_not_work_over_the_holiday_weekend() -> None:
    # Started Thursday morning, 16 h of work, half confirmed: 8 working hours left at Thu 14:00.
    order = make_production_order(
        status="STARTED", start=berlin("2026-04-02T06:00"), hours=0, yield_qty=50
    )
    order.scheduled_end_date = berlin("2026-04-02T22:00")
    thursday = berlin("2026-04-02T18:00")
    pred = predict(view(orders=[order]), thursday, PARAMS)
    assert pred.production_end == berlin("2026-04-07T10:00")  # 4 h on Thursday, 4 h on Tuesday


def test_dates_are_the_ship_tos_local_dates() -> None:
    # 03:00 UTC on 8 April is still the evening of 7 April in Chicago.
    eta = dt.datetime(2026, 4, 8, 3, 0, tzinfo=UTC)
    v = in_transit(eta=eta, customer=CHICAGO, sales_order=make_sales_order(confirmed=dt.date(2026, 4, 7)))
    now = dt.datetime(2026, 4, 8, 2, 0, tzinfo=UTC)  # 21:00 on the promised day in Chicago
    pred = predict(v, now, PARAMS)
    assert pred.predicted_delivery_date == dt.date(2026, 4, 7)
    assert delivery_risk(v, pred, now, PARAMS) is DeliveryRisk.AT_RISK  # not LATE: the day is not over
    facts = order_facts(v, CHICAGO, now, prediction_params=PARAMS)
    assert not facts.late and facts.days_late == 0
    after = dt.datetime(2026, 4, 8, 6, 0, tzinfo=UTC)  # 01:00 on 8 April in Chicago
    assert delivery_risk(v, predict(v, after, PARAMS), after, PARAMS) is DeliveryRisk.LATE


def test_slack_and_days_late_count_the_ship_tos_working_days() -> None:
    def risk(eta: dt.datetime, promised: dt.date) -> DeliveryRisk:
        v = in_transit(eta=eta, sales_order=make_sales_order(confirmed=promised))
        return delivery_risk(v, predict(v, NOW, PARAMS), NOW, PARAMS)

    friday = berlin("2026-04-10T12:00")
    assert risk(friday, dt.date(2026, 4, 13)) is DeliveryRisk.AT_RISK  # Fri → Mon: one working day
    assert risk(friday, dt.date(2026, 4, 14)) is DeliveryRisk.ON_TRACK  # two
    thursday = berlin("2026-04-02T12:00")
    assert risk(thursday, dt.date(2026, 4, 7)) is DeliveryRisk.AT_RISK  # over Easter: one working day

    late = in_transit(eta=berlin("2026-04-14T12:00"), sales_order=make_sales_order(confirmed=dt.date(2026, 4, 2)))
    facts = order_facts(late, MUNICH, NOW, prediction_params=PARAMS)
    assert facts.late and facts.days_late == 6  # Tue 7 to Fri 10, Mon 13, Tue 14: Easter does not count


def test_ship_by_without_a_delivery_counts_back_working_days() -> None:
    # Promise Wed 8 April: two working days of transit back (Tue 7, then Thu 2 over Easter).
    v = view(sales_order=make_sales_order(confirmed=dt.date(2026, 4, 8)))
    assert order_facts(v, MUNICH, NOW, prediction_params=PARAMS).ship_by == dt.date(2026, 4, 2)


# --- carrier revisions and overdue trucks ----------------------------------------------------


def test_a_revised_eta_after_a_failed_attempt_is_the_prediction() -> None:
    revised = berlin("2026-04-02T11:30")
    v = in_transit(make_event("SD", "AttemptFail", NOW - 2 * HOUR), eta=revised, tag="AttemptFail")
    pred = predict(v, NOW, PARAMS)
    assert pred.delivery == revised
    assert pred.predicted_delivery_date == dt.date(2026, 4, 2)
    assert "delivery_attempt_failed:1Z999" in pred.drivers


def test_a_revised_eta_after_a_carrier_exception_is_the_prediction() -> None:
    revised = berlin("2026-04-07T09:00")
    v = in_transit(make_event("SD", "Exception", NOW - HOUR), eta=revised, tag="Exception")
    assert predict(v, NOW, PARAMS).delivery == revised


def test_without_a_new_eta_a_failed_attempt_waits_a_working_day() -> None:
    # The ETA is the one the attempt failed on: the carrier gave no new one.
    v = in_transit(make_event("SD", "AttemptFail", NOW - HOUR), eta=NOW - 2 * HOUR, tag="AttemptFail")
    pred = predict(v, NOW, PARAMS)
    assert pred.predicted_delivery_date == dt.date(2026, 4, 2)
    assert pred.delivery == berlin("2026-04-02T08:00")  # within the receiving hours
    # On a Thursday before Easter the next working day is Tuesday.
    thursday = berlin("2026-04-02T12:00")
    v = in_transit(make_event("SD", "AttemptFail", thursday - HOUR), eta=thursday - 2 * HOUR, tag="AttemptFail")
    assert predict(v, thursday, PARAMS).predicted_delivery_date == dt.date(2026, 4, 7)


def _overdue(v) -> list:
    facts = order_facts(v, MUNICH, NOW, prediction_params=PARAMS)
    return RULES[K.SHIPMENT_OVERDUE](RuleInput(v, facts, NOW, prediction_params=PARAMS))


def test_an_overdue_truck_is_flagged_and_never_predicted_in_the_past() -> None:
    v = in_transit(eta=NOW - 5 * HOUR, window=4 * HOUR)  # window ended an hour ago
    [f] = _overdue(v)
    assert f.root.key == "1Z999" and "1Z999" not in f.customer_text
    pred = predict(v, NOW, PARAMS)
    assert pred.delivery == NOW  # 10:00 in Munich: it can still come today
    assert pred.predicted_delivery_date == dt.date(2026, 4, 1)
    assert "shipment_overdue:1Z999" in pred.drivers
    # After the receiving hours the earliest is the next working day.
    evening = berlin("2026-04-01T19:00")
    assert predict(v, evening, PARAMS).predicted_delivery_date == dt.date(2026, 4, 2)
    assert predict(v, berlin("2026-04-02T19:00"), PARAMS).predicted_delivery_date == dt.date(2026, 4, 7)


def test_a_truck_within_its_eta_window_is_not_overdue() -> None:
    v = in_transit(eta=NOW - HOUR, window=4 * HOUR)
    assert _overdue(v) == []
    pred = predict(v, NOW, PARAMS)
    assert pred.delivery >= NOW and "shipment_overdue:1Z999" not in pred.drivers
    assert _overdue(in_transit(eta=NOW + HOUR)) == []


# --- blocks ----------------------------------------------------------------------------------


def test_a_credit_block_holds_the_prediction_risk_and_milestones() -> None:
    so = make_sales_order(confirmed=dt.date(2026, 4, 24), total_credit_check_status="B")
    v = produced_and_released(sales_order=so)
    pred = predict(v, NOW, PARAMS)
    assert pred.held_by == ("credit_block",)
    assert delivery_risk(v, pred, NOW, PARAMS) is DeliveryRisk.AT_RISK  # weeks of slack, yet held
    free = dataclasses.replace(v, sales_order=make_sales_order(confirmed=dt.date(2026, 4, 24)))
    assert delivery_risk(free, predict(free, NOW, PARAMS), NOW, PARAMS) is DeliveryRisk.ON_TRACK
    by_kind = {m.kind: m for m in milestones(v, NOW, pred, PARAMS)}
    for kind in (MilestoneKind.PICKED, MilestoneKind.GOODS_ISSUED, MilestoneKind.DELIVERED):
        assert by_kind[kind].status is MilestoneStatus.ON_HOLD and by_kind[kind].expected is None
    assert by_kind[MilestoneKind.QUALITY_RELEASED].status is MilestoneStatus.DONE


def test_a_delivery_block_holds_too_and_reads_the_same_to_customers() -> None:
    credit = produced_and_released(sales_order=make_sales_order(confirmed=dt.date(2026, 4, 24), total_credit_check_status="B"))
    delivery = produced_and_released(sales_order=make_sales_order(confirmed=dt.date(2026, 4, 24), delivery_block_reason="01"))
    assert predict(delivery, NOW, PARAMS).held_by == ("delivery_block",)
    [c] = [d for d in detect(credit, MUNICH, NOW, prediction_params=PARAMS) if d.kind is K.CREDIT_BLOCK]
    [d] = [d for d in detect(delivery, MUNICH, NOW, prediction_params=PARAMS) if d.kind is K.DELIVERY_BLOCK]
    assert c.customer_text == d.customer_text == AWAITING_RELEASE_TEXT
    assert "credit" not in c.customer_text.lower()
    assert customer_kind(K.CREDIT_BLOCK) is customer_kind(K.DELIVERY_BLOCK) is K.AWAITING_RELEASE
    assert customer_kind(K.MACHINE_DOWN) is K.MACHINE_DOWN
    assert kinds_matching(K.AWAITING_RELEASE) == {K.CREDIT_BLOCK, K.DELIVERY_BLOCK}
    # Held orders are in jeopardy: at least MEDIUM, their whole value at risk.
    assert c.severity.rank >= Severity.MEDIUM.rank and c.value_at_risk == c.net_value


def test_a_held_order_past_its_promise_gives_no_new_date() -> None:
    so = make_sales_order(confirmed=dt.date(2026, 3, 31), total_credit_check_status="B")
    [c] = [d for d in detect(produced_and_released(sales_order=so), MUNICH, NOW, prediction_params=PARAMS) if d.kind is K.CREDIT_BLOCK]
    assert c.days_late >= 1 and "We now expect" not in c.customer_text


def test_goods_that_left_the_plant_are_not_held() -> None:
    so = make_sales_order(confirmed=dt.date(2026, 4, 24), total_credit_check_status="B")
    v = in_transit(eta=berlin("2026-04-02T12:00"), sales_order=so)
    assert predict(v, NOW, PARAMS).held_by == ()

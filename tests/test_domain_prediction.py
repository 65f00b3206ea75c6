"""The delivery prediction model and delivery risk on hand-built source records."""

from __future__ import annotations

import datetime as dt

import pytest

from resolvers.enums import DeliveryRisk
from resolvers.prediction import (
    Prediction,
    PredictionParams,
    delivery_risk,
    predict,
    working_days_between,
)
from sources.calendars import FactoryCalendar

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

WED, THU, FRI = dt.date(2024, 5, 15), dt.date(2024, 5, 16), dt.date(2024, 5, 17)
SAT, SUN, MON = dt.date(2024, 5, 18), dt.date(2024, 5, 19), dt.date(2024, 5, 20)


def running_order(**kw):
    """Started 4 h ago, 8 h scheduled, half the yield confirmed: 4 h of work left."""
    kw.setdefault("work_center", "WC-20")
    return make_production_order(
        status="STARTED", start=NOW - 4 * HOUR, hours=8, yield_qty=50, **kw
    )


# --- working days -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "days"),
    [
        (WED, WED, 0),
        (WED, THU, 1),
        (FRI, MON, 1),  # the weekend does not count
        (THU, MON, 2),
        (FRI, SAT, 0),
        (SAT, SUN, 0),
        (SAT, MON, 1),
        (MON, MON + 7 * DAY, 5),
        (MON, FRI + 7 * DAY, 4),
        (MON, FRI + 14 * DAY, 9),
        (MON, FRI, -1),  # b before a: negative
        (MON, THU, -2),
        (MON + 7 * DAY, WED, -8),
    ],
)
def test_working_days_between(a: dt.date, b: dt.date, days: int) -> None:
    assert working_days_between(a, b) == days


# --- the model without disturbances -----------------------------------------------------


def test_stock_order_ships_after_picking_and_transit() -> None:
    pred = predict(make_view(deliveries=[make_delivery()]), NOW)
    assert pred.ready_to_ship_at == pred.goods_issue == NOW + 16 * HOUR
    assert pred.delivery == NOW + 64 * HOUR
    assert pred.predicted_delivery_date == dt.date(2024, 5, 18)
    assert (pred.production_end, pred.quality_release, pred.drivers) == (None, None, ())


def test_unstarted_order_runs_as_scheduled_then_quality_picking_transit() -> None:
    order = make_production_order(start=NOW + DAY, hours=8)
    pred = predict(make_view(orders=[order], components=[make_component()]), NOW)
    assert pred.production_start == NOW + DAY
    assert pred.production_end == NOW + DAY + 8 * HOUR
    assert pred.quality_release == NOW + DAY + 32 * HOUR  # + 24 h quality lead
    assert pred.goods_issue == NOW + DAY + 48 * HOUR  # + 16 h picking
    assert pred.predicted_delivery_date == MON  # + 2 calendar days: Sat 08:00 → Mon
    assert pred.drivers == ()


def test_running_order_ends_after_its_remaining_work() -> None:
    late = make_production_order(status="STARTED", start=NOW - 10 * HOUR, hours=8, yield_qty=25)
    pred = predict(make_view(orders=[late]), NOW)
    assert pred.production_end == NOW + 6 * HOUR  # 75 % of 8 h left; scheduled end passed


def test_params_change_the_lead_times() -> None:
    params = PredictionParams(quality_lead_hours=48, picking_hours=8, transit_days=1)
    pred = predict(make_view(orders=[running_order()]), NOW, params)
    assert pred.quality_release == NOW + 52 * HOUR
    assert pred.goods_issue == NOW + 60 * HOUR
    assert pred.delivery == NOW + 84 * HOUR


# --- disturbances -----------------------------------------------------------------------


def test_work_center_down_pushes_a_running_order_by_the_downtime() -> None:
    up = predict(make_view(orders=[running_order()], work_centers=[make_work_center("WC-20")]), NOW)
    down_wc = make_work_center(
        "WC-20", "DOWN", down_since=NOW - HOUR, expected_up_at=NOW + 10 * HOUR
    )
    down = predict(make_view(orders=[running_order()], work_centers=[down_wc]), NOW)
    assert up.production_end == NOW + 4 * HOUR
    assert down.production_end == NOW + 14 * HOUR
    assert down.delivery - up.delivery == 10 * HOUR
    assert down.drivers == ("work_center_down:WC-20",)


@pytest.mark.parametrize("expected_up_at", [None, NOW - HOUR], ids=["unknown", "already-passed"])
def test_unknown_downtime_uses_the_default(expected_up_at: dt.datetime | None) -> None:
    down_wc = make_work_center(
        "WC-20", "DOWN", down_since=NOW - 2 * HOUR, expected_up_at=expected_up_at
    )
    pred = predict(make_view(orders=[running_order()], work_centers=[down_wc]), NOW)
    assert pred.production_end == NOW + 12 * HOUR  # 4 h work + 8 h default downtime


def test_down_work_center_delays_an_unstarted_order_only_until_it_is_back() -> None:
    down_wc = make_work_center(
        "WC-20", "DOWN", down_since=NOW - HOUR, expected_up_at=NOW + 10 * HOUR
    )
    due_now = make_production_order(start=NOW, hours=8, work_center="WC-20")
    pred = predict(make_view(orders=[due_now], work_centers=[down_wc]), NOW)
    assert (pred.production_start, pred.production_end) == (NOW + 10 * HOUR, NOW + 18 * HOUR)
    assert pred.drivers == ("work_center_down:WC-20",)

    next_week = make_production_order(start=NOW + 5 * DAY, hours=8, work_center="WC-20")
    pred = predict(make_view(orders=[next_week], work_centers=[down_wc]), NOW)
    assert pred.production_end == NOW + 5 * DAY + 8 * HOUR
    assert pred.drivers == ()


def test_shortage_delays_start_to_the_receipt_day() -> None:
    order = make_production_order(start=NOW + HOUR, hours=8)
    short = make_component(available=3, shortage=7, receipt=MON)
    pred = predict(make_view(orders=[order], components=[short]), NOW)
    monday = dt.datetime(2024, 5, 20, tzinfo=dt.UTC)
    assert pred.materials_available == monday
    assert pred.production_start == monday
    assert pred.production_end == monday + 8 * HOUR
    assert pred.predicted_delivery_date == dt.date(2024, 5, 24)  # +24 h, +16 h, +2 days
    assert pred.drivers == ("material_shortage:RM-1040",)


def test_blocked_stock_is_a_driver_without_a_receipt_date() -> None:
    order = make_production_order(start=NOW + HOUR, hours=8)
    pred = predict(make_view(orders=[order], components=[make_component(stock_type="07")]), NOW)
    assert pred.production_end == NOW + 9 * HOUR  # nothing known to wait for
    assert pred.drivers == ("stock_blocked:RM-1040",)


def test_quality_hold_adds_the_lead_time_from_lot_creation() -> None:
    done = make_production_order(
        status="CONFIRMED", start=NOW - DAY, yield_qty=100, actual_end_date=NOW - 3 * HOUR
    )
    hold = predict(make_view(orders=[done], lots=[make_lot(created=NOW - 2 * HOUR)]), NOW)
    assert hold.quality_release == NOW + 22 * HOUR
    assert hold.goods_issue == NOW + 38 * HOUR
    assert hold.drivers == ("quality_hold:4000000012",)

    accepted = predict(
        make_view(orders=[done], lots=[make_lot(decision="A", decided_at=NOW - HOUR)]), NOW
    )
    assert accepted.quality_release == NOW - HOUR
    assert accepted.goods_issue == NOW + 16 * HOUR
    assert accepted.drivers == ()


def test_rejection_adds_rework_and_a_new_inspection() -> None:
    done = make_production_order(
        status="CONFIRMED", start=NOW - DAY, hours=8, yield_qty=100, actual_end_date=NOW - 3 * HOUR
    )
    pred = predict(
        make_view(orders=[done], lots=[make_lot(decision="R", decided_at=NOW - HOUR)]), NOW
    )
    assert pred.quality_release == NOW + 32 * HOUR  # now + 8 h rework + 24 h inspection
    assert pred.goods_issue == NOW + 48 * HOUR
    assert pred.drivers == ("quality_rejected:4000000012",)


def test_completed_without_lot_waits_the_quality_lead_from_production_end() -> None:
    just_done = make_production_order(
        status="CONFIRMED", start=NOW - DAY, yield_qty=100, actual_end_date=NOW - 4 * HOUR
    )
    assert predict(make_view(orders=[just_done]), NOW).quality_release == NOW + 20 * HOUR


def test_yield_shortfall_adds_the_missing_fraction_of_the_run() -> None:
    short = make_production_order(
        status="CONFIRMED", start=NOW - DAY, hours=10, yield_qty=90, actual_end_date=NOW - HOUR
    )
    pred = predict(make_view(orders=[short]), NOW)
    assert pred.production_end == NOW + HOUR  # 10 % of 10 h from now
    assert pred.drivers == ("yield_shortfall:1000001",)

    within_planned_scrap = make_production_order(
        status="CONFIRMED", start=NOW - DAY, hours=10, yield_qty=90, planned_scrap_qty=10,
        actual_end_date=NOW - HOUR,
    )  # fmt: skip
    pred = predict(make_view(orders=[within_planned_scrap]), NOW)
    assert pred.production_end == NOW - HOUR
    assert pred.drivers == ()


def test_several_orders_the_last_one_decides() -> None:
    view = make_view(
        orders=[
            make_production_order("1000001", start=NOW + DAY, hours=8),
            make_production_order("1000002", start=NOW + 2 * DAY, hours=4, item="20"),
        ]
    )
    pred = predict(view, NOW)
    assert pred.production_end == NOW + 2 * DAY + 4 * HOUR
    assert pred.quality_release == NOW + 3 * DAY + 4 * HOUR


# --- shipped and delivered --------------------------------------------------------------


def test_carrier_eta_wins_once_shipped() -> None:
    eta = dt.datetime(2024, 5, 21, 14, 0, tzinfo=dt.UTC)
    view = produced(
        deliveries=[shipped_delivery(at=NOW - 6 * HOUR)],
        shipments=[make_shipment("80000001", "InTransit", eta=eta)],
    )
    pred = predict(view, NOW)
    assert pred.predicted_delivery_date == dt.date(2024, 5, 21)  # the model alone says Fri 17
    assert pred.delivery == eta
    assert pred.ready_to_ship_at == NOW - 6 * HOUR
    assert pred.drivers == ("carrier_eta",)


def test_carrier_eta_is_ignored_before_goods_issue() -> None:
    view = produced(
        deliveries=[make_delivery(picking="C", packing="C")],
        shipments=[make_shipment(tag="InfoReceived", eta=NOW + 30 * HOUR)],
    )
    pred = predict(view, NOW)
    assert pred.goods_issue == NOW + 16 * HOUR
    assert pred.predicted_delivery_date == dt.date(2024, 5, 18)


@pytest.mark.parametrize(
    ("tag", "driver"),
    [("AttemptFail", "delivery_attempt_failed:1Z999"), ("Exception", "carrier_exception:1Z999")],
)
def test_failed_attempt_or_exception_adds_a_day_to_the_eta(tag: str, driver: str) -> None:
    view = produced(
        deliveries=[shipped_delivery()],
        shipments=[make_shipment("80000001", tag, eta=NOW + 2 * HOUR)],
    )
    pred = predict(view, NOW)
    assert pred.predicted_delivery_date == THU
    assert pred.drivers == ("carrier_eta", driver)


def test_stale_eta_in_the_past_predicts_today() -> None:
    view = produced(
        deliveries=[shipped_delivery()],
        shipments=[make_shipment("80000001", "InTransit", eta=NOW - DAY)],
    )
    assert predict(view, NOW).predicted_delivery_date == WED


def test_shipped_without_eta_adds_transit_to_goods_issue() -> None:
    view = produced(deliveries=[shipped_delivery(at=NOW - 6 * HOUR)])
    pred = predict(view, NOW)
    assert pred.delivery == NOW + 42 * HOUR
    assert pred.predicted_delivery_date == FRI


def test_delivered_predicts_the_actual_date_and_risk_delivered() -> None:
    late_order = make_sales_order(confirmed=dt.date(2024, 5, 10))  # delivered after its promise
    view = produced(
        sales_order=late_order,
        deliveries=[shipped_delivery(at=NOW - 3 * DAY)],
        shipments=[
            make_shipment(
                "80000001", "Delivered", make_event("D1", "Delivered", NOW - DAY), eta=NOW + 3 * DAY
            )
        ],
    )
    pred = predict(view, NOW)
    assert pred.predicted_delivery_date == dt.date(2024, 5, 14)
    assert pred.drivers == ("delivered",)
    assert delivery_risk(view, pred, NOW) is DeliveryRisk.DELIVERED


def test_partial_shipment_is_predicted_from_the_unshipped_item() -> None:
    view = make_view(
        orders=[
            make_production_order(
                "1000001", "CONFIRMED", start=NOW - 3 * DAY, item="10", yield_qty=100
            ),
            make_production_order(
                "1000002", "STARTED", start=NOW - 4 * HOUR, yield_qty=50, item="20"
            ),
        ],
        lots=[make_lot("1000001", decision="A", decided_at=NOW - DAY)],
        deliveries=[shipped_delivery(items=("10",))],
        shipments=[make_shipment(tag="Delivered", delivered_at=NOW - HOUR)],
    )
    pred = predict(view, NOW)
    assert pred.production_end == NOW + 4 * HOUR
    assert pred.delivery == NOW + 92 * HOUR  # + 24 h + 16 h + 2 days
    assert delivery_risk(view, pred, NOW) is not DeliveryRisk.DELIVERED


# --- delivery risk ----------------------------------------------------------------------


def _risk(
    predicted: dt.date, confirmed: dt.date | None, requested: dt.date = MON, **params
) -> DeliveryRisk:
    view = make_view(sales_order=make_sales_order(confirmed=confirmed, requested=requested))
    prediction = Prediction(predicted_delivery_date=predicted, ready_to_ship_at=None)
    mon_to_fri = FactoryCalendar(working_days=(0, 1, 2, 3, 4))  # slack counts the ship-to's working days
    return delivery_risk(view, prediction, NOW, PredictionParams(delivery=mon_to_fri, **params))


@pytest.mark.parametrize(
    ("predicted", "promised", "risk"),
    [
        (MON + DAY, MON, DeliveryRisk.LATE),
        (MON, MON, DeliveryRisk.AT_RISK),  # zero slack
        (FRI, MON, DeliveryRisk.AT_RISK),  # three calendar days, but one working day
        (THU, MON, DeliveryRisk.ON_TRACK),  # two working days
        (WED, MON, DeliveryRisk.ON_TRACK),
    ],
)
def test_risk_thresholds_count_working_days(
    predicted: dt.date, promised: dt.date, risk: DeliveryRisk
) -> None:
    assert _risk(predicted, promised) is risk


def test_risk_falls_back_to_the_requested_date() -> None:
    assert _risk(FRI, None, requested=THU) is DeliveryRisk.LATE
    assert _risk(FRI, None, requested=MON + 7 * DAY) is DeliveryRisk.ON_TRACK


def test_risk_slack_threshold_is_a_parameter() -> None:
    assert _risk(FRI, MON, at_risk_slack_working_days=0) is DeliveryRisk.ON_TRACK
    assert _risk(THU, MON, at_risk_slack_working_days=2) is DeliveryRisk.AT_RISK


def test_undelivered_order_past_its_promise_is_late() -> None:
    # Even with a stale prediction on the promise date, today is already past it.
    assert _risk(dt.date(2024, 5, 14), dt.date(2024, 5, 14)) is DeliveryRisk.LATE


def test_end_to_end_shortage_makes_an_order_late() -> None:
    order = make_production_order(start=NOW + HOUR, hours=8)
    promise = make_sales_order(confirmed=MON)
    supplied = make_view(sales_order=promise, orders=[order], components=[make_component()])
    pred = predict(supplied, NOW)
    assert pred.predicted_delivery_date == SUN  # Wed 17:00 + 24 h + 16 h + 2 days
    assert delivery_risk(supplied, pred, NOW) is DeliveryRisk.AT_RISK  # one working day of slack

    short = make_view(
        sales_order=promise,
        orders=[order],
        components=[make_component(available=0, shortage=10, receipt=MON)],
    )
    pred = predict(short, NOW)
    assert pred.predicted_delivery_date == dt.date(2024, 5, 24)
    assert delivery_risk(short, pred, NOW) is DeliveryRisk.LATE

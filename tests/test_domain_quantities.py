"""Quantities on hand-built records: short and split shipments, what is owed, and the
baseline milestones are planned on."""

from __future__ import annotations

import dataclasses
import datetime as dt

from resolvers.enums import (
    DeliveryRisk,
    ExceptionKind,
    LogisticsStatus,
    MilestoneKind,
    MilestoneStatus,
    OrderStage,
)
from resolvers.exception_rules import detect, next_due
from resolvers.prediction import PredictionParams, delivery_risk, predict
from resolvers.stage import logistics_status, milestones, stage
from resolvers.view import OrderView, owed_quantity
from sources.records import SalesOrderScheduleLine
from sources.simulator.world import PLANT_CALENDAR, RECEIVING_CALENDAR

from .test_domain_stage import (
    DAY,
    HOUR,
    NOW,
    make_event,
    make_item,
    make_lot,
    make_production_order,
    make_sales_order,
    make_shipment,
    make_view,
    shipped_delivery,
)

SHORT_BATCH = "B-1000001"


def line(qty: float, goods_issue: dt.date, n: str = "1", **kw) -> SalesOrderScheduleLine:
    return SalesOrderScheduleLine(
        schedule_line=n,
        requested_delivery_date=goods_issue + 2 * DAY,
        confirmed_delivery_date=goods_issue + 2 * DAY,
        order_quantity=qty,
        confirmed_quantity=qty,
        goods_issue_date=goods_issue,
        loading_date=goods_issue,
        **kw,
    )


def short_shipped(*, rest: list | None = None, tag: str = "InTransit", rejected: str = "", **kw) -> OrderView:
    """50 ordered, production confirmed 42 (8 scrapped), the 42 shipped."""
    item = make_item("10", 50, net=50_000.0, rejection_reason=rejected,
                     schedule_lines=[line(50, NOW.date() - 2 * DAY)])
    first = make_production_order(
        "1000001", "TECO", start=NOW - 5 * DAY, hours=8, total=50, yield_qty=42,
        confirmed_scrap_qty=8, batch=SHORT_BATCH, actual_end_date=NOW - 4 * DAY,
    )
    return make_view(
        sales_order=make_sales_order(items=[item], total_net_amount=50_000.0),
        orders=[first, *(rest or [])],
        lots=[make_lot("1000001", decision="A", decided_at=NOW - 3 * DAY)],
        deliveries=[shipped_delivery(items={"10": 42}, batch=SHORT_BATCH, at=NOW - 2 * DAY)],
        shipments=[make_shipment(tag=tag, eta=NOW + DAY, delivered_at=NOW - HOUR if tag == "Delivered" else None)],
        **kw,
    )


def kinds(view: OrderView, now: dt.datetime = NOW) -> dict[ExceptionKind, object]:
    return {d.kind: d for d in detect(view, None, now)}


# --- a short shipment ------------------------------------------------------------------


def test_item_quantities_follow_every_system() -> None:
    [q] = short_shipped().item_quantities
    assert (q.ordered, q.confirmed, q.produced, q.in_deliveries, q.shipped, q.delivered) == (50, 50, 42, 42, 42, 0)
    assert (q.open, q.uncovered, q.open_value, q.unit) == (8, 8, 8_000.0, "PC")
    [arrived] = short_shipped(tag="Delivered").item_quantities
    assert arrived.delivered == 42 and arrived.open == 8


def test_a_short_shipment_is_partially_delivered_and_never_complete() -> None:
    on_the_way = short_shipped()
    assert stage(on_the_way) is OrderStage.PARTIALLY_DELIVERED
    arrived = short_shipped(tag="Delivered")
    assert stage(arrived) is OrderStage.PARTIALLY_DELIVERED
    assert logistics_status(arrived) is LogisticsStatus.PARTIALLY_DELIVERED
    assert not arrived.is_delivered
    pred = predict(arrived, NOW)
    assert delivery_risk(arrived, pred, NOW) is not DeliveryRisk.DELIVERED
    assert pred.predicted_delivery_date > NOW.date()  # the rest is still to come
    delivered = {m.kind: m for m in milestones(arrived, NOW)}[MilestoneKind.DELIVERED]
    assert delivered.status is not MilestoneStatus.DONE


def test_a_short_shipment_carries_a_backorder_with_the_owed_quantity_and_value() -> None:
    found = kinds(short_shipped())
    backorder = found[ExceptionKind.BACKORDER]
    assert backorder.value_at_risk == 8_000.0
    assert "8 of 50 PC owed" in backorder.internal_text and "42 shipped" in backorder.internal_text
    assert "8 PC of FG-200 still to come" in backorder.customer_text
    assert "1000001" not in backorder.customer_text  # no internal records for customers
    # The rest is not planned yet: production has to make it again.
    assert ExceptionKind.YIELD_SHORTFALL in found
    assert ExceptionKind.DISPATCH_MISSED not in found


def test_the_rest_waits_for_production_until_a_new_order_is_planned() -> None:
    pred = predict(short_shipped(), NOW)
    assert "yield_shortfall:1000001" in pred.drivers and "backorder:10" in pred.drivers
    # Made again from now (8 of 50 of the 8 h run), inspected, picked and shipped after.
    assert pred.production_end == NOW + dt.timedelta(hours=8 * 8 / 50)
    assert pred.delivery is not None and pred.delivery >= NOW + 2 * DAY


def test_the_rest_made_again_is_predicted_from_its_own_production_order() -> None:
    remake = make_production_order("1000002", "RELEASED", start=NOW + 3 * DAY, hours=6, total=8)
    view = short_shipped(rest=[remake])
    assert not any(leg.covers(remake) for leg in view.legs)  # the first delivery took another batch
    assert stage(view) is OrderStage.PARTIALLY_DELIVERED
    pred = predict(view, NOW)
    assert "yield_shortfall:1000001" not in pred.drivers
    assert pred.production_end == NOW + 3 * DAY + 6 * HOUR
    found = kinds(view)
    assert ExceptionKind.YIELD_SHORTFALL not in found  # taken care of
    assert found[ExceptionKind.BACKORDER].value_at_risk == 8_000.0  # still owed until it ships


def test_the_rest_in_its_own_delivery_ends_the_backorder_once_shipped() -> None:
    remake = make_production_order(
        "1000002", "TECO", start=NOW - DAY, hours=6, total=8, yield_qty=8, batch="B-1000002"
    )
    base = short_shipped(rest=[remake], tag="Delivered")
    second = shipped_delivery("80000002", items={"10": 8}, batch="B-1000002", at=NOW - HOUR)
    view = dataclasses.replace(
        base,
        inspection_lots=[*base.inspection_lots, make_lot("1000002", "4000000013", decision="A", decided_at=NOW - 2 * HOUR)],
        deliveries=[*base.deliveries, second],
        shipments=[*base.shipments, make_shipment("80000002", "InTransit", tracking="1Z998", eta=NOW + DAY)],
    )
    assert view.all_items_in_deliveries and not view.open_quantity
    assert stage(view) is OrderStage.IN_TRANSIT
    assert ExceptionKind.BACKORDER not in kinds(view)
    assert predict(view, NOW).predicted_delivery_date == (NOW + DAY).date()  # the carrier's ETA


def test_a_cut_rest_completes_the_order_with_what_shipped() -> None:
    on_the_way = short_shipped(rejected="01")
    [q] = on_the_way.item_quantities
    assert q.open == 0 and q.uncovered == 0 and q.shipped == 42
    assert stage(on_the_way) is OrderStage.IN_TRANSIT
    assert ExceptionKind.BACKORDER not in kinds(on_the_way)
    assert ExceptionKind.YIELD_SHORTFALL not in kinds(on_the_way)
    arrived = short_shipped(rejected="01", tag="Delivered")
    assert stage(arrived) is OrderStage.DELIVERED and arrived.is_delivered
    assert delivery_risk(arrived, predict(arrived, NOW), NOW) is DeliveryRisk.DELIVERED


# --- split deliveries: schedule lines on two dates ----------------------------------------


def split_order(now_shipped: float = 6) -> OrderView:
    """10 ordered: 6 promised to ship on Monday the 13th, 4 on Monday the 20th; 6 shipped."""
    item = make_item("10", 10, net=5_000.0, schedule_lines=[
        line(6, dt.date(2024, 5, 13), "1"), line(4, dt.date(2024, 5, 20), "2"),
    ])
    return make_view(
        sales_order=make_sales_order(confirmed=dt.date(2024, 5, 22), items=[item]),
        orders=[make_production_order("1000001", "TECO", start=NOW - 5 * DAY, total=10, yield_qty=10, batch="B1")],
        lots=[make_lot("1000001", decision="A", decided_at=NOW - 3 * DAY)],
        deliveries=[shipped_delivery(items={"10": now_shipped}, batch="B1", at=NOW - 2 * DAY)],
        shipments=[make_shipment(tag="Delivered", delivered_at=NOW - DAY)],
    )


def test_a_later_schedule_line_is_not_owed_before_its_day() -> None:
    view = split_order()
    assert stage(view) is OrderStage.PARTIALLY_DELIVERED
    assert ExceptionKind.BACKORDER not in kinds(view)
    assert ExceptionKind.DISPATCH_MISSED not in kinds(view)
    pred = predict(view, NOW)
    # The second line ships on its own goods-issue day, not as soon as it could.
    assert pred.goods_issue is not None and pred.goods_issue >= dt.datetime(2024, 5, 20, tzinfo=dt.UTC)
    after = NOW.replace(day=21)
    assert kinds(view, after)[ExceptionKind.BACKORDER].value_at_risk == 2_000.0  # 4 x 500, overdue


def test_owed_quantity_counts_short_lines_and_overdue_ones() -> None:
    view = split_order(now_shipped=5)  # the first line shipped one short
    [item] = view.sales_order.items
    [q] = view.item_quantities
    assert owed_quantity(item, q, NOW.date()) == 1
    # The second line's goods-issue day (the 20th) may still ship it; once over, it is owed.
    assert owed_quantity(item, q, dt.date(2024, 5, 20)) == 1
    assert owed_quantity(item, q, dt.date(2024, 5, 21)) == 5
    cut = dataclasses.replace(item, rejection_reason="01")
    assert owed_quantity(cut, q, dt.date(2024, 5, 21)) == 0


# --- milestones: one baseline ---------------------------------------------------------------


def test_picked_and_packed_take_their_times_from_the_warehouse() -> None:
    delivery = dataclasses.replace(
        shipped_delivery(),
        actual_picking_date_time=NOW - 9 * HOUR,
        actual_packing_date_time=NOW - 8 * HOUR,
    )
    view = make_view(
        orders=[make_production_order(status="TECO", start=NOW - 3 * DAY, yield_qty=100)],
        lots=[make_lot(decision="A", decided_at=NOW - DAY)],
        deliveries=[delivery],
    )
    ms = {m.kind: m for m in milestones(view, NOW)}
    assert ms[MilestoneKind.PICKED].status is MilestoneStatus.DONE
    assert ms[MilestoneKind.PICKED].actual == NOW - 9 * HOUR
    assert ms[MilestoneKind.PACKED].actual == NOW - 8 * HOUR
    assert ms[MilestoneKind.GOODS_ISSUED].actual == NOW - 6 * HOUR


def test_planned_dates_come_from_the_schedule_the_order_was_confirmed_with() -> None:
    planned_start = NOW - 4 * DAY
    # The lines expect the goods two hours before production was planned to end: an
    # inconsistent record must not plan quality release before production end.
    item = make_item("10", 100, schedule_lines=[
        line(100, dt.date(2024, 5, 21), product_availability_date=planned_start + 6 * HOUR)
    ])
    scrapped = make_production_order(
        "1000001", "TECO", start=planned_start, hours=8, batch="B-1000001",
        planned_start_date=planned_start, planned_end_date=planned_start + 8 * HOUR,
    )
    # The rework was planned later; it does not move the baseline.
    rework = make_production_order("1000002", "RELEASED", start=NOW + DAY, hours=8)
    view = make_view(
        sales_order=make_sales_order(items=[item]),
        orders=[scrapped, rework],
        lots=[make_lot("1000001", decision="R", decided_at=NOW - 2 * DAY)],
    )
    ms = {m.kind: m for m in milestones(view, NOW)}
    assert ms[MilestoneKind.PRODUCTION_STARTED].planned == planned_start
    assert ms[MilestoneKind.PRODUCTION_COMPLETED].planned == planned_start + 8 * HOUR
    assert ms[MilestoneKind.QUALITY_RELEASED].planned == planned_start + 8 * HOUR  # not before production end
    assert ms[MilestoneKind.PRODUCTION_STARTED].expected == NOW + DAY  # expected: the current plan
    assert ms[MilestoneKind.PICKED].planned == dt.datetime(2024, 5, 21, tzinfo=dt.UTC)
    assert ms[MilestoneKind.GOODS_ISSUED].planned == dt.datetime(2024, 5, 21, tzinfo=dt.UTC)


def test_quality_release_is_planned_before_any_inspection_lot_exists() -> None:
    view = make_view(orders=[make_production_order("1000001", "RELEASED", start=NOW + DAY, hours=8)])
    ms = {m.kind: m for m in milestones(view, NOW)}
    assert view.inspection_lots == []
    assert ms[MilestoneKind.QUALITY_RELEASED].planned == NOW + DAY + 8 * HOUR + 24 * HOUR  # end + QA lead


# --- quantities on working calendars, with carrier revisions and blocks ---------------------

STUTTGART = PredictionParams(plant=PLANT_CALENDAR, delivery=RECEIVING_CALENDAR)


def berlin(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=PLANT_CALENDAR.zone).astimezone(dt.UTC)


def test_a_split_line_ships_from_the_first_shift_of_its_working_day() -> None:
    # The second line's goods-issue day, Monday 20 May 2024, is Whit Monday in Stuttgart:
    # the plant ships it with the first shift of the next working day.
    pred = predict(split_order(), NOW, STUTTGART)
    assert pred.goods_issue == berlin("2024-05-21T06:00")
    assert RECEIVING_CALENDAR.is_working_day(pred.predicted_delivery_date)


def test_the_rest_of_a_short_shipment_is_made_again_in_the_plants_working_time() -> None:
    friday_night = berlin("2024-05-17T22:30")  # after the last shift, before Whitsun
    pred = predict(short_shipped(), friday_night, STUTTGART)
    # 8 of 50 missing from an 8 h run: 1.28 working hours, from Tuesday's first shift.
    assert pred.production_end == berlin("2024-05-21T07:16:48")
    assert "yield_shortfall:1000001" in pred.drivers


def _with_shipment(view: OrderView, shipment) -> OrderView:
    return dataclasses.replace(view, shipments=[shipment])


def _remade() -> OrderView:
    remake = make_production_order("1000002", "RELEASED", start=NOW + DAY, hours=6, total=8)
    return short_shipped(rest=[remake])


def test_after_a_short_shipment_a_revised_eta_of_what_left_is_taken_as_given() -> None:
    revised = berlin("2024-05-29T10:00")  # after the rest could arrive
    ship = make_shipment("80000001", "Exception", make_event("SD", "Exception", NOW - 2 * HOUR), eta=revised)
    view = _with_shipment(_remade(), ship)
    rest_alone = predict(_with_shipment(_remade(), make_shipment(tag="InTransit", eta=NOW + DAY)), NOW, STUTTGART)
    assert rest_alone.delivery is not None and rest_alone.delivery < revised
    pred = predict(view, NOW, STUTTGART)
    # The whole arrives when the goods on their way do: the carrier's revised ETA, unpadded.
    assert pred.delivery == revised
    assert "carrier_exception:1Z999" in pred.drivers and "backorder:10" in pred.drivers


def test_after_a_short_shipment_an_overdue_truck_never_pulls_the_date_into_the_past() -> None:
    ship = make_shipment("80000001", "InTransit", eta=NOW - 5 * HOUR)
    ship.eta_window_start, ship.eta_window_end = NOW - 9 * HOUR, NOW - HOUR
    view = _with_shipment(_remade(), ship)
    pred = predict(view, NOW, STUTTGART)
    rest = predict(_with_shipment(_remade(), make_shipment(tag="InTransit", eta=NOW + DAY)), NOW, STUTTGART)
    assert pred.delivery == rest.delivery and pred.delivery is not None and pred.delivery > NOW
    found = {d.kind for d in detect(view, None, NOW, prediction_params=STUTTGART)}
    assert {ExceptionKind.SHIPMENT_OVERDUE, ExceptionKind.BACKORDER} <= found


def test_a_block_holds_the_rest_of_a_partial_delivery() -> None:
    base = short_shipped()
    view = dataclasses.replace(base, sales_order=dataclasses.replace(base.sales_order, total_credit_check_status="B"))
    pred = predict(view, NOW, STUTTGART)
    assert pred.held_by == ("credit_block",)
    assert delivery_risk(view, pred, NOW, STUTTGART) is not DeliveryRisk.ON_TRACK
    ms = {m.kind: m for m in milestones(view, NOW, pred, STUTTGART)}
    for kind in (MilestoneKind.GOODS_ISSUED, MilestoneKind.DELIVERED):
        assert ms[kind].status is MilestoneStatus.ON_HOLD and ms[kind].expected is None
    found = {d.kind: d for d in detect(view, None, NOW, prediction_params=STUTTGART)}
    assert ExceptionKind.CREDIT_BLOCK in found and found[ExceptionKind.BACKORDER].held


def test_backorder_customer_text_is_the_orders_own_with_the_new_date_once_late() -> None:
    late = short_shipped()
    late = dataclasses.replace(late, sales_order=dataclasses.replace(late.sales_order, confirmed_delivery_date=NOW.date()))
    found = {d.kind: d for d in detect(late, None, NOW, prediction_params=STUTTGART)}
    backorder = found[ExceptionKind.BACKORDER]
    predicted = predict(late, NOW, STUTTGART).predicted_delivery_date
    assert backorder.customer_text == (
        f"Part of your order has shipped; 8 PC of FG-200 still to come. We now expect to deliver on {predicted.isoformat()}."
    )
    held = dataclasses.replace(late, sales_order=dataclasses.replace(late.sales_order, delivery_block_reason="01"))
    text = {d.kind: d for d in detect(held, None, NOW, prediction_params=STUTTGART)}[ExceptionKind.BACKORDER].customer_text
    assert "We now expect" not in text  # no date while a block holds the rest


def test_a_later_line_passing_its_day_is_due_for_the_exception_timers() -> None:
    view = split_order()
    at = NOW
    for _ in range(20):
        at = next_due(view, at, prediction_params=STUTTGART)
        assert at is not None
        if ExceptionKind.BACKORDER in {d.kind for d in detect(view, None, at, prediction_params=STUTTGART)}:
            break
    # Raised the moment the line's goods-issue day (the plant's) is over, not at a sweep.
    assert at == PLANT_CALENDAR.day_end(dt.date(2024, 5, 20))
    before = {d.kind for d in detect(view, None, at - dt.timedelta(seconds=1), prediction_params=STUTTGART)}
    assert ExceptionKind.BACKORDER not in before


def test_quality_release_is_planned_a_lead_time_of_working_hours_after_production() -> None:
    end = berlin("2024-05-24T20:00")  # Friday, two hours before the last shift ends
    po = make_production_order("1000001", "RELEASED", start=end - 8 * HOUR, hours=8,
                               planned_start_date=end - 8 * HOUR, planned_end_date=end)
    ms = {m.kind: m for m in milestones(make_view(orders=[po]), NOW, params=STUTTGART)}
    # 24 working hours: 2 on Friday, 16 on Monday, 6 on Tuesday.
    assert ms[MilestoneKind.QUALITY_RELEASED].planned == berlin("2024-05-28T12:00")

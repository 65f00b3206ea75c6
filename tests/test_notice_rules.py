"""The notice rules on hand-built records: quantities decide shipped and delivered, dates
move by working days, a window's notices fold into one."""

from __future__ import annotations

import dataclasses
import datetime as dt

from resolvers.notice_rules import (
    BACK_ON_TRACK,
    DELIVERED,
    DELIVERY_DELAYED,
    SHIPPED,
    NoticeRules,
    NoticeState,
    baseline,
    decide,
    fully_delivered,
    fully_shipped,
    language_of,
    merge,
    order_facts,
)
from sources.simulator.world import RECEIVING_CALENDAR

from .test_domain_stage import (
    DAY,
    HOUR,
    NOW,
    make_item,
    make_lot,
    make_production_order,
    make_sales_order,
    make_shipment,
    make_view,
    shipped_delivery,
)

CAL = RECEIVING_CALENDAR  # Mon–Fri, German holidays


def order(*, shipped_qty: float | None, delivered: bool, items=None, **sales_order):
    """100 ordered and produced; ``shipped_qty`` in one delivery (None: no delivery)."""
    so = make_sales_order(items=items if items is not None else [make_item("10", 100)], **sales_order)
    deliveries, shipments = [], []
    if shipped_qty is not None:
        deliveries = [shipped_delivery(items={"10": shipped_qty})]
        tag = "Delivered" if delivered else "InTransit"
        shipments = [make_shipment(tag=tag, tracking="1Z42", eta=NOW + DAY, delivered_at=NOW - HOUR if delivered else None)]
    return make_view(
        sales_order=so,
        orders=[make_production_order(status="CONFIRMED", start=NOW - 3 * DAY, yield_qty=100)],
        lots=[make_lot(decision="A", decided_at=NOW - DAY)],
        deliveries=deliveries,
        shipments=shipments,
    )


def test_delivered_only_when_the_delivered_quantities_cover_the_order() -> None:
    full = order(shipped_qty=100, delivered=True)
    partial = order(shipped_qty=60, delivered=True)  # the carrier delivered what it had: 60 of 100
    assert fully_delivered(full) and fully_shipped(full)
    assert not fully_delivered(partial) and not fully_shipped(partial)
    facts = order_facts(partial, NOW)
    assert not facts.delivered and not facts.shipped and facts.predicted is not None
    state, items = decide(NoticeState(), facts, CAL)
    assert DELIVERED not in [i["kind"] for i in items] and SHIPPED not in [i["kind"] for i in items]
    state, items = decide(NoticeState(), order_facts(full, NOW), CAL)
    assert [i["kind"] for i in items] == [DELIVERED] and state.delivered
    assert items[0]["tracking"] == [["UPS", "1Z42"]]


def test_an_order_read_without_its_items_is_never_delivered() -> None:
    view = order(shipped_qty=100, delivered=True, items=[])
    assert view.is_delivered  # every leg says delivered ...
    assert not fully_delivered(view)  # ... but no quantity says how much of what
    assert not order_facts(view, NOW).delivered


def test_shipped_with_tracking_once_everything_left_and_told_once() -> None:
    view = order(shipped_qty=100, delivered=False)
    facts = order_facts(view, NOW)
    assert facts.shipped and facts.tracking == (("UPS", "1Z42"),)
    state, items = decide(NoticeState(), facts, CAL)
    assert [i["kind"] for i in items] == [SHIPPED] and items[0]["tracking"] == [["UPS", "1Z42"]]
    again, more = decide(state, facts, CAL)
    assert more == [] and again == state


def test_a_rejected_item_owes_nothing() -> None:
    items = [make_item("10", 100), make_item("20", 5, rejection_reason="01")]
    view = order(shipped_qty=100, delivered=True, items=items)
    assert fully_delivered(view)


def facts_with(predicted: dt.date, promised: dt.date = dt.date(2024, 5, 24)):
    base = order_facts(order(shipped_qty=None, delivered=False), NOW)
    return dataclasses.replace(base, promised=promised, predicted=predicted)


def test_delay_counts_working_days_of_the_ship_to() -> None:
    friday = dt.date(2024, 5, 24)
    rules = NoticeRules(date_move_working_days=1)
    # Friday → Saturday and Sunday: no working day later, nothing to say.
    assert decide(NoticeState(), facts_with(dt.date(2024, 5, 26), friday), CAL, rules)[1] == []
    # Friday → Monday: one working day late.
    state, items = decide(NoticeState(), facts_with(dt.date(2024, 5, 27), friday), CAL, rules)
    assert [i["kind"] for i in items] == [DELIVERY_DELAYED] and state.announced == dt.date(2024, 5, 27)
    # Two working days needed: Monday is not enough, Tuesday is.
    two = NoticeRules(date_move_working_days=2)
    assert decide(NoticeState(), facts_with(dt.date(2024, 5, 27), friday), CAL, two)[1] == []
    assert decide(NoticeState(), facts_with(dt.date(2024, 5, 28), friday), CAL, two)[1][0]["kind"] == DELIVERY_DELAYED


def test_further_moves_and_recovery() -> None:
    rules = NoticeRules(date_move_working_days=2)
    told = NoticeState(announced=dt.date(2024, 5, 29))
    # one working day further: below the threshold, nothing
    assert decide(told, facts_with(dt.date(2024, 5, 30)), CAL, rules)[1] == []
    # three working days further: told again, with the date told before
    state, items = decide(told, facts_with(dt.date(2024, 6, 3)), CAL, rules)
    assert items[0]["kind"] == DELIVERY_DELAYED and items[0]["previous"] == "2024-05-29"
    # back within the promise
    state, items = decide(state, facts_with(dt.date(2024, 5, 23)), CAL, rules)
    assert [i["kind"] for i in items] == [BACK_ON_TRACK] and state.announced is None


def test_baseline_tells_nothing_and_remembers_a_late_order_as_told() -> None:
    facts = facts_with(dt.date(2024, 6, 3))
    state = baseline(facts, CAL)
    assert state.announced == dt.date(2024, 6, 3)
    assert decide(state, facts, CAL)[1] == []


def test_a_window_folds_into_the_net_change() -> None:
    delayed = {"kind": DELIVERY_DELAYED, "promised": "2024-05-24", "predicted": "2024-05-28", "previous": None}
    later = {"kind": DELIVERY_DELAYED, "promised": "2024-05-24", "predicted": "2024-05-30", "previous": "2024-05-28"}
    back = {"kind": BACK_ON_TRACK, "promised": "2024-05-24", "predicted": "2024-05-24", "previous": "2024-05-30"}
    assert merge([delayed], [later]) == [{**later, "previous": None}]
    assert merge([delayed, {"kind": SHIPPED, "tracking": []}], [back]) == [{"kind": SHIPPED, "tracking": []}]
    assert merge([delayed], [back]) == []  # late and back within one window: nothing to tell
    told_before = {**delayed, "previous": "2024-05-27"}
    assert merge([told_before], [back])[0]["kind"] == BACK_ON_TRACK
    assert [i["kind"] for i in merge([delayed], [{"kind": DELIVERED}])] == [DELIVERED]


def test_language_from_the_erp() -> None:
    assert language_of("DE") == "de" and language_of("D") == "de"
    assert language_of("EN") == "en" and language_of(None) == "en" and language_of("FR") == "en"

"""Section statuses, stage and milestones on hand-built source records."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from resolvers.enums import (
    LogisticsStatus,
    MaterialsStatus,
    MilestoneKind,
    MilestoneStatus,
    OrderStage,
    ProductionStatus,
    QualityStatus,
)
from resolvers.prediction import predict
from resolvers.stage import (
    Milestone,
    logistics_status,
    materials_status,
    milestones,
    production_status,
    quality_status,
    stage,
)
from resolvers.view import OrderView
from sources.records import (
    ComponentAvailability,
    InspectionLot,
    OutboundDelivery,
    OutboundDeliveryItem,
    ProductionOrder,
    SalesOrder,
    SalesOrderItem,
    Shipment,
    TrackingEvent,
    UsageDecision,
    WorkCenter,
)

NOW = dt.datetime(2024, 5, 15, 8, 0, tzinfo=dt.UTC)  # a Wednesday
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


# --- factories (also used by test_domain_prediction.py) ---------------------------------


def make_sales_order(
    confirmed: dt.date | None = dt.date(2024, 5, 24),
    requested: dt.date = dt.date(2024, 5, 24),
    **kw,
) -> SalesOrder:
    return SalesOrder(
        sales_order="10000001",
        sold_to_party="C-100",
        sales_order_date=dt.date(2024, 5, 2),
        requested_delivery_date=requested,
        confirmed_delivery_date=confirmed,
        **kw,
    )


def make_item(item: str = "10", quantity: float = 100, *, net: float = 10_000.0, **kw) -> SalesOrderItem:
    return SalesOrderItem(
        sales_order_item=item, material="FG-200", requested_quantity=quantity, net_amount=net, **kw
    )


def make_production_order(
    mo: str = "1000001",
    status: str = "CREATED",
    *,
    start: dt.datetime = NOW + DAY,
    hours: float = 8,
    total: float = 100,
    yield_qty: float = 0,
    work_center: str = "WC-10",
    item: str = "10",
    **kw,
) -> ProductionOrder:
    return ProductionOrder(
        manufacturing_order=mo,
        material="FG-200",
        sales_order="10000001",
        sales_order_item=item,
        total_quantity=total,
        work_center=work_center,
        scheduled_start_date=start,
        scheduled_end_date=start + hours * HOUR,
        status=status,
        confirmed_yield_qty=yield_qty,
        **kw,
    )


def make_work_center(
    wc: str = "WC-10",
    state: str = "UP",
    *,
    down_since: dt.datetime | None = None,
    expected_up_at: dt.datetime | None = None,
) -> WorkCenter:
    return WorkCenter(
        work_center=wc, state=state, down_since=down_since, expected_up_at=expected_up_at
    )


def make_component(
    mo: str = "1000001",
    material: str = "RM-1040",
    *,
    required: float = 10,
    available: float = 10,
    shortage: float = 0,
    receipt: dt.date | None = None,
    stock_type: str = "01",
    changed: dt.datetime | None = None,
) -> ComponentAvailability:
    return ComponentAvailability(
        reservation=f"{mo}-{material}",
        manufacturing_order=mo,
        material=material,
        required_quantity=required,
        available_quantity=available,
        shortage_quantity=shortage,
        expected_receipt_date=receipt,
        inventory_stock_type=stock_type,
        last_change_date_time=changed,
    )


def make_lot(
    mo: str = "1000001",
    lot: str = "4000000012",
    *,
    created: dt.datetime = NOW - 2 * HOUR,
    decision: str | None = None,  # "A" accepted, "R" rejected, None = no usage decision
    decided_at: dt.datetime | None = None,
    planned_end: dt.datetime | None = None,
) -> InspectionLot:
    usage = None
    if decision is not None:
        valuation = "REJECTED" if decision == "R" else "ACCEPTED"
        usage = UsageDecision(code=decision, valuation=valuation, decided_at=decided_at)
    return InspectionLot(
        inspection_lot=lot,
        material="FG-200",
        batch=f"B-{mo}",
        manufacturing_order=mo,
        created_at=created,
        has_usage_decision=usage is not None,
        usage_decision=usage,
        planned_end_date=planned_end,
    )


def make_delivery(
    doc: str = "80000001",
    *,
    picking: str = "A",
    packing: str = "A",
    goods_movement: str = "A",
    goods_issued_at: dt.datetime | None = None,
    delivery_date: dt.date = dt.date(2024, 5, 24),
    items: tuple[str, ...] | dict[str, float] = (),
    batch: str | None = None,
) -> OutboundDelivery:
    quantities = items if isinstance(items, dict) else dict.fromkeys(items, 0.0)
    return OutboundDelivery(
        delivery_document=doc,
        sales_order="10000001",
        ship_to_party="C-100",
        delivery_date=delivery_date,
        overall_picking_status=picking,
        overall_packing_status=packing,
        overall_goods_movement_status=goods_movement,
        actual_goods_movement_date=goods_issued_at,
        items=[
            OutboundDeliveryItem(
                delivery_document_item=f"{n:06d}",
                reference_sd_document="10000001",
                reference_sd_document_item=item,
                material="FG-200",
                actual_delivery_quantity=qty,
                batch=batch,
            )
            for n, (item, qty) in enumerate(quantities.items(), start=10)
        ],
    )


def shipped_delivery(
    doc: str = "80000001", at: dt.datetime = NOW - 6 * HOUR, **kw
) -> OutboundDelivery:
    return make_delivery(
        doc, picking="C", packing="C", goods_movement="C", goods_issued_at=at, **kw
    )


def make_event(code: str, tag: str, at: dt.datetime) -> TrackingEvent:
    return TrackingEvent(code=code, tag=tag, occurred_at=at)


def make_shipment(
    doc: str = "80000001",
    tag: str = "Pending",
    *events: TrackingEvent,
    tracking: str = "1Z999",
    eta: dt.datetime | None = None,
    delivered_at: dt.datetime | None = None,
) -> Shipment:
    return Shipment(
        tracking_number=tracking,
        carrier="UPS",
        delivery_document=doc,
        tag=tag,
        estimated_delivery_at=eta,
        delivered_at=delivered_at,
        events=list(events),
    )


def make_view(
    *,
    orders: list[ProductionOrder] | None = None,
    work_centers: list[WorkCenter] | None = None,
    components: list[ComponentAvailability] | None = None,
    lots: list[InspectionLot] | None = None,
    deliveries: list[OutboundDelivery] | None = None,
    shipments: list[Shipment] | None = None,
    sales_order: SalesOrder | None = None,
) -> OrderView:
    return OrderView(
        sales_order=sales_order or make_sales_order(),
        production_orders=orders or [],
        work_centers={wc.work_center: wc for wc in work_centers or []},
        components=components or [],
        inspection_lots=lots or [],
        deliveries=deliveries or [],
        shipments=shipments or [],
    )


def produced(**kw) -> OrderView:
    """A made-to-order order whose production is complete and quality accepted."""
    kw.setdefault(
        "orders", [make_production_order(status="CONFIRMED", start=NOW - 3 * DAY, yield_qty=100)]
    )
    kw.setdefault("lots", [make_lot(decision="A", decided_at=NOW - DAY)])
    return make_view(**kw)


# --- production -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("CREATED", ProductionStatus.NOT_RELEASED),
        ("RELEASED", ProductionStatus.RELEASED),
        ("STARTED", ProductionStatus.IN_PROGRESS),
        ("PARTIALLY_CONFIRMED", ProductionStatus.IN_PROGRESS),
        ("CONFIRMED", ProductionStatus.COMPLETED),
        ("TECO", ProductionStatus.COMPLETED),
        ("CLOSED", ProductionStatus.COMPLETED),
    ],
)
def test_production_status_follows_order_status(status: str, expected: ProductionStatus) -> None:
    view = make_view(
        orders=[make_production_order(status=status)], work_centers=[make_work_center()]
    )
    assert production_status(view, NOW) is expected


def test_production_not_required_for_stock_order() -> None:
    assert production_status(make_view(), NOW) is ProductionStatus.NOT_REQUIRED


def test_production_interrupted_when_work_center_down() -> None:
    down = make_work_center(state="DOWN", down_since=NOW - HOUR)
    view = make_view(orders=[make_production_order(status="STARTED")], work_centers=[down])
    assert production_status(view, NOW) is ProductionStatus.INTERRUPTED


def test_announced_downtime_in_the_future_does_not_interrupt_yet() -> None:
    planned_stop = make_work_center(state="DOWN", down_since=NOW + 2 * HOUR)
    view = make_view(orders=[make_production_order(status="STARTED")], work_centers=[planned_stop])
    assert production_status(view, NOW) is ProductionStatus.IN_PROGRESS


def test_released_order_due_now_is_interrupted_but_not_one_due_next_week() -> None:
    down = make_work_center(state="DOWN", down_since=NOW - HOUR)
    due = make_production_order(status="RELEASED", start=NOW - 2 * HOUR)
    assert (
        production_status(make_view(orders=[due], work_centers=[down]), NOW)
        is ProductionStatus.INTERRUPTED
    )
    next_week = make_production_order(status="RELEASED", start=NOW + 7 * DAY)
    view = make_view(orders=[next_week], work_centers=[down])
    assert production_status(view, NOW) is ProductionStatus.RELEASED
    unreleased = make_production_order(status="CREATED", start=NOW - 2 * HOUR)
    view = make_view(orders=[unreleased], work_centers=[down])
    assert production_status(view, NOW) is ProductionStatus.NOT_RELEASED


def test_completed_order_is_not_interrupted_by_a_down_work_center() -> None:
    down = make_work_center(state="DOWN", down_since=NOW - HOUR)
    view = make_view(orders=[make_production_order(status="CONFIRMED")], work_centers=[down])
    assert production_status(view, NOW) is ProductionStatus.COMPLETED


def test_production_status_is_the_least_advanced_order() -> None:
    view = make_view(
        orders=[
            make_production_order("1000001", "CONFIRMED"),
            make_production_order("1000002", "RELEASED", item="20"),
        ]
    )
    assert production_status(view, NOW) is ProductionStatus.RELEASED


# --- materials --------------------------------------------------------------------------


def test_materials_not_required_for_stock_order() -> None:
    assert materials_status(make_view()) is MaterialsStatus.NOT_REQUIRED


def test_materials_available_when_no_component_is_short() -> None:
    view = make_view(orders=[make_production_order()], components=[make_component()])
    assert materials_status(view) is MaterialsStatus.AVAILABLE


def test_materials_shortage_by_shortage_quantity() -> None:
    short = make_component(available=4, shortage=6, receipt=dt.date(2024, 5, 20))
    view = make_view(orders=[make_production_order(status="RELEASED")], components=[short])
    assert materials_status(view) is MaterialsStatus.SHORTAGE


def test_blocked_stock_counts_as_shortage() -> None:
    blocked = make_component(stock_type="07")  # quantity on the shelf, but blocked
    view = make_view(orders=[make_production_order()], components=[blocked])
    assert materials_status(view) is MaterialsStatus.SHORTAGE


def test_materials_consumed_once_every_order_started() -> None:
    stale_shortage = make_component(available=0, shortage=10)  # irrelevant once consumed
    view = make_view(orders=[make_production_order(status="STARTED")], components=[stale_shortage])
    assert materials_status(view) is MaterialsStatus.CONSUMED


def test_shortage_of_an_unstarted_order_shows_beside_a_started_one() -> None:
    view = make_view(
        orders=[
            make_production_order("1000001", "STARTED"),
            make_production_order("1000002", item="20"),
        ],
        components=[make_component("1000002", available=0, shortage=10)],
    )
    assert materials_status(view) is MaterialsStatus.SHORTAGE


# --- quality ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lots", "expected"),
    [
        ([], QualityStatus.NOT_STARTED),
        ([make_lot()], QualityStatus.IN_INSPECTION),
        ([make_lot(decision="A", decided_at=NOW)], QualityStatus.ACCEPTED),
        ([make_lot(decision="R", decided_at=NOW)], QualityStatus.REJECTED),
        # Re-inspection after rework: the newest lot decides.
        (
            [
                make_lot(lot="4000000012", created=NOW - 3 * DAY, decision="R"),
                make_lot(lot="4000000013", created=NOW - DAY, decision="A"),
            ],
            QualityStatus.ACCEPTED,
        ),
    ],
)
def test_quality_status_from_latest_lot(lots: list[InspectionLot], expected: QualityStatus) -> None:
    view = make_view(orders=[make_production_order(status="CONFIRMED")], lots=lots)
    assert quality_status(view) is expected


def test_quality_not_required_for_stock_order() -> None:
    assert quality_status(make_view()) is QualityStatus.NOT_REQUIRED


def test_quality_waits_for_every_production_order() -> None:
    view = make_view(
        orders=[
            make_production_order("1000001", "CONFIRMED"),
            make_production_order("1000002", item="20"),
        ],
        lots=[make_lot("1000001", decision="A")],
    )
    assert quality_status(view) is QualityStatus.NOT_STARTED


def test_quality_hold_on_one_order_shows_for_the_order() -> None:
    view = make_view(
        orders=[
            make_production_order("1000001", "CONFIRMED"),
            make_production_order("1000002", "CONFIRMED"),
        ],
        lots=[make_lot("1000001", "4000000012", decision="A"), make_lot("1000002", "4000000013")],
    )
    assert quality_status(view) is QualityStatus.IN_INSPECTION


# --- logistics --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delivery", "shipment", "expected"),
    [
        (None, None, LogisticsStatus.NOT_CREATED),
        (make_delivery(), None, LogisticsStatus.OPEN),
        (make_delivery(picking="B"), None, LogisticsStatus.OPEN),  # partially picked
        (make_delivery(picking="C"), None, LogisticsStatus.PICKED),
        (make_delivery(picking="C", packing="C"), None, LogisticsStatus.PACKED),
        (shipped_delivery(), None, LogisticsStatus.GOODS_ISSUED),
        (shipped_delivery(), make_shipment(tag="InfoReceived"), LogisticsStatus.GOODS_ISSUED),
        (shipped_delivery(), make_shipment("80000001", "InTransit"), LogisticsStatus.IN_TRANSIT),
        # Tag not updated yet, but the AF scan proves the carrier has the goods.
        (
            shipped_delivery(),
            make_shipment("80000001", "Pending", make_event("AF", "InTransit", NOW - HOUR)),
            LogisticsStatus.IN_TRANSIT,
        ),
        (shipped_delivery(), make_shipment(tag="OutForDelivery"), LogisticsStatus.OUT_FOR_DELIVERY),
        (shipped_delivery(), make_shipment(tag="AttemptFail"), LogisticsStatus.DELIVERY_FAILED),
        (shipped_delivery(), make_shipment(tag="Exception"), LogisticsStatus.EXCEPTION),
        (shipped_delivery(), make_shipment(tag="Delivered"), LogisticsStatus.DELIVERED),
        # A D1 scan is a delivery even if the tag still says out for delivery.
        (
            shipped_delivery(),
            make_shipment("80000001", "OutForDelivery", make_event("D1", "Delivered", NOW - HOUR)),
            LogisticsStatus.DELIVERED,
        ),
    ],
)
def test_logistics_status(
    delivery: OutboundDelivery | None, shipment: Shipment | None, expected: LogisticsStatus
) -> None:
    view = make_view(
        deliveries=[delivery] if delivery else [], shipments=[shipment] if shipment else []
    )
    assert logistics_status(view) is expected


def test_logistics_is_the_least_advanced_delivery() -> None:
    view = make_view(
        deliveries=[shipped_delivery("80000001"), shipped_delivery("80000002")],
        shipments=[
            make_shipment("80000001", "Delivered", tracking="1Z1"),
            make_shipment("80000002", "InTransit", tracking="1Z2"),
        ],
    )
    assert logistics_status(view) is LogisticsStatus.IN_TRANSIT


def test_a_carrier_exception_on_one_delivery_shows_for_the_order() -> None:
    view = make_view(
        deliveries=[shipped_delivery("80000001"), shipped_delivery("80000002")],
        shipments=[
            make_shipment("80000001", "Delivered", tracking="1Z1"),
            make_shipment("80000002", "Exception", tracking="1Z2"),
        ],
    )
    assert logistics_status(view) is LogisticsStatus.EXCEPTION


def test_latest_shipment_of_a_delivery_wins() -> None:
    first = make_shipment(
        "80000001", "Exception", make_event("SD", "Exception", NOW - DAY), tracking="1Z1"
    )
    reshipped = make_shipment(
        "80000001", "InTransit", make_event("AF", "InTransit", NOW - HOUR), tracking="1Z2"
    )
    view = make_view(deliveries=[shipped_delivery()], shipments=[first, reshipped])
    assert logistics_status(view) is LogisticsStatus.IN_TRANSIT
    assert view.latest_shipment is reshipped


# --- stage ------------------------------------------------------------------------------

STAGE_CASES: dict[OrderStage, Callable[[], OrderView]] = {
    OrderStage.RECEIVED: lambda: make_view(orders=[make_production_order("1000001", "CREATED")]),
    OrderStage.AWAITING_MATERIAL: lambda: make_view(
        orders=[make_production_order()], components=[make_component(available=2, shortage=8)]
    ),
    OrderStage.PRODUCTION_RELEASED: lambda: make_view(
        orders=[make_production_order(status="RELEASED")], components=[make_component()]
    ),
    OrderStage.IN_PRODUCTION: lambda: make_view(orders=[make_production_order(status="STARTED")]),
    OrderStage.IN_QUALITY_INSPECTION: lambda: make_view(
        orders=[make_production_order(status="CONFIRMED")], lots=[make_lot()]
    ),
    OrderStage.QUALITY_REJECTED: lambda: make_view(
        orders=[make_production_order(status="CONFIRMED")], lots=[make_lot(decision="R")]
    ),
    OrderStage.READY_FOR_PICKING: lambda: produced(),
    OrderStage.PICKED: lambda: produced(deliveries=[make_delivery(picking="C")]),
    OrderStage.PACKED: lambda: produced(deliveries=[make_delivery(picking="C", packing="C")]),
    OrderStage.GOODS_ISSUED: lambda: produced(deliveries=[shipped_delivery()]),
    OrderStage.IN_TRANSIT: lambda: produced(
        deliveries=[shipped_delivery()], shipments=[make_shipment(tag="InTransit")]
    ),
    OrderStage.OUT_FOR_DELIVERY: lambda: produced(
        deliveries=[shipped_delivery()], shipments=[make_shipment(tag="OutForDelivery")]
    ),
    OrderStage.PARTIALLY_DELIVERED: lambda: produced(
        sales_order=make_sales_order(items=[make_item("10", 100)]),
        deliveries=[shipped_delivery(items={"10": 90})],
        shipments=[make_shipment(tag="Delivered", delivered_at=NOW)],
    ),
    OrderStage.DELIVERED: lambda: produced(
        deliveries=[shipped_delivery()],
        shipments=[make_shipment(tag="Delivered", delivered_at=NOW)],
    ),
    OrderStage.CANCELLED: lambda: make_view(
        sales_order=make_sales_order(items=[make_item("10", 100, rejection_reason="Z1")]),
        orders=[make_production_order(status="TECO")],
    ),
}


def test_every_stage_has_a_case() -> None:
    assert set(STAGE_CASES) == set(OrderStage)


@pytest.mark.parametrize("expected", list(OrderStage), ids=lambda s: s.name)
def test_stage(expected: OrderStage) -> None:
    assert stage(STAGE_CASES[expected]()) is expected


def test_stock_order_without_delivery_is_received_and_with_one_ready_for_picking() -> None:
    assert stage(make_view()) is OrderStage.RECEIVED
    assert stage(make_view(deliveries=[make_delivery()])) is OrderStage.READY_FOR_PICKING
    assert (
        stage(make_view(deliveries=[make_delivery(picking="C", packing="C")])) is OrderStage.PACKED
    )


def test_rejected_lot_pulls_a_packed_order_back() -> None:
    view = produced(
        lots=[make_lot(decision="R", decided_at=NOW)],
        deliveries=[make_delivery(picking="C", packing="C")],
    )
    assert stage(view) is OrderStage.QUALITY_REJECTED


def test_rejected_lot_does_not_recall_goods_already_issued() -> None:
    view = produced(lots=[make_lot(decision="R", decided_at=NOW)], deliveries=[shipped_delivery()])
    assert stage(view) is OrderStage.GOODS_ISSUED


def test_released_order_with_short_components_awaits_material() -> None:
    view = make_view(
        orders=[make_production_order(status="RELEASED")],
        components=[make_component(available=0, shortage=10)],
    )
    assert stage(view) is OrderStage.AWAITING_MATERIAL


def test_several_production_orders_stage_is_the_least_advanced() -> None:
    view = make_view(
        orders=[
            make_production_order("1000001", "CONFIRMED"),
            make_production_order("1000002", "RELEASED", item="20"),
        ],
        lots=[make_lot("1000001", decision="A")],
    )
    assert stage(view) is OrderStage.PRODUCTION_RELEASED


def test_a_short_item_beside_an_unreleased_one_awaits_material() -> None:
    view = make_view(
        orders=[make_production_order("1000001"), make_production_order("1000002", item="20")],
        components=[make_component("1000001"), make_component("1000002", available=1, shortage=9)],
    )
    assert stage(view) is OrderStage.AWAITING_MATERIAL


def test_a_rejected_item_puts_the_whole_order_to_quality_rejected() -> None:
    view = make_view(
        orders=[
            make_production_order("1000001", "CONFIRMED"),
            make_production_order("1000002", "CREATED", item="20"),
        ],
        lots=[make_lot("1000001", decision="R")],
    )
    assert stage(view) is OrderStage.QUALITY_REJECTED


def test_goods_issue_outranks_a_lagging_mes_record() -> None:
    view = make_view(
        orders=[make_production_order(status="STARTED")], deliveries=[shipped_delivery()]
    )
    assert stage(view) is OrderStage.GOODS_ISSUED


def test_partial_shipment_order_is_at_its_unshipped_item() -> None:
    view = make_view(
        orders=[
            make_production_order("1000001", "CONFIRMED", item="10"),
            make_production_order("1000002", "STARTED", item="20"),
        ],
        lots=[make_lot("1000001", decision="A")],
        deliveries=[shipped_delivery(items=("10",))],
        shipments=[make_shipment(tag="InTransit")],
    )
    assert stage(view) is OrderStage.IN_PRODUCTION


def test_open_delivery_does_not_move_an_order_still_in_production() -> None:
    view = make_view(orders=[make_production_order(status="STARTED")], deliveries=[make_delivery()])
    assert stage(view) is OrderStage.IN_PRODUCTION


def test_carrier_exception_stays_at_the_furthest_scan() -> None:
    out = make_event("OFD", "OutForDelivery", NOW - 2 * HOUR)
    view = produced(
        deliveries=[shipped_delivery()], shipments=[make_shipment("80000001", "Exception", out)]
    )
    assert stage(view) is OrderStage.OUT_FOR_DELIVERY
    failed = produced(deliveries=[shipped_delivery()], shipments=[make_shipment(tag="AttemptFail")])
    assert stage(failed) is OrderStage.OUT_FOR_DELIVERY


# --- milestones -------------------------------------------------------------------------


def by_kind(items: list[Milestone]) -> dict[MilestoneKind, Milestone]:
    return {m.kind: m for m in items}


def test_milestones_are_in_lifecycle_order_with_sources() -> None:
    items = milestones(make_view(), NOW)
    assert [m.kind for m in items] == list(MilestoneKind)
    assert [m.source for m in items] == [
        "erp", "wms", "mes", "mes", "mes", "qms", "wms", "wms", "wms", "tms", "tms", "tms", "tms",
    ]  # fmt: skip


def test_stock_order_skips_materials_production_and_quality() -> None:
    ms = by_kind(milestones(make_view(deliveries=[make_delivery()]), NOW))
    skipped = [k for k, m in ms.items() if m.status is MilestoneStatus.SKIPPED]
    assert skipped == [
        MilestoneKind.MATERIALS_AVAILABLE,
        MilestoneKind.PRODUCTION_RELEASED,
        MilestoneKind.PRODUCTION_STARTED,
        MilestoneKind.PRODUCTION_COMPLETED,
        MilestoneKind.QUALITY_RELEASED,
    ]
    assert ms[MilestoneKind.ORDER_CONFIRMED].status is MilestoneStatus.DONE
    assert ms[MilestoneKind.ORDER_CONFIRMED].actual == dt.datetime(2024, 5, 2, tzinfo=dt.UTC)
    assert ms[MilestoneKind.PICKED].status is MilestoneStatus.PENDING


def test_unconfirmed_order_is_pending_confirmation() -> None:
    view = make_view(sales_order=make_sales_order(confirmed=None))
    assert (
        by_kind(milestones(view, NOW))[MilestoneKind.ORDER_CONFIRMED].status
        is MilestoneStatus.PENDING
    )


def test_running_order_milestones_done_pending_with_actuals_and_expectations() -> None:
    released_at = NOW - 2 * DAY
    started_at = NOW - 4 * HOUR
    order = make_production_order(
        status="STARTED",
        start=NOW - 4 * HOUR,
        hours=8,
        yield_qty=50,
        actual_release_date=released_at,
        actual_start_date=started_at,
    )
    view = make_view(orders=[order], components=[make_component(changed=NOW - 3 * DAY)])
    pred = predict(view, NOW)
    ms = by_kind(milestones(view, NOW, pred))

    assert ms[MilestoneKind.MATERIALS_AVAILABLE].status is MilestoneStatus.DONE
    assert ms[MilestoneKind.MATERIALS_AVAILABLE].actual == NOW - 3 * DAY
    assert ms[MilestoneKind.PRODUCTION_RELEASED].actual == released_at
    assert ms[MilestoneKind.PRODUCTION_STARTED].status is MilestoneStatus.DONE
    assert ms[MilestoneKind.PRODUCTION_STARTED].actual == started_at
    assert ms[MilestoneKind.PRODUCTION_STARTED].expected is None  # expected only while not done

    completed = ms[MilestoneKind.PRODUCTION_COMPLETED]
    assert completed.status is MilestoneStatus.PENDING
    assert completed.planned == NOW + 4 * HOUR  # scheduled end
    assert completed.expected == NOW + 4 * HOUR == pred.production_end
    assert completed.actual is None

    quality = ms[MilestoneKind.QUALITY_RELEASED]
    assert (quality.status, quality.expected) == (MilestoneStatus.PENDING, NOW + 28 * HOUR)
    assert ms[MilestoneKind.GOODS_ISSUED].expected == NOW + 44 * HOUR
    # No delivery yet: ship-by day = promise (Fri 24 May) minus 2 transit days.
    assert ms[MilestoneKind.GOODS_ISSUED].planned == dt.datetime(2024, 5, 22, tzinfo=dt.UTC)
    delivered = ms[MilestoneKind.DELIVERED]
    assert delivered.planned == dt.datetime(2024, 5, 24, tzinfo=dt.UTC)
    assert delivered.expected == NOW + 92 * HOUR
    assert delivered.status is MilestoneStatus.PENDING


def test_production_milestone_overdue_when_scheduled_end_passed() -> None:
    late = make_production_order(status="STARTED", start=NOW - 10 * HOUR, hours=8, yield_qty=75)
    ms = by_kind(milestones(make_view(orders=[late]), NOW))
    completed = ms[MilestoneKind.PRODUCTION_COMPLETED]
    assert completed.status is MilestoneStatus.OVERDUE
    assert completed.planned == NOW - 2 * HOUR
    assert completed.expected == NOW + 2 * HOUR  # a quarter of 8 h left


def test_date_only_plan_is_overdue_only_after_its_day() -> None:
    today = make_view(
        sales_order=make_sales_order(confirmed=NOW.date()), deliveries=[shipped_delivery()]
    )
    assert (
        by_kind(milestones(today, NOW))[MilestoneKind.DELIVERED].status is MilestoneStatus.PENDING
    )
    yesterday = make_view(
        sales_order=make_sales_order(confirmed=NOW.date() - DAY), deliveries=[shipped_delivery()]
    )
    assert (
        by_kind(milestones(yesterday, NOW))[MilestoneKind.DELIVERED].status
        is MilestoneStatus.OVERDUE
    )


def test_several_orders_milestone_done_at_the_latest_once_all_done() -> None:
    first = make_production_order("1000001", "CONFIRMED", actual_end_date=NOW - 2 * DAY)
    second = make_production_order("1000002", "STARTED", item="20")
    ms = by_kind(milestones(make_view(orders=[first, second]), NOW))
    assert ms[MilestoneKind.PRODUCTION_COMPLETED].status is not MilestoneStatus.DONE
    assert ms[MilestoneKind.PRODUCTION_COMPLETED].actual is None

    second_done = make_production_order(
        "1000002", "CONFIRMED", item="20", actual_end_date=NOW - 5 * HOUR
    )
    ms = by_kind(milestones(make_view(orders=[first, second_done]), NOW))
    assert ms[MilestoneKind.PRODUCTION_COMPLETED].status is MilestoneStatus.DONE
    assert ms[MilestoneKind.PRODUCTION_COMPLETED].actual == NOW - 5 * HOUR


def test_carrier_milestones_take_actuals_from_tracking_events() -> None:
    pickup = NOW - 30 * HOUR
    view = produced(
        deliveries=[shipped_delivery(at=NOW - 32 * HOUR)],
        shipments=[
            make_shipment(
                "80000001",
                "Delivered",
                make_event("X3", "InfoReceived", NOW - 31 * HOUR),
                make_event("AF", "InTransit", pickup),
                make_event("X6", "InTransit", NOW - 20 * HOUR),
                make_event("OFD", "OutForDelivery", NOW - 3 * HOUR),
                make_event("D1", "Delivered", NOW - HOUR),
            )
        ],
    )
    ms = by_kind(milestones(view, NOW))
    assert all(m.status is MilestoneStatus.DONE for m in ms.values())
    assert ms[MilestoneKind.GOODS_ISSUED].actual == NOW - 32 * HOUR
    assert ms[MilestoneKind.CARRIER_PICKED_UP].actual == pickup  # AF preferred over X3
    assert ms[MilestoneKind.IN_TRANSIT].actual == NOW - 20 * HOUR
    assert ms[MilestoneKind.OUT_FOR_DELIVERY].actual == NOW - 3 * HOUR
    assert ms[MilestoneKind.DELIVERED].actual == NOW - HOUR
    assert ms[MilestoneKind.QUALITY_RELEASED].actual == NOW - DAY


def test_a_later_milestone_done_marks_skipped_scans_done() -> None:
    # The carrier never scanned "out for delivery"; delivery proves it happened.
    view = produced(
        deliveries=[shipped_delivery()],
        shipments=[
            make_shipment("80000001", "Delivered", make_event("D1", "Delivered", NOW - HOUR))
        ],
    )
    ms = by_kind(milestones(view, NOW))
    assert ms[MilestoneKind.OUT_FOR_DELIVERY].status is MilestoneStatus.DONE
    assert ms[MilestoneKind.OUT_FOR_DELIVERY].actual is None
    assert ms[MilestoneKind.PICKED].status is MilestoneStatus.DONE


def test_goods_issue_marks_production_and_quality_done_behind_a_lagging_mes() -> None:
    view = make_view(
        orders=[make_production_order(status="STARTED")], deliveries=[shipped_delivery()]
    )
    ms = by_kind(milestones(view, NOW))
    for kind in (MilestoneKind.PRODUCTION_COMPLETED, MilestoneKind.QUALITY_RELEASED):
        assert (ms[kind].status, ms[kind].actual) == (MilestoneStatus.DONE, None)
    # Goods issued 6 h ago and still no carrier scan: the pickup expected then is overdue.
    pickup = ms[MilestoneKind.CARRIER_PICKED_UP]
    assert (pickup.status, pickup.expected) == (MilestoneStatus.OVERDUE, NOW - 6 * HOUR)


def test_partial_shipment_reaches_no_logistics_milestone() -> None:
    view = make_view(
        orders=[
            make_production_order("1000001", "CONFIRMED", item="10"),
            make_production_order("1000002", "STARTED", item="20"),
        ],
        lots=[make_lot("1000001", decision="A")],
        deliveries=[shipped_delivery(items=("10",))],
        shipments=[make_shipment(tag="Delivered", delivered_at=NOW - HOUR)],
    )
    assert not view.is_delivered
    ms = by_kind(milestones(view, NOW))
    assert ms[MilestoneKind.DELIVERED].status is not MilestoneStatus.DONE
    assert ms[MilestoneKind.GOODS_ISSUED].status is not MilestoneStatus.DONE
    assert ms[MilestoneKind.PRODUCTION_COMPLETED].status is not MilestoneStatus.DONE
    assert ms[MilestoneKind.PRODUCTION_STARTED].status is MilestoneStatus.DONE


def test_material_shortage_milestone_expects_the_receipt() -> None:
    view = make_view(
        orders=[make_production_order(start=NOW + HOUR)],
        components=[make_component(available=0, shortage=10, receipt=dt.date(2024, 5, 20))],
    )
    ms = by_kind(milestones(view, NOW))
    materials = ms[MilestoneKind.MATERIALS_AVAILABLE]
    assert materials.status is MilestoneStatus.PENDING
    assert materials.expected == dt.datetime(2024, 5, 20, tzinfo=dt.UTC)
    # The order was due to start at NOW + 1 h; by NOW + 2 h that plan has passed.
    later = by_kind(milestones(view, NOW + 2 * HOUR))
    assert later[MilestoneKind.MATERIALS_AVAILABLE].status is MilestoneStatus.OVERDUE


def test_a_cancelled_order_has_no_prediction_no_risk_and_no_exceptions() -> None:
    from resolvers.enums import DeliveryRisk
    from resolvers.exception_rules import detect, next_due
    from resolvers.prediction import delivery_risk

    cancelled = STAGE_CASES[OrderStage.CANCELLED]()
    p = predict(cancelled, NOW)
    assert p.held_by == ("cancelled",)  # no date to give: the API shows none
    assert delivery_risk(cancelled, p, NOW) is DeliveryRisk.CANCELLED
    assert detect(cancelled, None, NOW) == [] and next_due(cancelled, NOW) is None
    # The same order with its item still wanted is open, and late past its promise.
    wanted = make_view(sales_order=make_sales_order(items=[make_item("10", 100)]),
                       orders=[make_production_order(status="RELEASED")])
    assert stage(wanted) is not OrderStage.CANCELLED
    assert delivery_risk(wanted, predict(wanted, NOW), NOW) is not DeliveryRisk.CANCELLED
    # Every item cut after part of it shipped is not a cancelled order: what left is on its way.
    shipped = STAGE_CASES[OrderStage.PARTIALLY_DELIVERED]()
    for item in shipped.sales_order.items:
        item.rejection_reason = "Z1"
    assert stage(shipped) is not OrderStage.CANCELLED

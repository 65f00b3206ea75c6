"""The GraphQL types of the order graph.

Types are thin: they hold source records and read attributes. Anything that needs another
source goes through ``resolvers.fetch`` (and so through the request's loaders); anything
derived is a pure function in ``stage.py`` / ``prediction.py``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Annotated, Any, TypeVar

import strawberry
from strawberry import Info

from sources.records import (
    ComponentAvailability as ComponentRecord,
)
from sources.records import (
    Customer as CustomerRecord,
)
from sources.records import (
    InspectionLot as InspectionLotRecord,
)
from sources.records import (
    OutboundDelivery as DeliveryRecord,
)
from sources.records import (
    ProductionOrder as ProductionOrderRecord,
)
from sources.records import (
    SalesOrder,
)
from sources.records import (
    SalesOrderItem as SalesOrderItemRecord,
)
from sources.records import (
    Shipment as ShipmentRecord,
)
from sources.records import (
    WorkCenter as WorkCenterRecord,
)

from . import enums, fetch, prediction, stage
from . import freshness as fresh
from .context import Context
from .freshness import Freshness
from .history import HistoryPage, order_history
from .lazy import schema_type
from .listing import OrderConnection, OrderFilter, list_orders
from .view import ItemQuantities, OrderView
from .workflow_types import EscalationType, WorkflowEntry, order_escalation, order_workflow_history

T = TypeVar("T")

# The pure enums become GraphQL enums (strawberry only adds a definition to the class).
ProductionStatus = strawberry.enum(enums.ProductionStatus, description="Sum-up of an order's production.")
MaterialsStatus = strawberry.enum(enums.MaterialsStatus, description="Sum-up of component availability.")
QualityStatus = strawberry.enum(enums.QualityStatus, description="Sum-up of an order's inspection lots.")
LogisticsStatus = strawberry.enum(enums.LogisticsStatus, description="Sum-up of deliveries and shipments.")
OrderStage = strawberry.enum(enums.OrderStage, description="How far an order has come.")
MilestoneKind = strawberry.enum(enums.MilestoneKind)
MilestoneStatus = strawberry.enum(enums.MilestoneStatus)
DeliveryRisk = strawberry.enum(enums.DeliveryRisk, description="Predicted delivery against the promise.")


@strawberry.enum(description="Commercial priority of a customer, inherited by its orders.")
class CommercialPriority(Enum):
    STRATEGIC = "STRATEGIC"
    HIGH = "HIGH"
    NORMAL = "NORMAL"
    LOW = "LOW"


@strawberry.enum(description="SAP processing status: A not yet, B partially, C completely processed.")
class ProcessingStatus(Enum):
    NOT_STARTED = "A"
    PARTIAL = "B"
    COMPLETE = "C"


@strawberry.enum(description="Result of a usage decision.")
class Valuation(Enum):
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"


def _processing(code: str) -> ProcessingStatus:
    try:
        return ProcessingStatus(code)
    except ValueError:
        return ProcessingStatus.NOT_STARTED


def _ctx(info: Info) -> Context:
    return info.context


FRESH_DOC = (
    "How current this section is: one entry per source system that answered. A source that "
    "failed has no entry; the fields it feeds are null with a typed error."
)


# --- customers ----------------------------------------------------------------------


@strawberry.type(description="A customer (ERP business partner).")
class Customer:
    record: strawberry.Private[CustomerRecord]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.record.customer)

    @strawberry.field
    def name(self) -> str:
        return self.record.customer_name

    @strawberry.field
    def country(self) -> str | None:
        return self.record.country

    @strawberry.field(description="Region of the ship-to address (ISO 3166-2 subdivision, e.g. BY).")
    def region(self) -> str | None:
        return self.record.region

    @strawberry.field(description="Time zone of the ship-to address (IANA); its delivery dates are local dates there.")
    def time_zone(self) -> str | None:
        return self.record.time_zone

    @strawberry.field(description="STRATEGIC / HIGH / NORMAL / LOW; orders inherit it.")
    def commercial_priority(self) -> CommercialPriority:
        return CommercialPriority(self.record.commercial_priority)

    @strawberry.field(description="This customer's orders, in order number order.")
    async def orders(
        self,
        info: Info,
        first: int = 50,
        after: str | None = None,
        filter: OrderFilter | None = None,
    ) -> OrderConnection:
        f = filter or OrderFilter()
        f.customer = strawberry.ID(self.record.customer)
        return await list_orders(info, first, after, f)


# --- ERP: the order itself -------------------------------------------------------


@strawberry.type(description="An amount in a currency.")
class Money:
    amount: float
    currency: str


@strawberry.type(description="One schedule line of an item: a quantity promised for a date (ERP).")
class ScheduleLine:
    line: str
    requested_delivery_date: dt.date = strawberry.field(description="The ship-to's local date.")
    confirmed_delivery_date: dt.date | None = strawberry.field(description="The ship-to's local date.")
    quantity: float = strawberry.field(description="Ordered on this line.")
    confirmed_quantity: float
    delivered_quantity: float = strawberry.field(description="Delivered against this line, as the ERP books it.")
    open_quantity: float = strawberry.field(description="Confirmed and not yet delivered.")
    unit: str
    goods_issue_date: dt.date | None = strawberry.field(
        description="Planned goods issue when the order was confirmed (the plant's local date)."
    )


@strawberry.type(description="A sales order item: its promise, and how much of it was made, shipped and is still owed.")
class OrderItem:
    record: strawberry.Private[SalesOrderItemRecord]
    order: strawberry.Private[SalesOrder]

    @strawberry.field
    def item(self) -> strawberry.ID:
        return strawberry.ID(self.record.sales_order_item)

    @strawberry.field
    def material(self) -> str:
        return self.record.material

    @strawberry.field(description="Ordered quantity.")
    def quantity(self) -> float:
        return self.record.requested_quantity

    @strawberry.field(description="Unit of every quantity of the item.")
    def unit(self) -> str:
        return self.record.requested_quantity_unit

    @strawberry.field
    def net_value(self) -> float:
        return self.record.net_amount

    @strawberry.field(description="The item's promise: its latest confirmed schedule line (the ship-to's local date).")
    def confirmed_delivery_date(self) -> dt.date | None:
        return self.record.confirmed_delivery_date

    @strawberry.field
    def confirmed_quantity(self) -> float | None:
        lines = self.record.schedule_lines
        return sum(ln.confirmed_quantity for ln in lines) if lines else self.record.confirmed_quantity

    @strawberry.field(description="ERP delivery status: A not delivered, B partially, C fully (or rejected).")
    def delivery_status(self) -> ProcessingStatus:
        return _processing(self.record.delivery_status)

    @strawberry.field(description="Why the rest of the item will not ship (SalesDocumentRjcnReason); null if it will.")
    def rejection_reason(self) -> str | None:
        return self.record.rejection_reason or None

    @strawberry.field(description="The item's schedule lines: quantities promised per date.")
    def schedule_lines(self) -> list[ScheduleLine]:
        unit = self.record.requested_quantity_unit
        return [
            ScheduleLine(
                line=ln.schedule_line,
                requested_delivery_date=ln.requested_delivery_date,
                confirmed_delivery_date=ln.confirmed_delivery_date,
                quantity=ln.order_quantity,
                confirmed_quantity=ln.confirmed_quantity,
                delivered_quantity=ln.delivered_quantity,
                open_quantity=ln.open_confirmed_quantity,
                unit=ln.order_quantity_unit or unit,
                goods_issue_date=ln.goods_issue_date,
            )
            for ln in self.record.schedule_lines
        ]

    @strawberry.field(description="Confirmed yield of its production orders (rejected batches not counted); null from stock.")
    def produced_quantity(self, info: Info) -> float | None:
        return self._quantity(info, lambda q: q.produced)

    @strawberry.field(description="In deliveries whose goods left the plant (goods issue).")
    def shipped_quantity(self, info: Info) -> float | None:
        return self._quantity(info, lambda q: q.shipped)

    @strawberry.field(description="In deliveries the carrier delivered.")
    def delivered_quantity(self, info: Info) -> float | None:
        return self._quantity(info, lambda q: q.delivered)

    @strawberry.field(description="Still owed: ordered minus shipped; 0 once the item is rejected.")
    def open_quantity(self, info: Info) -> float | None:
        return self._quantity(info, lambda q: q.open)

    @strawberry.field(description="The open quantity's share of the item's net value.")
    def open_value(self, info: Info) -> Money | None:
        currency = self.order.transaction_currency
        return self._quantity(info, lambda q: Money(amount=q.open_value, currency=currency))

    def _quantity(self, info: Info, read: Callable[[ItemQuantities], Any]) -> Any:
        """One of the item's cross-system quantities, from the order's view."""
        key = self.record.sales_order_item
        return on_view(_ctx(info), self.order, lambda view: _pick_quantity(view, key, read))


def _pick_quantity(view: OrderView, item: str, read: Callable[[ItemQuantities], Any]) -> Any:
    q = next((q for q in view.item_quantities if q.item == item), None)
    return read(q) if q is not None else None


@strawberry.type(description="ERP processing and block statuses of the order.")
class ErpStatus:
    overall_process_status: ProcessingStatus
    overall_delivery_status: ProcessingStatus
    credit_blocked: bool
    delivery_block_reason: str | None
    last_changed_at: dt.datetime | None


# --- MES ------------------------------------------------------------------------


@strawberry.type(description="A work centre and its shop-floor state.")
class WorkCenter:
    record: strawberry.Private[WorkCenterRecord]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.record.work_center)

    @strawberry.field
    def name(self) -> str:
        return self.record.work_center_text

    @strawberry.field(description="UP or DOWN.")
    def state(self) -> str:
        return self.record.state

    @strawberry.field
    def down_since(self) -> dt.datetime | None:
        return self.record.down_since

    @strawberry.field
    def expected_up_at(self) -> dt.datetime | None:
        return self.record.expected_up_at


@strawberry.type(description="A production (manufacturing) order pegged to an order item.")
class ProductionOrder:
    record: strawberry.Private[ProductionOrderRecord]

    @strawberry.field(description="ManufacturingOrder number in the MES.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.record.manufacturing_order)

    @strawberry.field
    def material(self) -> str:
        return self.record.material

    @strawberry.field
    def sales_order_item(self) -> str:
        return self.record.sales_order_item

    @strawberry.field(description="MES status: CREATED, RELEASED, STARTED, PARTIALLY_CONFIRMED, CONFIRMED, ...")
    def status(self) -> str:
        return self.record.status

    @strawberry.field
    def total_quantity(self) -> float:
        return self.record.total_quantity

    @strawberry.field
    def confirmed_yield_quantity(self) -> float:
        return self.record.confirmed_yield_qty

    @strawberry.field
    def confirmed_scrap_quantity(self) -> float:
        return self.record.confirmed_scrap_qty

    @strawberry.field
    def planned_scrap_quantity(self) -> float:
        return self.record.planned_scrap_qty

    @strawberry.field
    def unit(self) -> str:
        return self.record.production_unit

    @strawberry.field
    def work_center_id(self) -> str:
        return self.record.work_center

    @strawberry.field(description="The work centre with its live state (one more MES read).")
    def work_center(self, info: Info) -> WorkCenter | None:
        ctx = _ctx(info)
        wc = self.record.work_center
        view = ctx.ready.get(self.record.sales_order)
        known = view.work_centers.get(wc, _MISSING) if view is not None else _MISSING
        return when_ready(known, lambda: ctx.loaders.work_center.load(wc), _work_center)

    @strawberry.field
    def scheduled_start(self) -> dt.datetime:
        return self.record.scheduled_start_date

    @strawberry.field
    def scheduled_end(self) -> dt.datetime:
        return self.record.scheduled_end_date

    @strawberry.field
    def released_at(self) -> dt.datetime | None:
        return self.record.actual_release_date

    @strawberry.field
    def started_at(self) -> dt.datetime | None:
        return self.record.actual_start_date

    @strawberry.field
    def completed_at(self) -> dt.datetime | None:
        return self.record.actual_end_date

    @strawberry.field
    def batch(self) -> str | None:
        return self.record.batch


@strawberry.type(description="Production of the order (MES).")
class ProductionSection:
    order: strawberry.Private[SalesOrder]

    @strawberry.field(description="Sum-up of the order's production orders.")
    def status(self, info: Info) -> ProductionStatus | None:
        ctx = _ctx(info)
        return on_view(ctx, self.order, lambda view: _production_status(ctx, view), fetch.production_view)

    @strawberry.field
    def orders(self, info: Info) -> list[ProductionOrder] | None:
        return _from_view(_ctx(info), self.order, lambda v: v.production_orders, fetch.production_orders, ProductionOrder)

    @strawberry.field(description=FRESH_DOC)
    async def freshness(self, info: Info) -> list[Freshness]:
        return await fresh.of_production(_ctx(info), self.order)


# --- WMS ------------------------------------------------------------------------


@strawberry.type(description="Availability of one bill-of-material component for one production order.")
class ComponentAvailability:
    record: strawberry.Private[ComponentRecord]

    @strawberry.field
    def production_order(self) -> str:
        return self.record.manufacturing_order

    @strawberry.field
    def material(self) -> str:
        return self.record.material

    @strawberry.field
    def required_quantity(self) -> float:
        return self.record.required_quantity

    @strawberry.field
    def available_quantity(self) -> float:
        return self.record.available_quantity

    @strawberry.field
    def shortage_quantity(self) -> float:
        return self.record.shortage_quantity

    @strawberry.field
    def unit(self) -> str:
        return self.record.base_unit

    @strawberry.field
    def storage_location(self) -> str:
        return self.record.storage_location

    @strawberry.field(description="When a short component is expected in (the plant's local date).")
    def expected_receipt_date(self) -> dt.date | None:
        return self.record.expected_receipt_date


@strawberry.type(description="Component availability for the order's production (WMS).")
class MaterialsSection:
    order: strawberry.Private[SalesOrder]

    @strawberry.field
    def status(self, info: Info) -> MaterialsStatus | None:
        return on_view(_ctx(info), self.order, stage.materials_status, fetch.materials_view)

    @strawberry.field
    def components(self, info: Info) -> list[ComponentAvailability] | None:
        return _from_view(_ctx(info), self.order, lambda v: v.components, fetch.components, ComponentAvailability)

    @strawberry.field(description="Only the components that are short.")
    def shortages(self, info: Info) -> list[ComponentAvailability] | None:
        return _from_view(
            _ctx(info), self.order, lambda v: v.components, fetch.components, ComponentAvailability,
            keep=lambda c: c.shortage_quantity > 0,
        )

    @strawberry.field(description=FRESH_DOC)
    async def freshness(self, info: Info) -> list[Freshness]:
        return await fresh.of_materials(_ctx(info), self.order)


# --- QMS ------------------------------------------------------------------------


@strawberry.type(description="A usage decision on an inspection lot.")
class UsageDecision:
    code: str
    code_group: str
    valuation: Valuation
    decided_at: dt.datetime | None
    quality_score: float | None


@strawberry.type(description="An inspection lot; without a usage decision it holds the batch.")
class InspectionLot:
    record: strawberry.Private[InspectionLotRecord]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.record.inspection_lot)

    @strawberry.field
    def material(self) -> str:
        return self.record.material

    @strawberry.field
    def batch(self) -> str:
        return self.record.batch

    @strawberry.field
    def production_order(self) -> str:
        return self.record.manufacturing_order

    @strawberry.field
    def origin(self) -> str:
        return self.record.inspection_lot_origin

    @strawberry.field
    def created_at(self) -> dt.datetime:
        return self.record.created_at

    @strawberry.field
    def has_usage_decision(self) -> bool:
        return self.record.has_usage_decision

    @strawberry.field
    def usage_decision(self) -> UsageDecision | None:
        ud = self.record.usage_decision
        if ud is None:
            return None
        return UsageDecision(
            code=ud.code,
            code_group=ud.code_group,
            valuation=Valuation(ud.valuation) if ud.valuation in ("ACCEPTED", "REJECTED") else Valuation.REJECTED,
            decided_at=ud.decided_at,
            quality_score=ud.quality_score,
        )


@strawberry.type(description="Quality inspection of the order's batches (QMS).")
class QualitySection:
    order: strawberry.Private[SalesOrder]

    @strawberry.field
    def status(self, info: Info) -> QualityStatus | None:
        return on_view(_ctx(info), self.order, stage.quality_status, fetch.quality_view)

    @strawberry.field
    def inspection_lots(self, info: Info) -> list[InspectionLot] | None:
        return _from_view(_ctx(info), self.order, lambda v: v.inspection_lots, fetch.inspection_lots, InspectionLot)

    @strawberry.field(description=FRESH_DOC)
    async def freshness(self, info: Info) -> list[Freshness]:
        return await fresh.of_quality(_ctx(info), self.order)


# --- WMS deliveries + TMS --------------------------------------------------------


@strawberry.type(description="One carrier scan (EDI 214 status code and AfterShip-style tag).")
class TrackingEvent:
    code: str
    tag: str
    occurred_at: dt.datetime
    location: str | None
    description: str | None


@strawberry.type(description="Proof of delivery from the carrier.")
class ProofOfDelivery:
    signed_by: str
    delivered_at: dt.datetime
    document: str | None


@strawberry.type(description="What a shipment carries: one delivery item and its quantity.")
class ShipmentItem:
    delivery: str
    delivery_item: str
    sales_order: str
    sales_order_item: str
    material: str
    quantity: float
    unit: str


@strawberry.type(description="A carrier shipment with its tracking history (TMS).")
class Shipment:
    record: strawberry.Private[ShipmentRecord]

    @strawberry.field
    def tracking_number(self) -> str:
        return self.record.tracking_number

    @strawberry.field
    def carrier(self) -> str:
        return self.record.carrier

    @strawberry.field(description="AfterShip-style tag: InTransit, OutForDelivery, Delivered, Exception, ...")
    def status(self) -> str:
        return self.record.tag

    @strawberry.field(description="Latest EDI 214 shipment status code (X3, AF, X6, X1, D1, SD, ...).")
    def status_code(self) -> str | None:
        return self.record.status_code

    @strawberry.field
    def picked_up_at(self) -> dt.datetime | None:
        return self.record.picked_up_at

    @strawberry.field(description="The carrier's current ETA.")
    def estimated_delivery_at(self) -> dt.datetime | None:
        return self.record.estimated_delivery_at

    @strawberry.field
    def eta_window_start(self) -> dt.datetime | None:
        return self.record.eta_window_start

    @strawberry.field
    def eta_window_end(self) -> dt.datetime | None:
        return self.record.eta_window_end

    @strawberry.field
    def delivered_at(self) -> dt.datetime | None:
        return self.record.delivered_at

    @strawberry.field
    def proof_of_delivery(self) -> ProofOfDelivery | None:
        pod = self.record.proof_of_delivery
        if pod is None:
            return None
        return ProofOfDelivery(signed_by=pod.signed_by, delivered_at=pod.delivered_at, document=pod.document)

    @strawberry.field
    def events(self) -> list[TrackingEvent]:
        return [
            TrackingEvent(code=e.code, tag=e.tag, occurred_at=e.occurred_at, location=e.location, description=e.description)
            for e in self.record.events
        ]

    @strawberry.field(description="What the carrier took: delivery items and quantities.")
    def items(self) -> list[ShipmentItem]:
        return [
            ShipmentItem(
                delivery=i.delivery_document,
                delivery_item=i.delivery_document_item,
                sales_order=i.sales_order,
                sales_order_item=i.sales_order_item,
                material=i.material,
                quantity=i.quantity,
                unit=i.quantity_unit,
            )
            for i in self.record.items
        ]


@strawberry.type(description="One item of an outbound delivery: what it ships of which order item (WMS).")
class DeliveryItem:
    item: str
    sales_order: str
    sales_order_item: str
    material: str
    quantity: float = strawberry.field(description="ActualDeliveryQuantity.")
    unit: str
    batch: str | None


@strawberry.type(description="An outbound delivery (WMS): picking, packing, goods issue.")
class OutboundDelivery:
    record: strawberry.Private[DeliveryRecord]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.record.delivery_document)

    @strawberry.field(description="The planned goods-issue day (DeliveryDate; the plant's local date).")
    def delivery_date(self) -> dt.date:
        return self.record.delivery_date

    @strawberry.field
    def shipping_point(self) -> str:
        return self.record.shipping_point

    @strawberry.field
    def picking_status(self) -> ProcessingStatus:
        return _processing(self.record.overall_picking_status)

    @strawberry.field
    def packing_status(self) -> ProcessingStatus:
        return _processing(self.record.overall_packing_status)

    @strawberry.field
    def goods_movement_status(self) -> ProcessingStatus:
        return _processing(self.record.overall_goods_movement_status)

    @strawberry.field(description="When picking was confirmed.")
    def picked_at(self) -> dt.datetime | None:
        return self.record.actual_picking_date_time

    @strawberry.field(description="When packing was confirmed.")
    def packed_at(self) -> dt.datetime | None:
        return self.record.actual_packing_date_time

    @strawberry.field(description="Goods issue time (ActualGoodsMovementDate).")
    def goods_issued_at(self) -> dt.datetime | None:
        return self.record.actual_goods_movement_date

    @strawberry.field(description="What the delivery ships: order items and quantities.")
    def items(self) -> list[DeliveryItem]:
        return [
            DeliveryItem(
                item=i.delivery_document_item,
                sales_order=i.reference_sd_document,
                sales_order_item=i.reference_sd_document_item,
                material=i.material,
                quantity=i.actual_delivery_quantity,
                unit=i.delivery_quantity_unit,
                batch=i.batch,
            )
            for i in self.record.items
        ]

    @strawberry.field
    def bill_of_lading(self) -> str | None:
        return self.record.bill_of_lading

    @strawberry.field
    async def shipments(self, info: Info) -> list[Shipment] | None:
        ships = await _ctx(info).loaders.shipments.load(self.record.delivery_document)
        return [Shipment(record=s) for s in ships]


@strawberry.type(description="Deliveries and carrier shipments of the order (WMS + TMS).")
class LogisticsSection:
    order: strawberry.Private[SalesOrder]

    @strawberry.field
    def status(self, info: Info) -> LogisticsStatus | None:
        return on_view(_ctx(info), self.order, stage.logistics_status, fetch.logistics_view)

    @strawberry.field
    def deliveries(self, info: Info) -> list[OutboundDelivery] | None:
        return _from_view(_ctx(info), self.order, lambda v: v.deliveries, fetch.deliveries, OutboundDelivery)

    @strawberry.field
    def shipments(self, info: Info) -> list[Shipment] | None:
        return _from_view(_ctx(info), self.order, lambda v: v.shipments, fetch.shipments, Shipment)

    @strawberry.field(description="The carrier's latest ETA, once shipped.")
    def eta(self, info: Info) -> dt.datetime | None:
        return _records(_ctx(info), self.order, lambda v: v.shipments, fetch.shipments, _latest_eta)

    @strawberry.field(description=FRESH_DOC)
    async def freshness(self, info: Info) -> list[Freshness]:
        return await fresh.of_logistics(_ctx(info), self.order)


# --- derived ---------------------------------------------------------------------


@strawberry.type(description="One step of the order's lifecycle: planned, expected and actual.")
class Milestone:
    kind: MilestoneKind
    status: MilestoneStatus
    planned: dt.datetime | None
    expected: dt.datetime | None
    actual: dt.datetime | None
    source: str


# --- the order -------------------------------------------------------------------


@strawberry.type(description="A customer order across ERP, MES, WMS, QMS and TMS.")
class Order:
    record: strawberry.Private[SalesOrder]

    @strawberry.field(description="Sales order number (ERP).")
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.record.sales_order)

    @strawberry.field
    def customer_id(self) -> strawberry.ID:
        return strawberry.ID(self.record.sold_to_party)

    @strawberry.field
    def customer(self, info: Info) -> Customer | None:
        return _on_customer(_ctx(info), self.record, lambda rec: Customer(record=rec) if rec else None)

    @strawberry.field
    def purchase_order_by_customer(self) -> str | None:
        return self.record.purchase_order_by_customer

    @strawberry.field(description="When the order was entered (the plant's local date).")
    def order_date(self) -> dt.date:
        return self.record.sales_order_date

    @strawberry.field(description="The delivery date the customer asked for (the ship-to's local date).")
    def requested_delivery_date(self) -> dt.date:
        return self.record.requested_delivery_date

    @strawberry.field(description="The delivery promise (confirmed schedule line; the ship-to's local date).")
    def confirmed_delivery_date(self) -> dt.date | None:
        return self.record.confirmed_delivery_date

    @strawberry.field
    def net_value(self) -> Money:
        return Money(amount=self.record.total_net_amount, currency=self.record.transaction_currency)

    @strawberry.field(description="Inherited from the customer.")
    def commercial_priority(self, info: Info) -> CommercialPriority | None:
        return _on_customer(_ctx(info), self.record, lambda rec: CommercialPriority(rec.commercial_priority if rec else "NORMAL"))

    @strawberry.field
    def items(self) -> list[OrderItem]:
        return [OrderItem(record=i, order=self.record) for i in self.record.items]

    @strawberry.field
    def erp_status(self) -> ErpStatus:
        r = self.record
        return ErpStatus(
            overall_process_status=_processing(r.overall_sd_process_status),
            overall_delivery_status=_processing(r.overall_delivery_status),
            credit_blocked=r.total_credit_check_status == "B",
            delivery_block_reason=r.delivery_block_reason or None,
            last_changed_at=r.last_change_date_time,
        )

    @strawberry.field(description="How current the order's own (ERP) fields are.")
    async def freshness(self, info: Info) -> list[Freshness]:
        return await fresh.of_order(_ctx(info), self.record)

    @strawberry.field
    def production(self) -> ProductionSection:
        return ProductionSection(order=self.record)

    @strawberry.field
    def materials(self) -> MaterialsSection:
        return MaterialsSection(order=self.record)

    @strawberry.field
    def quality(self) -> QualitySection:
        return QualitySection(order=self.record)

    @strawberry.field
    def logistics(self) -> LogisticsSection:
        return LogisticsSection(order=self.record)

    @strawberry.field(description="The order's cross-system timeline from the event journal, oldest first.")
    async def history(
        self, info: Info, first: int = 50, after: str | None = None
    ) -> HistoryPage:
        return await order_history(info, self.record.sales_order, first, after)

    @strawberry.field(description="Internal roles: the workflow's audit trail for this order (its exceptions' "
        "acknowledgements, owners, comments, snoozes, resolutions, and its escalations), oldest first.")
    async def workflow_history(
        self, info: Info
    ) -> list[WorkflowEntry]:
        return await order_workflow_history(info, self.record.sales_order)

    @strawberry.field(description="Internal roles: the order's latest priority escalation (see `active`), if any.")
    async def escalation(
        self, info: Info
    ) -> EscalationType | None:
        return await order_escalation(info, self.record.sales_order)

    @strawberry.field(description="How far the order has come (derived from all five systems).")
    def stage(self, info: Info) -> OrderStage | None:
        return on_view(_ctx(info), self.record, stage.stage)

    @strawberry.field(description="Lifecycle milestones, each planned / expected / actual.")
    def milestones(self, info: Info) -> list[Milestone] | None:
        ctx = _ctx(info)
        return on_view(ctx, self.record, lambda view: _milestones(ctx, view))

    @strawberry.field(
        description="When the order is predicted to reach the customer (the ship-to's local date). "
        "null while a block holds the order: no date is known until it is released."
    )
    def predicted_delivery_date(self, info: Info) -> dt.date | None:
        ctx = _ctx(info)
        return on_view(ctx, self.record, lambda view: _predicted_date(_predict(ctx, view)))

    @strawberry.field(description="Predicted delivery against the confirmed date.")
    def delivery_risk(self, info: Info) -> DeliveryRisk | None:
        ctx = _ctx(info)
        return on_view(ctx, self.record, lambda view: prediction.delivery_risk(view, _predict(ctx, view), ctx.now, ctx.prediction_params))

    @strawberry.field(
        description="Exceptions hitting this order, computed live from its records; each restricted to this "
        "order (its severity, days late, value at risk). `exception(id)` lists every order one hits."
    )
    async def exceptions(
        self, info: Info
    ) -> list[Annotated[OrderException, strawberry.lazy("resolvers.exception_types")]] | None:  # noqa: F821
        # OrderException links back to orders, so its module sits above this one: named here.
        node = schema_type(info, "OrderException")
        return [node(record=r, for_order=True) for r in await fetch.order_exceptions(_ctx(info), self.record)]


def _predicted_date(pred: prediction.Prediction) -> dt.date | None:
    # A held order's date is only the earliest possible: say "not known" rather than a date.
    return None if pred.held_by else pred.predicted_delivery_date


def _predict(ctx: Context, view: OrderView) -> prediction.Prediction:
    """One prediction per order and request, shared by the fields that need it."""
    key = view.sales_order.sales_order
    pred = ctx.predictions.get(key)
    if pred is None:
        pred = ctx.predictions[key] = prediction.predict(view, ctx.now, ctx.prediction_params)
    return pred


def _milestones(ctx: Context, view: OrderView) -> list[Milestone]:
    return [
        Milestone(kind=m.kind, status=m.status, planned=m.planned, expected=m.expected, actual=m.actual, source=m.source)
        for m in stage.milestones(view, ctx.now, _predict(ctx, view), ctx.prediction_params)
    ]


def _latest_eta(ships: list) -> dt.datetime | None:
    etas = [s.estimated_delivery_at for s in ships if s.estimated_delivery_at]
    return max(etas) if etas else None


# --- one body per derived field ---------------------------------------------------------
#
# A derived field is one pure function of what it reads (the order's view, a section's
# records, the customer). When the order was built with its view (resolvers/orders.py:
# a page's views and customers assembled for all its orders at once), the field answers
# at once, with no await, which the fast executor takes in one step; otherwise, as for a
# lone section or after a source fault in the prefetch, it loads only what it reads and
# answers the same function's result as an awaitable (a fault then lands on its own path).

_MISSING: Any = object()


def when_ready(value: Any, load: Callable[[], Awaitable[Any]], compute: Callable[[Any], T]) -> T | Awaitable[T]:
    """``compute(value)`` now, or, when ``value`` is ``_MISSING``, ``compute(await load())``."""
    if value is not _MISSING:
        return compute(value)

    async def later() -> T:
        return compute(await load())

    return later()


def _production_status(ctx: Context, view: OrderView) -> enums.ProductionStatus:
    """The section's status, and until when it holds by the clock (for the response cache)."""
    ctx.clock_bound(stage.production_status_until(view, ctx.instant))
    return stage.production_status(view, ctx.instant)


def on_view(
    ctx: Context,
    order: SalesOrder,
    compute: Callable[[OrderView], T],
    assemble: Callable[[Context, SalesOrder], Awaitable[OrderView]] = fetch.order_view,
) -> T | Awaitable[T]:
    """``compute`` over the order's view: the one built with it, else one ``assemble``d
    (every system's records, or a section's own: ``fetch.production_view`` ...)."""
    view = ctx.ready.get(order.sales_order, _MISSING)
    if view is not _MISSING:  # as when_ready, without a loader closure per field of a page
        return compute(view)
    return when_ready(view, lambda: assemble(ctx, order), compute)


def _records(
    ctx: Context,
    order: SalesOrder,
    records: Callable[[OrderView], list[Any]],
    fetch_records: Callable[[Context, str], Awaitable[list[Any]]],
    compute: Callable[[list[Any]], T],
) -> T | Awaitable[T]:
    """``compute`` over one section's records: from the order's view, else from the
    loaders (only that section's records)."""
    view = ctx.ready.get(order.sales_order)
    if view is not None:  # as when_ready, without a loader closure
        return compute(records(view))
    return when_ready(_MISSING, lambda: fetch_records(ctx, order.sales_order), compute)


def _from_view(
    ctx: Context,
    order: SalesOrder,
    records: Callable[[OrderView], list[Any]],
    fetch_records: Callable[[Context, str], Awaitable[list[Any]]],
    wrap: Callable[..., Any],
    keep: Callable[[Any], bool] | None = None,
) -> Any:
    """A section's records wrapped for GraphQL (those ``keep`` passes)."""
    return _records(ctx, order, records, fetch_records, lambda rs: [wrap(record=r) for r in rs if keep is None or keep(r)])


def _on_customer(ctx: Context, order: SalesOrder, compute: Callable[[CustomerRecord | None], T]) -> T | Awaitable[T]:
    """``compute`` over the order's customer record: the one loaded with its page, else
    from the loader."""
    party = order.sold_to_party
    customer = ctx.ready_customers.get(party, _MISSING)
    if customer is not _MISSING:  # as when_ready, without a loader closure
        return compute(customer)
    return when_ready(customer, lambda: ctx.loaders.customer.load(party), compute)


def _work_center(rec: WorkCenterRecord | None) -> WorkCenter | None:
    return WorkCenter(record=rec) if rec else None

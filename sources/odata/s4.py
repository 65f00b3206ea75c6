"""SAP S/4HANA's public OData v2 APIs, mapped to ordergraph's typed records.

``PROFILES`` names, per record, the service, entity set, key, navigations to expand and
the field a delta read filters on. The ``*_from_s4`` functions turn one entity as SAP
serves it (``/Date(ms)/``, ``PT..H..M..S``, decimals as strings, ``"X"`` flags, expanded
navigations as ``{"results": [...]}``) into a record of ``sources.records``; they raise
``RecordError`` naming the entity, key and field when a payload does not fit.

Covered fields (SAP name → record attribute):

``A_SalesOrder`` (API_SALES_ORDER_SRV) → ``SalesOrder``
    SalesOrder, SoldToParty, SalesOrderDate, RequestedDeliveryDate, SalesOrderType,
    PurchaseOrderByCustomer, TotalNetAmount, TransactionCurrency, OverallSDProcessStatus,
    OverallDeliveryStatus, TotalCreditCheckStatus, TotalBlockStatus, DeliveryBlockReason,
    LastChangeDateTime; ``confirmed_delivery_date`` = the latest confirmed schedule line
    of the items.
``A_SalesOrderItem`` (``to_Item``) → ``SalesOrderItem``
    SalesOrderItem, Material, RequestedQuantity, RequestedQuantityUnit, NetAmount,
    DeliveryStatus, SalesDocumentRjcnReason (a rejected item is kept with its reason).
``A_SalesOrderScheduleLine`` (``to_Item/to_ScheduleLine``) → ``SalesOrderScheduleLine``
    ScheduleLine, RequestedDeliveryDate, ScheduleLineOrderQuantity, OrderQuantityUnit,
    ConfirmedDeliveryDate, ConfdOrderQtyByMatlAvailCheck, DeliveredQtyInOrderQtyUnit,
    OpenConfdDelivQtyInOrdQtyUnit, ProductAvailabilityDate + ProductAvailabilityTime,
    LoadingDate, GoodsIssueDate; the item's ``confirmed_delivery_date`` is the latest line
    with a confirmed quantity and ``confirmed_quantity`` their sum.
``A_Customer`` / ``A_BusinessPartner`` (API_BUSINESS_PARTNER) → ``Customer``
    Customer, CustomerName (CustomerFullName, BusinessPartnerFullName as fall-backs),
    Country, Region and AddressTimeZone of the first ``to_BusinessPartnerAddress``,
    LastChangeDate + LastChangeTime;
    Language (else the partner's CorrespondenceLanguage) for the language of notices;
    commercial priority from ``CustomerClassification`` (a mapping the plant sets; it is
    not a standard SAP field).
``A_ProductionOrder_2`` (API_PRODUCTION_ORDER_2_SRV) → ``ProductionOrder``
    ManufacturingOrder, Material, SalesOrder, SalesOrderItem, TotalQuantity,
    ProductionPlant, ProductionUnit, MfgOrderScheduledStartDate/Time,
    MfgOrderScheduledEndDate/Time, MfgOrderPlannedStartDate/Time, MfgOrderPlannedEndDate/Time,
    MfgOrderActualReleaseDate, MfgOrderConfirmedYieldQty,
    MfgOrderPlannedScrapQty, MfgOrderConfirmedScrapQty (where served), LastChangeDateTime
    (SAP's decimal timestamp); the status from the OrderIs… flags; the work centre, actual
    start and end from ``to_ProductionOrderOperation`` (WorkCenter,
    OpActualExecutionStart/EndDate/Time); the batch from ``to_ProductionOrderItem``.
``A_OutbDeliveryHeader`` / ``A_OutbDeliveryItem`` (API_OUTBOUND_DELIVERY_SRV;v=0002) → ``OutboundDelivery``
    DeliveryDocument, ShipToParty, DeliveryDate, ShippingPoint, OverallPickingStatus,
    OverallPackingStatus, OverallGoodsMovementStatus, ActualGoodsMovementDate/Time,
    BillOfLading, LastChangeDate (a day: SAP keeps no change time on the header); items
    DeliveryDocumentItem, ReferenceSDDocument(+Item), Material, ActualDeliveryQuantity,
    DeliveryQuantityUnit, Batch; the header's sales order is the first item's ReferenceSDDocument.
``A_InspectionLot`` / ``A_InspLotUsageDecision`` (API_INSPECTIONLOT_SRV) → ``InspectionLot``
    InspectionLot, Material, Batch, Plant, InspectionLotOrigin, ManufacturingOrder,
    InspectionLotCreatedOn/Time, InspectionLotEndDate/Time, InspectionLotHasUsageDecision,
    ChangedDateTime; usage decision InspectionLotUsageDecisionCode,
    InspLotUsageDecisionCodeGroup, InspLotUsageDecisionValuation (A accepted, R rejected),
    InspectionLotUsageDecidedOn + InspLotUsageDecisionTime, InspectionLotQualityScore.

SAP dates with a separate time (DATS + TIMS) are in the plant's zone: pass ``tz``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from ..records import (
    COMMERCIAL_PRIORITIES,
    Customer,
    InspectionLot,
    OutboundDelivery,
    OutboundDeliveryItem,
    ProductionOrder,
    Record,
    RecordError,
    SalesOrder,
    SalesOrderItem,
    SalesOrderScheduleLine,
    UsageDecision,
)
from .values import (
    EdmValueError,
    parse_date,
    parse_datetime,
    parse_decimal,
    parse_sap_timestamp,
    parse_time,
)

__all__ = [
    "DEFAULT_PRIORITY_BY_CLASSIFICATION",
    "PROFILES",
    "EntityProfile",
    "customer_from_s4",
    "inspection_lot_from_s4",
    "outbound_delivery_from_s4",
    "production_order_from_s4",
    "results",
    "sales_order_from_s4",
]


@dataclasses.dataclass(frozen=True, slots=True)
class EntityProfile:
    """Where one kind of record lives in S/4HANA and how to read its changes."""

    record: type[Record]
    service: str  # appended to <host>/sap/opu/odata/sap/
    entity_set: str
    key: str
    expand: tuple[str, ...] = ()
    delta_field: str | None = None  # None: the entity set keeps no change time
    delta_kind: str = "datetimeoffset"  # literal kind (sources.odata.values.literal)
    delta_inclusive: bool = False  # day-granular fields must re-read their last day


PROFILES: dict[str, EntityProfile] = {
    "SalesOrder": EntityProfile(
        SalesOrder, "API_SALES_ORDER_SRV", "A_SalesOrder", "SalesOrder",
        expand=("to_Item/to_ScheduleLine",), delta_field="LastChangeDateTime",
    ),
    "Customer": EntityProfile(Customer, "API_BUSINESS_PARTNER", "A_Customer", "Customer"),
    # Customers change through their business partner, which keeps a change day and time.
    "BusinessPartner": EntityProfile(
        Customer, "API_BUSINESS_PARTNER", "A_BusinessPartner", "BusinessPartner",
        expand=("to_Customer", "to_BusinessPartnerAddress"), delta_field="LastChangeDate",
        delta_kind="datetime", delta_inclusive=True,
    ),
    "ProductionOrder": EntityProfile(
        ProductionOrder, "API_PRODUCTION_ORDER_2_SRV", "A_ProductionOrder_2", "ManufacturingOrder",
        expand=("to_ProductionOrderOperation", "to_ProductionOrderItem"), delta_field="LastChangeDateTime",
        delta_kind="timestamp",
    ),
    "OutboundDelivery": EntityProfile(
        OutboundDelivery, "API_OUTBOUND_DELIVERY_SRV;v=0002", "A_OutbDeliveryHeader", "DeliveryDocument",
        expand=("to_DeliveryDocumentItem",), delta_field="LastChangeDate", delta_kind="datetime",
        delta_inclusive=True,
    ),
    "InspectionLot": EntityProfile(
        InspectionLot, "API_INSPECTIONLOT_SRV", "A_InspectionLot", "InspectionLot",
        delta_field="ChangedDateTime",
    ),
    "InspLotUsageDecision": EntityProfile(
        UsageDecision, "API_INSPECTIONLOT_SRV", "A_InspLotUsageDecision", "InspectionLot",
        delta_field="ChangedDateTime",
    ),
}

# CustomerClassification (KUKLA) values are the plant's own; A/B/C/D is SAP's example set.
DEFAULT_PRIORITY_BY_CLASSIFICATION: Mapping[str, str] = {"A": "STRATEGIC", "B": "HIGH", "C": "NORMAL", "D": "LOW"}


def results(value: Any) -> list[dict[str, Any]] | None:
    """An expanded navigation's rows (``{"results": [...]}`` or a list); ``None`` when it
    was not expanded (``{"__deferred": ...}`` or absent)."""
    if isinstance(value, dict):
        if isinstance(value.get("results"), list):
            return [r for r in value["results"] if isinstance(r, dict)]
        if "__deferred" in value:
            return None
        return [value]  # a to-one navigation
    if isinstance(value, list):
        return [r for r in value if isinstance(r, dict)]
    return None


class _Row:
    """Typed access to one entity's fields, with errors that name entity, key and field."""

    def __init__(self, entity: str, row: Any, key_field: str) -> None:
        if not isinstance(row, dict):
            raise RecordError(f"{entity}: expected an object, got {type(row).__name__}")
        self.entity = entity
        self.row = row
        key = row.get(key_field)
        self.where = f"{entity} {key!r}" if key not in (None, "") else entity

    def fail(self, field: str, problem: str) -> RecordError:
        return RecordError(f"{self.where}: {field}: {problem}")

    def raw(self, field: str) -> Any:
        return self.row.get(field)

    def text(self, field: str, *, required: bool = False) -> str | None:
        value = self.row.get(field)
        if value is None or value == "":
            if required:
                raise self.fail(field, "missing")
            return None if value is None else ""
        if isinstance(value, (dict, list, bool)):
            raise self.fail(field, f"expected text, got {type(value).__name__}")
        return str(value)

    def required(self, field: str) -> str:
        value = self.text(field, required=True)
        assert value is not None
        return value

    def _convert(self, field: str, parse: Callable[[Any], Any]) -> Any:
        try:
            return parse(self.row.get(field))
        except EdmValueError as exc:
            raise self.fail(field, str(exc)) from exc

    def date(self, field: str, *, required: bool = False) -> dt.date | None:
        value = self._convert(field, parse_date)
        if value is None and required:
            raise self.fail(field, "missing")
        return value

    def decimal(self, field: str, *, required: bool = False) -> Decimal | None:
        value = self._convert(field, parse_decimal)
        if value is None and required:
            raise self.fail(field, "missing")
        return value

    def number(self, field: str, default: float | None = None, *, required: bool = False) -> float | None:
        value = self.decimal(field, required=required)
        return default if value is None else float(value)

    def datetime_offset(self, field: str) -> dt.datetime | None:
        return self._convert(field, parse_datetime)

    def timestamp(self, field: str) -> dt.datetime | None:
        return self._convert(field, parse_sap_timestamp)

    def date_time(self, date_field: str, time_field: str, tz: dt.tzinfo, *, required: bool = False) -> dt.datetime | None:
        """A DATS + TIMS pair in the plant's zone → an aware UTC datetime."""
        day = self.date(date_field, required=required)
        if day is None:
            return None
        clock = self._convert(time_field, parse_time) if time_field in self.row else None
        local = dt.datetime.combine(day, clock or dt.time(0), tzinfo=tz)
        return local.astimezone(dt.UTC)

    def flag(self, field: str) -> bool:
        value = self.row.get(field)
        if isinstance(value, bool):
            return value
        if value in (None, ""):
            return False
        if isinstance(value, str) and value.upper() == "X":
            return True
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise self.fail(field, f"expected a flag ('X' or ''), got {value!r}")

    def status(self, field: str) -> str:
        """A / B / C processing status; blank (not relevant) reads as A (not yet)."""
        value = self.text(field)
        if value in (None, ""):
            return "A"
        if value not in ("A", "B", "C"):
            raise self.fail(field, f"expected A, B or C, got {value!r}")
        return value


# --- ERP -----------------------------------------------------------------------------


def sales_order_from_s4(row: dict[str, Any]) -> SalesOrder:
    """``A_SalesOrder`` with ``to_Item`` (and ``to_Item/to_ScheduleLine``) → ``SalesOrder``.

    Without expanded items the record has none; without schedule lines the items have no
    confirmed date (not a guessed one).
    """
    r = _Row("A_SalesOrder", row, "SalesOrder")
    items: list[SalesOrderItem] = []
    for item_row in results(row.get("to_Item")) or []:
        items.append(_sales_order_item(r.where, item_row, r.date("RequestedDeliveryDate")))
    confirmed = [i.confirmed_delivery_date for i in items if i.confirmed_delivery_date is not None]
    credit = r.text("TotalCreditCheckStatus") or "A"  # blank: no credit check, so no block
    return SalesOrder(
        sales_order=r.required("SalesOrder"),
        sold_to_party=r.required("SoldToParty"),
        sales_order_date=_required(r, r.date("SalesOrderDate") or r.date("CreationDate"), "SalesOrderDate"),
        requested_delivery_date=_required(r, r.date("RequestedDeliveryDate"), "RequestedDeliveryDate"),
        sales_order_type=r.text("SalesOrderType") or "OR",
        purchase_order_by_customer=r.text("PurchaseOrderByCustomer") or None,
        confirmed_delivery_date=max(confirmed) if confirmed else None,
        total_net_amount=r.number("TotalNetAmount", 0.0) or 0.0,
        transaction_currency=r.text("TransactionCurrency") or "EUR",
        overall_sd_process_status=r.status("OverallSDProcessStatus"),
        overall_delivery_status=r.status("OverallDeliveryStatus"),
        total_credit_check_status=credit,
        total_block_status=r.text("TotalBlockStatus") or "",
        delivery_block_reason=r.text("DeliveryBlockReason") or "",
        last_change_date_time=r.datetime_offset("LastChangeDateTime"),
        items=items,
    )


def _required(r: _Row, value: Any, field: str) -> Any:
    if value is None:
        raise r.fail(field, "missing")
    return value


def _sales_order_item(where: str, row: dict[str, Any], requested: dt.date | None = None) -> SalesOrderItem:
    r = _Row(f"{where} A_SalesOrderItem", row, "SalesOrderItem")
    lines = results(row.get("to_ScheduleLine"))
    confirmed_date: dt.date | None = None
    confirmed_qty: float | None = None
    schedule_lines: list[SalesOrderScheduleLine] = []
    if lines is not None:
        confirmed_qty = 0.0
        for line in lines:
            lr = _Row(f"{r.where} A_SalesOrderScheduleLine", line, "ScheduleLine")
            schedule_lines.append(_schedule_line(lr, requested))
            qty = lr.number("ConfdOrderQtyByMatlAvailCheck", 0.0) or 0.0
            if qty <= 0:
                continue  # a line without a confirmed quantity promises nothing
            confirmed_qty += qty
            day = lr.date("ConfirmedDeliveryDate")
            if day is not None and (confirmed_date is None or day > confirmed_date):
                confirmed_date = day
    # A rejected item (SalesDocumentRjcnReason) is kept with its reason: the domain cuts
    # what it will not deliver, as it does for the REST contract's records.
    return SalesOrderItem(
        sales_order_item=r.required("SalesOrderItem"),
        material=r.required("Material"),
        requested_quantity=r.number("RequestedQuantity", required=True) or 0.0,
        requested_quantity_unit=r.text("RequestedQuantityUnit") or "PC",
        net_amount=r.number("NetAmount", 0.0) or 0.0,
        confirmed_delivery_date=confirmed_date,
        confirmed_quantity=confirmed_qty,
        delivery_status=r.status("DeliveryStatus"),
        rejection_reason=r.text("SalesDocumentRjcnReason") or "",
        schedule_lines=schedule_lines,
    )


def _schedule_line(r: _Row, requested: dt.date | None = None) -> SalesOrderScheduleLine:
    """``A_SalesOrderScheduleLine`` → ``SalesOrderScheduleLine``. The planning dates
    (ProductAvailabilityDate + ProductAvailabilityTime as one UTC date-time, LoadingDate,
    GoodsIssueDate) are read where the release serves them and left empty otherwise; a line
    without its own RequestedDeliveryDate takes the order's."""
    return SalesOrderScheduleLine(
        schedule_line=r.required("ScheduleLine"),
        requested_delivery_date=_required(r, r.date("RequestedDeliveryDate") or requested, "RequestedDeliveryDate"),
        order_quantity=r.number("ScheduleLineOrderQuantity", required=True) or 0.0,
        order_quantity_unit=r.text("OrderQuantityUnit") or "PC",
        confirmed_delivery_date=r.date("ConfirmedDeliveryDate"),
        confirmed_quantity=r.number("ConfdOrderQtyByMatlAvailCheck", 0.0) or 0.0,
        delivered_quantity=r.number("DeliveredQtyInOrderQtyUnit", 0.0) or 0.0,
        open_confirmed_quantity=r.number("OpenConfdDelivQtyInOrdQtyUnit", 0.0) or 0.0,
        product_availability_date=r.date_time("ProductAvailabilityDate", "ProductAvailabilityTime", dt.UTC),
        loading_date=r.date("LoadingDate"),
        goods_issue_date=r.date("GoodsIssueDate"),
    )


def customer_from_s4(
    row: dict[str, Any],
    *,
    business_partner: dict[str, Any] | None = None,
    priority_by_classification: Mapping[str, str] = DEFAULT_PRIORITY_BY_CLASSIFICATION,
    tz: dt.tzinfo = dt.UTC,
) -> Customer:
    """``A_Customer`` (optionally with its ``A_BusinessPartner``, whose
    ``to_BusinessPartnerAddress`` gives the country) → ``Customer``.

    An ``A_BusinessPartner`` row with an expanded ``to_Customer`` works as ``row`` too.
    """
    if business_partner is None and "BusinessPartner" in row and "to_Customer" in row:
        business_partner = row
        nested = results(row.get("to_Customer")) or []
        row = {**nested[0], "Customer": nested[0].get("Customer") or row.get("Customer")} if nested else row
    r = _Row("A_Customer", row, "Customer")
    bp = _Row("A_BusinessPartner", business_partner, "BusinessPartner") if business_partner is not None else None
    name = r.text("CustomerName") or r.text("CustomerFullName") or (bp.text("BusinessPartnerFullName") if bp else None)
    if not name:
        raise r.fail("CustomerName", "missing")
    country = r.text("Country") or None
    region: str | None = None
    time_zone: str | None = None
    if business_partner is not None:
        addresses = results(business_partner.get("to_BusinessPartnerAddress")) or []
        if addresses:
            address = _Row("A_BusinessPartnerAddress", addresses[0], "AddressID")
            country = country or address.text("Country") or None
            region = address.text("Region") or None
            time_zone = address.text("AddressTimeZone") or None
    classification = r.text("CustomerClassification") or ""
    priority = priority_by_classification.get(classification, "NORMAL")
    if priority not in COMMERCIAL_PRIORITIES:
        raise ValueError(f"priority {priority!r} for classification {classification!r} is not one of {COMMERCIAL_PRIORITIES}")
    changed = bp.date_time("LastChangeDate", "LastChangeTime", tz) if bp else None
    return Customer(
        customer=r.required("Customer"),
        customer_name=name,
        commercial_priority=priority,
        country=country,
        region=region,
        time_zone=time_zone,
        last_change_date_time=changed,
        language=r.text("Language") or (bp.text("CorrespondenceLanguage") if bp else None) or None,
    )


# --- MES -----------------------------------------------------------------------------


_STATUS_FLAGS = (  # most advanced first
    ("OrderIsClosed", "CLOSED"),
    ("OrderIsTechnicallyCompleted", "TECO"),
    ("OrderIsDelivered", "DELIVERED"),
    ("OrderIsConfirmed", "CONFIRMED"),
    ("OrderIsLocked", "LOCKED"),
    ("OrderIsPartiallyConfirmed", "PARTIALLY_CONFIRMED"),
    ("OrderIsReleased", "RELEASED"),
    ("OrderIsPartiallyReleased", "RELEASED"),
)


def production_order_status(r: _Row, started: bool) -> str:
    """The project's status from SAP's OrderIs… flags (every flag is checked)."""
    flags = {field: r.flag(field) for field, _ in _STATUS_FLAGS}
    for field, status in _STATUS_FLAGS:
        if flags[field]:
            return "STARTED" if status == "RELEASED" and started else status
    return "CREATED"


def production_order_from_s4(row: dict[str, Any], *, tz: dt.tzinfo = dt.UTC) -> ProductionOrder:
    """``A_ProductionOrder_2`` with ``to_ProductionOrderOperation`` (and
    ``to_ProductionOrderItem`` for the batch) → ``ProductionOrder``.

    The work centre is that of the first operation not yet finally confirmed (the last
    operation once all are); an order whose operations were not expanded must carry a
    ``WorkCenter`` itself, or it is refused (there is no guessing a work centre).
    """
    r = _Row("A_ProductionOrder_2", row, "ManufacturingOrder")
    operations = sorted(
        (_Row(f"{r.where} operation", op, "ManufacturingOrderOperation") for op in results(row.get("to_ProductionOrderOperation")) or []),
        key=lambda op: (op.text("ManufacturingOrderSequence") or "", op.text("ManufacturingOrderOperation") or ""),
    )
    work_center = r.text("WorkCenter") or None
    if work_center is None and operations:
        open_ops = [op for op in operations if not _finally_confirmed(op)]
        work_center = (open_ops[0] if open_ops else operations[-1]).text("WorkCenter") or None
    if work_center is None:
        raise r.fail("WorkCenter", "no operation with a work centre (expand to_ProductionOrderOperation)")
    starts = [t for op in operations if (t := op.date_time("OpActualExecutionStartDate", "OpActualExecutionStartTime", tz))]
    ends = [t for op in operations if (t := op.date_time("OpActualExecutionEndDate", "OpActualExecutionEndTime", tz))]
    status = production_order_status(r, started=bool(starts))
    finished = status in ("CONFIRMED", "DELIVERED", "TECO", "CLOSED")
    batch = r.text("Batch") or None
    if batch is None:
        for item in results(row.get("to_ProductionOrderItem")) or []:
            batch = _Row(f"{r.where} item", item, "ManufacturingOrderItem").text("Batch") or None
            if batch:
                break
    scrap = r.number("MfgOrderConfirmedScrapQty")
    if scrap is None and operations:
        op_scrap = [op.number("OpTotalConfirmedScrapQty") for op in operations]
        scrap = max((s for s in op_scrap if s is not None), default=None)  # the order's scrap is the largest reported
    sales_order_item = r.text("SalesOrderItem") or ""
    return ProductionOrder(
        manufacturing_order=r.required("ManufacturingOrder"),
        material=r.required("Material"),
        sales_order=r.text("SalesOrder") or "",
        sales_order_item="" if sales_order_item.strip("0") == "" else sales_order_item,
        total_quantity=r.number("TotalQuantity", required=True) or 0.0,
        work_center=work_center,
        scheduled_start_date=_required(r, r.date_time("MfgOrderScheduledStartDate", "MfgOrderScheduledStartTime", tz), "MfgOrderScheduledStartDate"),
        scheduled_end_date=_required(r, r.date_time("MfgOrderScheduledEndDate", "MfgOrderScheduledEndTime", tz), "MfgOrderScheduledEndDate"),
        status=status,
        planned_start_date=r.date_time("MfgOrderPlannedStartDate", "MfgOrderPlannedStartTime", tz),
        planned_end_date=r.date_time("MfgOrderPlannedEndDate", "MfgOrderPlannedEndTime", tz),
        production_plant=r.text("ProductionPlant") or r.text("Plant") or "1000",
        production_unit=r.text("ProductionUnit") or "PC",
        actual_release_date=r.date_time("MfgOrderActualReleaseDate", "MfgOrderActualReleaseTime", tz),
        actual_start_date=min(starts) if starts else None,
        actual_end_date=max(ends) if ends and finished else None,
        confirmed_yield_qty=r.number("MfgOrderConfirmedYieldQty", 0.0) or 0.0,
        confirmed_scrap_qty=scrap or 0.0,
        planned_scrap_qty=r.number("MfgOrderPlannedScrapQty", 0.0) or 0.0,
        batch=batch,
        last_change_date_time=r.timestamp("LastChangeDateTime"),
    )


def _finally_confirmed(op: _Row) -> bool:
    if "OperationIsFinallyConfirmed" in op.row:
        return op.flag("OperationIsFinallyConfirmed")
    planned = op.number("OpPlannedTotalQuantity")
    done = op.number("OpTotalConfirmedYieldQty")
    return planned is not None and done is not None and planned > 0 and done >= planned


# --- WMS -----------------------------------------------------------------------------


def outbound_delivery_from_s4(row: dict[str, Any], *, tz: dt.tzinfo = dt.UTC) -> OutboundDelivery:
    """``A_OutbDeliveryHeader`` with ``to_DeliveryDocumentItem`` → ``OutboundDelivery``.

    The items name the sales order (the header does not): a delivery read without them is
    refused. Goods issue time is set only once the goods movement is complete (C).
    """
    r = _Row("A_OutbDeliveryHeader", row, "DeliveryDocument")
    rows = results(row.get("to_DeliveryDocumentItem"))
    if not rows:
        raise r.fail("to_DeliveryDocumentItem", "no items (expand to_DeliveryDocumentItem): the sales order is unknown")
    items = []
    for item in rows:
        ir = _Row(f"{r.where} A_OutbDeliveryItem", item, "DeliveryDocumentItem")
        items.append(
            OutboundDeliveryItem(
                delivery_document_item=ir.required("DeliveryDocumentItem"),
                reference_sd_document=ir.required("ReferenceSDDocument"),
                reference_sd_document_item=ir.text("ReferenceSDDocumentItem") or "",
                material=ir.required("Material"),
                actual_delivery_quantity=ir.number("ActualDeliveryQuantity", 0.0) or 0.0,
                delivery_quantity_unit=ir.text("DeliveryQuantityUnit") or "PC",
                batch=ir.text("Batch") or None,
            )
        )
    goods_movement = r.status("OverallGoodsMovementStatus")
    issued = r.date_time("ActualGoodsMovementDate", "ActualGoodsMovementTime", tz) if goods_movement == "C" else None
    changed = r.date("LastChangeDate")
    return OutboundDelivery(
        delivery_document=r.required("DeliveryDocument"),
        sales_order=items[0].reference_sd_document,
        ship_to_party=r.required("ShipToParty"),
        delivery_date=_required(r, r.date("DeliveryDate") or r.date("PlannedGoodsIssueDate"), "DeliveryDate"),
        shipping_point=r.text("ShippingPoint") or "1000",
        overall_picking_status=r.status("OverallPickingStatus"),
        overall_packing_status=r.status("OverallPackingStatus"),
        overall_goods_movement_status=goods_movement,
        actual_goods_movement_date=issued,
        bill_of_lading=r.text("BillOfLading") or None,
        last_change_date_time=dt.datetime.combine(changed, dt.time(0), tzinfo=dt.UTC) if changed else None,
        items=items,
    )


# --- QMS -----------------------------------------------------------------------------

VALUATIONS = {"A": "ACCEPTED", "R": "REJECTED"}


def inspection_lot_from_s4(
    row: dict[str, Any], *, usage_decision: dict[str, Any] | None = None, tz: dt.tzinfo = dt.UTC
) -> InspectionLot:
    """``A_InspectionLot`` (with its ``A_InspLotUsageDecision``, read separately or
    expanded as ``to_InspLotUsageDecision``) → ``InspectionLot``.

    A lot that says it has a usage decision but comes without one is refused: a decision
    of unknown valuation must not read as accepted.
    """
    r = _Row("A_InspectionLot", row, "InspectionLot")
    if usage_decision is None:
        nested = results(row.get("to_InspLotUsageDecision")) or results(row.get("to_InspectionLotUsageDecision")) or []
        usage_decision = nested[0] if nested else None
    has_decision = r.flag("InspectionLotHasUsageDecision")
    decision: UsageDecision | None = None
    if usage_decision is not None and (has_decision or usage_decision.get("InspectionLotUsageDecisionCode")):
        ur = _Row(f"{r.where} A_InspLotUsageDecision", usage_decision, "InspectionLot")
        valuation = ur.text("InspLotUsageDecisionValuation") or ""
        if valuation not in VALUATIONS:
            raise ur.fail("InspLotUsageDecisionValuation", f"expected A (accepted) or R (rejected), got {valuation!r}")
        decision = UsageDecision(
            code=ur.required("InspectionLotUsageDecisionCode"),
            code_group=ur.text("InspLotUsageDecisionCodeGroup") or "",
            valuation=VALUATIONS[valuation],
            decided_at=ur.date_time("InspectionLotUsageDecidedOn", "InspLotUsageDecisionTime", tz),
            quality_score=ur.number("InspectionLotQualityScore"),
        )
        has_decision = True
    elif has_decision:
        raise r.fail("InspectionLotHasUsageDecision", "set, but no A_InspLotUsageDecision came with the lot")
    created = r.date_time("InspectionLotCreatedOn", "InspectionLotCreatedOnTime", tz) or r.date_time(
        "InspLotCreatedOnLocalDate", "InspLotCreatedOnLocalTime", tz
    )
    return InspectionLot(
        inspection_lot=r.required("InspectionLot"),
        material=r.required("Material"),
        batch=r.text("Batch") or "",
        manufacturing_order=r.text("ManufacturingOrder") or "",
        created_at=_required(r, created, "InspectionLotCreatedOn"),
        plant=r.text("Plant") or "1000",
        inspection_lot_origin=r.text("InspectionLotOrigin") or "04",
        has_usage_decision=has_decision,
        usage_decision=decision,
        planned_end_date=r.date_time("InspectionLotEndDate", "InspectionLotEndTime", tz),
        last_change_date_time=r.timestamp("ChangedDateTime"),
    )

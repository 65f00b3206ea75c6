"""The simulated plant's systems as SAP S/4HANA serves them: OData v2 under ``/sap/opu/odata/sap``.

The same world as the REST contract (``sources/API.md``), in SAP's public API names:

- ``API_SALES_ORDER_SRV`` (ERP): ``A_SalesOrder`` with ``to_Item`` (``A_SalesOrderItem``) and
  ``to_Item/to_ScheduleLine`` (``A_SalesOrderScheduleLine``);
- ``API_BUSINESS_PARTNER`` (ERP): ``A_BusinessPartner`` with ``to_Customer`` and
  ``to_BusinessPartnerAddress``, and ``A_Customer``;
- ``API_PRODUCTION_ORDER_2_SRV`` (MES): ``A_ProductionOrder_2`` with
  ``to_ProductionOrderOperation`` and ``to_ProductionOrderItem`` (one of each per order in
  the world), also as ``A_ProductionOrderOperation_2`` / ``A_ProductionOrderItem_2``;
- ``API_OUTBOUND_DELIVERY_SRV;v=0002`` (WMS): ``A_OutbDeliveryHeader`` with
  ``to_DeliveryDocumentItem``, and ``A_OutbDeliveryItem``;
- ``API_INSPECTIONLOT_SRV`` (QMS): ``A_InspectionLot`` and ``A_InspLotUsageDecision``.

Each service is answered as its system (``SERVICE_SYSTEM``): that system's latency, faults
and request count apply, and with separate ports it is served on that system's port.

The dialect as SAP Gateway speaks it: ``d.results`` envelopes with ``__metadata``,
``$filter`` with ``eq``/``ne``/``gt``/``ge``/``lt``/``le`` joined by ``or`` and ``and`` (and
parentheses), ``$select``, ``$expand`` (navigations not asked for come back
``__deferred``), ``$orderby``, ``$top``/``$skip``, server-driven paging (``__next`` with
``$skiptoken``), ``$inlinecount=allpages`` (``__count`` as a string), entities by key
(``A_SalesOrder('4000007')``), ``/Date(ms)/`` dates, ``/Date(ms+0000)/`` date-times,
``PT..H..M..S`` times, decimals as strings, ``sap-client``, and SAP's error body
``{"error": {"code", "message": {"lang", "value"}, "innererror": {"errordetails"}}}``.

Authentication is off unless set on ``ODataState`` (tests): HTTP basic, or OAuth 2.0
client credentials with tokens from ``/sap/bc/sec/oauth2/token``. ``ODataState.failures``
answers an entity set with a given status, body and headers (401, 403, 500, a
``sap-message``) for the tests; the plant's fault injection (``/control/faults`` for the
answering system) applies to these routes too.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import itertools
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, quote

import orjson
from aiohttp import web

from ..odata.values import format_time, parse_datetime, parse_sap_timestamp
from ..records import parse_date
from ..records import parse_datetime as parse_iso_datetime
from .world import World

SERVICE_ROOT = "/sap/opu/odata/sap"
TOKEN_PATH = "/sap/bc/sec/oauth2/token"
DEFAULT_PAGE_SIZE = 1000  # server-driven paging: SAP Gateway's usual cap for a page
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
PRIORITY_TO_CLASSIFICATION = {"STRATEGIC": "A", "HIGH": "B", "NORMAL": "C", "LOW": "D"}


@dataclasses.dataclass
class Failure:
    """An injected answer for one entity set (tests)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    times: int | None = None  # None: every time


@dataclasses.dataclass
class ODataState:
    """Settings and records of the OData routes (``Simulator.odata``)."""

    page_size: int = DEFAULT_PAGE_SIZE
    basic: tuple[str, str] | None = None
    client_credentials: tuple[str, str] | None = None
    token_lifetime: int = 3600
    tokens: set[str] = dataclasses.field(default_factory=set)
    token_requests: int = 0
    failures: dict[str, Failure] = dataclasses.field(default_factory=dict)
    headers: dict[str, str] = dataclasses.field(default_factory=dict)  # on every 2xx answer
    requests: list[str] = dataclasses.field(default_factory=list)  # URLs, last 1,000
    _ids: Any = dataclasses.field(default_factory=lambda: itertools.count(1))


# --- Edm values ---------------------------------------------------------------------------


def sap_date(value: str | None) -> str | None:
    """REST ``YYYY-MM-DD`` → ``/Date(ms)/`` (midnight UTC), as SAP serves DATS fields."""
    if not value:
        return None
    day = parse_date(value)
    assert day is not None
    return f"/Date({(dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC) - EPOCH) // dt.timedelta(milliseconds=1)})/"


def sap_datetime_offset(value: str | None) -> str | None:
    """REST ISO date-time → ``/Date(ms+0000)/`` (Edm.DateTimeOffset)."""
    if not value:
        return None
    moment = parse_iso_datetime(value)
    assert moment is not None
    return f"/Date({(moment - EPOCH) // dt.timedelta(milliseconds=1)}+0000)/"


def _date_and_time(value: str | None) -> tuple[str | None, str]:
    """REST ISO date-time → (``/Date(ms)/`` of its UTC day, ``PT..H..M..S``)."""
    if not value:
        return None, "PT00H00M00S"
    moment = parse_iso_datetime(value)
    assert moment is not None
    return sap_date(moment.date().isoformat()), format_time(moment.time().replace(microsecond=0))


def _dec(value: Any, places: int = 3) -> str:
    return f"{float(value or 0.0):.{places}f}"


# --- records → SAP entities ------------------------------------------------------------------


def sales_order_entity(so: dict[str, Any]) -> dict[str, Any]:
    """A REST sales order (``SalesOrder.to_api()``) as ``A_SalesOrder`` with its items."""
    items = []
    for item in so.get("to_Item") or []:
        lines = []
        for line in item.get("to_ScheduleLine") or []:
            day, time = _date_and_time(line.get("ProductAvailabilityDate"))
            lines.append(
                {
                    "SalesOrder": so["SalesOrder"],
                    "SalesOrderItem": item["SalesOrderItem"],
                    "ScheduleLine": line["ScheduleLine"],
                    "RequestedDeliveryDate": sap_date(line.get("RequestedDeliveryDate")),
                    "ConfirmedDeliveryDate": sap_date(line.get("ConfirmedDeliveryDate")),
                    "OrderQuantityUnit": line.get("OrderQuantityUnit") or "PC",
                    "ScheduleLineOrderQuantity": _dec(line.get("ScheduleLineOrderQuantity")),
                    "ConfdOrderQtyByMatlAvailCheck": _dec(line.get("ConfdOrderQtyByMatlAvailCheck")),
                    "DeliveredQtyInOrderQtyUnit": _dec(line.get("DeliveredQtyInOrderQtyUnit")),
                    "OpenConfdDelivQtyInOrdQtyUnit": _dec(line.get("OpenConfdDelivQtyInOrdQtyUnit")),
                    "ProductAvailabilityDate": day,
                    "ProductAvailabilityTime": time,
                    "LoadingDate": sap_date(line.get("LoadingDate")),
                    "GoodsIssueDate": sap_date(line.get("GoodsIssueDate")),
                    "DelivBlockReasonForSchedLine": "",
                }
            )
        items.append(
            {
                "SalesOrder": so["SalesOrder"],
                "SalesOrderItem": item["SalesOrderItem"],
                "SalesOrderItemCategory": "TAN",
                "Material": item["Material"],
                "RequestedQuantity": _dec(item.get("RequestedQuantity")),
                "RequestedQuantityUnit": item.get("RequestedQuantityUnit") or "PC",
                "NetAmount": _dec(item.get("NetAmount"), 2),
                "TransactionCurrency": so.get("TransactionCurrency") or "EUR",
                "DeliveryStatus": item.get("DeliveryStatus") or "A",
                "SalesDocumentRjcnReason": item.get("SalesDocumentRjcnReason") or "",
                "to_ScheduleLine": lines,
            }
        )
    return {
        "SalesOrder": so["SalesOrder"],
        "SalesOrderType": so.get("SalesOrderType") or "OR",
        "SalesOrganization": "1010",
        "DistributionChannel": "10",
        "OrganizationDivision": "00",
        "SoldToParty": so["SoldToParty"],
        "CreationDate": sap_date(so.get("SalesOrderDate")),
        "SalesOrderDate": sap_date(so.get("SalesOrderDate")),
        "PurchaseOrderByCustomer": so.get("PurchaseOrderByCustomer") or "",
        "TotalNetAmount": _dec(so.get("TotalNetAmount"), 2),
        "TransactionCurrency": so.get("TransactionCurrency") or "EUR",
        "RequestedDeliveryDate": sap_date(so.get("RequestedDeliveryDate")),
        "OverallSDProcessStatus": so.get("OverallSDProcessStatus") or "A",
        "OverallDeliveryStatus": so.get("OverallDeliveryStatus") or "A",
        "TotalCreditCheckStatus": so.get("TotalCreditCheckStatus") or "",
        "TotalBlockStatus": so.get("TotalBlockStatus") or "",
        "DeliveryBlockReason": so.get("DeliveryBlockReason") or "",
        "LastChangeDateTime": sap_datetime_offset(so.get("LastChangeDateTime")),
        "to_Item": items,
    }


def customer_entity(c: dict[str, Any]) -> dict[str, Any]:
    """A REST customer as ``A_Customer``."""
    return {
        "Customer": c["Customer"],
        "CustomerName": c.get("CustomerName") or "",
        "CustomerFullName": c.get("CustomerName") or "",
        "CustomerClassification": PRIORITY_TO_CLASSIFICATION.get(c.get("CommercialPriority") or "NORMAL", "C"),
        "CustomerAccountGroup": "CUST",
    }


def business_partner_entity(c: dict[str, Any]) -> dict[str, Any]:
    """A REST customer as ``A_BusinessPartner`` (the same number) with its customer role and
    address; the change day and time are UTC (SAP's are the system's zone)."""
    day, time = _date_and_time(c.get("LastChangeDateTime"))
    return {
        "BusinessPartner": c["Customer"],
        "Customer": c["Customer"],
        "BusinessPartnerCategory": "2",
        "BusinessPartnerFullName": c.get("CustomerName") or "",
        "OrganizationBPName1": c.get("CustomerName") or "",
        "CorrespondenceLanguage": c.get("Language") or "",
        "LastChangeDate": day,
        "LastChangeTime": time,
        "to_Customer": [customer_entity(c)],
        "to_BusinessPartnerAddress": [
            {
                "BusinessPartner": c["Customer"],
                "AddressID": "1",
                "Country": c.get("Country") or "",
                "Region": c.get("Region") or "",
                "AddressTimeZone": c.get("AddressTimeZone") or "",
            }
        ],
    }


# --- MES as SAP serves it: API_PRODUCTION_ORDER_2_SRV ------------------------------------

_PO_FLAGS = {  # the world's status → SAP's OrderIs… flags set for it
    "CREATED": (),
    "RELEASED": ("OrderIsReleased",),
    "STARTED": ("OrderIsReleased",),
    "PARTIALLY_CONFIRMED": ("OrderIsReleased", "OrderIsPartiallyConfirmed"),
    "CONFIRMED": ("OrderIsReleased", "OrderIsConfirmed"),
    "DELIVERED": ("OrderIsReleased", "OrderIsConfirmed", "OrderIsDelivered"),
    "TECO": ("OrderIsReleased", "OrderIsConfirmed", "OrderIsTechnicallyCompleted"),
    "CLOSED": ("OrderIsReleased", "OrderIsConfirmed", "OrderIsTechnicallyCompleted", "OrderIsClosed"),
    "LOCKED": ("OrderIsReleased", "OrderIsLocked"),
}
_PO_ALL_FLAGS = ("OrderIsCreated", "OrderIsReleased", "OrderIsPartiallyReleased", "OrderIsPartiallyConfirmed",
                 "OrderIsConfirmed", "OrderIsDelivered", "OrderIsTechnicallyCompleted", "OrderIsClosed", "OrderIsLocked")


def sap_timestamp(value: str | None) -> str:
    """REST ISO date-time → SAP's decimal ``TIMESTAMP`` (``"20261130081500"``, UTC); ``"0"`` when empty."""
    if not value:
        return "0"
    moment = parse_iso_datetime(value)
    assert moment is not None
    return moment.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S")


def production_order_operation_entity(po: dict[str, Any]) -> dict[str, Any]:
    """The order's one operation (``A_ProductionOrderOperation_2``): the work centre and the
    actual execution start and end. The world routes each order through one work centre."""
    status = po.get("OrderStatus") or "CREATED"
    start_day, start_time = _date_and_time(po.get("MfgOrderActualStartDate"))
    end_day, end_time = _date_and_time(po.get("MfgOrderActualEndDate"))
    return {
        "ManufacturingOrder": po["ManufacturingOrder"],
        "ManufacturingOrderSequence": "0",
        "ManufacturingOrderOperation": "0010",
        "WorkCenter": po.get("WorkCenter") or "",
        "ProductionPlant": po.get("ProductionPlant") or "1000",
        "OpPlannedTotalQuantity": _dec(po.get("TotalQuantity")),
        "OpTotalConfirmedYieldQty": _dec(po.get("MfgOrderConfirmedYieldQty")),
        "OpTotalConfirmedScrapQty": _dec(po.get("MfgOrderConfirmedScrapQty")),
        "OperationIsFinallyConfirmed": "X" if status in ("CONFIRMED", "DELIVERED", "TECO", "CLOSED") else "",
        "OpActualExecutionStartDate": start_day,
        "OpActualExecutionStartTime": start_time,
        "OpActualExecutionEndDate": end_day,
        "OpActualExecutionEndTime": end_time,
    }


def production_order_item_entity(po: dict[str, Any]) -> dict[str, Any]:
    """The order's one item (``A_ProductionOrderItem_2``): what it makes, into which batch."""
    return {
        "ManufacturingOrder": po["ManufacturingOrder"],
        "ManufacturingOrderItem": "0001",
        "Material": po.get("Material") or "",
        "ProductionPlant": po.get("ProductionPlant") or "1000",
        "Batch": po.get("Batch") or "",
        "MfgOrderItemPlannedTotalQty": _dec(po.get("TotalQuantity")),
        "ProductionUnit": po.get("ProductionUnit") or "PC",
        "SalesOrder": po.get("SalesOrder") or "",
        "SalesOrderItem": po.get("SalesOrderItem") or "",
    }


def production_order_entity(po: dict[str, Any]) -> dict[str, Any]:
    """A REST production order as ``A_ProductionOrder_2`` with its operation and item; the
    status as SAP's OrderIs… flags, dates as DATS + TIMS (UTC), LastChangeDateTime as
    SAP's decimal timestamp."""
    status = po.get("OrderStatus") or "CREATED"
    flags = set(_PO_FLAGS.get(status, ()))
    row: dict[str, Any] = {
        "ManufacturingOrder": po["ManufacturingOrder"],
        "ManufacturingOrderType": "PP01",
        "ManufacturingOrderCategory": "10",
        "Material": po.get("Material") or "",
        "ProductionPlant": po.get("ProductionPlant") or "1000",
        "SalesOrder": po.get("SalesOrder") or "",
        "SalesOrderItem": po.get("SalesOrderItem") or "",
        "TotalQuantity": _dec(po.get("TotalQuantity")),
        "ProductionUnit": po.get("ProductionUnit") or "PC",
        "MfgOrderConfirmedYieldQty": _dec(po.get("MfgOrderConfirmedYieldQty")),
        "MfgOrderConfirmedScrapQty": _dec(po.get("MfgOrderConfirmedScrapQty")),
        "MfgOrderPlannedScrapQty": _dec(po.get("MfgOrderPlannedScrapQty")),
    }
    for field in ("MfgOrderScheduledStart", "MfgOrderScheduledEnd", "MfgOrderPlannedStart", "MfgOrderPlannedEnd"):
        day, time = _date_and_time(po.get(f"{field}Date"))
        row[f"{field}Date"], row[f"{field}Time"] = day, time
    day, time = _date_and_time(po.get("MfgOrderActualReleaseDate"))
    row["MfgOrderActualReleaseDate"], row["MfgOrderActualReleaseTime"] = day, time
    row.update({flag: flag in flags or (flag == "OrderIsCreated") for flag in _PO_ALL_FLAGS})
    row["LastChangeDateTime"] = sap_timestamp(po.get("LastChangeDateTime"))
    row["to_ProductionOrderOperation"] = [production_order_operation_entity(po)]
    row["to_ProductionOrderItem"] = [production_order_item_entity(po)]
    return row


# --- QMS as SAP serves it: API_INSPECTIONLOT_SRV --------------------------------------------

VALUATION_CODES = {"ACCEPTED": "A", "REJECTED": "R"}


def inspection_lot_entity(lot: dict[str, Any]) -> dict[str, Any]:
    """A REST inspection lot as ``A_InspectionLot`` (its usage decision is
    ``A_InspLotUsageDecision``, read by the same key)."""
    created_day, created_time = _date_and_time(lot.get("InspectionLotCreatedOn"))
    end_day, end_time = _date_and_time(lot.get("InspLotPlannedEndDate"))
    return {
        "InspectionLot": lot["InspectionLot"],
        "Material": lot.get("Material") or "",
        "Batch": lot.get("Batch") or "",
        "Plant": lot.get("Plant") or "1000",
        "InspectionLotOrigin": lot.get("InspectionLotOrigin") or "04",
        "InspectionLotType": lot.get("InspectionLotOrigin") or "04",
        "ManufacturingOrder": lot.get("ManufacturingOrder") or "",
        "InspectionLotCreatedOn": created_day,
        "InspectionLotCreatedOnTime": created_time,
        "InspectionLotEndDate": end_day,
        "InspectionLotEndTime": end_time,
        "InspectionLotHasUsageDecision": bool(lot.get("InspectionLotHasUsageDecision")),
        "ChangedDateTime": sap_datetime_offset(lot.get("LastChangeDateTime")),
    }


def usage_decision_entity(lot: dict[str, Any]) -> dict[str, Any] | None:
    """The lot's ``A_InspLotUsageDecision``; ``None`` (no entity) before the decision."""
    ud = lot.get("to_UsageDecision")
    if not lot.get("InspectionLotHasUsageDecision") or not isinstance(ud, dict):
        return None
    day, time = _date_and_time(ud.get("UsageDecisionDate"))
    score = ud.get("UsageDecisionQualityScore")
    return {
        "InspectionLot": lot["InspectionLot"],
        "InspectionLotUsageDecisionCode": ud.get("UsageDecisionCode") or "",
        "InspLotUsageDecisionCodeGroup": ud.get("UsageDecisionCodeGroup") or "",
        "InspLotUsageDecisionValuation": VALUATION_CODES.get(ud.get("UsageDecisionValuation") or "", ""),
        "InspectionLotUsageDecidedOn": day,
        "InspLotUsageDecisionTime": time,
        "InspectionLotQualityScore": None if score is None else _dec(score, 2),
        "ChangedDateTime": sap_datetime_offset(lot.get("LastChangeDateTime")),
    }


# --- WMS as SAP serves it: API_OUTBOUND_DELIVERY_SRV;v=0002 --------------------------------


def outbound_delivery_item_entity(d: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    return {
        "DeliveryDocument": d["DeliveryDocument"],
        "DeliveryDocumentItem": item["DeliveryDocumentItem"],
        "ReferenceSDDocument": item.get("ReferenceSDDocument") or "",
        "ReferenceSDDocumentItem": item.get("ReferenceSDDocumentItem") or "",
        "Material": item.get("Material") or "",
        "ActualDeliveryQuantity": _dec(item.get("ActualDeliveryQuantity")),
        "DeliveryQuantityUnit": item.get("DeliveryQuantityUnit") or "PC",
        "Batch": item.get("Batch") or "",
        "Plant": "1000",
    }


def outbound_delivery_entity(d: dict[str, Any]) -> dict[str, Any]:
    """A REST delivery as ``A_OutbDeliveryHeader`` with ``to_DeliveryDocumentItem``. SAP's
    header keeps a change day (``LastChangeDate``), not a time, and no warehouse-task
    confirmation times: the REST contract's picking and packing times have no field here."""
    issued_day, issued_time = _date_and_time(d.get("ActualGoodsMovementDate"))
    changed_day, _ = _date_and_time(d.get("LastChangeDateTime"))
    return {
        "DeliveryDocument": d["DeliveryDocument"],
        "DeliveryDocumentType": "LF",
        "ShipToParty": d.get("ShipToParty") or "",
        "SoldToParty": d.get("ShipToParty") or "",
        "DeliveryDate": sap_date(d.get("DeliveryDate")),
        "ShippingPoint": d.get("ShippingPoint") or "1000",
        "OverallPickingStatus": d.get("OverallPickingStatus") or "A",
        "OverallPackingStatus": d.get("OverallPackingStatus") or "A",
        "OverallGoodsMovementStatus": d.get("OverallGoodsMovementStatus") or "A",
        "ActualGoodsMovementDate": issued_day,
        "ActualGoodsMovementTime": issued_time,
        "BillOfLading": d.get("BillOfLading") or "",
        "LastChangeDate": changed_day,
        "to_DeliveryDocumentItem": [outbound_delivery_item_entity(d, i) for i in d.get("to_DeliveryDocumentItem") or []],
    }


def _delivery_item_rows(d: dict[str, Any]) -> dict[str, Any] | None:
    """``A_OutbDeliveryItem`` as an entity set: the first item stands for the delivery's
    items in look-ups by ReferenceSDDocument (every item of a delivery in the world
    references the same sales order)."""
    items = d.get("to_DeliveryDocumentItem") or []
    return outbound_delivery_item_entity(d, items[0]) if items else None


@dataclasses.dataclass(frozen=True, slots=True)
class ServedSet:
    """One entity set served from one table of the world."""

    table: str  # the world's entity set (REST name)
    key: str  # SAP key field
    render: Callable[[dict[str, Any]], dict[str, Any] | None]  # None: no entity for this record
    lookups: dict[str, str]  # SAP field → the table's filter field, for indexed look-ups


SERVED: dict[tuple[str, str], ServedSet] = {
    ("API_SALES_ORDER_SRV", "A_SalesOrder"): ServedSet(
        "A_SalesOrder", "SalesOrder", sales_order_entity, {"SalesOrder": "SalesOrder", "SoldToParty": "SoldToParty"}
    ),
    ("API_BUSINESS_PARTNER", "A_BusinessPartner"): ServedSet(
        "A_Customer", "BusinessPartner", business_partner_entity, {"BusinessPartner": "Customer", "Customer": "Customer"}
    ),
    ("API_BUSINESS_PARTNER", "A_Customer"): ServedSet(
        "A_Customer", "Customer", customer_entity, {"Customer": "Customer"}
    ),
    # The MES's production orders (one item and one operation each in the world).
    ("API_PRODUCTION_ORDER_2_SRV", "A_ProductionOrder_2"): ServedSet(
        "A_ProductionOrder", "ManufacturingOrder", production_order_entity,
        {"ManufacturingOrder": "ManufacturingOrder", "SalesOrder": "SalesOrder"},
    ),
    ("API_PRODUCTION_ORDER_2_SRV", "A_ProductionOrderItem_2"): ServedSet(
        "A_ProductionOrder", "ManufacturingOrder", production_order_item_entity,
        {"ManufacturingOrder": "ManufacturingOrder", "Batch": "Batch"},
    ),
    ("API_PRODUCTION_ORDER_2_SRV", "A_ProductionOrderOperation_2"): ServedSet(
        "A_ProductionOrder", "ManufacturingOrder", production_order_operation_entity,
        {"ManufacturingOrder": "ManufacturingOrder", "WorkCenter": "WorkCenter"},
    ),
    # The QMS's inspection lots and their usage decisions.
    ("API_INSPECTIONLOT_SRV", "A_InspectionLot"): ServedSet(
        "A_InspectionLot", "InspectionLot", inspection_lot_entity,
        {"InspectionLot": "InspectionLot", "ManufacturingOrder": "ManufacturingOrder", "Batch": "Batch"},
    ),
    ("API_INSPECTIONLOT_SRV", "A_InspLotUsageDecision"): ServedSet(
        "A_InspectionLot", "InspectionLot", usage_decision_entity, {"InspectionLot": "InspectionLot"},
    ),
    # The WMS's outbound deliveries (items also as their own entity set, for look-ups).
    ("API_OUTBOUND_DELIVERY_SRV", "A_OutbDeliveryHeader"): ServedSet(
        "A_OutbDeliveryHeader", "DeliveryDocument", outbound_delivery_entity, {"DeliveryDocument": "DeliveryDocument"},
    ),
    ("API_OUTBOUND_DELIVERY_SRV", "A_OutbDeliveryItem"): ServedSet(
        "A_OutbDeliveryHeader", "DeliveryDocument", _delivery_item_rows,
        {"DeliveryDocument": "DeliveryDocument", "ReferenceSDDocument": "ReferenceSDDocument"},
    ),
}

# Which simulated system answers a service (its latency, faults and request count apply).
SERVICE_SYSTEM: dict[str, str] = {
    "API_SALES_ORDER_SRV": "erp",
    "API_BUSINESS_PARTNER": "erp",
    "API_PRODUCTION_ORDER_2_SRV": "mes",
    "API_INSPECTIONLOT_SRV": "qms",
    "API_OUTBOUND_DELIVERY_SRV": "wms",  # ;v=0002 as SAP versions it
}


# --- $filter -------------------------------------------------------------------------------

_TERM = re.compile(r"^([A-Za-z_0-9/]+) (eq|ne|gt|ge|lt|le) (.+)$")


class FilterError(ValueError):
    pass


def _literal(text: str) -> Any:
    text = text.strip()
    if text.startswith("'") and text.endswith("'") and len(text) >= 2:
        return text[1:-1].replace("''", "'")
    m = re.fullmatch(r"(datetimeoffset|datetime)'([^']+)'", text)
    if m:
        raw = m.group(2)
        if m.group(1) == "datetime" and not raw.endswith("Z") and "+" not in raw[10:]:
            raw += "+00:00"
        try:
            return parse_datetime(raw.replace("Z", "+00:00"))
        except ValueError as exc:
            raise FilterError(f"invalid {m.group(1)} literal {text!r}") from exc
    if text in ("true", "false"):
        return text == "true"
    if text.endswith("M") and re.fullmatch(r"-?\d+(\.\d+)?M", text):
        digits = text[:-1]
        return parse_sap_timestamp(digits) if re.fullmatch(r"\d{14}", digits) else float(digits)
    if text == "null":
        return None
    try:
        return float(text)
    except ValueError:
        raise FilterError(f"literal not understood: {text!r}") from None


def _split(text: str, word: str) -> list[str]:
    parts, depth, quoted, start, i = [], 0, False, 0, 0
    while i < len(text):
        c = text[i]
        if c == "'":
            quoted = not quoted
        elif not quoted and c == "(":
            depth += 1
        elif not quoted and c == ")":
            depth -= 1
        elif not quoted and depth == 0 and text.startswith(word, i):
            parts.append(text[start:i])
            start = i + len(word)
            i = start
            continue
        i += 1
    if quoted or depth:
        raise FilterError("unbalanced quotes or parentheses in $filter")
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _strip(text: str) -> str:
    """Drop parentheses around the whole of ``text`` (``(a or b)`` → ``a or b``)."""
    text = text.strip()
    while text.startswith("(") and text.endswith(")"):
        depth, quoted = 0, False
        for i, c in enumerate(text):
            if c == "'":
                quoted = not quoted
            elif not quoted and c == "(":
                depth += 1
            elif not quoted and c == ")":
                depth -= 1
                if depth == 0 and i != len(text) - 1:
                    return text  # "(a) or (b)": the first parenthesis closes early
        text = text[1:-1].strip()
    return text


Term = tuple[str, str, Any]


def parse_filter(expression: str | None) -> list[list[Term]]:
    """``a and (b or c)`` → conjunction of disjunctions of (field, op, value)."""
    if not expression:
        return []
    out: list[list[Term]] = []
    for conjunct in _split(_strip(expression.strip()), " and "):
        terms: list[Term] = []
        for t in _split(_strip(conjunct), " or "):
            m = _TERM.match(_strip(t))
            if m is None:
                raise FilterError(f"$filter term not understood: {t[:80]!r}")
            field, op, lit = m.groups()
            terms.append((field, op, _literal(lit)))
        out.append(terms)
    return out


def _sortable(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("/Date("):
        return parse_datetime(value)
    return value


def _compare(have: Any, op: str, want: Any) -> bool:
    have = _sortable(have)
    if isinstance(want, dt.datetime) and isinstance(have, str) and re.fullmatch(r"\d{14}(\.\d+)?", have):
        have = parse_sap_timestamp(have)  # SAP's decimal TIMESTAMP against a date-time literal
    if isinstance(want, float) and isinstance(have, str):
        try:
            have = float(have)
        except ValueError:
            return False
    if op == "eq":
        return have == want
    if op == "ne":
        return have != want
    if have is None or want is None:
        return False
    try:
        if op == "gt":
            return have > want
        if op == "ge":
            return have >= want
        if op == "lt":
            return have < want
        return have <= want
    except TypeError:
        raise FilterError(f"cannot compare {have!r} with {want!r}") from None



def parse_literal(text: str) -> Any:
    """One OData literal (``'x'``, ``datetimeoffset'…'``, ``20261130120000M``, numbers…)."""
    return _literal(text)


def row_matches(row: dict[str, Any], expression: str | None) -> bool:
    """Whether ``row`` satisfies the ``$filter`` ``expression``, as the simulated SAP reads it."""
    return all(any(_compare(row.get(f), op, v) for f, op, v in terms) for terms in parse_filter(expression))


# --- the routes ------------------------------------------------------------------------------


def _error(status: int, code: str, message: str) -> web.Response:
    body = {
        "error": {
            "code": code,
            "message": {"lang": "en", "value": message},
            "innererror": {
                "application": {"component_id": "", "service_namespace": "/SAP/", "service_version": "0001"},
                "errordetails": [{"code": code, "message": message, "propertyref": "", "severity": "error", "target": ""}],
            },
        }
    }
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


class ODataRoutes:
    """Serves the world's ERP in SAP's OData v2 dialect."""

    def __init__(
        self, world: World, state: ODataState, serve: Callable[..., Any], systems: frozenset[str] | None = None
    ) -> None:
        self.world = world
        self.state = state
        self._serve = serve  # (request, system, answer, ...) -> Response: latency and faults
        self.systems = systems  # None: every system's services; else only theirs (own ports)

    def add_to(self, app: web.Application) -> None:
        app.router.add_post(TOKEN_PATH, self.token)
        app.router.add_get(SERVICE_ROOT + "/{service}/{tail:.*}", self.handle)

    # --- auth ----------------------------------------------------------------------------

    def _refused(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization") or ""
        st = self.state
        if st.basic is not None and header.startswith("Basic "):
            expected = "Basic " + base64.b64encode(f"{st.basic[0]}:{st.basic[1]}".encode()).decode()
            return None if header == expected else "Logon failed: user name or password is wrong"
        if st.client_credentials is not None and header.startswith("Bearer "):
            return None if header.removeprefix("Bearer ") in st.tokens else "Token invalid or expired"
        if st.basic is None and st.client_credentials is None:
            return None
        return "Logon required"

    async def token(self, request: web.Request) -> web.Response:
        st = self.state
        st.token_requests += 1
        form = await request.post()
        cc = st.client_credentials
        expected = "Basic " + base64.b64encode(":".join(cc).encode()).decode() if cc else None
        if form.get("grant_type") != "client_credentials" or expected is None or request.headers.get("Authorization") != expected:
            return web.json_response({"error": "invalid_client", "error_description": "Bad credentials"}, status=401)
        token = f"sim-{next(st._ids)}"
        st.tokens.add(token)
        return web.json_response({"access_token": token, "token_type": "bearer", "expires_in": st.token_lifetime})

    # --- reads ---------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        self.state.requests.append(str(request.rel_url))
        del self.state.requests[:-1000]
        system = SERVICE_SYSTEM.get(request.match_info["service"].split(";")[0], "erp")
        if self.systems is not None and system not in self.systems:
            return _error(404, "/IWFND/MED/170", f"No service found for namespace '/SAP/', name '{request.match_info['service']}'")
        return await self._serve(request, system, lambda: self.answer(request))

    def answer(self, request: web.Request) -> web.Response:
        service = request.match_info["service"]
        tail = request.match_info["tail"]
        m = re.fullmatch(r"([A-Za-z_0-9]+)(?:\((.*)\))?", tail)
        if m is None:
            return _error(404, "/IWBEP/CM_MGW_RT/020", f"Resource not found for segment '{tail[:80]}'")
        name, key_literal = m.groups()
        why = self._refused(request)
        if why is not None:
            return _error(401, "/IWFND/CM_CONSUMER/101", why)
        failure = self.state.failures.get(name)
        if failure is not None and (failure.times is None or failure.times > 0):
            if failure.times is not None:
                failure.times -= 1
            return web.Response(status=failure.status, body=failure.body, headers=failure.headers, content_type="application/json")
        served = SERVED.get((service.split(";")[0], name))
        if served is None:
            if not any(s == service.split(";")[0] for s, _ in SERVED):
                return _error(404, "/IWFND/MED/170", f"No service found for namespace '/SAP/', name '{service}'")
            return _error(404, "/IWBEP/CM_MGW_RT/020", f"Resource not found for segment '{name}'")
        params = dict(parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True))
        fmt = params.get("$format", "json")
        if fmt != "json":
            return _error(415, "/IWBEP/CM_MGW_RT/004", f"Format '{fmt}' not served by the simulated plant (use json)")
        try:
            if key_literal is not None:
                return self._entity(served, service, name, key_literal, params)
            return self._collection(request, served, service, name, params)
        except FilterError as exc:
            return _error(400, "/IWBEP/CM_MGW_RT/022", f"Invalid filter: {exc}")
        except ValueError as exc:
            return _error(400, "/IWBEP/CM_MGW_RT/000", str(exc))

    def _rows(self, served: ServedSet, keys: list[str]) -> list[dict[str, Any]]:
        table = self.world.table(served.table)
        return [row for k in keys if (row := served.render(table.render(k))) is not None]

    def _entity(self, served: ServedSet, service: str, name: str, key_literal: str, params: dict[str, str]) -> web.Response:
        key = _literal(key_literal.split("=", 1)[-1]) if "=" in key_literal else _literal(key_literal)
        table = self.world.table(served.table)
        rows = self._rows(served, [key]) if isinstance(key, str) and key in table else []
        if not rows:
            return _error(404, "/IWBEP/CM_MGW_RT/020", "Resource not found")
        row = rows[0]
        return self._json({"d": self._shape(row, params, service, name, served)})

    def _collection(self, request: web.Request, served: ServedSet, service: str, name: str, params: dict[str, str]) -> web.Response:
        table = self.world.table(served.table)
        conjuncts = parse_filter(params.get("$filter"))
        candidates: set[str] | None = None
        rest: list[list[Term]] = []
        for terms in conjuncts:
            fields = {f for f, _, _ in terms}
            if len(fields) == 1 and all(op == "eq" for _, op, _ in terms) and (field := next(iter(fields))) in served.lookups:
                found = table.lookup(served.lookups[field], [v for _, _, v in terms if isinstance(v, str)])
                candidates = found if candidates is None else candidates & found
            else:
                rest.append(terms)
        keys = sorted(candidates) if candidates is not None else list(table.keys())
        rows = self._rows(served, keys)
        if rest:
            rows = [r for r in rows if all(any(_compare(r.get(f), op, v) for f, op, v in terms) for terms in rest)]
        if "$orderby" in params:
            for clause in reversed([c.strip() for c in params["$orderby"].split(",") if c.strip()]):
                field, _, direction = clause.partition(" ")
                rows.sort(key=lambda r, f=field: (_sortable(r.get(f)) is None, _sortable(r.get(f)) or 0), reverse=direction.strip() == "desc")
        count = len(rows)
        if "$skiptoken" in params:
            try:
                start, end = int(params["$skiptoken"]), int(params.get("$top", count))
            except ValueError:
                raise ValueError(f"invalid $skiptoken {params['$skiptoken'][:40]!r}") from None
            end = min(count, end)
        else:
            start = _whole(params, "$skip", 0)
            end = count if "$top" not in params else min(count, start + _whole(params, "$top", 0))
        page_end = min(end, start + self.state.page_size)
        body: dict[str, Any] = {"results": [self._shape(r, params, service, name, served) for r in rows[start:page_end]]}
        if params.get("$inlinecount") == "allpages":
            body["__count"] = str(count)
        if page_end < end:
            nxt = {k: v for k, v in params.items() if k not in ("$skip", "$top", "$skiptoken", "$inlinecount")}
            nxt.update({"$skiptoken": str(page_end), "$top": str(end)})
            body["__next"] = f"{request.path}?" + "&".join(f"{quote(k, safe='$')}={quote(v, safe='')}" for k, v in nxt.items())
        return self._json({"d": body})

    def _json(self, obj: Any) -> web.Response:
        return web.Response(body=orjson.dumps(obj), content_type="application/json", headers=self.state.headers)

    def _shape(self, row: dict[str, Any], params: dict[str, str], service: str, name: str, served: ServedSet) -> dict[str, Any]:
        expand = [e.strip() for e in params.get("$expand", "").split(",") if e.strip()]
        select = [s.strip() for s in params.get("$select", "").split(",") if s.strip()]
        uri = f"{SERVICE_ROOT}/{service}/{name}('{quote(str(row[served.key]))}')"
        out: dict[str, Any] = {"__metadata": {"id": uri, "uri": uri, "type": f"{service.split(';')[0]}.{name}Type"}}
        for field, value in row.items():
            if select and field not in select and not any(e.split("/")[0] == field for e in expand):
                continue
            if field.startswith("to_"):
                nested = [e.split("/", 1)[1] for e in expand if e.startswith(field + "/")]
                if field in expand or nested:
                    out[field] = {"results": [_expand(child, nested, f"{uri}/{field}") for child in value]}
                else:
                    out[field] = {"__deferred": {"uri": f"{uri}/{field}"}}
            else:
                out[field] = value
        return out


def _whole(params: dict[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise ValueError(f"{name} must be a whole number, got {raw[:40]!r}")
    return int(raw)


def _expand(row: dict[str, Any], expand: list[str], uri: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, value in row.items():
        if field.startswith("to_"):
            out[field] = {"results": value} if field in expand else {"__deferred": {"uri": f"{uri}/{field}"}}
        else:
            out[field] = value
    return out

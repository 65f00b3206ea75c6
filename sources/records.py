"""Typed source records.

Every source system answers in its own field names (SAP S/4HANA OData style, see
DOMAIN.md). Connectors turn those JSON objects into the dataclasses below, so the rest of
ordergraph works on plain, typed Python values and never on raw payloads.

Each record class maps its attributes to the source's field names with ``api(...)``.
``from_api`` parses one JSON object; ``to_api`` renders one (the simulator uses it, so the
two sides cannot drift apart).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import sys
import typing
from collections.abc import Callable
from functools import cache
from typing import Any, ClassVar, TypeVar

R = TypeVar("R", bound="Record")


class RecordError(ValueError):
    """A source answered with a record that does not fit its contract."""


def api(name: str, default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING) -> Any:
    """Declare a record attribute and the source field name it is read from."""
    kwargs: dict[str, Any] = {"metadata": {"api": name}}
    if default is not dataclasses.MISSING:
        kwargs["default"] = default
    if default_factory is not dataclasses.MISSING:
        kwargs["default_factory"] = default_factory
    return dataclasses.field(**kwargs)


def parse_date(value: Any) -> dt.date | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def parse_datetime(value: Any) -> dt.datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    text = str(value)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = dt.datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


# Instants already written (the simulator renders millions of timestamps, three in four a
# repeat: the documents of one order share their instants); emptied when full.
_FORMATTED: dict[dt.datetime, str] = {}


def format_datetime(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    text = _FORMATTED.get(value)
    if text is not None:
        return text
    utc = value if value.tzinfo is dt.UTC else value.astimezone(dt.UTC)
    # isoformat is several times faster than strftime (the simulator renders every record);
    # in UTC it ends in "+00:00", which becomes "Z"
    text = utc.isoformat(timespec="seconds")[:-6] + "Z"
    if value.tzinfo is not None:  # a naive time is local time: not memoised
        if len(_FORMATTED) >= _MEMO_LIMIT:
            _FORMATTED.clear()
        _FORMATTED[value] = text
    return text


@dataclasses.dataclass(slots=True)
class Record:
    """Base of all source records."""

    SOURCE: ClassVar[str] = ""
    ENTITY_SET: ClassVar[str] = ""
    KEY: ClassVar[str] = ""  # attribute name of the primary key

    @classmethod
    def from_api(cls: type[R], data: dict[str, Any]) -> R:
        """Parse one source JSON object; raise RecordError when it does not fit."""
        return _parser(cls)(data)

    @classmethod
    def parser(cls: type[R]) -> Callable[[dict[str, Any]], R]:
        """``from_api`` as one function, for parsing many rows (no look-up per row)."""
        return _parser(cls)

    @classmethod
    def _from_api_checked(cls: type[R], data: dict[str, Any]) -> R:
        """The generic parse, field by field, with a precise error (the compiled parser's
        fallback, so both always agree)."""
        if not isinstance(data, dict):
            raise RecordError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
        kwargs: dict[str, Any] = {}
        for name, field_name, kind, required in _fields(cls):
            raw = data.get(field_name)
            if raw is None:
                if required:
                    raise RecordError(f"{cls.__name__}: missing field {field_name!r}")
                continue
            try:
                kwargs[name] = _convert(kind, raw)
            except (TypeError, ValueError) as exc:
                raise RecordError(f"{cls.__name__}.{field_name}: {exc}") from exc
        return cls(**kwargs)

    def to_api(self) -> dict[str, Any]:
        """Render this record in the source's own field names."""
        return _renderer(type(self))(self)

    @property
    def key(self) -> str:
        return getattr(self, self.KEY)


# --- generic conversion ---------------------------------------------------------------


def _kind(tp: Any) -> Any:
    """Reduce a type hint to what conversion needs: a base type or ('list', inner)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        inner = [a for a in args if a is not type(None)]
        return _kind(inner[0])
    if origin is list:
        return ("list", _kind(args[0]))
    return tp


@cache
def _fields(cls: type) -> tuple[tuple[str, str, Any, bool], ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if "api" not in f.metadata:
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        out.append((f.name, f.metadata["api"], _kind(hints[f.name]), required))
    return tuple(out)


def _convert(kind: Any, raw: Any) -> Any:
    if isinstance(kind, tuple):
        if not isinstance(raw, list):
            raise TypeError("expected a list")
        return [_convert(kind[1], item) for item in raw]
    if kind is dt.datetime:
        return parse_datetime(raw)
    if kind is dt.date:
        return parse_date(raw)
    if kind is float:
        if isinstance(raw, bool):
            raise TypeError("expected a number")
        return float(raw)
    if kind is int:
        if isinstance(raw, bool):
            raise TypeError("expected an integer")
        return int(raw)
    if kind is bool:
        if not isinstance(raw, bool):
            raise TypeError("expected a boolean")
        return raw
    if kind is str:
        if isinstance(raw, (dict, list)):
            raise TypeError("expected a string")
        return str(raw)
    if isinstance(kind, type) and issubclass(kind, Record):
        return kind.from_api(raw)
    return raw


# --- compiled parsers -------------------------------------------------------------------
# Parsing is the largest cost of an uncached page (tens of thousands of fields): one
# function per record type, generated once, with a fast path per field type for the
# values sources actually send. Anything unusual (a missing required field, a wrong type)
# falls back to the generic parse above, which raises the precise RecordError.

_fromiso_datetime = dt.datetime.fromisoformat
_fromiso_date = dt.date.fromisoformat


def _fast_datetime(value: Any) -> dt.datetime | None:
    if value.__class__ is str and value:
        parsed = _fromiso_datetime(value)  # 3.11: accepts the trailing "Z"
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)
    return parse_datetime(value)


# Shared values: a plant's records repeat the same strings (plants, statuses, materials,
# units, customer and order numbers), dates and timestamps over and over; each parsed
# anew would be its own object, kept as long as the record cache keeps the record (most of
# the gateway's memory with 100,000 orders). Strings are interned (freed again when no
# record uses them); dates, timestamps and numbers come from small memos, emptied when full.
_intern = sys.intern
_MEMO_LIMIT = 65_536
_DATES: dict[str, dt.date] = {}
_DATETIMES: dict[str, dt.datetime] = {}
_FLOATS: dict[float, float] = {}
_ZERO = 0.0


def _shared_date(value: Any) -> dt.date | None:
    if value.__class__ is not str:
        return parse_date(value)
    parsed = _DATES.get(value)
    if parsed is None:
        if len(value) != 10:
            return parse_date(value)
        if len(_DATES) >= _MEMO_LIMIT:
            _DATES.clear()
        parsed = _DATES[value] = _fromiso_date(value)
    return parsed


def _shared_datetime_z(value: str) -> dt.datetime:
    """A source timestamp ending in "Z" (3.11's fromisoformat gives an aware UTC time)."""
    parsed = _DATETIMES.get(value)
    if parsed is None:
        if len(_DATETIMES) >= _MEMO_LIMIT:
            _DATETIMES.clear()
        parsed = _DATETIMES[value] = _fromiso_datetime(value)
    return parsed


def _shared_float(value: int | float) -> float:
    if not value:  # 0 or 0.0 shared; -0.0 keeps its sign
        return _ZERO if value.__class__ is int or math.copysign(1.0, value) > 0 else value
    shared = _FLOATS.get(value)  # an int finds its float (3 == 3.0, same hash)
    if shared is None:
        if len(_FLOATS) >= _MEMO_LIMIT:
            _FLOATS.clear()
        shared = float(value)
        _FLOATS[shared] = shared
    return shared


class _Unusual(Exception):
    """A value the fast path does not take: use the generic parse."""


def _fast_expression(kind: Any, var: str, env: dict[str, Any]) -> str:
    if isinstance(kind, tuple):
        inner = _fast_expression(kind[1], "x", env)
        return f"([{inner} for x in {var}] if {var}.__class__ is list else _unusual())"
    if kind is str:
        return f"(_intern({var}) if {var}.__class__ is str else _unusual())"
    if kind is float:
        # The memo's lookup inline (a shared float is never zero), the function on a miss.
        return f"((_floats_get({var}) or _float({var})) if {var}.__class__ is float or {var}.__class__ is int else _unusual())"
    if kind is int:
        return f"({var} if {var}.__class__ is int else _unusual())"
    if kind is bool:
        return f"({var} if {var}.__class__ is bool else _unusual())"
    if kind is dt.datetime:
        # The sources' form ends in "Z": fromisoformat gives an aware UTC time directly.
        # The memo's lookup inline (a datetime is never false), the function on a miss.
        return f"((_datetimes_get({var}) or _datetime_z({var})) if {var}.__class__ is str and {var}[-1:] == 'Z' else _datetime({var}))"
    if kind is dt.date:
        return f"(_dates_get({var}) if {var}.__class__ is str else None) or _date({var})"
    if isinstance(kind, type) and issubclass(kind, Record):
        name = f"_parse_{kind.__name__}"
        env[name] = _parser(kind)
        return f"{name}({var})"
    return var


def _unusual() -> Any:
    raise _Unusual


@cache
def _parser(cls: type[R]) -> Any:
    """One parse function for ``cls``: builds the instance without ``__init__`` (every
    slot set directly, defaults included), which halves the cost of a record."""
    env: dict[str, Any] = {
        "_new": object.__new__,
        "_cls": cls,
        "_slow": cls._from_api_checked,
        "_unusual": _unusual,
        "_datetime": _fast_datetime,
        "_date": _shared_date,
        "_datetime_z": _shared_datetime_z,
        "_intern": _intern,
        "_float": _shared_float,
        # The shared values' memos, looked up inline: a Python call per value saved (a
        # cold page parses thousands of numbers and timestamps).
        "_floats_get": _FLOATS.get,
        "_datetimes_get": _DATETIMES.get,
        "_dates_get": _DATES.get,
    }
    defaults = {f.name: f for f in dataclasses.fields(cls)}
    lines = ["def parse(data):", "    if data.__class__ is not dict:", "        return _slow(data)", "    try:", "        g = data.get", "        o = _new(_cls)"]
    set_names = set()
    for name, field_name, kind, required in _fields(cls):
        set_names.add(name)
        f = defaults[name]
        lines.append(f"        v = g({field_name!r})")
        lines.append("        if v is not None:")
        lines.append(f"            o.{name} = {_fast_expression(kind, 'v', env)}")
        lines.append("        else:")
        if required:
            lines.append("            return _slow(data)")
        else:
            lines.append(f"            o.{name} = {_default_expression(f, env)}")
    for name, f in defaults.items():  # attributes without a source field: their defaults
        if name not in set_names:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                return _parser_with_init(cls)
            lines.append(f"        o.{name} = {_default_expression(f, env)}")
    lines += ["        return o", "    except Exception:", "        return _slow(data)"]
    exec("\n".join(lines), env)  # noqa: S102 - generated from the record's own field list
    return env["parse"]


def _default_expression(f: dataclasses.Field, env: dict[str, Any]) -> str:
    if f.default_factory is not dataclasses.MISSING:
        env[f"_factory_{f.name}"] = f.default_factory
        return f"_factory_{f.name}()"
    env[f"_default_{f.name}"] = f.default
    return f"_default_{f.name}"


def _parser_with_init(cls: type[R]) -> Any:
    """A record with a required attribute that no source field fills: the checked parse."""
    return cls._from_api_checked


@cache
def _renderer(cls: type) -> Any:
    """One render function for ``cls`` (the simulator renders every record of its plant):
    the generic ``_render`` below, unrolled per field; anything unusual still goes to it."""
    env: dict[str, Any] = {"_render": _render, "_dt": format_datetime, "_plain": frozenset({str, int, float, bool})}
    lines = ["def render(o):", "    out = {}"]
    for i, (name, field_name, kind, _required) in enumerate(_fields(cls)):
        env[f"_k{i}"] = kind
        inner = kind[1] if isinstance(kind, tuple) else None
        if kind in (str, int, float, bool):
            expr = f"v if v.__class__ in _plain else _render(_k{i}, v)"
        elif kind is dt.datetime:
            expr = "_dt(v)"
        elif kind is dt.date:
            expr = "v.isoformat()"
        elif isinstance(kind, type) and issubclass(kind, Record):
            env[f"_r{i}"] = _renderer(kind)
            expr = f"_r{i}(v) if v.__class__ is _k{i} else _render(_k{i}, v)"
        elif isinstance(inner, type) and issubclass(inner, Record):
            env[f"_r{i}"] = _renderer(inner)
            env[f"_i{i}"] = inner
            expr = f"[_r{i}(x) if x.__class__ is _i{i} else _render(_i{i}, x) for x in v]"
        else:
            expr = f"_render(_k{i}, v)"
        lines.append(f"    v = o.{name}")
        lines.append(f"    out[{field_name!r}] = None if v is None else ({expr})")
    lines.append("    return out")
    exec("\n".join(lines), env)  # noqa: S102 - generated from the record's own field list
    return env["render"]


def _render(kind: Any, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(kind, tuple):
        return [_render(kind[1], item) for item in value]
    if kind is dt.datetime:
        return format_datetime(value)
    if kind is dt.date:
        return value.isoformat()
    if isinstance(value, Record):
        return value.to_api()
    return value


# --- ERP --------------------------------------------------------------------------------

COMMERCIAL_PRIORITIES = ("STRATEGIC", "HIGH", "NORMAL", "LOW")


@dataclasses.dataclass(slots=True)
class Customer(Record):
    """ERP business partner in the customer role, with its commercial priority."""

    SOURCE: ClassVar[str] = "erp"
    ENTITY_SET: ClassVar[str] = "A_Customer"
    KEY: ClassVar[str] = "customer"

    customer: str = api("Customer")
    customer_name: str = api("CustomerName")
    commercial_priority: str = api("CommercialPriority", "NORMAL")  # STRATEGIC/HIGH/NORMAL/LOW
    country: str | None = api("Country", None)
    # The ship-to's address: region (ISO 3166-2 subdivision, e.g. BY) and time zone (IANA),
    # which its delivery calendar (receiving days, public holidays) and local dates follow.
    region: str | None = api("Region", None)
    time_zone: str | None = api("AddressTimeZone", None)
    last_change_date_time: dt.datetime | None = api("LastChangeDateTime", None)
    # Correspondence language (ISO 639-1, e.g. DE, EN): the language of proactive notices.
    language: str | None = api("Language", None)


@dataclasses.dataclass(slots=True)
class SalesOrderScheduleLine(Record):
    """One schedule line of an item (A_SalesOrderScheduleLine): a quantity promised for a date.

    The planning dates (product availability, loading, goods issue) are the schedule the
    order was confirmed with; they do not move when the plant re-plans. The ERP splits
    ``ProductAvailabilityDate`` into a date and a time; here it is one date-time.
    """

    schedule_line: str = api("ScheduleLine")
    requested_delivery_date: dt.date = api("RequestedDeliveryDate")
    order_quantity: float = api("ScheduleLineOrderQuantity")
    order_quantity_unit: str = api("OrderQuantityUnit", "PC")
    confirmed_delivery_date: dt.date | None = api("ConfirmedDeliveryDate", None)
    confirmed_quantity: float = api("ConfdOrderQtyByMatlAvailCheck", 0.0)
    delivered_quantity: float = api("DeliveredQtyInOrderQtyUnit", 0.0)
    open_confirmed_quantity: float = api("OpenConfdDelivQtyInOrdQtyUnit", 0.0)
    product_availability_date: dt.datetime | None = api("ProductAvailabilityDate", None)
    loading_date: dt.date | None = api("LoadingDate", None)
    goods_issue_date: dt.date | None = api("GoodsIssueDate", None)


@dataclasses.dataclass(slots=True)
class SalesOrderItem(Record):
    """Sales order item with its schedule-line promise.

    ``delivery_status``: A not delivered, B partially, C fully (or rejected). An item with
    a ``rejection_reason`` (SalesDocumentRjcnReason) is cut: what was not delivered will
    not be.
    """

    sales_order_item: str = api("SalesOrderItem")
    material: str = api("Material")
    requested_quantity: float = api("RequestedQuantity")
    requested_quantity_unit: str = api("RequestedQuantityUnit", "PC")
    net_amount: float = api("NetAmount", 0.0)
    confirmed_delivery_date: dt.date | None = api("ConfirmedDeliveryDate", None)
    confirmed_quantity: float | None = api("ConfirmedQuantity", None)
    delivery_status: str = api("DeliveryStatus", "A")
    rejection_reason: str = api("SalesDocumentRjcnReason", "")
    schedule_lines: list[SalesOrderScheduleLine] = api("to_ScheduleLine", default_factory=list)


@dataclasses.dataclass(slots=True)
class SalesOrder(Record):
    """ERP sales order header (A_SalesOrder) with its items.

    Processing statuses use A / B / C = not yet / partially / completely processed.
    ``confirmed_delivery_date`` is the delivery promise (latest confirmed schedule line).
    """

    SOURCE: ClassVar[str] = "erp"
    ENTITY_SET: ClassVar[str] = "A_SalesOrder"
    KEY: ClassVar[str] = "sales_order"

    sales_order: str = api("SalesOrder")
    sold_to_party: str = api("SoldToParty")
    sales_order_date: dt.date = api("SalesOrderDate")
    requested_delivery_date: dt.date = api("RequestedDeliveryDate")
    sales_order_type: str = api("SalesOrderType", "OR")
    purchase_order_by_customer: str | None = api("PurchaseOrderByCustomer", None)
    confirmed_delivery_date: dt.date | None = api("ConfirmedDeliveryDate", None)
    total_net_amount: float = api("TotalNetAmount", 0.0)
    transaction_currency: str = api("TransactionCurrency", "EUR")
    overall_sd_process_status: str = api("OverallSDProcessStatus", "A")
    overall_delivery_status: str = api("OverallDeliveryStatus", "A")
    total_credit_check_status: str = api("TotalCreditCheckStatus", "A")  # A ok, B blocked
    total_block_status: str = api("TotalBlockStatus", "")
    delivery_block_reason: str = api("DeliveryBlockReason", "")
    last_change_date_time: dt.datetime | None = api("LastChangeDateTime", None)
    items: list[SalesOrderItem] = api("to_Item", default_factory=list)


# --- MES --------------------------------------------------------------------------------

PRODUCTION_ORDER_STATUSES = (
    "CREATED",
    "RELEASED",
    "STARTED",
    "PARTIALLY_CONFIRMED",
    "CONFIRMED",
    "DELIVERED",
    "TECO",
    "CLOSED",
    "LOCKED",
)


@dataclasses.dataclass(slots=True)
class ProductionOrder(Record):
    """MES production (manufacturing) order, pegged to a sales order item."""

    SOURCE: ClassVar[str] = "mes"
    ENTITY_SET: ClassVar[str] = "A_ProductionOrder"
    KEY: ClassVar[str] = "manufacturing_order"

    manufacturing_order: str = api("ManufacturingOrder")
    material: str = api("Material")
    sales_order: str = api("SalesOrder")
    sales_order_item: str = api("SalesOrderItem")
    total_quantity: float = api("TotalQuantity")
    work_center: str = api("WorkCenter")
    scheduled_start_date: dt.datetime = api("MfgOrderScheduledStartDate")
    scheduled_end_date: dt.datetime = api("MfgOrderScheduledEndDate")
    status: str = api("OrderStatus", "CREATED")
    # Basic dates: the plan the order was created with; scheduled dates follow re-planning.
    planned_start_date: dt.datetime | None = api("MfgOrderPlannedStartDate", None)
    planned_end_date: dt.datetime | None = api("MfgOrderPlannedEndDate", None)
    production_plant: str = api("ProductionPlant", "1000")
    production_unit: str = api("ProductionUnit", "PC")
    actual_release_date: dt.datetime | None = api("MfgOrderActualReleaseDate", None)
    actual_start_date: dt.datetime | None = api("MfgOrderActualStartDate", None)
    actual_end_date: dt.datetime | None = api("MfgOrderActualEndDate", None)
    confirmed_yield_qty: float = api("MfgOrderConfirmedYieldQty", 0.0)
    confirmed_scrap_qty: float = api("MfgOrderConfirmedScrapQty", 0.0)
    planned_scrap_qty: float = api("MfgOrderPlannedScrapQty", 0.0)
    batch: str | None = api("Batch", None)
    last_change_date_time: dt.datetime | None = api("LastChangeDateTime", None)


@dataclasses.dataclass(slots=True)
class WorkCenter(Record):
    """A work centre and its shop-floor state (UP / DOWN)."""

    SOURCE: ClassVar[str] = "mes"
    ENTITY_SET: ClassVar[str] = "A_WorkCenter"
    KEY: ClassVar[str] = "work_center"

    work_center: str = api("WorkCenter")
    work_center_text: str = api("WorkCenterText", "")
    plant: str = api("Plant", "1000")
    state: str = api("State", "UP")
    down_since: dt.datetime | None = api("DownSince", None)
    expected_up_at: dt.datetime | None = api("ExpectedUpAt", None)
    last_change_date_time: dt.datetime | None = api("LastChangeDateTime", None)


# --- WMS --------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class ComponentAvailability(Record):
    """Availability of one bill-of-material component for one production order."""

    SOURCE: ClassVar[str] = "wms"
    ENTITY_SET: ClassVar[str] = "A_ComponentAvailability"
    KEY: ClassVar[str] = "reservation"

    reservation: str = api("Reservation")  # "<ManufacturingOrder>-<item>"
    manufacturing_order: str = api("ManufacturingOrder")
    material: str = api("Material")
    required_quantity: float = api("RequiredQuantity")
    available_quantity: float = api("AvailableQuantity")
    shortage_quantity: float = api("ShortageQuantity", 0.0)
    base_unit: str = api("BaseUnit", "PC")
    plant: str = api("Plant", "1000")
    storage_location: str = api("StorageLocation", "0001")
    inventory_stock_type: str = api("InventoryStockType", "01")
    expected_receipt_date: dt.date | None = api("ExpectedReceiptDate", None)
    last_change_date_time: dt.datetime | None = api("LastChangeDateTime", None)


@dataclasses.dataclass(slots=True)
class OutboundDeliveryItem(Record):
    """One item of an outbound delivery (A_OutbDeliveryItem): what of which order item it ships."""

    delivery_document_item: str = api("DeliveryDocumentItem")
    reference_sd_document: str = api("ReferenceSDDocument")
    reference_sd_document_item: str = api("ReferenceSDDocumentItem")
    material: str = api("Material")
    actual_delivery_quantity: float = api("ActualDeliveryQuantity", 0.0)
    delivery_quantity_unit: str = api("DeliveryQuantityUnit", "PC")
    batch: str | None = api("Batch", None)


@dataclasses.dataclass(slots=True)
class OutboundDelivery(Record):
    """Outbound delivery (A_OutbDeliveryHeader); statuses A / B / C as in SAP."""

    SOURCE: ClassVar[str] = "wms"
    ENTITY_SET: ClassVar[str] = "A_OutbDeliveryHeader"
    KEY: ClassVar[str] = "delivery_document"

    delivery_document: str = api("DeliveryDocument")
    sales_order: str = api("ReferenceSDDocument")
    ship_to_party: str = api("ShipToParty")
    delivery_date: dt.date = api("DeliveryDate")
    shipping_point: str = api("ShippingPoint", "1000")
    overall_picking_status: str = api("OverallPickingStatus", "A")
    overall_packing_status: str = api("OverallPackingStatus", "A")
    overall_goods_movement_status: str = api("OverallGoodsMovementStatus", "A")
    actual_goods_movement_date: dt.datetime | None = api("ActualGoodsMovementDate", None)
    # When the warehouse confirmed picking and packing (warehouse task confirmations).
    actual_picking_date_time: dt.datetime | None = api("ActualPickingDateTime", None)
    actual_packing_date_time: dt.datetime | None = api("ActualPackingDateTime", None)
    bill_of_lading: str | None = api("BillOfLading", None)
    last_change_date_time: dt.datetime | None = api("LastChangeDateTime", None)
    items: list[OutboundDeliveryItem] = api("to_DeliveryDocumentItem", default_factory=list)


# --- QMS --------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class UsageDecision(Record):
    code: str = api("UsageDecisionCode")  # A accepted, R rejected
    code_group: str = api("UsageDecisionCodeGroup", "01")
    valuation: str = api("UsageDecisionValuation", "ACCEPTED")  # ACCEPTED / REJECTED
    decided_at: dt.datetime | None = api("UsageDecisionDate", None)
    quality_score: float | None = api("UsageDecisionQualityScore", None)


@dataclasses.dataclass(slots=True)
class InspectionLot(Record):
    """QMS inspection lot; without a usage decision it holds the batch."""

    SOURCE: ClassVar[str] = "qms"
    ENTITY_SET: ClassVar[str] = "A_InspectionLot"
    KEY: ClassVar[str] = "inspection_lot"

    inspection_lot: str = api("InspectionLot")
    material: str = api("Material")
    batch: str = api("Batch")
    manufacturing_order: str = api("ManufacturingOrder")
    created_at: dt.datetime = api("InspectionLotCreatedOn")
    plant: str = api("Plant", "1000")
    inspection_lot_origin: str = api("InspectionLotOrigin", "04")  # 04 = goods receipt from production
    has_usage_decision: bool = api("InspectionLotHasUsageDecision", False)
    usage_decision: UsageDecision | None = api("to_UsageDecision", None)
    planned_end_date: dt.datetime | None = api("InspLotPlannedEndDate", None)
    last_change_date_time: dt.datetime | None = api("LastChangeDateTime", None)


# --- TMS --------------------------------------------------------------------------------

AFTERSHIP_TAGS = (
    "Pending",
    "InfoReceived",
    "InTransit",
    "OutForDelivery",
    "AttemptFail",
    "Delivered",
    "AvailableForPickup",
    "Exception",
    "Expired",
)


@dataclasses.dataclass(slots=True)
class TrackingEvent(Record):
    """One carrier scan: EDI 214 status code plus the AfterShip-style tag."""

    code: str = api("StatusCode")  # EDI 214 AT7: X3, AF, X6, X1, D1, SD, ...
    tag: str = api("Tag")
    occurred_at: dt.datetime = api("OccurredAt")
    location: str | None = api("Location", None)
    description: str | None = api("Description", None)


@dataclasses.dataclass(slots=True)
class ProofOfDelivery(Record):
    signed_by: str = api("SignedBy")
    delivered_at: dt.datetime = api("DeliveredAt")
    document: str | None = api("Document", None)


@dataclasses.dataclass(slots=True)
class ShipmentItem(Record):
    """What a shipment carries: one delivery item and its quantity, as handed to the carrier."""

    delivery_document: str = api("DeliveryDocument")
    delivery_document_item: str = api("DeliveryDocumentItem")
    sales_order: str = api("ReferenceSDDocument")
    sales_order_item: str = api("ReferenceSDDocumentItem")
    material: str = api("Material")
    quantity: float = api("Quantity")
    quantity_unit: str = api("QuantityUnit", "PC")


@dataclasses.dataclass(slots=True)
class Shipment(Record):
    """Carrier shipment for one outbound delivery, with its tracking history."""

    SOURCE: ClassVar[str] = "tms"
    ENTITY_SET: ClassVar[str] = "Shipment"
    KEY: ClassVar[str] = "tracking_number"

    tracking_number: str = api("TrackingNumber")
    carrier: str = api("Carrier")
    delivery_document: str = api("DeliveryDocument")
    tag: str = api("Tag", "Pending")
    status_code: str | None = api("StatusCode", None)
    bill_of_lading: str | None = api("BillOfLading", None)
    picked_up_at: dt.datetime | None = api("PickedUpAt", None)
    estimated_delivery_at: dt.datetime | None = api("EstimatedDeliveryAt", None)
    eta_window_start: dt.datetime | None = api("EtaWindowStart", None)
    eta_window_end: dt.datetime | None = api("EtaWindowEnd", None)
    delivered_at: dt.datetime | None = api("DeliveredAt", None)
    proof_of_delivery: ProofOfDelivery | None = api("ProofOfDelivery", None)
    last_change_date_time: dt.datetime | None = api("LastChangeDateTime", None)
    events: list[TrackingEvent] = api("TrackingEvents", default_factory=list)
    items: list[ShipmentItem] = api("to_Item", default_factory=list)


RECORD_TYPES: tuple[type[Record], ...] = (
    Customer,
    SalesOrder,
    ProductionOrder,
    WorkCenter,
    ComponentAvailability,
    OutboundDelivery,
    InspectionLot,
    Shipment,
)

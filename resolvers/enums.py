"""Domain enumerations of the order view.

Plain ``enum.Enum`` classes whose values equal their names, so the GraphQL layer can wrap
them unchanged (``strawberry.enum(ProductionStatus)``) and the wire value is the name.
Members are declared in lifecycle order where there is one; the domain rules rely on it
(``list(OrderStage)`` goes from RECEIVED to DELIVERED).
"""

from __future__ import annotations

from enum import Enum


class ProductionStatus(Enum):
    """State of the production (MES) section of an order."""

    NOT_REQUIRED = "NOT_REQUIRED"  # shipped from stock, no production order
    NOT_RELEASED = "NOT_RELEASED"
    RELEASED = "RELEASED"
    IN_PROGRESS = "IN_PROGRESS"
    INTERRUPTED = "INTERRUPTED"  # work centre down while the order is not complete
    COMPLETED = "COMPLETED"


class MaterialsStatus(Enum):
    """Availability of the bill-of-material components (WMS)."""

    NOT_REQUIRED = "NOT_REQUIRED"
    AVAILABLE = "AVAILABLE"
    SHORTAGE = "SHORTAGE"
    CONSUMED = "CONSUMED"  # production started or completed


class QualityStatus(Enum):
    """State of the inspection lots (QMS)."""

    NOT_REQUIRED = "NOT_REQUIRED"
    NOT_STARTED = "NOT_STARTED"
    IN_INSPECTION = "IN_INSPECTION"  # lot without usage decision: the batch is on hold
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"


class LogisticsStatus(Enum):
    """Warehouse (WMS) and carrier (TMS) state of the order's deliveries."""

    NOT_CREATED = "NOT_CREATED"
    OPEN = "OPEN"
    PICKED = "PICKED"
    PACKED = "PACKED"
    GOODS_ISSUED = "GOODS_ISSUED"
    IN_TRANSIT = "IN_TRANSIT"
    OUT_FOR_DELIVERY = "OUT_FOR_DELIVERY"
    DELIVERY_FAILED = "DELIVERY_FAILED"
    PARTIALLY_DELIVERED = "PARTIALLY_DELIVERED"  # every delivery arrived, quantity still owed
    DELIVERED = "DELIVERED"
    EXCEPTION = "EXCEPTION"


class OrderStage(Enum):
    """Where the order is in its lifecycle, in lifecycle order."""

    RECEIVED = "RECEIVED"
    AWAITING_MATERIAL = "AWAITING_MATERIAL"
    PRODUCTION_RELEASED = "PRODUCTION_RELEASED"
    IN_PRODUCTION = "IN_PRODUCTION"
    IN_QUALITY_INSPECTION = "IN_QUALITY_INSPECTION"
    QUALITY_REJECTED = "QUALITY_REJECTED"
    READY_FOR_PICKING = "READY_FOR_PICKING"
    PICKED = "PICKED"
    PACKED = "PACKED"
    GOODS_ISSUED = "GOODS_ISSUED"
    IN_TRANSIT = "IN_TRANSIT"
    OUT_FOR_DELIVERY = "OUT_FOR_DELIVERY"
    # Goods left the plant but quantity is still owed (a short or split shipment): the rest
    # is made again, waits for its own date, or is cut. Not complete.
    PARTIALLY_DELIVERED = "PARTIALLY_DELIVERED"
    DELIVERED = "DELIVERED"
    # The customer cancelled the whole order (every item rejected) before anything shipped.
    CANCELLED = "CANCELLED"


class MilestoneKind(Enum):
    """The milestones of an order, in lifecycle order."""

    ORDER_CONFIRMED = "ORDER_CONFIRMED"
    MATERIALS_AVAILABLE = "MATERIALS_AVAILABLE"
    PRODUCTION_RELEASED = "PRODUCTION_RELEASED"
    PRODUCTION_STARTED = "PRODUCTION_STARTED"
    PRODUCTION_COMPLETED = "PRODUCTION_COMPLETED"
    QUALITY_RELEASED = "QUALITY_RELEASED"
    PICKED = "PICKED"
    PACKED = "PACKED"
    GOODS_ISSUED = "GOODS_ISSUED"
    CARRIER_PICKED_UP = "CARRIER_PICKED_UP"
    IN_TRANSIT = "IN_TRANSIT"
    OUT_FOR_DELIVERY = "OUT_FOR_DELIVERY"
    DELIVERED = "DELIVERED"


class MilestoneStatus(Enum):
    """Whether a milestone happened, is due, is late, or does not apply."""

    DONE = "DONE"
    PENDING = "PENDING"
    OVERDUE = "OVERDUE"  # planned or expected time passed without an actual
    ON_HOLD = "ON_HOLD"  # held by a credit or delivery block until the order is released
    SKIPPED = "SKIPPED"  # not applicable, e.g. no production for a stock item


class DeliveryRisk(Enum):
    """Promise (confirmed delivery date) against prediction."""

    ON_TRACK = "ON_TRACK"
    AT_RISK = "AT_RISK"
    LATE = "LATE"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"  # nothing will be delivered: the customer cancelled the order


class ExceptionKind(Enum):
    """What went wrong, by the system that reports it (DOMAIN.md, "Exceptions")."""

    PRODUCTION_DELAY = "PRODUCTION_DELAY"
    MACHINE_DOWN = "MACHINE_DOWN"
    YIELD_SHORTFALL = "YIELD_SHORTFALL"
    MATERIAL_SHORTAGE = "MATERIAL_SHORTAGE"
    STOCK_BLOCKED = "STOCK_BLOCKED"
    QUALITY_HOLD = "QUALITY_HOLD"
    QUALITY_REJECTED = "QUALITY_REJECTED"
    CREDIT_BLOCK = "CREDIT_BLOCK"
    DELIVERY_BLOCK = "DELIVERY_BLOCK"
    # What a customer sees of a credit or a delivery block: the order awaits release (a
    # customer is never told about its credit status).
    AWAITING_RELEASE = "AWAITING_RELEASE"
    DISPATCH_MISSED = "DISPATCH_MISSED"
    CARRIER_DELAY = "CARRIER_DELAY"
    DELIVERY_ATTEMPT_FAILED = "DELIVERY_ATTEMPT_FAILED"
    ETA_BEYOND_PROMISE = "ETA_BEYOND_PROMISE"
    # The promise (e.g. a date the customer pulled in) comes before the plant's own plan
    # can ship: the schedule line plans goods issue after the ship-by day.
    PROMISE_BEFORE_PLAN = "PROMISE_BEFORE_PLAN"
    SHIPMENT_OVERDUE = "SHIPMENT_OVERDUE"  # the carrier's ETA passed and it is not delivered
    BACKORDER = "BACKORDER"  # shipped short: quantity owed after goods issue
    DATA_STALE = "DATA_STALE"


class Severity(Enum):
    """How badly an exception threatens delivery promises, least severe first."""

    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"

    @property
    def rank(self) -> int:
        """0 for LOW up to 3 for CRITICAL; compare severities with this."""
        return _SEVERITY_ORDER.index(self)

    def raised(self) -> Severity:
        """One level up, capped at CRITICAL."""
        return _SEVERITY_ORDER[min(self.rank + 1, len(_SEVERITY_ORDER) - 1)]


_SEVERITY_ORDER = list(Severity)


class ExceptionAction(Enum):
    """One step in an exception's life."""

    RAISED = "RAISED"
    UPDATED = "UPDATED"  # still open; its severity, value at risk or affected orders changed
    CLEARED = "CLEARED"

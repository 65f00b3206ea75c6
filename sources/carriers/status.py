"""One carrier status, whatever the channel (AfterShip webhook, EDI 214), and the shipment
``SourceEvent``s it becomes.

Each status becomes a ``Shipment`` event of the TMS types (``sources/tms.py``), keyed by
the tracking number, with the record's field names in ``data`` (``TrackingNumber``,
``Carrier``, ``Tag``, ``StatusCode``, ``TrackingEvents`` with this one scan,
``EstimatedDeliveryAt``, ``DeliveredAt``, ``BillOfLading``, ``DeliveryDocument`` when the
message names it) plus ``Subtag``, ``ReasonCode`` and ``Reason``. Without a delivery
document the event is a notification for the gateway (it re-reads the shipment);
``DeliveryDocument`` is a join key either way.

Event ids are digests of what the carrier said (carrier, tracking number, code, time,
place), so the same milestone sent twice — in two webhooks, or in a webhook that repeats
every checkpoint — is one event for the journal.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Iterable
from typing import Any

from .. import tms
from ..events import EventRegistry, SourceEvent, cloud_event
from ..records import format_datetime

__all__ = ["CarrierStatus", "status_events"]

_SHIPMENT = next(t for t in tms.EVENT_TYPES if t.entity == "Shipment")


@dataclasses.dataclass(frozen=True, slots=True)
class CarrierStatus:
    """One status of one shipment, as a carrier reported it."""

    channel: str  # "aftership" or "edi214"
    tracking_number: str
    carrier: str  # AfterShip slug or SCAC
    tag: str  # AfterShip tag (derived for EDI)
    status_code: str | None  # X12 AT701 (derived for AfterShip)
    action: str  # the shipment event action
    occurred_at: dt.datetime
    subtag: str | None = None
    description: str | None = None
    location: str | None = None
    reason_code: str | None = None
    reason: str | None = None
    estimated_delivery_at: dt.datetime | None = None
    eta_window: tuple[dt.datetime, dt.datetime] | None = None
    references: dict[str, str] = dataclasses.field(default_factory=dict)  # BillOfLading, DeliveryDocument, PurchaseOrder, …
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. weights, equipment

    def event_id(self, kind: str = "status") -> str:
        parts = [self.channel, kind, self.carrier.lower(), self.tracking_number, self.status_code or "", self.tag,
                 self.subtag or "", self.reason_code or "", format_datetime(self.occurred_at) or "", self.location or ""]
        if kind == "eta":
            parts.append(format_datetime(self.estimated_delivery_at) or "")
        digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
        return f"{self.channel}:{digest}"


def status_events(statuses: Iterable[CarrierStatus], registry: EventRegistry, *, source: str = "/carriers/tms") -> list[SourceEvent]:
    """The shipment events of ``statuses``, oldest first; a status with an estimate that is
    not itself an ETA message adds an ``EtaRevised`` event."""
    out: list[SourceEvent] = []
    for s in sorted(statuses, key=lambda s: s.occurred_at):
        out.append(_event(s, s.action, s.event_id(), source, registry))
        if s.estimated_delivery_at is not None and s.action != "EtaRevised":
            out.append(_event(s, "EtaRevised", s.event_id("eta"), source, registry))
    return out


def _event(s: CarrierStatus, action: str, event_id: str, source: str, registry: EventRegistry) -> SourceEvent:
    scan = {
        "StatusCode": s.status_code or "",
        "Tag": s.tag,
        "OccurredAt": format_datetime(s.occurred_at),
        "Location": s.location,
        "Description": s.description,
    }
    data: dict[str, Any] = {
        "TrackingNumber": s.tracking_number,
        "Carrier": s.carrier,
        "Tag": s.tag,
        "StatusCode": s.status_code,
        "Subtag": s.subtag,
        "ReasonCode": s.reason_code,
        "Reason": s.reason,
        "TrackingEvents": [scan],
    }
    if s.estimated_delivery_at is not None:
        data["EstimatedDeliveryAt"] = format_datetime(s.estimated_delivery_at)
    if s.eta_window is not None:
        data["EtaWindowStart"], data["EtaWindowEnd"] = (format_datetime(t) for t in s.eta_window)
    if action == "Delivered":
        data["DeliveredAt"] = format_datetime(s.occurred_at)
    for name in ("BillOfLading", "DeliveryDocument", "PurchaseOrder", "ShipmentIdentification"):
        if s.references.get(name):
            data[name] = s.references[name]
    if s.extra:
        data.update(s.extra)
    ce = cloud_event(_SHIPMENT, action, id=event_id, source=source, time=s.occurred_at, key=s.tracking_number, data=data)
    return registry.parse(ce, system="tms")

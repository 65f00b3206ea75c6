"""CloudEvents 1.0 (JSON) from the source systems, parsed into ``SourceEvent``.

Each system module (``sources/<system>.py``) declares the event types it sends as
``EVENT_TYPES``: a type prefix per entity, with the record class its data carries and
the field that keys it. A type is ``<prefix><Action>.v1``, e.g.
``sap.s4.beh.productionorder.v1.ProductionOrder.Released.v1``.

Data events carry the whole record in ``data``; notification-only events (as SAP sends
them) carry only keys, and the gateway re-reads the record. Either way the event names
the join keys it knows (``refs``), which the gateway uses to find the affected orders.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import Any

from .records import Record, RecordError, parse_datetime

REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type")
JOIN_KEYS = (
    "SalesOrder",
    "ReferenceSDDocument",
    "ManufacturingOrder",
    "Batch",
    "WorkCenter",
    "Material",
    "DeliveryDocument",
    "TrackingNumber",
    "InspectionLot",
    "Reservation",
    "Customer",
)
_TYPE_RE = re.compile(r"^(?P<prefix>.+\.)(?P<action>[A-Za-z]+)\.v(?P<version>\d+)$")


class EventError(ValueError):
    """An event that cannot be accepted; the message says why."""


@dataclasses.dataclass(slots=True, frozen=True)
class EventType:
    """One entity's events from one system."""

    system: str
    entity: str
    prefix: str
    key_field: str
    record_type: type[Record] | None
    actions: frozenset[str]
    reversals: frozenset[str] = frozenset()

    def type_for(self, action: str) -> str:
        return f"{self.prefix}{action}.v1"


@dataclasses.dataclass(slots=True, frozen=True)
class SourceEvent:
    """A validated event from one source system."""

    system: str
    id: str
    type: str
    entity: str
    action: str
    key: str
    occurred_at: dt.datetime
    subject: str | None
    data: dict[str, Any] | None
    record: Record | None  # the full record, when the event carries one
    refs: dict[str, str]  # join keys named by the event
    reversal: bool


class EventRegistry:
    """All event types the gateway accepts, by system."""

    def __init__(self, types: list[EventType]) -> None:
        self._by_prefix = {t.prefix: t for t in types}
        self.systems = sorted({t.system for t in types})

    def describe(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for t in self._by_prefix.values():
            out.setdefault(t.system, []).extend(sorted(t.type_for(a) for a in t.actions))
        return out

    def parse(self, ce: Any, *, system: str | None = None) -> SourceEvent:
        """Validate one CloudEvent (a decoded JSON object); raise EventError if unacceptable."""
        if not isinstance(ce, dict):
            raise EventError("an event must be a JSON object")
        missing = [a for a in REQUIRED_ATTRIBUTES if not isinstance(ce.get(a), str) or not ce.get(a)]
        if missing:
            raise EventError(f"event {ce.get('id', '?')!r}: missing required attribute(s) {', '.join(missing)}")
        if ce["specversion"] != "1.0":
            raise EventError(f"event {ce['id']!r}: specversion must be '1.0'")
        event_system = system_of_source(ce["source"])
        if event_system is None or event_system not in self.systems:
            raise EventError(
                f"event {ce['id']!r}: unknown source {ce['source']!r} (expected one of {', '.join(self.systems)}, "
                "as the last path segment)"
            )
        if system is not None and event_system != system:
            raise EventError(f"event {ce['id']!r}: source {ce['source']!r} does not match the signing system {system!r}")
        m = _TYPE_RE.match(ce["type"])
        etype = self._by_prefix.get(m.group("prefix")) if m else None
        if etype is None or etype.system != event_system or m is None or m.group("action") not in etype.actions:
            raise EventError(f"event {ce['id']!r}: unknown type {ce['type']!r} for source {event_system!r}")
        action = m.group("action")
        data = ce.get("data")
        if data is not None and not isinstance(data, dict):
            raise EventError(f"event {ce['id']!r}: data must be a JSON object")
        try:
            occurred_at = parse_datetime(ce.get("time")) if ce.get("time") else None
        except ValueError as exc:
            raise EventError(f"event {ce['id']!r}: bad time {ce.get('time')!r}") from exc
        if occurred_at is None:
            raise EventError(f"event {ce['id']!r}: missing `time` (the business time of the change)")
        subject = ce.get("subject")
        if subject is not None and not isinstance(subject, str):
            raise EventError(f"event {ce['id']!r}: subject must be a string")
        key = (data or {}).get(etype.key_field) or subject
        if not key or not isinstance(key, str):
            raise EventError(
                f"event {ce['id']!r}: no {etype.key_field} in data and no subject: cannot tell which record changed"
            )
        record: Record | None = None
        if data and etype.record_type is not None and not set(data) <= set(JOIN_KEYS):
            try:
                record = etype.record_type.from_api(data)
            except RecordError:
                record = None  # treat as notification: the gateway re-reads the record
        refs = {k: str(v) for k, v in (data or {}).items() if k in JOIN_KEYS and isinstance(v, (str, int)) and v != ""}
        refs.setdefault(etype.key_field, key)
        return SourceEvent(
            system=event_system,
            id=ce["id"],
            type=ce["type"],
            entity=etype.entity,
            action=action,
            key=key,
            occurred_at=occurred_at,
            subject=subject,
            data=data,
            record=record,
            refs=refs,
            reversal=action in etype.reversals,
        )


def system_of_source(source: str) -> str | None:
    """``/plant/1000/mes`` or ``urn:ordergraph:mes`` → ``mes``."""
    tail = re.split(r"[/:]", source.rstrip("/"))[-1].lower()
    return tail or None


def cloud_event(
    etype: EventType, action: str, *, id: str, source: str, time: dt.datetime, key: str, data: dict | None
) -> dict[str, Any]:
    """Build a CloudEvent of ``etype`` (the simulator and tests send these)."""
    from .records import format_datetime

    ce: dict[str, Any] = {
        "specversion": "1.0",
        "id": id,
        "source": source,
        "type": etype.type_for(action),
        "time": format_datetime(time),
        "subject": key,
        "datacontenttype": "application/json",
    }
    if data is not None:
        ce["data"] = data
    return ce

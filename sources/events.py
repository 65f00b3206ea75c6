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

from .keys import KeyFormats
from .records import Record, RecordError

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
class EventLimits:
    """What ``POST /events`` checks before it stores anything (``[events]`` settings).

    Each bound keeps out an event that could never be applied: a key the sources would
    refuse (too long, wrong shape), ``data`` nested deeper than the journal can store, or a
    business time so far ahead that it would mark every later real event of its record as
    stale.
    """

    max_id_length: int = 256
    max_source_length: int = 256
    max_subject_length: int = 256
    max_data_depth: int = 32
    max_future_seconds: float = 300.0  # clock skew allowed on `time`
    max_age_days: float = 365.0  # older `time`: a device clock gone wrong; 0 = no bound
    key_formats: KeyFormats = dataclasses.field(default_factory=KeyFormats)


def nesting_depth(value: Any, limit: int) -> int:
    """Depth of JSON containers in ``value`` (a scalar is 0), counted up to ``limit + 1``.

    Iterative, so a hostile document cannot exhaust the stack while it is measured."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return deepest
        stack.extend((child, depth) for child in children)
    return deepest


def parse_event_time(text: Any) -> dt.datetime:
    """A CloudEvents ``time`` (RFC 3339): it must carry a timezone (``Z`` or an offset).

    Raises ValueError saying why. Python's own range (years 1-9999) bounds what parses;
    the offset must also leave the instant inside that range in UTC."""
    if not isinstance(text, str) or not text:
        raise ValueError("`time` must be an RFC 3339 timestamp string")
    if len(text) > 64:
        raise ValueError("`time` is too long for an RFC 3339 timestamp")
    raw = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        parsed = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"`time` {text!r} is not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"`time` {text!r} has no timezone: add Z or an offset such as +01:00")
    try:
        return parsed.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError(f"`time` {text!r} is outside the years 1-9999 in UTC") from None


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

    def __init__(self, types: list[EventType], limits: EventLimits | None = None) -> None:
        self._by_prefix = {t.prefix: t for t in types}
        self.systems = sorted({t.system for t in types})
        self.limits = limits or EventLimits()

    def types(self) -> list[EventType]:
        """Every event type, as given."""
        return list(self._by_prefix.values())

    def describe(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for t in self._by_prefix.values():
            out.setdefault(t.system, []).extend(sorted(t.type_for(a) for a in t.actions))
        return out

    def parse(self, ce: Any, *, system: str | None = None, now: dt.datetime | None = None) -> SourceEvent:
        """Validate one CloudEvent (a decoded JSON object); raise EventError if unacceptable.

        ``now``: also check that ``time`` lies within the accepted window around it (at the
        door; a journaled event is re-parsed without it)."""
        if not isinstance(ce, dict):
            raise EventError("an event must be a JSON object")
        missing = [a for a in REQUIRED_ATTRIBUTES if not isinstance(ce.get(a), str) or not ce.get(a)]
        if missing:
            raise EventError(f"event {_shown(ce.get('id', '?'))}: missing required attribute(s) {', '.join(missing)}")
        limits = self.limits
        for attribute, most in (("id", limits.max_id_length), ("source", limits.max_source_length)):
            if len(ce[attribute]) > most:
                raise EventError(
                    f"event {_shown(ce['id'])}: `{attribute}` is {len(ce[attribute])} characters long (at most {most})"
                )
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
            raise EventError(f"event {ce['id']!r}: unknown type {_shown(ce['type'])} for source {event_system!r}")
        action = m.group("action")
        data = ce.get("data")
        if data is not None and not isinstance(data, dict):
            raise EventError(f"event {ce['id']!r}: data must be a JSON object")
        if data is not None and nesting_depth(data, limits.max_data_depth) > limits.max_data_depth:
            raise EventError(f"event {ce['id']!r}: `data` nests deeper than {limits.max_data_depth} levels")
        if not ce.get("time"):
            raise EventError(f"event {ce['id']!r}: missing `time` (the business time of the change)")
        try:
            occurred_at = parse_event_time(ce["time"])
        except ValueError as exc:
            raise EventError(f"event {ce['id']!r}: {exc}") from None
        if now is not None:
            self._check_window(ce["id"], occurred_at, now)
        subject = ce.get("subject")
        if subject is not None and not isinstance(subject, str):
            raise EventError(f"event {ce['id']!r}: subject must be a string")
        if subject is not None and len(subject) > limits.max_subject_length:
            raise EventError(
                f"event {ce['id']!r}: `subject` is {len(subject)} characters long (at most {limits.max_subject_length})"
            )
        key = (data or {}).get(etype.key_field) or subject
        if not key or not isinstance(key, str):
            raise EventError(
                f"event {ce['id']!r}: no {etype.key_field} in data and no subject: cannot tell which record changed"
            )
        if (problem := limits.key_formats.problem(etype.key_field, key)) is not None:
            raise EventError(f"event {ce['id']!r}: {problem}")
        record: Record | None = None
        if data and etype.record_type is not None and not set(data) <= set(JOIN_KEYS):
            try:
                record = etype.record_type.from_api(data)
            except RecordError:
                record = None  # treat as notification: the gateway re-reads the record
        refs = {k: str(v) for k, v in (data or {}).items() if k in JOIN_KEYS and isinstance(v, (str, int)) and v != ""}
        for field, value in refs.items():
            # Join keys lead to look-ups at the sources: the same shape as the key itself.
            if (problem := limits.key_formats.problem(field, value)) is not None:
                raise EventError(f"event {ce['id']!r}: {problem}")
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


    def check_time(self, event_id: str, occurred_at: dt.datetime, now: dt.datetime) -> None:
        """Raise EventError when ``occurred_at`` lies outside the accepted window around ``now``."""
        self._check_window(event_id, occurred_at, now)

    def _check_window(self, event_id: str, occurred_at: dt.datetime, now: dt.datetime) -> None:
        limits = self.limits
        ahead = (occurred_at - now).total_seconds()
        if ahead > limits.max_future_seconds:
            raise EventError(
                f"event {event_id!r}: `time` {occurred_at.isoformat()} is {_duration(ahead)} ahead of the gateway's "
                f"clock (at most {limits.max_future_seconds:g} s of clock skew): check the source's clock"
            )
        if limits.max_age_days > 0 and -ahead > limits.max_age_days * 86400:
            raise EventError(
                f"event {event_id!r}: `time` {occurred_at.isoformat()} is more than {limits.max_age_days:g} days "
                "in the past: check the source's clock"
            )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def _shown(value: Any) -> str:
    """An attribute as an error message quotes it: never the whole of a huge one."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:60]}…"


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

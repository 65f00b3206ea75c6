"""Shop-floor messages → the MES ``SourceEvent``s the rest of ordergraph already handles.

Two ways a plant reports machine state, counts and confirmations:

**Sparkplug B** (``SparkplugHost`` updates). Each edge node or device is a work centre
(``MetricProfile.work_center_of``; by default the device id, or the edge node id for node
metrics). The metric names it reads are the profile's (defaults below; a plant maps its
own tag names here):

=============================  ===========  ==============================================
metric                         datatype     meaning
=============================  ===========  ==============================================
``State``                      String/Int   RUNNING / IDLE / DOWN (synonyms and PackML
                                            state numbers are mapped, see ``STATES``)
``Order/ManufacturingOrder``   String       the production order on the work centre
``Counts/Good``                UInt/Int     good parts of that order so far
``Counts/Scrap``               UInt/Int     scrap of that order so far
``Confirmation/ManufacturingOrder``  String an operation confirmation: the order,
``Confirmation/Operation``     String       … its operation (e.g. ``0020``),
``Confirmation/YieldQuantity`` number       … yield and
``Confirmation/ScrapQuantity`` number       … scrap confirmed,
``Confirmation/Final``         Boolean      … and whether it is the final confirmation
=============================  ===========  ==============================================

**Plain JSON**, for plants without Sparkplug: topic ``<prefix>/<plant>/<work centre>/<kind>``
(prefix ``shopfloor`` by default; subscribe to ``shopfloor/+/+/+``), UTF-8 JSON objects:

- ``state``: ``{"state": "RUNNING"|"IDLE"|"DOWN", "at": "2026-11-30T08:00:00Z",
  "expectedUpAt": "…" (optional), "reason": "…" (optional)}``
- ``counts``: ``{"manufacturingOrder": "1000123", "good": 120, "scrap": 3, "at": "…"}``
- ``confirmation``: ``{"manufacturingOrder": "1000123", "operation": "0020", "yield": 12,
  "scrap": 1, "final": true, "at": "…"}``

Any message may carry ``"id"``; without one, the id is a digest of topic and body, so a
redelivered message is a duplicate for the journal either way.

What each becomes (types of ``sources/mes.py``, parsed by the event registry, so the
journal, dedupe, invalidation and subscribers treat them like pushed MES events):

- a state change → ``WorkCenter.Down`` (now DOWN), ``WorkCenter.Up`` (no longer DOWN) or
  ``WorkCenter.Changed`` (RUNNING ↔ IDLE), data ``WorkCenter``, ``State`` (UP/DOWN, the
  record's values), ``MachineState`` (RUNNING/IDLE/DOWN), ``DownSince``, ``ExpectedUpAt``;
- counts → ``ProductionOrder.Changed`` keyed by the order, data ``ManufacturingOrder``,
  ``WorkCenter``, ``GoodCount``, ``ScrapCount`` (counts while no order is known are not
  applied: they concern no customer order);
- a confirmation → ``ProductionOrder.PartiallyConfirmed`` (``Confirmed`` when final), data
  ``ManufacturingOrder``, ``ManufacturingOrderOperation``, ``WorkCenter``,
  ``ConfirmationYieldQuantity``, ``ConfirmationScrapQuantity``, ``IsFinalConfirmation``.

Production order events carry keys and shop-floor figures, not a whole production order,
so they are notifications (as SAP's own events are): the gateway re-reads the order. A
work-centre event's record takes the record's defaults for what a machine does not report
(``WorkCenterText``; ``Plant`` unless ``MetricProfile.plant_of`` or the JSON topic names it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from .. import mes
from ..events import EventRegistry, EventType, SourceEvent, cloud_event
from .errors import JsonMessageError
from .payload import Metric
from .session import Outcome, Update

__all__ = ["STATES", "JsonProfile", "MetricProfile", "ShopFloorMapper"]

# Machine states as plants name them → RUNNING / IDLE / DOWN. PackML state numbers too:
# 6 Execute runs; Aborting/Aborted/Holding/Held/Clearing are down; the rest are idle.
STATES: Mapping[str, str] = {
    **dict.fromkeys(("RUNNING", "RUN", "EXECUTE", "PRODUCING", "PRODUCTION", "AUTO"), "RUNNING"),
    **dict.fromkeys(("IDLE", "STOPPED", "STARTING", "STOPPING", "SUSPENDED", "STARVED", "BLOCKED",
                     "COMPLETE", "RESETTING", "SETUP", "CHANGEOVER"), "IDLE"),
    **dict.fromkeys(("DOWN", "FAULT", "FAULTED", "ERROR", "ALARM", "ABORTED", "ABORTING", "HELD",
                     "HOLDING", "BREAKDOWN", "MAINTENANCE"), "DOWN"),
    **{str(n): "IDLE" for n in (2, 3, 4, 5, 7, 12, 13, 14, 15, 16, 17)},
    **{str(n): "DOWN" for n in (1, 8, 9, 10, 11)},
    "6": "RUNNING",
}

_TYPES: dict[str, EventType] = {t.entity: t for t in mes.EVENT_TYPES}


def _default_work_center(group_id: str, edge_node_id: str, device_id: str | None) -> str:
    return device_id or edge_node_id


@dataclasses.dataclass(frozen=True, slots=True)
class MetricProfile:
    """Which Sparkplug metrics mean what, and which work centre a node or device is."""

    state: str = "State"
    order: str = "Order/ManufacturingOrder"
    good: str = "Counts/Good"
    scrap: str = "Counts/Scrap"
    confirmation_order: str = "Confirmation/ManufacturingOrder"
    confirmation_operation: str = "Confirmation/Operation"
    confirmation_yield: str = "Confirmation/YieldQuantity"
    confirmation_scrap: str = "Confirmation/ScrapQuantity"
    confirmation_final: str = "Confirmation/Final"
    states: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(STATES))
    work_center_of: Callable[[str, str, str | None], str | None] = _default_work_center
    plant_of: Callable[[str], str | None] = lambda group_id: None  # the plant of a Sparkplug group


@dataclasses.dataclass(slots=True)
class _WorkCenterState:
    machine_state: str | None = None
    down_since: dt.datetime | None = None
    order: str | None = None


class ShopFloorMapper:
    """Turns Sparkplug updates and JSON messages into MES ``SourceEvent``s.

    It remembers each work centre's last machine state and current order (births restate
    them), so only changes become state events. ``problems`` collects what could not be
    mapped (an unknown state value, a count that is not a number) for the log.
    """

    def __init__(
        self,
        registry: EventRegistry,
        profile: MetricProfile | None = None,
        *,
        source_prefix: str = "/shopfloor",
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.registry = registry
        self.profile = profile or MetricProfile()
        self.source_prefix = source_prefix.rstrip("/")
        self.clock = clock
        self.work_centers: dict[str, _WorkCenterState] = {}
        self.problems: list[str] = []

    def work_centers_of(self, update: Update) -> list[str]:
        """The work centres an update made stale (NDEATH, DDEATH, a seq gap)."""
        t = update.topic
        out = []
        for device in update.became_stale:
            wc = self.profile.work_center_of(t.group_id, t.edge_node_id, device)
            if wc:
                out.append(wc)
        return out

    # --- Sparkplug -------------------------------------------------------------------

    def from_sparkplug(self, update: Update) -> list[SourceEvent]:
        """The events of one applied BIRTH or DATA update (others give none)."""
        if update.outcome not in (Outcome.BIRTH, Outcome.DATA) or update.payload is None:
            return []
        t = update.topic
        wc = self.profile.work_center_of(t.group_id, t.edge_node_id, t.device_id)
        if not wc:
            return []
        p = self.profile
        values: dict[str, Metric] = {m.name: m for m in update.metrics if m.name and not m.is_historical}
        sent_at = update.payload.timestamp
        id_base = f"spb:{t.group_id}:{t.edge_node_id}:{t.device_id or ''}:{update.bd_seq if update.bd_seq is not None else ''}:{update.payload.seq}:{_ms(sent_at)}"
        source = f"{self.source_prefix}/{t.group_id}/{t.edge_node_id}/mes"

        def at(m: Metric | None) -> dt.datetime:
            return (m.timestamp if m is not None else None) or sent_at or self.clock()

        def text(name: str) -> str | None:
            m = values.get(name)
            if m is None or m.value is None:
                return None
            return str(m.value)

        def number(name: str) -> float | None:
            m = values.get(name)
            if m is None or m.value is None:
                return None
            if isinstance(m.value, bool) or not isinstance(m.value, (int, float)) or not math.isfinite(m.value):
                self.problems.append(f"{t}: {name} is not a number: {m.value!r}")
                return None
            return float(m.value)

        events: list[SourceEvent] = []
        state = values.get(p.state)
        if state is not None and state.value is not None:
            machine = p.states.get(str(state.value).strip().upper())
            if machine is None:
                self.problems.append(f"{t}: unknown {p.state} value {state.value!r}")
            else:
                events += self._state(wc, machine, at(state), source, f"{id_base}:state", plant=p.plant_of(t.group_id))
        order = text(p.order)
        if order is not None:
            self._wc(wc).order = order or None
        good, scrap = number(p.good), number(p.scrap)
        if good is not None or scrap is not None:
            current = self._wc(wc).order
            if current is None:
                self.problems.append(f"{t}: counts for {wc} but no {p.order} known: not applied")
            else:
                stamp = at(values.get(p.good) or values.get(p.scrap))
                events.append(self._counts(wc, current, good, scrap, stamp, source, f"{id_base}:counts"))
        confirmed = text(p.confirmation_order)
        if confirmed:
            final = values.get(p.confirmation_final)
            events.append(
                self._confirmation(
                    wc, confirmed, text(p.confirmation_operation), number(p.confirmation_yield),
                    number(p.confirmation_scrap), bool(final.value) if final is not None else False,
                    at(values.get(p.confirmation_order)), source, f"{id_base}:confirmation",
                )
            )
        return events

    # --- JSON profile ----------------------------------------------------------------

    def from_json(self, topic: str, body: bytes, *, prefix: str = "shopfloor") -> list[SourceEvent]:
        """The events of one plain-JSON message; ``JsonMessageError`` when it does not fit."""
        return JsonProfile(prefix).events(self, topic, body)

    # --- event builders --------------------------------------------------------------

    def _wc(self, wc: str) -> _WorkCenterState:
        return self.work_centers.setdefault(wc, _WorkCenterState())

    def _state(
        self, wc: str, machine: str, at: dt.datetime, source: str, event_id: str, expected_up_at: dt.datetime | None = None,
        reason: str | None = None, plant: str | None = None,
    ) -> list[SourceEvent]:
        known = self._wc(wc)
        before = known.machine_state
        if before == machine and expected_up_at is None:
            return []
        known.machine_state = machine
        if machine == "DOWN":
            known.down_since = known.down_since if before == "DOWN" and known.down_since else at
            action = "Down"
        else:
            known.down_since = None
            action = "Up" if before == "DOWN" else "Changed"
        data: dict[str, Any] = {
            "WorkCenter": wc,
            "State": "DOWN" if machine == "DOWN" else "UP",
            "MachineState": machine,
            "DownSince": _iso(known.down_since),
            "ExpectedUpAt": _iso(expected_up_at),
            "LastChangeDateTime": _iso(at),
        }
        if reason:
            data["Reason"] = reason
        if plant:
            data["Plant"] = plant
        return [self._event("WorkCenter", action, wc, at, source, event_id, data)]

    def _counts(
        self, wc: str, order: str, good: float | None, scrap: float | None, at: dt.datetime, source: str, event_id: str
    ) -> SourceEvent:
        # Counts belong to an order: without one they say nothing about any customer order.
        data = {"ManufacturingOrder": order, "WorkCenter": wc, "GoodCount": good, "ScrapCount": scrap}
        return self._event("ProductionOrder", "Changed", order, at, source, event_id, data)

    def _confirmation(
        self, wc: str, order: str, operation: str | None, yield_qty: float | None, scrap_qty: float | None, final: bool,
        at: dt.datetime, source: str, event_id: str,
    ) -> SourceEvent:
        data = {
            "ManufacturingOrder": order,
            "ManufacturingOrderOperation": operation,
            "WorkCenter": wc,
            "ConfirmationYieldQuantity": yield_qty,
            "ConfirmationScrapQuantity": scrap_qty,
            "IsFinalConfirmation": final,
        }
        return self._event("ProductionOrder", "Confirmed" if final else "PartiallyConfirmed", order, at, source, event_id, data)

    def _event(
        self, entity: str, action: str, key: str, at: dt.datetime, source: str, event_id: str, data: dict[str, Any]
    ) -> SourceEvent:
        ce = cloud_event(_TYPES[entity], action, id=event_id, source=source, time=at, key=key, data=data)
        # Sparkplug times are milliseconds: keep them (two changes in one second stay ordered).
        ce["time"] = at.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return self.registry.parse(ce, system="mes")


class JsonProfile:
    """The plain-JSON topic profile (see the module doc for topics and payloads)."""

    KINDS = ("state", "counts", "confirmation")
    MAX_BYTES = 64 * 1024

    def __init__(self, prefix: str = "shopfloor") -> None:
        if not prefix or any(c in prefix for c in "+#"):
            raise ValueError(f"bad topic prefix {prefix!r}")
        self.prefix = prefix.strip("/")

    @property
    def subscription(self) -> str:
        return f"{self.prefix}/+/+/+"

    def events(self, mapper: ShopFloorMapper, topic: str, body: bytes) -> list[SourceEvent]:
        head = self.prefix.split("/")
        parts = topic.split("/")
        if parts[: len(head)] != head or len(parts) != len(head) + 3:
            raise JsonMessageError(f"topic {topic!r}: expected {self.prefix}/<plant>/<work centre>/<{'|'.join(self.KINDS)}>")
        plant, wc, kind = parts[len(head):]
        if not plant or not wc:
            raise JsonMessageError(f"topic {topic!r}: empty plant or work centre")
        if kind not in self.KINDS:
            raise JsonMessageError(f"topic {topic!r}: unknown kind {kind!r} (expected {', '.join(self.KINDS)})")
        if len(body) > self.MAX_BYTES:
            raise JsonMessageError(f"{topic}: message over {self.MAX_BYTES} bytes")
        try:
            msg = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise JsonMessageError(f"{topic}: not JSON: {exc}") from exc
        if not isinstance(msg, dict):
            raise JsonMessageError(f"{topic}: expected a JSON object")
        at = _time(topic, msg, "at", required=False) or mapper.clock()
        event_id = msg.get("id")
        if event_id is not None and (not isinstance(event_id, str) or not event_id):
            raise JsonMessageError(f"{topic}: id must be a non-empty string")
        event_id = f"json:{plant}:{wc}:{kind}:{event_id}" if event_id else f"json:{hashlib.sha256(topic.encode() + b' ' + body).hexdigest()[:32]}"
        source = f"{mapper.source_prefix}/{plant}/mes"
        if kind == "state":
            raw = msg.get("state")
            if not isinstance(raw, (str, int)) or isinstance(raw, bool):
                raise JsonMessageError(f"{topic}: state must be RUNNING, IDLE or DOWN")
            machine = mapper.profile.states.get(str(raw).strip().upper())
            if machine is None:
                raise JsonMessageError(f"{topic}: unknown state {raw!r} (expected RUNNING, IDLE or DOWN)")
            reason = msg.get("reason")
            if reason is not None and not isinstance(reason, str):
                raise JsonMessageError(f"{topic}: reason must be a string")
            return mapper._state(
                wc, machine, at, source, event_id, _time(topic, msg, "expectedUpAt", required=False), reason, plant
            )
        order = msg.get("manufacturingOrder")
        if kind == "counts":
            if order is not None and (not isinstance(order, str) or not order):
                raise JsonMessageError(f"{topic}: manufacturingOrder must be a non-empty string")
            good, scrap = _number(topic, msg, "good"), _number(topic, msg, "scrap")
            if good is None and scrap is None:
                raise JsonMessageError(f"{topic}: counts need good or scrap")
            if order:
                mapper._wc(wc).order = order
            current = mapper._wc(wc).order
            if current is None:
                raise JsonMessageError(f"{topic}: counts need manufacturingOrder (no order known on {wc})")
            return [mapper._counts(wc, current, good, scrap, at, source, event_id)]
        if not isinstance(order, str) or not order:
            raise JsonMessageError(f"{topic}: a confirmation needs manufacturingOrder")
        operation = msg.get("operation")
        if operation is not None and not isinstance(operation, str):
            raise JsonMessageError(f"{topic}: operation must be a string")
        final = msg.get("final", False)
        if not isinstance(final, bool):
            raise JsonMessageError(f"{topic}: final must be true or false")
        return [mapper._confirmation(wc, order, operation, _number(topic, msg, "yield"), _number(topic, msg, "scrap"), final, at, source, event_id)]


def _number(topic: str, msg: dict[str, Any], field: str) -> float | None:
    value = msg.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise JsonMessageError(f"{topic}: {field} must be a non-negative number, got {value!r}")
    return float(value)


def _time(topic: str, msg: dict[str, Any], field: str, *, required: bool) -> dt.datetime | None:
    value = msg.get(field)
    if value is None:
        if required:
            raise JsonMessageError(f"{topic}: {field} missing")
        return None
    if not isinstance(value, str):
        raise JsonMessageError(f"{topic}: {field} must be an ISO 8601 time")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise JsonMessageError(f"{topic}: {field} is not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise JsonMessageError(f"{topic}: {field} needs a time zone (e.g. Z): {value!r}")
    return parsed.astimezone(dt.UTC)


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ms(value: dt.datetime | None) -> str:
    return "" if value is None else str(int(value.timestamp() * 1000))

"""Orders as the plant tracks them: the lifecycle states, and each order's track (its
parts, their documents and state, and the schedule of steps still to come).

A track is the simulator's private bookkeeping; the records in the store are what the
source systems show.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import operator
import random
from collections.abc import Callable, Mapping

from .clock import whole_seconds
from .store import UnknownKey

RECEIVED = "RECEIVED"
MATERIAL_SHORTAGE = "MATERIAL_SHORTAGE"
RELEASED = "RELEASED"
IN_PRODUCTION = "IN_PRODUCTION"
PRODUCTION_COMPLETE = "PRODUCTION_COMPLETE"
QUALITY_HOLD = "QUALITY_HOLD"
QUALITY_REJECTED = "QUALITY_REJECTED"
QUALITY_RELEASED = "QUALITY_RELEASED"
PICKED = "PICKED"
PACKED = "PACKED"
GOODS_ISSUED = "GOODS_ISSUED"
IN_TRANSIT = "IN_TRANSIT"
OUT_FOR_DELIVERY = "OUT_FOR_DELIVERY"
DELIVERED = "DELIVERED"

LIFECYCLE_STATES = (
    RECEIVED,
    MATERIAL_SHORTAGE,
    RELEASED,
    IN_PRODUCTION,
    PRODUCTION_COMPLETE,
    QUALITY_HOLD,
    QUALITY_REJECTED,
    QUALITY_RELEASED,
    PICKED,
    PACKED,
    GOODS_ISSUED,
    IN_TRANSIT,
    OUT_FOR_DELIVERY,
    DELIVERED,
)
# How far along the lifecycle each state is (an order's state is its least advanced part's).
STATE_RANK = {s: i for i, s in enumerate(LIFECYCLE_STATES)}
# Off the lifecycle: the customer cancelled the whole order before anything of it shipped.
CANCELLED = "CANCELLED"


@dataclasses.dataclass(slots=True)
class Step:
    """One step of an order's life, due at an instant, moving one part of the order."""

    name: str
    due: dt.datetime
    part: int = 0  # which part of the order (see Part) the step moves


@dataclasses.dataclass(slots=True)
class Part:
    """One shipment's worth of an order: what it produces, its delivery and its shipment.

    Part 0 is the order as confirmed. A split order plans a second part (later schedule
    lines) that shares part 0's production; a short shipment opens a backorder part for the
    rest, with its own production orders, or cuts the rest.
    """

    state: str
    orders: list[str] = dataclasses.field(default_factory=list)  # production orders it makes
    lots: list[str] = dataclasses.field(default_factory=list)
    delivery: str | None = None
    shipment: str | None = None
    quantities: dict[str, float] | None = None  # item -> planned quantity; None = whatever is open


@dataclasses.dataclass(slots=True)
class OrderTrack:
    """The simulator's private view of one order: state, current documents, schedule.

    Step functions act on the part named by ``part`` (set before each step); ``state``,
    ``lots``, ``delivery`` and ``shipment`` read and write that part. Read outside a step,
    ``state`` is the order's: its least advanced unfinished part.
    """

    sales_order: str
    customer: str
    made_to_order: dict[str, str]  # sales order item -> current production order; others ship from stock
    schedule: collections.deque[Step]
    parts: dict[int, Part]
    planned_parts: int = 1  # parts 0 .. planned_parts - 1 were planned at confirmation
    part: int = 0
    rejects_pending: int = 0
    shortfall: bool = False
    exception_on_delay: bool = False
    production_hours: float = 24.0
    extra_transit_hours: float = 0.0
    last_step_at: dt.datetime | None = None
    steps_done: int = 0
    produced: dict[str, float] = dataclasses.field(default_factory=dict)  # item -> accepted yield
    in_delivery: dict[str, float] = dataclasses.field(default_factory=dict)  # item -> quantity picked
    shipped: dict[str, float] = dataclasses.field(default_factory=dict)  # item -> quantity goods-issued
    forced_scrap: dict[str, float] = dataclasses.field(default_factory=dict)  # control lever
    rest: str = ""  # what happens to a short-shipped rest: "reproduce", "cancel" or "" (chance)
    backorder_pending: bool = False
    cancelled: bool = False  # the whole order, by the customer (its parts keep where they were)
    overall: str | None = None  # the order's state, kept while no part changes (read often)

    @property
    def state(self) -> str:
        """The current part's state while a step runs; otherwise the order's (CANCELLED
        once the customer cancelled it)."""
        if self.cancelled:
            return CANCELLED
        if self.overall is None:
            unfinished = [p.state for p in self.parts.values() if p.state != DELIVERED]
            self.overall = min(unfinished, key=STATE_RANK.__getitem__) if unfinished else DELIVERED
        return self.overall

    @state.setter
    def state(self, value: str) -> None:
        self.parts[self.part].state = value
        if self.part == 0 and STATE_RANK[value] < STATE_RANK[PICKED]:
            # Planned parts share part 0's production until their own picking starts.
            for n in range(1, self.planned_parts):
                if STATE_RANK[self.parts[n].state] < STATE_RANK[PICKED]:
                    self.parts[n].state = value
        self.overall = None

    def add_part(self, n: int, part: Part) -> Part:
        """A new part of the order (a planned later delivery, or a backorder's rest)."""
        self.parts[n] = part
        self.overall = None
        return part

    @property
    def closed(self) -> bool:
        """Delivered, or cancelled: nothing more happens to it."""
        return self.cancelled or self.state == DELIVERED

    @property
    def lots(self) -> list[str]:
        """The current part's inspection lots."""
        return self.parts[self.part].lots

    @lots.setter
    def lots(self, value: list[str]) -> None:
        self.parts[self.part].lots = value

    @property
    def delivery(self) -> str | None:
        """The current part's outbound delivery."""
        return self.parts[self.part].delivery

    @delivery.setter
    def delivery(self, value: str | None) -> None:
        self.parts[self.part].delivery = value

    @property
    def shipment(self) -> str | None:
        """The current part's shipment."""
        return self.parts[self.part].shipment

    @shipment.setter
    def shipment(self, value: str | None) -> None:
        self.parts[self.part].shipment = value

    def due_of(self, name: str) -> dt.datetime | None:
        """When the current part's next step called ``name`` is scheduled, if it still is."""
        return next((s.due for s in self.schedule if s.name == name and s.part == self.part), None)

    def add_steps(self, steps: list[Step]) -> None:
        """Add steps to the order's schedule, which stays in time order."""
        for step in steps:
            step.due = whole_seconds(step.due)
        self.schedule = collections.deque(sorted([*self.schedule, *steps], key=operator.attrgetter("due")))

    def shift(self, part: int, delta: dt.timedelta, *, production: bool = False) -> None:
        """Move one part's remaining steps by ``delta``. Held production holds every planned
        part that shares it."""
        parts = set(range(self.planned_parts)) if production and part < self.planned_parts else {part}
        for step in self.schedule:
            if step.part in parts:
                step.due += delta
        self.schedule = collections.deque(sorted(self.schedule, key=operator.attrgetter("due")))

    def postpone(self, name: str, due: dt.datetime) -> None:
        """Put a step that could not happen back in the schedule, with the part's rest after it."""
        pending = [s.due for s in self.schedule if s.part == self.part]
        if pending and min(pending) < due:
            self.shift(self.part, due - min(pending))
        self.add_steps([Step(name, due, self.part)])


# A lifecycle step: moves the track's current part at an instant, drawing from a generator.
StepAction = Callable[[OrderTrack, dt.datetime, random.Random], None]


def track_of(tracks: Mapping[str, OrderTrack], sales_order: str) -> OrderTrack:
    """The track of ``sales_order``; UnknownKey when the plant has no such order."""
    track = tracks.get(sales_order)
    if track is None:
        raise UnknownKey(sales_order)
    return track

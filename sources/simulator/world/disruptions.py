"""Disruptions: what goes wrong in the plant and what it holds up.

The levers (a work centre down, a component short, a carrier delay, a planned scrap) and
their ends (repair, the late goods' arrival), and the rule that holds production while a
work centre is down or a component is still missing. A breakdown also reschedules the work
centre's queue behind it (``sources.work_queue``), and a repair gives back what the
downtime did not take.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from ...records import ComponentAvailability, ProductionOrder, Shipment, TrackingEvent, WorkCenter
from ...work_queue import Job, downtime_delays
from .clock import PlantClock, hours_span, whole_seconds
from .master_data import ShipTo
from .orders import DELIVERED, OrderTrack, Step, track_of
from .production import PRODUCTION_STEPS
from .shipping import set_eta
from .store import RecordStore, UnknownKey
from .working_time import PLANT_CALENDAR, WorkingTime

# Production order statuses in a work centre's queue: waiting to start, and running.
_QUEUED = frozenset({"CREATED", "RELEASED"})
_RUNNING = frozenset({"STARTED", "PARTIALLY_CONFIRMED"})


class Disruptions:
    """Breakdowns, late components, carrier delays and planned shortfalls."""

    def __init__(
        self,
        store: RecordStore,
        clock: PlantClock,
        times: WorkingTime,
        ship_tos: Mapping[str, ShipTo],
        tracks: Mapping[str, OrderTrack],
    ) -> None:
        self._store = store
        self._clock = clock
        self._times = times
        self._ship_tos = ship_tos
        self._tracks = tracks
        # Receipts of shortages raised by ``component_short``: reservation -> when it arrives.
        self._receipts: dict[str, dt.datetime] = {}
        # Queues rescheduled behind a down work centre: work centre -> production order ->
        # its (start, end) before, so a repair can give back what the downtime did not take.
        self._pushed: dict[str, dict[str, tuple[dt.datetime, dt.datetime]]] = {}

    def work_center_down(self, work_center: str, hours: float) -> None:
        """Take a work centre down for ``hours``; production on it pauses until it is up."""
        if not math.isfinite(hours) or hours <= 0:
            raise ValueError("hours must be a positive number")
        record = self._store.work_center(work_center)
        now = whole_seconds(self._clock.now())
        if record.state != "DOWN":
            record.state = "DOWN"
            record.down_since = now
        record.expected_up_at = whole_seconds(now + hours_span(hours))
        self._store.touch(record, "WorkCenter.Down", now, None)
        self._push_queue(work_center, now, record.expected_up_at)

    def _push_queue(self, work_center: str, now: dt.datetime, up_at: dt.datetime) -> None:
        """The MES reschedules the work centre's queue behind the down period
        (``sources.work_queue``): each production order not started yet that the downtime
        delays starts (and ends) that much later, its basic dates kept as the plan, and its
        order's steps from the start on move with it. A running order stands still while
        the machine is down (``held_until``); what it carries passes to the queue."""
        jobs: list[Job] = []
        where: dict[str, tuple[OrderTrack, int, ProductionOrder]] = {}
        for track in self._tracks.values():
            for n, part in track.parts.items():
                for po in self._store.production_orders(part.orders):
                    if po.work_center != work_center or po.status not in _QUEUED | _RUNNING:
                        continue
                    jobs.append(Job(po.manufacturing_order, po.scheduled_start_date, po.scheduled_end_date,
                                    running=po.status in _RUNNING))
                    where[po.manufacturing_order] = (track, n, po)
        delays = downtime_delays(jobs, now=now, up_at=up_at, plant=PLANT_CALENDAR)
        pushed = self._pushed.setdefault(work_center, {})
        for key, new_start in sorted(delays.items()):
            track, n, po = where[key]
            if not isinstance(new_start, dt.datetime) or new_start <= po.scheduled_start_date:
                continue  # a running order (held step by step), or one already planned later
            pushed.setdefault(key, (po.scheduled_start_date, po.scheduled_end_date))
            work = PLANT_CALENDAR.working_time_between(po.scheduled_start_date, po.scheduled_end_date)
            po.scheduled_start_date = whole_seconds(new_start)
            po.scheduled_end_date = whole_seconds(PLANT_CALENDAR.add_working_time(new_start, work))
            self._store.touch(po, "ProductionOrder.Changed", now, track.sales_order)
            start = next((s.due for s in track.schedule if s.name == "start" and s.part == n), None)
            if start is not None and start < po.scheduled_start_date:
                track.shift(n, po.scheduled_start_date - start, production=True)

    def work_center_up(self, work_center: str) -> None:
        """Bring a work centre back up (no change when it is already up)."""
        record = self._store.work_center(work_center)
        if record.state != "DOWN":
            return
        self._set_up(record, whole_seconds(self._clock.now()))

    def repairs_due(self, now: dt.datetime) -> list[tuple[str, dt.datetime]]:
        """Work centres down whose expected repair time has come: (work centre, up at)."""
        due = []
        for record in self._store.tables["A_WorkCenter"].records():
            assert isinstance(record, WorkCenter)
            if record.state == "DOWN" and record.expected_up_at is not None and record.expected_up_at <= now:
                due.append((record.work_center, record.expected_up_at))
        return due

    def repair_if_due(self, work_center: str, now: dt.datetime) -> None:
        """The work centre is back up at its expected time, if it is still down and that has come."""
        record = self._store.work_center(work_center)
        if record.state == "DOWN" and record.expected_up_at is not None and record.expected_up_at <= now:
            self._set_up(record, record.expected_up_at)

    def _set_up(self, record: WorkCenter, at: dt.datetime) -> None:
        down_since = record.down_since
        record.state = "UP"
        record.down_since = None
        record.expected_up_at = None
        self._store.touch(record, "WorkCenter.Up", at, None)
        self._pull_queue(record.work_center, down_since or at, at)

    def _pull_queue(self, work_center: str, down_since: dt.datetime, up_at: dt.datetime) -> None:
        """Back up earlier than expected: the MES reschedules the queue it pushed again, for
        the downtime there really was (never before the start planned before it)."""
        pushed = self._pushed.pop(work_center, {})
        if not pushed:
            return
        jobs = []
        where = {}
        for track in self._tracks.values():
            for n, part in track.parts.items():
                for po in self._store.production_orders(part.orders):
                    if po.work_center != work_center:
                        continue
                    if po.manufacturing_order in pushed and po.status in _QUEUED:
                        start, end = pushed[po.manufacturing_order]
                        jobs.append(Job(po.manufacturing_order, start, end))
                        where[po.manufacturing_order] = (track, n, po)
                    elif po.status in _RUNNING:
                        jobs.append(Job(po.manufacturing_order, po.scheduled_start_date, po.scheduled_end_date, True))
        delays = downtime_delays(jobs, now=down_since, up_at=up_at, plant=PLANT_CALENDAR)
        for key, (track, n, po) in sorted(where.items()):
            start, end = pushed[key]
            new_start = delays.get(key)
            target = max(start, new_start) if isinstance(new_start, dt.datetime) else start
            target = whole_seconds(target)
            if target >= po.scheduled_start_date:
                continue
            work = PLANT_CALENDAR.working_time_between(po.scheduled_start_date, po.scheduled_end_date)
            pending = next((s.due for s in track.schedule if s.name == "start" and s.part == n), None)
            po.scheduled_start_date = target
            po.scheduled_end_date = whole_seconds(PLANT_CALENDAR.add_working_time(target, work))
            self._store.touch(po, "ProductionOrder.Changed", up_at, track.sales_order)
            if pending is not None and pending > max(target, up_at):
                track.shift(n, max(target, up_at) - pending, production=True)

    def component_short(self, reservation: str, quantity: float, until: dt.date) -> None:
        """A component goes short by ``quantity`` until ``until`` (a late supplier delivery).

        The goods arrive at the start of ``until`` (they can be staged that day); production
        of the order does not start before.
        """
        if not math.isfinite(quantity) or quantity <= 0:
            raise ValueError("quantity must be a positive number")
        component = self._store.get("A_ComponentAvailability", reservation)
        if not isinstance(component, ComponentAvailability):
            raise UnknownKey(reservation)
        now = whole_seconds(self._clock.now())
        # The goods come in with the first shift of that (plant) day.
        arrival = PLANT_CALENDAR.next_working_time(PLANT_CALENDAR.day_start(until))
        if PLANT_CALENDAR.day_start(until) <= now:
            raise ValueError("until must be after today")
        component.available_quantity = round(max(component.available_quantity - quantity, 0.0), 3)
        component.shortage_quantity = round(component.required_quantity - component.available_quantity, 3)
        component.expected_receipt_date = until
        self._receipts[reservation] = arrival
        po = self._store.production_order(component.manufacturing_order)
        self._store.touch(component, "ComponentAvailability.ShortageRaised", now, po.sales_order)

    def receipts_due(self, now: dt.datetime) -> list[tuple[str, dt.datetime]]:
        """Late goods whose arrival has come: (reservation, arrival)."""
        return [(reservation, arrival) for reservation, arrival in self._receipts.items() if arrival <= now]

    def receive(self, reservation: str, at: dt.datetime) -> None:
        """A late component arrives (see ``component_short``)."""
        self._receipts.pop(reservation, None)
        component = self._store.get("A_ComponentAvailability", reservation)
        assert isinstance(component, ComponentAvailability)
        component.available_quantity = component.required_quantity
        component.shortage_quantity = 0.0
        component.expected_receipt_date = None
        po = self._store.production_order(component.manufacturing_order)
        self._store.touch(component, "ComponentAvailability.Received", at, po.sales_order)

    def shipment_delayed(self, tracking_number: str, hours: float, reason: str = "Traffic congestion") -> None:
        """The carrier reports a delay: the ETA and the rest of the journey move ``hours`` later."""
        if not math.isfinite(hours) or hours <= 0:
            raise ValueError("hours must be a positive number")
        shipment = self._store.get("Shipment", tracking_number)
        if not isinstance(shipment, Shipment):
            raise UnknownKey(tracking_number)
        track, part = next(
            ((t, n) for t in self._tracks.values() for n, p in t.parts.items() if p.shipment == tracking_number),
            (None, 0),
        )
        if track is None or track.parts[part].state == DELIVERED:
            raise ValueError(f"shipment {tracking_number} is not on its way")
        now = whole_seconds(self._clock.now())
        track.part = part
        track.shift(part, hours_span(hours))
        # EDI 214 SD (shipment delayed); the AfterShip tag stays what it was.
        shipment.events.append(
            TrackingEvent(code="SD", tag=shipment.tag, occurred_at=now, location=self._ship_tos[track.customer].hub,
                          description=f"Shipment delayed: {reason}")
        )
        shipment.status_code = "SD"
        eta = shipment.estimated_delivery_at or now
        set_eta(shipment, self._times.receiving_time(track.customer, max(eta, now) + hours_span(hours)), 4)
        self._store.touch(shipment, "Shipment.EtaRevised", now, track.sales_order)

    def plan_shortfall(
        self, sales_order: str, quantity: float, *, item: str | None = None, rest: str | None = None
    ) -> dict[str, Any]:
        """Make production of one item confirm ``quantity`` less than ordered (scrap), so the
        plant ships short; ``rest`` says what then happens to the owed quantity: "reproduce"
        (a new production order, shipped later) or "cancel" (the item is rejected), else
        chance. A control lever: it changes no record until production confirms."""
        track = track_of(self._tracks, sales_order)
        if rest not in (None, "reproduce", "cancel"):
            raise ValueError('rest must be "reproduce" or "cancel"')
        key = item
        if key is None and track.parts[0].orders:  # by default the first item made to order
            key = self._store.production_order(track.parts[0].orders[0]).sales_order_item
        po_key = track.made_to_order.get(key or "")
        if po_key is None or po_key not in track.parts[0].orders:
            raise ValueError(f"item {key!r} of {sales_order} is not made to order")
        po = self._store.production_order(po_key)
        if po.status not in ("CREATED", "RELEASED", "STARTED", "PARTIALLY_CONFIRMED"):
            raise ValueError(f"production of item {key} is already confirmed ({po.status})")
        if not math.isfinite(quantity) or not 0 < quantity < po.total_quantity:
            raise ValueError(f"quantity must be more than 0 and less than {po.total_quantity:g}")
        track.forced_scrap[po.sales_order_item] = float(quantity)
        track.rest = rest or ""
        return {"salesOrder": sales_order, "item": po.sales_order_item, "productionOrder": po_key,
                "shortBy": float(quantity), "rest": rest}

    def held_until(self, track: OrderTrack, step: Step, now: dt.datetime) -> dt.datetime | None:
        """When production of this step is held by a down work centre or a late component,
        until when (None: not held)."""
        if step.name not in PRODUCTION_STEPS:
            return None
        until: dt.datetime | None = None
        orders = track.parts[step.part].orders
        if step.name == "start":
            for po_key in orders:
                for reservation in self._store.reservations.get(po_key, []):
                    arrival = self._receipts.get(reservation)
                    if arrival is not None and arrival > step.due and (until is None or arrival > until):
                        until = arrival
        for po_key in orders:
            po = self._store.production_order(po_key)
            wc = self._store.work_center(po.work_center)
            if wc.state != "DOWN" or wc.down_since is None or step.due < wc.down_since:
                continue
            # Unknown repair time: look again an hour after now.
            up = wc.expected_up_at or now + hours_span(1)
            if up > step.due and (until is None or up > until):
                until = up
        return until

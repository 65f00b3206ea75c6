"""Disruptions: what goes wrong in the plant and what it holds up.

The levers (a work centre down, a component short, a carrier delay, a planned scrap) and
their ends (repair, the late goods' arrival), and the rule that holds production while a
work centre is down or a component is still missing.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from ...records import ComponentAvailability, Shipment, TrackingEvent, WorkCenter
from .clock import PlantClock, hours_span, whole_seconds
from .master_data import ShipTo
from .orders import DELIVERED, OrderTrack, Step, track_of
from .production import PRODUCTION_STEPS
from .shipping import set_eta
from .store import RecordStore, UnknownKey
from .working_time import PLANT_CALENDAR, WorkingTime


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
        record.state = "UP"
        record.down_since = None
        record.expected_up_at = None
        self._store.touch(record, "WorkCenter.Up", at, None)

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

"""Reports: what the plant can say about its orders at a glance, for the control API, the
event emitter, the bench and the tests (not what the source systems serve: that is the
records)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from ...records import Shipment
from .clock import PlantClock
from .master_data import ShipTo
from .orders import (
    CANCELLED,
    DELIVERED,
    GOODS_ISSUED,
    LIFECYCLE_STATES,
    RECEIVED,
    STATE_RANK,
    OrderTrack,
    track_of,
)
from .store import RecordStore


class Reports:
    """Order states, shipments, lateness and deliveries, read from the tracks and records."""

    def __init__(
        self,
        store: RecordStore,
        clock: PlantClock,
        ship_tos: Mapping[str, ShipTo],
        tracks: Mapping[str, OrderTrack],
    ) -> None:
        self._store = store
        self._clock = clock
        self._ship_tos = ship_tos
        self._tracks = tracks

    def shipment_of(self, sales_order: str) -> str | None:
        """Tracking number of the order's current shipment, if it has one: the least advanced
        one still on its way, else the latest."""
        track = track_of(self._tracks, sales_order)
        moving = [p for p in track.parts.values() if p.shipment is not None and p.state != DELIVERED]
        if moving:
            return min(moving, key=lambda p: STATE_RANK[p.state]).shipment
        shipped = [p.shipment for p in track.parts.values() if p.shipment is not None]
        return shipped[-1] if shipped else None

    def state_of(self, sales_order: str) -> str:
        """The lifecycle state of one order (one of LIFECYCLE_STATES)."""
        return track_of(self._tracks, sales_order).state

    def orders_in_state(self, state: str) -> list[str]:
        """Sales orders currently in ``state``."""
        return [k for k, t in self._tracks.items() if t.state == state]

    def states(self) -> dict[str, int]:
        """How many orders are in each lifecycle state."""
        states = dict.fromkeys((*LIFECYCLE_STATES, CANCELLED), 0)
        for track in self._tracks.values():
            states[track.state] += 1
        return states

    def is_late(self, sales_order: str) -> bool:
        """Open and already past its promise, or a carrier delay / ETA beyond the promise."""
        track = track_of(self._tracks, sales_order)
        order = self._store.sales_order(sales_order)
        promise = order.confirmed_delivery_date
        if track.closed or promise is None:
            return False
        receiving = self._ship_tos[track.customer].receiving
        if promise < receiving.local_date(self._clock.now()):
            return True
        tracking = self.shipment_of(sales_order)
        if tracking is None:
            return False
        shipment = self._store.get("Shipment", tracking)
        assert isinstance(shipment, Shipment)
        if shipment.status_code == "SD" or shipment.tag in ("Exception", "AttemptFail"):
            return True
        eta = shipment.estimated_delivery_at
        return eta is not None and receiving.local_date(eta) > promise

    def late_count(self) -> int:
        """How many orders are late (see ``is_late``)."""
        return sum(1 for k in self._tracks if self.is_late(k))

    def short_shipped(self) -> list[str]:
        """Orders that shipped short and still owe quantity (a backorder): the last planned
        delivery left, and the rest waits for a decision, is being made again or is on its
        way to the warehouse."""
        out = []
        for key, track in self._tracks.items():
            last = track.parts[track.planned_parts - 1]
            if STATE_RANK[last.state] < STATE_RANK[GOODS_ISSUED]:
                continue
            if any(track.shipped.get(i.sales_order_item, 0.0) < i.requested_quantity and not i.rejection_reason
                   for i in self._store.sales_order(key).items):
                out.append(key)
        return out

    def split_orders(self) -> list[str]:
        """Orders planned to ship in two deliveries (schedule lines on two dates)."""
        return [k for k, t in self._tracks.items() if t.planned_parts > 1]

    def delivery_summary(self) -> dict[str, int]:
        """Orders with a backorder open, with several deliveries, and with a cut (rejected) item."""
        several = 0
        cut = 0
        for key, track in self._tracks.items():
            several += sum(1 for p in track.parts.values() if p.delivery is not None) > 1
            cut += any(i.rejection_reason for i in self._store.sales_order(key).items)
        return {"backorders": len(self.short_shipped()), "severalDeliveries": several, "itemsCut": cut}

    def open_orders(self) -> int:
        """How many orders are not delivered yet."""
        return sum(1 for t in self._tracks.values() if not t.closed)

    def steady_intake_per_day(self, horizon_days: float = 5.0) -> float:
        """New orders per plant day that keep the open orders as many as they are: as many
        as the plant is due to deliver per day over the next ``horizon_days`` (open orders
        whose last step falls due by then). When none is due then: open orders over the
        planned lead time of the orders just received (Little's law); 0 when no order is
        open. Counting what falls due, not the whole lead time, matters in a world built
        mid-flight: most open orders are well on their way, so the plant first delivers
        faster than a stream of new orders over their full lead time would."""
        open_tracks = [t for t in self._tracks.values() if not t.closed]
        if not open_tracks:
            return 0.0
        until = self._clock.now() + dt.timedelta(days=horizon_days)
        due = sum(1 for t in open_tracks if t.schedule and t.schedule[-1].due <= until)
        if due:
            return due / horizon_days
        leads = [
            (t.schedule[-1].due - t.last_step_at).total_seconds() / 86400
            for t in open_tracks
            if t.state == RECEIVED and t.schedule and t.last_step_at is not None
        ]
        leads = [d for d in leads if d > 0]
        return len(open_tracks) / (sum(leads) / len(leads)) if leads else 0.0

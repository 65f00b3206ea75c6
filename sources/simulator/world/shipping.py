"""Shipping: the WMS and TMS side of an order's life.

From picking to proof of delivery: the outbound delivery (pick, pack, goods issue, where
the ERP posts what shipped), and the carrier's shipment with its tracking events and
estimates (pickup, delays, en route, out for delivery, failed attempts, delivery).
"""

from __future__ import annotations

import datetime as dt
import itertools
import random

from ...records import (
    OutboundDelivery,
    OutboundDeliveryItem,
    ProofOfDelivery,
    Shipment,
    ShipmentItem,
    TrackingEvent,
)
from .clock import hours_span
from .master_data import MasterData, ShipTo
from .numbers import NumberRanges
from .orders import (
    DELIVERED,
    GOODS_ISSUED,
    IN_TRANSIT,
    OUT_FOR_DELIVERY,
    PACKED,
    PICKED,
    OrderTrack,
    Step,
    StepAction,
)
from .quantities import open_items, pick_quantities, post_delivered_quantities
from .store import RecordStore
from .working_time import PLANT_CALENDAR, WorkingTime

# Carriers and their share of shipments.
CARRIERS = (("UPS", 3), ("DHL Freight", 3), ("DB Schenker", 2), ("Kuehne+Nagel", 1), ("DSV", 1))
# The carriers and their weights summed once (the same draws as passing the weights).
_CARRIER_NAMES = [c for c, _ in CARRIERS]
_CARRIER_CUM_WEIGHTS = list(itertools.accumulate(w for _, w in CARRIERS))
PLANT_LOCATION = "Plant 1000, Stuttgart, DE"
# Who signs for deliveries at the ship-tos.
SIGNERS = ("M. Keller", "A. Rossi", "J. Novak", "S. Larsen", "P. Dubois", "K. Weber", "L. Garcia", "T. Smith")


class Shipping:
    """Outbound deliveries and shipments of every order."""

    def __init__(
        self, store: RecordStore, numbers: NumberRanges, master: MasterData, times: WorkingTime, seed: int
    ) -> None:
        self._store = store
        self._numbers = numbers
        self._master = master
        self._times = times
        self._seed = seed

    def steps(self) -> dict[str, StepAction]:
        """The lifecycle steps shipping takes, by name."""
        return {
            "pick": self.pick,
            "pack": self.pack,
            "goods_issue": self.goods_issue,
            "pickup": self.pickup,
            "delay": self.delay,
            "en_route": self.en_route,
            "out_for_delivery": self.out_for_delivery,
            "attempt_fail": self.attempt_fail,
            "deliver": self.deliver,
        }

    def pick(self, track: OrderTrack, at: dt.datetime, rng: random.Random) -> None:
        """Picking: a delivery for what this part may take now, or a day's wait when nothing
        is ready or the order is on hold."""
        order = self._store.sales_order(track.sales_order)
        wanted = pick_quantities(track, order)
        if not wanted or order.total_credit_check_status == "B" or order.delivery_block_reason:
            # Nothing of this part is ready yet (or the order is on hold): look again in a day.
            track.postpone("pick", at + hours_span(24))
            return
        goods_issue = track.due_of("goods_issue") or at + hours_span(24)
        items = []
        for n, (item, qty) in enumerate(wanted, start=1):
            po_key = track.made_to_order.get(item.sales_order_item)
            if po_key is not None:
                batch = self._store.production_order(po_key).batch
            else:
                batch = "S" + self._numbers.next("stock_batch", width=7)
            items.append(
                OutboundDeliveryItem(
                    delivery_document_item=str(10 * n),
                    reference_sd_document=order.sales_order,
                    reference_sd_document_item=item.sales_order_item,
                    material=item.material,
                    actual_delivery_quantity=qty,
                    delivery_quantity_unit=item.requested_quantity_unit,
                    batch=batch,
                )
            )
            track.in_delivery[item.sales_order_item] = track.in_delivery.get(item.sales_order_item, 0.0) + qty
        delivery = OutboundDelivery(
            delivery_document=self._numbers.next("delivery"),
            sales_order=order.sales_order,
            ship_to_party=order.sold_to_party,
            delivery_date=PLANT_CALENDAR.local_date(goods_issue),
            overall_picking_status="C",
            actual_picking_date_time=at,
            items=items,
        )
        track.delivery = delivery.delivery_document
        self._store.touch(delivery, "OutboundDelivery.Created", at, track.sales_order)
        self._store.touch(delivery, "OutboundDelivery.Picked", at, track.sales_order)
        order.overall_sd_process_status = "B"
        self._store.touch(order, "SalesOrder.Changed", at, track.sales_order)
        track.state = PICKED

    def pack(self, track: OrderTrack, at: dt.datetime, rng: random.Random) -> None:
        """The delivery is packed."""
        delivery = self._store.delivery(track.delivery)
        delivery.overall_packing_status = "C"
        delivery.actual_packing_date_time = at
        self._store.touch(delivery, "OutboundDelivery.Packed", at, track.sales_order)
        track.state = PACKED

    def goods_issue(self, track: OrderTrack, at: dt.datetime, rng: random.Random) -> None:
        """Goods issue: the ERP posts what shipped, the carrier's shipment is created, and a
        short shipment schedules the decision on its rest."""
        delivery = self._store.delivery(track.delivery)
        delivery.overall_goods_movement_status = "C"
        delivery.actual_goods_movement_date = at
        delivery.bill_of_lading = "BOL" + self._numbers.next("bill_of_lading", width=7)
        self._store.touch(delivery, "OutboundDelivery.GoodsIssued", at, track.sales_order)
        for line in delivery.items:
            key = line.reference_sd_document_item
            track.shipped[key] = track.shipped.get(key, 0.0) + line.actual_delivery_quantity
        order = self._store.sales_order(track.sales_order)
        post_delivered_quantities(track, order)
        self._store.touch(order, "SalesOrder.Changed", at, track.sales_order)
        for po in self._store.production_orders(track.parts[track.part].orders):
            if po.status != "TECO":
                po.status = "TECO"
                self._store.touch(po, "ProductionOrder.TechnicallyCompleted", at, track.sales_order)
        carrier = rng.choices(_CARRIER_NAMES, cum_weights=_CARRIER_CUM_WEIGHTS)[0]
        # The carrier's first estimate knows nothing of delays still to come.
        deliver = track.due_of("deliver") or at + hours_span(48)
        eta = deliver - hours_span(track.extra_transit_hours) + hours_span(rng.uniform(-3, 3))
        eta = self._times.receiving_time(track.customer, max(eta, at + hours_span(6)))
        shipment = Shipment(
            tracking_number=self._numbers.tracking_number(carrier),
            carrier=carrier,
            delivery_document=delivery.delivery_document,
            tag="InfoReceived",
            bill_of_lading=delivery.bill_of_lading,
            items=[
                ShipmentItem(
                    delivery_document=delivery.delivery_document,
                    delivery_document_item=line.delivery_document_item,
                    sales_order=line.reference_sd_document,
                    sales_order_item=line.reference_sd_document_item,
                    material=line.material,
                    quantity=line.actual_delivery_quantity,
                    quantity_unit=line.delivery_quantity_unit,
                )
                for line in delivery.items
            ],
        )
        set_eta(shipment, eta, 4)
        track.shipment = shipment.tracking_number
        self._store.touch(shipment, "Shipment.Created", at, track.sales_order)
        track.state = GOODS_ISSUED
        if track.part >= track.planned_parts - 1 and not track.backorder_pending and open_items(track, order):
            # Shipped short: the rest stays owed until it is made again or cut.
            track.backorder_pending = True
            n = max(track.parts) + 1
            when = random.Random(f"{self._seed}:{track.sales_order}:backorder:{n}").uniform(2, 24)
            # Planners decide in the plant's working hours.
            track.add_steps([Step("backorder", self._times.after("backorder", at, when, track.customer), n)])

    def pickup(self, track: OrderTrack, at: dt.datetime, rng: random.Random) -> None:
        """The carrier picks the shipment up at the plant."""
        shipment = self._store.shipment(track.shipment)
        arrived = max(at - dt.timedelta(minutes=rng.randint(10, 40)), track.last_step_at or at)
        shipment.events.append(
            TrackingEvent(code="X3", tag="InfoReceived", occurred_at=arrived, location=PLANT_LOCATION,
                          description="Arrived at pickup location")
        )
        shipment.events.append(
            TrackingEvent(code="AF", tag="InTransit", occurred_at=at, location=PLANT_LOCATION,
                          description="Departed pickup location")
        )
        shipment.tag, shipment.status_code, shipment.picked_up_at = "InTransit", "AF", at
        self._store.touch(shipment, "Shipment.StatusUpdated", at, track.sales_order)
        track.state = IN_TRANSIT

    def delay(self, track: OrderTrack, at: dt.datetime, rng: random.Random) -> None:
        """The carrier reports a delay on the way (an exception, or a revised ETA)."""
        shipment = self._store.shipment(track.shipment)
        deliver = track.due_of("deliver") or at + hours_span(48)
        exception = track.exception_on_delay
        reason = rng.choice(("Weather delay", "Missed linehaul connection", "Vehicle breakdown", "Customs hold"))
        shipment.events.append(
            TrackingEvent(code="SD", tag="Exception" if exception else "InTransit", occurred_at=at,
                          location=self._ship_to(track).hub, description=f"Shipment delayed: {reason}")
        )
        shipment.tag, shipment.status_code = ("Exception" if exception else "InTransit"), "SD"
        set_eta(shipment, self._times.receiving_time(track.customer, deliver + hours_span(rng.uniform(-2, 2))), 6)
        self._store.touch(shipment, "Shipment.Exception" if exception else "Shipment.EtaRevised", at, track.sales_order)

    def en_route(self, track: OrderTrack, at: dt.datetime, rng: random.Random) -> None:
        """En route to the ship-to; the carrier revises its ETA when it moved by an hour or more."""
        shipment = self._store.shipment(track.shipment)
        deliver = track.due_of("deliver") or at + hours_span(24)
        shipment.events.append(
            TrackingEvent(code="X6", tag="InTransit", occurred_at=at, location=self._ship_to(track).hub,
                          description="En route to delivery location")
        )
        delayed = any(e.code == "SD" for e in shipment.events)
        shipment.tag, shipment.status_code = "InTransit", "X6"
        # Before a delay the carrier cannot know about trouble still to come.
        ahead = 0.0 if delayed else track.extra_transit_hours
        estimate = deliver - hours_span(ahead) + hours_span(rng.uniform(-1, 1))
        eta = self._times.receiving_time(track.customer, max(estimate, at + hours_span(2)))
        revised = shipment.estimated_delivery_at is None or abs(eta - shipment.estimated_delivery_at) >= hours_span(1)
        if revised:
            set_eta(shipment, eta, 4)
        self._store.touch(shipment, "Shipment.EtaRevised" if revised else "Shipment.StatusUpdated", at, track.sales_order)

    def out_for_delivery(self, track: OrderTrack, at: dt.datetime, rng: random.Random) -> None:
        """Out for delivery in the ship-to's receiving hours."""
        shipment = self._store.shipment(track.shipment)
        deliver = track.due_of("deliver") or at + hours_span(4)
        shipment.events.append(
            TrackingEvent(code="X1", tag="OutForDelivery", occurred_at=at, location=self._ship_to(track).place,
                          description="Out for delivery")
        )
        shipment.tag, shipment.status_code = "OutForDelivery", "X1"
        set_eta(shipment, self._times.receiving_time(track.customer, max(deliver, at + hours_span(1))), 2)
        self._store.touch(shipment, "Shipment.StatusUpdated", at, track.sales_order)
        track.state = OUT_FOR_DELIVERY

    def attempt_fail(self, track: OrderTrack, at: dt.datetime, rng: random.Random) -> None:
        """A delivery attempt fails (receiving dock closed)."""
        shipment = self._store.shipment(track.shipment)
        deliver = track.due_of("deliver") or at + hours_span(24)
        shipment.events.append(
            TrackingEvent(code="SD", tag="AttemptFail", occurred_at=at, location=self._ship_to(track).place,
                          description="Delivery attempt failed: receiving dock closed")
        )
        shipment.tag, shipment.status_code = "AttemptFail", "SD"
        set_eta(shipment, self._times.receiving_time(track.customer, max(deliver, at + hours_span(1))), 4)
        self._store.touch(shipment, "Shipment.StatusUpdated", at, track.sales_order)

    def deliver(self, track: OrderTrack, at: dt.datetime, rng: random.Random) -> None:
        """Delivered with proof of delivery; the order is complete when nothing else is owed."""
        shipment = self._store.shipment(track.shipment)
        shipment.events.append(
            TrackingEvent(code="D1", tag="Delivered", occurred_at=at, location=self._ship_to(track).place,
                          description="Delivered, unloaded")
        )
        shipment.tag, shipment.status_code, shipment.delivered_at = "Delivered", "D1", at
        shipment.proof_of_delivery = ProofOfDelivery(
            signed_by=rng.choice(SIGNERS), delivered_at=at, document=f"POD-{shipment.tracking_number}.pdf"
        )
        self._store.touch(shipment, "Shipment.Delivered", at, track.sales_order)
        track.state = DELIVERED
        if track.state == DELIVERED and not track.backorder_pending:
            # The last part arrived and nothing is owed: the order is complete.
            order = self._store.sales_order(track.sales_order)
            order.overall_sd_process_status = "C"
            self._store.touch(order, "SalesOrder.Changed", at, track.sales_order)

    def _ship_to(self, track: OrderTrack) -> ShipTo:
        return self._master.ship_tos[track.customer]


def set_eta(shipment: Shipment, eta: dt.datetime, window_hours: float) -> None:
    """The carrier's estimate of arrival and the window around it."""
    shipment.estimated_delivery_at = eta
    shipment.eta_window_start = eta - hours_span(window_hours)
    shipment.eta_window_end = eta + hours_span(window_hours)

"""TMS / carrier connector: shipments and tracking events (EDI 214 / AfterShip style)."""

from __future__ import annotations

from collections.abc import Sequence

from .client import SourceClient, group_by, index_by_key
from .events import EventType
from .records import Shipment


class TmsConnector:
    """Reads shipments and their tracking history from the TMS."""

    system = "tms"

    def __init__(self, client: SourceClient) -> None:
        self.client = client

    async def shipments_for_deliveries(self, deliveries: Sequence[str]) -> dict[str, list[Shipment]]:
        """Shipments carrying each outbound delivery."""
        records = await self.client.fetch_by(Shipment, "DeliveryDocument", deliveries)
        return group_by(records, "delivery_document", deliveries)

    async def shipments(self, tracking_numbers: Sequence[str]) -> dict[str, Shipment]:
        """Shipments by tracking number."""
        return index_by_key(await self.client.fetch_by(Shipment, "TrackingNumber", tracking_numbers))


EVENT_TYPES = [
    # EDI 214 / AfterShip-style carrier updates.
    EventType(
        system="tms",
        entity="Shipment",
        prefix="ordergraph.tms.shipment.v1.Shipment.",
        key_field="TrackingNumber",
        record_type=Shipment,
        actions=frozenset({"Created", "StatusUpdated", "EtaRevised", "Delivered", "ProofOfDelivery", "Exception"}),
    ),
]

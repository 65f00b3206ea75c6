"""WMS / inventory connector: component availability and outbound deliveries."""

from __future__ import annotations

from collections.abc import Sequence

from .client import SourceClient, group_by, index_by_key
from .events import EventType
from .records import ComponentAvailability, OutboundDelivery


class WmsConnector:
    """Reads component availability and outbound deliveries from the WMS."""

    system = "wms"

    def __init__(self, client: SourceClient) -> None:
        self.client = client

    async def components_for_production_orders(
        self, production_orders: Sequence[str]
    ) -> dict[str, list[ComponentAvailability]]:
        """Bill-of-material component availability per production order."""
        records = await self.client.fetch_by(ComponentAvailability, "ManufacturingOrder", production_orders)
        return group_by(records, "manufacturing_order", production_orders)

    async def components_for_materials(self, materials: Sequence[str]) -> dict[str, list[ComponentAvailability]]:
        """Reservations of each component material, across production orders."""
        records = await self.client.fetch_by(ComponentAvailability, "Material", materials)
        return group_by(records, "material", materials)

    async def components(self, reservations: Sequence[str]) -> dict[str, ComponentAvailability]:
        """Component reservations by key."""
        return index_by_key(await self.client.fetch_by(ComponentAvailability, "Reservation", reservations))

    async def deliveries_for_sales_orders(self, sales_orders: Sequence[str]) -> dict[str, list[OutboundDelivery]]:
        """Outbound deliveries referencing each sales order."""
        records = await self.client.fetch_by(OutboundDelivery, "ReferenceSDDocument", sales_orders)
        return group_by(records, "sales_order", sales_orders)

    async def deliveries(self, ids: Sequence[str]) -> dict[str, OutboundDelivery]:
        """Outbound deliveries by document number."""
        return index_by_key(await self.client.fetch_by(OutboundDelivery, "DeliveryDocument", ids))


EVENT_TYPES = [
    EventType(
        system="wms",
        entity="OutboundDelivery",
        prefix="sap.s4.beh.outbounddelivery.v1.OutboundDelivery.",
        key_field="DeliveryDocument",
        record_type=OutboundDelivery,
        actions=frozenset({"Created", "Changed", "Picked", "Packed", "GoodsIssued", "GoodsIssueReversed"}),
        reversals=frozenset({"GoodsIssueReversed"}),
    ),
    EventType(
        system="wms",
        entity="ComponentAvailability",
        prefix="ordergraph.wms.componentavailability.v1.ComponentAvailability.",
        key_field="Reservation",
        record_type=ComponentAvailability,
        actions=frozenset({"Changed", "ShortageRaised", "Received"}),
    ),
]

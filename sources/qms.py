"""QMS connector: inspection lots and usage decisions (``API_INSPECTIONLOT_SRV`` style)."""

from __future__ import annotations

from collections.abc import Sequence

from .client import SourceClient, group_by, index_by_key
from .events import EventType
from .records import InspectionLot


class QmsConnector:
    """Reads inspection lots from the QMS."""

    system = "qms"

    def __init__(self, client: SourceClient) -> None:
        self.client = client

    async def inspection_lots_for_production_orders(self, production_orders: Sequence[str]) -> dict[str, list[InspectionLot]]:
        """Inspection lots of each production order."""
        records = await self.client.fetch_by(InspectionLot, "ManufacturingOrder", production_orders)
        return group_by(records, "manufacturing_order", production_orders)

    async def inspection_lots_for_batches(self, batches: Sequence[str]) -> dict[str, list[InspectionLot]]:
        """Inspection lots of each batch."""
        records = await self.client.fetch_by(InspectionLot, "Batch", batches)
        return group_by(records, "batch", batches)

    async def inspection_lots(self, ids: Sequence[str]) -> dict[str, InspectionLot]:
        """Inspection lots by number."""
        return index_by_key(await self.client.fetch_by(InspectionLot, "InspectionLot", ids))


EVENT_TYPES = [
    EventType(
        system="qms",
        entity="InspectionLot",
        prefix="sap.s4.beh.inspectionlot.v1.InspectionLot.",
        key_field="InspectionLot",
        record_type=InspectionLot,
        actions=frozenset({"Created", "Changed", "UsageDecisionMade", "UsageDecisionReversed"}),
        reversals=frozenset({"UsageDecisionReversed"}),
    ),
]

"""MES connector: production orders and work centres (``API_PRODUCTION_ORDER_2_SRV`` style)."""

from __future__ import annotations

from collections.abc import Sequence

from .client import SourceClient, group_by, index_by_key
from .events import EventType
from .records import ProductionOrder, WorkCenter


class MesConnector:
    """Reads production orders and work-centre state from the MES."""

    system = "mes"

    def __init__(self, client: SourceClient) -> None:
        self.client = client

    async def production_orders_for_sales_orders(self, sales_orders: Sequence[str]) -> dict[str, list[ProductionOrder]]:
        """Production orders pegged to each sales order (empty list when none)."""
        records = await self.client.fetch_by(ProductionOrder, "SalesOrder", sales_orders)
        return group_by(records, "sales_order", sales_orders)

    async def production_orders(self, ids: Sequence[str]) -> dict[str, ProductionOrder]:
        """Production orders by number."""
        return index_by_key(await self.client.fetch_by(ProductionOrder, "ManufacturingOrder", ids))

    async def production_orders_for_batches(self, batches: Sequence[str]) -> dict[str, list[ProductionOrder]]:
        """Production orders that produced each batch."""
        records = await self.client.fetch_by(ProductionOrder, "Batch", batches)
        return group_by(records, "batch", batches)

    async def production_orders_for_work_centers(self, work_centers: Sequence[str]) -> dict[str, list[ProductionOrder]]:
        """Production orders scheduled on each work centre."""
        records = await self.client.fetch_by(ProductionOrder, "WorkCenter", work_centers)
        return group_by(records, "work_center", work_centers)

    async def work_centers(self, ids: Sequence[str]) -> dict[str, WorkCenter]:
        """Work centres and their current state."""
        return index_by_key(await self.client.fetch_by(WorkCenter, "WorkCenter", ids))


EVENT_TYPES = [
    EventType(
        system="mes",
        entity="ProductionOrder",
        prefix="sap.s4.beh.productionorder.v1.ProductionOrder.",
        key_field="ManufacturingOrder",
        record_type=ProductionOrder,
        actions=frozenset(
            {"Created", "Changed", "Released", "Started", "PartiallyConfirmed", "Confirmed", "Completed",
             "TechnicallyCompleted", "ConfirmationCancelled"}
        ),
        reversals=frozenset({"ConfirmationCancelled"}),
    ),
    # Shop-floor state, as MQTT/Sparkplug bridges report it.
    EventType(
        system="mes",
        entity="WorkCenter",
        prefix="ordergraph.mes.workcenter.v1.WorkCenter.",
        key_field="WorkCenter",
        record_type=WorkCenter,
        actions=frozenset({"Down", "Up", "Changed"}),
    ),
]

"""ERP connector: sales orders and customers (SAP ``API_SALES_ORDER_SRV`` style)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from .client import Page, SourceClient, index_by_key
from .events import EventType
from .records import Customer, SalesOrder


class ErpConnector:
    """Reads sales orders and customers from the ERP."""

    system = "erp"

    def __init__(self, client: SourceClient) -> None:
        self.client = client

    async def sales_orders(self, ids: Sequence[str]) -> dict[str, SalesOrder]:
        """Sales orders by number; unknown numbers are absent from the result."""
        return index_by_key(await self.client.fetch_by(SalesOrder, "SalesOrder", ids))

    async def customers(self, ids: Sequence[str]) -> dict[str, Customer]:
        """Customers by business partner number."""
        return index_by_key(await self.client.fetch_by(Customer, "Customer", ids))

    async def list_sales_orders(
        self,
        *,
        top: int,
        skip_token: str | None = None,
        sold_to_party: str | None = None,
        confirmed_before: dt.date | None = None,
        changed_since: dt.datetime | None = None,
        open_or_changed_since: dt.datetime | None = None,
    ) -> Page:
        """One page of sales orders in number order, filtered at the source; InvalidKey for a
        customer that cannot be a key (``A,B`` would read two customers' orders)."""
        filters: dict[str, str] = {}
        if sold_to_party:
            self.client.check_key("Customer", sold_to_party)
            filters["SoldToParty"] = sold_to_party
        if confirmed_before:
            filters["confirmedBefore"] = confirmed_before.isoformat()
        if changed_since:
            filters["changedSince"] = changed_since.isoformat()
        if open_or_changed_since:
            filters["openOrChangedSince"] = open_or_changed_since.isoformat()
        return await self.client.list(SalesOrder, top=top, skip_token=skip_token, filters=filters)


    async def list_customers(self, *, page_size: int = 1000) -> list[Customer]:
        """Every customer, in number order (a paged listing)."""
        out: list[Customer] = []
        token: str | None = None
        while True:
            page = await self.client.list(Customer, top=page_size, skip_token=token)
            out.extend(page.records)
            if not page.next_skip_token or not page.records:
                return out
            token = page.next_skip_token

    async def sales_orders_of_customer(self, customer: str, *, page_size: int = 1000) -> frozenset[str]:
        """The numbers of every sales order of ``customer`` (a paged listing)."""
        numbers: set[str] = set()
        token: str | None = None
        while True:
            page = await self.list_sales_orders(top=page_size, skip_token=token, sold_to_party=customer)
            numbers.update(so.sales_order for so in page.records)
            if not page.next_skip_token or not page.records:
                return frozenset(numbers)
            token = page.next_skip_token


EVENT_TYPES = [
    EventType(
        system="erp",
        entity="SalesOrder",
        prefix="sap.s4.beh.salesorder.v1.SalesOrder.",
        key_field="SalesOrder",
        record_type=SalesOrder,
        actions=frozenset(
            {"Created", "Changed", "Cancelled", "CreditBlocked", "CreditReleased", "DeliveryBlocked", "DeliveryUnblocked"}
        ),
    ),
]

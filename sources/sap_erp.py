"""The ERP as SAP S/4HANA serves it: ``[sources.erp] profile = "sap-odata"``.

The same connector interface as ``ErpConnector`` (the REST contract), over SAP's public
OData v2 APIs (``sources/odata``):

- sales orders: ``API_SALES_ORDER_SRV`` ``A_SalesOrder`` with ``$expand=to_Item/to_ScheduleLine``;
- customers: ``API_BUSINESS_PARTNER`` ``A_BusinessPartner`` with ``to_Customer`` and
  ``to_BusinessPartnerAddress`` (the customer number is the business partner's).

A batch of keys is one logical call (``ODataClient.fetch_by``): ``$filter`` terms joined
with ``or``, cut into chunks under the URL limit that run concurrently; every chunk is an
upstream request the bench's table counts. The OData clients share the REST client's
``Resilience`` (budget, retries, breaker), so the source's health is one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

from .client import Page, SourceClient, index_by_key
from .erp import ErpConnector
from .odata import (
    ODataClient,
    Query,
    all_of,
    customer_from_s4,
    eq,
    field_filter,
    sales_order_from_s4,
)
from .odata.auth import Auth
from .odata.s4 import results
from .records import Customer, RecordError, SalesOrder
from .resilience import SOURCE_BAD_RESPONSE, SourceError

SERVICE_PATH = "/sap/opu/odata/sap"
SALES_ORDER_SERVICE = "API_SALES_ORDER_SRV"
BUSINESS_PARTNER_SERVICE = "API_BUSINESS_PARTNER"
SALES_ORDER_EXPAND = ("to_Item/to_ScheduleLine",)
BUSINESS_PARTNER_EXPAND = ("to_Customer", "to_BusinessPartnerAddress")


@dataclasses.dataclass(frozen=True, slots=True)
class Changed:
    """One record a delta read found changed: what the poller turns into an event."""

    entity: str  # the event registry's entity ("SalesOrder")
    key: str
    changed_at: dt.datetime
    refs: dict[str, str]  # join keys the record names (SalesOrder, Customer, ...)


class SapErpConnector(ErpConnector):
    """Reads sales orders and customers from SAP S/4HANA over OData v2."""

    def __init__(
        self,
        client: SourceClient,
        *,
        auth: Auth | None = None,
        sap_client: str | None = None,
        max_url_length: int = 8000,
        page_size: int = 1000,
    ) -> None:
        super().__init__(client)
        root = client.base_url.rstrip("/")
        if not root.endswith(SERVICE_PATH):
            root += SERVICE_PATH
        self.page_size = page_size

        def service(name: str) -> ODataClient:
            return ODataClient(
                "erp",
                f"{root}/{name}",
                client.session,
                auth=auth,
                sap_client=sap_client,
                policy=client.policy,
                on_request=client.on_request,
                resilience=client.resilience,
                max_url_length=max_url_length,
                max_keys_per_request=client.batch_size,
            )

        self.sales = service(SALES_ORDER_SERVICE)
        self.partners = service(BUSINESS_PARTNER_SERVICE)

    def _keys(self, field: str, ids: Sequence[str]) -> list[str]:
        # A value that cannot be a key names no record: left out, never sent.
        return [v for v in dict.fromkeys(ids) if self.client.key_formats.problem(field, v) is None]

    def _sales_orders(self, rows: list[dict]) -> list[SalesOrder]:
        try:
            return [sales_order_from_s4(row) for row in rows]
        except RecordError as exc:
            raise SourceError("erp", SOURCE_BAD_RESPONSE, str(exc)) from exc

    async def sales_orders(self, ids: Sequence[str]) -> dict[str, SalesOrder]:
        keys = self._keys("SalesOrder", ids)
        if not keys:
            return {}
        result = await self.sales.fetch_by("A_SalesOrder", "SalesOrder", keys, expand=SALES_ORDER_EXPAND)
        return index_by_key(self._sales_orders(result.rows))

    async def customers(self, ids: Sequence[str]) -> dict[str, Customer]:
        keys = self._keys("Customer", ids)
        if not keys:
            return {}
        result = await self.partners.fetch_by("A_BusinessPartner", "BusinessPartner", keys, expand=BUSINESS_PARTNER_EXPAND)
        out: dict[str, Customer] = {}
        for row in result.rows:
            if not results(row.get("to_Customer")):
                continue  # a business partner without the customer role is no customer
            try:
                customer = customer_from_s4(row)
            except RecordError as exc:
                raise SourceError("erp", SOURCE_BAD_RESPONSE, str(exc)) from exc
            out[customer.customer] = customer
        return out

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
        """One page in number order. ``SoldToParty`` and ``LastChangeDateTime`` filter at
        SAP; the confirmed date lives on the schedule lines, which ``A_SalesOrder`` cannot
        filter by, so ``confirmed_before`` reads the matching orders and filters here."""
        filters = []
        if sold_to_party:
            self.client.check_key("Customer", sold_to_party)
            filters.append(eq("SoldToParty", sold_to_party))
        if changed_since:
            filters.append(field_filter("LastChangeDateTime", "ge", changed_since, "datetimeoffset"))
        if open_or_changed_since:  # not completed, or completed but changed since (the default listing)
            filters.append(
                field_filter("OverallSDProcessStatus", "ne", "C")
                | field_filter("LastChangeDateTime", "ge", open_or_changed_since, "datetimeoffset")
            )
        base = all_of(filters) if filters else None
        if confirmed_before is not None:
            everything = await self.sales.read_all(
                Query("A_SalesOrder", filter=base, expand=SALES_ORDER_EXPAND, orderby=("SalesOrder asc",)),
                page_size=self.page_size,
            )
            matching = [
                so for so in self._sales_orders(everything.rows)
                if so.confirmed_delivery_date is not None and so.confirmed_delivery_date < confirmed_before
            ]
            matching.sort(key=lambda so: so.sales_order)
            rest = [so for so in matching if skip_token is None or so.sales_order > skip_token]
            page = rest[:top]
            return Page(page, len(matching), page[-1].sales_order if len(rest) > top and page else None)
        after = field_filter("SalesOrder", "gt", skip_token) if skip_token else None
        query = Query(
            "A_SalesOrder",
            filter=all_of([f for f in (base, after) if f is not None]) if (base or after) else None,
            expand=SALES_ORDER_EXPAND,
            orderby=("SalesOrder asc",),
            top=top,
            inlinecount=True,
        )
        result = await self.sales.read_all(query, page_size=min(top, self.page_size))
        records = self._sales_orders(result.rows)
        count = result.count if result.count is not None else len(records)
        if skip_token:
            # The contract's count is of every match, not of those after the token.
            total = await self.sales.get(Query("A_SalesOrder", filter=base, select=("SalesOrder",), top=0, inlinecount=True))
            count = total.count if total.count is not None else count
        more = result.count is not None and result.count > len(records)
        return Page(records, count, records[-1].sales_order if more and records else None)

    async def changes_since(self, since: dt.datetime) -> list[Changed]:
        """Sales orders changed after ``since`` (``LastChangeDateTime gt``), oldest first."""
        result = await self.sales.changes_since(
            "A_SalesOrder", since, select=("SalesOrder", "SoldToParty", "LastChangeDateTime"), page_size=self.page_size
        )
        changed: list[Changed] = []
        for row in result.rows:
            key = row.get("SalesOrder")
            try:
                at = sales_order_changed_at(row)
            except RecordError as exc:
                raise SourceError("erp", SOURCE_BAD_RESPONSE, str(exc)) from exc
            if not isinstance(key, str) or at is None:
                continue
            refs = {"SalesOrder": key}
            if isinstance(row.get("SoldToParty"), str) and row["SoldToParty"]:
                refs["Customer"] = row["SoldToParty"]
            changed.append(Changed("SalesOrder", key, at, refs))
        return changed


def sales_order_changed_at(row: dict) -> dt.datetime | None:
    from .odata.values import EdmValueError, parse_datetime

    try:
        return parse_datetime(row.get("LastChangeDateTime"))
    except EdmValueError as exc:
        raise RecordError(f"A_SalesOrder {row.get('SalesOrder')!r}: LastChangeDateTime: {exc}") from exc


__all__ = ["BUSINESS_PARTNER_SERVICE", "SALES_ORDER_SERVICE", "Changed", "SapErpConnector"]

"""The MES where production orders live in SAP S/4HANA: ``[sources.mes] profile = "sap-odata"``.

A mixed connector. SAP's public APIs serve production orders, not the shop floor's state,
so:

- production orders come over OData: ``API_PRODUCTION_ORDER_2_SRV`` ``A_ProductionOrder_2``
  with ``$expand=to_ProductionOrderOperation,to_ProductionOrderItem`` (the work centre and
  actual execution times from the operations, the batch from the item), from ``sap_url``;
- work centres and their state (UP / DOWN) keep coming over the MES's REST contract
  (``sources/API.md``) from the source's ``rest_url``, as with the ``rest`` profile.

Look-ups by order number and by sales order filter ``A_ProductionOrder_2`` itself. By batch
and by work centre SAP keeps the field on the item and the operation, so those read
``A_ProductionOrderItem_2`` / ``A_ProductionOrderOperation_2`` for the order numbers, then
the orders: two requests in sequence, still one logical call per resolution level. Every
batch of keys is cut into URL-sized chunks that run concurrently (``ODataClient.fetch_by``);
the OData reads share the source's ``Resilience`` with the REST reads, so the MES's health
is one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from .client import SourceClient, group_by, index_by_key
from .mes import MesConnector
from .odata import ODataClient, production_order_from_s4
from .odata.auth import Auth
from .odata.values import EdmValueError, parse_sap_timestamp
from .records import ProductionOrder, RecordError
from .resilience import SOURCE_BAD_RESPONSE, SourceError
from .sap_erp import SERVICE_PATH, Changed

PRODUCTION_ORDER_SERVICE = "API_PRODUCTION_ORDER_2_SRV"
PRODUCTION_ORDER_SET = "A_ProductionOrder_2"
PRODUCTION_ORDER_EXPAND = ("to_ProductionOrderOperation", "to_ProductionOrderItem")


def sap_service(
    system: str, client: SourceClient, sap_url: str, service: str, *, auth: Auth | None, sap_client: str | None,
    max_url_length: int,
) -> ODataClient:
    """An OData client of ``service`` on the SAP host ``sap_url``, sharing ``client``'s
    session, policy, request hook and resilience."""
    root = sap_url.rstrip("/")
    if not root.endswith(SERVICE_PATH):
        root += SERVICE_PATH
    return ODataClient(
        system,
        f"{root}/{service}",
        client.session,
        auth=auth,
        sap_client=sap_client,
        policy=client.policy,
        on_request=client.on_request,
        resilience=client.resilience,
        max_url_length=max_url_length,
        max_keys_per_request=client.batch_size,
    )


class SapMesConnector(MesConnector):
    """Production orders from SAP S/4HANA over OData v2; work centres over REST."""

    def __init__(
        self,
        client: SourceClient,
        *,
        sap_url: str,
        auth: Auth | None = None,
        sap_client: str | None = None,
        max_url_length: int = 8000,
        page_size: int = 1000,
    ) -> None:
        super().__init__(client)  # the REST contract (work centres)
        self.page_size = page_size
        self.orders = sap_service(
            "mes", client, sap_url, PRODUCTION_ORDER_SERVICE, auth=auth, sap_client=sap_client,
            max_url_length=max_url_length,
        )

    def _keys(self, field: str, ids: Sequence[str]) -> list[str]:
        # A value that cannot be a key names no record: left out, never sent.
        return [v for v in dict.fromkeys(ids) if self.client.key_formats.problem(field, v) is None]

    def _records(self, rows: list[dict]) -> list[ProductionOrder]:
        try:
            return [production_order_from_s4(row) for row in rows]
        except RecordError as exc:
            raise SourceError("mes", SOURCE_BAD_RESPONSE, str(exc)) from exc

    async def _by(self, field: str, keys: list[str]) -> list[ProductionOrder]:
        if not keys:
            return []
        result = await self.orders.fetch_by(PRODUCTION_ORDER_SET, field, keys, expand=PRODUCTION_ORDER_EXPAND)
        return self._records(result.rows)

    async def _via(self, entity_set: str, field: str, keys: list[str]) -> list[ProductionOrder]:
        """Orders whose item / operation has ``field`` in ``keys``: their numbers, then them."""
        if not keys:
            return []
        found = await self.orders.fetch_by(entity_set, field, keys, select=("ManufacturingOrder", field))
        numbers = sorted({r["ManufacturingOrder"] for r in found.rows if isinstance(r.get("ManufacturingOrder"), str)})
        return await self._by("ManufacturingOrder", numbers)

    async def production_orders(self, ids: Sequence[str]) -> dict[str, ProductionOrder]:
        return index_by_key(await self._by("ManufacturingOrder", self._keys("ManufacturingOrder", ids)))

    async def production_orders_for_sales_orders(self, sales_orders: Sequence[str]) -> dict[str, list[ProductionOrder]]:
        records = await self._by("SalesOrder", self._keys("SalesOrder", sales_orders))
        return group_by(records, "sales_order", sales_orders)

    async def production_orders_for_batches(self, batches: Sequence[str]) -> dict[str, list[ProductionOrder]]:
        records = await self._via("A_ProductionOrderItem_2", "Batch", self._keys("Batch", batches))
        return _only(group_by(records, "batch", batches), batches)

    async def production_orders_for_work_centers(self, work_centers: Sequence[str]) -> dict[str, list[ProductionOrder]]:
        # The order's work centre is that of its first open operation (s4.production_order_from_s4);
        # orders that merely passed through one are read, then left out by the grouping.
        records = await self._via("A_ProductionOrderOperation_2", "WorkCenter", self._keys("WorkCenter", work_centers))
        return _only(group_by(records, "work_center", work_centers), work_centers)

    async def changes_since(self, since: dt.datetime) -> list[Changed]:
        """Production orders changed after ``since`` (``LastChangeDateTime gt …M``, SAP's
        decimal timestamp), oldest first."""
        result = await self.orders.changes_since(
            PRODUCTION_ORDER_SET, since, kind="timestamp",
            select=("ManufacturingOrder", "SalesOrder", "LastChangeDateTime"), page_size=self.page_size,
        )
        changed: list[Changed] = []
        for row in result.rows:
            key = row.get("ManufacturingOrder")
            try:
                at = parse_sap_timestamp(row.get("LastChangeDateTime"))
            except EdmValueError as exc:
                raise SourceError("mes", SOURCE_BAD_RESPONSE, f"A_ProductionOrder_2 {key!r}: LastChangeDateTime: {exc}") from exc
            if not isinstance(key, str) or at is None:
                continue
            refs = {"ManufacturingOrder": key}
            if isinstance(row.get("SalesOrder"), str) and row["SalesOrder"]:
                refs["SalesOrder"] = row["SalesOrder"]
            changed.append(Changed("ProductionOrder", key, at, refs))
        changed.sort(key=lambda c: c.changed_at)
        return changed

    def change_readers(self) -> dict:
        """The entity sets whose changes this connector reads over OData (the poller reads
        the rest over REST): keyed by the REST entity set they stand for."""
        return {ProductionOrder.ENTITY_SET: self.changes_since}


def _only(groups: dict[str, list[ProductionOrder]], keys: Sequence[str]) -> dict[str, list[ProductionOrder]]:
    """The groups of the keys asked for (an order read through another key is left out)."""
    return {k: groups.get(k, []) for k in keys}


__all__ = ["PRODUCTION_ORDER_SERVICE", "SapMesConnector", "sap_service"]

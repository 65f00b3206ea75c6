"""The WMS where outbound deliveries live in SAP S/4HANA: ``[sources.wms] profile = "sap-odata"``.

A mixed connector, like the MES's (``sources/sap_mes.py``):

- outbound deliveries come over OData: ``API_OUTBOUND_DELIVERY_SRV;v=0002``
  ``A_OutbDeliveryHeader`` with ``$expand=to_DeliveryDocumentItem``, from ``sap_url``; by
  sales order through ``A_OutbDeliveryItem`` (the header names no sales order, its items'
  ``ReferenceSDDocument`` do), then the headers;
- component availability keeps coming over the WMS's REST contract at ``rest_url``.

What SAP's delivery header does not keep is "not known", never guessed: the warehouse's
picking and packing confirmation times (``actual_picking_date_time`` /
``actual_packing_date_time`` are empty), and the change time (``LastChangeDate`` is a day;
the record's ``last_change_date_time`` is its midnight, UTC). A day cannot order two
changes of one day, so deliveries are not polled over OData: the WMS must push (SAP Event
Mesh's outbound delivery events, relayed to ``POST /events``), which the configuration
check requires.
"""

from __future__ import annotations

from collections.abc import Sequence

from .client import SourceClient, group_by, index_by_key
from .odata import outbound_delivery_from_s4
from .odata.auth import Auth
from .records import OutboundDelivery, RecordError
from .resilience import SOURCE_BAD_RESPONSE, SourceError
from .sap_mes import sap_service
from .wms import WmsConnector

OUTBOUND_DELIVERY_SERVICE = "API_OUTBOUND_DELIVERY_SRV;v=0002"
DELIVERY_EXPAND = ("to_DeliveryDocumentItem",)


class SapWmsConnector(WmsConnector):
    """Outbound deliveries from SAP S/4HANA over OData v2; component availability over REST."""

    def __init__(
        self,
        client: SourceClient,
        *,
        sap_url: str,
        auth: Auth | None = None,
        sap_client: str | None = None,
        max_url_length: int = 8000,
    ) -> None:
        super().__init__(client)  # the REST contract (component availability)
        self.deliveries_api = sap_service(
            "wms", client, sap_url, OUTBOUND_DELIVERY_SERVICE, auth=auth, sap_client=sap_client,
            max_url_length=max_url_length,
        )

    def _keys(self, field: str, ids: Sequence[str]) -> list[str]:
        return [v for v in dict.fromkeys(ids) if self.client.key_formats.problem(field, v) is None]

    async def _headers(self, numbers: list[str]) -> list[OutboundDelivery]:
        if not numbers:
            return []
        result = await self.deliveries_api.fetch_by("A_OutbDeliveryHeader", "DeliveryDocument", numbers, expand=DELIVERY_EXPAND)
        try:
            return [outbound_delivery_from_s4(row) for row in result.rows]
        except RecordError as exc:
            raise SourceError("wms", SOURCE_BAD_RESPONSE, str(exc)) from exc

    async def deliveries(self, ids: Sequence[str]) -> dict[str, OutboundDelivery]:
        return index_by_key(await self._headers(self._keys("DeliveryDocument", ids)))

    async def deliveries_for_sales_orders(self, sales_orders: Sequence[str]) -> dict[str, list[OutboundDelivery]]:
        keys = self._keys("SalesOrder", sales_orders)
        numbers: list[str] = []
        if keys:
            found = await self.deliveries_api.fetch_by(
                "A_OutbDeliveryItem", "ReferenceSDDocument", keys, select=("DeliveryDocument", "ReferenceSDDocument")
            )
            numbers = sorted({r["DeliveryDocument"] for r in found.rows if isinstance(r.get("DeliveryDocument"), str)})
        records = await self._headers(numbers)
        groups = group_by(records, "sales_order", sales_orders)
        return {k: groups.get(k, []) for k in sales_orders}

    def change_readers(self) -> dict:
        """Deliveries are not polled (a change day cannot order a day's changes; ``rest_url``
        does not serve them): ``None`` drops the REST contract's reader, and the
        configuration requires pushes. Component availability is still polled over REST."""
        return {OutboundDelivery.ENTITY_SET: None}


__all__ = ["OUTBOUND_DELIVERY_SERVICE", "SapWmsConnector"]

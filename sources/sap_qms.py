"""The QMS as SAP S/4HANA serves it: ``[sources.qms] profile = "sap-odata"``.

Everything the QMS connector reads is in SAP's public API, so this profile is all OData
(``base_url`` is the SAP host; no REST contract is read):

- inspection lots: ``API_INSPECTIONLOT_SRV`` ``A_InspectionLot`` (by lot, by
  ``ManufacturingOrder``, by ``Batch``);
- their usage decisions: ``A_InspLotUsageDecision`` (same key), read for the lots that say
  ``InspectionLotHasUsageDecision``. A lot that says so but comes without its decision is
  refused (``s4.inspection_lot_from_s4``): a decision of unknown valuation never reads as
  accepted.

Each look-up is one logical call per resolution level: the lots, then their decisions, each
a batch of keys cut into URL-sized chunks that run concurrently (``ODataClient.fetch_by``),
on the source's one ``Resilience``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from .client import SourceClient, group_by, index_by_key
from .odata import inspection_lot_from_s4
from .odata.auth import Auth
from .odata.values import EdmValueError, parse_sap_timestamp
from .qms import QmsConnector
from .records import InspectionLot, RecordError
from .resilience import SOURCE_BAD_RESPONSE, SourceError
from .sap_erp import Changed
from .sap_mes import sap_service

INSPECTION_LOT_SERVICE = "API_INSPECTIONLOT_SRV"


class SapQmsConnector(QmsConnector):
    """Inspection lots and usage decisions from SAP S/4HANA over OData v2."""

    def __init__(
        self,
        client: SourceClient,
        *,
        sap_url: str | None = None,
        auth: Auth | None = None,
        sap_client: str | None = None,
        max_url_length: int = 8000,
        page_size: int = 1000,
    ) -> None:
        super().__init__(client)
        self.page_size = page_size
        self.lots = sap_service(
            "qms", client, sap_url or client.base_url, INSPECTION_LOT_SERVICE, auth=auth, sap_client=sap_client,
            max_url_length=max_url_length,
        )

    def _keys(self, field: str, ids: Sequence[str]) -> list[str]:
        return [v for v in dict.fromkeys(ids) if self.client.key_formats.problem(field, v) is None]

    async def _by(self, field: str, keys: list[str]) -> list[InspectionLot]:
        if not keys:
            return []
        lots = (await self.lots.fetch_by("A_InspectionLot", field, keys)).rows
        decided = [r["InspectionLot"] for r in lots if r.get("InspectionLotHasUsageDecision") in (True, "X", "true")]
        decisions: dict[str, dict] = {}
        if decided:
            found = await self.lots.fetch_by("A_InspLotUsageDecision", "InspectionLot", decided)
            decisions = {r["InspectionLot"]: r for r in found.rows if isinstance(r.get("InspectionLot"), str)}
        try:
            return [inspection_lot_from_s4(r, usage_decision=decisions.get(r.get("InspectionLot"))) for r in lots]
        except RecordError as exc:
            raise SourceError("qms", SOURCE_BAD_RESPONSE, str(exc)) from exc

    async def inspection_lots(self, ids: Sequence[str]) -> dict[str, InspectionLot]:
        return index_by_key(await self._by("InspectionLot", self._keys("InspectionLot", ids)))

    async def inspection_lots_for_production_orders(self, production_orders: Sequence[str]) -> dict[str, list[InspectionLot]]:
        records = await self._by("ManufacturingOrder", self._keys("ManufacturingOrder", production_orders))
        return group_by(records, "manufacturing_order", production_orders)

    async def inspection_lots_for_batches(self, batches: Sequence[str]) -> dict[str, list[InspectionLot]]:
        records = await self._by("Batch", self._keys("Batch", batches))
        return group_by(records, "batch", batches)

    async def changes_since(self, since: dt.datetime) -> list[Changed]:
        """Inspection lots changed after ``since`` (``ChangedDateTime gt datetimeoffset'…'``)."""
        result = await self.lots.changes_since(
            "A_InspectionLot", since, field="ChangedDateTime",
            select=("InspectionLot", "ManufacturingOrder", "Batch", "ChangedDateTime"), page_size=self.page_size,
        )
        changed: list[Changed] = []
        for row in result.rows:
            key = row.get("InspectionLot")
            try:
                at = parse_sap_timestamp(row.get("ChangedDateTime"))
            except EdmValueError as exc:
                raise SourceError("qms", SOURCE_BAD_RESPONSE, f"A_InspectionLot {key!r}: ChangedDateTime: {exc}") from exc
            if not isinstance(key, str) or at is None:
                continue
            refs = {"InspectionLot": key}
            for field in ("ManufacturingOrder", "Batch"):
                if isinstance(row.get(field), str) and row[field]:
                    refs[field] = row[field]
            changed.append(Changed("InspectionLot", key, at, refs))
        changed.sort(key=lambda c: c.changed_at)
        return changed

    def change_readers(self) -> dict:
        """The poller reads inspection lots' changes over OData (keyed by the REST entity set)."""
        return {InspectionLot.ENTITY_SET: self.changes_since}


__all__ = ["INSPECTION_LOT_SERVICE", "SapQmsConnector"]

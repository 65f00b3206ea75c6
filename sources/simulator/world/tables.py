"""The record store's tables: the entity sets the five source systems serve, and one
``Table`` per entity set.

A table keeps its records' keys sorted and an index on each filterable field, so a batch
read of 1,000 keys is a set union, not a scan; it caches each record's rendered JSON until
the record changes.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from ...records import (
    ComponentAvailability,
    Customer,
    InspectionLot,
    OutboundDelivery,
    ProductionOrder,
    Record,
    SalesOrder,
    Shipment,
    WorkCenter,
)

SYSTEMS = ("erp", "mes", "wms", "qms", "tms")


@dataclasses.dataclass(frozen=True, slots=True)
class EntitySet:
    """One entity set of one source system and its filterable fields (first = key)."""

    system: str
    name: str
    record_type: type[Record]
    filter_fields: tuple[str, ...]

    @property
    def key_field(self) -> str:
        """The source field that is the records' key."""
        return self.filter_fields[0]


# The entity-set table of sources/API.md.
ENTITY_SETS: tuple[EntitySet, ...] = (
    EntitySet("erp", "A_Customer", Customer, ("Customer",)),
    EntitySet("erp", "A_SalesOrder", SalesOrder, ("SalesOrder", "SoldToParty")),
    EntitySet(
        "mes", "A_ProductionOrder", ProductionOrder, ("ManufacturingOrder", "SalesOrder", "Batch", "WorkCenter")
    ),
    EntitySet("mes", "A_WorkCenter", WorkCenter, ("WorkCenter",)),
    EntitySet(
        "wms", "A_ComponentAvailability", ComponentAvailability, ("Reservation", "ManufacturingOrder", "Material")
    ),
    EntitySet(
        "wms", "A_OutbDeliveryHeader", OutboundDelivery, ("DeliveryDocument", "ReferenceSDDocument", "BillOfLading")
    ),
    EntitySet("qms", "A_InspectionLot", InspectionLot, ("InspectionLot", "ManufacturingOrder", "Batch")),
    EntitySet("tms", "Shipment", Shipment, ("TrackingNumber", "DeliveryDocument", "BillOfLading")),
)


def find_entity_set(system: str, name: str) -> EntitySet | None:
    """The entity set ``name`` served under ``/<system>``, or None."""
    for es in ENTITY_SETS:
        if es.system == system and es.name == name:
            return es
    return None


def api_attributes(record_type: type[Record]) -> dict[str, str]:
    """Source field name -> attribute name for one record class."""
    return {f.metadata["api"]: f.name for f in dataclasses.fields(record_type) if "api" in f.metadata}


class Table:
    """One entity set's records: sorted keys, field indexes, rendered-JSON cache."""

    def __init__(self, entity_set: EntitySet) -> None:
        self.entity_set = entity_set
        attrs = api_attributes(entity_set.record_type)
        index_attrs = [attrs[f] for f in entity_set.filter_fields[1:]]
        # attrgetter with one name returns a bare value; always compare tuples.
        getter = operator.attrgetter(*index_attrs) if index_attrs else None
        self._index_values: Callable[[Record], tuple[Any, ...]] = (
            (lambda r: ()) if getter is None
            else (lambda r: (getter(r),)) if len(index_attrs) == 1
            else getter  # type: ignore[assignment]
        )
        self._index: dict[str, dict[str, set[str]]] = {f: {} for f in entity_set.filter_fields[1:]}
        self._records: dict[str, Record] = {}
        self._keys: list[str] = []
        self._indexed: dict[str, tuple[Any, ...]] = {}
        self._rendered: dict[str, dict[str, Any]] = {}
        self._bulk = False

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: object) -> bool:
        return key in self._records

    def get(self, key: str) -> Record | None:
        """The record with this key, or None."""
        return self._records.get(key)

    def keys(self) -> list[str]:
        """All keys in sort order (do not mutate the list)."""
        return self._keys

    def records(self) -> Iterator[Record]:
        """All records in key order."""
        return (self._records[k] for k in self._keys)

    def begin_bulk(self) -> None:
        """Stop indexing on every put until ``end_bulk`` (generation touches records often)."""
        self._bulk = True

    def end_bulk(self) -> None:
        """Sort the keys and build every index once."""
        self._bulk = False
        self._keys = sorted(self._records)
        self._indexed.clear()
        for index in self._index.values():
            index.clear()
        self._rendered.clear()
        indexes = list(self._index.values())
        for key, record in self._records.items():
            values = self._index_values(record)
            self._indexed[key] = values
            for index, value in zip(indexes, values, strict=True):
                if value is not None:
                    index.setdefault(value, set()).add(key)

    def put(self, record: Record) -> None:
        """Insert or re-index a record after it changed."""
        key = record.key
        if self._bulk:
            self._records[key] = record
            return
        if key not in self._records:
            if not self._keys or key > self._keys[-1]:
                self._keys.append(key)
            else:
                bisect.insort(self._keys, key)
            self._records[key] = record
        self._reindex(key, record)
        self._rendered.pop(key, None)

    def _reindex(self, key: str, record: Record) -> None:
        new = self._index_values(record)
        old = self._indexed.get(key)
        if old == new:
            return
        previous = old if old is not None else (None,) * len(new)
        for index, before, after in zip(self._index.values(), previous, new, strict=True):
            if before == after:
                continue
            if before is not None:
                bucket = index[before]
                bucket.discard(key)
                if not bucket:
                    del index[before]
            if after is not None:
                index.setdefault(after, set()).add(key)
        self._indexed[key] = new

    def lookup(self, field: str, values: Iterable[str]) -> set[str]:
        """Keys of the records whose ``field`` (a source field name) is one of ``values``."""
        if field == self.entity_set.key_field:
            return {v for v in values if v in self._records}
        index = self._index[field]
        out: set[str] = set()
        for v in values:
            bucket = index.get(v)
            if bucket:
                out |= bucket
        return out

    def render(self, key: str) -> dict[str, Any]:
        """The record as source JSON; cached until the record changes."""
        rendered = self._rendered.get(key)
        if rendered is None:
            rendered = self._rendered[key] = self._records[key].to_api()
        return rendered

    def query(
        self,
        filters: Mapping[str, Iterable[str]],
        *,
        changed_since: dt.datetime | None = None,
        confirmed_before: dt.date | None = None,
        after: str | None = None,
        top: int | None = None,
        open_or_changed_since: dt.datetime | None = None,
    ) -> tuple[list[dict[str, Any]], int, str | None]:
        """One page of matches, sorted by key: (rendered records, total count, last key).

        ``filters`` maps source field names to accepted values (AND across fields);
        ``after`` is the last key of the previous page; the returned last key is None when
        this is the last page. ``open_or_changed_since``: only sales orders not completed
        (``OverallSDProcessStatus`` other than C) or changed since then.
        """
        keys: list[str]
        if filters:
            found: set[str] | None = None
            for field, values in filters.items():
                matched = self.lookup(field, values)
                found = matched if found is None else found & matched
            keys = sorted(found or ())
        else:
            keys = self._keys
        if changed_since is not None or confirmed_before is not None:
            keys = [k for k in keys if _matches(self._records[k], changed_since, confirmed_before)]
        if open_or_changed_since is not None:
            keys = [k for k in keys if _open_or_changed(self._records[k], open_or_changed_since)]
        count = len(keys)
        first = bisect.bisect_right(keys, after) if after is not None else 0
        page = keys[first:] if top is None else keys[first : first + top]
        last = page[-1] if page and first + len(page) < count else None
        return [self.render(k) for k in page], count, last


def _matches(record: Any, changed_since: dt.datetime | None, confirmed_before: dt.date | None) -> bool:
    if changed_since is not None:
        changed = record.last_change_date_time
        if changed is None or changed < changed_since:
            return False
    if confirmed_before is not None:
        confirmed = record.confirmed_delivery_date
        if confirmed is None or confirmed >= confirmed_before:
            return False
    return True


def _open_or_changed(record: Any, since: dt.datetime) -> bool:
    """Not completed, or completed but changed at or after ``since``."""
    if getattr(record, "overall_sd_process_status", "A") != "C":
        return True
    changed = record.last_change_date_time
    return changed is not None and changed >= since

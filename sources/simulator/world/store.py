"""The record store: the tables of every entity set, and the changes made to them.

Every mutation goes through ``touch``: it stamps the record's ``LastChangeDateTime``,
re-indexes it, and queues a ``Change`` carrying a snapshot of the record; ``flush`` hands
the queued changes to the listeners (the event emitter, the bench) once a lever or a tick
is done. While the world is being generated the store is ``loading``: tables index once at
the end and no changes are queued.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ...memory import gc_paused
from ...records import (
    ComponentAvailability,
    InspectionLot,
    OutboundDelivery,
    ProductionOrder,
    Record,
    SalesOrder,
    Shipment,
    WorkCenter,
)
from .clock import iso_utc
from .tables import ENTITY_SETS, Table

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """One record changed in one source system.

    ``change_type`` is ``<Entity>.<Action>`` with the actions the connectors' event
    types know (e.g. ``ProductionOrder.Released``); ``record`` is a snapshot taken right
    after the change; ``sales_order`` is the order whose lifecycle caused it (None for
    work centres).
    """

    system: str
    entity_set: str
    key: str
    record: Record
    change_type: str
    occurred_at: dt.datetime
    sales_order: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A small JSON summary (no record body) for control-API answers."""
        return {
            "system": self.system,
            "entitySet": self.entity_set,
            "key": self.key,
            "changeType": self.change_type,
            "occurredAt": iso_utc(self.occurred_at),
            "salesOrder": self.sales_order,
        }


class UnknownKey(KeyError):
    """A mutation named a record that does not exist."""


Listener = Callable[[Change], None]


class RecordStore:
    """The records of the five source systems, one ``Table`` per entity set."""

    def __init__(self) -> None:
        self.tables: dict[str, Table] = {es.name: Table(es) for es in ENTITY_SETS}
        # Reservations per production order, readable while tables are bulk-loading.
        self.reservations: dict[str, list[str]] = {}
        self._pending: list[Change] = []
        self._listeners: list[Listener] = []
        self._loading = False

    @contextlib.contextmanager
    def loading(self) -> Iterator[None]:
        """Bulk-load: no indexing on every put and no changes queued; every table sorts
        and indexes once at the end (generation touches records often). The cyclic
        garbage collector waits meanwhile (``gc_paused``)."""
        with gc_paused():
            self._loading = True
            for table in self.tables.values():
                table.begin_bulk()
            try:
                yield
            finally:
                self._loading = False
                self._pending.clear()
                for table in self.tables.values():
                    table.end_bulk()

    def touch(self, record: Record, change_type: str, at: dt.datetime, sales_order: str | None) -> None:
        """Stamp a changed record, re-index it and queue its Change."""
        record.last_change_date_time = at  # type: ignore[attr-defined]
        table = self.tables[record.ENTITY_SET]
        table.put(record)
        if self._loading:
            return
        self._pending.append(
            Change(
                system=record.SOURCE,
                entity_set=record.ENTITY_SET,
                key=record.key,
                record=snapshot(record),
                change_type=change_type,
                occurred_at=at,
                sales_order=sales_order,
            )
        )

    def subscribe(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(change)`` after every change; returns an unsubscribe function."""
        self._listeners.append(callback)

        def unsubscribe() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return unsubscribe

    def flush(self) -> list[Change]:
        """Hand the queued changes to every listener, in order; returns them."""
        changes, self._pending = self._pending, []
        for change in changes:
            for listener in list(self._listeners):
                try:
                    listener(change)
                except Exception:  # a faulty listener must not break the plant
                    log.exception("world listener failed on %s %s", change.change_type, change.key)
        return changes

    # --- typed reads of records the world's own bookkeeping says exist ----------------------

    def get(self, entity_set: str, key: str) -> Record | None:
        """One record by entity set and key, or None."""
        return self.tables[entity_set].get(key)

    def sales_order(self, key: str) -> SalesOrder:
        """The sales order ``key``."""
        record = self.tables["A_SalesOrder"].get(key)
        assert isinstance(record, SalesOrder)
        return record

    def production_order(self, key: str) -> ProductionOrder:
        """The production order ``key``."""
        record = self.tables["A_ProductionOrder"].get(key)
        assert isinstance(record, ProductionOrder)
        return record

    def production_orders(self, keys: Iterable[str]) -> list[ProductionOrder]:
        """The production orders ``keys``, in that order."""
        return [self.production_order(k) for k in keys]

    def components(self, production_order: str) -> list[ComponentAvailability]:
        """The component reservations of one production order."""
        table = self.tables["A_ComponentAvailability"]
        return [table.get(k) for k in self.reservations[production_order]]  # type: ignore[misc]

    def inspection_lot(self, key: str) -> InspectionLot:
        """The inspection lot ``key``."""
        record = self.tables["A_InspectionLot"].get(key)
        assert isinstance(record, InspectionLot)
        return record

    def delivery(self, key: str | None) -> OutboundDelivery:
        """The outbound delivery ``key``."""
        record = self.tables["A_OutbDeliveryHeader"].get(key or "")
        assert isinstance(record, OutboundDelivery)
        return record

    def shipment(self, key: str | None) -> Shipment:
        """The shipment with tracking number ``key``."""
        record = self.tables["Shipment"].get(key or "")
        assert isinstance(record, Shipment)
        return record

    def work_center(self, key: str) -> WorkCenter:
        """The work centre ``key``; UnknownKey when there is none."""
        record = self.tables["A_WorkCenter"].get(key)
        if not isinstance(record, WorkCenter):
            raise UnknownKey(key)
        return record


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def snapshot(record: Record) -> Record:
    """A copy of a record that later changes cannot reach: nested records are copied,
    scalars (str, numbers, dates: immutable) shared. Much cheaper than ``copy.deepcopy``,
    which every change pays."""
    out = object.__new__(record.__class__)
    for name in _field_names(record.__class__):
        value = getattr(record, name)
        if value.__class__ is list:
            value = [snapshot(v) if isinstance(v, Record) else v for v in value]
        elif isinstance(value, Record):
            value = snapshot(value)
        setattr(out, name, value)
    return out

"""The sales orders queued on each work centre (a ``workCenterDown`` what-if's pegged
orders, ``fetch.pegged_orders``), kept between requests instead of read and parsed whole
on every what-if.

The first what-if on a work centre takes its queue whole: the orders with a production
order on it that is not completed. Once the gateway has evaluated every order, the order
index holds each order's queues (``DerivedValues.queued_on``), made current as a listing
makes it (``OrderIndex.refresh``: no value older than the last accepted event): the set
is taken from there, with no read. Before that (or after a wholesale drop of the cache,
until the index is whole again) it is read from the MES: its listing of the work centre's
production orders, some 24,000 records at 100,000 orders, 0.4 s of parsing on the first
what-if. The set is kept with the record cache's ticket taken before it was taken. From then on the record cache's
invalidations (``POST /events``, the Redis bus and fence: every replica's cache) name the
sales orders whose production orders changed (``PRODUCTION_ORDERS_BY_SALES_ORDER``); the
next what-if on the work centre reads just those orders' production orders through the
request's loaders (the record cache: an invalidated key is read from the MES again, and
the cache's fences keep out answers read before the invalidation) and moves each in or
out of the set. So the set is never older than the last accepted event, as the records
the what-if then reads. A wholesale drop of the cache (or of a namespace) forgets every
set; and a set is read whole again once it is ``ttl_seconds`` old (the record cache's
lifetime), so a change the sources made without an event reaches it no later than it
reaches the cached records themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from typing import Any

from sources import namespaces as ns

from .view import production_completed


class UnknownWorkCenter(LookupError):
    """The MES does not know the work centre."""


def queued_on(work_center: str, production_orders: Any) -> bool:
    """Whether any of the production orders is on ``work_center`` and not completed."""
    return any(po.work_center == work_center and not production_completed(po) for po in production_orders)


class QueuedOrders:
    """Sales orders with unfinished production per work centre, kept current by the
    record cache's invalidations (see the module)."""

    def __init__(self, records: Any, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.records = records
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        # work centre -> (its queued sales orders, ticket taken before the reads they
        # reflect, when the set was read whole)
        self._sets: dict[str, tuple[set[str], int, float]] = {}
        # sales order -> ticket stamped when its production orders were last invalidated
        self._changed: dict[str, int] = {}
        # Sets from reads that began at or before this ticket are not kept (the cache was
        # dropped wholesale after they began).
        self._floor = 0
        self._reading = 0  # whole reads under way (their sets are not kept yet)
        self.full_reads = 0  # sets read whole from the MES
        self.from_index = 0  # sets taken whole from the order index
        self.rechecked = 0  # orders read again after an invalidation
        records.listeners.append(self._on_invalidate)

    def _on_invalidate(self, keys: list[Hashable] | None) -> None:
        if keys is None:  # dropped wholesale: which orders changed is not known
            self._floor = self.records.ticket()
            self._sets.clear()
            self._changed.clear()
            return
        if not self._sets and not self._reading:
            return  # no set kept nor being read: nothing to keep current
        stamp = None
        changed = self._changed
        for key in keys:
            if isinstance(key, tuple) and len(key) == 2 and key[0] == ns.PRODUCTION_ORDERS_BY_SALES_ORDER:
                if stamp is None:
                    stamp = self.records.ticket()
                changed[key[1]] = stamp

    async def pegged(self, ctx: Any, work_center: str) -> set[str]:
        """The sales orders with a production order on ``work_center`` not completed;
        ``UnknownWorkCenter`` when the MES does not know it."""
        src = ctx.sources
        kept = self._sets.get(work_center)
        if kept is not None and self.clock() - kept[2] >= self.ttl_seconds:
            kept = None
        if kept is None:
            ticket = self.records.ticket()
            self._reading += 1
            try:
                index = ctx.index
                whole = (
                    self._from_index(index, work_center)
                    if index is not None and index.usable
                    else self._read_whole(src, work_center)
                )
                found, queued = await asyncio.gather(src.mes.work_centers([work_center]), whole)
                if work_center in found and queued is None:
                    queued = await self._read_whole(src, work_center)
            finally:
                self._reading -= 1
            if work_center not in found:
                raise UnknownWorkCenter(work_center)
            self._store(work_center, queued, ticket, self.clock())
            return set(queued)
        queued, since, read_at = kept
        ticket = self.records.ticket()
        again = sorted(so for so, at in self._changed.items() if at >= since)
        found_read = src.mes.work_centers([work_center])
        if again:
            found, pos_by = await asyncio.gather(found_read, ctx.loaders.production_orders.load_all(again))
        else:
            found, pos_by = await found_read, {}
        if work_center not in found:
            raise UnknownWorkCenter(work_center)
        current = self._sets.get(work_center)
        if current is None or current[1] != since:  # replaced or dropped meanwhile: start from this one's
            queued = set(queued)
        for so in again:
            if queued_on(work_center, pos_by[so]):
                queued.add(so)
            else:
                queued.discard(so)
        self.rechecked += len(again)
        self._store(work_center, queued, ticket, read_at)
        return set(queued)

    async def _read_whole(self, src: Any, work_center: str) -> set[str]:
        """The work centre's queue from the MES's listing of its production orders."""
        listing = await src.mes.production_orders_for_work_centers([work_center])
        self.full_reads += 1
        return {po.sales_order for po in listing.get(work_center, []) if not production_completed(po)}

    async def _from_index(self, index: Any, work_center: str) -> set[str] | None:
        """The work centre's queue from the order index (every order's ``queued_on``), made
        current as a listing makes it (``OrderIndex.refresh``); None while the index is not
        whole (before the first evaluation of every order ends, or after a wholesale drop)."""
        if index is None or not index.usable:
            return None
        await index.refresh()
        if not index.usable:
            return None
        self.from_index += 1
        return index.queued_on(work_center)

    def _store(self, work_center: str, queued: set[str], ticket: int, read_at: float) -> None:
        if ticket <= self._floor:
            return  # the cache was dropped wholesale after these reads began
        known = self._sets.get(work_center)
        if known is not None and known[1] > ticket:
            return  # a set from later reads is kept already
        self._sets[work_center] = (queued, ticket, read_at)
        if len(self._changed) > 4096:  # changes every kept set has seen are not needed any more
            expired = self.clock() - self.ttl_seconds
            self._sets = {wc: kept for wc, kept in self._sets.items() if kept[2] > expired}
            oldest = min((t for _, t, _ in self._sets.values()), default=ticket)
            self._changed = {so: at for so, at in self._changed.items() if at >= oldest}



"""An index of every order's derived values, kept current by the event path.

Listings filtered or sorted on derived values (stage, delivery risk, predicted date, days
late, value, priority) would otherwise assemble every order's view from five systems on
each request. The index keeps one ``resolvers.derived.DerivedValues`` per order, in
buckets by (stage, delivery risk), each bucket holding one sorted list per sort: a page
is a bisect into the matching buckets and a merge of as many entries as the page needs;
``totalCount`` is the sum of the buckets' lengths.

Who writes it: the exception tracker (``gateway/exception_tracker.py``), in the same pass that
evaluates an order's exceptions — every order at start and at each sweep, the orders the
bus names, and each order again at its due time. Nothing evaluates an order twice.

How current it is — the response cache's guarantee (``gateway/response_cache.py``): the
index listens to the record cache's invalidations, which ``POST /events`` runs before its
202 (and the Redis bus and fence on every replica). Each invalidated key marks the orders
computed from it *dirty*, stamped with a fresh ticket. A value is stored with the ticket
taken before its records were read; it clears the mark only if it was read after the
invalidation (the same ``ticket`` fence as ``RecordCache.put``). A listing first
recomputes the orders dirty when it started (``refresh``; the few an event just touched,
normally already done by the tracker), so no answer is older than the last accepted event.
When the cache is dropped wholesale (a namespace whose keys were unknown, a gap on the
Redis bus) the index counts as lost until the next full evaluation that began afterwards
completes (the first listing that needs it asks for one, else the tracker's sweep does
it); listings meanwhile take the old path (read every order).

What turns with the clock alone (a promise passing, the prediction's drift) reaches the
index at the order's due time or the tracker's sweep, as it reaches the exceptions; the
listing checks the orders of the page it returns against their live values, so a page
never shows an order that does not match its filter.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator
from typing import Any

from resolvers.derived import SALES_ORDER, SORTS, DerivedValues
from resolvers.enums import DeliveryRisk, OrderStage
from sources import namespaces as ns

from .cache import RecordCache

log = logging.getLogger("ordergraph.index")

Bucket = dict[str, list[tuple]]  # sort -> sorted keys (each ending with the sales order)
NO_FENCE = float("inf")
Compute = Callable[[list[str]], Awaitable[None]]  # recompute these orders into the index


class OrderIndex:
    """Derived values of every order, by (stage, risk) bucket and sort."""

    def __init__(self, records: RecordCache) -> None:
        self.records = records
        self._values: dict[str, DerivedValues] = {}
        # Version of each stored value: (fence position, local ticket). The fence position
        # (scale-out: the shared invalidation sequence, gateway/redis_fence.py) is how far
        # the invalidations were applied when the value's reads began: comparable across
        # replicas. The ticket orders this replica's own reads (0 for another replica's).
        self._versions: dict[str, tuple[int, int]] = {}
        self._buckets: dict[tuple[OrderStage, DeliveryRisk], Bucket] = {}
        self._by_customer: dict[str, set[str]] = {}
        self._by_production_order: dict[str, str] = {}
        self._by_delivery: dict[str, str] = {}
        self._by_work_center: dict[str, set[str]] = {}
        self._by_queue: dict[str, set[str]] = {}  # work centre -> orders waiting on it (``queued_on``)
        # Orders whose records were invalidated: the ticket stamped then, and the fence
        # sequence of the invalidation (``NO_FENCE`` when it came from elsewhere: then only
        # a read of this replica's, after the ticket, clears the mark).
        self._dirty: dict[str, tuple[int, float]] = {}
        # Scale-out: the fence sequence being applied now (None when not in a fence message),
        # and (ticket, sequence) of each applied message, to date this replica's reads.
        self.fence_applying: Callable[[], int | None] = lambda: None
        self._fence_log: list[tuple[int, int]] = []
        # Scale-out: values this replica computed are handed here (to share with the others).
        self.on_computed: Callable[[DerivedValues | str, int], None] | None = None
        self._complete = False  # every order known: a full evaluation finished
        self._built = False  # the buckets exist (built once, in bulk, after the first full pass)
        self._floor = 0  # everything computed at or before this ticket is suspect
        self._flight: asyncio.Future[None] | None = None
        self.compute: Compute | None = None  # set by the gateway: recompute orders now
        self.on_lost: Callable[[], None] | None = None  # set by the gateway: ask for a full evaluation
        self._rebuild_asked = False
        self.refreshed = 0  # orders a listing recomputed before answering
        self.lost = 0  # times the whole index became suspect
        records.listeners.append(self._on_invalidate)

    # --- state ----------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Whether listings may use the index (every order known, nothing wholesale lost)."""
        return self._complete and self._built

    def wanted(self) -> None:
        """A listing needed the index while it was lost: have every order evaluated again
        (once per loss; a loss nobody lists by derived values costs nothing)."""
        if self._built and not self._complete and not self._rebuild_asked and self.on_lost is not None:
            self._rebuild_asked = True
            self.on_lost()

    def __len__(self) -> int:
        return len(self._values)

    def get(self, sales_order: str) -> DerivedValues | None:
        return self._values.get(sales_order)

    def dirty(self) -> dict[str, int]:
        """Orders invalidated since their values were computed, with the invalidation's ticket."""
        return {so: mark[0] for so, mark in self._dirty.items()}

    def suspect_before(self, position: int) -> None:
        """Mark dirty every value read before the fence reached ``position``: it may miss an
        invalidation this replica never saw (a value read from ``position`` on clears it)."""
        stamp = self.records.ticket()
        for so, (at, _ticket) in self._versions.items():
            if at < position:
                self._dirty[so] = (stamp, position)

    def fence_applied(self, applied: int) -> None:
        """Scale-out: every fence sequence up to ``applied`` is applied here (at the start,
        and after each message): reads from now on saw them all."""
        log_ = self._fence_log
        if log_ and log_[-1][1] >= applied:
            return
        log_.append((self.records.ticket(), applied))
        if len(log_) > 20_000:  # older reads then count as position 0: safe
            del log_[:10_000]

    def clean_upto(self, position: int) -> int:
        """Scale-out: the evaluator says every value it shared reflects every invalidation
        up to fence ``position``: clear the marks of those. Returns how many cleared."""
        done = [so for so, mark in self._dirty.items() if mark[1] <= position]
        for so in done:
            del self._dirty[so]
        return len(done)

    def clean_position(self) -> int | None:
        """The fence position every value here reflects, if nothing is dirty (else None)."""
        if self._dirty:
            return None
        return self.position_of(self.records.ticket())

    def position_of(self, ticket: int) -> int:
        """The fence sequence every read that began at ``ticket`` saw applied (0 without a fence)."""
        log_ = self._fence_log
        i = bisect.bisect_left(log_, (ticket, -1))
        return log_[i - 1][1] if i else 0

    def stats(self) -> dict[str, int]:
        return {"orders": len(self._values), "dirty": len(self._dirty), "refreshed": self.refreshed, "lost": self.lost}

    # --- writes ---------------------------------------------------------------------------

    def put(self, values: DerivedValues, ticket: int) -> bool:
        """Store an order's values computed from records read after ``ticket``; False (and
        nothing changes) when values from a later read are already stored."""
        position = self.position_of(ticket)
        so = values.sales_order
        news = so in self._dirty or self._values.get(so) != values
        if not self._store(values, (position, ticket)):
            return False
        if news and self.on_computed is not None:  # a sweep's unchanged values stay here
            self.on_computed(values, position)
        return True

    def put_shared(self, values: DerivedValues | str, position: int) -> bool:
        """Another replica's values (or, for a bare sales order number, its word that the
        order does not exist), read after it applied the fence up to ``position``."""
        if isinstance(values, str):
            return self._drop(values, (position, 0))
        return self._store(values, (position, 0))

    def _fresh_enough(self, so: str, version: tuple[int, int]) -> bool:
        """Whether a value of ``version`` is at least as new as the stored one; and clear
        the order's dirty mark if the value's reads began after its invalidation."""
        if self._versions.get(so, (0, 0)) > version:
            return False
        mark = self._dirty.get(so)
        if mark is not None:
            position, ticket = version
            if (ticket and mark[0] < ticket) or mark[1] <= position:
                del self._dirty[so]
        return True

    def _store(self, values: DerivedValues, version: tuple[int, int]) -> bool:
        so = values.sales_order
        if not self._fresh_enough(so, version):
            return False
        old = self._values.get(so)
        self._versions[so] = version
        if old == values:
            return True
        if old is not None:
            self._unlink(old)
        self._values[so] = values
        self._link(values)
        return True

    def discard(self, sales_order: str, ticket: int) -> None:
        """The order does not exist (as of a read after ``ticket``)."""
        position = self.position_of(ticket)
        if self._drop(sales_order, (position, ticket)) and self.on_computed is not None:
            self.on_computed(sales_order, position)

    def _drop(self, sales_order: str, version: tuple[int, int]) -> bool:
        if not self._fresh_enough(sales_order, version):
            return False
        old = self._values.pop(sales_order, None)
        self._versions.pop(sales_order, None)
        if old is not None:
            self._unlink(old)
        return True

    def complete(self, seen: Iterable[str], ticket: int) -> None:
        """A full evaluation that began at ``ticket`` saw exactly the orders ``seen``: drop
        the others (unless written since), and the index holds every order."""
        seen = set(seen)
        for so in [so for so in self._values if so not in seen and self._versions.get(so, (0, 0))[1] <= ticket]:
            self.discard(so, ticket)
        if ticket <= self._floor:
            return  # the cache was dropped wholesale meanwhile: not known to be whole
        if not self._built:
            self._build()
        if not self._complete:
            log.info("order index: %d orders; listings filter and sort on it", len(self._values))
        self._complete = True

    def _build(self) -> None:
        buckets: dict[tuple[OrderStage, DeliveryRisk], Bucket] = {}
        for v in self._values.values():
            bucket = buckets.get((v.stage, v.risk))
            if bucket is None:
                bucket = buckets[(v.stage, v.risk)] = {s: [] for s in SORTS}
            for s in SORTS:
                bucket[s].append(v.sort_key(s))
        for bucket in buckets.values():
            for keys in bucket.values():
                keys.sort()
        self._buckets = buckets
        self._built = True

    def _link(self, v: DerivedValues) -> None:
        so = v.sales_order
        self._by_customer.setdefault(v.customer, set()).add(so)
        for mo in v.production_orders:
            self._by_production_order[mo] = so
        for dd in v.deliveries:
            self._by_delivery[dd] = so
        for wc in v.work_centers:
            self._by_work_center.setdefault(wc, set()).add(so)
        for wc in v.queued_on:
            self._by_queue.setdefault(wc, set()).add(so)
        if self._built:
            bucket = self._buckets.get((v.stage, v.risk))
            if bucket is None:
                bucket = self._buckets[(v.stage, v.risk)] = {s: [] for s in SORTS}
            for s in SORTS:
                bisect.insort(bucket[s], v.sort_key(s))

    def _unlink(self, v: DerivedValues) -> None:
        so = v.sales_order
        _discard(self._by_customer, v.customer, so)
        for mo in v.production_orders:
            if self._by_production_order.get(mo) == so:
                del self._by_production_order[mo]
        for dd in v.deliveries:
            if self._by_delivery.get(dd) == so:
                del self._by_delivery[dd]
        for wc in v.work_centers:
            _discard(self._by_work_center, wc, so)
        for wc in v.queued_on:
            _discard(self._by_queue, wc, so)
        if self._built:
            bucket = self._buckets[(v.stage, v.risk)]
            for s in SORTS:
                keys = bucket[s]
                key = v.sort_key(s)
                i = bisect.bisect_left(keys, key)
                if i < len(keys) and keys[i] == key:
                    del keys[i]

    # --- invalidation (the record cache's listeners) --------------------------------------

    def _on_invalidate(self, keys: list[Hashable] | None) -> None:
        stamp = self.records.ticket()
        fence_seq = self.fence_applying()
        if keys is None:
            self._floor = stamp
            if self._complete:
                self.lost += 1
                log.info("order index: the record cache was dropped wholesale; re-evaluating every order")
            self._complete = False
            self._rebuild_asked = False
            return
        dirty = self._dirty
        mark = (stamp, fence_seq if fence_seq is not None else NO_FENCE)
        for key in keys:
            if not (isinstance(key, tuple) and len(key) == 2):
                continue
            namespace, k = key
            if namespace in (ns.SALES_ORDER, ns.PRODUCTION_ORDERS_BY_SALES_ORDER, ns.DELIVERIES_BY_SALES_ORDER):
                # A sales order the index does not know yet (just created) is dirty too.
                if namespace == ns.SALES_ORDER or k in self._values:
                    dirty[k] = mark
            elif namespace in (ns.COMPONENTS_BY_PRODUCTION_ORDER, ns.LOTS_BY_PRODUCTION_ORDER):
                so = self._by_production_order.get(k)
                if so is not None:
                    dirty[so] = mark
            elif namespace == ns.SHIPMENTS_BY_DELIVERY:
                so = self._by_delivery.get(k)
                if so is not None:
                    dirty[so] = mark
            elif namespace == ns.WORK_CENTER:
                for so in self._by_work_center.get(k, ()):
                    dirty[so] = mark
            elif namespace == ns.CUSTOMER:
                for so in self._by_customer.get(k, ()):
                    dirty[so] = mark

    async def refresh(self) -> None:
        """Recompute every order that was dirty when this call began (a listing's first
        step): afterwards, no value in the index is older than an event accepted before."""
        start = self.records.ticket()
        if self._flight is not None:  # another listing's refresh: share it, then do the rest
            await asyncio.shield(self._flight)
        todo = sorted(so for so, mark in self._dirty.items() if mark[0] < start)
        if not todo or self.compute is None:
            return
        flight: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flight = flight
        try:
            await self.compute(todo)
            self.refreshed += len(todo)
        finally:
            if self._flight is flight:
                self._flight = None
            flight.set_result(None)

    # --- reads ----------------------------------------------------------------------------

    def select(
        self,
        *,
        stages: set[OrderStage] | None = None,
        risks: set[DeliveryRisk] | None = None,
        customer: str | None = None,
        confirmed_before: Any = None,
        sort: str = SALES_ORDER,
        after: tuple | None = None,
        limit: int | None = None,
    ) -> list[DerivedValues]:
        """Up to ``limit`` matching orders in ``sort`` order, strictly after the key
        ``after``: costs about ``limit`` (plus the orders of ``customer`` when given)."""
        return list(itertools.islice(self._matching(stages, risks, customer, confirmed_before, sort, after), limit))

    def _matching(
        self,
        stages: set[OrderStage] | None,
        risks: set[DeliveryRisk] | None,
        customer: str | None,
        confirmed_before: Any,
        sort: str,
        after: tuple | None,
    ) -> Iterator[DerivedValues]:
        # Consumed without an await in between: the lists may change at the next one.
        values = self._values

        def wanted(v: DerivedValues) -> bool:
            return confirmed_before is None or (v.confirmed is not None and v.confirmed < confirmed_before)

        if customer is not None:
            mine = [
                v for so in self._by_customer.get(customer, ())
                if ((v := values[so]) is not None)
                and (not stages or v.stage in stages) and (not risks or v.risk in risks) and wanted(v)
            ]  # fmt: skip
            mine.sort(key=lambda v: v.sort_key(sort))
            if after is not None:
                mine = mine[bisect.bisect_right([v.sort_key(sort) for v in mine], after) :]
            yield from mine
            return
        runs = []
        for (stage, risk), bucket in self._buckets.items():
            if (stages and stage not in stages) or (risks and risk not in risks):
                continue
            keys = bucket[sort]
            if not keys:
                continue
            i = bisect.bisect_right(keys, after) if after is not None else 0
            runs.append(itertools.islice(keys, i, None))
        merged = heapq.merge(*runs) if len(runs) != 1 else runs[0]
        for key in merged:
            v = values[key[-1]]
            if wanted(v):
                yield v

    def queued_on(self, work_center: str) -> set[str]:
        """The orders with a production order on ``work_center`` not completed, as the
        values hold them (``refresh`` first for the listings' guarantee)."""
        return set(self._by_queue.get(work_center, ()))

    def count(
        self,
        *,
        stages: set[OrderStage] | None = None,
        risks: set[DeliveryRisk] | None = None,
        customer: str | None = None,
        confirmed_before: Any = None,
    ) -> int:
        """How many orders match (the bucket sizes; with a customer or a date, their orders)."""
        if customer is None and confirmed_before is None:
            return sum(
                len(bucket[SALES_ORDER])
                for (stage, risk), bucket in self._buckets.items()
                if (not stages or stage in stages) and (not risks or risk in risks)
            )
        return sum(1 for _ in self._matching(stages, risks, customer, confirmed_before, SALES_ORDER, None))


def _discard(index: dict[str, set[str]], key: str, sales_order: str) -> None:
    """Take ``sales_order`` out of ``index[key]``, and the key out once its set is empty."""
    on = index.get(key)
    if on is not None:
        on.discard(sales_order)
        if not on:
            del index[key]

"""Per-request DataLoaders, one per source batch function, over the shared record cache.

Each loader gathers the keys asked for in one tick of the event loop, serves what the
shared cache holds, and fetches the rest from its source in one call. Within a request
the DataLoader also memoises, so a record is fetched at most once per request.

Faults: when a source fails, a loader serves the last good value of each key it could
not fetch (stale-if-error, if the source's policy allows), and rejects the other keys with
the ``SourceError``, which the GraphQL layer reports on each affected field. Either way it
records how it served each key (``Served``: source, fetch time, stale), so resolvers can
say how current their section is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from typing import Any, Protocol

from aiodataloader import DataLoader

from sources import Sources, tracing
from sources.client import SourceError
from sources.memory import gc_paused
from sources.namespaces import (
    COMPONENTS_BY_PRODUCTION_ORDER,
    CUSTOMER,
    DELIVERIES_BY_SALES_ORDER,
    LISTING_KEY,
    LOTS_BY_PRODUCTION_ORDER,
    ORDERS_OF_CUSTOMER,
    PRODUCTION_ORDERS_BY_SALES_ORDER,
    SALES_ORDER,
    SHIPMENTS_BY_DELIVERY,
    SOURCE_OF_NAMESPACE,
    WORK_CENTER,
)


class Loader(DataLoader):
    """An ``aiodataloader.DataLoader`` that keeps its futures in a map of its own, so it can
    say which keys this request has already asked for, and load many keys in one call."""

    def __init__(self, batch_load_fn: Callable[[list[Any]], Any]) -> None:
        self._futures: dict[Any, Any] = {}
        super().__init__(batch_load_fn, cache_map=self._futures)

    @staticmethod
    def get_cache_key(key: Any) -> Any:
        """A key is its own cache key (``has`` and ``load_all`` read the map by key)."""
        return key

    def has(self, key: Any) -> bool:
        """True when this request already asked for ``key`` (answered or under way)."""
        return key in self._futures

    async def load_all(self, keys: list[Any]) -> dict[Any, Any]:
        """Every key through the batch function in one call, without a future per key (a
        page asks for hundreds); the answers are primed, so any later ``load`` in the
        request gets them. Keys already asked for come from ``load``. Raises the first
        per-key error (a source fault)."""
        futures = self._futures
        unique = [k for k in dict.fromkeys(keys) if k not in futures]
        out: dict[Any, Any] = {}
        if unique:
            values = await self.batch_load_fn(unique)
            new_future = self.loop.create_future
            with gc_paused():  # a future per key, thousands at once (sources.memory)
                for key, value in zip(unique, values, strict=True):
                    # ``prime`` inline (a page primes hundreds of keys): a key some ``load``
                    # asked for meanwhile keeps its future; an error is primed too (the
                    # fields' own paths report it, no new call).
                    primed = futures.get(key)
                    if primed is None:
                        primed = futures[key] = new_future()
                        if isinstance(value, Exception):
                            primed.set_exception(value)
                        else:
                            primed.set_result(value)
                    if isinstance(value, Exception) and primed.done():
                        # Marked as seen: a later load still raises it, but a fault no field asks
                        # about is not logged as "Future exception was never retrieved" per key.
                        primed.exception()
                    out[key] = value
            for value in values:
                if isinstance(value, Exception):
                    raise value
        for key in dict.fromkeys(keys):
            if key not in out:  # already loaded in this request
                out[key] = await self.load(key)
        return out


class Cache(Protocol):
    """What loaders need of the shared record cache (``gateway.cache.RecordCache``)."""

    def ticket(self) -> int: ...
    def get_entries(self, keys: Sequence[Hashable]) -> tuple[dict[Hashable, Any], list[Hashable]]: ...
    def put(self, key: Hashable, value: Any, ticket: int, fetched_at: dt.datetime | None = None) -> bool: ...
    def put_many(self, items: Sequence[tuple[Hashable, Any]], ticket: int, fetched_at: dt.datetime) -> int: ...
    def last_good(self, key: Hashable) -> Any: ...
    def overtaken(self, keys: Iterable[Hashable], ticket: int) -> bool: ...


Fetch = Callable[[list[str]], Awaitable[dict[str, Any]]]


@dataclasses.dataclass(frozen=True, slots=True)
class Served:
    """How one (namespace, key) was served in this request."""

    source: str  # the system that answered
    fetched_at: dt.datetime  # when it answered (for a cached value: when it was fetched)
    stale: bool = False  # the last good value, served because the source failed


# Per-request record of how each (namespace, key) was served.
ServedLog = dict[tuple[str, str], Served]


def cached_loader(
    cache: Cache,
    namespace: str,
    fetch: Fetch,
    default: Callable[[], Any],
    *,
    clock: Callable[[], dt.datetime] | None = None,
    served: ServedLog | None = None,
    stale_if_error: Callable[[], bool] = lambda: False,
) -> Loader:
    """A DataLoader whose batch function reads through the shared cache.

    ``clock`` (wall time, not the domain clock) stamps fetched values; ``served`` (if
    given) learns how each key was served;
    ``stale_if_error`` says whether a failed fetch may fall back on last good values.
    """
    source = SOURCE_OF_NAMESPACE.get(namespace, namespace.split(".", 1)[0])
    log: ServedLog = served if served is not None else {}

    async def batch(keys: list[str]) -> list[Any]:
        if not tracing.enabled():
            return await read(keys)
        with tracing.span(f"source.load {namespace}", {"ordergraph.source.system": source, "ordergraph.load.keys": len(keys)}):
            return await read(keys)

    async def read(keys: list[str]) -> list[Any]:
        cache_keys = [(namespace, k) for k in keys]
        entries, missing = cache.get_entries(cache_keys)
        tracing.set_attributes(**{"cache.hits": len(entries), "cache.misses": len(missing), "cache.hit": not missing})
        out: dict[tuple[str, str], Any] = {}
        # The per-key loops below allocate a few objects per key for thousands of keys: the
        # cyclic collector waits meanwhile (synchronous bulk work, sources.memory; the
        # first what-if at 100,000 orders writes 44,000 keys).
        with gc_paused():
            for ck, entry in entries.items():
                out[ck] = entry.value
                log[ck] = Served(source, entry.fetched_at)
        if missing:
            ticket = cache.ticket()
            fetched_at = clock() if clock is not None else dt.datetime.now(dt.UTC)
            try:
                fetched = await fetch([k for _, k in missing])
            except SourceError as exc:
                fallback = stale_if_error()
                for ck in missing:
                    last = cache.last_good(ck) if fallback else None
                    if last is None:
                        out[ck] = exc  # rejects this key only; memoised for the request
                    else:
                        out[ck] = last.value
                        log[ck] = Served(source, last.fetched_at, stale=True)
            else:
                with gc_paused():
                    served_now = Served(source, fetched_at)
                    answered = []
                    for ck in missing:
                        value = fetched.get(ck[1])
                        if value is None:
                            value = default()
                        out[ck] = value
                        log[ck] = served_now
                        answered.append((ck, value))
                    cache.put_many(answered, ticket, fetched_at)
        return [out[ck] for ck in cache_keys]

    return Loader(batch)


def owned_orders_loader(
    cache: Cache,
    erp: Any,
    *,
    clock: Callable[[], dt.datetime],
    served: ServedLog,
    stale_if_error: Callable[[], bool],
) -> Loader:
    """A DataLoader of each customer's sales order numbers (a frozenset), through the cache.

    A new sales order (the listing key invalidated) may belong to any customer, so a
    cached answer is good only while the listing key was not invalidated since its read
    began: each entry keeps its read's ticket. Answers depend on the listing key (the
    response cache drops them with it)."""

    async def batch(customers: list[str]) -> list[Any]:
        keys = [(ORDERS_OF_CUSTOMER, c) for c in customers]
        entries, missing = cache.get_entries(keys)
        out: dict[tuple[str, str], Any] = {}
        served[LISTING_KEY] = Served("erp", clock())
        for key, entry in entries.items():
            ticket, numbers = entry.value
            if cache.overtaken([LISTING_KEY], ticket):
                missing.append(key)
                continue
            out[key] = numbers
            served[key] = Served("erp", entry.fetched_at)
        if missing:
            ticket = cache.ticket()
            fetched_at = clock()
            answers = await asyncio.gather(*(erp.sales_orders_of_customer(k[1]) for k in missing), return_exceptions=True)
            for key, answer in zip(missing, answers, strict=True):
                if isinstance(answer, SourceError):
                    last = cache.last_good(key) if stale_if_error() else None
                    if last is None:
                        out[key] = answer
                    else:
                        out[key] = last.value[1]
                        served[key] = Served("erp", last.fetched_at, stale=True)
                    continue
                if isinstance(answer, BaseException):
                    raise answer
                out[key] = answer
                served[key] = Served("erp", fetched_at)
                cache.put(key, (ticket, answer), ticket, fetched_at)
        return [out[k] for k in keys]

    return Loader(batch)


def remember_listing(cache: Cache, records: Sequence[Any], ticket: int) -> None:
    """Keep the sales orders a listing answered (read under ``ticket``) in the shared cache:
    the next look-up of one of them, and the event path's customer of an order, then need
    no call. The ticket fences a listing that raced an invalidation, as for any read."""
    cache.put_many([((SALES_ORDER, rec.sales_order), rec) for rec in records], ticket, dt.datetime.now(dt.UTC))


def _none() -> None:
    return None


class Loaders:
    """The DataLoaders of one request (or one subscription resolution)."""

    def __init__(self, sources: Sources, cache: Cache) -> None:
        # How each key was served in this request: the resolvers' freshness marks.
        self.served: ServedLog = {}

        def loader(namespace: str, fetch: Fetch, default: Callable[[], Any]) -> Loader:
            client = sources.client(SOURCE_OF_NAMESPACE[namespace])
            return cached_loader(
                cache,
                namespace,
                fetch,
                default,
                clock=client.resilience.clock,  # the gateway's clock, as source health uses
                served=self.served,
                stale_if_error=lambda: client.policy.stale_if_error,
            )

        self.sales_order = loader(SALES_ORDER, sources.erp.sales_orders, _none)
        erp = sources.client("erp")
        self.orders_of_customer = owned_orders_loader(
            cache,
            sources.erp,
            clock=erp.resilience.clock,
            served=self.served,
            stale_if_error=lambda: erp.policy.stale_if_error,
        )
        self.customer = loader(CUSTOMER, sources.erp.customers, _none)
        self.production_orders = loader(
            PRODUCTION_ORDERS_BY_SALES_ORDER, sources.mes.production_orders_for_sales_orders, list
        )
        self.work_center = loader(WORK_CENTER, sources.mes.work_centers, _none)
        self.components = loader(COMPONENTS_BY_PRODUCTION_ORDER, sources.wms.components_for_production_orders, list)
        self.deliveries = loader(DELIVERIES_BY_SALES_ORDER, sources.wms.deliveries_for_sales_orders, list)
        self.inspection_lots = loader(LOTS_BY_PRODUCTION_ORDER, sources.qms.inspection_lots_for_production_orders, list)
        self.shipments = loader(SHIPMENTS_BY_DELIVERY, sources.tms.shipments_for_deliveries, list)
        self._own = [v for v in vars(self).values() if isinstance(v, Loader)]  # before any scoping

    def release(self) -> None:
        """Drop what this request loaded (each loader's futures, the served log): the
        request is answered. The shared cache keeps its records."""
        for loader in self._own:
            loader.clear_all()
        self.served.clear()  # the loaders log into this dict

"""Per-request DataLoaders, one per source batch function, over the shared record cache.

Each loader gathers the keys asked for in one tick of the event loop, serves what the
shared cache holds, and fetches the rest from its source in one call. Within a request
the DataLoader also memoises, so a record is fetched at most once per request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Protocol

from aiodataloader import DataLoader

from sources import Sources


class Cache(Protocol):
    """What loaders need of the shared record cache (``gateway.cache.RecordCache``)."""

    def ticket(self) -> int: ...
    def get_many(self, keys: Sequence[Hashable]) -> tuple[dict[Hashable, Any], list[Hashable]]: ...
    def put(self, key: Hashable, value: Any, ticket: int) -> bool: ...


Fetch = Callable[[list[str]], Awaitable[dict[str, Any]]]

# Cache namespaces; the event path invalidates (namespace, key) pairs.
SALES_ORDER = "erp.sales_order"
CUSTOMER = "erp.customer"
PRODUCTION_ORDERS_BY_SALES_ORDER = "mes.production_orders_by_sales_order"
WORK_CENTER = "mes.work_center"
COMPONENTS_BY_PRODUCTION_ORDER = "wms.components_by_production_order"
DELIVERIES_BY_SALES_ORDER = "wms.deliveries_by_sales_order"
LOTS_BY_PRODUCTION_ORDER = "qms.lots_by_production_order"
SHIPMENTS_BY_DELIVERY = "tms.shipments_by_delivery"

SOURCE_OF_NAMESPACE = {
    SALES_ORDER: "erp",
    CUSTOMER: "erp",
    PRODUCTION_ORDERS_BY_SALES_ORDER: "mes",
    WORK_CENTER: "mes",
    COMPONENTS_BY_PRODUCTION_ORDER: "wms",
    DELIVERIES_BY_SALES_ORDER: "wms",
    LOTS_BY_PRODUCTION_ORDER: "qms",
    SHIPMENTS_BY_DELIVERY: "tms",
}


def cached_loader(cache: Cache, namespace: str, fetch: Fetch, default: Callable[[], Any]) -> DataLoader:
    """A DataLoader whose batch function reads through the shared cache."""

    async def batch(keys: list[str]) -> list[Any]:
        cache_keys = [(namespace, k) for k in keys]
        found, missing = cache.get_many(cache_keys)
        if missing:
            ticket = cache.ticket()
            fetched = await fetch([k for _, k in missing])
            for ck in missing:
                value = fetched.get(ck[1])
                if value is None:
                    value = default()
                found[ck] = value
                cache.put(ck, value, ticket)
        return [found[ck] for ck in cache_keys]

    return DataLoader(batch)


def _none() -> None:
    return None


class Loaders:
    """The DataLoaders of one request (or one subscription resolution)."""

    def __init__(self, sources: Sources, cache: Cache) -> None:
        self.sales_order = cached_loader(cache, SALES_ORDER, sources.erp.sales_orders, _none)
        self.customer = cached_loader(cache, CUSTOMER, sources.erp.customers, _none)
        self.production_orders = cached_loader(
            cache, PRODUCTION_ORDERS_BY_SALES_ORDER, sources.mes.production_orders_for_sales_orders, list
        )
        self.work_center = cached_loader(cache, WORK_CENTER, sources.mes.work_centers, _none)
        self.components = cached_loader(
            cache, COMPONENTS_BY_PRODUCTION_ORDER, sources.wms.components_for_production_orders, list
        )
        self.deliveries = cached_loader(cache, DELIVERIES_BY_SALES_ORDER, sources.wms.deliveries_for_sales_orders, list)
        self.inspection_lots = cached_loader(
            cache, LOTS_BY_PRODUCTION_ORDER, sources.qms.inspection_lots_for_production_orders, list
        )
        self.shipments = cached_loader(cache, SHIPMENTS_BY_DELIVERY, sources.tms.shipments_for_deliveries, list)

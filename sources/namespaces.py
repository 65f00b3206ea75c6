"""Cache namespaces: the kinds of source record the shared record cache keys by.

A cache key is ``(namespace, key)``, e.g. ``("erp.sales_order", "4711")``. The loaders
(``resolvers/loaders.py``) fill the cache under these names and the event path
(``gateway/mapping.py``, ``gateway/ingest.py``) invalidates by them, so they live here,
where both rooms may import them; this module imports nothing.
"""

from __future__ import annotations

SALES_ORDER = "erp.sales_order"
CUSTOMER = "erp.customer"
PRODUCTION_ORDERS_BY_SALES_ORDER = "mes.production_orders_by_sales_order"
WORK_CENTER = "mes.work_center"
COMPONENTS_BY_PRODUCTION_ORDER = "wms.components_by_production_order"
DELIVERIES_BY_SALES_ORDER = "wms.deliveries_by_sales_order"
LOTS_BY_PRODUCTION_ORDER = "qms.lots_by_production_order"
SHIPMENTS_BY_DELIVERY = "tms.shipments_by_delivery"
# Not a record: the membership of order listings (which sales orders exist). Answers built
# from a listing depend on it; a new sales order invalidates it.
LISTING_KEY = ("erp.listing", "sales_orders")
# The sales order numbers of one customer, by customer: what a customer viewer may read,
# decided before any per-order read. Good while LISTING_KEY stands (owned_orders_loader).
ORDERS_OF_CUSTOMER = "erp.orders_of_customer"

# The source system that answers for each namespace.
SOURCE_OF_NAMESPACE = {
    SALES_ORDER: "erp",
    ORDERS_OF_CUSTOMER: "erp",
    CUSTOMER: "erp",
    PRODUCTION_ORDERS_BY_SALES_ORDER: "mes",
    WORK_CENTER: "mes",
    COMPONENTS_BY_PRODUCTION_ORDER: "wms",
    DELIVERIES_BY_SALES_ORDER: "wms",
    LOTS_BY_PRODUCTION_ORDER: "qms",
    SHIPMENTS_BY_DELIVERY: "tms",
}

"""SAP S/4HANA OData v2, read with asyncio.

``client.ODataClient`` speaks the dialect (paging, key batches cut to the URL limit,
``sap-client``, basic or OAuth auth, SAP's errors as ``SourceError``); ``s4`` maps SAP's
public API entities to ``sources.records``; ``values`` and ``query`` hold the Edm values
and ``$filter`` building blocks both use.
"""

from .auth import Auth, BasicAuth, ClientCredentials
from .client import DEFAULT_MAX_URL_LENGTH, ODataClient, ODataPage, ODataResult
from .errors import ODataError, SapMessage
from .query import Filter, Query, all_of, any_of, eq, field_filter
from .s4 import (
    PROFILES,
    EntityProfile,
    customer_from_s4,
    inspection_lot_from_s4,
    outbound_delivery_from_s4,
    production_order_from_s4,
    sales_order_from_s4,
)

__all__ = [
    "DEFAULT_MAX_URL_LENGTH",
    "PROFILES",
    "Auth",
    "BasicAuth",
    "ClientCredentials",
    "EntityProfile",
    "Filter",
    "ODataClient",
    "ODataError",
    "ODataPage",
    "ODataResult",
    "Query",
    "SapMessage",
    "all_of",
    "any_of",
    "customer_from_s4",
    "eq",
    "field_filter",
    "inspection_lot_from_s4",
    "outbound_delivery_from_s4",
    "production_order_from_s4",
    "sales_order_from_s4",
]

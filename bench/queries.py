"""The GraphQL documents of the benchmark, sent unchanged to ordergraph and to the peer.

Only fields both serve: the ERP order fields, the customer, the four sections with their
records and statuses, and ``stage``. The derived prediction fields (``deliveryRisk``,
``predictedDeliveryDate``, ``milestones``) are ordergraph's own and left out, so both
gateways do comparable work.
"""

from __future__ import annotations

import orjson

ERP_FIELDS = """
  id customerId orderDate requestedDeliveryDate confirmedDeliveryDate purchaseOrderByCustomer
  netValue { amount currency }
  erpStatus { overallProcessStatus overallDeliveryStatus creditBlocked deliveryBlockReason }
  items { item material quantity unit confirmedDeliveryDate }
"""

# One order's full view: three resolution levels (ERP → MES+WMS(+ERP customer) →
# MES+WMS+QMS+TMS).
FULL_FIELDS = (
    ERP_FIELDS
    + """
  customer { id name commercialPriority }
  stage
  production { status orders { id material status totalQuantity confirmedYieldQuantity scheduledEnd workCenter { id name state } } }
  materials { status components { productionOrder material requiredQuantity availableQuantity shortageQuantity expectedReceiptDate } }
  quality { status inspectionLots { id batch hasUsageDecision usageDecision { valuation } } }
  logistics { status eta deliveries { id pickingStatus packingStatus goodsMovementStatus } shipments { trackingNumber carrier status estimatedDeliveryAt } }
"""
)

# A dashboard row: the order, its customer and every section's status (also three levels).
DASHBOARD_FIELDS = """
  id confirmedDeliveryDate netValue { amount currency }
  customer { name commercialPriority }
  stage
  production { status }
  materials { status }
  quality { status }
  logistics { status eta }
"""

WHERE_IS_MY_ORDER = "query WhereIsMyOrder($id: ID!) { order(id: $id) {" + FULL_FIELDS + "} }"
DASHBOARD = (
    "query Dashboard($first: Int!, $after: String) { orders(first: $first, after: $after) {"
    " pageInfo { hasNextPage endCursor } nodes {" + DASHBOARD_FIELDS + "} } }"
)
CUSTOMER_ORDERS = (
    "query CustomerOrders($id: ID!) { customer(id: $id) { id name commercialPriority"
    " orders(first: 50) { pageInfo { hasNextPage endCursor } nodes {" + DASHBOARD_FIELDS + "} } } }"
)
ERP_LIST = "query ErpList($first: Int!) { orders(first: $first) { nodes {" + ERP_FIELDS + "} } }"
FULL_LIST = "query FullList($first: Int!) { orders(first: $first) { nodes {" + FULL_FIELDS + "} } }"
PAGE_CURSORS = "query Pages($first: Int!, $after: String) { orders(first: $first, after: $after) { pageInfo { hasNextPage endCursor } nodes { id } } }"
# The freshness probe compares these fields with the sources' current state.
PROBE = (
    "query Probe($id: ID!) { order(id: $id) { id"
    " production { orders { id status } }"
    " quality { inspectionLots { id hasUsageDecision } }"
    " logistics { deliveries { id pickingStatus packingStatus goodsMovementStatus } shipments { trackingNumber status } } } }"
)


def body(query: str, variables: dict | None = None) -> bytes:
    """A GraphQL-over-HTTP POST body."""
    return orjson.dumps({"query": query, "variables": variables or {}})

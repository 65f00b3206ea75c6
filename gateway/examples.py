"""Example operations: GraphiQL's ready tabs, the README tour and the persisted safelist."""

from __future__ import annotations

WHERE_IS_MY_ORDER = """# Where is my order? One order across all five systems.
query WhereIsMyOrder($id: ID! = "10000001") {
  order(id: $id) {
    id
    customer { id name }
    confirmedDeliveryDate
    predictedDeliveryDate
    deliveryRisk
    stage
    milestones { kind status planned expected actual source }
    production { status orders { id status workCenter { id name state } totalQuantity confirmedYieldQuantity } }
    materials { status shortages { material shortageQuantity expectedReceiptDate } }
    quality { status inspectionLots { id batch usageDecision { valuation decidedAt } } }
    logistics {
      status
      eta
      shipments { trackingNumber carrier status estimatedDeliveryAt events { code tag occurredAt location } }
    }
  }
}
"""

DASHBOARD = """# A dashboard page: 50 orders with their stage and risk.
query Dashboard($after: String) {
  orders(first: 50, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    nodes {
      id
      customer { name commercialPriority }
      netValue { amount currency }
      confirmedDeliveryDate
      predictedDeliveryDate
      deliveryRisk
      stage
    }
  }
}
"""

LATE_ORDERS = """# Orders predicted to miss their promise.
query LateOrders {
  orders(first: 20, filter: { deliveryRisk: [LATE] }) {
    nodes { id customer { name commercialPriority } confirmedDeliveryDate predictedDeliveryDate stage }
  }
}
"""

CUSTOMER_ORDERS = """# One customer's orders.
query CustomerOrders($customer: ID! = "17100001") {
  customer(id: $customer) {
    name
    commercialPriority
    orders(first: 20) { totalCount nodes { id stage deliveryRisk confirmedDeliveryDate } }
  }
}
"""

EXAMPLES: dict[str, tuple[str, str]] = {
    "WhereIsMyOrder": (WHERE_IS_MY_ORDER, '{"id": "10000001"}'),  # defaults in the document too
    "Dashboard": (DASHBOARD, "{}"),
    "LateOrders": (LATE_ORDERS, "{}"),
    "CustomerOrders": (CUSTOMER_ORDERS, '{"customer": "17100001"}'),
}

"""Example operations: GraphiQL's ready tabs, the README tour and the persisted safelist."""

from __future__ import annotations

WHERE_IS_MY_ORDER = """# Where is my order? One order across all five systems.
# Token: service, planner or integrator (production orders, work centres and batches are
# internal; a customer token gets FORBIDDEN on those fields: use the MyOrders tab).
query WhereIsMyOrder($id: ID! = "10000001") {
  order(id: $id) {
    id
    customer { id name }
    confirmedDeliveryDate
    predictedDeliveryDate
    deliveryRisk
    stage
    items { item material quantity unit shippedQuantity openQuantity rejectionReason }
    milestones { kind status planned expected actual source }
    production { status orders { id status workCenter { id name state } totalQuantity confirmedYieldQuantity } }
    materials { status shortages { material shortageQuantity expectedReceiptDate } }
    quality { status inspectionLots { id batch usageDecision { valuation decidedAt } } }
    logistics {
      status
      eta
      deliveries { id goodsIssuedAt items { salesOrderItem quantity unit } }
      shipments { trackingNumber carrier status estimatedDeliveryAt events { code tag occurredAt location } }
    }
  }
}
"""

DASHBOARD = """# A dashboard page: 50 orders with their stage and risk.
# Token: service, planner or integrator (net value and commercial priority are internal).
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
# Token: service, planner or integrator (commercial priority is internal).
query LateOrders {
  orders(first: 20, filter: { deliveryRisk: [LATE] }) {
    nodes { id customer { name commercialPriority } confirmedDeliveryDate predictedDeliveryDate stage }
  }
}
"""

CUSTOMER_ORDERS = """# One customer's orders.
# Token: service, planner or integrator (commercial priority is internal).
query CustomerOrders($customer: ID! = "17100001") {
  customer(id: $customer) {
    name
    commercialPriority
    orders(first: 20) { totalCount nodes { id stage deliveryRisk confirmedDeliveryDate } }
  }
}
"""

EXCEPTIONS_BOARD = """# The exceptions board: what is broken, which orders it hits, what is at risk.
# Token: service, planner or integrator (root causes and values are internal).
# Most severe first, then by value at risk. Subscribe to exceptionsChanged with
# `after: transitionCursor` to keep the board live without missing a change.
query ExceptionsBoard($filter: ExceptionFilter = {minSeverity: HIGH}, $after: String) {
  exceptions(first: 20, after: $after, filter: $filter) {
    totalCount
    totalValueAtRisk { amount currency }
    transitionCursor
    pageInfo { hasNextPage endCursor }
    nodes {
      id
      kind
      severity
      description
      customerDescription
      rootCause { system entity key label }
      detectedAt
      daysLate
      valueAtRisk { amount currency }
      affectedOrderCount
      affected {
        order { id customer { name } }
        commercialPriority
        severity
        confirmedDeliveryDate
        predictedDeliveryDate
        daysLate
        valueAtRisk { amount }
      }
    }
  }
}
"""

IMPACT_WHAT_IF = """# What if work centre WC-20 is down for 8 hours? Nothing changes in the plant.
# Token: planner or integrator (impact is a planning tool).
# Other scenarios (exactly one per question):
#   {batchBlocked: {batch: "B0000123"}}
#   {materialShort: {material: "RM-2010", quantity: 50, until: "2030-01-31"}}
#   {shipmentDelayed: {trackingNumber: "<a tracking number>", hours: 24}}
query ImpactWhatIf($scenario: ImpactScenario! = {workCenterDown: {workCenter: "WC-20", hours: 8}}) {
  impact(scenario: $scenario) {
    scenario
    totals {
      orders
      delayedOrders
      newlyLateOrders
      maxDaysLate
      valueAtRisk { amount currency }
      addedValueAtRisk { amount currency }
      bySeverity { severity orders }
    }
    orders {
      order { id customer { name } }
      commercialPriority
      confirmedDeliveryDate
      currentPredictedDeliveryDate
      predictedDeliveryDate
      delayDays
      daysLate
      severity
      valueAtRisk { amount currency }
    }
  }
}
"""

EXCEPTIONS_LIVE = """# Token: service, planner or integrator (descriptions and values are internal).
# Exceptions as they are raised, updated and cleared: machines break, lots go on
# hold, parts run short, trucks run late. Reconnect with `after` set to the last
# `cursor` you saw to miss nothing.
subscription ExceptionsLive($minSeverity: Severity = MEDIUM, $after: String) {
  exceptionsChanged(minSeverity: $minSeverity, after: $after) {
    cursor
    action
    at
    previousSeverity
    exception {
      id
      kind
      severity
      description
      valueAtRisk { amount currency }
      affectedOrders { id }
    }
  }
}
"""

MY_ORDERS = """# The customer portal: my orders, customer-safe fields only.
# Token: any; a customer token sees its own orders only (the demo prints one).
query MyOrders($after: String) {
  orders(first: 20, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    nodes {
      id
      purchaseOrderByCustomer
      confirmedDeliveryDate
      predictedDeliveryDate
      deliveryRisk
      stage
      items { material quantity unit confirmedDeliveryDate }
      milestones { kind status expected actual }
      logistics { eta shipments { trackingNumber carrier status } }
      exceptions { kind severity description }
    }
  }
}
"""

WORK_AN_EXCEPTION = """# Token: service, planner or integrator (workflow is internal).
# Work an exception: acknowledge it, then see its workflow and trail.
# Send a new clientMutationId for each new action; the same one again replays the first
# result (replayed: true). Also: assignException, commentOnException, snoozeException,
# resolveException, reopenException, escalateOrder, withdrawEscalation.
mutation WorkAnException($id: ID! = "MACHINE_DOWN:mes:WC-20", $clientMutationId: String! = "graphiql-1") {
  acknowledgeException(exceptionId: $id, clientMutationId: $clientMutationId, comment: "on it") {
    replayed
    entry { seq action actor at summary }
    workflow { status acknowledgedBy assignee { kind name } snoozedUntil trail { seq action actor at summary } }
    exception { id severity description }
  }
}
"""

ORDER_CHANGES = """# Token: any; a customer token gets its own orders' changes only.
# Every change to the orders, live: the plant moves them, the gateway pushes each one.
# Over WebSocket (graphql-transport-ws) the token goes in connection_init:
#   {"type": "connection_init", "payload": {"Authorization": "Bearer <token>"}}
# (GraphiQL does that with the Token field). Resume with `after` set to the last cursor.
subscription OrderChanges($after: String) {
  orderChanges(after: $after) {
    cursor
    eventType
    occurredAt
    sources
    order { id stage deliveryRisk confirmedDeliveryDate predictedDeliveryDate }
  }
}
"""

EXAMPLES: dict[str, tuple[str, str]] = {
    "WhereIsMyOrder": (WHERE_IS_MY_ORDER, '{"id": "10000001"}'),  # defaults in the document too
    "Dashboard": (DASHBOARD, "{}"),
    "LateOrders": (LATE_ORDERS, "{}"),
    "CustomerOrders": (CUSTOMER_ORDERS, '{"customer": "17100001"}'),
    "ExceptionsBoard": (EXCEPTIONS_BOARD, '{"filter": {"minSeverity": "HIGH"}}'),
    "ImpactWhatIf": (IMPACT_WHAT_IF, '{"scenario": {"workCenterDown": {"workCenter": "WC-20", "hours": 8}}}'),
    "ExceptionsLive": (EXCEPTIONS_LIVE, '{"minSeverity": "MEDIUM"}'),
    "MyOrders": (MY_ORDERS, "{}"),
    "WorkAnException": (WORK_AN_EXCEPTION, '{"id": "MACHINE_DOWN:mes:WC-20", "clientMutationId": "graphiql-1"}'),
    "OrderChanges": (ORDER_CHANGES, "{}"),
}

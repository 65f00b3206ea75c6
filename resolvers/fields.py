"""Field-name lists that others key on, kept beside the schema they name.

The gateway's response cache and the page prefetch look at a document's field names
before (or instead of) executing it; the names are the schema's (camelCase), so they live
in the GraphQL room, and a test checks each one is still a field of the schema. Which
fields a customer may not read is ``resolvers/policy.py``'s (``INTERNAL_FIELDS``).
This module imports nothing.
"""

from __future__ import annotations

# Fields whose answer can change without an event naming a record the response read: the
# exception tracker's state, the journal, what-ifs, source health, and how current a
# section is (its ``stale`` mark turns with the clock and with a source's silence); the
# workflow on exceptions (people act on it, no source event says so), what-ifs side by
# side, and the plant's clock. A response selecting any of them is not cached.
UNCACHEABLE_FIELDS = frozenset(
    {"exceptions", "exception", "impact", "sources", "history", "freshness", "workflow", "workflowHistory", "escalation"}
    | {"impactComparison", "plantTime"}
)

# Order fields that need every source's records: when a page selects any of them, the
# page's views are assembled up front, level by level, for all its orders at once (the
# sections alone stay lazy: each calls only its own sources).
CROSS_SOURCE_FIELDS = frozenset({"stage", "milestones", "predictedDeliveryDate", "deliveryRisk", "exceptions"})
# Item fields counted across MES and WMS (the rest of an item is ERP's own).
ITEM_CROSS_SOURCE_FIELDS = frozenset(
    {"producedQuantity", "shippedQuantity", "deliveredQuantity", "openQuantity", "openValue"}
)

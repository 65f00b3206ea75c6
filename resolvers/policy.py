"""Who may see what: the one policy layer every query and subscription goes through.

Three mechanisms, all driven by the declarations at the top of this module, so a new root
field or an internal field is covered by adding one line here (nothing is scattered over
the resolvers):

- **Operation level** (a graphql-core validation rule, ``validation_rule``): every root
  field must be declared in ``ROOT_ACCESS`` with the roles that may call it; an undeclared
  root field is refused for customers (deny by default). Internal-only fields
  (``INTERNAL_FIELDS`` and ``INTERNAL_PATTERNS``) are refused for customers with a clear
  ``FORBIDDEN`` error. Introspection is refused unless the viewer's role allows it.
- **Row level, data** (``scope_loaders``, ``customer_filter``): a customer viewer's
  ``sales_order`` and ``customer`` loaders decide ownership from the key, before any read
  of the record (the customer's own order numbers come from one cached listing per
  customer), and return ``None`` for a key it does not own, exactly as for a key that names
  nothing; list filters are pinned to the viewer's customer. Another customer's order
  therefore takes the same path, the same (no) reads and gives the same answer as a
  missing one: no timing tells them apart.
- **Row level, last line** (``middleware``): while executing for a customer, every value of
  an owned type (``OWNERS``) that belongs to someone else is dropped (``None`` / left out of
  lists), and customer-safe fields replace internal ones (``CUSTOMER_SUBSTITUTES``). If the
  data layer is right this never fires; if a new resolver forgets the scope, it still
  cannot serialise another customer's record (it logs an error when it does fire).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import fnmatch
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from enum import StrEnum
from typing import Any

from graphql import (
    FieldNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLUnionType,
    ObjectFieldNode,
    ValidationRule,
    get_named_type,
)

log = logging.getLogger("ordergraph.policy")


class Role(StrEnum):
    """The roles a token can carry (claim ``role``)."""

    CUSTOMER = "customer"  # own orders only, customer-safe fields
    SERVICE = "service"  # customer service: read all
    PLANNER = "planner"  # read all, plus impact analysis
    INTEGRATOR = "integrator"  # read all, plus introspection and GraphiQL


ALL_ROLES = frozenset(Role)
INTERNAL_ROLES = frozenset({Role.SERVICE, Role.PLANNER, Role.INTEGRATOR})

# --- declarations: the one place to extend ----------------------------------------

# Every root field, with the roles that may select it. Granting CUSTOMER means the field is
# scoped to the viewer's customer (through the scoped loaders / ``customer_filter`` / the
# subscription hub's Scope). A root field missing here is refused for customers.
ROOT_ACCESS: dict[tuple[str, str], frozenset[Role]] = {
    ("Query", "order"): ALL_ROLES,  # scoped sales_order loader
    ("Query", "orders"): ALL_ROLES,  # customer_filter in list_orders
    ("Query", "customer"): ALL_ROLES,  # scoped customer loader
    ("Query", "exceptions"): ALL_ROLES,  # exception_types.visible_to: own orders only
    # ids name the internal root-cause record (MACHINE_DOWN:mes:WC-20): internal lookups
    ("Query", "exception"): INTERNAL_ROLES,
    ("Query", "impact"): frozenset({Role.PLANNER, Role.INTEGRATOR}),  # what-if: planning tool
    ("Query", "impactComparison"): frozenset({Role.PLANNER, Role.INTEGRATOR}),  # what-ifs side by side
    ("Query", "sources"): INTERNAL_ROLES,  # source health: internal operations
    ("Query", "parkedEvents"): INTERNAL_ROLES,  # dead letters: internal operations
    # federation subgraph ([federation] enabled): entities by key through the scoped loaders
    # (resolvers/federation.py); the SDL is schema knowledge, like introspection
    ("Query", "_entities"): ALL_ROLES,
    ("Query", "_service"): frozenset({Role.INTEGRATOR}),
    ("Query", "plantTime"): ALL_ROLES,  # the clock answers are judged at: no one's data
    ("Subscription", "orderUpdated"): ALL_ROLES,  # hub Scope(customer)
    ("Subscription", "orderChanges"): ALL_ROLES,  # hub Scope(customer)
    ("Subscription", "exceptionsChanged"): ALL_ROLES,  # hub Scope(customer)
    # proactive notices (resolvers/notice_types.py): a customer's own only
    ("Query", "notificationEndpoints"): ALL_ROLES,
    ("Query", "notices"): ALL_ROLES,
    ("Mutation", "registerNotificationEndpoint"): ALL_ROLES,
    ("Mutation", "setNotificationPreferences"): ALL_ROLES,
    ("Mutation", "removeNotificationEndpoint"): ALL_ROLES,
    # workflow on exceptions (resolvers/workflow_mutations.py): people acting, internal only
    ("Mutation", "acknowledgeException"): INTERNAL_ROLES,
    ("Mutation", "assignException"): INTERNAL_ROLES,
    ("Mutation", "commentOnException"): INTERNAL_ROLES,
    ("Mutation", "snoozeException"): INTERNAL_ROLES,
    ("Mutation", "resolveException"): INTERNAL_ROLES,
    ("Mutation", "reopenException"): INTERNAL_ROLES,
    ("Mutation", "escalateOrder"): INTERNAL_ROLES,
    ("Mutation", "withdrawEscalation"): INTERNAL_ROLES,
    ("Subscription", "exceptionWorkflowChanged"): INTERNAL_ROLES,
}

# Fields refused for customer viewers: commercial data, internal root causes and the
# source systems' internal record ids. ("Type", "*") refuses a whole type.
INTERNAL_FIELDS: frozenset[tuple[str, str]] = frozenset(
    {
        # commercial: priority, values, margins
        ("Order", "netValue"),
        ("Order", "commercialPriority"),
        ("OrderItem", "netValue"),
        ("OrderItem", "openValue"),
        ("Customer", "commercialPriority"),
        ("ErpStatus", "creditBlocked"),
        ("ErpStatus", "deliveryBlockReason"),
        # shop floor: production order numbers, machines, batches, scrap
        ("ProductionOrder", "id"),
        ("ProductionOrder", "workCenterId"),
        ("ProductionOrder", "workCenter"),
        ("ProductionOrder", "batch"),
        ("ProductionOrder", "confirmedScrapQuantity"),
        ("ProductionOrder", "plannedScrapQuantity"),
        ("WorkCenter", "*"),
        # materials: internal reservations and storage
        ("ComponentAvailability", "productionOrder"),
        ("ComponentAvailability", "storageLocation"),
        # quality: inspection lot numbers, batches, usage decision codes and scores
        ("InspectionLot", "id"),
        ("InspectionLot", "batch"),
        ("InspectionLot", "productionOrder"),
        ("InspectionLot", "origin"),
        ("UsageDecision", "code"),
        ("UsageDecision", "codeGroup"),
        ("UsageDecision", "qualityScore"),
        # logistics: internal plant detail (delivery number and tracking stay visible)
        ("OutboundDelivery", "shippingPoint"),
        ("DeliveryItem", "batch"),
        # journal: the source record a change was about
        ("HistoryEntry", "subject"),
        # exceptions: the root-cause record (its id embeds it), values over all customers
        ("OrderException", "id"),
        ("OrderException", "rootCause"),
        ("RootCause", "*"),
        # planning and operations: never reachable for customers, declared all the same
        ("ImpactAnalysis", "*"),
        ("ImpactTotals", "*"),
        ("OrderImpact", "*"),
        ("SeverityCount", "*"),
        ("SourceStatus", "*"),
        # workflow on exceptions: who handles what, escalations (commercial priority)
        ("OrderException", "workflow"),
        ("Order", "workflowHistory"),
        ("Order", "escalation"),
        ("ExceptionWorkflow", "*"),
        ("WorkflowEntry", "*"),
        ("Escalation", "*"),
        ("WorkflowChange", "*"),
        ("ExceptionWorkflowPayload", "*"),
        ("EscalationPayload", "*"),
    }
)

# Name patterns refused on any type, so a new field named like these is internal by
# default (fnmatch on the GraphQL field name).
INTERNAL_PATTERNS: tuple[str, ...] = (
    "*netValue*",
    "*valueAtRisk*",
    "*ValueAtRisk*",
    "*margin*",
    "*Margin*",
    "commercialPriority",
    "internal*",
    "rootCause*",
)

# For customers, these fields answer with the value of their customer-safe sibling.
# (exception_types.text_for_viewer already picks the text by viewer; this makes it certain.)
CUSTOMER_SUBSTITUTES: dict[tuple[str, str], str] = {
    ("OrderException", "description"): "customerDescription",
    ("AffectedOrder", "description"): "customerDescription",
}


def _order_owner(value: Any) -> str | None:
    record = getattr(value, "record", None)
    return getattr(record, "sold_to_party", None)


def _customer_owner(value: Any) -> str | None:
    record = getattr(value, "record", None)
    return getattr(record, "customer", None)


def _exception_owners(value: Any) -> frozenset[str]:
    affected = getattr(getattr(value, "record", None), "affected", None) or {}
    return frozenset(getattr(d, "customer", None) for d in affected.values())


def _affected_owner(value: Any) -> str | None:
    return getattr(getattr(value, "detection", None), "customer", None)


def _transition_owners(value: Any) -> frozenset[str]:
    return _exception_owners(getattr(value, "exception", None))


# GraphQL types whose values belong to customers: type name -> the owner(s) of a value.
OWNERS: dict[str, Callable[[Any], str | frozenset[str] | None]] = {
    "Order": _order_owner,
    "Customer": _customer_owner,
    "OrderException": _exception_owners,
    "AffectedOrder": _affected_owner,
    "ExceptionTransition": _transition_owners,
    "Notice": lambda value: str(getattr(value, "customer_id", "")),
    "NotificationEndpoint": lambda value: str(getattr(value, "customer_id", "")),
}


# --- the viewer ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Viewer:
    """Who is asking: a role, the customer for customer viewers, the token's subject."""

    role: Role
    customer: str | None = None
    subject: str = "anonymous"
    expires_at: dt.datetime | None = None

    def __post_init__(self) -> None:
        if self.role is Role.CUSTOMER and not self.customer:
            raise ValueError("a customer viewer needs a customer id")

    @property
    def is_customer(self) -> bool:
        return self.role is Role.CUSTOMER

    @property
    def policy_key(self) -> str:
        """What validation depends on (role), for caches of validated documents."""
        return self.role.value

    @classmethod
    def system(cls) -> Viewer:
        """The gateway itself (event processing, internal computations): reads all."""
        return cls(Role.SERVICE, subject="system")

    @classmethod
    def open_demo(cls) -> Viewer:
        """The viewer of an explicit open demo mode (no token): integrator-like."""
        return cls(Role.INTEGRATOR, subject="open-demo")


# --- operation level: the validation rule -----------------------------------------------


def is_internal(type_name: str, field_name: str) -> bool:
    """Whether ``type_name.field_name`` is internal-only (refused for customers)."""
    if (type_name, field_name) in INTERNAL_FIELDS or (type_name, "*") in INTERNAL_FIELDS:
        return True
    return any(fnmatch.fnmatchcase(field_name, p) for p in INTERNAL_PATTERNS)


def root_roles(type_name: str, field_name: str) -> frozenset[Role]:
    """Roles that may select a root field; undeclared root fields are internal-only."""
    return ROOT_ACCESS.get((type_name, field_name), INTERNAL_ROLES)


def _role_names(roles: Iterable[Role]) -> str:
    names = sorted(r.value for r in roles)
    return " or ".join(names)


def forbidden(message: str, node: Any = None, code: str = "FORBIDDEN") -> GraphQLError:
    return GraphQLError(message, node, extensions={"code": code})


# Input fields only internal roles may set (a customer's document naming one is refused at
# validation, a 4xx; set through variables, the resolver refuses it as FORBIDDEN).
INTERNAL_INPUT_FIELDS: frozenset[tuple[str, str]] = frozenset(
    {("ExceptionFilter", "status"), ("ExceptionFilter", "mine"), ("ExceptionFilter", "unassigned")}  # workflow
)


def validation_rule(viewer: Viewer, *, introspection: bool) -> type[ValidationRule]:
    """A graphql-core validation rule enforcing the declarations above for ``viewer``."""

    class PolicyRule(ValidationRule):
        def enter_object_field(self, node: ObjectFieldNode, *_args: Any) -> None:
            if not viewer.is_customer:
                return
            parent = self.context.get_parent_input_type()
            if parent is None:
                return
            key = (get_named_type(parent).name, node.name.value)
            if key in INTERNAL_INPUT_FIELDS:
                self.context.report_error(
                    forbidden(f"`{key[0]}.{key[1]}` is internal and not available to customers.", node)
                )

        def enter_field(self, node: FieldNode, *_args: Any) -> None:
            ctx = self.context
            parent = ctx.get_parent_type()
            if parent is None:
                return
            name = node.name.value
            if name.startswith("__"):
                if name in ("__schema", "__type") and not introspection:
                    ctx.report_error(
                        forbidden(
                            f"Introspection is not available to the {viewer.role.value} role.",
                            node,
                            "INTROSPECTION_DISABLED",
                        )
                    )
                return
            schema = ctx.schema
            if parent in (schema.query_type, schema.subscription_type, schema.mutation_type):
                roles = root_roles(parent.name, name)
                if viewer.role not in roles:
                    ctx.report_error(
                        forbidden(f"`{name}` needs the {_role_names(roles)} role; you are {viewer.role.value}.", node)
                    )
                    return
            if not viewer.is_customer:
                return
            types = (
                schema.get_possible_types(parent)
                if isinstance(parent, GraphQLInterfaceType | GraphQLUnionType)
                else [parent]
            )
            for t in [parent, *types]:
                if is_internal(t.name, name):
                    ctx.report_error(forbidden(f"Field `{t.name}.{name}` is internal and not available to customers.", node))
                    return

    return PolicyRule


# --- row level: data scoping --------------------------------------------------------


class NoMatch:
    """A customer filter that matches nothing (another customer's, or an unknown one)."""

    def __repr__(self) -> str:
        return "NO_MATCH"


NO_MATCH = NoMatch()


def customer_filter(viewer: Viewer, requested: str | None) -> str | None | NoMatch:
    """The customer a list may show: pinned to a customer viewer's own.

    For a customer viewer, asking for another customer gives ``NO_MATCH`` whether that
    customer exists or not (the caller answers "empty" without touching a source).
    """
    if not viewer.is_customer:
        return requested
    if requested is None or str(requested) == viewer.customer:
        return viewer.customer
    return NO_MATCH


def can_see(viewer: Viewer, type_name: str, value: Any) -> bool:
    """Whether ``viewer`` may see ``value`` of GraphQL type ``type_name``."""
    if not viewer.is_customer or value is None:
        return True
    owner_of = OWNERS.get(type_name)
    if owner_of is None:
        return True
    owner = owner_of(value)
    if isinstance(owner, (set, frozenset, list, tuple)):
        return viewer.customer in owner
    return owner == viewer.customer


def can_see_order(viewer: Viewer, record: Any) -> bool:
    """Whether ``viewer`` may see a sales order record (a ``SalesOrder``)."""
    return not viewer.is_customer or getattr(record, "sold_to_party", None) == viewer.customer


class ScopedLoader:
    """A DataLoader seen through a viewer: records it may not see come back as ``None``.

    ``owns(key)`` decides from the key alone, before any read of the record: a key the
    viewer does not own is answered ``None`` with no source or cache read of it, exactly
    like a key that names nothing (both take that path, so their timings do not differ).
    ``visible(record)`` checks the record read for an owned key once more.
    """

    def __init__(self, inner: Any, visible: Callable[[Any], bool], owns: Callable[[Any], Awaitable[bool]] | None = None) -> None:
        self.inner = inner
        self.visible = visible
        self.owns = owns

    async def load(self, key: Any) -> Any:
        if self.owns is not None and not await self.owns(key):
            return None
        value = await self.inner.load(key)
        return value if value is not None and self.visible(value) else None

    async def load_many(self, keys: Iterable[Any]) -> list[Any]:
        if self.owns is not None:
            return list(await asyncio.gather(*(self.load(k) for k in keys)))
        values = await self.inner.load_many(keys)
        return [v if v is not None and self.visible(v) else None for v in values]

    def prime(self, key: Any, value: Any) -> ScopedLoader:
        self.inner.prime(key, value)
        return self

    def clear(self, key: Any) -> ScopedLoader:
        self.inner.clear(key)
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def scope_loaders(loaders: Any, viewer: Viewer) -> Any:
    """Scope a request's loaders to ``viewer`` (no-op for internal viewers).

    A customer owns the sales orders its own listing names (``loaders.orders_of_customer``:
    one cached listing per customer, not a read per order) and its own customer record."""
    if viewer.is_customer:
        customer = viewer.customer
        owned = loaders.orders_of_customer

        async def owns_order(key: Any) -> bool:
            return str(key) in await owned.load(customer)

        async def owns_customer(key: Any) -> bool:
            return str(key) == customer

        loaders.sales_order = ScopedLoader(loaders.sales_order, lambda r: r.sold_to_party == customer, owns_order)
        loaders.customer = ScopedLoader(loaders.customer, lambda r: r.customer == customer, owns_customer)
    return loaders


# --- row level, last line: execution middleware --------------------------------------------


class CustomerGuard:
    """graphql-core middleware for customer viewers (see the module docstring)."""

    def __init__(self, viewer: Viewer) -> None:
        self.viewer = viewer
        self.dropped = 0

    def resolve(self, next_: Callable[..., Any], root: Any, info: Any, **args: Any) -> Any:
        substitute = CUSTOMER_SUBSTITUTES.get((info.parent_type.name, info.field_name))
        if substitute is not None and substitute in info.parent_type.fields:
            field = info.parent_type.fields[substitute]
            next_ = field.resolve or next_
        result = next_(root, info, **args)
        type_name = get_named_type(info.return_type).name
        if type_name not in OWNERS:
            return result
        if inspect.isawaitable(result):
            return self._filter_later(result, type_name, info)
        return self._filter(result, type_name, info)

    async def _filter_later(self, pending: Any, type_name: str, info: Any) -> Any:
        return self._filter(await pending, type_name, info)

    def _filter(self, value: Any, type_name: str, info: Any) -> Any:
        if isinstance(value, (list, tuple)):  # a list field's items (a tuple: KeptItems)
            kept = [v for v in value if can_see(self.viewer, type_name, v)]
            if len(kept) != len(value):
                self._report(info)
            return kept
        if not can_see(self.viewer, type_name, value):
            self._report(info)
            return None
        return value

    def _report(self, info: Any) -> None:
        # The data layer should have scoped this already: a bug worth an error line.
        self.dropped += 1
        log.error("policy guard dropped another customer's %s at %s", get_named_type(info.return_type).name, info.path.as_list())


def middleware(viewer: Viewer) -> list[Any] | None:
    """The execution middleware for ``viewer``: the customer guard, or none."""
    return [CustomerGuard(viewer)] if viewer.is_customer else None


def schema_root_fields(schema: Any) -> list[tuple[str, str]]:
    """Every (root type, field) of a graphql-core schema, for tests and audits."""
    out = []
    for root in (schema.query_type, schema.subscription_type, schema.mutation_type):
        if isinstance(root, GraphQLObjectType):
            out.extend((root.name, name) for name in root.fields)
    return out

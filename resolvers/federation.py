"""ordergraph as an Apollo Federation v2 subgraph: the same Query and Subscription, plus
``_service { sdl }`` and ``_entities`` for a router.

Entities: ``Order @key(fields: "id")`` (sales order number) and ``Customer @key(fields:
"id")`` (ERP business partner). The keys are attached to the types only while this schema
is built and its SDL printed, so ``schema.graphql`` (the plain schema clients generate
from) stays exactly what it was.

``_entities`` resolves in batch: all representations of one type go to their (viewer
scoped) loader in the same tick, one source call for N keys, and a selection of fields
derived from every source (``stage``, ``deliveryRisk``, …) prefetches the views of all
the orders level by level, as ``orders`` does. A customer's representation of another
customer's order, or of a number that does not exist, resolves to ``null`` (the scoped
loader decides from the key, before any read).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.federation.schema import FederationAny
from strawberry.federation.schema_directives import Key
from strawberry.types.info import Info

from . import policy
from .needs import field_needs
from .orders import build_orders
from .query import Query as BaseQuery
from .schema import Query, build_schema  # the root fields of every module (resolvers/schema.py)
from .types import Customer, Order

FEDERATION_VERSION = "2.3"
# GraphQL type name → (python type, key field). One place to add an entity.
ENTITIES: dict[str, tuple[type, str]] = {"Order": (Order, "id"), "Customer": (Customer, "id")}


@contextlib.contextmanager
def entity_keys() -> Iterator[None]:
    """``@key`` on the entity types for the time of the block (schema build and print)."""
    saved = []
    for cls, key in ENTITIES.values():
        definition = cls.__strawberry_definition__  # type: ignore[attr-defined]
        saved.append((definition, definition.directives))
        definition.directives = [*definition.directives, Key(fields=key)]  # type: ignore[arg-type]
    try:
        yield
    finally:
        for definition, directives in saved:
            definition.directives = directives


def _bad(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "BAD_USER_INPUT"})


async def resolve_entities(info: Info, representations: list[Any]) -> list[Any]:
    """The entities the router asks for, in its order: null for what this viewer may not
    see or what does not exist, an error for a malformed representation."""
    ctx = info.context
    if len(representations) > ctx.max_first:  # as `orders(first:)`: one request reads at most this many
        raise GraphQLError(
            f"at most {ctx.max_first} representations per request ([gateway] max_first); got {len(representations)}",
            extensions={"code": "BAD_USER_INPUT"},
        )
    out: list[Any] = [None] * len(representations)
    orders: list[tuple[int, str]] = []
    customers: list[tuple[int, str]] = []
    for i, rep in enumerate(representations):
        if not isinstance(rep, dict):
            out[i] = _bad("a representation is an object with __typename and the key fields")
            continue
        typename = rep.get("__typename")
        if typename not in ENTITIES:
            out[i] = _bad(f"`{typename}` is not an entity of this subgraph (entities: {', '.join(ENTITIES)})")
            continue
        key = rep.get(ENTITIES[typename][1])
        if not isinstance(key, str | int) or isinstance(key, bool):
            out[i] = _bad(f"a {typename} representation needs its key `id`")
            continue
        try:
            key = ctx.check_key("SalesOrder" if typename == "Order" else "Customer", str(key), "representations.id")
        except GraphQLError as exc:
            out[i] = exc
            continue
        (orders if typename == "Order" else customers).append((i, key))
    # One load per key, all in this tick: the DataLoaders make one call per source.
    loaded = await asyncio.gather(
        asyncio.gather(*(ctx.loaders.sales_order.load(k) for _, k in orders), return_exceptions=True),
        asyncio.gather(*(ctx.loaders.customer.load(k) for _, k in customers), return_exceptions=True),
    )
    found = []
    for (i, _), rec in zip(orders, loaded[0], strict=True):
        if isinstance(rec, BaseException):
            out[i] = rec
        elif rec is not None and policy.can_see_order(ctx.viewer, rec):
            found.append((i, rec))
    for (i, _), rec in zip(customers, loaded[1], strict=True):
        if isinstance(rec, BaseException):
            out[i] = rec
        elif rec is not None:
            value = Customer(record=rec)
            out[i] = value if policy.can_see(ctx.viewer, "Customer", value) else None
    if found:
        built = await build_orders(ctx, [rec for _, rec in found], field_needs(info))
        for (i, _), order in zip(found, built, strict=True):
            out[i] = order
    return out


@strawberry.type(name="_Service")
class Service:
    sdl: str


@strawberry.type(name="Query", description=BaseQuery.__strawberry_definition__.description)  # type: ignore[attr-defined]
class SubgraphQuery(Query):
    # The SDL printed while the entity keys were attached (strawberry's own _service
    # prints the schema at request time, when they are gone).
    @strawberry.field(name="_service")
    def service(self) -> Service:
        return Service(sdl=subgraph_sdl())


def build_subgraph_schema(fast: bool = False) -> strawberry.Schema:
    """The subgraph schema: ordergraph's Query and Subscription with the federation fields
    (``fast``: for the fast executor, as in ``build_schema``)."""
    from strawberry.federation import Schema as FederationSchema

    class SubgraphSchema(FederationSchema):
        def entities_resolver(self, info: Info, representations: list[FederationAny]) -> list[FederationAny]:
            return resolve_entities(info, representations)  # type: ignore[return-value]

    with entity_keys():
        built = build_schema(
            lambda **kw: SubgraphSchema(**kw, federation_version=FEDERATION_VERSION), query=SubgraphQuery, fast=fast
        )
        sdl = built.as_str().rstrip() + "\n"
    _SDL[0] = sdl
    return built


_SDL: list[str] = [""]
_SCHEMA: dict[bool, strawberry.Schema] = {}


def subgraph_schema(fast: bool = False) -> strawberry.Schema:
    """The subgraph schema, built once per process and executor (on first use)."""
    if fast not in _SCHEMA:
        _SCHEMA[fast] = build_subgraph_schema(fast)
    return _SCHEMA[fast]


def subgraph_sdl() -> str:
    """The subgraph SDL (``_service { sdl }``, ``subgraph.graphql``)."""
    subgraph_schema()
    return _SDL[0]

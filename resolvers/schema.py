"""The strawberry schema: the one place the GraphQL surface is assembled."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import strawberry
from graphql import GraphQLInputObjectType, GraphQLObjectType, GraphQLResolveInfo
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types.field import StrawberryField
from strawberry.types.info import Info

from .execution import plain_method, register_leaf_reads
from .notice_types import NoticeMutation, NoticeQuery
from .query import Query as BaseQuery
from .subscription import Subscription
from .workflow_mutations import Mutation as WorkflowMutation

# The root types, each merged from the modules that contribute fields to it.
Query = merge_types("Query", (BaseQuery, NoticeQuery))
Mutation = merge_types("Mutation", (WorkflowMutation, NoticeMutation))


def build_schema(schema_class: Callable[..., strawberry.Schema] = strawberry.Schema, query: type = Query) -> strawberry.Schema:
    """Build the ordergraph schema (``schema.graphql`` is printed from this). ``schema_class``
    and ``query``: the federation subgraph's (resolvers/federation.py) builds on the same."""
    built = schema_class(
        query=query, mutation=Mutation, subscription=Subscription, config=StrawberryConfig(auto_camel_case=True)
    )
    # strawberry checks @oneOf inputs only while executing (a field error); telling
    # graphql-core makes validation refuse a bad literal or variable up front (a 400).
    for t in built._schema.type_map.values():
        definition = getattr(t, "extensions", None) and t.extensions.get("strawberry-definition")
        if isinstance(t, GraphQLInputObjectType) and getattr(definition, "is_one_of", False):
            t.is_one_of = True
    direct_resolvers(built)
    register_leaf_reads(built._schema)
    return built


def _direct(field: StrawberryField) -> Callable[[Any, GraphQLResolveInfo], Any] | None:
    """A plain call of ``field``'s resolver method, when strawberry's wrapper adds nothing."""
    method = plain_method(field)
    if method is None:
        return None
    fn, info_name = method
    if info_name is None:
        return lambda source, _info: fn(source)
    return lambda source, info: fn(source, **{info_name: Info(_raw_info=info, _field=field)})


def direct_resolvers(built: strawberry.Schema) -> int:
    """Call argument-less resolver methods directly instead of through strawberry's
    per-field wrapper (argument conversion, extension chain, ``Info`` for fields that do
    not take one): about 15 % of a page's CPU, for the same answers. Returns how many."""
    count = 0
    for t in built._schema.type_map.values():
        if not isinstance(t, GraphQLObjectType) or t.name.startswith("__"):
            continue
        for gfield in t.fields.values():
            definition = (gfield.extensions or {}).get("strawberry-definition")
            if isinstance(definition, StrawberryField) and (fast := _direct(definition)) is not None:
                gfield.resolve = fast
                count += 1
    return count


schema = build_schema()


def schema_sdl() -> str:
    """The published contract, as written to ``schema.graphql``."""
    return schema.as_str().rstrip() + "\n"

"""The strawberry schema: the one place the GraphQL surface is assembled."""

from __future__ import annotations

import strawberry
from graphql import GraphQLInputObjectType
from strawberry.schema.config import StrawberryConfig

from .query import Query
from .subscription import Subscription


def build_schema() -> strawberry.Schema:
    """Build the ordergraph schema (``schema.graphql`` is printed from this)."""
    built = strawberry.Schema(query=Query, subscription=Subscription, config=StrawberryConfig(auto_camel_case=True))
    # strawberry checks @oneOf inputs only while executing (a field error); telling
    # graphql-core makes validation refuse a bad literal or variable up front (a 400).
    for t in built._schema.type_map.values():
        definition = getattr(t, "extensions", None) and t.extensions.get("strawberry-definition")
        if isinstance(t, GraphQLInputObjectType) and getattr(definition, "is_one_of", False):
            t.is_one_of = True
    return built


schema = build_schema()


def schema_sdl() -> str:
    """The published contract, as written to ``schema.graphql``."""
    return schema.as_str().rstrip() + "\n"

"""The strawberry schema: the one place the GraphQL surface is assembled."""

from __future__ import annotations

import strawberry
from strawberry.schema.config import StrawberryConfig

from .query import Query
from .subscription import Subscription


def build_schema() -> strawberry.Schema:
    """Build the ordergraph schema (``schema.graphql`` is printed from this)."""
    return strawberry.Schema(query=Query, subscription=Subscription, config=StrawberryConfig(auto_camel_case=True))


schema = build_schema()


def schema_sdl() -> str:
    """The published contract, as written to ``schema.graphql``."""
    return schema.as_str().rstrip() + "\n"

"""The strawberry schema: the one place the GraphQL surface is assembled."""

from __future__ import annotations

from collections.abc import Callable

import strawberry
from graphql import GraphQLInputObjectType
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from .execution import enable_fast_path
from .notice_types import NoticeMutation, NoticeQuery
from .query import Query as BaseQuery
from .subscription import Subscription
from .workflow_mutations import Mutation as WorkflowMutation

# The root types, each merged from the modules that contribute fields to it.
Query = merge_types("Query", (BaseQuery, NoticeQuery))
Mutation = merge_types("Mutation", (WorkflowMutation, NoticeMutation))


def build_schema(
    schema_class: Callable[..., strawberry.Schema] = strawberry.Schema, query: type = Query, *, fast: bool = False
) -> strawberry.Schema:
    """Build the ordergraph schema (``schema.graphql`` is printed from this). ``schema_class``
    and ``query``: the federation subgraph's (resolvers/federation.py) builds on the same.
    ``fast``: for the fast executor (resolvers/execution.py); else strawberry's own
    resolvers under graphql-core's executor. Both print the same SDL."""
    built = schema_class(
        query=query, mutation=Mutation, subscription=Subscription, config=StrawberryConfig(auto_camel_case=True)
    )
    # strawberry checks @oneOf inputs only while executing (a field error); telling
    # graphql-core makes validation refuse a bad literal or variable up front (a 400).
    for t in built._schema.type_map.values():
        definition = getattr(t, "extensions", None) and t.extensions.get("strawberry-definition")
        if isinstance(t, GraphQLInputObjectType) and getattr(definition, "is_one_of", False):
            t.is_one_of = True
    if fast:
        enable_fast_path(built)
    return built


schema = build_schema()


def schema_sdl() -> str:
    """The published contract, as written to ``schema.graphql``."""
    return schema.as_str().rstrip() + "\n"

"""FastExecutor answers exactly as graphql-core's own executor: same data, same errors."""

from __future__ import annotations

import orjson
import strawberry
from graphql import execute, parse
from graphql.execution.executor import Executor

from bench import queries as Q
from resolvers import policy
from resolvers.execution import FastExecutor, is_awaitable, register_leaf_reads


async def _run(schema, doc, context, variables, executor_class, middleware=None):
    result = execute(
        schema,
        doc,
        context_value=context,
        variable_values=variables,
        middleware=middleware,
        executor_class=executor_class,
        is_awaitable=is_awaitable if executor_class is FastExecutor else None,
    )
    if is_awaitable(result):
        result = await result
    # Serialized: the order of keys is part of the answer. Cursors are sealed with a fresh
    # nonce each time (resolvers/pagination.py): the same position reads differently.
    return orjson.dumps(_opaque(result.data)), orjson.dumps([e.formatted for e in result.errors or []])


def _opaque(value):
    if isinstance(value, dict):
        return {k: "<cursor>" if k.lower().endswith("cursor") and isinstance(v, str) else _opaque(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_opaque(v) for v in value]
    return value


async def test_same_answers_as_graphql_core_on_the_real_schema(gateway, plant):
    _url, app = gateway
    gw = app.state.gateway
    schema = gw.schema._schema
    some = plant.world.sales_orders[:5]
    customer = plant.world.get("A_SalesOrder", some[0]).sold_to_party
    cases = [
        (Q.WHERE_IS_MY_ORDER, {"id": so}) for so in some
    ] + [
        (Q.WHERE_IS_MY_ORDER, {"id": "99999999"}),  # missing: null
        (Q.DASHBOARD, {"first": 50}),
        (Q.CUSTOMER_ORDERS, {"id": customer}),
        (Q.FULL_LIST, {"first": 20}),
        ("{ orders(first: 10) { nodes { id stage deliveryRisk predictedDeliveryDate milestones { kind status } } } }", {}),
        ("{ orders(first: 3) { nodes { __typename id netValue { __typename amount currency } } } }", {}),
    ]
    for query, variables in cases:
        doc = parse(query)
        fast = await _run(schema, doc, gw.context(None), variables, FastExecutor)
        plain = await _run(schema, doc, gw.context(None), variables, Executor)
        assert fast == plain, query
    # A customer viewer (middleware): graphql-core's path throughout, same answer.
    viewer = policy.Viewer(policy.Role.CUSTOMER, customer=customer)
    doc = parse(Q.CUSTOMER_ORDERS)
    ctx1, ctx2 = gw.context(None, viewer=viewer), gw.context(None, viewer=viewer)
    fast = await _run(schema, doc, ctx1, {"id": customer}, FastExecutor, policy.middleware(viewer))
    plain = await _run(schema, doc, ctx2, {"id": customer}, Executor, policy.middleware(viewer))
    assert fast == plain and orjson.loads(fast[0])["customer"]["orders"]["nodes"]


@strawberry.type
class Inner:
    value: int

    @strawberry.field
    def missing(self) -> str:
        return None  # type: ignore[return-value]


@strawberry.type
class Thing:
    name: str
    note: str | None = None

    @strawberry.field
    def inner(self) -> Inner:
        return Inner(value=len(self.name))

    @strawberry.field
    def maybe_inner(self) -> Inner | None:
        return Inner(value=1) if self.note else None

    @strawberry.field
    def broken_inner(self) -> Inner | None:
        raise ValueError("no inner")

    @strawberry.field
    def broken(self) -> str:
        raise ValueError("no luck")

    @strawberry.field
    def missing(self) -> str:
        return None  # type: ignore[return-value]

    @strawberry.field
    def optional(self) -> int | None:
        return None

    @strawberry.field
    async def later(self) -> str:
        return self.name.upper()


@strawberry.type
class Root:
    @strawberry.field
    def things(self) -> list[Thing]:
        return [Thing(name="a"), Thing(name="b", note="n")]


async def test_errors_and_nulls_are_reported_as_graphql_core_reports_them():
    schema = strawberry.Schema(query=Root)._schema
    assert register_leaf_reads(schema) >= 4
    for query in (
        "{ things { name note optional } }",  # all plain leaves: one loop per object
        "{ things { name broken } }",  # an error with its path
        "{ things { name missing } }",  # null for a non-null field: the parent goes null
        "{ things { name later } }",  # an awaitable
        "{ things { first: name, second: name, note } }",  # aliases, in order
        "{ things { name inner { value } maybeInner { value } } }",  # plain objects
        "{ things { name inner { value missing } } }",  # a null bubbles up through an object
        "{ things { name maybeInner { missing } brokenInner { value } } }",  # ... and stops at a nullable one
    ):
        doc = parse(query)
        fast = await _run(schema, doc, None, {}, FastExecutor)
        plain = await _run(schema, doc, None, {}, Executor)
        assert fast == plain, query
    data, errors = await _run(schema, parse("{ things { name broken } }"), None, {}, FastExecutor)
    assert b"no luck" in errors and b'"path":["things",0,"broken"]' in errors

"""The fast executor answers exactly as the standard path: graphql-core's own executor over
strawberry's own resolvers. Same data, same errors, same nulls, same customer scoping."""

from __future__ import annotations

import enum
import logging
import os
import tomllib
from pathlib import Path

import orjson
import pytest
import strawberry
from graphql import parse

from bench import queries as Q
from gateway.app import choose_executor
from gateway.config import ConfigError, load_config
from resolvers import execution, policy
from resolvers.execution import (
    FAST_PATH,
    PINS,
    enable_fast_path,
    execute,
    fast_path_mismatch,
    is_awaitable,
    uses_fast_path,
)
from resolvers.schema import build_schema

from .servers import TEST_EXECUTOR, running_gateway

ROOT = Path(__file__).resolve().parents[1]


async def _run(schema, doc, context, variables, middleware=None, root=None):
    """Through the one seam every path executes by: the schema picks its executor."""
    result = execute(
        schema, doc, context_value=context, variable_values=variables, middleware=middleware, root_value=root
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


ORDER_DERIVED = """
  id stage deliveryRisk predictedDeliveryDate commercialPriority
  milestones { kind status planned expected actual source }
  items { item producedQuantity shippedQuantity deliveredQuantity openQuantity openValue { amount currency } }
  production { status orders { id workCenter { id state } } }
  materials { status shortages { material shortageQuantity } }
  quality { status inspectionLots { id usageDecision { valuation } } }
  logistics { status eta }
"""


def _context(gw, now, viewer=None):
    """A fresh request context at one fixed instant (derived times count from ``now``)."""
    ctx = gw.context(None, viewer=viewer) if viewer is not None else gw.context(None)
    ctx.now = now
    return ctx


async def _same(fast, standard, gw, now, query, variables=None, viewer=None):
    """One query through both schemas, each with a fresh request context; returns the
    (equal) answer."""
    doc = parse(query)
    middleware = policy.middleware(viewer) if viewer is not None else None
    a = await _run(fast, doc, _context(gw, now, viewer), variables or {}, middleware)
    b = await _run(standard, doc, _context(gw, now, viewer), variables or {}, middleware)
    assert a == b, query
    return orjson.loads(a[0]), orjson.loads(a[1])


async def test_fast_executor_answers_as_strawberrys_own_resolvers(plant):
    """The direct resolvers under FastExecutor against strawberry's own resolvers under
    graphql-core's executor, on the real schema and the same plant: pages, one order,
    derived fields read from a page's views and from one order's own loads, nulls, bad
    input, customer scoping and a source fault."""
    quiet = {"retries": 0, "breaker_failures": 100_000, "stale_if_error": False}
    async with running_gateway(plant.url, sources={s: quiet for s in ("erp", "mes", "wms", "qms", "tms")}) as (_url, app):
        gw = app.state.gateway
        await gw.exceptions.settled(30)
        now = gw.context(None).now
        # The gateway runs what it is set to (ORDERGRAPH_TEST_EXECUTOR runs these tests on either).
        assert gw.executor == (os.environ.get(TEST_EXECUTOR) or "fast")
        assert uses_fast_path(gw.schema._schema) == (gw.executor == "fast")
        fast, standard = build_schema(fast=True)._schema, build_schema()._schema
        assert uses_fast_path(fast) and not uses_fast_path(standard)
        # Not the same resolvers: the fast schema calls the methods directly.
        assert fast.type_map["Order"].fields["stage"].resolve is not standard.type_map["Order"].fields["stage"].resolve
        assert len(fast.extensions[FAST_PATH].leaves) > 100

        some = plant.world.sales_orders[:5]
        customer = plant.world.get("A_SalesOrder", some[0]).sold_to_party
        other = next(so for so in plant.world.sales_orders if plant.world.get("A_SalesOrder", so).sold_to_party != customer)
        for so in some:
            data, _ = await _same(fast, standard, gw, now, Q.WHERE_IS_MY_ORDER, {"id": so})
            assert data["order"]["id"] == so
            await _same(fast, standard, gw, now, "query($id: ID!) { order(id: $id) {" + ORDER_DERIVED + "} }", {"id": so})
        data, _ = await _same(fast, standard, gw, now, Q.WHERE_IS_MY_ORDER, {"id": "99999999"})
        assert data == {"order": None}  # missing: null
        data, _ = await _same(fast, standard, gw, now, Q.DASHBOARD, {"first": 50})
        assert len(data["orders"]["nodes"]) == 50
        await _same(fast, standard, gw, now, Q.CUSTOMER_ORDERS, {"id": customer})
        await _same(fast, standard, gw, now, Q.FULL_LIST, {"first": 20})
        await _same(fast, standard, gw, now, "{ orders(first: 30) { nodes {" + ORDER_DERIVED + "} } }")
        await _same(fast, standard, gw, now, "{ orders(first: 3) { nodes { __typename id netValue { __typename amount currency } } } }")
        await _same(fast, standard, gw, now, "{ orders(first: 10, sort: DAYS_LATE) { totalCount nodes { id stage deliveryRisk } } }")
        data, _ = await _same(
            fast, standard, gw, now, "{ exceptions(first: 10) { totalCount edges { node { id kind severity daysLate valueAtRisk { amount } } } } }"
        )
        assert data["exceptions"]["edges"]
        _, errors = await _same(fast, standard, gw, now, "{ orders(first: -1) { nodes { id } } }")
        assert b"BAD_USER_INPUT" in orjson.dumps(errors)

        # A customer viewer (the policy middleware): its own orders, and nothing of another's.
        viewer = policy.Viewer(policy.Role.CUSTOMER, customer=customer)
        data, _ = await _same(fast, standard, gw, now, Q.CUSTOMER_ORDERS, {"id": customer}, viewer)
        assert data["customer"]["orders"]["nodes"]
        data, _ = await _same(fast, standard, gw, now, Q.WHERE_IS_MY_ORDER, {"id": other}, viewer)
        assert data["order"] is None
        data, _ = await _same(fast, standard, gw, now, "{ orders(first: 20) { nodes {" + ORDER_DERIVED + "} } }", {}, viewer)
        assert data["orders"]["nodes"]

        # A source fault: QMS answers 500; its fields are null with a typed error, the rest answers.
        async with plant_fault(plant, {"qms": {"mode": "error"}}):
            for query, variables in (
                (Q.WHERE_IS_MY_ORDER, {"id": some[0]}),
                ("{ orders(first: 10) { nodes {" + ORDER_DERIVED + "} } }", {}),
                (Q.DASHBOARD, {"first": 10}),
            ):
                gw.cache.invalidate_all()
                doc = parse(query)
                a = await _run(fast, doc, _context(gw, now), variables)
                gw.cache.invalidate_all()
                b = await _run(standard, doc, _context(gw, now), variables)
                assert a == b, query
                assert b"qms" in a[1], query


class plant_fault:
    """The plant's systems sick for the block (``/control/faults``)."""

    def __init__(self, plant, spec):
        self.plant, self.spec = plant, spec

    async def __aenter__(self):
        import aiohttp

        async with aiohttp.ClientSession() as http, http.post(f"{self.plant.url}/control/faults", json=self.spec) as resp:
            assert resp.status == 200

    async def __aexit__(self, *exc):
        import aiohttp

        async with aiohttp.ClientSession() as http, http.delete(f"{self.plant.url}/control/faults") as resp:
            assert resp.status == 200


def test_pins_in_pyproject_are_the_tested_versions_and_installed():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for package, spec in PINS.items():
        assert f"{package}{spec}" in deps, package
    assert fast_path_mismatch() is None  # what this environment runs is what was tested


def test_executor_setting(tmp_path, monkeypatch, caplog):
    assert choose_executor("fast") == "fast" and choose_executor("standard") == "standard"
    bad = tmp_path / "bad.toml"
    bad.write_text('[gateway]\nexecutor = "quick"\n')
    with pytest.raises(ConfigError, match="gateway.executor: 'quick' is not 'fast' or 'standard'"):
        load_config(bad, env={})
    with pytest.raises(ConfigError):
        choose_executor("quick")
    # Other versions installed than the fast path was tested with: the standard path, said.
    monkeypatch.setitem(PINS, "graphql-core", "==0.0.1")
    with caplog.at_level(logging.WARNING, logger="ordergraph.gateway"):
        assert choose_executor("fast") == "standard"
    assert "graphql-core 3.3.2 (tested: ==0.0.1)" in caplog.text


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

    @strawberry.field
    def not_ready(self) -> str:
        return self.later()  # type: ignore[return-value]  # a coroutine from a plain method

    @strawberry.field
    def code(self) -> strawberry.ID:
        return len(self.name)  # type: ignore[return-value]  # not a str: the ID type coerces it

    @strawberry.field
    def seen_by(self, info: strawberry.Info) -> str:
        return f"{self.name} for {info.context}"

    @strawberry.field
    def size(self) -> int:
        READS.append(self.name)
        return len(self.name)


READS: list[str] = []  # Thing.size's reads


@strawberry.enum
class Mood(enum.Enum):
    CALM = "calm"
    BUSY = "busy"


@strawberry.type
class Shelf:
    """Lists of leaves and of objects read plainly: what the compiled plans take whole."""

    label: str
    mood: Mood
    moods: list[Mood]
    tags: list[str | None]
    strict_tags: list[str]
    items: list[Thing]
    maybe_items: list[Thing | None] | None
    strict_items: list[Thing] | None = None

    @strawberry.field
    def broken_items(self) -> list[Thing] | None:
        raise ValueError("no shelf")

    @strawberry.field
    def bad_mood(self) -> Mood | None:
        return "grumpy"  # type: ignore[return-value]


KEPT = execution.KeptItems([Thing(name="k1"), Thing(name="k22", note="n")])  # never changed
MAYBE_KEPT = execution.KeptItems([*KEPT, None])


@strawberry.type
class Root:
    @strawberry.field
    def things(self) -> list[Thing]:
        return [Thing(name="a"), Thing(name="b", note="n")]

    @strawberry.field
    def kept(self) -> list[Thing]:
        return KEPT  # type: ignore[return-value]

    @strawberry.field
    def maybe_kept(self) -> list[Thing | None]:
        return MAYBE_KEPT  # type: ignore[return-value]

    @strawberry.field
    def shelves(self) -> list[Shelf]:
        items = [Thing(name="a"), Thing(name="bb", note="n")]
        return [
            Shelf(label="one", mood=Mood.CALM, moods=[Mood.BUSY, Mood.CALM], tags=["x", None], strict_tags=["y"],
                  items=items, maybe_items=[items[0], None]),
            Shelf(label="two", mood=Mood.BUSY, moods=[], tags=[], strict_tags=["z", None],  # type: ignore[list-item]
                  items=[], maybe_items=None, strict_items=[items[1], None]),  # type: ignore[list-item]
        ]


async def test_errors_and_nulls_are_reported_as_graphql_core_reports_them():
    standard = strawberry.Schema(query=Root)
    fast = strawberry.Schema(query=Root)
    assert enable_fast_path(fast) >= 4
    for query in (
        "{ things { name note optional } }",  # all plain leaves: one loop per object
        "{ things { name broken } }",  # an error with its path
        "{ things { name missing } }",  # null for a non-null field: the parent goes null
        "{ things { name later } }",  # an awaitable
        "{ things { first: name, second: name, note } }",  # aliases, in order
        "{ things { name inner { value } maybeInner { value } } }",  # plain objects
        "{ things { name inner { value missing } } }",  # a null bubbles up through an object
        "{ things { name maybeInner { missing } brokenInner { value } } }",  # ... and stops at a nullable one
        "{ things { __typename t: __typename name } }",  # the type's name, aliased too
        "{ shelves { label mood moods tags } }",  # enums and lists of leaves, null items allowed
        "{ shelves { label strictTags } }",  # a null item in a non-null list: the shelf goes null
        "{ shelves { label items { name inner { value } } maybeItems { name } } }",  # lists of objects
        "{ shelves { label items { name broken } } }",  # an error in an item: the item goes null ...
        "{ shelves { label items { name missing } } }",  # ... and so the non-null list and its shelf
        "{ shelves { label maybeItems { name missing } } }",  # ... a nullable item stops it
        "{ shelves { label strictItems { name } } }",  # a null item in a non-null item list
        "{ shelves { label brokenItems { name } } }",  # a list read that raises
        "{ shelves { label items { name later } maybeItems { later } } }",  # awaitable fields in items
        "{ shelves { label items { later missing } } }",  # an awaitable and a null in one item
        "{ shelves { label badMood } }",  # a value the enum cannot serialize
        "{ shelves { ... on Shelf { label } ...F } } fragment F on Shelf { mood items { name } }",  # fragments
        # items whose every field is a plain leaf: completed in one loop, any field off it
        # sends its item to the plan (graphql-core's path for that field)
        "{ shelves { items { __typename t: __typename n: name name note code seenBy } } }",
        "{ shelves { items { name notReady } maybeItems { code notReady } } }",  # not ready: awaited
        "{ shelves { items { name missing } maybeItems { note missing } } }",  # a null for a non-null leaf
        "{ shelves { items { name broken } maybeItems { name broken } } }",  # a leaf raising
        "{ shelves { items { code first: name note optional } strictItems { code } } }",
    ):
        doc = parse(query)
        assert await _run(fast._schema, doc, None, {}) == await _run(standard._schema, doc, None, {}), query
    data, errors = await _run(fast._schema, parse("{ things { name broken } }"), None, {})
    assert b"no luck" in errors and b'"path":["things",0,"broken"]' in errors
    data, errors = await _run(fast._schema, parse("{ shelves { label items { name broken } } }"), None, {})
    assert b'"path":["shelves",0,"items",0,"broken"]' in errors
    # Items whose fields are all plain leaves complete in the list's own loop: no plan run per item.
    runs = []
    plan_run = execution.FastExecutor._run_plan

    def counted(self, plan, parent_type, *args):  # type: ignore[no-untyped-def]
        runs.append(parent_type.name)
        return plan_run(self, plan, parent_type, *args)

    execution.FastExecutor._run_plan = counted  # type: ignore[method-assign]
    try:
        data, errors = await _run(fast._schema, parse("{ shelves { items { name code } maybeItems { name } } }"), None, {})
        assert orjson.loads(data)["shelves"][0]["items"] == [{"name": "a", "code": "1"}, {"name": "bb", "code": "2"}]
        assert runs == ["Root", "Shelf", "Shelf"]
        runs.clear()
        data, errors = await _run(fast._schema, parse("{ shelves { maybeItems { name code broken } } }"), None, {})
        assert runs == ["Root", "Shelf", "Thing", "Shelf"]  # ... only an item with a field off the plain path
        assert orjson.loads(data)["shelves"][0] == {"maybeItems": [None, None]}
        assert b'"path":["shelves",0,"maybeItems",0,"broken"]' in errors
    finally:
        execution.FastExecutor._run_plan = plan_run  # type: ignore[method-assign]
    # Items a resolver keeps (KeptItems): a selection of context-free plain leaves completed
    # once and answered again from the tuple; any other selection read each time.
    for query in (
        "{ kept { size name __typename } maybeKept { size code note } }",
        "{ kept { s: size name seenBy } }",  # a read that takes info: not kept
        "{ kept { size broken } }",  # an error: reported every time
        "{ kept { size missing } maybeKept { size note } }",  # a null for a non-null field
        "{ kept { size notReady } }",  # not ready
        "{ kept { size inner { value } } }",  # not all leaves
    ):
        doc = parse(query)
        expected = await _run(standard._schema, doc, None, {})
        READS.clear()
        assert await _run(fast._schema, doc, None, {}) == expected, query
        first = list(READS)
        assert first, query
        READS.clear()
        assert await _run(fast._schema, doc, None, {}) == expected, query
        assert READS == ([] if query.startswith("{ kept { size name __typename }") else first), query
    # ... but only the same tuple: new KeptItems of the same objects are read again
    READS.clear()
    for _ in range(2):
        await _run(fast._schema, parse("{ things { size } }"), None, {})
    assert READS == ["a", "b"] * 2
    READS.clear()
    doc = parse("{ a: kept { size } b: kept { n: name size } }")  # two selections: each its own
    expected = await _run(standard._schema, doc, None, {})
    READS.clear()
    assert await _run(fast._schema, doc, None, {}) == expected
    assert await _run(fast._schema, doc, None, {}) == expected
    assert READS == ["k1", "k22"] * 2  # once per selection
    for n in range(3 * execution._KEPT_SELECTIONS):  # many selections: a few kept at a time
        await _run(fast._schema, parse("{ kept { " + " ".join(f"a{i}: size" for i in range(n + 1)) + " } }"), None, {})
        assert len(KEPT.__dict__) <= execution._KEPT_SELECTIONS
    # A plan is compiled once per selection and kept: a second request compiles nothing.
    doc = parse("{ shelves { label moods items { name } } }")
    await _run(fast._schema, doc, None, {})
    before = dict(execution._PLANS)
    await _run(fast._schema, doc, None, {})
    assert execution._PLANS == before and any(key[0].name == "Shelf" for key in before)
    # Skip and include decide the selection before it is compiled: each shape its own plan.
    skip = parse("query($s: Boolean!) { shelves { label @skip(if: $s) mood } }")
    for flag in (True, False, True):
        a = await _run(fast._schema, skip, None, {"s": flag})
        assert a == await _run(standard._schema, skip, None, {"s": flag})
        assert (b"label" in a[0]) is not flag


async def test_a_kept_selection_is_completed_a_field_at_a_time_as_the_loop_per_item_completes_it():
    """The first completion of a kept selection (``_complete_kept``: each field read over
    every item by ``map``) answers what graphql-core answers, keys in the same order; any
    item or field it cannot complete whole leaves the list to the loop per item."""
    standard = strawberry.Schema(query=Root)
    fast = strawberry.Schema(query=Root)
    enable_fast_path(fast)
    whole: list[bool] = []
    complete = execution._complete_kept

    def noted(values, flat):  # type: ignore[no-untyped-def]
        out = complete(values, flat)
        whole.append(out is not None)
        return out

    execution._complete_kept = noted  # type: ignore[assignment]
    try:
        for query, completed_whole, kept_then in (
            ("{ kept { size } }", True, True),  # one field
            ("{ kept { __typename t: __typename n: name size code note c: code } }", True, True),  # aliases, an ID from an int
            ("{ kept { note name } }", True, True),  # a nullable field null in one item
            ("{ kept { optional size } }", True, True),
            ("{ kept { size missing } }", False, False),  # a null for a non-null field
            ("{ kept { size broken } }", False, False),  # a read raising
            ("{ kept { size notReady } }", False, False),  # not ready (its coroutines closed)
            ("{ maybeKept { size name } }", False, True),  # a null item: the loop completes and keeps it
        ):
            for kept in (KEPT, MAYBE_KEPT):
                kept.__dict__.clear()  # as a tuple not read before
            doc = parse(query)
            whole.clear()
            expected = await _run(standard._schema, doc, None, {})
            assert await _run(fast._schema, doc, None, {}) == expected, query
            assert whole == [completed_whole], query
            whole.clear()
            assert await _run(fast._schema, doc, None, {}) == expected, query  # kept, or per item again
            assert whole == ([] if kept_then else [False]), query
    finally:
        execution._complete_kept = complete  # type: ignore[assignment]


def test_the_enum_serializers_answer_what_graphql_core_answers_for_every_member():
    """``serializer`` names a Python enum member by a table (keyed by the member's own
    name): the same name graphql-core's ``coerce_output_value`` gives, for every member of
    every enum type of the schema; anything else still goes to graphql-core."""
    from graphql import GraphQLEnumType

    from resolvers.execution import serializer

    checked = 0
    for gtype in build_schema()._schema.type_map.values():
        wrapped = getattr(gtype, "wrapped_cls", None)
        if not isinstance(gtype, GraphQLEnumType) or not isinstance(wrapped, type) or gtype.name.startswith("__"):
            continue
        serialize = serializer(gtype)
        for member in wrapped:
            assert serialize(member) == gtype.coerce_output_value(member), (gtype.name, member)
            checked += 1
    assert checked > 50

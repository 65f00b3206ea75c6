"""The document stage under a hostile viewer: every document's cost is bounded before
validation, identical documents share one validation, and a viewer's new documents are
checked off the event loop within its own budget.

Timings are never asserted: ``GuardedDocuments.validations`` counts the documents
graphql-core validated, so "refused before validation" and "answered from the cache" are
facts a test can check.
"""

from __future__ import annotations

from typing import Any

import pytest
from graphql import parse

from gateway.auth import mint_token
from gateway.config import AuthConfig, LimitsConfig
from gateway.shape import measure_shape

from .servers import running_gateway

SECRET = "test-secret-for-the-document-stage-tests"
# The viewer of issue 12's attack: flat, under the old 5,000-token limit, seconds to validate.
ATTACK = "{" + " ".join(f"a{i}: orders(first: 500) {{ nodes {{ id }} }}" for i in range(350)) + "}"
ATTACK_NO_ALIASES = "{" + " ".join("orders(first: 500) { nodes { id } }" for _ in range(350)) + "}"
# Under every count limit, but each `orders` is compared with every other, subtrees included.
REPETITIVE = "{" + " ".join("orders(first: 5) { nodes { id stage customer { name } } }" for _ in range(40)) + "}"


def bearer(role: str = "service", customer: str | None = None, subject: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(SECRET, role=role, customer=customer, subject=subject)}"}


async def post(http: Any, url: str, query: str, headers: dict[str, str], variables: dict | None = None) -> tuple[int, dict]:
    async with http.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


@pytest.fixture
async def guarded(plant):
    # Tokens up to 20,000 so the shape checks, not the parser, meet the attack.
    limits = LimitsConfig(max_tokens=20_000, rate_per_second=1000, rate_burst=1000)
    async with running_gateway(plant.url, auth=AuthConfig(mode="jwt", hs256_secret=SECRET), limits=limits) as (url, app):
        yield url, app.state.gateway.documents


@pytest.mark.parametrize(
    ("query", "code"),
    [(ATTACK, "TOO_MANY_FIELDS"), (ATTACK_NO_ALIASES, "TOO_MANY_FIELDS"), (REPETITIVE, "QUERY_TOO_REPETITIVE")],
    ids=["aliased-copies", "same-name-copies", "repeated-subtrees"],
)
async def test_expensive_documents_are_refused_before_validation(guarded, http, query, code):
    url, documents = guarded
    before = documents.validations
    status, body = await post(http, url, query, bearer())
    assert status == 400, body
    assert code in [e["extensions"]["code"] for e in body["errors"]], body
    assert documents.validations == before  # graphql-core's rules never ran on it
    # a legitimate document still validates and runs
    status, body = await post(http, url, "{ orders(first: 2) { nodes { id stage } } }", bearer())
    assert status == 200 and len(body["data"]["orders"]["nodes"]) == 2, body
    assert documents.validations == before + 1


async def test_fields_per_selection_set_and_fragments_are_capped(plant, http):
    limits = LimitsConfig(max_selections=5, max_fragments=2, rate_per_second=1000, rate_burst=1000)
    async with running_gateway(plant.url, auth=AuthConfig(mode="jwt", hs256_secret=SECRET), limits=limits) as (url, _app):
        # the fragment's fields count in the selection set that spreads it
        wide = "{ orders(first: 1) { nodes { id stage ...F } } } fragment F on Order { deliveryRisk customerId confirmedDeliveryDate netValue { amount } }"
        status, body = await post(http, url, wide, bearer())
        assert status == 400 and body["errors"][0]["extensions"]["code"] == "TOO_MANY_SELECTIONS", body
        assert "`nodes` asks for 6 fields" in body["errors"][0]["message"]
        frags = "{ orders(first: 1) { nodes { ...A ...B ...C } } } " + " ".join(f"fragment {n} on Order {{ id }}" for n in "ABC")
        status, body = await post(http, url, frags, bearer())
        assert status == 400 and body["errors"][0]["extensions"]["code"] == "TOO_MANY_FRAGMENTS", body


async def test_a_renamed_alias_or_new_whitespace_hits_the_document_cache(guarded, http):
    url, documents = guarded
    first = "query Page { mine: orders(first: 2) { nodes { id } } }"
    status, body = await post(http, url, first, bearer())
    assert status == 200 and body["data"]["mine"]["nodes"], body
    validated = documents.validations
    for variant in (
        "query Page { yours: orders(first: 2) { nodes { id } } }",
        "query Page {\n  # a comment\n  theirs: orders(first: 2), { nodes { id } }\n}",
    ):
        status, body = await post(http, url, variant, bearer())
        assert status == 200, body
        alias = next(iter(body["data"]))  # each answer keeps its own alias
        assert alias in variant and body["data"][alias]["nodes"], body
    assert documents.validations == validated  # one validation for all three
    # a different selection is a different document
    status, body = await post(http, url, "query Page { mine: orders(first: 2) { nodes { stage } } }", bearer())
    assert status == 200 and documents.validations == validated + 1


async def test_document_budget_is_per_viewer_and_cached_documents_are_free(plant, http):
    # A budget one new document spends (a microsecond of burst, refilled over hours).
    limits = LimitsConfig(document_seconds_per_second=1e-7, document_seconds_burst=1e-6, rate_per_second=1000, rate_burst=1000)
    async with running_gateway(plant.url, auth=AuthConfig(mode="jwt", hs256_secret=SECRET), limits=limits) as (url, _app):
        hostile = bearer(subject="hostile")
        q = "{ orders(first: %d) { nodes { id } } }"
        status, body = await post(http, url, q % 1, hostile)
        assert status == 200, body
        status, body = await post(http, url, q % 2, hostile)  # a new document: over budget
        assert status == 429, body
        assert body["errors"][0]["extensions"]["code"] == "DOCUMENT_BUDGET_EXCEEDED", body
        # a document it has sent before costs nothing ...
        status, body = await post(http, url, q % 1, hostile)
        assert status == 200, body
        # ... and another viewer has its own budget
        status, body = await post(http, url, q % 2, bearer(subject="calm"))
        assert status == 200, body
        status, body = await post(http, url, q % 3, hostile)  # still spent
        assert status == 429, body


def test_shape_counts_fragments_where_they_are_spread_and_survives_cycles():
    doc = parse("{ a: orders { nodes { ...F ...F id } } } fragment F on Order { id stage } fragment G on Order { ...G }")
    shape = measure_shape(doc)
    assert shape.fields == 5  # written field nodes: orders, nodes, id; F's id, stage
    assert shape.aliases == 1
    assert shape.width == 5 and shape.width_at == "nodes"  # id ×3, stage ×2
    assert shape.repeats == 3 and shape.repeated == "id"
    assert shape.merge_checks == 3 + 1  # id: 3 pairs of 1×1; stage: 1 pair


def test_normal_form_ignores_alias_names_but_not_collisions_with_field_names():
    def key(q: str) -> str:
        return measure_shape(parse(q)).key

    assert key("{ x: orders { nodes { id } } }") == key("{y:orders{nodes{id}}} # same")
    assert key("{ x: order(id: 1) { id } y: order(id: 2) { id } }") != key("{ x: order(id: 1) { id } x: order(id: 2) { id } }")
    # `id: stage` collides with the field `id`: that is what validation must judge
    assert key("{ orders { nodes { id: stage id } } }") != key("{ orders { nodes { other: stage id } } }")
    assert key("{ orders(first: 1) { nodes { id } } }") != key("{ orders(first: 2) { nodes { id } } }")


def test_a_garbage_collection_is_not_charged_to_the_document_being_checked() -> None:
    """A full collection that happens to run while a viewer's document is checked is the
    process's cost: it must not spend that viewer's document budget."""
    import gc
    import time

    from gateway.documents import cpu_without_gc

    heap = [[{"i": i}] for i in range(400_000)]  # something for a full collection to walk

    def collect() -> int:
        return gc.collect()

    started = time.thread_time()
    _, charged = cpu_without_gc(collect)
    measured = time.thread_time() - started
    assert measured > 0.005 and charged < measured / 4, (measured, charged)

    def work() -> int:
        return sum(len(str(x)) for x in heap[:50_000])

    _, charged_work = cpu_without_gc(work)
    assert charged_work > 0.005  # real work is still charged

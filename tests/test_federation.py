"""ordergraph as an Apollo Federation v2 subgraph: ``_service``, ``_entities`` in batch,
customer scoping, and the plain schema untouched when federation is off.

Real simulated plant, real gateway under uvicorn, real HTTP; call counts are the plant's
own counters (as tests/test_graph.py counts ``orders``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.auth import mint_token
from gateway.config import AuthConfig, Config, LimitsConfig
from resolvers.federation import subgraph_sdl

from .servers import plant_stats, reset_plant_stats, serve_asgi
from .test_graph import FULL_ORDER

SECRET = "test-secret-for-the-federation-tests"
ROOT = Path(__file__).resolve().parent.parent
ENTITIES = "query($r: [_Any!]!) { _entities(representations: $r) { __typename ... on Order { %s } ... on Customer { id name } } }"


@contextlib.asynccontextmanager
async def subgraph(plant_url: str, *, auth: AuthConfig | None = None, federation: bool = True) -> AsyncIterator[tuple[str, Any]]:
    cfg = Config.for_plant(plant_url)
    cfg.events.journal_path = ":memory:"
    cfg.auth = auth or AuthConfig(mode="open")
    cfg.limits = LimitsConfig(document_seconds_per_second=0, rate_per_second=1000, rate_burst=1000)
    cfg.federation.enabled = federation
    app = create_app(cfg)
    async with serve_asgi(app) as url:
        await app.state.gateway.exceptions.settled(30)
        yield url, app


async def post(http: Any, url: str, query: str, variables: dict | None = None, headers: dict | None = None) -> dict:
    async with http.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, headers=headers or {}) as resp:
        assert resp.status < 500, resp.status
        return await resp.json(content_type=None)


def bearer(role: str, customer: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(SECRET, role=role, customer=customer)}"}


@pytest.fixture
async def fed(plant):
    async with subgraph(plant.url) as running:
        yield running


async def order_ids(http: Any, url: str, n: int, headers: dict | None = None) -> list[dict]:
    body = await post(http, url, "query($n: Int!) { orders(first: $n) { nodes { id customerId } } }", {"n": n}, headers)
    return body["data"]["orders"]["nodes"]


async def test_service_sdl_is_the_checked_in_subgraph_file(fed, http):
    url, _ = fed
    body = await post(http, url, "{ _service { sdl } }")
    sdl = body["data"]["_service"]["sdl"]
    assert sdl == subgraph_sdl() == (ROOT / "subgraph.graphql").read_text()
    assert 'type Order @key(fields: "id"' in sdl and 'type Customer @key(fields: "id"' in sdl
    assert "union _Entity = Customer | Order" in sdl and "https://specs.apollo.dev/federation/v2" in sdl
    # the plain contract carries no federation fields or directives
    plain = (ROOT / "schema.graphql").read_text()
    assert "_entities" not in plain and "@key" not in plain and "@link" not in plain


async def test_entities_resolve_in_order_with_nulls_for_missing(fed, http):
    url, _ = fed
    orders = await order_ids(http, url, 3)
    reps = [{"__typename": "Order", "id": o["id"]} for o in orders]
    reps.insert(1, {"__typename": "Order", "id": "99999999"})
    reps.append({"__typename": "Customer", "id": orders[0]["customerId"]})
    body = await post(http, url, ENTITIES % "id customerId stage", {"r": reps})
    assert "errors" not in body, body
    got = body["data"]["_entities"]
    assert [g and g.get("id") for g in got] == [orders[0]["id"], None, orders[1]["id"], orders[2]["id"], orders[0]["customerId"]]
    assert got[0]["customerId"] == orders[0]["customerId"] and got[0]["stage"]
    assert got[4]["__typename"] == "Customer" and got[4]["name"]


async def test_entities_bad_representations_are_field_errors_not_500(fed, http):
    url, _ = fed
    body = await post(http, url, ENTITIES % "id", {"r": [{"__typename": "Nope", "id": "1"}, {"__typename": "Order"}, {"__typename": "Order", "id": "A,B"}]})
    assert body["data"]["_entities"] == [None, None, None]
    assert {e["extensions"]["code"] for e in body["errors"]} == {"BAD_USER_INPUT"}


async def test_entities_are_capped_like_a_page(fed, http):
    url, app = fed
    cap = app.state.gateway.config.gateway.max_first
    reps = [{"__typename": "Order", "id": str(10000001 + i)} for i in range(cap + 1)]
    body = await post(http, url, ENTITIES % "id", {"r": reps})
    assert body["data"] is None or body["data"].get("_entities") is None
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT" and str(cap) in body["errors"][0]["message"]


async def _entity_calls(http: Any, url: str, app: Any, plant_url: str, ids: list[str]) -> dict[str, int]:
    app.state.gateway.cache.invalidate_all()
    await reset_plant_stats(http, plant_url)
    body = await post(http, url, ENTITIES % FULL_ORDER, {"r": [{"__typename": "Order", "id": i} for i in ids]})
    assert "errors" not in body, body["errors"][:2]
    assert [e["id"] for e in body["data"]["_entities"]] == ids
    return await plant_stats(http, plant_url)


async def test_entities_cost_one_call_per_source_per_level(fed, http, plant):
    url, app = fed
    ids = [o["id"] for o in await order_ids(http, url, 60)]
    small = await _entity_calls(http, url, app, plant.url, ids[:5])
    large = await _entity_calls(http, url, app, plant.url, ids[5:55])
    assert large == small, (small, large)
    # levels: ERP sales orders → (ERP customers, MES orders, WMS deliveries) → (MES work
    # centres, WMS components, QMS lots, TMS shipments): one call per source per level.
    assert large["erp"] <= 2 and large["mes"] <= 2 and large["wms"] <= 2, large
    assert large["qms"] == 1 and large["tms"] == 1, large


async def test_a_customer_gets_null_for_another_customers_entities(plant, http):
    async with subgraph(plant.url, auth=AuthConfig(mode="jwt", hs256_secret=SECRET)) as (url, _app):
        nodes = await order_ids(http, url, 300, bearer("service"))
        mine = nodes[0]["customerId"]
        own = next(n["id"] for n in nodes if n["customerId"] == mine)
        foreign = next(n for n in nodes if n["customerId"] != mine)
        reps = [
            {"__typename": "Order", "id": own},
            {"__typename": "Order", "id": foreign["id"]},
            {"__typename": "Customer", "id": mine},
            {"__typename": "Customer", "id": foreign["customerId"]},
        ]
        me = bearer("customer", mine)
        body = await post(http, url, ENTITIES % "id customerId", {"r": reps}, me)
        assert "errors" not in body, body
        assert body["data"]["_entities"] == [
            {"__typename": "Order", "id": own, "customerId": mine},
            None,
            {"__typename": "Customer", "id": mine, "name": body["data"]["_entities"][2]["name"]},
            None,
        ]
        # internal fields stay internal through _entities too
        body = await post(http, url, ENTITIES % "id netValue { amount }", {"r": reps[:1]}, me)
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        # the SDL is schema knowledge: not for customers
        body = await post(http, url, "{ _service { sdl } }", None, me)
        assert "data" not in body or not body.get("data"), body
        body = await post(http, url, "{ _service { sdl } }", None, bearer("integrator"))
        assert body["data"]["_service"]["sdl"] == subgraph_sdl()


async def test_without_federation_the_plain_schema_is_served(plant, http):
    async with subgraph(plant.url, federation=False) as (url, _app):
        body = await post(http, url, '{ _entities(representations: [{__typename: "Order", id: "1"}]) { __typename } }')
        assert "Cannot query field '_entities'" in body["errors"][0]["message"]

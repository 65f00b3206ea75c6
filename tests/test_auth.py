"""Identity and the policy layer, against a real gateway with auth on (mode = "jwt").

Real tokens (PyJWT), a real JWKS server on loopback (aiohttp.web) for key rotation, real
WebSockets. The enumeration test builds its probes from the schema, so a new root field
or subscription is probed without touching this file.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    Undefined,
    get_named_type,
    is_leaf_type,
)

from gateway.auth import mint_token
from gateway.config import AuthConfig, LimitsConfig
from resolvers import policy
from resolvers.schema import schema as strawberry_schema

from .events_util import send_changes
from .servers import plant_stats, reset_plant_stats, running_gateway
from .ws_client import PROTOCOL, WsClient

SECRET = "test-secret-for-hs256-tokens-only"
SCHEMA = strawberry_schema._schema
MISSING_ORDER = "99999999"
MISSING_CUSTOMER = "17199999"


def token(role: str = "integrator", customer: str | None = None, **kw: Any) -> str:
    return mint_token(SECRET, role=role, customer=customer, **kw)


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def auth_config(**kw: Any) -> AuthConfig:
    return AuthConfig(mode="jwt", hs256_secret=SECRET, leeway_seconds=0, **kw)


@pytest.fixture
async def secured(plant):
    # The enumeration probes send a hundred new documents at once: no document budget here
    # (tests/test_documents.py tests it).
    limits = LimitsConfig(document_seconds_per_second=0)
    async with running_gateway(plant.url, auth=auth_config(), limits=limits) as (url, app):
        yield url, app


async def post(http: aiohttp.ClientSession, url: str, query: str, tok: str | None, variables: dict | None = None) -> tuple[int, dict]:
    headers = bearer(tok) if tok else {}
    async with http.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def customers_with_orders(http, url: str) -> dict[str, list[str]]:
    status, body = await post(http, url, "{ orders(first: 500) { nodes { id customerId } } }", token("service"))
    assert status == 200, body
    out: dict[str, list[str]] = defaultdict(list)
    for node in body["data"]["orders"]["nodes"]:
        out[node["customerId"]].append(node["id"])
    return out


# --- tokens on HTTP and WebSocket ----------------------------------------------------------


def alg_none_token() -> str:
    def b64(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    now = int(dt.datetime.now(dt.UTC).timestamp())
    claims = {"sub": "x", "role": "integrator", "iss": "ordergraph", "aud": "ordergraph", "iat": now, "exp": now + 600}
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


def bad_tokens() -> dict[str, str]:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    return {
        "expired": token(now=past, ttl_seconds=60),
        "badly signed": mint_token("another-secret-of-at-least-32-bytes", role="integrator"),
        "wrong audience": token(audience="someone-else"),
        "wrong issuer": token(issuer="someone-else"),
        "alg none": alg_none_token(),
        "garbage": "not.a.token",
        "unknown role": jwt.encode(
            {"sub": "x", "role": "admin", "iss": "ordergraph", "aud": "ordergraph", "exp": 2_000_000_000}, SECRET, algorithm="HS256"
        ),
        "customer without customer": jwt.encode(
            {"sub": "x", "role": "customer", "iss": "ordergraph", "aud": "ordergraph", "exp": 2_000_000_000}, SECRET, algorithm="HS256"
        ),
        # validly signed, with time claims no clock can hold (were a 500 / a dropped socket)
        "exp in year 33658": _signed(exp=10**12),
        "exp infinite": _signed(exp=float("inf")),
        # time claims as strings: PyJWT compares int(claim), so they passed and never expired
        "exp as a string": _signed(exp=str(int(time.time()) + 600)),
        "nbf as a string": _signed(nbf=str(int(time.time()))),
        "iat as a string": _signed(iat=str(int(time.time()))),
    }


def _signed(**claims: Any) -> str:
    base = {"sub": "x", "role": "integrator", "iss": "ordergraph", "aud": "ordergraph", "exp": int(time.time()) + 600}
    return jwt.encode({**base, **claims}, SECRET, algorithm="HS256")


async def test_no_token_is_401_and_valid_token_passes(secured, http):
    url, _app = secured
    status, body = await post(http, url, "{ __typename }", None)
    assert status == 401
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    async with http.post(f"{url}/graphql", json={"query": "{ __typename }"}) as resp:
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    status, body = await post(http, url, "{ orders(first: 1) { nodes { id } } }", token("service"))
    assert status == 200 and body["data"]["orders"]["nodes"]


async def test_bad_tokens_refused_on_http_and_websocket(secured, http):
    url, _app = secured
    for name, tok in bad_tokens().items():
        status, body = await post(http, url, "{ __typename }", tok)
        assert status == 401, (name, body)
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", name
        ws = await WsClient.open(url, ack=False)
        await ws.send({"type": "connection_init", "payload": {"Authorization": f"Bearer {tok}"}})
        assert await ws.closed_with() == 4403, name
        assert ws.conn.close_reason.startswith("Forbidden"), name
    # and no token at all on a WebSocket
    ws = await WsClient.open(url, ack=False)
    await ws.send({"type": "connection_init", "payload": {}})
    assert await ws.closed_with() == 4403
    # a good token in any of the usual places is accepted
    for payload in ({"Authorization": f"Bearer {token()}"}, {"token": token()}, {"headers": {"authorization": f"Bearer {token()}"}}):
        ws = await WsClient.open(url, init=payload)
        await ws.close()


async def test_subscription_ends_when_its_token_expires(secured, http, plant):
    url, _app = secured
    soon = token("service", ttl_seconds=2)
    ws = await WsClient.open(url, init={"Authorization": f"Bearer {soon}"})
    await ws.subscribe("c", "subscription { orderChanges { cursor } }")
    assert await ws.closed_with(timeout=15) == 4403
    assert ws.conn.close_reason == "Forbidden: token expired"


async def test_sse_needs_a_token(secured, http):
    url, _app = secured
    q = {"query": "subscription { orderChanges { cursor } }"}
    async with http.post(f"{url}/graphql/stream", json=q, headers={"Accept": "text/event-stream"}) as resp:
        assert resp.status == 401
    headers = {"Accept": "text/event-stream", **bearer(token("service", ttl_seconds=2))}
    async with http.post(f"{url}/graphql/stream", json=q, headers=headers) as resp:
        assert resp.status == 200
        text = (await asyncio.wait_for(resp.text(), 15)).strip()  # the stream ends at expiry
    assert "token expired" in text and text.endswith("event: complete\ndata: null")


async def test_connections_per_viewer_are_capped(plant, http):
    async with running_gateway(plant.url, auth=auth_config(), limits=LimitsConfig(connections_per_viewer=2)) as (url, _app):
        tok = token("service", subject="svc-1")
        a = await WsClient.open(url, init={"token": tok})
        b = await WsClient.open(url, init={"token": tok})
        c = await WsClient.open(url, ack=False)
        await c.send({"type": "connection_init", "payload": {"token": tok}})
        assert await c.closed_with() == 4429
        assert "connections" in c.conn.close_reason
        other = await WsClient.open(url, init={"token": token("service", subject="svc-2")})  # another viewer
        await a.close()
        await asyncio.sleep(0)  # let the server see the close
        for _ in range(50):
            if _app.state.gateway.admission.connections.get("sub:svc-1", 0) < 2:
                break
            await asyncio.sleep(0.05)
        d = await WsClient.open(url, init={"token": tok})  # a slot is free again
        for ws in (b, other, d):
            await ws.close()


async def test_introspection_by_role(secured, http, plant):
    url, _app = secured
    customers = await customers_with_orders(http, url)
    mine = next(iter(customers))
    q = "{ __schema { queryType { name } } }"
    for role, allowed in (("customer", False), ("service", False), ("planner", False), ("integrator", True)):
        status, body = await post(http, url, q, token(role, mine if role == "customer" else None))
        if allowed:
            assert status == 200 and body["data"]["__schema"]["queryType"]["name"] == "Query"
        else:
            assert status == 400, (role, body)
            assert body["errors"][0]["extensions"]["code"] == "INTROSPECTION_DISABLED"
    status, body = await post(http, url, "{ __typename }", token("customer", mine))
    assert status == 200 and body["data"] == {"__typename": "Query"}


# --- field level ----------------------------------------------------------------------------


async def test_internal_fields_refused_for_customers_with_a_clear_error(secured, http):
    url, _app = secured
    customers = await customers_with_orders(http, url)
    mine, orders = next(iter(customers.items()))
    cust = token("customer", mine)
    for selection, field in (
        ("netValue { amount }", "Order.netValue"),
        ("commercialPriority", "Order.commercialPriority"),
        ("items { netValue }", "OrderItem.netValue"),
        ("items { openValue { amount } }", "OrderItem.openValue"),
        ("logistics { deliveries { items { batch } } }", "DeliveryItem.batch"),
        ("production { orders { id } }", "ProductionOrder.id"),
        ("production { orders { batch } }", "ProductionOrder.batch"),
        ("quality { inspectionLots { id } }", "InspectionLot.id"),
        ("customer { commercialPriority }", "Customer.commercialPriority"),
        ("... on Order { erpStatus { creditBlocked } }", "ErpStatus.creditBlocked"),
    ):
        status, body = await post(http, url, f'{{ order(id: "{orders[0]}") {{ id {selection} }} }}', cust)
        assert status == 400, (field, body)
        err = body["errors"][0]
        assert err["extensions"]["code"] == "FORBIDDEN" and field in err["message"], err
    # the customer-safe part of the same order is served
    status, body = await post(
        http, url, f'{{ order(id: "{orders[0]}") {{ id stage deliveryRisk items {{ material quantity openQuantity shippedQuantity }} production {{ orders {{ status }} }} }} }}', cust
    )
    assert status == 200 and body["data"]["order"]["id"] == orders[0], body
    # internal roles see the internal fields
    status, body = await post(http, url, f'{{ order(id: "{orders[0]}") {{ netValue {{ amount }} commercialPriority }} }}', token("service"))
    assert status == 200 and body["data"]["order"]["netValue"]["amount"] > 0


async def test_role_restricted_root_fields():
    # `impact` (exceptions issue) is for planners (and integrators); undeclared root fields
    # are refused for customers: checked here on the declarations themselves.
    assert policy.root_roles("Query", "impact") == {policy.Role.PLANNER, policy.Role.INTEGRATOR}
    assert policy.Role.CUSTOMER not in policy.root_roles("Query", "some_future_field")
    for root, field in policy.schema_root_fields(SCHEMA):
        assert (root, field) in policy.ROOT_ACCESS, f"declare {root}.{field} in resolvers/policy.py ROOT_ACCESS"
    # declarations that name nothing (a renamed field) would hide a hole: keep them exact
    for type_name, field in policy.INTERNAL_FIELDS | set(policy.CUSTOMER_SUBSTITUTES):
        t = SCHEMA.get_type(type_name)
        assert t is not None and (field == "*" or field in t.fields), f"resolvers/policy.py names {type_name}.{field}"
    # the federation subgraph's schema ([federation] enabled) adds _entities and _service
    from resolvers.federation import subgraph_schema

    subgraph = subgraph_schema()._schema
    for root, field in policy.schema_root_fields(subgraph):
        assert (root, field) in policy.ROOT_ACCESS, f"declare {root}.{field} in resolvers/policy.py ROOT_ACCESS"
    for root, field in policy.ROOT_ACCESS:
        named = field in SCHEMA.get_type(root).fields or field in subgraph.get_type(root).fields
        assert named, f"resolvers/policy.py ROOT_ACCESS names {root}.{field}"


# --- row level: the enumeration test ---------------------------------------------------------


def _literal(t: Any, foreign: str) -> str | None:
    """A GraphQL literal for an argument: ids get ``foreign``; None when we can't make one."""
    if isinstance(t, GraphQLNonNull):
        t = t.of_type
    if isinstance(t, GraphQLList):
        inner = _literal(t.of_type, foreign)
        return f"[{inner}]" if inner is not None else None
    name = getattr(t, "name", "")
    if name in ("ID", "String"):
        return json.dumps(foreign)
    if name == "Int":
        return "3"
    if name == "Float":
        return "8.0"
    if name == "Boolean":
        return "true"
    if name == "Date":
        return '"2026-12-01"'
    if name == "DateTime":
        return '"2026-12-01T00:00:00Z"'
    if isinstance(t, GraphQLEnumType):
        return next(iter(t.values))
    if isinstance(t, GraphQLInputObjectType):
        parts = []
        for fname, f in t.fields.items():
            required = isinstance(f.type, GraphQLNonNull) and f.default_value is Undefined
            if required or get_named_type(f.type).name == "ID":
                lit = _literal(f.type, foreign)
                if lit is None:
                    return None
                parts.append(f"{fname}: {lit}")
        return "{" + ", ".join(parts) + "}"
    return None


def _args(field: Any, foreign: str) -> str | None:
    parts = []
    for name, arg in field.args.items():
        required = isinstance(arg.type, GraphQLNonNull) and arg.default_value is Undefined
        named = get_named_type(arg.type)
        if name == "first":
            parts.append("first: 3")
        elif required or named.name == "ID" or isinstance(named, GraphQLInputObjectType):
            lit = _literal(arg.type, foreign)
            if lit is None:
                return None
            parts.append(f"{name}: {lit}")
    return f"({', '.join(parts)})" if parts else ""


def _selection(t: Any, depth: int) -> str:
    """Every customer-safe field a customer may select, a few levels deep."""
    if is_leaf_type(t):
        return ""
    if not hasattr(t, "fields"):
        return "__typename"
    parts = []
    for name, f in t.fields.items():
        if policy.is_internal(t.name, name):
            continue
        if any(isinstance(a.type, GraphQLNonNull) and a.default_value is Undefined for a in f.args.values()):
            continue
        named = get_named_type(f.type)
        args = "(first: 3)" if "first" in f.args else ""
        if is_leaf_type(named):
            parts.append(name)
        elif depth > 0:
            sub = _selection(named, depth - 1)
            if sub:
                parts.append(f"{name}{args} {{ {sub} }}")
    return " ".join(parts) or "__typename"


def probe(root: Any, name: str, foreign: str) -> str | None:
    field = root.fields[name]
    args = _args(field, foreign)
    if args is None:
        return None
    named = get_named_type(field.type)
    sel = _selection(named, 3)
    body = f"{name}{args}" + (f" {{ {sel} }}" if sel else "")
    kind = "subscription" if root is SCHEMA.subscription_type else "query"
    return f"{kind} {{ {body} }}"


def _same_shape(answer: Any, foreign: str, missing: str) -> str:
    """The answer with the probed id blanked out; cursors are sealed with a fresh nonce each
    time (resolvers/pagination.py), so they are blanked out too, and so is the clock
    (plantTime: no one's data, and it moves between two probes)."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: "<cursor>" if k.lower().endswith("cursor") and isinstance(v, str)
                else "<clock>" if k == "plantTime" else walk(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [walk(v) for v in value]
        if isinstance(value, str):
            return value.replace(foreign, "<ID>").replace(missing, "<ID>")
        return value

    return json.dumps(walk(answer), sort_keys=True)


async def test_enumeration_customer_gets_nothing_of_other_customers(secured, http, plant):
    """A customer token against two other customers' ids, on every root field and subscription."""
    url, app = secured
    customers = await customers_with_orders(http, url)
    ranked = sorted(customers, key=lambda c: -len(customers[c]))
    mine, others = ranked[0], ranked[1:3]
    cust = token("customer", mine)
    foreign_orders = [o for c in others for o in customers[c]]
    secrets = set(foreign_orders) | set(others)
    targets = [(customers[c][0], MISSING_ORDER) for c in others] + [(c, MISSING_CUSTOMER) for c in others]

    probed = 0
    for root_name, field in policy.schema_root_fields(SCHEMA):
        root = SCHEMA.get_type(root_name)
        probes = [(f, m, probe(root, field, f), probe(root, field, m)) for f, m in targets]
        for foreign, _m, q_foreign, _q in probes:
            assert q_foreign is not None, f"cannot build a probe for {root_name}.{field} ({foreign}): extend _literal"
        if root is SCHEMA.subscription_type:  # all probes of a field at once, on their own sockets
            answers = await asyncio.gather(*(_ws_first(url, cust, q) for _f, _m, qf, qm in probes for q in (qf, qm)))
        else:
            answers = [await post(http, url, q, cust) for _f, _m, qf, qm in probes for q in (qf, qm)]
            assert all(a[0] < 500 for a in answers), answers
        for i, (foreign, missing, _qf, _qm) in enumerate(probes):
            got, expected = answers[2 * i], answers[2 * i + 1]
            probed += 1
            # exactly the answer for an id that does not exist, and nothing of theirs
            assert _same_shape(got, foreign, missing) == _same_shape(expected, missing, missing), (field, foreign, got, expected)
            text = json.dumps(got)
            leaked = {s for s in secrets if s in text and s != foreign}
            assert not leaked, (field, leaked)
    assert probed >= 4 * len(policy.schema_root_fields(SCHEMA))

    # Own orders come through the same fields (the probes are not vacuous).
    status, body = await post(http, url, "{ orders(first: 500) { nodes { id customerId } } }", cust)
    assert status == 200 and {n["customerId"] for n in body["data"]["orders"]["nodes"]} == {mine}
    assert len(body["data"]["orders"]["nodes"]) == len(customers[mine])
    status, body = await post(http, url, f'{{ order(id: "{customers[mine][0]}") {{ id }} }}', cust)
    assert body["data"]["order"]["id"] == customers[mine][0]


async def _ws_first(url: str, tok: str, query: str) -> Any:
    """The first answer of a subscription (its current state, or its error)."""
    ws = await WsClient.open(url, init={"token": tok})
    try:
        await ws.subscribe("p", query)
        try:
            msg = await ws.recv(timeout=1.0)
        except TimeoutError:
            return "no message"  # orderChanges without `after` sends nothing until a change
        return {"type": msg["type"], "payload": msg.get("payload")}
    finally:
        await ws.close()


async def test_subscriptions_push_nothing_of_other_customers(secured, http, plant):
    url, app = secured
    hub = app.state.gateway.hub
    customers = await customers_with_orders(http, url)
    ranked = sorted(customers, key=lambda c: -len(customers[c]))
    mine, others = ranked[0], ranked[1:3]
    cust = token("customer", mine)
    ws = await WsClient.open(url, init={"token": cust})
    for i, other in enumerate(others):
        await ws.subscribe(f"u{i}", "subscription($id: ID!) { orderUpdated(id: $id) { id stage } }", {"id": customers[other][0]})
        assert (await ws.next(f"u{i}"))["data"] == {"orderUpdated": None}  # as for a missing order
        await ws.subscribe(f"c{i}", "subscription($c: ID) { orderChanges(customer: $c) { cursor order { id } } }", {"c": other})
    await ws.subscribe("all", "subscription { orderChanges { cursor eventType order { id customerId } } }")
    for _ in range(100):  # all five registered with the hub
        if hub.subscriber_count >= 5:
            break
        await asyncio.sleep(0.02)
    # their orders move first, then one of mine
    for other in others:
        for so in customers[other][:3]:
            if changes := plant.world.advance_order(so):
                await send_changes(http, url, plant.world, changes)
    for so in customers[mine]:
        if changes := plant.world.advance_order(so):
            await send_changes(http, url, plant.world, changes)
            break
    # the first message is about my order: nothing of theirs came before it
    msg = await ws.recv(timeout=10)
    while msg["type"] == "pong":
        msg = await ws.recv(timeout=10)
    assert msg["id"] == "all", msg
    assert msg["payload"]["data"]["orderChanges"]["order"]["customerId"] == mine
    await ws.close()


async def test_foreign_order_costs_the_same_source_calls_as_a_missing_one(secured, http, plant):
    url, app = secured
    customers = await customers_with_orders(http, url)
    mine, other = list(customers)[:2]
    cust = token("customer", mine)
    q = "query($id: ID!) { order(id: $id) { id stage production { status } } }"
    tracker = app.state.gateway.exceptions
    if tracker is not None:
        await tracker.settled()  # its first scan of every order reads the sources too
    calls = []
    for so in (customers[other][0], MISSING_ORDER):
        app.state.gateway.cache.invalidate_all()
        await reset_plant_stats(http, plant.url)
        status, body = await post(http, url, q, cust, {"id": so})
        assert status == 200 and body == {"data": {"order": None}}
        calls.append(await plant_stats(http, plant.url))
    assert calls[0] == calls[1], calls


# --- JWKS: RS256 / ES256, rotation ------------------------------------------------------------


class JwksServer:
    """A JWKS endpoint on loopback whose key set the test can rotate."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.fetches += 1
        return web.json_response({"keys": self.keys})


@contextlib.asynccontextmanager
async def jwks_server() -> AsyncIterator[JwksServer]:
    server = JwksServer()
    app = web.Application()
    app.router.add_get("/jwks.json", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"http://127.0.0.1:{port}/jwks.json"
    try:
        yield server
    finally:
        await runner.cleanup()


def rsa_key(kid: str) -> tuple[Any, dict[str, Any]]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    return private, {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


def ec_key(kid: str) -> tuple[Any, dict[str, Any]]:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    return private, {**jwk, "kid": kid, "use": "sig"}


def signed(private: Any, kid: str, alg: str, **claims: Any) -> str:
    now = int(dt.datetime.now(dt.UTC).timestamp())
    body = {"sub": "idp-user", "role": "service", "iss": "ordergraph", "aud": "ordergraph", "iat": now, "exp": now + 600, **claims}
    return jwt.encode(body, private, algorithm=alg, headers={"kid": kid})


async def test_jwks_rs256_es256_and_key_rotation(plant, http):
    async with jwks_server() as idp:
        k1, jwk1 = rsa_key("k1")
        k2, jwk2 = rsa_key("k2")
        e1, ejwk1 = ec_key("e1")
        idp.keys = [jwk1, ejwk1]
        cfg = AuthConfig(mode="jwt", jwks_url=idp.url, jwks_min_refetch_seconds=0)
        async with running_gateway(plant.url, auth=cfg) as (url, _app):
            assert (await post(http, url, "{ __typename }", signed(k1, "k1", "RS256")))[0] == 200
            assert (await post(http, url, "{ __typename }", signed(e1, "e1", "ES256")))[0] == 200
            # rotation at the identity provider: k2 in, k1 out, no restart
            idp.keys = [jwk2, ejwk1]
            assert (await post(http, url, "{ __typename }", signed(k2, "k2", "RS256")))[0] == 200
            status, body = await post(http, url, "{ __typename }", signed(k1, "k1", "RS256"))
            assert status == 401 and "unknown signing key" in body["errors"][0]["message"]
            # the WebSocket takes the same keys
            ws = await WsClient.open(url, init={"Authorization": f"Bearer {signed(k2, 'k2', 'RS256')}"})
            await ws.close()
            # algorithm confusion: an ES256 token naming an RSA key; an HS256 token signed
            # with the RSA public key as the HMAC secret (built by hand: PyJWT refuses to)
            es_naming_rsa = signed(e1, "k2", "ES256")
            status, body = await post(http, url, "{ __typename }", es_naming_rsa)
            assert status == 401 and "not a ES256 key" in body["errors"][0]["message"]
            pem = k2.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            status, body = await post(http, url, "{ __typename }", _hs256_raw(pem, kid="k2"))
            assert status == 401 and "HS256" in body["errors"][0]["message"]


def _hs256_raw(key: bytes, kid: str) -> str:
    """An HS256 token signed with ``key`` by hand (the classic RS256 → HS256 confusion)."""
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    claims = b64(json.dumps({"sub": "x", "role": "integrator", "iss": "ordergraph", "aud": "ordergraph", "exp": 2_000_000_000}).encode())
    sig = hmac.new(key, f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{b64(sig)}"


async def test_unknown_kids_do_not_flood_the_identity_provider(plant, http):
    async with jwks_server() as idp:
        k1, jwk1 = rsa_key("k1")
        idp.keys = [jwk1]
        cfg = AuthConfig(mode="jwt", jwks_url=idp.url, jwks_min_refetch_seconds=3600)
        async with running_gateway(plant.url, auth=cfg) as (url, _app):
            assert (await post(http, url, "{ __typename }", signed(k1, "k1", "RS256")))[0] == 200
            assert idp.fetches == 1
            for i in range(20):
                assert (await post(http, url, "{ __typename }", signed(k1, f"made-up-{i}", "RS256")))[0] == 401
            assert idp.fetches == 1  # at most one refetch per interval, and the first fetch is recent


async def test_open_mode_is_explicit_and_still_checks_tokens(plant, http):
    async with running_gateway(plant.url, auth=AuthConfig(mode="open", hs256_secret=SECRET)) as (url, _app):
        status, body = await post(http, url, "{ __schema { queryType { name } } }", None)
        assert status == 200  # no token: the open demo viewer (integrator-like)
        assert (await post(http, url, "{ __typename }", mint_token("a-wrong-secret-of-at-least-32-bytes", role="service")))[0] == 401
        customers = await customers_with_orders(http, url)
        mine = next(iter(customers))
        status, body = await post(http, url, "{ orders(first: 500) { nodes { customerId } } }", token("customer", mine))
        assert {n["customerId"] for n in body["data"]["orders"]["nodes"]} == {mine}


async def test_production_default_is_jwt():
    assert AuthConfig().mode == "jwt"
    assert AuthConfig().hs256_secret == ""


def test_ws_protocol_constant():
    assert PROTOCOL == "graphql-transport-ws"


# --- GraphiQL with a token, in a real browser -----------------------------------------------------


async def test_graphiql_token_field_works_for_queries_and_subscriptions(secured, http, plant):
    from gateway.graphiql import assets_present

    from .browser import browser_page, require_browser

    require_browser()
    if not assets_present():
        pytest.skip("GraphiQL assets missing: run `ordergraph assets`")
    url, _app = secured
    customers = await customers_with_orders(http, url)
    mine, orders = next(iter(customers.items()))
    so = orders[0]

    async def editor(page: Any, selector: str, text: str) -> None:
        await page.locator(f"{selector} .CodeMirror").first.evaluate("(el, t) => el.CodeMirror.setValue(t)", text)
        await asyncio.sleep(0.5)  # GraphiQL re-reads the operation name after a short debounce

    async def result(page: Any, needle: str) -> str:
        text = ""
        for _ in range(150):
            text = await page.locator(".result-window .CodeMirror").first.evaluate("el => el.CodeMirror.getValue()")
            if needle in text:
                return text
            await asyncio.sleep(0.1)
        raise AssertionError(f"{needle!r} not in GraphiQL's result: {text[:500]}")

    async with browser_page(url) as (page, blocked):
        # the demo's link form: the token in the fragment, never sent to the server in the URL
        await page.goto(f"{url}/graphql#token={token('customer', mine)}", wait_until="networkidle")
        await page.wait_for_selector(".graphiql-container", timeout=15000)
        assert "#token" not in page.url
        await editor(page, ".graphiql-query-editor", f'{{ order(id: "{so}") {{ id stage }} }}')
        await page.click(".graphiql-execute-button")
        assert so in await result(page, '"stage"')
        # the token rides in connection_init: a customer's subscription sees its own order move
        await editor(page, ".graphiql-query-editor", "subscription { orderChanges { cursor order { id customerId } } }")
        await page.click(".graphiql-execute-button")
        for _ in range(100):
            if _app.state.gateway.hub.subscriber_count:
                break
            await asyncio.sleep(0.05)
        for candidate in orders:
            if changes := plant.world.advance_order(candidate):
                await send_changes(http, url, plant.world, changes)
                break
        assert mine in await result(page, "orderChanges")
        # a wrong token: refused with a clear error in the result pane
        await page.fill("#token", "not-a-token")
        await page.dispatch_event("#token", "change")
        await page.wait_for_selector(".graphiql-container", timeout=15000)
        await editor(page, ".graphiql-query-editor", "{ __typename }")
        await page.click(".graphiql-execute-button")
        assert "Unauthorized" in await result(page, "Unauthorized")
        assert not blocked, f"GraphiQL tried to reach the internet: {blocked}"


async def test_customers_get_the_customer_safe_exception_text_and_only_their_orders(secured, http):
    url, app = secured
    tracker = app.state.gateway.exceptions
    await tracker.settled()
    q = "{ exceptions(first: 200) { nodes { kind affected { orderId customerId description customerDescription } } } }"
    status, body = await post(http, url, q, token("service"))
    assert status == 200, body
    hits = [a for n in body["data"]["exceptions"]["nodes"] for a in n["affected"]]
    assert hits, "the plant should have some open exceptions"
    internal = {a["description"] for a in hits} - {a["customerDescription"] for a in hits}
    customer = next(a["customerId"] for a in hits if a["description"] != a["customerDescription"])
    cust = token("customer", customer)
    q = "{ exceptions(first: 200) { nodes { kind description affected { orderId description } affectedOrders { id customerId } } } }"
    status, body = await post(http, url, q, cust)
    assert status == 200, body
    nodes = body["data"]["exceptions"]["nodes"]
    assert nodes
    own = {a["orderId"] for a in hits if a["customerId"] == customer}
    for node in nodes:
        assert {a["orderId"] for a in node["affected"]} <= own
        assert {o["customerId"] for o in node["affectedOrders"]} == {customer}
        assert node["description"] not in internal
    # the internal fields of an exception are refused
    status, body = await post(http, url, "{ exceptions(first: 5) { nodes { rootCause { key } } } }", cust)
    assert status == 400 and body["errors"][0]["extensions"]["code"] == "FORBIDDEN"

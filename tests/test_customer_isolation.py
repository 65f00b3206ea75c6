"""What a customer may not read: cursors, source error detail, the readiness report,
other customers' exception steps, and (by timing) which order numbers exist.

Real gateway under uvicorn with JWTs, real simulated plant, real HTTP/WebSocket clients.
Timings are never asserted: "the same path" is checked as the same reads (source calls and
record-cache look-ups) for another customer's order and for a missing number.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest

from gateway.auth import mint_token
from gateway.config import AuthConfig, LimitsConfig
from resolvers.enums import Severity
from resolvers.exception_rules import Detection, ExceptionKind, ExceptionRecord, RootCause

from .servers import running_gateway
from .ws_client import WsClient

SECRET = "test-secret-for-the-customer-isolation-tests"
MISSING_ORDER = "99999999"
NOW = dt.datetime(2026, 6, 1, 8, 0, tzinfo=dt.UTC)


def bearer(role: str = "service", customer: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(SECRET, role=role, customer=customer)}"}


async def post(http: Any, url: str, query: str, headers: dict[str, str], variables: dict | None = None) -> dict:
    async with http.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, headers=headers) as resp:
        assert resp.status < 500, resp.status
        return await resp.json(content_type=None)


def raw(cursor: str) -> bytes:
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))


@pytest.fixture
async def secured(plant):
    limits = LimitsConfig(document_seconds_per_second=0, rate_per_second=1000, rate_burst=1000)
    async with running_gateway(plant.url, auth=AuthConfig(mode="jwt", hs256_secret=SECRET), limits=limits) as (url, app):
        await app.state.gateway.exceptions.settled(30)
        yield url, app


async def customer_with_orders(http: Any, url: str) -> tuple[str, list[str], str]:
    """A customer, its order numbers, and an order of another customer."""
    body = await post(http, url, "{ orders(first: 300) { nodes { id customerId } } }", bearer())
    by: dict[str, list[str]] = {}
    for n in body["data"]["orders"]["nodes"]:
        by.setdefault(n["customerId"], []).append(n["id"])
    mine = max(by, key=lambda c: len(by[c]))
    foreign = next(o for c, orders in by.items() if c != mine for o in orders)
    return mine, by[mine], foreign


# --- cursors ---------------------------------------------------------------------------


async def test_cursors_are_sealed_and_cannot_be_made_up(secured, http):
    url, app = secured
    mine, orders, _ = await customer_with_orders(http, url)
    me = bearer("customer", mine)
    page = await post(http, url, "{ orders(first: 2) { edges { cursor node { id } } pageInfo { endCursor } } }", me)
    edges = page["data"]["orders"]["edges"]
    board = await post(http, url, "{ exceptions(first: 5) { edges { cursor node { id } } transitionCursor } }", bearer())
    seq = app.state.gateway.exceptions.last_cursor
    cursors = {e["node"]["id"]: e["cursor"] for e in edges}
    # An order page cursor holds nothing readable of its order; a resume cursor nothing of
    # the plant-wide counters; a board cursor nothing of ids or values at risk.
    for so, cursor in cursors.items():
        assert so.encode() not in raw(cursor) and b"order" not in raw(cursor)
    transition = board["data"]["exceptions"]["transitionCursor"]
    assert b"transition" not in raw(transition) and str(seq).encode() not in raw(transition)
    assert board["data"]["exceptions"]["edges"], "the plant has open exceptions"
    for e in board["data"]["exceptions"]["edges"]:
        assert e["node"]["id"].encode() not in raw(e["cursor"]) and b"exceptions" not in raw(e["cursor"])
    ws = await WsClient.open(url, init=me)
    await ws.subscribe("u", 'subscription ($id: ID!) { orderUpdated(id: $id) { id } }', {"id": orders[0]})
    resume = (await ws.next("u"))["extensions"]["cursor"]
    await ws.close()
    assert orders[0].encode() not in raw(resume) and b"change" not in raw(resume)

    # The cursors still work ...
    nxt = await post(http, url, "query ($a: String) { orders(first: 2, after: $a) { nodes { id } } }", me, {"a": page["data"]["orders"]["pageInfo"]["endCursor"]})
    assert [n["id"] for n in nxt["data"]["orders"]["nodes"]] == sorted(orders)[2:4]
    # ... and a made-up one (the old readable form), or one of another kind, is refused.
    forged = base64.urlsafe_b64encode(f"order:{orders[0]}".encode()).decode()
    for query, after in (
        ("query ($a: String) { orders(first: 2, after: $a) { nodes { id } } }", forged),
        ("query ($a: String) { exceptions(first: 2, after: $a) { totalCount } }", edges[0]["cursor"]),
        ("query ($a: String) { exceptions(first: 2, after: $a) { totalCount } }", transition),
    ):
        body = await post(http, url, query, me, {"a": after})
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
        assert "Invalid cursor" in body["errors"][0]["message"]


async def test_cursor_key_outlives_a_restart_and_is_shared_by_a_configured_secret(plant, http, tmp_path):
    journal = str(tmp_path / "journal.sqlite")
    q = "query ($a: String) { orders(first: 3, after: $a) { nodes { id } pageInfo { endCursor } } }"
    async with running_gateway(plant.url, journal_path=journal) as (url, _app):
        first = (await post(http, url, q, {}))["data"]["orders"]
    assert (tmp_path / "journal.cursor-key").stat().st_mode & 0o077 == 0  # the owner's alone
    async with running_gateway(plant.url, journal_path=journal) as (url, _app):  # restarted
        second = await post(http, url, q, {}, {"a": first["pageInfo"]["endCursor"]})
        assert "errors" not in second, second
        assert second["data"]["orders"]["nodes"][0]["id"] > first["nodes"][-1]["id"]
    # Replicas without a shared journal share cursors through [gateway] cursor_secret.
    async with running_gateway(plant.url, cursor_secret="one-plant-secret") as (a, _), running_gateway(
        plant.url, cursor_secret="one-plant-secret"
    ) as (b, _), running_gateway(plant.url, cursor_secret="another-secret") as (c, _):
        end = (await post(http, a, q, {}))["data"]["orders"]["pageInfo"]["endCursor"]
        assert "errors" not in await post(http, b, q, {}, {"a": end})
        assert (await post(http, c, q, {}, {"a": end}))["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


# --- source errors and /readyz ---------------------------------------------------------------


async def test_customers_get_customer_safe_words_for_source_faults(plant, http):
    auth = AuthConfig(mode="jwt", hs256_secret=SECRET)
    async with running_gateway(plant.url, auth=auth, sources={"mes": {"stale_if_error": False}}) as (url, app):
        mine, orders, _ = await customer_with_orders(http, url)
        await app.state.gateway.exceptions.settled(30)  # no read of the tracker's in flight
        async with http.post(f"{plant.url}/control/faults", json={"mes": {"mode": "error"}}) as resp:
            assert resp.status == 200
        # Records read before the fault would answer from the record cache (rightly, they
        # are fresh): forget them, so the query reaches the failing MES.
        app.state.gateway.cache.invalidate_all()
        await _safe_words(http, url, plant, mine, orders)


async def _safe_words(http: Any, url: str, plant: Any, mine: str, orders: list[str]) -> None:
    try:
        q = "query ($id: ID!) { order(id: $id) { id production { status } } }"
        customer = await post(http, url, q, bearer("customer", mine), {"id": orders[0]})
        [err] = customer["errors"]
        # (the exception tracker's own reads may open the MES breaker first: the same words)
        assert err["extensions"]["code"] in ("SOURCE_UNAVAILABLE", "CIRCUIT_OPEN"), err
        assert err["message"] == "This part of the order is temporarily unavailable. Please try again shortly."
        text = str(customer)
        assert "A_ProductionOrder" not in text and "HTTP" not in text and "127.0.0.1" not in text
        # internal viewers keep the detail
        internal = await post(http, url, q, bearer("service"), {"id": orders[0]})
        assert internal["errors"][0]["message"].startswith("MES: A_"), internal  # the entity set, the cause
    finally:
        async with http.delete(f"{plant.url}/control/faults") as resp:
            assert resp.status == 200


async def test_readyz_gives_the_source_report_to_internal_viewers_only(secured, http):
    url, _app = secured
    for headers in ({}, bearer("customer", "C1"), {"Authorization": "Bearer not-a-token"}):
        async with http.get(f"{url}/readyz", headers=headers) as resp:
            assert resp.status == 200
            assert await resp.json() == {"status": "ready"}, headers
    async with http.get(f"{url}/readyz", headers=bearer("service")) as resp:
        report = await resp.json()
        assert report["status"] == "ready" and set(report["sources"]) == {"erp", "mes", "wms", "qms", "tms"}


# --- exceptionsChanged: only what the customer can see -----------------------------------------


def _record(*orders: tuple[str, str, Severity, int]) -> ExceptionRecord:
    root = RootCause("mes", "WorkCenter", "WC-20", "CNC milling")
    promise = dt.date(2026, 6, 10)
    affected = {
        so: Detection(ExceptionKind.MACHINE_DOWN, root, so, cust, "NORMAL", sev, late, 0.0, 100.0, "EUR", promise, promise, ("WC-20",), "i", "c")
        for so, cust, sev, late in orders
    }
    return ExceptionRecord("MACHINE_DOWN:mes:WC-20", ExceptionKind.MACHINE_DOWN, root, NOW, affected)


async def test_exception_steps_reach_a_customer_only_when_its_own_orders_change(secured):
    from resolvers.exception_types import transition_message
    from resolvers.policy import Role, Viewer

    _url, app = secured
    tracker, journal = app.state.gateway.exceptions, app.state.gateway.journal
    before = _record(("1", "A", Severity.HIGH, 2), ("2", "B", Severity.LOW, 0))
    after_b = _record(("1", "A", Severity.HIGH, 2), ("2", "B", Severity.HIGH, 3), ("3", "B", Severity.LOW, 0))
    after_a = _record(("1", "A", Severity.CRITICAL, 4), ("2", "B", Severity.HIGH, 3), ("3", "B", Severity.LOW, 0))
    start = tracker.last_cursor
    await tracker._record([("UPDATED", after_b, before)], NOW)  # only B's orders changed or joined
    await tracker._record([("UPDATED", after_a, after_b)], NOW)  # A's order changed
    rows = await journal.exception_transitions_after(start)
    assert [sorted(c["salesOrder"] for c in r.payload["changed"]) for r in rows] == [["2", "3"], ["1"]]
    a, b = Viewer(Role.CUSTOMER, customer="A"), Viewer(Role.CUSTOMER, customer="B")

    def seen(viewer: Viewer) -> list[bool]:
        return [transition_message(r.payload, r.cursor, r.at, min_severity=None, customer=None, viewer=viewer) is not None for r in rows]

    assert seen(a) == [False, True]  # was: a message for B's orders too
    assert seen(b) == [True, False]
    internal = [transition_message(r.payload, r.cursor, r.at, min_severity=None, customer=None) for r in rows]
    assert all(t is not None for t in internal)  # internal viewers see every step


# --- the same path for another customer's order and a missing number ---------------------------


async def test_another_customers_order_takes_the_path_of_a_missing_one(secured, http, plant):
    url, app = secured
    mine, orders, foreign = await customer_with_orders(http, url)
    gateway = app.state.gateway
    me = bearer("customer", mine)
    q = "query ($id: ID!) { order(id: $id) { id stage } }"
    assert (await post(http, url, q, me, {"id": orders[0]}))["data"]["order"]["id"] == orders[0]  # own: readable
    erp = gateway.sources.erp.client.resilience

    async def reads(order: str) -> tuple[Any, ...]:
        cache = gateway.cache
        hits, misses, calls = cache.hits, cache.misses, erp.calls
        body = await post(http, url, q, me, {"id": order})
        return body, cache.hits - hits, cache.misses - misses, erp.calls - calls

    other = await reads(foreign)  # its record is in the cache (the exception tracker read it)
    missing = await reads(MISSING_ORDER)  # no such record anywhere
    assert other[0] == missing[0] == {"data": {"order": None}}
    assert other[1:] == missing[1:]  # the same look-ups and source calls ...
    assert other[3] == 0  # ... and no ERP read of either order: ownership was known first

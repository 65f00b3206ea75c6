"""Workflow on exceptions end to end: the simulated plant, the gateway under uvicorn with
real tokens, GraphQL over HTTP, graphql-transport-ws, the SQLite store on disk."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import aiohttp
import pytest

from gateway.auth import mint_token
from gateway.config import AuthConfig

from .servers import running_gateway
from .ws_client import WsClient

SECRET = "workflow-test-secret-of-at-least-32-bytes"

ACK = """mutation($id: ID!, $m: String!, $c: String) { acknowledgeException(exceptionId: $id, clientMutationId: $m, comment: $c) {
  clientMutationId replayed entry { seq action actor at text } workflow { status acknowledged acknowledgedBy } } }"""
ASSIGN = """mutation($id: ID!, $m: String!, $a: AssigneeInput) { assignException(exceptionId: $id, clientMutationId: $m, assignee: $a) {
  replayed entry { seq action } workflow { assignee { kind name } } } }"""
COMMENT = """mutation($id: ID!, $m: String!, $t: String!) { commentOnException(exceptionId: $id, clientMutationId: $m, text: $t) {
  replayed entry { seq action text } workflow { commentCount } } }"""
SNOOZE = """mutation($id: ID!, $m: String!, $u: DateTime!) { snoozeException(exceptionId: $id, clientMutationId: $m, until: $u) {
  replayed entry { seq action until } workflow { status snoozed snoozedUntil } } }"""
RESOLVE = """mutation($id: ID!, $m: String!, $r: String!) { resolveException(exceptionId: $id, clientMutationId: $m, reason: $r) {
  replayed entry { seq action text } workflow { status resolved resolvedBy resolution } } }"""
REOPEN = """mutation($id: ID!, $m: String!) { reopenException(exceptionId: $id, clientMutationId: $m) {
  replayed entry { seq action } workflow { status acknowledged resolved } } }"""
ESCALATE = """mutation($o: ID!, $m: String!, $r: String!, $x: DateTime!) {
  escalateOrder(orderId: $o, clientMutationId: $m, reason: $r, expiresAt: $x) {
    replayed entry { seq action } escalation { orderId active reason expiresAt escalatedBy } } }"""
WITHDRAW = """mutation($o: ID!, $m: String!) { withdrawEscalation(orderId: $o, clientMutationId: $m) {
  escalation { active withdrawnBy } } }"""
BOARD = """query($f: ExceptionFilter) { exceptions(filter: $f, first: 500) { totalCount nodes {
  id severity valueAtRisk { amount } affected { orderId severity }
  workflow { status acknowledged acknowledgedBy assignee { kind name } snoozed snoozedUntil resolved } } } }"""
TRAIL = """query($id: ID!) { exception(id: $id) { id workflow { status trail { seq action actor role at text
  assignee { kind name } until orderIds summary } } } }"""
ORDER_TRAIL = """query($id: ID!) { order(id: $id) { id workflowHistory { seq action actor exceptionId summary }
  escalation { active reason } } }"""


def token(role: str = "service", subject: str | None = None, customer: str | None = None) -> str:
    return mint_token(SECRET, role=role, subject=subject, customer=customer)


class Client:
    """GraphQL over HTTP as one person (a token), or with no token in open mode."""

    def __init__(self, http: aiohttp.ClientSession, url: str, tok: str | None = None) -> None:
        self.http, self.url, self.tok = http, url, tok

    async def post(self, query: str, variables: dict[str, Any] | None = None) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {self.tok}"} if self.tok else {}
        async with self.http.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, headers=headers) as r:
            return r.status, await r.json(content_type=None)

    async def data(self, query: str, variables: dict[str, Any] | None = None) -> dict:
        status, body = await self.post(query, variables)
        assert status == 200 and "errors" not in body, body
        return body["data"]

    async def error(self, query: str, variables: dict[str, Any] | None = None) -> dict:
        """The one error of a request that must fail; returns it."""
        _status, body = await self.post(query, variables)
        assert body.get("errors"), body
        return body["errors"][0]


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture
async def secured(plant, tmp_path):
    auth = AuthConfig(mode="jwt", hs256_secret=SECRET)
    async with running_gateway(plant.url, auth=auth, journal_path=str(tmp_path / "journal.sqlite")) as (url, app):
        await app.state.gateway.exceptions.settled(60)
        yield url, app


async def some_exceptions(c: Client) -> list[dict]:
    nodes = (await c.data(BOARD))["exceptions"]["nodes"]
    assert nodes, "the simulated plant has open exceptions at start"
    return nodes


async def test_people_act_on_an_exception_and_the_trail_says_who_when_what(secured, http) -> None:
    url, _app = secured
    alice, bob = Client(http, url, token(subject="alice")), Client(http, url, token("planner", subject="bob"))
    eid = (await some_exceptions(alice))[0]["id"]
    v = {"id": eid}

    ack = (await alice.data(ACK, {**v, "m": "a-1", "c": "looking at it"}))["acknowledgeException"]
    assert ack["workflow"] == {"status": "ACKNOWLEDGED", "acknowledged": True, "acknowledgedBy": "alice"}
    assert ack["entry"]["actor"] == "alice" and ack["entry"]["text"] == "looking at it"
    err = await bob.error(ACK, {**v, "m": "b-1"})
    assert err["extensions"]["reason"] == "CONFLICT" and "alice" in err["message"]

    team = (await alice.data(ASSIGN, {**v, "m": "a-2", "a": {"team": "Quality"}}))["assignException"]
    assert team["workflow"]["assignee"] == {"kind": "TEAM", "name": "Quality"}
    me = (await bob.data(ASSIGN, {**v, "m": "b-2", "a": {"person": "bob"}}))["assignException"]
    assert me["workflow"]["assignee"] == {"kind": "PERSON", "name": "bob"}
    both = await bob.error(ASSIGN, {**v, "m": "b-3", "a": {"person": "bob", "team": "Quality"}})
    assert both["extensions"]["code"] in ("BAD_USER_INPUT", "GRAPHQL_VALIDATION_FAILED")

    assert (await bob.data(COMMENT, {**v, "m": "b-4", "t": "supplier ships Friday"}))["commentOnException"]["workflow"] == {"commentCount": 1}

    until = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    snoozed = (await bob.data(SNOOZE, {**v, "m": "b-5", "u": iso(until)}))["snoozeException"]["workflow"]
    assert snoozed["status"] == "SNOOZED" and snoozed["snoozed"]
    past = await bob.error(SNOOZE, {**v, "m": "b-6", "u": iso(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))})
    assert past["extensions"]["code"] == "BAD_USER_INPUT"

    # The board's filters: snoozed, mine (bob's, not alice's), unassigned.
    def ids(data: dict) -> set[str]:
        return {n["id"] for n in data["exceptions"]["nodes"]}

    assert eid in ids(await bob.data(BOARD, {"f": {"status": ["SNOOZED"]}}))
    assert eid not in ids(await bob.data(BOARD, {"f": {"status": ["NEW", "ACKNOWLEDGED"]}}))
    assert ids(await bob.data(BOARD, {"f": {"mine": True}})) == {eid}
    assert ids(await alice.data(BOARD, {"f": {"mine": True}})) == set()
    unassigned = ids(await alice.data(BOARD, {"f": {"unassigned": True}}))
    everything = ids(await alice.data(BOARD))
    assert eid not in unassigned and unassigned == everything - {eid}

    assert (await bob.error(RESOLVE, {**v, "m": "b-7", "r": " "}))["extensions"]["code"] == "BAD_USER_INPUT"
    resolved = (await alice.data(RESOLVE, {**v, "m": "a-3", "r": "replacement batch released"}))["resolveException"]["workflow"]
    assert resolved == {"status": "RESOLVED", "resolved": True, "resolvedBy": "alice", "resolution": "replacement batch released"}
    assert (await bob.error(SNOOZE, {**v, "m": "b-8", "u": iso(until)}))["extensions"]["reason"] == "CONFLICT"
    reopened = (await bob.data(REOPEN, {**v, "m": "b-9"}))["reopenException"]["workflow"]
    assert reopened == {"status": "NEW", "acknowledged": False, "resolved": False}
    assert (await bob.error(REOPEN, {**v, "m": "b-10"}))["extensions"]["reason"] == "CONFLICT"

    trail = (await alice.data(TRAIL, v))["exception"]["workflow"]["trail"]
    assert [(e["action"], e["actor"]) for e in trail] == [
        ("ACKNOWLEDGED", "alice"),
        ("ASSIGNED", "alice"),
        ("ASSIGNED", "bob"),
        ("COMMENTED", "bob"),
        ("SNOOZED", "bob"),
        ("RESOLVED", "alice"),
        ("REOPENED", "bob"),
    ]
    assert [e["role"] for e in trail][:3] == ["service", "service", "planner"]
    assert trail[4]["until"] is not None and trail[5]["text"] == "replacement batch released"
    assert trail[1]["summary"] == "assigned to team Quality"
    # The same entries in the history of each order the exception hits.
    order = trail[0]["orderIds"][0]
    history = (await alice.data(ORDER_TRAIL, {"id": order}))["order"]["workflowHistory"]
    assert [e["seq"] for e in history if e["exceptionId"] == eid] == [e["seq"] for e in trail]
    # Unknown exception: a clear NOT_FOUND.
    assert (await alice.error(ACK, {"id": "MACHINE_DOWN:mes:NOPE", "m": "a-9"}))["extensions"]["reason"] == "NOT_FOUND"


async def test_customers_get_forbidden(secured, http, plant) -> None:
    url, _app = secured
    service = Client(http, url, token(subject="alice"))
    eid = (await some_exceptions(service))[0]["id"]
    customer_id = next(iter(plant.world.tables["A_Customer"].records())).customer
    customer = Client(http, url, token("customer", customer=customer_id))
    for query, variables in (
        (ACK, {"id": eid, "m": "c-1"}),
        (RESOLVE, {"id": eid, "m": "c-2", "r": "no"}),
        (ESCALATE, {"o": "1", "m": "c-3", "r": "me first", "x": iso(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))}),
        ("{ exceptions { nodes { workflow { status } } } }", None),
        ("{ exceptions(filter: { mine: true }) { totalCount } }", None),
    ):
        status, body = await customer.post(query, variables)
        assert status in (200, 400, 403), body
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", body
        assert not (body.get("data") or {}).get("acknowledgeException")
    # Nothing was written.
    trail = (await service.data(TRAIL, {"id": eid}))["exception"]["workflow"]["trail"]
    assert trail == []
    ws = await WsClient.open(url, init={"Authorization": f"Bearer {token('customer', customer=customer_id)}"})
    try:
        await ws.subscribe("w", "subscription { exceptionWorkflowChanged { entry { seq } } }")
        msg = await ws.recv()
        assert msg["type"] == "error" and msg["payload"][0]["extensions"]["code"] == "FORBIDDEN", msg
    finally:
        await ws.close()


async def test_a_client_mutation_id_replays_the_first_result(secured, http) -> None:
    url, _app = secured
    alice = Client(http, url, token(subject="alice"))
    eid = (await some_exceptions(alice))[0]["id"]
    first = (await alice.data(ACK, {"id": eid, "m": "retry-1"}))["acknowledgeException"]
    again = (await alice.data(ACK, {"id": eid, "m": "retry-1"}))["acknowledgeException"]
    assert not first["replayed"] and again["replayed"]
    assert again["entry"] == first["entry"] and again["workflow"] == first["workflow"]
    # Replays keep answering the first result after later actions changed the state.
    await alice.data(COMMENT, {"id": eid, "m": "retry-2", "t": "first note"})
    assert (await alice.data(COMMENT, {"id": eid, "m": "retry-2", "t": "first note"}))["commentOnException"] == {
        "replayed": True,
        "entry": {"seq": first["entry"]["seq"] + 1, "action": "COMMENTED", "text": "first note"},
        "workflow": {"commentCount": 1},
    }
    conflict = await alice.error(COMMENT, {"id": eid, "m": "retry-2", "t": "another note"})
    assert conflict["extensions"]["reason"] == "IDEMPOTENCY_CONFLICT"
    # Ten retries at once: still one entry each.
    results = await asyncio.gather(*(alice.data(COMMENT, {"id": eid, "m": "burst", "t": "x"}) for _ in range(10)))
    assert sum(not r["commentOnException"]["replayed"] for r in results) == 1
    trail = (await alice.data(TRAIL, {"id": eid}))["exception"]["workflow"]["trail"]
    assert [e["action"] for e in trail] == ["ACKNOWLEDGED", "COMMENTED", "COMMENTED"]


async def test_workflow_survives_a_restart_on_the_same_files(plant, http, tmp_path) -> None:
    journal = str(tmp_path / "journal.sqlite")
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    async with running_gateway(plant.url, journal_path=journal) as (url, app):
        await app.state.gateway.exceptions.settled(60)
        c = Client(http, url)
        node = (await some_exceptions(c))[0]
        eid, order = node["id"], node["affected"][0]["orderId"]
        await c.data(ACK, {"id": eid, "m": "r-1"})
        await c.data(ASSIGN, {"id": eid, "m": "r-2", "a": {"team": "Logistics"}})
        await c.data(ESCALATE, {"o": order, "m": "r-3", "r": "line stop at the customer", "x": iso(expires)})
    assert (tmp_path / "workflow.sqlite").exists()

    async with running_gateway(plant.url, journal_path=journal) as (url, app):
        await app.state.gateway.exceptions.settled(60)
        c = Client(http, url)
        data = await c.data(BOARD)
        node = next(n for n in data["exceptions"]["nodes"] if n["id"] == eid)
        assert node["workflow"]["acknowledged"] and node["workflow"]["acknowledgedBy"] == "open-demo"
        assert node["workflow"]["assignee"] == {"kind": "TEAM", "name": "Logistics"}
        o = (await c.data(ORDER_TRAIL, {"id": order}))["order"]
        assert o["escalation"] == {"active": True, "reason": "line stop at the customer"}
        assert [e["action"] for e in o["workflowHistory"]][-1] == "ESCALATED"
        # A client retrying across the restart gets the first result, nothing new.
        assert (await c.data(ACK, {"id": eid, "m": "r-1"}))["acknowledgeException"]["replayed"]
        assert len((await c.data(TRAIL, {"id": eid}))["exception"]["workflow"]["trail"]) == 2


async def test_subscribers_see_workflow_changes_live(secured, http) -> None:
    url, _app = secured
    alice = Client(http, url, token(subject="alice"))
    nodes = await some_exceptions(alice)
    eid = nodes[0]["id"]
    ws = await WsClient.open(url, init={"Authorization": f"Bearer {token('planner', subject='pat')}"})
    try:
        await ws.subscribe(
            "one",
            """subscription($id: ID) { exceptionWorkflowChanged(exceptionId: $id) {
                entry { seq action actor text } workflow { status acknowledgedBy } exception { id } } }""",
            {"id": eid},
        )
        await ws.subscribe("all", "subscription { exceptionWorkflowChanged { entry { action exceptionId orderIds } escalation { active } } }")
        await asyncio.sleep(0.2)  # subscribed (no `after`: live from now) before acting
        await alice.data(ACK, {"id": eid, "m": "live-1", "c": "on it"})
        got = {}
        for _ in range(2):
            msg = await ws.recv(10)
            assert msg["type"] == "next", msg
            got[msg["id"]] = msg["payload"]
        one = got["one"]["data"]["exceptionWorkflowChanged"]
        assert one["entry"]["action"] == "ACKNOWLEDGED" and one["entry"]["actor"] == "alice" and one["entry"]["text"] == "on it"
        assert one["workflow"] == {"status": "ACKNOWLEDGED", "acknowledgedBy": "alice"}
        assert one["exception"] == {"id": eid}
        assert got["all"]["data"]["exceptionWorkflowChanged"]["entry"]["exceptionId"] == eid
        # Another exception: only the "all" subscriber hears of it.
        if len(nodes) > 1:
            await alice.data(COMMENT, {"id": nodes[1]["id"], "m": "live-2", "t": "x"})
            msg = await ws.recv(10)
            assert msg["id"] == "all" and msg["payload"]["data"]["exceptionWorkflowChanged"]["entry"]["exceptionId"] == nodes[1]["id"]
        # An escalation: the order's escalation comes along.
        order = nodes[0]["affected"][0]["orderId"]
        x = iso(dt.datetime.now(dt.UTC) + dt.timedelta(hours=3))
        await alice.data(ESCALATE, {"o": order, "m": "live-3", "r": "key account", "x": x})
        msg = await ws.recv(10)
        change = msg["payload"]["data"]["exceptionWorkflowChanged"]
        assert msg["id"] == "all" and change["entry"] == {"action": "ESCALATED", "exceptionId": None, "orderIds": [order]}
        assert change["escalation"] == {"active": True}
        assert await ws.nothing(0.3)
    finally:
        await ws.close()


SEVERITIES = ["LOW", "MEDIUM", "HIGH", "CRITICAL"]


async def test_escalation_raises_severity_and_ranking_until_it_expires(plant, http) -> None:
    offset = [dt.timedelta(0)]

    def clock() -> dt.datetime:
        return dt.datetime.now(dt.UTC) + offset[0]

    async with running_gateway(plant.url, clock=clock, domain_clock=lambda: dt.datetime.now(dt.UTC)) as (url, app):
        await app.state.gateway.exceptions.settled(60)
        c = Client(http, url)
        nodes = await some_exceptions(c)
        # An exception below CRITICAL hitting one order, ranked below some other exception.
        target = next(
            (n for n in nodes[1:] if n["severity"] != "CRITICAL" and len(n["affected"]) == 1),
            None,
        )
        if target is None:
            pytest.skip("no single-order exception below CRITICAL in this plant")
        order, before = target["affected"][0]["orderId"], target["severity"]
        rank_before = [n["id"] for n in nodes].index(target["id"])
        expires = clock() + dt.timedelta(hours=1)
        esc = (await c.data(ESCALATE, {"o": order, "m": "e-1", "r": "key account", "x": iso(expires)}))["escalateOrder"]
        assert esc["escalation"]["active"] and esc["escalation"]["escalatedBy"] == "open-demo"

        raised = SEVERITIES[SEVERITIES.index(before) + 1]
        nodes = (await c.data(BOARD))["exceptions"]["nodes"]
        node = next(n for n in nodes if n["id"] == target["id"])
        assert node["severity"] == raised and node["affected"][0]["severity"] == raised
        rank_after = [n["id"] for n in nodes].index(target["id"])
        assert rank_after < rank_before
        assert [SEVERITIES.index(n["severity"]) for n in nodes] == sorted((SEVERITIES.index(n["severity"]) for n in nodes), reverse=True)
        assert (await c.data("query($id: ID!) { exception(id: $id) { severity } }", {"id": target["id"]}))["exception"]["severity"] == raised
        mine = (await c.data("query($id: ID!) { order(id: $id) { exceptions { id severity } } }", {"id": order}))["order"]["exceptions"]
        assert next(e for e in mine if e["id"] == target["id"])["severity"] == raised
        assert target["id"] in {n["id"] for n in (await c.data(BOARD, {"f": {"minSeverity": raised}}))["exceptions"]["nodes"]}

        # The expiry is honoured: an hour later the order counts as before.
        offset[0] = dt.timedelta(hours=1, minutes=1)
        node = next(n for n in (await c.data(BOARD))["exceptions"]["nodes"] if n["id"] == target["id"])
        assert node["severity"] == before
        assert (await c.data(ORDER_TRAIL, {"id": order}))["order"]["escalation"] == {"active": False, "reason": "key account"}
        assert (await c.error(WITHDRAW, {"o": order, "m": "w-1"}))["extensions"]["reason"] == "CONFLICT"
        assert (await c.error(ESCALATE, {"o": "99999999", "m": "e-2", "r": "x", "x": iso(clock() + dt.timedelta(hours=1))}))[
            "extensions"
        ].get("reason") == "NOT_FOUND"


IMPACT = """query($wc: ID!) { impact(scenario: { workCenterDown: { workCenter: $wc, hours: 40 } }) {
  orders { orderId commercialPriority severity currentSeverity } } }"""


async def test_escalated_order_ranks_first_in_impact(plant, http) -> None:
    async with running_gateway(plant.url) as (url, app):
        await app.state.gateway.exceptions.settled(60)
        c = Client(http, url)
        pos = [p for p in plant.world.tables["A_ProductionOrder"].records() if p.status in ("RELEASED", "CREATED")]
        by_wc: dict[str, set[str]] = {}
        for p in pos:
            by_wc.setdefault(p.work_center, set()).add(p.sales_order)
        wc = max(by_wc, key=lambda w: len(by_wc[w]))
        before = (await c.data(IMPACT, {"wc": wc}))["impact"]["orders"]
        if len(before) < 2:
            pytest.skip("no work centre with two pegged orders")
        last = before[-1]
        await c.data(ESCALATE, {"o": last["orderId"], "m": "i-1", "r": "key account", "x": iso(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))})
        after = (await c.data(IMPACT, {"wc": wc}))["impact"]["orders"]
        assert after[0]["orderId"] == last["orderId"]
        assert after[0]["severity"] == SEVERITIES[min(SEVERITIES.index(last["severity"]) + 1, 3)]
        assert [o["orderId"] for o in after[1:]] == [o["orderId"] for o in before[:-1]]
        await c.data(WITHDRAW, {"o": last["orderId"], "m": "i-2"})
        assert (await c.data(IMPACT, {"wc": wc}))["impact"]["orders"] == before


async def test_two_replicas_on_redis_share_workflow_and_push_each_others_changes(plant, http, prefix) -> None:
    from .servers import REDIS_URL

    def scaleout(replica: str) -> dict[str, Any]:
        # A long poll: what B pushes of A's action comes by Redis pub/sub, not by polling.
        return {"redis_url": REDIS_URL, "key_prefix": prefix, "replica_id": replica, "poll_seconds": 30.0}

    async with (
        running_gateway(plant.url, scaleout=scaleout("a")) as (url_a, app_a),
        running_gateway(plant.url, scaleout=scaleout("b")) as (url_b, app_b),
    ):
        await app_a.state.gateway.exceptions.settled(60)
        await app_b.state.gateway.exceptions.settled(60)
        a, b = Client(http, url_a), Client(http, url_b)
        nodes = await some_exceptions(b)
        eid = nodes[0]["id"]
        ws = await WsClient.open(url_b)
        try:
            await ws.subscribe("w", "subscription { exceptionWorkflowChanged { entry { seq action exceptionId } workflow { status } } }")
            await asyncio.sleep(0.2)
            # Both replicas acknowledge at once: one wins, the other is told who did.
            results = await asyncio.gather(a.post(ACK, {"id": eid, "m": "x-a"}), b.post(ACK, {"id": eid, "m": "x-b"}))
            ok = [body for _s, body in results if not body.get("errors")]
            refused = [body for _s, body in results if body.get("errors")]
            assert len(ok) == 1 and len(refused) == 1
            assert refused[0]["errors"][0]["extensions"]["reason"] == "CONFLICT"
            msg = await ws.recv(10)
            change = msg["payload"]["data"]["exceptionWorkflowChanged"]
            assert change == {"entry": {"seq": ok[0]["data"]["acknowledgeException"]["entry"]["seq"], "action": "ACKNOWLEDGED", "exceptionId": eid}, "workflow": {"status": "ACKNOWLEDGED"}}
            # Acting on A, reading on B: the same state, and B's subscriber hears of it.
            await a.data(ASSIGN, {"id": eid, "m": "x-c", "a": {"team": "Planning"}})
            msg = await ws.recv(10)
            assert msg["payload"]["data"]["exceptionWorkflowChanged"]["entry"]["action"] == "ASSIGNED"
            node = next(n for n in (await b.data(BOARD))["exceptions"]["nodes"] if n["id"] == eid)
            assert node["workflow"]["assignee"] == {"kind": "TEAM", "name": "Planning"}
            # A retry of A's action sent to B replays it.
            assert (await b.data(ASSIGN, {"id": eid, "m": "x-c", "a": {"team": "Planning"}}))["assignException"]["replayed"]
            assert await ws.nothing(0.3)
        finally:
            await ws.close()


async def test_a_page_of_orders_reads_the_workflow_state_once(plant, http) -> None:
    async with running_gateway(plant.url) as (url, app):
        service = app.state.gateway.workflow
        await app.state.gateway.exceptions.settled(60)
        c = Client(http, url)
        node = (await some_exceptions(c))[0]
        order = node["affected"][0]["orderId"]
        await c.data(ESCALATE, {"o": order, "m": "p-1", "r": "key account", "x": iso(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))})
        before = service.state_reads
        data = await c.data("{ orders(first: 200) { nodes { id exceptions { id severity workflow { status } } } } }")
        assert service.state_reads == before + 1
        page = {n["id"]: n for n in data["orders"]["nodes"]}
        if order in page:  # the escalated order's own exceptions are raised there too
            mine = {e["id"]: e["severity"] for e in page[order]["exceptions"]}
            assert mine[node["id"]] == SEVERITIES[min(SEVERITIES.index(node["affected"][0]["severity"]) + 1, 3)]


async def test_age_is_on_the_plants_clock(plant, http) -> None:
    offset = [dt.timedelta(0)]

    def plant_clock() -> dt.datetime:
        return dt.datetime.now(dt.UTC) + offset[0]

    async with running_gateway(plant.url, domain_clock=plant_clock) as (url, app):
        await app.state.gateway.exceptions.settled(60)
        c = Client(http, url)
        query = "{ exceptions(first: 5) { nodes { id detectedAt ageSeconds } } }"
        first = {n["id"]: n for n in (await c.data(query))["exceptions"]["nodes"]}
        offset[0] = dt.timedelta(hours=3)  # the plant's clock runs ahead (as in the demo)
        later = {n["id"]: n for n in (await c.data(query))["exceptions"]["nodes"]}
        same = [i for i in first if i in later and later[i]["detectedAt"] == first[i]["detectedAt"]]
        assert same
        for i in same:
            assert later[i]["ageSeconds"] - first[i]["ageSeconds"] >= 3 * 3600


async def test_workflow_changes_also_stream_over_sse(plant, http) -> None:
    import json

    async with running_gateway(plant.url) as (url, app):
        await app.state.gateway.exceptions.settled(60)
        c = Client(http, url)
        eid = (await some_exceptions(c))[0]["id"]
        body = {"query": "subscription($id: ID) { exceptionWorkflowChanged(exceptionId: $id) { entry { action text } } }", "variables": {"id": eid}}
        async with http.post(f"{url}/graphql/stream", json=body, headers={"Accept": "text/event-stream"}) as resp:
            assert resp.status == 200 and resp.content_type == "text/event-stream"
            await asyncio.sleep(0.2)
            await c.data(COMMENT, {"id": eid, "m": "sse-1", "t": "over SSE"})
            data = None
            while True:
                line = (await asyncio.wait_for(resp.content.readline(), 10)).decode().rstrip("\n")
                if line.startswith("data: "):
                    data = json.loads(line[6:])
                elif line == "" and data is not None:
                    break
        assert data["data"]["exceptionWorkflowChanged"]["entry"] == {"action": "COMMENTED", "text": "over SSE"}


async def test_read_api_for_other_modules(plant, http) -> None:
    """What e.g. notices read: state, is_acknowledged, escalated orders, and a hook per entry."""
    async with running_gateway(plant.url) as (url, app):
        service = app.state.gateway.workflow
        await app.state.gateway.exceptions.settled(60)
        heard: list[Any] = []
        service.listeners.append(heard.append)
        c = Client(http, url)
        node = (await some_exceptions(c))[0]
        eid, order = node["id"], node["affected"][0]["orderId"]
        assert await service.state(eid) is None and not await service.is_acknowledged(eid)
        await c.data(ACK, {"id": eid, "m": "api-1"})
        assert await service.is_acknowledged(eid)
        state = await service.state(eid)
        assert state is not None and state.acknowledged_by == "open-demo" and state.acknowledged_at is not None
        await c.data(ESCALATE, {"o": order, "m": "api-2", "r": "key account", "x": iso(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))})
        assert await service.escalated_orders() == frozenset({order})
        assert service.escalated_now() == frozenset({order})
        assert [(e.action.value, e.exception_id) for e in heard] == [("ACKNOWLEDGED", eid), ("ESCALATED", None)]
        await c.data(RESOLVE, {"id": eid, "m": "api-3", "r": "done"})
        await c.data(REOPEN, {"id": eid, "m": "api-4"})
        assert not await service.is_acknowledged(eid)  # reopened: it needs acknowledging again


async def test_a_subscriber_resumes_with_its_cursor_and_misses_nothing(plant, http) -> None:
    sub = "subscription($after: String) { exceptionWorkflowChanged(after: $after) { entry { seq action text } } }"
    async with running_gateway(plant.url) as (url, app):
        await app.state.gateway.exceptions.settled(60)
        c = Client(http, url)
        eid = (await some_exceptions(c))[0]["id"]
        ws = await WsClient.open(url)
        await ws.subscribe("w", sub)
        await asyncio.sleep(0.2)
        await c.data(COMMENT, {"id": eid, "m": "r-1", "t": "one"})
        first = await ws.next("w", timeout=10)
        cursor = first["extensions"]["cursor"]
        assert first["data"]["exceptionWorkflowChanged"]["entry"]["text"] == "one"
        await ws.close()

        # Offline: two more actions.
        await c.data(COMMENT, {"id": eid, "m": "r-2", "t": "two"})
        await c.data(COMMENT, {"id": eid, "m": "r-3", "t": "three"})

        ws = await WsClient.open(url)
        try:
            await ws.subscribe("w", sub, {"after": cursor})
            missed = [(await ws.next("w", timeout=10))["data"]["exceptionWorkflowChanged"]["entry"]["text"] for _ in range(2)]
            assert missed == ["two", "three"]
            await c.data(COMMENT, {"id": eid, "m": "r-4", "t": "four"})
            live = await ws.next("w", timeout=10)
            assert live["data"]["exceptionWorkflowChanged"]["entry"]["text"] == "four"
            assert await ws.nothing(0.3)
            # A cursor that is not one of ours: a clear error.
            await ws.subscribe("bad", sub, {"after": "not-a-cursor"})
            msg = await ws.recv(10)
            assert msg["type"] == "error" and msg["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT", msg
        finally:
            await ws.close()


async def test_the_internal_notice_rule_hears_the_workflow(secured, http) -> None:
    """The notice engine's "CRITICAL and unacknowledged for N minutes" asks the workflow:
    acknowledged, snoozed or resolved counts as attended; reopened needs attention again."""
    url, app = secured
    gateway = app.state.gateway
    alice = Client(http, url, token(subject="alice"))
    eid = (await some_exceptions(alice))[0]["id"]
    v = {"id": eid}

    async def attended() -> bool:
        answer = gateway.notices.is_acknowledged(eid)
        return await answer if asyncio.iscoroutine(answer) else answer

    assert not await attended()
    await alice.data(ACK, {**v, "m": "n-1"})
    assert await attended()
    await alice.data(RESOLVE, {**v, "m": "n-2", "r": "handled by phone"})
    assert await attended()
    await alice.data(REOPEN, {**v, "m": "n-3"})
    assert not await attended()
    until = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    await alice.data(SNOOZE, {**v, "m": "n-4", "u": iso(until)})
    assert await attended()


async def test_a_customer_naming_a_workflow_filter_is_refused_before_execution(secured, http, plant) -> None:
    """In the document: refused at validation (a 4xx, nothing runs); through variables: the
    resolver refuses it. Either way FORBIDDEN, and no workflow state is read."""
    url, _app = secured
    customer = next(iter(plant.world.tables["A_Customer"].records())).customer
    c = Client(http, url, token("customer", customer=customer))
    for literal in ("{status: [NEW]}", "{mine: false}", "{unassigned: true}"):
        status, doc = await c.post(f"{{ exceptions(filter: {literal}) {{ totalCount }} }}")
        assert status == 400 and doc["errors"][0]["extensions"]["code"] == "FORBIDDEN" and "data" not in doc, doc
    err = await c.error("query($f: ExceptionFilter) { exceptions(filter: $f) { totalCount } }", {"f": {"mine": True}})
    assert err["extensions"]["code"] == "FORBIDDEN"
    assert (await c.data("{ exceptions(filter: {kinds: [MACHINE_DOWN]}) { totalCount } }"))["exceptions"]["totalCount"] >= 0

"""Proactive notices end to end: plant events → decision → outbox → real SMTP server and a
real webhook receiver verifying Standard Webhooks signatures; debounce; retries, dead
letters and replay; customers' endpoints and their isolation."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import aiohttp
import pytest

from gateway.auth import mint_token
from gateway.config import AuthConfig
from gateway.smtp_sink import SmtpSink
from sources.simulator.world import RECEIVING_CALENDAR

from .notice_receivers import webhook_receiver
from .servers import GraphQLClient, running_gateway, running_plant
from .test_exceptions import control, emit, settle

SECRET = "notices-test-secret-of-at-least-32-bytes"

REGISTER = """
mutation Register($input: NotificationEndpointInput!) {
  registerNotificationEndpoint(input: $input) { signingSecret endpoint { id customerId channel target kinds language } }
}"""
NOTICES = """
query Notices($customer: ID, $order: ID) {
  notices(customerId: $customer, orderId: $order, first: 100) {
    id customerId orderId status decisions
    items { kind promisedDeliveryDate predictedDeliveryDate previousDeliveryDate deliveredAt tracking { carrier trackingNumber } }
    deliveries { channel target status attempts lastError }
  }
}"""
ENDPOINTS = "query E($customer: ID) { notificationEndpoints(customerId: $customer) { id customerId target } }"


def token(role: str, customer: str | None = None) -> str:
    return mint_token(SECRET, role=role, customer=customer, ttl_seconds=600, issuer="ordergraph", audience="ordergraph")


class As:
    """A GraphQL client with one viewer's token."""

    def __init__(self, url: str, http: aiohttp.ClientSession, bearer: str) -> None:
        self.client = GraphQLClient(url, http)
        self.headers = {"Authorization": f"Bearer {bearer}"}

    async def post(self, query: str, variables: dict | None = None) -> dict:
        status, body = await self.client.post(query, variables, headers=self.headers)
        assert status == 200, body
        return body

    async def data(self, query: str, variables: dict | None = None) -> dict:
        body = await self.post(query, variables)
        assert "errors" not in body, body["errors"]
        return body["data"]


@pytest.fixture
async def env():
    """A frozen plant, an SMTP server, a webhook receiver, and a gateway (JWT auth) that
    sends notices to them at once (no debounce) with quick retries."""
    async with running_plant() as plant:
        plant.world.set_speed(0)
        sink = await SmtpSink().start()

        def clock() -> dt.datetime:
            return plant.world.now().replace(microsecond=0)

        notices = {
            "smtp_host": "127.0.0.1",
            "smtp_port": sink.port,
            "allow_http_webhooks": True,
            "debounce_seconds": 0.0,
            "backoff_seconds": 0.05,
            "max_backoff_seconds": 0.2,
            "max_attempts": 3,
            "email_from": "Service <service@plant.example>",
        }
        auth = AuthConfig(mode="jwt", hs256_secret=SECRET)
        try:
            async with webhook_receiver() as hook, running_gateway(
                plant.url, domain_clock=clock, notices=notices, auth=auth, mailbox=sink
            ) as (url, app), aiohttp.ClientSession() as http:
                await app.state.gateway.exceptions.settled(30)
                yield plant, url, app, http, sink, hook
        finally:
            await sink.close()


def customer_of(world: Any, so: str) -> str:
    return world.get("A_SalesOrder", so).sold_to_party


async def until(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def fully_in_delivery(world: Any, so: str) -> bool:
    """The plant's own records: every ordered quantity of the order is in its deliveries."""
    order = world.get("A_SalesOrder", so)
    inside: dict[str, float] = {}
    for d in world.tables["A_OutbDeliveryHeader"].records():
        for item in d.items:
            if item.reference_sd_document == so:
                inside[item.reference_sd_document_item] = inside.get(item.reference_sd_document_item, 0) + item.actual_delivery_quantity
    return bool(order.items) and all(
        i.rejection_reason or inside.get(i.sales_order_item, 0) >= i.requested_quantity for i in order.items
    )


async def register(client: As, channel: str, target: str, **extra: Any) -> dict:
    data = await client.data(REGISTER, {"input": {"channel": channel, "target": target, **extra}})
    return data["registerNotificationEndpoint"]


# --- the event path: shipped and delivered, by email and by signed webhook ----------------------


async def test_shipped_and_delivered_reach_email_and_verified_webhook(env) -> None:
    plant, url, app, http, sink, hook = env
    world = plant.world
    so = next(s for s in sorted(world.orders_in_state("PACKED")) if fully_in_delivery(world, s))
    customer = customer_of(world, so)
    me = As(url, http, token("customer", customer))
    reg = await register(me, "WEBHOOK", hook.url)
    assert reg["endpoint"]["customerId"] == customer and reg["signingSecret"].startswith("whsec_")
    hook.secret = reg["signingSecret"]
    await register(me, "EMAIL", "orders@customer.example", language="DE")

    await emit(http, url, await control(http, plant, f"orders/{so}/advance"))  # goods issue, to a carrier
    await settle(app)

    def shipped_hooks() -> list:
        return [r for r in hook.received if r.payload["type"] == "order.shipped"]

    await until(lambda: shipped_hooks() and any("versandt" in m.subject for m in sink.messages))
    [shipped] = shipped_hooks()
    assert shipped.payload["data"]["orderId"] == so
    [item] = [i for i in shipped.payload["data"]["items"] if i["kind"] == "SHIPPED"]
    tracking = world.shipment_of(so)
    assert item["kind"] == "SHIPPED" and tracking in [t[1] for t in item["tracking"]]
    [mail] = [m for m in sink.messages if "versandt" in m.subject]
    assert mail.rcpt_tos == ("orders@customer.example",)
    assert mail.message_id == f"<{shipped.webhook_id}@plant.example>"  # one idempotency key per notice
    assert "versandt" in mail.subject and tracking in mail.body("plain") and tracking in mail.body("html")
    assert "hat unser Werk verlassen" in mail.body("plain")

    # On to the customer's door: one DELIVERED notice once the records say delivered.
    for _ in range(6):
        if world.state_of(so) == "DELIVERED":
            break
        await emit(http, url, await control(http, plant, f"orders/{so}/advance"))
        await settle(app)
    assert world.state_of(so) == "DELIVERED"
    await until(lambda: any(r.payload["type"] == "order.delivered" for r in hook.received))
    kinds = [r.payload["type"] for r in hook.received]
    assert kinds.count("order.shipped") == 1 and kinds.count("order.delivered") == 1
    assert hook.rejected == 0
    body = await me.data(NOTICES, {"order": so})
    assert [n["items"][-1]["kind"] for n in body["notices"]][:2] == ["DELIVERED", "SHIPPED"]
    assert all(d["status"] == "sent" for n in body["notices"] for d in n["deliveries"])


async def test_a_late_truck_tells_the_customer_the_new_date_in_working_days(env) -> None:
    plant, url, app, http, sink, hook = env
    world = plant.world
    gw = app.state.gateway
    candidates = sorted(world.orders_in_state("IN_TRANSIT"))
    me = None
    for so in candidates:
        customer = customer_of(world, so)
        truck = world.shipment_of(so)
        if me is None or me[0] != customer:
            me = (customer, As(url, http, token("customer", customer)))
            hook.secret = hook.secret  # one receiver for every customer; secret set per registration below
        reg = await register(me[1], "WEBHOOK", hook.url)
        hook.secret = reg["signingSecret"]
        await emit(http, url, [c.to_json() for c in world.shipment_delayed(truck, 24 * 10)])
        await settle(app)
        rows = await gw.notices.outbox.notices(customer, subject=so)
        if rows:
            break
    else:
        pytest.fail("no in-transit order became late by ten days of truck delay")
    notice, _ = rows[0]
    [item] = notice.items
    assert item["kind"] == "DELIVERY_DELAYED"
    promised, predicted = dt.date.fromisoformat(item["promised"]), dt.date.fromisoformat(item["predicted"])
    c = world.get("A_Customer", customer)
    ship_to = RECEIVING_CALENDAR.for_place(c.country, c.region, c.time_zone)
    assert ship_to.working_days_between(promised, predicted) >= 1
    await until(lambda: so in [r.payload["data"].get("orderId") for r in hook.received])

"""GraphQL for proactive notices: customers' endpoints and preferences, notices sent.

A customer viewer manages and reads its own only: ``customerId`` may be left out (its
own) or name itself. As everywhere in the policy layer, another customer's data reads
like data that does not exist: its endpoints and notices are an empty list, its endpoint
ids change nothing (``false`` / ``null``), whether that customer exists or not; to
register for another customer is refused (BAD_USER_INPUT: nothing is stored). Internal
roles name the customer (``customerId``) and may read every notice. The policy layer's
guard (``resolvers/policy.py`` OWNERS) drops any other customer's value as a last line.
"""

from __future__ import annotations

import datetime as dt
import time
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

import strawberry
from graphql import GraphQLError
from strawberry import Info

from . import notice_rules
from .policy import NO_MATCH, customer_filter

MAX_ENDPOINTS_PER_CUSTOMER = 20
MAX_TARGET_LENGTH = 500


@strawberry.enum(description="What a notice tells.")
class NoticeKind(Enum):
    DELIVERY_DELAYED = "DELIVERY_DELAYED"
    BACK_ON_TRACK = "BACK_ON_TRACK"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    CRITICAL_UNACKNOWLEDGED = "CRITICAL_UNACKNOWLEDGED"


@strawberry.enum(description="How a notice travels.")
class NotificationChannel(Enum):
    WEBHOOK = "webhook"
    EMAIL = "email"


@strawberry.enum(description="Notice languages (emails).")
class NoticeLanguage(Enum):
    EN = "en"
    DE = "de"


@strawberry.type(description="Where a customer wants its notices: a webhook URL or an email address.")
class NotificationEndpoint:
    id: strawberry.ID
    customer_id: strawberry.ID
    channel: NotificationChannel
    target: str = strawberry.field(description="The webhook URL or the email address.")
    kinds: list[NoticeKind] = strawberry.field(description="The notices wanted; empty = every kind.")
    language: NoticeLanguage | None = strawberry.field(description="Email language; null = the customer's, from the ERP.")
    created_at: dt.datetime


@strawberry.type(description="A new endpoint, with the webhook signing secret: shown once, keep it.")
class EndpointRegistration:
    endpoint: NotificationEndpoint
    signing_secret: str | None = strawberry.field(
        description="Standard Webhooks secret (whsec_…) to verify webhook-signature with; null for email."
    )


@strawberry.type(description="A carrier's tracking number.")
class NoticeTracking:
    carrier: str
    tracking_number: str


@strawberry.type(description="One thing a notice tells.")
class NoticeItem:
    kind: NoticeKind
    promised_delivery_date: dt.date | None = None
    predicted_delivery_date: dt.date | None = None
    previous_delivery_date: dt.date | None = strawberry.field(default=None, description="The late date told before, if any.")
    delivered_at: dt.datetime | None = None
    tracking: list[NoticeTracking] = strawberry.field(default_factory=list)


@strawberry.type(description="One attempt series to one endpoint.")
class NoticeDelivery:
    channel: NotificationChannel
    target: str
    status: str = strawberry.field(description="pending, sent, dead (a dead letter) or dropped (endpoint removed).")
    attempts: int
    last_error: str | None
    sent_at: dt.datetime | None


@strawberry.type(description="A notice: what was told about one order, once per debounce window.")
class Notice:
    id: strawberry.ID = strawberry.field(description="The idempotency key: webhook-id header and email Message-ID.")
    customer_id: strawberry.ID
    order_id: strawberry.ID
    status: str = strawberry.field(description="waiting (debounce window), released, no_endpoint or cancelled.")
    items: list[NoticeItem]
    decisions: int = strawberry.field(description="Decisions folded into this notice (events vs notices).")
    created_at: dt.datetime
    send_at: dt.datetime
    deliveries: list[NoticeDelivery]


@strawberry.input(description="A webhook URL or an email address for a customer's notices.")
class NotificationEndpointInput:
    channel: NotificationChannel
    target: str
    customer_id: strawberry.ID | None = strawberry.field(default=None, description="Internal roles: whose; customers: their own.")
    kinds: list[NoticeKind] | None = None
    language: NoticeLanguage | None = None


def _engine(info: Info) -> Any:
    ctx = info.context
    ctx.cacheable = False  # the outbox changes without events
    if ctx.notices is None:
        raise GraphQLError("Notices are off on this gateway ([notices] enabled).", extensions={"code": "UNAVAILABLE"})
    return ctx.notices


def _customer(info: Info, requested: Any) -> str | None:
    """The customer acted for: a customer viewer's own; None when a customer names
    another (the caller answers as for a customer with nothing)."""
    viewer = info.context.viewer
    if viewer.is_customer:
        pinned = customer_filter(viewer, None if requested is None else str(requested))
        return None if pinned is NO_MATCH else str(pinned)
    if requested is None or not str(requested).strip():
        raise GraphQLError("`customerId` is required for internal roles.", extensions={"code": "BAD_USER_INPUT"})
    return info.context.check_key("Customer", str(requested), "customerId")


def _bad(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "BAD_USER_INPUT"})


def _check_target(channel: NotificationChannel, target: str, allow_http: bool) -> str:
    target = target.strip()
    if not target or len(target) > MAX_TARGET_LENGTH:
        raise _bad(f"`target`: 1 to {MAX_TARGET_LENGTH} characters.")
    if channel is NotificationChannel.WEBHOOK:
        parts = urlsplit(target)
        schemes = ("https", "http") if allow_http else ("https",)
        if parts.scheme not in schemes or not parts.hostname:
            raise _bad(f"`target`: a webhook needs an {' or '.join(schemes)} URL with a host.")
        if parts.username or parts.password:
            raise _bad("`target`: no credentials in the URL.")
        if not allow_http and _private_address(parts.hostname):
            raise _bad("`target`: not a public address (the plant's own network needs [notices] allow_http_webhooks).")
    else:
        local, _, domain = target.partition("@")
        if not local or "." not in domain or any(c in target for c in " <>,;\r\n\"'"):
            raise _bad("`target`: an email address like orders@example.com.")
    return target


def _private_address(host: str) -> bool:
    """An IP literal of loopback, private or link-local networks, or ``localhost``: a
    customer's webhook must not make the gateway call into the plant's own network.
    (Host names are resolved only when sending; they are not checked here.)"""
    import ipaddress

    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_unspecified


def endpoint_type(e: Any) -> NotificationEndpoint:
    return NotificationEndpoint(
        id=strawberry.ID(e.id),
        customer_id=strawberry.ID(e.customer),
        channel=NotificationChannel(e.channel),
        target=e.target,
        kinds=[NoticeKind(k) for k in e.kinds],
        language=NoticeLanguage(e.language) if e.language else None,
        created_at=dt.datetime.fromtimestamp(e.created_at, dt.UTC),
    )


def _date(value: Any) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


def notice_type(n: Any, deliveries: list[Any]) -> Notice:
    items = []
    for i in n.items:
        items.append(
            NoticeItem(
                kind=NoticeKind(i["kind"]),
                promised_delivery_date=_date(i.get("promised")),
                predicted_delivery_date=_date(i.get("predicted")),
                previous_delivery_date=_date(i.get("previous")),
                delivered_at=dt.datetime.fromisoformat(i["deliveredAt"]) if i.get("deliveredAt") else None,
                tracking=[NoticeTracking(carrier=c, tracking_number=t) for c, t in i.get("tracking") or []],
            )
        )
    return Notice(
        id=strawberry.ID(n.id),
        customer_id=strawberry.ID(n.customer),
        order_id=strawberry.ID(n.subject),
        status=n.status,
        items=items,
        decisions=n.decisions,
        created_at=dt.datetime.fromtimestamp(n.created_at, dt.UTC),
        send_at=dt.datetime.fromtimestamp(n.send_at, dt.UTC),
        deliveries=[
            NoticeDelivery(
                channel=NotificationChannel(d.channel),
                target=d.target,
                status=d.status,
                attempts=d.attempts,
                last_error=d.last_error,
                sent_at=dt.datetime.fromtimestamp(d.sent_at, dt.UTC) if d.sent_at else None,
            )
            for d in deliveries
        ],
    )


@strawberry.type
class NoticeQuery:
    @strawberry.field(description="A customer's notification endpoints (customers: their own).")
    async def notification_endpoints(self, info: Info, customer_id: strawberry.ID | None = None) -> list[NotificationEndpoint]:
        engine = _engine(info)
        customer = _customer(info, customer_id)
        if customer is None:
            return []
        return [endpoint_type(e) for e in await engine.outbox.endpoints(customer)]

    @strawberry.field(
        description="Notices decided, newest first (customers: their own; internal roles: a customer's, or all "
        "with no customerId)."
    )
    async def notices(
        self, info: Info, customer_id: strawberry.ID | None = None, order_id: strawberry.ID | None = None, first: int = 50
    ) -> list[Notice]:
        engine = _engine(info)
        viewer = info.context.viewer
        customer = _customer(info, customer_id) if viewer.is_customer or customer_id is not None else None
        if customer is None and viewer.is_customer:
            return []
        first = max(1, min(first, 500))
        rows = await engine.outbox.notices(customer, subject=str(order_id) if order_id else None, limit=first)
        return [notice_type(n, ds) for n, ds in rows]


@strawberry.type
class NoticeMutation:
    @strawberry.mutation(
        description="Register a webhook URL or email address for a customer's notices (customers: their own). "
        "Webhooks are signed per Standard Webhooks with the secret returned here."
    )
    async def register_notification_endpoint(self, info: Info, input: NotificationEndpointInput) -> EndpointRegistration:
        engine = _engine(info)
        customer = _customer(info, input.customer_id)
        if customer is None:
            raise _bad("`customerId`: a customer registers endpoints for itself only (leave customerId out).")
        target = _check_target(input.channel, input.target, engine.config.allow_http_webhooks)
        if input.channel is NotificationChannel.EMAIL and not engine.config.smtp_host:
            raise _bad("this gateway sends no email ([notices] smtp_host is not set); register a webhook.")
        existing = await engine.outbox.endpoints(customer)
        if len(existing) >= MAX_ENDPOINTS_PER_CUSTOMER:
            raise _bad(f"at most {MAX_ENDPOINTS_PER_CUSTOMER} endpoints per customer; remove one first.")
        kinds = [k.value for k in input.kinds or [] if k.value in notice_rules.CUSTOMER_KINDS]
        e = await engine.outbox.add_endpoint(
            customer,
            input.channel.value,
            target,
            kinds=kinds,
            language=input.language.value if input.language else None,
            created_by=info.context.viewer.subject,
            now=time.time(),
        )
        return EndpointRegistration(endpoint=endpoint_type(e), signing_secret=e.secret or None)

    @strawberry.mutation(description="Change which notices an endpoint gets, and its language; null when there is no such endpoint.")
    async def set_notification_preferences(
        self, info: Info, id: strawberry.ID, kinds: list[NoticeKind] | None = None, language: NoticeLanguage | None = None
    ) -> NotificationEndpoint | None:
        engine = _engine(info)
        e = await _own_endpoint(info, engine, str(id))
        if e is None:
            return None
        await engine.outbox.update_endpoint(
            e.id,
            kinds=None if kinds is None else [k.value for k in kinds if k.value in notice_rules.CUSTOMER_KINDS],
            language=language.value if language else False,
        )
        updated = await engine.outbox.endpoint(e.id)
        return endpoint_type(updated) if updated is not None else None

    @strawberry.mutation(description="Remove an endpoint (its undelivered notices are dropped); false when there is none.")
    async def remove_notification_endpoint(self, info: Info, id: strawberry.ID) -> bool:
        engine = _engine(info)
        e = await _own_endpoint(info, engine, str(id))
        return e is not None and await engine.outbox.remove_endpoint(e.id)


async def _own_endpoint(info: Info, engine: Any, endpoint_id: str) -> Any:
    """The endpoint, if the viewer may change it; None otherwise: another customer's
    answers like a missing one, so ids cannot be probed."""
    e = await engine.outbox.endpoint(endpoint_id)
    viewer = info.context.viewer
    if e is None or (viewer.is_customer and e.customer != viewer.customer):
        return None
    return e

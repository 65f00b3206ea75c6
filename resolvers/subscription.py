"""Live updates: the ``Subscription`` root and ``Order.history``.

The gateway's subscription hub (``gateway/subscriptions.py``) drives these fields: for
each change it executes the subscriber's selection once, with the changed ``Order`` (or
``OrderChange``) as the root value, and shares that result between all subscribers with
the same selection and scope. The field functions below are what graphql-core calls to
read that root value; the streams themselves come from the journal and the bus.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator
from typing import Annotated, Any, Protocol

import strawberry
from graphql import GraphQLError
from strawberry import Info

from .exception_types import ExceptionTransition, Severity
from .pagination import decode_history_cursor, encode_history_cursor
from .types import Order


class HistorySource(Protocol):
    """What ``Order.history`` needs of the journal."""

    async def history(self, sales_order: str, *, first: int = 50, after_seq: int | None = None) -> list[Any]: ...


# Sales order event actions that name a block: a customer reads them as a plain change, so
# the timeline never tells a customer about its credit status.
_BLOCK_ACTIONS = ("CreditBlocked", "CreditReleased", "DeliveryBlocked", "DeliveryUnblocked")


def event_type_for_viewer(ctx: Any, event_type: str) -> str:
    """The CloudEvents type as the viewer may read it (blocks are "Changed" for customers)."""
    viewer = getattr(ctx, "viewer", None)
    if viewer is None or not viewer.is_customer:
        return event_type
    for action in _BLOCK_ACTIONS:
        marker = f".SalesOrder.{action}."
        if marker in event_type:
            return event_type.replace(marker, ".SalesOrder.Changed.")
    return event_type


@strawberry.type(description="One change to one order, as reported by a source system.")
class OrderChange:
    cursor: str = strawberry.field(description="Resume after this change with `after: cursor`.")
    order: Order | None
    sources: list[str] = strawberry.field(description="The source systems that reported the change.")
    event_type: strawberry.Private[str]
    occurred_at: dt.datetime = strawberry.field(description="Business time of the change in its source.")

    @strawberry.field(name="eventType", description="The CloudEvents type, e.g. ...ProductionOrder.Released.v1.")
    def event_type_for_viewer(self, info: Info) -> str:
        return event_type_for_viewer(info.context, self.event_type)


@strawberry.type(description="One entry of an order's cross-system timeline (from the journal).")
class HistoryEntry:
    cursor: str
    source: str
    event_type: strawberry.Private[str]
    subject: str | None
    occurred_at: dt.datetime
    received_at: dt.datetime
    stale: bool = strawberry.field(description="Arrived after a newer event on the same record: kept, not applied.")

    @strawberry.field(name="eventType")
    def event_type_for_viewer(self, info: Info) -> str:
        return event_type_for_viewer(info.context, self.event_type)


@strawberry.type
class HistoryPage:
    entries: list[HistoryEntry]
    has_next_page: bool
    end_cursor: str | None


async def order_history(info: Info, sales_order: str, first: int, after: str | None) -> HistoryPage:
    """An order's timeline, oldest first, paged by journal cursor."""
    journal: HistorySource | None = getattr(info.context, "journal", None)
    if journal is None:
        return HistoryPage(entries=[], has_next_page=False, end_cursor=None)
    first = max(0, min(first, info.context.max_first))
    try:
        rows = await journal.history(sales_order, first=first + 1, after_seq=decode_history_cursor(info.context.cursors, after) if after else None)
    except LookupError as exc:  # a cursor of another order, or pruned
        raise GraphQLError(f"Unknown cursor {after!r} for this order.", extensions={"code": "BAD_USER_INPUT"}) from exc
    entries = [
        HistoryEntry(
            cursor=encode_history_cursor(info.context.cursors, r.seq),
            source=r.source,
            event_type=r.type,
            subject=r.subject,
            occurred_at=r.occurred_at,
            received_at=r.received_at,
            stale=r.stale,
        )
        for r in rows[:first]
    ]
    return HistoryPage(entries=entries, has_next_page=len(rows) > first, end_cursor=entries[-1].cursor if entries else None)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="The order, with your selection, each time any source changes it. "
        "Each message carries `extensions.cursor`; reconnect with `after` to miss nothing."
    )
    async def order_updated(self, info: Info, id: strawberry.ID, after: str | None = None) -> AsyncGenerator[Order | None, None]:
        raise _HUB_ONLY
        yield None  # pragma: no cover - makes this an async generator

    @strawberry.subscription(
        description="Every change to one customer's orders (or all orders, for internal viewers), "
        "resumable with `after`."
    )
    async def order_changes(
        self, info: Info, customer: strawberry.ID | None = None, after: str | None = None
    ) -> AsyncGenerator[OrderChange, None]:
        raise _HUB_ONLY
        yield  # pragma: no cover - makes this an async generator

    @strawberry.subscription(
        description="Exceptions raised, updated and cleared as source events arrive, at or above `minSeverity` "
        "and hitting an order of `customer` if given. Each message carries `extensions.cursor`; resume with `after` "
        "(or start from `exceptions { transitionCursor }`) to miss nothing."
    )
    async def exceptions_changed(
        self,
        info: Info,
        min_severity: Severity | None = None,
        customer: strawberry.ID | None = None,
        after: str | None = None,
    ) -> AsyncGenerator[ExceptionTransition, None]:
        raise _HUB_ONLY
        yield  # pragma: no cover - makes this an async generator

    @strawberry.subscription(
        description="Internal roles: each workflow action (acknowledge, assign, comment, snooze, resolve, reopen, "
        "escalate, withdraw) as it happens on any replica, for one exception or one order if given. Each message "
        "carries `extensions.cursor`; reconnect with `after` to get what you missed."
    )
    async def exception_workflow_changed(
        self,
        info: Info,
        exception_id: strawberry.ID | None = None,
        order_id: strawberry.ID | None = None,
        after: str | None = None,
    ) -> AsyncGenerator[Annotated[WorkflowChange, strawberry.lazy("resolvers.workflow_types")], None]:  # noqa: F821
        raise _HUB_ONLY
        yield  # pragma: no cover - makes this an async generator


_HUB_ONLY = GraphQLError(
    "Subscriptions are served by the gateway's transports: graphql-transport-ws at /graphql, "
    "or Server-Sent Events at /graphql/stream."
)

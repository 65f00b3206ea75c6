"""Live updates: the ``Subscription`` root (``Order.history`` is in ``history.py``).

The gateway's subscription hub (``gateway/subscriptions.py``) drives these fields: for
each change it executes the subscriber's selection once, with the changed ``Order`` (or
``OrderChange``) as the root value, and shares that result between all subscribers with
the same selection and scope. The field functions below are what graphql-core calls to
read that root value; the streams themselves come from the journal and the bus.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator
from typing import Annotated

import strawberry
from graphql import GraphQLError
from strawberry import Info

from .exception_types import ExceptionTransition, Severity
from .history import event_type_for_viewer
from .types import Order


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
    ) -> AsyncGenerator[Annotated[WorkflowChange, strawberry.lazy("resolvers.workflow_mutations")], None]:  # noqa: F821
        raise _HUB_ONLY
        yield  # pragma: no cover - makes this an async generator


_HUB_ONLY = GraphQLError(
    "Subscriptions are served by the gateway's transports: graphql-transport-ws at /graphql, "
    "or Server-Sent Events at /graphql/stream."
)

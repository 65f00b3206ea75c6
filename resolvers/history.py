"""An order's cross-system timeline: ``Order.history``, from the event journal.

Also how a viewer reads an event's type (``event_type_for_viewer``), shared with the
``orderChanges`` subscription (``subscription.py``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

import strawberry
from graphql import GraphQLError
from strawberry import Info

from .pagination import decode_history_cursor, encode_history_cursor


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

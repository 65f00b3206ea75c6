"""The ``parkedEvents`` root field: events parked as dead letters (internal roles only).

An event whose processing failed for good (a source refused it, or it failed
``[events] park_after_failures`` times in a row) is kept in the journal, out of the
processor's way, until ``ordergraph events replay`` hands it back.
"""

from __future__ import annotations

import datetime as dt

import strawberry
from strawberry import Info


@strawberry.type(description="An event parked as a dead letter: kept in the journal, not applied (internal).")
class ParkedEvent:
    seq: int = strawberry.field(description="Its journal sequence number: `ordergraph events replay SEQ` takes it.")
    event_id: str = strawberry.field(description="The CloudEvents `id` the source gave it.")
    source: str = strawberry.field(description="erp, mes, wms, qms or tms.")
    type: str = strawberry.field(description="The CloudEvents `type`.")
    subject: str | None = strawberry.field(description="The record key it names (CloudEvents `subject`).")
    occurred_at: dt.datetime = strawberry.field(description="Its business time (CloudEvents `time`).")
    received_at: dt.datetime
    parked_at: dt.datetime
    attempts: int = strawberry.field(description="Processing attempts before it was parked.")
    reason: str = strawberry.field(description="Why it was parked: the last failure.")


async def parked_events(info: Info, first: int) -> list[ParkedEvent]:
    """Internal roles only: the oldest ``first`` parked events (resolver of ``Query.parkedEvents``)."""
    ctx = info.context
    journal = ctx.journal
    if journal is None:
        return []
    limit = max(0, min(first, ctx.max_first))
    return [
        ParkedEvent(
            seq=p.event.seq,
            event_id=p.event.event_id,
            source=p.event.source,
            type=p.event.type,
            subject=p.event.subject,
            occurred_at=p.event.occurred_at,
            received_at=p.event.received_at,
            parked_at=p.parked_at,
            attempts=p.attempts,
            reason=p.reason,
        )
        for p in await journal.parked(limit=limit)
    ]

"""The ``sources`` root field: each source system's health (internal roles only).

The same report as ``/readyz``: breaker state, last success, last error, last event.
"""

from __future__ import annotations

import datetime as dt
from enum import Enum

import strawberry
from strawberry import Info

from sources.resilience import SourceHealth


@strawberry.enum(description="Circuit breaker of a source: CLOSED calls it, OPEN fails fast, HALF_OPEN probes.")
class BreakerState(Enum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


@strawberry.type(description="Health of one source system, as the gateway sees it (internal).")
class SourceStatus:
    name: str = strawberry.field(description="erp, mes, wms, qms or tms.")
    breaker_state: BreakerState
    in_flight: int = strawberry.field(description="Calls in flight now (capped by the bulkhead).")
    max_in_flight: int
    last_success_at: dt.datetime | None = strawberry.field(description="When the source last answered a call.")
    last_error_at: dt.datetime | None
    last_error: str | None
    last_error_code: str | None = strawberry.field(
        description="SOURCE_UNAVAILABLE, SOURCE_TIMEOUT or SOURCE_BAD_RESPONSE."
    )
    last_event_at: dt.datetime | None = strawberry.field(description="When the source's last event was applied.")
    stale: bool = strawberry.field(description="No answered call and no event for longer than its threshold.")

    @classmethod
    def of(cls, h: SourceHealth) -> SourceStatus:
        return cls(
            name=h.source,
            breaker_state=BreakerState(h.breaker_state.value),
            in_flight=h.in_flight,
            max_in_flight=h.max_in_flight,
            last_success_at=h.last_success_at,
            last_error_at=h.last_error_at,
            last_error=h.last_error,
            last_error_code=h.last_error_code,
            last_event_at=h.last_event_at,
            stale=h.stale,
        )


def source_statuses(info: Info) -> list[SourceStatus]:
    """Internal roles only: the health of every source system (resolver of ``Query.sources``)."""
    # Health runs on the gateway's clock (not ctx.now, the domain clock, which may run faster).
    return [SourceStatus.of(h) for h in info.context.sources.health().values()]

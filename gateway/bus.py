"""The event bus: ``OrderChanged`` messages from the event path to subscriptions.

The embedded default fans out in process. ``RedisBus`` (``gateway/redis_bus.py``) carries
the same messages between gateway replicas.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger("ordergraph.bus")


@dataclasses.dataclass(slots=True, frozen=True)
class OrderChanged:
    """An accepted event changed one order. ``seq`` is the journal cursor of the event."""

    seq: int
    sales_order: str
    customer: str | None
    source: str
    type: str
    occurred_at: dt.datetime
    # cache keys the event invalidated, so other replicas can drop them too
    invalidated: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["occurred_at"] = self.occurred_at.isoformat()
        d["invalidated"] = [list(k) for k in self.invalidated]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> OrderChanged:
        return cls(
            seq=int(d["seq"]),
            sales_order=d["sales_order"],
            customer=d.get("customer"),
            source=d["source"],
            type=d["type"],
            occurred_at=dt.datetime.fromisoformat(d["occurred_at"]),
            invalidated=tuple(tuple(k) for k in d.get("invalidated", ())),  # type: ignore[misc]
        )


Handler = Callable[[list[OrderChanged]], None]


class Bus(Protocol):
    def subscribe(self, handler: Handler) -> None: ...
    async def publish(self, changes: list[OrderChanged]) -> None: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class LocalBus:
    """In-process fan-out: handlers run synchronously and must not block."""

    def __init__(self) -> None:
        self._handlers: list[Handler] = []

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    async def publish(self, changes: list[OrderChanged]) -> None:
        self.deliver(changes)

    def deliver(self, changes: list[OrderChanged]) -> None:
        for handler in self._handlers:
            try:
                handler(changes)
            except Exception:  # one bad handler must not stop the others
                log.exception("bus handler failed")

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

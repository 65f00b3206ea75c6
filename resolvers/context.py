"""What every resolver gets as ``info.context``: loaders, clock and limits of one request."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sources import Sources

from .loaders import Cache, Loaders


@dataclasses.dataclass(slots=True)
class Context:
    """Per-request state. Built by the gateway; resolvers only read it."""

    sources: Sources
    cache: Cache
    loaders: Loaders
    now: dt.datetime
    max_first: int = 500
    journal: Any = None  # gateway.journal.Journal, for Order.history
    # per-request memo of assembled order views, by sales order number
    views: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def create(cls, sources: Sources, cache: Cache, now: dt.datetime, **kwargs: Any) -> Context:
        return cls(sources=sources, cache=cache, loaders=Loaders(sources, cache), now=now, **kwargs)

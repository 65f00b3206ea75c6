"""The one handler that drops record-cache entries for events.

Every accepted event's cache keys are dropped once, by :class:`CacheInvalidation`: at the
door before the 202 (``EventProcessor.accepted``), or, for an event that did not come
through a door of this process (a reconciliation poll, a replay, a restart), when the
processor applies it. With replicas, the door also tells every other replica through the
fence (``gateway/redis_fence.py``) before the 202; what the processor drops reaches them in
the bus message that carries the event's changes (``RedisBus.invalidate``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from .cache import RecordCache

log = logging.getLogger("ordergraph.events")

CacheKey = tuple[str, str]


class CacheInvalidation:
    """Drops keys and namespaces from the record cache (and, through ``fence``, from every
    other replica's)."""

    def __init__(self, cache: RecordCache, fence: Any = None) -> None:
        self.cache = cache
        self.fence = fence  # scale-out: gateway/redis_fence.py; set by the gateway

    def drop_here(self, keys: Iterable[CacheKey], namespaces: Iterable[str] = ()) -> None:
        """Drop in this process only."""
        for namespace in namespaces:
            self.cache.invalidate_namespace(namespace)
        keys = set(keys)
        if keys:
            self.cache.invalidate(keys)

    async def drop_everywhere(self, keys: Iterable[CacheKey], namespaces: Iterable[str] = ()) -> None:
        """Drop here, then in every other replica before returning (the fence)."""
        keys, namespaces = set(keys), set(namespaces)
        self.drop_here(keys, namespaces)
        if self.fence is not None and (keys or namespaces):
            try:
                await self.fence.publish(keys, namespaces)
            except Exception:
                log.exception("could not publish invalidations to the other replicas")

"""The shared record cache under the DataLoaders, invalidated by events.

Keys are ``(namespace, key)`` tuples, e.g. ``("mes.po_by_so", "10000042")``. Values are
whatever the loader stored (typed records or lists of them).

The race that matters: a read starts, an event invalidates the key, then the read's
(now old) answer arrives. ``put`` refuses a write whose read began before the key's last
invalidation: each read takes a ``ticket`` (a monotonic epoch) before it calls the
source, and each invalidation stamps the key with a newer epoch.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterable
from typing import Any

from cachetools import TTLCache

_MISSING = object()


class RecordCache:
    """cachetools TTL cache with race-safe, event-driven invalidation."""

    def __init__(self, maxsize: int = 200_000, ttl_seconds: float = 300.0, read_horizon_seconds: float = 600.0) -> None:
        self._data: TTLCache[Hashable, Any] = TTLCache(maxsize=maxsize, ttl=ttl_seconds)
        # Epoch of each key's last invalidation. Kept longer than any read can take, so
        # a slow read still sees that it was overtaken.
        self._invalidated: TTLCache[Hashable, int] = TTLCache(maxsize=maxsize, ttl=read_horizon_seconds)
        self._epochs = itertools.count(1)
        self._epoch = 0
        self._floor = 0  # invalidate_all() moves it: older tickets may not write
        self.hits = 0
        self.misses = 0
        self.refused_writes = 0

    def ticket(self) -> int:
        """Take before reading a source; pass to ``put`` with the answer."""
        self._epoch = next(self._epochs)
        return self._epoch

    def get(self, key: Hashable, default: Any = None) -> Any:
        value = self._data.get(key, _MISSING)
        if value is _MISSING:
            self.misses += 1
            return default
        self.hits += 1
        return value

    def get_many(self, keys: Iterable[Hashable]) -> tuple[dict[Hashable, Any], list[Hashable]]:
        """Split keys into (found values, missing keys)."""
        found: dict[Hashable, Any] = {}
        missing: list[Hashable] = []
        data = self._data
        for k in keys:
            v = data.get(k, _MISSING)
            if v is _MISSING:
                missing.append(k)
            else:
                found[k] = v
        self.hits += len(found)
        self.misses += len(missing)
        return found, missing

    def put(self, key: Hashable, value: Any, ticket: int) -> bool:
        """Store ``value`` read under ``ticket``, unless the key was invalidated since."""
        if ticket <= self._floor or self._invalidated.get(key, 0) >= ticket:
            self.refused_writes += 1
            return False
        self._data[key] = value
        return True

    def invalidate(self, keys: Iterable[Hashable]) -> int:
        """Drop keys and fence off reads that began before now. Returns keys dropped."""
        epoch = next(self._epochs)
        self._epoch = epoch
        dropped = 0
        for k in keys:
            self._invalidated[k] = epoch
            if self._data.pop(k, _MISSING) is not _MISSING:
                dropped += 1
        return dropped

    def invalidate_all(self) -> None:
        self._floor = self._epoch = next(self._epochs)
        self._data.clear()

    def keys(self) -> list[Hashable]:
        return list(self._data.keys())

    def __len__(self) -> int:
        return len(self._data)

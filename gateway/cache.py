"""The shared record cache under the DataLoaders, invalidated by events.

Keys are ``(namespace, key)`` tuples, e.g. ``("mes.po_by_so", "10000042")``. Values are
whatever the loader stored (typed records or lists of them).

The race that matters: a read starts, an event invalidates the key, then the read's
(now old) answer arrives. ``put`` refuses a write whose read began before the key's last
invalidation: each read takes a ``ticket`` (a monotonic epoch) before it calls the
source, and each invalidation stamps the key with a newer epoch.

Each stored value keeps its fetch time (``Entry``), so answers can say how current they
are. Beside the TTL cache, a bounded last-good store keeps the latest value of each key
through invalidations and expiry: when a source fails, the loaders serve it, marked stale
(stale-if-error).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Hashable, Iterable
from typing import Any, NamedTuple

from cachetools import LRUCache, TTLCache

_MISSING = object()


class Entry(NamedTuple):
    """A cached value and when its source answered it."""

    value: Any
    fetched_at: dt.datetime


class RecordCache:
    """cachetools TTL cache with race-safe, event-driven invalidation."""

    def __init__(
        self,
        maxsize: int = 200_000,
        ttl_seconds: float = 300.0,
        read_horizon_seconds: float = 600.0,
        last_good_maxsize: int | None = None,
    ) -> None:
        self._data: TTLCache[Hashable, Entry] = TTLCache(maxsize=maxsize, ttl=ttl_seconds)
        # Not the TTL cache: survives invalidation and expiry, bounded by LRU.
        self._last_good: LRUCache[Hashable, Entry] = LRUCache(maxsize=last_good_maxsize or maxsize)
        # Counts invalidations: reads shared in flight (single-flight) are keyed by it.
        self.generation = 0
        # Epoch of each key's last invalidation. Kept longer than any read can take, so
        # a slow read still sees that it was overtaken.
        self._invalidated: TTLCache[Hashable, int] = TTLCache(maxsize=maxsize, ttl=read_horizon_seconds)
        self._epochs = itertools.count(1)
        self._epoch = 0
        self._floor = 0  # invalidate_all() moves it: older tickets may not write
        self._namespace_floor: dict[str, int] = {}  # invalidate_namespace() moves these
        self.hits = 0
        self.misses = 0
        self.refused_writes = 0
        # Told of every invalidation: the keys (``None`` = everything), after they dropped.
        self.listeners: list[Callable[[list[Hashable] | None], None]] = []

    def ticket(self) -> int:
        """Take before reading a source; pass to ``put`` with the answer."""
        self._epoch = next(self._epochs)
        return self._epoch

    def get(self, key: Hashable, default: Any = None) -> Any:
        entry = self._data.get(key, _MISSING)
        if entry is _MISSING:
            self.misses += 1
            return default
        self.hits += 1
        return entry.value

    def get_many(self, keys: Iterable[Hashable]) -> tuple[dict[Hashable, Any], list[Hashable]]:
        """Split keys into (found values, missing keys)."""
        found, missing = self.get_entries(keys)
        return {k: e.value for k, e in found.items()}, missing

    def get_entries(self, keys: Iterable[Hashable]) -> tuple[dict[Hashable, Entry], list[Hashable]]:
        """Split keys into (found entries with their fetch times, missing keys)."""
        found: dict[Hashable, Entry] = {}
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

    def put(self, key: Hashable, value: Any, ticket: int, fetched_at: dt.datetime | None = None) -> bool:
        """Store ``value`` read under ``ticket``, unless the key was invalidated since."""
        if ticket <= self._floor or self._invalidated.get(key, 0) >= ticket or self._below_namespace_floor(key, ticket):
            self.refused_writes += 1
            return False
        entry = Entry(value, fetched_at or dt.datetime.now(dt.UTC))
        self._data[key] = entry
        self._last_good[key] = entry
        return True

    def last_good(self, key: Hashable) -> Entry | None:
        """The latest value stored under ``key``, even if since invalidated or expired."""
        return self._last_good.get(key)

    def invalidate(self, keys: Iterable[Hashable]) -> int:
        """Drop keys and fence off reads that began before now. Returns keys dropped."""
        epoch = next(self._epochs)
        self._epoch = epoch
        self.generation += 1
        dropped = 0
        keys = list(keys)
        for k in keys:
            self._invalidated[k] = epoch
            if self._data.pop(k, _MISSING) is not _MISSING:
                dropped += 1
        for listener in self.listeners:
            listener(keys)
        return dropped

    def invalidate_all(self) -> None:
        self._floor = self._epoch = next(self._epochs)
        self.generation += 1
        self._data.clear()
        for listener in self.listeners:
            listener(None)

    def invalidate_namespace(self, namespace: str) -> int:
        """Drop every key of ``namespace`` and fence off its reads that began before now
        (an event whose exact keys could not be found, e.g. its source was down)."""
        keys = [k for k in self._data.keys() if isinstance(k, tuple) and k and k[0] == namespace]
        dropped = self.invalidate(keys)
        self._namespace_floor[namespace] = self._epoch
        for listener in self.listeners:  # answers built from keys since evicted, too
            listener(None)
        return dropped

    def _below_namespace_floor(self, key: Hashable, ticket: int) -> bool:
        floors = self._namespace_floor
        return bool(floors) and isinstance(key, tuple) and bool(key) and ticket <= floors.get(key[0], 0)

    def overtaken(self, keys: Iterable[Hashable], ticket: int) -> bool:
        """Whether any of ``keys`` was invalidated after ``ticket`` was taken: an answer
        computed from them since then may be older than the last accepted event."""
        if ticket <= self._floor:
            return True
        invalidated = self._invalidated
        return any(invalidated.get(k, 0) >= ticket or self._below_namespace_floor(k, ticket) for k in keys)

    def keys(self) -> list[Hashable]:
        return list(self._data.keys())

    def __len__(self) -> int:
        return len(self._data)

"""Whole GraphQL responses, cached until an event touches what they were built from.

A query's answer is a function of the records it read (the loaders' ``served`` log, plus
the sales orders of a listing), of the listing's membership, of the viewer's scope and of
the clock. So a response is stored as the exact bytes sent, under
``(document, operation, variables, viewer scope)``, with the set of record-cache keys it
depends on. ``RecordCache.invalidate`` tells this cache every key it drops (events, the
Redis bus, ``invalidate_all``), and every response that depends on one is dropped with it.

The race that matters is the record cache's own: a response computed from a record read
before an event, stored after the event's invalidation. A computation takes a record-cache
``ticket`` before it starts; ``put`` refuses the answer when any of its keys was
invalidated since (``RecordCache.overtaken``). Identical requests that arrive while one is
being computed wait for it (single-flight) only if no invalidation happened since it
started; otherwise they compute their own.

What is not cached: responses with errors or with a value served stale (a source was
down), operations that select fields whose answer changes without a source event (the
exception tracker's state, the journal's history, what-ifs, source health, freshness; see
``resolvers.fields.UNCACHEABLE_FIELDS``), and listings filtered on derived values.

The clock. A rule that compares with "now" through the request context's ``now`` marks the
answer as moving with the clock: such an entry lives at most ``ttl_seconds`` (default 5 s;
a time-driven change, such as a prediction drifting, shows up to that much later). A rule
that instead records the instant its value changes by the clock alone
(``Context.clock_bound``: a scheduled start or an announced downtime passing) keeps the
answer exact: the entry lives until the earliest such instant on the domain clock, checked
at every hit, and at most ``max_seconds`` (the record cache's own bound). A source change
never shows late, because its event drops the entry at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any, NamedTuple

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
)

from resolvers.fields import UNCACHEABLE_FIELDS

from .cache import RecordCache


class _Stored(NamedTuple):
    body: bytes
    deps: frozenset[Hashable]
    expires: float  # on ``clock`` (monotonic seconds)
    until: float  # on the domain clock (POSIX seconds): the answer holds before this; inf = ever


def _domain_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _field_names(doc: DocumentNode) -> set[str]:
    names: set[str] = set()
    stack: list[Any] = []
    for d in doc.definitions:
        if isinstance(d, (OperationDefinitionNode, FragmentDefinitionNode)):
            stack.append(d.selection_set)
    while stack:
        sel_set = stack.pop()
        if sel_set is None:
            continue
        for sel in sel_set.selections:
            if isinstance(sel, FieldNode):
                names.add(sel.name.value)
                stack.append(sel.selection_set)
            elif isinstance(sel, InlineFragmentNode):
                stack.append(sel.selection_set)
    return names


def cacheable_document(doc: DocumentNode) -> bool:
    """Queries only, and none of the fields whose answer no source event announces."""
    ops = [d for d in doc.definitions if isinstance(d, OperationDefinitionNode)]
    if any(op.operation is not OperationType.QUERY for op in ops):
        return False
    return not (_field_names(doc) & UNCACHEABLE_FIELDS)


class ResponseCache:
    """Serialized responses by request, dropped when a record they read is invalidated."""

    def __init__(
        self,
        records: RecordCache,
        *,
        ttl_seconds: float = 5.0,
        maxsize: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
        max_seconds: float | None = None,
        domain_clock: Callable[[], dt.datetime] = _domain_now,
    ) -> None:
        self.records = records
        self.ttl_seconds = ttl_seconds
        # how long an answer may live whose clock dependence is all recorded as instants
        # (``valid_until``), or that did not read the clock at all
        self.max_seconds = ttl_seconds if max_seconds is None else max(ttl_seconds, max_seconds)
        self.domain_clock = domain_clock
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.clock = clock
        self._entries: OrderedDict[Hashable, _Stored] = OrderedDict()
        self._by_dep: dict[Hashable, set[Hashable]] = {}
        self._bytes = 0
        self._flights: dict[Hashable, tuple[int, asyncio.Future[bytes | None]]] = {}
        self._cacheable: dict[str, bool] = {}
        self.hits = 0
        self.misses = 0
        self.shared = 0  # waited for an identical computation in flight
        self.stores = 0
        self.refused = 0  # computed, but a dependency was invalidated meanwhile
        self.invalidated = 0
        # Refresh after an event: an entry that was read since it was stored and is then
        # dropped by an event is computed again at once (``refresh(key, recipe)``, set by the
        # operation pipeline), so its next reader finds it or joins that computation instead
        # of waiting for the sources. The recomputation is an ordinary one: it starts after
        # the invalidation, and ``put`` refuses it if another one overtakes it.
        self.refresh: Callable[[Hashable, Any], None] | None = None
        self._recipes: dict[Hashable, Any] = {}
        self._read: set[Hashable] = set()
        self.refreshed = 0
        records.listeners.append(self._on_invalidate)

    @property
    def enabled(self) -> bool:
        return self.ttl_seconds > 0 and self.maxsize > 0

    def cacheable(self, query: str, doc: DocumentNode) -> bool:
        hit = self._cacheable.get(query)
        if hit is None:
            if len(self._cacheable) > 4096:
                self._cacheable.clear()
            hit = self._cacheable[query] = cacheable_document(doc)
        return hit

    def get(self, key: Hashable, *, count_miss: bool = True) -> bytes | None:
        """The stored body of ``key`` while it holds; a miss is counted unless the caller
        will look again (``count_miss=False``)."""
        stored = self._entries.get(key)
        if stored is None:
            self.misses += count_miss
            return None
        if not self._holds(stored):
            self._drop(key)
            self.misses += count_miss
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        self._read.add(key)
        return stored.body

    def holds(self, key: Hashable) -> bool:
        """Whether ``get(key)`` would answer now; nothing counted, nothing moved."""
        stored = self._entries.get(key)
        return stored is not None and self._holds(stored)

    def _holds(self, stored: _Stored) -> bool:
        return stored.expires > self.clock() and (
            stored.until == math.inf or stored.until > self.domain_clock().timestamp()
        )

    def ticket(self) -> int:
        return self.records.ticket()

    def put(
        self,
        key: Hashable,
        body: bytes,
        deps: Iterable[Hashable],
        ticket: int,
        *,
        clock_read: bool = True,
        valid_until: dt.datetime | None = None,
        recipe: Any = None,
    ) -> bool:
        """Store ``body`` computed since ``ticket`` from ``deps``, unless one was invalidated
        since. ``clock_read``: something in it moves with the clock (it lives at most
        ``ttl_seconds``); else it lives until ``valid_until`` (domain clock), at most
        ``max_seconds``. ``recipe``: what ``refresh`` needs to compute it again."""
        deps = frozenset(deps)
        if self.records.overtaken(deps, ticket):
            self.refused += 1
            return False
        if len(body) > self.max_bytes // 16:
            return False
        if key in self._entries:
            self._drop(key)
        if clock_read:
            expires, until = self.clock() + self.ttl_seconds, math.inf
        else:
            expires = self.clock() + self.max_seconds
            until = valid_until.timestamp() if valid_until is not None else math.inf
            if until <= self.domain_clock().timestamp():
                return False  # the clock already passed it: the answer no longer holds
        self._entries[key] = _Stored(body, deps, expires, until)
        if recipe is not None:
            self._recipes[key] = recipe
        self._bytes += len(body)
        for dep in deps:
            self._by_dep.setdefault(dep, set()).add(key)
        self.stores += 1
        while len(self._entries) > self.maxsize or self._bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)
        return True

    # --- single-flight of identical computations ------------------------------------------

    def joinable(self, key: Hashable) -> asyncio.Future[bytes | None] | None:
        """The computation of ``key`` in flight, if it started after the last invalidation."""
        flight = self._flights.get(key)
        if flight is not None and flight[0] == self.records.generation:
            return flight[1]
        return None

    def begin(self, key: Hashable) -> asyncio.Future[bytes | None]:
        fut: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._flights[key] = (self.records.generation, fut)
        return fut

    def end(self, key: Hashable, fut: asyncio.Future[bytes | None], body: bytes | None) -> None:
        if self._flights.get(key, (0, None))[1] is fut:
            del self._flights[key]
        if not fut.done():
            fut.set_result(body)

    # --- invalidation -------------------------------------------------------------------

    def _on_invalidate(self, keys: list[Hashable] | None) -> None:
        if keys is None:
            self.invalidated += len(self._entries)
            self._entries.clear()
            self._by_dep.clear()
            self._recipes.clear()
            self._read.clear()
            self._bytes = 0
            return
        refresh = self.refresh
        for dep in keys:
            for key in self._by_dep.pop(dep, ()):
                if key in self._entries:
                    recipe = self._recipes.get(key) if key in self._read else None
                    self._drop(key)
                    self.invalidated += 1
                    if refresh is not None and recipe is not None:
                        self.refreshed += 1
                        refresh(key, recipe)

    def _drop(self, key: Hashable) -> None:
        stored = self._entries.pop(key, None)
        self._recipes.pop(key, None)
        self._read.discard(key)
        if stored is None:
            return
        self._bytes -= len(stored.body)
        for dep in stored.deps:
            keys = self._by_dep.get(dep)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_dep[dep]

    def stats(self) -> dict[str, int]:
        return {
            "entries": len(self._entries),
            "bytes": self._bytes,
            "hits": self.hits,
            "misses": self.misses,
            "shared": self.shared,
            "stores": self.stores,
            "refused": self.refused,
            "invalidated": self.invalidated,
            "refreshed": self.refreshed,
        }

    def __len__(self) -> int:
        return len(self._entries)

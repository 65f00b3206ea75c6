"""The shared record cache under the DataLoaders, invalidated by events.

Keys are ``(namespace, key)`` tuples, e.g. ``("mes.po_by_so", "10000042")``. Values are
whatever the loader stored (typed records or lists of them).

The race that matters: a read starts, an event invalidates the key, then the read's
(now old) answer arrives. ``put`` refuses a write whose read began before the key's last
invalidation: each read takes a ``ticket`` (a monotonic epoch) before it calls the
source, and each invalidation stamps the key with a newer epoch.

Each stored value keeps its fetch time (``Entry``), so answers can say how current they
are. Each entry's lifetime is ``ttl_seconds`` less a random share of up to
``ttl_jitter`` of it: records read together (the whole plant at start-up, a page's
records) then expire spread over a window rather than all in the same instant, when every
one of them would be re-read at once (the soak's p99 of 0.8-2.2 s at t = 300 s). The
jitter only shortens a lifetime: no entry is served past ``ttl_seconds``.

Beside the TTL cache, a bounded last-good store keeps the latest value of each key
through invalidations and expiry: when a source fails, the loaders serve it, marked stale
(stale-if-error).

A pass over every order (the exception tracker's start-up pass and its sweeps) reads the
whole plant through this cache: at 100,000 orders some 740,000 records, 2.5 times the
default ``maxsize``. Inside ``scanning()`` a write never evicts: it replaces a key already
held (the newer answer wins, as always), and stores a new key only while there is room
(fewer than ``maxsize`` entries); past it the answer is used by its reader and not kept.
The pass then keeps what fits instead of storing every record and evicting most of them
unread (``_evict`` 54 times, 540,000 records, at 100,000 orders), and a sweep does not
push out what questions read since. Fences, lifetimes and the
last-good store's bound hold as for any write: a write not kept is a later miss, never an
older answer.

Which records the first pass keeps, when they do not all fit: the pass names, order by
order as it evaluates them, the records it may give up for room (``spare``): those of
orders with no production left to do, delivered or cancelled ones first. A new key that
finds the store full then takes the place of a spared one, so the records kept are those
of the orders still in production: the orders a what-if over a work centre's queue reads
(its first answer at 100,000 orders read 43,000 records again, a second of CPU, because
the pass had kept the lowest-numbered orders, most of them long delivered) and most of
those a "where is my order?" asks about. A spared record is a later miss, never an older
answer. Records named before they are read (the components, inspection lots and shipments of an
order whose production orders just showed it done) are not stored at all once the store is
full: storing them only to give them up again cost the first pass at 100,000 orders
seconds of CPU. The names are forgotten when the pass ends (``spare_done``): later passes
and questions keep what fits, as before.

When the pass expects more records than ``maxsize`` from the start (``expect_scan``: the
plant's order count times its first page's records per order), spared records are not
kept even while there is room, and those named after they were stored are dropped at once:
otherwise the first 40 % of a 100,000-order pass stored every record, delivered orders'
included, and the rest of the pass gave 257,000 of them up one by one for room, each
freed long after it was read (1.3 s of CPU to ready; none at 20,000 orders, where all
records fit).
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import datetime as dt
import itertools
import random
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

_MISSING = object()

# A full store drops its oldest 1/EVICT_SHARE at a time (``RecordCache._evict``).
EVICT_SHARE = 100

# Entries kept by default (``[cache] maxsize``). A 20,000-order plant's 148,000 records
# all fit. At 100,000 orders the orders still in production (35,000) have some 240,000
# records: 300,000 keeps them all, so the first what-if over a work centre's queue reads
# none again (200,000 kept 80 % of them: 10,300 misses, that answer 100-250 ms slower than
# the next). It costs ~140 MB more RSS at 100,000 orders (~800 MB after the scale
# scenario's questions, within the 1 GiB goal) and no more CPU to ready (bench/README.md).
DEFAULT_MAXSIZE = 300_000

# Set by ``scanning()`` for the task that runs a pass over every order and the tasks it
# starts (asyncio copies the context into each): their writes never evict.
_SCANNING: contextvars.ContextVar[bool] = contextvars.ContextVar("ordergraph_cache_scanning", default=False)


@contextlib.contextmanager
def scanning() -> Iterator[None]:
    """Writes made in this block (and in tasks started in it) keep what fits: see above."""
    token = _SCANNING.set(True)
    try:
        yield
    finally:
        _SCANNING.reset(token)


class Entry(NamedTuple):
    """A cached value, when its source answered it, and when it expires from the TTL cache
    (``time.monotonic`` of the cache's timer; one object per record, not two: a cold page
    stores ~600 of them)."""

    value: Any
    fetched_at: dt.datetime
    expires: float = 0.0


# ``Entry(...)`` without the NamedTuple's Python ``__new__`` (a frame per record stored).
_new_entry = tuple.__new__


class RecordCache:
    """A TTL cache with race-safe, event-driven invalidation.

    Plain dicts with expiry stamps checked on read (reads dominate: a 50-order page reads
    and stores hundreds of keys), bounded by evicting the oldest entries."""

    def __init__(
        self,
        maxsize: int = DEFAULT_MAXSIZE,
        ttl_seconds: float = 300.0,
        read_horizon_seconds: float = 600.0,
        last_good_maxsize: int | None = None,
        timer: Callable[[], float] = time.monotonic,
        ttl_jitter: float = 0.2,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.maxsize = maxsize
        self.ttl_seconds = ttl_seconds
        # Share of the TTL an entry's lifetime may be shortened by, at random (see above).
        self.ttl_jitter = min(max(ttl_jitter, 0.0), 1.0)
        self._rng = rng
        self._timer = timer
        self._data: dict[Hashable, Entry] = {}  # key -> entry (with its expiry)
        # Not the TTL cache: survives invalidation and expiry, bounded (oldest out).
        self._last_good: dict[Hashable, Entry] = {}
        self._last_good_maxsize = last_good_maxsize or maxsize
        # Counts invalidations: reads shared in flight (single-flight) are keyed by it.
        self.generation = 0
        # Epoch of each key's last invalidation, oldest first. When it must shrink, the
        # floor rises to the newest epoch forgotten, so a read older than a forgotten
        # invalidation still cannot write (``read_horizon_seconds`` is kept for callers).
        self._invalidated: dict[Hashable, int] = {}
        self._epochs = itertools.count(1)
        self._epoch = 0
        self._floor = 0  # invalidate_all() moves it: older tickets may not write
        self._namespace_floor: dict[str, int] = {}  # invalidate_namespace() moves these
        self.hits = 0
        self.misses = 0
        self._lookups: collections.Counter[tuple[str, str]] = collections.Counter()
        self.refused_writes = 0
        self.evictions = 0  # entries the TTL store dropped to keep within maxsize
        self.scan_skipped = 0  # new keys a scan's write did not keep: the store was full
        # Keys the first pass may give up for room, most expendable first (``spare``).
        self._spare: tuple[collections.deque[Hashable], ...] = (collections.deque(), collections.deque())
        self._spared: set[Hashable] = set()  # the keys in those, each once
        self.spared = 0  # entries a scan's write replaced this way (or dropped at once)
        # The pass expects more records than maxsize (``expect_scan``): spared keys are not
        # kept at all, and those already held are dropped when named.
        self.spare_at_once = False
        # Told of every invalidation: the keys (``None`` = everything), after they dropped.
        self.listeners: list[Callable[[list[Hashable] | None], None]] = []

    def ticket(self) -> int:
        """Take before reading a source; pass to ``put`` with the answer."""
        self._epoch = next(self._epochs)
        return self._epoch

    def get(self, key: Hashable, default: Any = None) -> Any:
        stored = self._data.get(key)
        if stored is None or stored.expires <= self._timer():
            self.misses += 1
            return default
        self.hits += 1
        return stored.value

    def get_many(self, keys: Iterable[Hashable]) -> tuple[dict[Hashable, Any], list[Hashable]]:
        """Split keys into (found values, missing keys)."""
        found, missing = self.get_entries(keys)
        return {k: e.value for k, e in found.items()}, missing

    def get_entries(self, keys: Iterable[Hashable]) -> tuple[dict[Hashable, Entry], list[Hashable]]:
        """Split keys into (found entries with their fetch times, missing keys)."""
        found: dict[Hashable, Entry] = {}
        missing: list[Hashable] = []
        data = self._data
        now = self._timer()
        for k in keys:
            stored = data.get(k)
            if stored is None:
                missing.append(k)
            elif stored.expires <= now:
                del data[k]
                missing.append(k)
            else:
                found[k] = stored
        self.hits += len(found)
        self.misses += len(missing)
        if found or missing:  # one loader batch: one namespace (for /metrics)
            first = next(iter(found)) if found else missing[0]
            namespace = first[0] if isinstance(first, tuple) and first and isinstance(first[0], str) else "other"
            lookups = self._lookups
            lookups[(namespace, "hit")] += len(found)
            lookups[(namespace, "miss")] += len(missing)
        return found, missing

    def lookups_by_namespace(self) -> dict[tuple[str, str], int]:
        """Look-ups through ``get_entries`` by (namespace, "hit" | "miss") since start."""
        return dict(self._lookups)

    def size(self) -> int:
        return len(self._data)

    def put(self, key: Hashable, value: Any, ticket: int, fetched_at: dt.datetime | None = None) -> bool:
        """Store ``value`` read under ``ticket``, unless the key was invalidated since."""
        return self.put_many(((key, value),), ticket, fetched_at or dt.datetime.now(dt.UTC)) == 1

    def put_many(self, items: Sequence[tuple[Hashable, Any]], ticket: int, fetched_at: dt.datetime) -> int:
        """Store one source answer's values (one ticket, one fetch time), each key refused
        on its own when it was invalidated since the ticket; returns how many were stored.
        A cold page stores ~600 records at once: what they share is looked up once."""
        if ticket <= self._floor:
            self.refused_writes += len(items)
            return 0
        scanning = _SCANNING.get()  # a pass over every order: keep what fits (module docstring)
        invalidated = self._invalidated
        floors = self._namespace_floor
        data = self._data
        last_good = self._last_good
        ttl = self.ttl_seconds
        jitter = ttl * self.ttl_jitter
        rng = self._rng
        now = self._timer()
        maxsize, last_good_maxsize = self.maxsize, self._last_good_maxsize
        stored = 0
        for key, value in items:
            if invalidated.get(key, 0) >= ticket or (floors and self._below_namespace_floor(key, ticket)):
                self.refused_writes += 1
                continue
            if scanning:
                stored += self._put_scanning(key, value, fetched_at)
                continue
            entry = _new_entry(Entry, (value, fetched_at, now + (ttl - jitter * rng()) if jitter else now + ttl))
            data.pop(key, None)  # re-inserted last: the oldest entries stay first
            data[key] = entry
            if len(data) > maxsize:
                self.evictions += self._evict(data, maxsize)
            last_good.pop(key, None)
            last_good[key] = entry
            if len(last_good) > last_good_maxsize:
                self._evict(last_good, last_good_maxsize)
            stored += 1
        return stored

    def _put_scanning(self, key: Hashable, value: Any, fetched_at: dt.datetime) -> bool:
        """``put`` in a pass over every order (fences already checked): replace what is
        held, add only while there is room, never evict (module docstring)."""
        data = self._data
        last_good = self._last_good
        if self.spare_at_once and key in self._spared and key not in data:
            self.scan_skipped += 1
            return False
        keep = len(data) < self.maxsize or key in data or (key not in self._spared and self._make_room())
        keep_good = len(last_good) < self._last_good_maxsize or key in last_good
        if not keep:
            self.scan_skipped += 1
            if not keep_good:
                return False
        # A sweep re-reads every record whose TTL ran out, and most have not changed: the
        # copy held stays (equal, so no reader can tell) and the sweep's new one dies with
        # its page. Otherwise each sweep swapped every long-lived record for a new object
        # allocated among the sweep's temporaries, keeping their memory in use after it.
        held = last_good.get(key)
        if held is not None and held.value == value:
            value = held.value
        expires = 0.0  # only for the last-good store: never read there
        if keep:
            ttl = self.ttl_seconds
            if self.ttl_jitter:
                ttl -= ttl * self.ttl_jitter * self._rng()
            expires = self._timer() + ttl
        entry = Entry(value, fetched_at, expires)
        if keep:
            data.pop(key, None)  # re-inserted last, as any write
            data[key] = entry
        if keep_good:
            last_good.pop(key, None)
            last_good[key] = entry
        return keep

    def spare(self, keys: Iterable[Hashable], *, first: bool = False) -> None:
        """Keys a scan may give up when a new key finds the store full (module docstring);
        ``first``: before any named without it. Names only: nothing is dropped now. A key
        named before it is written is not stored at all once the store is full, nor at all
        once the pass expects more records than fit (``expect_scan``); then a key named
        after it is stored is dropped now."""
        spared = self._spared
        if self.spare_at_once:
            data, last_good = self._data, self._last_good
            for key in keys:
                spared.add(key)
                if data.pop(key, None) is not None:
                    last_good.pop(key, None)
                    self.spared += 1
            return
        queue = self._spare[0 if first else 1]
        for key in keys:
            if key not in spared:
                spared.add(key)
                queue.append(key)

    def expect_scan(self, keys: int) -> bool:
        """The pass now running will offer about ``keys`` keys: when that is more than
        ``maxsize``, spared keys are not kept from now on (module docstring). Returns
        whether they are not."""
        if keys > self.maxsize:
            self.spare_at_once = True
        return self.spare_at_once

    def spare_done(self) -> None:
        """Forget the keys named by ``spare`` (the pass that named them is over)."""
        for keys in self._spare:
            keys.clear()
        self._spared.clear()
        self.spare_at_once = False

    def _make_room(self) -> bool:
        """Drop one spared entry (and its last-good copy: the same records), if any is
        still held; True when there is room now."""
        data = self._data
        spared = self._spared
        for keys in self._spare:
            while keys:
                key = keys.popleft()
                spared.discard(key)
                if data.pop(key, None) is not None:
                    self._last_good.pop(key, None)
                    self.spared += 1
                    return True
        return False

    @staticmethod
    def _evict(store: dict[Hashable, Any], maxsize: int) -> int:
        """Drop the oldest entries, a hundredth of ``maxsize`` at a time. Returns how many.

        Freeing a dropped entry frees its records too, each scattered in a large heap: a
        tenth at a time (20,000 entries) was one pause of 10-30 ms at 100,000 orders, where
        questions keep the full cache turning over, and the question that overflowed it
        waited for all of it. A hundredth costs the same per entry, in pauses a tenth as
        long; still rare enough that finding the oldest (past the slots freed before, which
        the dict skips in C) stays negligible."""
        drop = list(itertools.islice(iter(store), len(store) - (maxsize - max(1, maxsize // EVICT_SHARE))))
        for k in drop:
            del store[k]
        return len(drop)

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
        invalidated = self._invalidated
        for k in keys:
            invalidated.pop(k, None)  # newest last
            invalidated[k] = epoch
            if self._data.pop(k, _MISSING) is not _MISSING:
                dropped += 1
        if len(invalidated) > self.maxsize:
            forget = list(itertools.islice(iter(invalidated), len(invalidated) - int(self.maxsize * 0.9)))
            self._floor = max(self._floor, invalidated[forget[-1]])
            for k in forget:
                del invalidated[k]
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
        now = self._timer()
        return [k for k, entry in self._data.items() if entry.expires > now]

    def __len__(self) -> int:
        return len(self._data)

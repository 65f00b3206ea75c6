"""Reconciliation polling: changes read from a source become the same changes as pushed events.

Per source, ``poll_seconds`` (``[sources.<system>]``; ``gateway/connect.py``): every
interval the gateway reads the records changed since a durable watermark — OData
``LastChangeDateTime gt datetimeoffset'…'`` for ``profile = "sap-odata"``, the REST
contract's ``changedSince`` otherwise — and journals each changed record as an event
(``poll:<entity>:<key>:<time>``, notification-only: keys and join keys). From there the
event path is the pushed one (``gateway/processor.py``): the processor invalidates the
cache, records the change per order and publishes it to subscribers.

- Dedup. A record whose newest applied change (its watermark) is not older than what the
  poll saw is not journaled; the processor drops a polled change a pushed event already
  applied, and a pushed event a poll already applied (the ``polled:`` watermark), so one
  change reaches a subscriber once whichever way it came first.
- Watermark. Each entity set's watermark (journal watermark ``(system, "__poll__", set)``)
  advances only after the changes up to it are journaled; it lives in the journal (SQLite file or Redis), so a
  restart resumes where the last poll ended. A first poll starts at now: history is the
  sources' business, not the poll's. ``poll_overlap_seconds`` re-reads a little before the
  watermark so a change committed late in the same second is not missed.
- Sweep. On a source that pushes, a slow ``poll_seconds`` heals lost webhooks: the sweep
  finds what the lost event never said.
- Replicas. With ``[scaleout] redis_url``, exactly one replica polls each source, under a
  Redis lease (``<prefix>poll-lease:<system>``) renewed while it lives and taken over by
  another replica when it lapses (``lease_seconds``).
- Freshness. ``Reconciler.freshness()`` says per source how the gateway knows: pushed (as
  of the last event) or polled (as of the last poll that answered); ``/readyz`` shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from sources import Sources
from sources.client import SourceClient
from sources.events import JOIN_KEYS, EventRegistry, EventType
from sources.resilience import SourceError
from sources.sap_erp import Changed, SapErpConnector
from sources.tasks import stop_task

from .config import Config
from .connect import poll_interval
from .journal import JournalEvent
from .reconcile_ids import POLL_ID_PREFIX, POLL_WATERMARK, POLLED, is_polled

__all__ = ["POLLED", "LocalLease", "Reconciler", "RedisLease", "SourcePoller", "change_readers", "is_polled", "rest_changes"]

log = logging.getLogger("ordergraph.reconcile")

PAGE = 1000


# --- reading changes ----------------------------------------------------------------------


def _refs(data: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in data.items() if k in JOIN_KEYS and isinstance(v, str) and v}


Reader = Callable[[dt.datetime], Awaitable[list[Changed]]]


def _keeps_change_time(etype: EventType) -> bool:
    rtype = etype.record_type
    return rtype is not None and bool(rtype.ENTITY_SET) and "last_change_date_time" in {f.name for f in dataclasses.fields(rtype)}


async def rest_changes(client: SourceClient, etype: EventType, since: dt.datetime) -> list[Changed]:
    """Records of ``etype``'s entity set changed at or after ``since`` (the REST contract's
    ``changedSince``), every page, oldest change first."""
    from sources.records import format_datetime

    rtype = etype.record_type
    assert rtype is not None
    out: list[Changed] = []
    token: str | None = None
    while True:
        page = await client.list(rtype, top=PAGE, skip_token=token, filters={"changedSince": format_datetime(since) or ""})
        for record in page.records:
            at = record.last_change_date_time
            if at is not None:
                out.append(Changed(etype.entity, record.key, at, _refs(record.to_api())))
        if not page.next_skip_token or not page.records:
            break
        token = page.next_skip_token
    out.sort(key=lambda c: c.changed_at)
    return out


def change_readers(sources: Sources, system: str, registry: EventRegistry) -> dict[str, Reader]:
    """Per entity set of ``system`` that keeps a change time, how to read its changes since
    a time: the OData delta read, or the REST contract's ``changedSince``."""
    connector = getattr(sources, system)
    if isinstance(connector, SapErpConnector):
        return {"A_SalesOrder": connector.changes_since}
    client = sources.client(system)
    readers: dict[str, Reader] = {}
    for etype in registry.types():
        if etype.system == system and _keeps_change_time(etype):
            assert etype.record_type is not None
            readers[etype.record_type.ENTITY_SET] = lambda since, t=etype: rest_changes(client, t, since)
    # A mixed SAP profile (sources/sap_mes.py) reads some entity sets' changes over OData;
    # None: that entity set is not polled at all (sources/sap_wms.py).
    if callable(own := getattr(connector, "change_readers", None)):
        readers.update(own())
    return {name: read for name, read in readers.items() if read is not None}


# --- the lease ----------------------------------------------------------------------------

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisLease:
    """One holder per key at a time; lapses ``ttl_seconds`` after its holder stops renewing."""

    def __init__(self, redis_url: str, key: str, holder: str, ttl_seconds: float) -> None:
        import redis.asyncio as redis

        self._r = redis.from_url(redis_url)
        self.key = key
        self.holder = holder
        self.ttl_ms = max(int(ttl_seconds * 1000), 1000)
        self.held = False

    async def hold(self) -> bool:
        """Take the lease if free, renew it if ours; True while we hold it."""
        try:
            if await self._r.set(self.key, self.holder, nx=True, px=self.ttl_ms):
                taken = True
            else:
                taken = bool(await self._r.eval(_RENEW, 1, self.key, self.holder, self.ttl_ms))
        except Exception as exc:  # Redis away: we cannot know we hold it, so we do not
            if self.held:
                log.warning("poll lease %s: Redis does not answer (%s); polling paused", self.key, exc)
            taken = False
        if taken != self.held:
            log.info("poll lease %s %s by %s", self.key, "taken" if taken else "lost", self.holder)
        self.held = taken
        return taken

    async def release(self) -> None:
        with contextlib.suppress(Exception):
            await self._r.eval(_RELEASE, 1, self.key, self.holder)
        self.held = False

    async def close(self) -> None:
        await self.release()
        with contextlib.suppress(Exception):
            await self._r.aclose()


class LocalLease:
    """A single gateway process always holds it."""

    held = True

    async def hold(self) -> bool:
        return True

    async def release(self) -> None:
        pass

    async def close(self) -> None:
        pass


# --- the poller ---------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class PollStats:
    polls: int = 0
    failures: int = 0
    journaled: int = 0  # changes journaled as events
    known: int = 0  # changes seen that were already applied (pushed or polled before)
    last_poll_at: dt.datetime | None = None  # wall clock of the last poll that answered
    last_error: str | None = None


class SourcePoller:
    """Polls one source's changes into the journal (see the module docs)."""

    def __init__(
        self,
        system: str,
        interval: float,
        read: Reader | dict[str, Reader],
        journal: Any,
        registry: EventRegistry,
        *,
        clock: Callable[[], dt.datetime],
        plant_clock: Callable[[], dt.datetime],
        wakeup: asyncio.Event | None = None,
        lease: Any = None,
        overlap_seconds: float = 2.0,
        lease_seconds: float = 30.0,
    ) -> None:
        self.system = system
        self.interval = interval
        # One watermark per entity set (journal watermark (system, "__poll__", <entity set>)).
        self.readers: dict[str, Reader] = read if isinstance(read, dict) else {"": read}
        self.journal = journal
        self.registry = registry
        self.clock = clock
        self.plant_clock = plant_clock
        self.wakeup = wakeup
        self.lease = lease or LocalLease()
        self.overlap = dt.timedelta(seconds=overlap_seconds)
        self.lease_seconds = lease_seconds
        self.stats = PollStats()
        self._types = {t.entity: t for t in registry.types() if t.system == system}
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"ordergraph-poll-{self.system}")

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None
        await self.lease.close()

    async def _run(self) -> None:
        # Renew the lease well within its lifetime, poll when due.
        tick = min(self.interval, max(self.lease_seconds / 3, 0.5))
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            if await self.lease.hold() and loop.time() >= due:
                due = loop.time() + self.interval
                try:
                    await self.poll_once()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.stats.failures += 1
                    if self.stats.last_error is None:  # once per outage, not every interval
                        level = logging.WARNING if isinstance(exc, SourceError) else logging.ERROR
                        log.log(level, "poll of %s failed: %s; retrying every %gs (the watermark waits)", self.system, exc,
                                self.interval, exc_info=not isinstance(exc, SourceError))
                    self.stats.last_error = str(exc)[:300]
            await asyncio.sleep(max(0.05, min(tick, due - loop.time())))

    async def watermark(self, entity_set: str | None = None) -> dt.datetime | None:
        """Where the poll of ``entity_set`` got to; without one, the least of the source's
        (None until every entity set was polled once)."""
        if entity_set is not None:
            return await self.journal.watermark(self.system, POLL_WATERMARK, entity_set)
        marks = [await self.journal.watermark(self.system, POLL_WATERMARK, name) for name in self.readers]
        return None if any(m is None for m in marks) else min(m for m in marks if m is not None)

    async def poll_once(self) -> int:
        """One poll of every entity set: journal the changes since its watermark, then
        advance the watermark. Returns the number of changes journaled."""
        async with self._lock:
            journaled = 0
            for name, read in self.readers.items():
                journaled += await self._poll_set(name, read)
            self._answered()
            return journaled

    async def _poll_set(self, name: str, read: Reader) -> int:
        since = await self.watermark(name)
        if since is None:
            # First poll of this entity set: start now (the plant's time, as the sources').
            await self.journal.advance_watermark(self.system, POLL_WATERMARK, name, self.plant_clock())
            return 0
        changes = await read(since - self.overlap)
        events: list[JournalEvent] = []
        newest = since
        received = self.clock()
        for ch in changes:
            newest = max(newest, ch.changed_at)
            etype = self._types.get(ch.entity)
            if etype is None:
                continue
            applied = await self.journal.watermark(self.system, ch.entity, ch.key)
            if applied is not None and applied >= ch.changed_at:
                self.stats.known += 1
                continue
            # What the poll knows: the record changed (no more specific action, and never a reversal).
            action = next((a for a in ("Changed", "StatusUpdated") if a in etype.actions), None)
            action = action or sorted(etype.actions - etype.reversals)[0]
            if applied is None and "Created" in etype.actions and ch.entity == "SalesOrder":
                action = "Created"  # possibly new: it joins the listings
            data = {etype.key_field: ch.key, **{k: v for k, v in ch.refs.items() if k != etype.key_field}}
            events.append(
                JournalEvent(
                    source=self.system,
                    event_id=f"{POLL_ID_PREFIX}{ch.entity}:{ch.key}:{ch.changed_at.isoformat()}",
                    type=etype.type_for(action),
                    subject=ch.key,
                    occurred_at=ch.changed_at,
                    data=data,
                    received_at=received,
                )
            )
        if events:
            results = await self.journal.append(events)
            self.stats.journaled += sum(1 for r in results if not r.duplicate)
            if self.wakeup is not None:
                self.wakeup.set()
        # Only now, with every change up to it journaled, may the watermark move.
        if newest > since:
            await self.journal.advance_watermark(self.system, POLL_WATERMARK, name, newest)
        return len(events)

    def _answered(self) -> None:
        if self.stats.last_error is not None:
            log.info("poll of %s answers again", self.system)
        self.stats.polls += 1
        self.stats.last_poll_at = self.clock()
        self.stats.last_error = None


class Reconciler:
    """The pollers of every source that polls, and per-source freshness."""

    def __init__(self, config: Config, sources: Sources, journal: Any, registry: EventRegistry, *,
                 clock: Callable[[], dt.datetime], plant_clock: Callable[[], dt.datetime],
                 wakeup: asyncio.Event | None = None) -> None:
        self.config = config
        self.sources = sources
        self.pollers: dict[str, SourcePoller] = {}
        sc = config.scaleout
        holder = sc.replica_id or f"{socket.gethostname()}-{os.getpid()}"
        for system, s in config.sources.items():
            interval = poll_interval(s)
            if interval <= 0:
                continue
            lease: Any = None
            if sc.redis_url:
                lease = RedisLease(sc.redis_url, f"{sc.key_prefix}poll-lease:{system}", holder, sc.lease_seconds)
            self.pollers[system] = SourcePoller(
                system,
                interval,
                change_readers(sources, system, registry),
                journal,
                registry,
                clock=clock,
                plant_clock=plant_clock,
                wakeup=wakeup,
                lease=lease,
                overlap_seconds=s.poll_overlap_seconds,
                lease_seconds=sc.lease_seconds,
            )

    def start(self) -> None:
        for p in self.pollers.values():
            p.start()
        if self.pollers:
            log.info("reconciliation polling: %s", ", ".join(f"{s} every {p.interval:g}s" for s, p in self.pollers.items()))

    async def stop(self) -> None:
        for p in self.pollers.values():
            await p.stop()

    def freshness(self) -> dict[str, dict[str, Any]]:
        """Per source: ``{"how": "pushed"|"polled", "asOf": ISO time or None, ...}``.

        A source that pushes is known as of its last event (and, with a sweep, as of the
        last sweep too); one that does not is known as of its last poll that answered."""
        health = self.sources.health()
        out: dict[str, dict[str, Any]] = {}
        for system, s in self.config.sources.items():
            poller = self.pollers.get(system)
            polled_at = poller.stats.last_poll_at if poller else None
            entry: dict[str, Any]
            if s.pushes:
                last_event = health[system].last_event_at if system in health else None
                entry = {"how": "pushed", "asOf": _iso(last_event)}
                if poller is not None:
                    entry["sweptAt"] = _iso(polled_at)
                    entry["sweepSeconds"] = poller.interval
            else:
                entry = {"how": "polled", "asOf": _iso(polled_at), "pollSeconds": poller.interval if poller else None}
            if poller is not None:
                entry["leaseHeld"] = poller.lease.held
                if poller.stats.last_error:
                    entry["lastPollError"] = poller.stats.last_error
            out[system] = entry
        return out


def _iso(t: dt.datetime | None) -> str | None:
    return t.isoformat() if t else None

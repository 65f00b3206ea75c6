"""Read-after-202 across replicas: a shared invalidation sequence on Redis.

One replica answers ``POST /events`` with 202 only after it dropped the cache keys the
events touch (``EventProcessor.accepted``, through ``gateway/invalidation.py``). Other replicas learn of the change when
the processed change reaches them over the bus, which can be later: a client that got the
202 from replica A and then reads through replica B could still be served B's older cached
answer. The fence closes that:

- before its 202, A ``publish``-es the keys (and, when a look-up failed, whole namespaces)
  with one Lua call that increments ``<prefix>fence:seq`` and publishes ``seq|payload`` on
  ``<prefix>fence``;
- every replica listens on that channel, drops what each message names from its caches
  and advances its ``applied`` sequence;
- before a replica answers a query from its caches, ``sync`` reads the shared sequence
  (one ``GET``) and waits until it has applied everything up to it. A message that does
  not arrive within ``wait_seconds`` (or a reconnection of the subscription, when messages
  may have been lost) makes the replica drop all its caches instead: slower, never older.

Concurrent ``sync`` calls share one ``GET`` when it was sent after all of them arrived
(what they must see was published before they arrived), so a busy replica asks Redis about
once per round trip, not once per request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from .redis_channel import RedisChannel

log = logging.getLogger("ordergraph.fence")

_PUBLISH = """
local seq = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', KEYS[2], seq .. '|' .. ARGV[1])
return seq
"""


class InvalidationFence(RedisChannel):
    """The shared invalidation sequence of the replicas with key prefix ``prefix``."""

    role = "redis fence"

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        invalidate: Callable[[list[tuple[str, str]]], Any],
        invalidate_namespace: Callable[[str], Any],
        invalidate_all: Callable[[], Any],
        wait_seconds: float = 1.0,
    ) -> None:
        super().__init__(url, f"{prefix}fence")
        self.seq_key = f"{prefix}fence:seq"
        self._invalidate = invalidate
        self._invalidate_namespace = invalidate_namespace
        self._invalidate_all = invalidate_all
        self.wait_seconds = wait_seconds
        self.applied = 0  # every message up to this sequence is applied here
        self.applying: int | None = None  # the sequence whose invalidations run right now
        self.on_applied: Callable[[int], Any] | None = None  # told each sequence applied here
        self.published = 0
        self.gets = 0  # GETs sent (shared by concurrent syncs)
        self.waits = 0  # syncs that had to wait for a message
        self.timeouts = 0  # ... and gave up: all caches dropped
        self._advanced = asyncio.Event()
        self._own: set[int] = set()  # sequences this replica published, echo not yet seen
        self._script: Any = None
        self._next_get: asyncio.Future[int] | None = None  # the GET the next syncs share
        self._get_in_flight = False

    async def start(self) -> None:
        client = await self._subscribe()
        self._script = client.register_script(_PUBLISH)
        # Nothing is cached yet: everything published so far is as good as applied.
        self.applied = int(await client.get(self.seq_key) or 0)
        self._listen_in_background()

    # --- the accepting replica ----------------------------------------------------------

    async def publish(self, keys: Iterable[tuple[str, str]], namespaces: Iterable[str] = ()) -> int:
        """Tell every replica (this one too) to drop ``keys`` and ``namespaces``."""
        assert self._script is not None, "fence not started"
        payload = orjson.dumps({"keys": sorted(list(k) for k in keys), "namespaces": sorted(namespaces)}).decode()
        seq = int(await self._script(keys=[self.seq_key, self.channel], args=[payload]))
        self.published += 1
        if seq > self.applied:  # its echo is still to come: this replica dropped these already
            self._own.add(seq)
        return seq

    # --- every replica, before reading from its caches ------------------------------------

    async def sync(self) -> None:
        """Return once every invalidation published before this call is applied here."""
        try:
            target = await self._shared_get()
        except Exception as exc:  # Redis unreachable: nothing cached can be trusted
            log.warning("redis fence: %s; dropping all cached data", exc)
            self._invalidate_all()
            return
        if target <= self.applied:
            return
        self.waits += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_seconds
        while self.applied < target:
            advanced = self._advanced
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                async with asyncio.timeout(remaining):
                    await advanced.wait()
            except TimeoutError:
                self.timeouts += 1
                log.warning("invalidation %d did not arrive within %.1f s; dropping all cached data", target, self.wait_seconds)
                self._invalidate_all()
                self.applied = max(self.applied, target)
                return

    async def _shared_get(self) -> int:
        """The shared sequence, read by a GET sent after this call began."""
        if self._next_get is None:
            self._next_get = asyncio.get_running_loop().create_future()
            if not self._get_in_flight:
                asyncio.get_running_loop().call_soon(self._send_get)
        fut = self._next_get
        return await asyncio.shield(fut)

    def _send_get(self) -> None:
        fut, self._next_get = self._next_get, None
        if fut is None:
            return
        self._get_in_flight = True
        task = asyncio.ensure_future(self._get())

        def done(t: asyncio.Future[int]) -> None:
            self._get_in_flight = False
            if t.cancelled():
                fut.cancel()
            elif t.exception() is not None:
                fut.set_exception(t.exception())  # type: ignore[arg-type]
            else:
                fut.set_result(t.result())
            if self._next_get is not None:  # callers that arrived while it was in flight
                self._send_get()

        task.add_done_callback(done)

    async def _get(self) -> int:
        assert self._client is not None, "fence not started"
        self.gets += 1
        return int(await self._client.get(self.seq_key) or 0)

    # --- the listener -------------------------------------------------------------------

    async def resubscribed(self) -> None:
        log.warning("redis fence: dropping all cached data")
        self._invalidate_all()
        try:
            self.applied = max(self.applied, int(await self._client.get(self.seq_key) or 0))  # type: ignore[union-attr]
        except Exception:  # the next sync waits, times out and drops again
            pass
        self._advance()

    def received(self, data: bytes | str) -> None:
        self.apply(data)

    def apply(self, raw: bytes | str) -> None:
        """Apply one ``seq|payload`` message."""
        text = raw.decode() if isinstance(raw, bytes) else raw
        head, _, body = text.partition("|")
        try:
            seq = int(head)
            payload = orjson.loads(body)
            keys = [(str(ns), str(k)) for ns, k in payload.get("keys", ())]
            namespaces = [str(n) for n in payload.get("namespaces", ())]
        except (ValueError, TypeError, orjson.JSONDecodeError):
            log.error("redis fence: undecodable message %r; dropping all cached data", text[:200])
            self._invalidate_all()
            return
        if seq > self.applied + 1:
            # Pub/sub keeps order on one connection: a jump means messages were lost.
            self.gaps += 1
            log.warning("redis fence: invalidations %d..%d missed; dropping all cached data", self.applied + 1, seq - 1)
            self._invalidate_all()
        if seq in self._own:
            self._own.discard(seq)  # published here, after dropping the same keys locally
        else:
            self.applying = seq  # the order index dates its dirty marks by it
            try:
                if keys:
                    self._invalidate(keys)
                for namespace in namespaces:
                    self._invalidate_namespace(namespace)
            finally:
                self.applying = None
        self.applied = max(self.applied, seq)
        if self.on_applied is not None:
            self.on_applied(self.applied)
        self._advance()

    def _advance(self) -> None:
        advanced, self._advanced = self._advanced, asyncio.Event()
        advanced.set()

"""The scale-out event bus: ``OrderChanged`` messages between gateway replicas over Redis pub/sub.

Every replica subscribes to one channel (``<prefix>bus``) and delivers each message it
receives to its local handlers -- the publishing replica included, and only that way, so
the publisher's own subscribers see each message exactly once, in the order Redis
delivered it to everyone.

A message is one JSON object::

    {"pos": 17,                       # optional: the journal's change position (see below)
     "changes": [OrderChanged.to_json(), ...],
     "invalidate": [[namespace, key], ...]}   # record-cache keys every replica drops

``RedisJournal.record_processed`` (and ``mark_processed_and_publish``) publishes from inside the Lua script that
records the change, so message order on the channel is exactly the order in which changes
became visible in the journal; ``pos`` then replaces each change's ``seq`` (it is the
resume cursor). ``invalidate`` also travels when an event changed no order (a work centre
with no open orders), so no replica keeps serving a record that changed.

Pub/sub is at-most-once: a replica whose connection to Redis drops misses what was
published meanwhile. redis-py reconnects and re-subscribes on its own; the bus notices the
repeated ``subscribe`` confirmation and calls ``on_gap`` (the gateway drops its whole record
cache then). Live subscribers of that replica may miss pushes during the gap; resuming with
their cursor (from the journal) gets them back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from .bus import Handler, OrderChanged
from .redis_channel import RedisChannel

log = logging.getLogger("ordergraph.bus")

CacheKey = tuple[str, str]

__all__ = ["RedisBus", "bus_channel", "decode_message", "encode_message_tail"]


def bus_channel(prefix: str) -> str:
    """The pub/sub channel of the replicas that share key prefix ``prefix``."""
    return f"{prefix}bus"


def encode_message_tail(changes: Iterable[OrderChanged], invalidate: Iterable[CacheKey] = ()) -> str:
    """A message without its leading ``{"pos":N,`` -- the journal's script prepends that."""
    body = orjson.dumps(
        {"changes": [c.to_json() for c in changes], "invalidate": sorted(list(k) for k in invalidate)}
    )
    return body.decode()[1:]  # drop "{": the script writes '{"pos":N,' + tail


def decode_message(raw: bytes | str) -> tuple[list[OrderChanged], set[CacheKey]]:
    """Parse a bus message; a ``pos`` (journal change position) becomes each change's seq."""
    body: dict[str, Any] = orjson.loads(raw)
    changes = [OrderChanged.from_json(c) for c in body.get("changes", ())]
    pos = body.get("pos")
    if pos is not None:
        changes = [_with_seq(c, int(pos)) for c in changes]
    keys = {(str(ns), str(key)) for ns, key in body.get("invalidate", ())}
    return changes, keys


def _with_seq(change: OrderChanged, seq: int) -> OrderChanged:
    d = change.to_json()
    d["seq"] = seq
    return OrderChanged.from_json(d)


class RedisBus(RedisChannel):
    """The Bus protocol over one Redis pub/sub channel shared by all replicas.

    ``invalidate`` receives the cache keys of every message (also from other replicas);
    ``on_gap`` is called after the subscription connection was re-established, when
    messages may have been missed.
    """

    role = "redis bus"

    def __init__(
        self,
        url: str,
        *,
        channel: str,
        invalidate: Callable[[set[CacheKey]], Any] | None = None,
        on_gap: Callable[[], Any] | None = None,
    ) -> None:
        """Nothing connects until :meth:`start`."""
        super().__init__(url, channel)
        self.invalidate = invalidate
        self.on_gap = on_gap
        self.received_messages = 0  # messages delivered to this replica's handlers
        self._handlers: list[Handler] = []

    def subscribe(self, handler: Handler) -> None:
        """Call ``handler`` with the changes of every message on the channel."""
        self._handlers.append(handler)

    async def start(self) -> None:
        """Connect and subscribe; returns once Redis confirmed the subscription."""
        await self._subscribe()
        self._listen_in_background()

    async def publish(self, changes: list[OrderChanged]) -> None:
        """Send ``changes`` to every replica, this one included (no local short-cut)."""
        if not changes:
            return
        if self._client is None:
            raise RuntimeError("RedisBus not started")
        keys = {k for c in changes for k in c.invalidated}
        await self._client.publish(self.channel, "{" + encode_message_tail(changes, keys))

    async def resubscribed(self) -> None:
        if self.on_gap is not None:
            self.on_gap()

    def received(self, data: bytes | str) -> None:
        try:
            changes, keys = decode_message(data)
        except Exception:
            log.exception("redis bus: undecodable message dropped")
            return
        self.received_messages += 1
        self.deliver(changes, keys)

    def deliver(self, changes: list[OrderChanged], keys: set[CacheKey]) -> None:
        """Hand one message to the local cache and handlers (one bad handler stops none)."""
        if keys and self.invalidate is not None:
            self.invalidate(keys)
        if not changes:
            return
        for handler in self._handlers:
            try:
                handler(changes)
            except Exception:
                log.exception("bus handler failed")

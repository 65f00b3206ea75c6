"""One Redis pub/sub channel with a listening task: what the bus and the fence share.

``start`` returns once Redis confirmed the subscription (a message published after it is
received). redis-py reconnects and re-subscribes on its own after a dropped connection;
the repeated ``subscribe`` confirmation is the only sign that messages may have been
missed meanwhile, so subclasses get ``resubscribed()`` then. ``stop`` is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as redis

from sources.tasks import stop_task

log = logging.getLogger("ordergraph.redis")


class RedisChannel:
    """Subscribe to ``channel`` on ``url``; each message goes to ``received``."""

    #: names the listening task and the log lines
    role = "redis channel"

    def __init__(self, url: str, channel: str) -> None:
        self.url = url
        self.channel = channel
        self.gaps = 0  # re-subscriptions (messages possibly missed)
        self._client: redis.Redis | None = None
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None

    async def _subscribe(self) -> redis.Redis:
        """Connect and subscribe; returns the client once Redis confirmed the subscription."""
        self._client = redis.from_url(self.url)
        self._pubsub = self._client.pubsub()
        await self._pubsub.subscribe(self.channel)
        async with asyncio.timeout(10):
            while True:
                msg = await self._pubsub.get_message(timeout=1.0)
                if msg is not None and msg["type"] == "subscribe":
                    break
        return self._client

    def _listen_in_background(self) -> None:
        self._task = asyncio.create_task(self._listen(), name=f"ordergraph-{self.role.replace(' ', '-')}")

    async def stop(self) -> None:
        """Stop listening and close the connections. Idempotent."""
        await stop_task(self._task)
        self._task = None
        if self._pubsub is not None:
            await self._pubsub.aclose()
            self._pubsub = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _listen(self) -> None:
        assert self._pubsub is not None
        while True:
            if (task := asyncio.current_task()) is not None and task.cancelling():
                raise asyncio.CancelledError  # a cancel redis-py swallowed (see stop())
            try:
                msg = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis unreachable: keep trying, the replica stays up
                log.warning("%s: %s; reconnecting", self.role, exc)
                await asyncio.sleep(1.0)
                continue
            if msg is None:
                continue
            if msg["type"] == "subscribe":
                # A confirmation after the first one: redis-py reconnected and re-subscribed.
                self.gaps += 1
                log.warning("%s: subscription re-established; messages may have been missed", self.role)
                await self.resubscribed()
                continue
            if msg["type"] == "message":
                self.received(msg["data"])

    async def resubscribed(self) -> None:
        """Messages may have been missed (override)."""

    def received(self, data: bytes | str) -> None:
        """One message (override)."""

"""A small graphql-transport-ws client over the `websockets` library, for tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

PROTOCOL = "graphql-transport-ws"


class WsClient:
    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn

    @classmethod
    async def open(cls, base_url: str, *, init: dict[str, Any] | None = None, ack: bool = True) -> WsClient:
        conn = await connect(base_url.replace("http://", "ws://") + "/graphql", subprotocols=[PROTOCOL])
        client = cls(conn)
        if ack:
            await client.send({"type": "connection_init", "payload": init or {}})
            msg = await client.recv()
            assert msg["type"] == "connection_ack", msg
        return client

    async def send(self, message: dict[str, Any]) -> None:
        await self.conn.send(json.dumps(message))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.conn.recv(), timeout))

    async def subscribe(self, sub_id: str, query: str, variables: dict[str, Any] | None = None) -> None:
        await self.send({"id": sub_id, "type": "subscribe", "payload": {"query": query, "variables": variables or {}}})

    async def next(self, sub_id: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """The next `next` message (of ``sub_id``), skipping pongs."""
        while True:
            msg = await self.recv(timeout)
            if msg["type"] == "pong":
                continue
            assert msg["type"] in ("next", "error", "complete"), msg
            if sub_id is None or msg.get("id") == sub_id:
                assert msg["type"] == "next", msg
                return msg["payload"]

    async def pong(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next `pong`, past any `next` of a subscription (the plant's clock runs:
        an order may change again meanwhile)."""
        while True:
            msg = await self.recv(timeout)
            if msg["type"] == "pong":
                return msg
            assert msg["type"] == "next", msg

    async def nothing(self, timeout: float = 0.3) -> bool:
        """True when no message arrives within ``timeout``."""
        try:
            await asyncio.wait_for(self.conn.recv(), timeout)
        except TimeoutError:
            return True
        return False

    async def close(self) -> None:
        await self.conn.close()

    async def closed_with(self, timeout: float = 5.0) -> int | None:
        """Wait for the server to close; returns the close code."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self.conn.recv()
        except Exception:
            pass
        return self.conn.close_code

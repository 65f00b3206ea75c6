"""Real receivers of notices for tests: a webhook endpoint that verifies Standard Webhooks
signatures (with the ``standardwebhooks`` package, as a customer's would), on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from .servers import free_socket


@dataclasses.dataclass
class Received:
    webhook_id: str
    payload: dict[str, Any]


class WebhookReceiver:
    """Accepts POSTs whose signature verifies with ``secret``; 401 otherwise. ``fail`` > 0
    answers that many (verified) requests with 503, for retry tests; ``hold`` pauses every
    request after it is verified and recorded, before the answer (a crash window)."""

    def __init__(self) -> None:
        self.secret: str | None = None
        self.received: list[Received] = []
        self.rejected = 0
        self.fail = 0
        self.hold: asyncio.Event | None = None
        self.arrived = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.secret is None:
            return web.Response(status=500, text="no secret set")
        try:
            payload = Webhook(self.secret).verify(body, dict(request.headers))
        except WebhookVerificationError:
            self.rejected += 1
            return web.Response(status=401, text="bad signature")
        if self.fail > 0:
            self.fail -= 1
            return web.Response(status=503, text="try later")
        self.received.append(Received(request.headers["webhook-id"], payload))
        self.arrived.set()
        if self.hold is not None:
            await self.hold.wait()
        return web.Response(status=204)

    def ids(self) -> list[str]:
        return [r.webhook_id for r in self.received]


@contextlib.asynccontextmanager
async def webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    sock = free_socket()
    site = web.SockSite(runner, sock)
    await site.start()
    receiver.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    try:
        yield receiver
    finally:
        if receiver.hold is not None:
            receiver.hold.set()
        await runner.cleanup()
        sock.close()

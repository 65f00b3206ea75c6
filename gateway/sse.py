"""Subscriptions over plain HTTP: Server-Sent Events (graphql-sse "distinct connections").

``GET /graphql/stream?query=...&variables=...`` or ``POST /graphql/stream`` with a JSON
body, ``Accept: text/event-stream``. Each message is ``event: next`` with the GraphQL
payload (``extensions.cursor`` included); errors come as one ``next`` with ``errors``
followed by ``event: complete``. The bearer token goes in ``Authorization``; when it
expires the stream ends with a ``next`` carrying a "token expired" error and ``complete``.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from resolvers.policy import Viewer
from sources import SourceError, tracing

from .errors import RequestError
from .operation import Operation, Operations, Transport
from .subscriptions import Hub, Scope, SubscribeError, subscribe_refusal


class StreamSink:
    """A bounded queue that coalesces per order once full, like the WebSocket queue."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: collections.OrderedDict[Any, dict[str, Any]] = collections.OrderedDict()
        self.ready = asyncio.Event()
        self._n = 0

    def offer(self, sub_id: str, order: str, payload: dict[str, Any]) -> None:
        if len(self.items) >= self.limit and order in self.items:
            self.items[order] = payload
        else:
            self._n += 1
            self.items[order if len(self.items) >= self.limit else (order, self._n)] = payload
        self.ready.set()

    async def messages(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            await self.ready.wait()
            self.ready.clear()
            while self.items:
                _key, payload = self.items.popitem(last=False)
                yield payload


def _event(kind: str, data: Any) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def stream_endpoint(
    request: Request, hub: Hub, operations: Operations, *, queue_size: int, keepalive_seconds: float = 15.0
) -> Response:
    """Serve one subscription as an SSE stream: the pipeline's admit, read and document
    stages, then the hub. A stream counts against its viewer's connection cap (the same
    as its WebSockets, ``Admission.connect``): over it, 429."""
    admission = operations.admission
    slot: str | None = None
    streaming = False
    try:
        viewer = await operations.admit(request) or Viewer.system()  # CSRF, token, rate limit
        if admission is not None:
            slot = admission.connect(viewer)
        with tracing.operation("graphql.subscribe", request.headers):  # the start: document, replay (off: no-op)
            params = await operations.read(request)
            op = await operations.document(Operation(params, viewer, Transport.STREAM, request.method))
            disconnect = admission.disconnect if admission is not None else None
            response = await _open_stream(op, viewer, hub, queue_size, keepalive_seconds, slot, disconnect)
        streaming = isinstance(response, StreamingResponse)  # the stream releases the slot when it ends
        return response
    except RequestError as exc:
        return JSONResponse(exc.payload(), status_code=exc.status, headers=exc.headers)
    finally:
        if not streaming and slot and admission is not None:
            admission.disconnect(slot)  # refused or failed before the stream began


async def _open_stream(
    op: Operation,
    viewer: Viewer,
    hub: Hub,
    queue_size: int,
    keepalive_seconds: float,
    slot: str | None,
    disconnect: Callable[[str], None] | None,
) -> Response:
    sink = StreamSink(queue_size)
    try:
        sub = await hub.subscribe("sse", sink, op, Scope.of(viewer))
    except (SubscribeError, SourceError, GraphQLError) as exc:
        refusal = subscribe_refusal(exc)
        return JSONResponse(refusal.payload(), status_code=refusal.status, headers=refusal.headers)

    async def body() -> AsyncIterator[bytes]:
        messages = sink.messages()
        pending: asyncio.Future[dict[str, Any]] | None = None
        try:
            yield b": connected\n\n"
            while True:
                wait = keepalive_seconds
                if viewer.expires_at is not None:
                    left = (viewer.expires_at - dt.datetime.now(dt.UTC)).total_seconds()
                    if left <= 0:
                        expired = {"message": "Forbidden: token expired", "extensions": {"code": "TOKEN_EXPIRED"}}
                        yield _event("next", {"errors": [expired]})
                        yield _event("complete", None)
                        return
                    wait = min(wait, left)
                if pending is None:
                    pending = asyncio.ensure_future(anext(messages))
                # wait without cancelling the read: cancelling would end the generator
                done, _ = await asyncio.wait({pending}, timeout=wait)
                if not done:
                    yield b": keep-alive\n\n"
                    continue
                payload, pending = pending.result(), None
                yield _event("next", payload)
        finally:
            if pending is not None:
                pending.cancel()
            hub.unsubscribe(sub)
            if slot and disconnect is not None:
                disconnect(slot)

    return StreamingResponse(
        body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )

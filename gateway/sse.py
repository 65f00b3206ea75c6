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
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from graphql import GraphQLError, OperationType
from graphql.execution.values import get_variable_values
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from resolvers.policy import Viewer
from sources import SourceError, tracing

from .graphql_http import (
    DocumentCache,
    RequestError,
    check_declared,
    check_params,
    read_params,
    select_operation,
)
from .subscriptions import Hub, Scope, SubscribeError


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
    request: Request,
    hub: Hub,
    documents: DocumentCache,
    authenticate: Callable[[Request], Awaitable[Viewer]],
    *,
    max_body_bytes: int,
    queue_size: int,
    keepalive_seconds: float = 15.0,
    connect: Callable[[Viewer], str | None] | None = None,
    disconnect: Callable[[str], None] | None = None,
    max_connections: int = 0,
) -> Response:
    """Serve one subscription as an SSE stream.

    ``connect``/``disconnect`` count the viewer's live connections (the same cap as its
    WebSockets, ``gateway.limits.Guard``): over it, 429."""
    slot: str | None = None
    streaming = False
    try:
        viewer = await authenticate(request)  # CSRF, token, rate limit: RequestError
        if connect is not None:
            slot = connect(viewer)
            if slot is None:
                raise _coded(
                    RequestError(429, f"Too many connections: at most {max_connections} streams and WebSockets per viewer."),
                    "TOO_MANY_CONNECTIONS",
                )
        with tracing.operation("graphql.subscribe", request.headers):  # the start: document, replay (off: no-op)
            response = await _open_stream(request, viewer, hub, documents, max_body_bytes, queue_size, keepalive_seconds, slot, disconnect)
        streaming = isinstance(response, StreamingResponse)  # the stream releases the slot when it ends
        return response
    except RequestError as exc:
        errors = exc.errors or [{"message": exc.message}]
        return JSONResponse({"errors": errors}, status_code=exc.status, headers=exc.headers)
    finally:
        if not streaming and slot and disconnect is not None:
            disconnect(slot)  # refused or failed before the stream began


def _coded(exc: RequestError, code: str) -> RequestError:
    exc.errors = [{"message": exc.message, "extensions": {"code": code}}]
    return exc


async def _open_stream(
    request: Request,
    viewer: Viewer,
    hub: Hub,
    documents: DocumentCache,
    max_body_bytes: int,
    queue_size: int,
    keepalive_seconds: float,
    slot: str | None,
    disconnect: Callable[[str], None] | None,
) -> Response:
    try:
        scope = Scope.of(viewer)
        params = await read_params(request, max_body_bytes)
        query, variables, op_name = check_params(documents.resolve_persisted(params))
        doc, errors = await documents.get(query, viewer, variables)
        if doc is None:
            return JSONResponse({"errors": [e.formatted for e in errors]}, status_code=400)
        op = select_operation(doc, op_name)
        if op.operation is not OperationType.SUBSCRIPTION:
            raise RequestError(400, "/graphql/stream serves subscriptions; send queries to /graphql.")
        check_declared(op, variables)
        coerced = get_variable_values(hub.schema, op.variable_definitions or (), variables)
        if isinstance(coerced, list):
            return JSONResponse({"errors": [e.formatted for e in coerced]}, status_code=400)
    except RequestError as exc:
        errors = exc.errors or [{"message": exc.message}]
        return JSONResponse({"errors": errors}, status_code=exc.status, headers=exc.headers)

    sink = StreamSink(queue_size)
    try:
        sub = await hub.subscribe("sse", sink, query, doc, op, op_name, variables, dict(getattr(coerced, "coerced", coerced)), scope)
    except SubscribeError as exc:
        return JSONResponse({"errors": [{"message": str(exc), "extensions": {"code": "BAD_REQUEST"}}]}, status_code=400)
    except SourceError as exc:  # the replay or the ownership check could not read its source
        return JSONResponse(
            {"errors": [{"message": f"Cannot start the subscription: {exc.code.replace('_', ' ').lower()} ({exc.source}); retry shortly.", "extensions": {"code": exc.code, "source": exc.source}}]},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    except GraphQLError as exc:  # a bad argument, e.g. an `after` cursor we never gave out
        return JSONResponse({"errors": [{**exc.formatted, "extensions": {"code": "BAD_USER_INPUT", **(exc.extensions or {})}}]}, status_code=400)

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

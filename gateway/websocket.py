"""graphql-transport-ws, served as a plain ASGI WebSocket app (the legacy ``graphql-ws`` is refused).

Protocol rules enforced (close codes as the protocol defines them): 4400 invalid message
(not JSON, no type, a binary frame), 4401 subscribe before ``connection_ack``, 4408 no
``connection_init`` in time, 4409 duplicate subscription id, 4429 a second
``connection_init``; 1009 a message over ``max_message_bytes``, 1011 a message we failed
to handle (never a dropped connection without a close frame). Each connection has one
bounded, coalescing outbound queue, so a slow client never holds up the hub.

Admission (``gateway/admission.py``): the token rides in the ``connection_init`` payload;
a refused token closes with 4403, too many connections of one viewer with 4429, each
``subscribe`` spends the viewer's rate budget, and when the token expires the
connection closes with 4403 "Forbidden: token expired" (reconnect with a fresh token and
the last cursor: nothing is lost).

Memory per idle connection (bench/README.md, "Memory per idle subscription"): the server's
ASGI task is the connection's only task while it is idle. It reads; the init timeout and
the token's expiry are timer handles (``loop.call_later``), and a writer task exists only
while there are messages to send. The app (``gateway/app.py``) hands ``/graphql``
WebSockets straight to ``Connection`` rather than through Starlette's routing and
middleware, whose frames and ``WebSocket`` object every idle connection kept alive.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from graphql import GraphQLError, OperationType
from starlette._utils import get_route_path
from starlette.applications import Starlette
from starlette.datastructures import Headers

from resolvers.policy import Viewer
from sources import SourceError, tracing

from .errors import RequestError
from .operation import Operation, Operations, Transport
from .subscriptions import Hub, Scope, SubscribeError, Subscriber, subscribe_refusal

log = logging.getLogger("ordergraph.ws")

PROTOCOL = "graphql-transport-ws"
SLOW_CLIENT_CLOSE = 4499  # our own code: the client fell too far behind; resume with its cursor

TRACE_HEADERS = (b"traceparent", b"tracestate", b"baggage")

ASGIScope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


_CLOSING: set[asyncio.Task[None]] = set()  # closes started by a timer, until they finish


class SocketFirst(Starlette):
    """Starlette, except that a WebSocket to ``socket_path`` goes straight to ``socket_app``.

    Starlette's middleware does nothing for a WebSocket here (CORS and the error pages are
    HTTP's) and its routing would only find that one route, but every frame of that chain
    and its ``WebSocket`` object would stay alive for as long as the connection is open.
    """

    def __init__(self, *args: Any, socket_path: str, socket_app: Callable[[ASGIScope, Receive, Send], Awaitable[None]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.socket_path = socket_path
        self.socket_app = socket_app

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        if scope["type"] == "websocket" and get_route_path(scope) == self.socket_path:
            scope["app"] = self
            await self.socket_app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)  # type: ignore[arg-type]


class OutboundQueue:
    """Pending messages of one connection.

    Up to ``limit`` messages queue as they come. Past it, a new update of an order that
    already has a pending message replaces it (the client gets the latest state and
    ``extensions.coalesced``); past twice the limit the client is too slow and is closed
    so it can resume from its last cursor without loss.
    """

    __slots__ = ("limit", "items", "latest", "notify", "overflowed", "coalesced", "_n")

    def __init__(self, limit: int, notify: Callable[[], None]) -> None:
        self.limit = limit
        self.items: collections.OrderedDict[tuple[str, str, int], dict[str, Any]] = collections.OrderedDict()
        self.latest: dict[tuple[str, str], tuple[str, str, int]] = {}
        self.notify = notify  # called on every message queued (and on overflow)
        self.overflowed = False
        self.coalesced = 0
        self._n = 0

    def put(self, sub_id: str, order: str, message: dict[str, Any]) -> None:
        pending = self.latest.get((sub_id, order))
        if len(self.items) >= self.limit and pending is not None and pending in self.items:
            old = self.items[pending]
            count = old.get("payload", {}).get("extensions", {}).get("coalesced", 0) + 1
            payload = message["payload"]
            message = {**message, "payload": {**payload, "extensions": {**payload.get("extensions", {}), "coalesced": count}}}
            self.items[pending] = message
            self.coalesced += 1
            return
        if len(self.items) >= 2 * self.limit:
            self.overflowed = True
            self.notify()
            return
        self._n += 1
        key = (sub_id, order, self._n)
        self.items[key] = message
        self.latest[(sub_id, order)] = key
        self.notify()

    def put_control(self, message: dict[str, Any]) -> None:
        self._n += 1
        self.items[("", "", self._n)] = message
        self.notify()

    def pop(self) -> dict[str, Any] | None:
        if not self.items:
            return None
        key, message = self.items.popitem(last=False)
        if self.latest.get(key[:2]) == key:
            del self.latest[key[:2]]
        return message


class Connection:
    """One graphql-transport-ws connection, on the server's ASGI ``receive`` and ``send``."""

    __slots__ = (
        "asgi", "_receive", "_send", "hub", "operations", "admission", "slot", "viewer", "expiry", "init_timeout",
        "init_timer", "max_subscriptions", "max_message_bytes", "queue", "scope", "init_received", "subscribers",
        "tasks", "closed", "accepted", "client_gone", "writer", "__weakref__",
    )

    def __init__(
        self,
        asgi: ASGIScope,
        receive: Receive,
        send: Send,
        hub: Hub,
        operations: Operations,
        *,
        init_timeout: float = 10.0,
        max_subscriptions: int = 100,
        queue_size: int = 1000,
        max_message_bytes: int = 1_048_576,
    ) -> None:
        self.asgi = asgi  # the server's scope of this WebSocket (path, headers, subprotocols)
        self._receive = receive
        self._send = send
        self.hub = hub
        self.operations = operations  # the document, execute and format stages
        self.admission = operations.admission  # identity, connection cap, rate (None: open)
        self.slot: str | None = None  # this connection's place in its viewer's cap
        self.viewer: Viewer | None = None
        self.expiry: asyncio.TimerHandle | None = None
        self.init_timeout = init_timeout
        self.init_timer: asyncio.TimerHandle | None = None
        self.max_subscriptions = max_subscriptions
        # The same limit as an HTTP body ([gateway] max_body_bytes); the server's own frame
        # limit (uvicorn ws_max_size, set from it by `ordergraph serve`) stops bigger ones
        # before they are read whole.
        self.max_message_bytes = max_message_bytes
        self.queue = OutboundQueue(queue_size, self._wake_writer)
        self.scope: Scope | None = None
        self.init_received = False
        self.subscribers: dict[str, Subscriber | None] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.closed = False
        self.accepted = False
        self.client_gone = False  # the client's close or disconnect was received
        self.writer: asyncio.Task[None] | None = None  # only while messages wait to be sent

    # Sink
    def offer(self, sub_id: str, order: str, payload: dict[str, Any]) -> None:
        if sub_id in self.subscribers:
            self.queue.put(sub_id, order, {"id": sub_id, "type": "next", "payload": payload})

    async def run(self) -> None:
        message = await self._receive()
        if message["type"] != "websocket.connect":  # the client left during the handshake
            return
        if PROTOCOL not in self.asgi.get("subprotocols", ()):
            # Before the accept the server answers the handshake with a 403.
            with contextlib.suppress(Exception):
                await self._send({"type": "websocket.close", "code": 4406, "reason": "Subprotocol not acceptable: use graphql-transport-ws"})
            return
        await self._send({"type": "websocket.accept", "subprotocol": PROTOCOL})
        self.accepted = True
        # After the handshake only the trace context of its headers is read (each
        # operation's span continues it); the rest would stay for the connection's life.
        self.asgi["headers"] = [h for h in self.asgi.get("headers", ()) if h[0] in TRACE_HEADERS]
        self.init_timer = asyncio.get_running_loop().call_later(self.init_timeout, self._init_timed_out)
        try:
            while not self.closed:
                try:
                    message = await self._receive()
                except (OSError, RuntimeError):
                    break
                if message["type"] == "websocket.disconnect":
                    self.client_gone = True
                    break
                text = message.get("text")
                if text is None:  # a binary frame: graphql-transport-ws speaks JSON text only
                    await self.close(4400, "Invalid message: binary frames are not part of graphql-transport-ws")
                    break
                limit = self.max_message_bytes
                if len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit):
                    await self.close(1009, f"Message too big: at most {self.max_message_bytes} bytes")
                    break
                try:
                    await self._handle(text)
                except Exception:
                    # Never drop a connection silently: say it was our fault, with a close code.
                    log.exception("graphql-transport-ws message failed")
                    await self.close(1011, "Internal error")
                    break
        finally:
            self.closed = True
            if self.init_timer is not None:
                self.init_timer.cancel()
            if self.expiry is not None:
                self.expiry.cancel()
            for task in self.tasks.values():
                task.cancel()
            for sub in self.subscribers.values():
                if sub is not None:
                    self.hub.unsubscribe(sub)
            self.subscribers.clear()
            if self.slot is not None and self.admission is not None:
                self.admission.disconnect(self.slot)
                self.slot = None
            writer = self.writer
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        if self.accepted and not self.client_gone:
            with contextlib.suppress(Exception):
                await self._send({"type": "websocket.close", "code": code, "reason": reason})

    def _later(self, close: tuple[int, str]) -> None:
        # A timer's close runs as a task of its own (a close awaits the send), held until done.
        if not self.closed:
            task = asyncio.get_running_loop().create_task(self.close(*close))
            _CLOSING.add(task)
            task.add_done_callback(_CLOSING.discard)

    def _init_timed_out(self) -> None:
        self.init_timer = None
        if self.scope is None:
            self._later((4408, "Connection initialisation timeout"))

    def _wake_writer(self) -> None:
        if not self.closed and (self.writer is None or self.writer.done()):
            self.writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        """Send what is queued, then end (the next message queued starts a new writer)."""
        try:
            await self._drain()
        finally:
            if self.writer is asyncio.current_task():
                self.writer = None  # a finished task would stay referenced for nothing

    async def _drain(self) -> None:
        queue = self.queue
        while True:
            if queue.overflowed:
                await self.close(SLOW_CLIENT_CLOSE, "Too slow: resume with the last cursor you received")
                return
            message = queue.pop()
            if message is None or self.closed:
                return
            try:
                await self._send({"type": "websocket.send", "text": orjson.dumps(message).decode()})
            except Exception:
                self.closed = True
                return

    async def _handle(self, text: str) -> None:
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            await self.close(4400, "Invalid message: not JSON")
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            await self.close(4400, "Invalid message: no type")
            return
        kind = msg["type"]
        if kind == "connection_init":
            await self._on_init(msg.get("payload"))
        elif kind == "ping":
            self.queue.put_control({"type": "pong"})
        elif kind == "pong":
            return
        elif kind == "subscribe":
            await self._on_subscribe(msg)
        elif kind == "complete":
            sub_id = msg.get("id")
            if isinstance(sub_id, str):
                self._stop(sub_id)
        else:
            await self.close(4400, f"Invalid message type {kind!r}")

    async def _on_init(self, payload: Any) -> None:
        if self.init_received:
            await self.close(4429, "Too many initialisation requests")
            return
        self.init_received = True
        if payload is not None and not isinstance(payload, dict):
            await self.close(4400, "Invalid connection_init payload")
            return
        viewer = Viewer.system()
        if self.admission is not None:
            try:
                viewer = await self.admission.admit_socket(payload or {})
                self.slot = self.admission.connect(viewer)
            except RequestError as exc:
                if exc.status == 429:
                    await self.close(4429, exc.message[:120])
                else:  # a close reason is at most 123 bytes
                    await self.close(4403, f"Forbidden: {exc.message.removeprefix('Unauthorized: ')}"[:120])
                return
        self.viewer = viewer
        self.scope = Scope.of(viewer)
        if self.init_timer is not None:  # initialised in time
            self.init_timer.cancel()
            self.init_timer = None
        if viewer.expires_at is not None:
            # Token expiry is wall-clock time, like the token's own `exp`.
            delay = max(0.0, (viewer.expires_at - dt.datetime.now(dt.UTC)).total_seconds())
            self.expiry = asyncio.get_running_loop().call_later(delay, self._later, (4403, "Forbidden: token expired"))
        self.queue.put_control({"type": "connection_ack"})

    async def _on_subscribe(self, msg: dict[str, Any]) -> None:
        if self.scope is None:
            await self.close(4401, "Unauthorized")
            return
        sub_id = msg.get("id")
        payload = msg.get("payload")
        if not isinstance(sub_id, str) or not sub_id or not isinstance(payload, dict):
            await self.close(4400, "Invalid subscribe message")
            return
        if sub_id in self.subscribers:
            await self.close(4409, f"Subscriber for {sub_id} already exists")
            return
        if len(self.subscribers) >= self.max_subscriptions:
            self._error(sub_id, f"At most {self.max_subscriptions} subscriptions per connection.")
            return
        if self.admission is not None and self.viewer is not None:
            try:
                self.admission.take(self.viewer)
            except RequestError as exc:
                self._error(sub_id, exc.message, exc.errors)
                return
        self.subscribers[sub_id] = None
        self.tasks[sub_id] = asyncio.create_task(self._start(sub_id, payload))

    def _error(self, sub_id: str, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        self.queue.put_control({"id": sub_id, "type": "error", "payload": errors or [{"message": message}]})

    def _stop(self, sub_id: str) -> None:
        task = self.tasks.pop(sub_id, None)
        if task is not None and not task.done():
            task.cancel()
        sub = self.subscribers.pop(sub_id, None)
        if sub is not None:
            self.hub.unsubscribe(sub)

    async def _start(self, sub_id: str, payload: dict[str, Any]) -> None:
        # One span per operation on the socket, continuing the trace of the handshake's traceparent.
        traced = tracing.Operation.start("graphql.subscribe", Headers(scope=self.asgi)) if tracing.enabled() else None
        try:
            await self._start_operation(sub_id, payload)
        finally:
            if traced is not None:
                traced.end()

    async def _start_operation(self, sub_id: str, payload: dict[str, Any]) -> None:
        try:
            try:
                op = await self.operations.document(Operation(payload, self.viewer, Transport.SOCKET))
            except RequestError as exc:  # a bad document, the viewer's document budget, a full worker
                self._fail(sub_id, exc.message, exc.errors)
                return
            tracing.set_attributes(**{"graphql.operation": op.kind.value, "graphql.operation_name": op.name or ""})
            if op.kind is not OperationType.SUBSCRIPTION:
                result = await self.operations.answer(op)
                out = self.operations.format(result, self.viewer)
                self.queue.put_control({"id": sub_id, "type": "next", "payload": out})
                self.queue.put_control({"id": sub_id, "type": "complete"})
                self.subscribers.pop(sub_id, None)
                return
            assert self.scope is not None
            sub = await self.hub.subscribe(sub_id, self, op, self.scope)
            if sub_id in self.subscribers:
                self.subscribers[sub_id] = sub
            else:  # completed while starting
                self.hub.unsubscribe(sub)
        except (SubscribeError, SourceError, GraphQLError) as exc:
            refusal = subscribe_refusal(exc)
            self._fail(sub_id, refusal.message, refusal.errors)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("subscription %s failed to start", sub_id)
            self._fail(sub_id, "Internal error while starting the subscription.")
        finally:
            self.tasks.pop(sub_id, None)

    def _fail(self, sub_id: str, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        self.subscribers.pop(sub_id, None)
        self._error(sub_id, message, errors)

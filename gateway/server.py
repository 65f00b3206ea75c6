"""The HTTP server's own limits (uvicorn), set from the gateway's configuration.

Some limits must hold before the application sees a request, because by then the bytes
are read: the request line and headers (``[gateway] max_header_bytes``; a 50 MB
``Authorization`` header was read whole) and the size of a WebSocket message (uvicorn's
``ws_max_size``, 16 MB by default, against an HTTP body limit of 1 MB: one limit,
``[gateway] max_body_bytes``, for both). ``ordergraph serve``, the demo and the tests run
uvicorn with ``server_settings``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

from .config import Config

log = logging.getLogger("ordergraph.server")

# A POST body larger than this is never answered at once (``GraphQLHttp.at_once``): the
# bodies the response cache answers are small, and a larger one streams to the full path.
AT_ONCE_MAX_BODY = 16_384


def server_settings(config: Config, app: Any = None) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config`` that apply the gateway's limits; with the
    gateway's ``app``, a repeated ``POST /graphql`` is also answered from the response
    cache before any ASGI work (``GraphQLHttp.at_once``)."""
    gateway = getattr(getattr(app, "state", None), "gateway", None)

    def at_once() -> Any:
        http = getattr(gateway, "http", None)
        return http.at_once if http is not None else None

    settings: dict[str, Any] = {
        "ws_max_size": config.gateway.max_body_bytes,
        "ws_per_message_deflate": False,
        # h11 (when httptools is missing) refuses a head larger than this with a 400
        "h11_max_incomplete_event_size": config.gateway.max_header_bytes,
    }
    protocol = header_limited_protocol(config.gateway.max_header_bytes, at_once if gateway is not None else None)
    if protocol is not None:
        settings["http"] = protocol
    ws = slim_websocket_protocol()
    if ws is not None:
        settings["ws"] = ws
    return settings


async def _park(waiters: list[asyncio.Future[None]]) -> None:
    """Wait on a new future in ``waiters`` until someone wakes it (``Inbox``, ``Flag``)."""
    waiter = asyncio.get_running_loop().create_future()
    waiters.append(waiter)
    try:
        await waiter
    finally:
        waiters.remove(waiter)


class Inbox:
    """What uvicorn's WebSocket protocol uses of its receive ``asyncio.Queue`` (``put_nowait``,
    ``get``, ``empty``, ``qsize``), without the three deques and the ``Event`` every queue
    allocates (about 3 KiB per connection, most of them for an idle one)."""

    __slots__ = ("_items", "_waiters")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiters: list[asyncio.Future[None]] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        if self._waiters:
            for waiter in self._waiters:  # each getter looks again; one takes the item
                if not waiter.done():
                    waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)

    async def get(self) -> Any:
        while not self._items:
            if self._waiters is None:  # made only once someone waits
                self._waiters = []
            await _park(self._waiters)
        return self._items.pop(0)


class Flag:
    """``asyncio.Event``'s ``set``, ``clear``, ``is_set`` and ``wait`` with no deque until
    someone waits (uvicorn's ``writable`` flag, waited on only while the socket's buffer is
    full)."""

    __slots__ = ("_value", "_waiters")

    def __init__(self) -> None:
        self._value = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        self._value = True
        if self._waiters:
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        if not self._value:
            if self._waiters is None:  # made only once someone waits
                self._waiters = []
            await _park(self._waiters)
        return True


def release_handshake_parser(conn: Any) -> bool:
    """Give a websockets ``ServerProtocol`` past its handshake a fresh frame parser.

    ``ServerProtocol.parse`` reads the handshake request into a local variable and then
    parses frames with ``yield from Protocol.parse()``, so the request, with all its headers,
    lives as long as the connection. When that generator waits at a frame boundary (inside
    ``Protocol.parse``, in ``at_eof``, nothing buffered), a fresh ``Protocol.parse`` is in
    exactly the same state, without the handshake. Anywhere else (a frame half read) this
    changes nothing and returns False: the caller may try again later."""
    from websockets.protocol import Protocol
    from websockets.server import ServerProtocol
    from websockets.streams import StreamReader

    old = conn.parser
    inner = getattr(old, "gi_yieldfrom", None)
    innermost = getattr(inner, "gi_yieldfrom", None)
    if (
        getattr(old, "gi_code", None) is not ServerProtocol.parse.__code__
        or getattr(inner, "gi_code", None) is not Protocol.parse.__code__
        or getattr(innermost, "gi_code", None) is not StreamReader.at_eof.__code__
        or conn.reader.buffer
        or conn.reader.eof
    ):
        return False
    fresh = Protocol.parse(conn)
    next(fresh)  # runs to the same wait in at_eof
    conn.parser = fresh
    old.close()
    return True


@functools.cache
def slim_websocket_protocol() -> type | None:
    """uvicorn's sans-I/O WebSocket protocol (what it picks with websockets ≥ 14), holding
    less for an idle connection: it lets go of the handshake's request and response once
    the connection is accepted (uvicorn keeps both, with their headers, for the
    connection's life though nothing reads them after the 101), gives websockets' protocol
    a frame parser that no longer holds the request (``release_handshake_parser``), and
    uses a lean receive queue and ``writable`` flag (``Inbox``, ``Flag``): about 5 + 3 + 4
    KiB per idle subscription (bench/README.md, memory per idle subscription). None when
    that implementation is not installed (uvicorn's default then)."""
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    except ImportError:
        return None

    class SlimWebSocketsProtocol(WebSocketsSansIOProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.queue = Inbox()  # type: ignore[assignment]
            self.writable = Flag()  # type: ignore[assignment]
            self.writable.set()
            self.parser_released = False

        async def send(self, message: Any) -> None:
            await super().send(message)
            # After the 101 went out only frames are exchanged; a refused handshake
            # (initial_response) still needs its response, so only accepted ones let go.
            if self.handshake_complete and self.initial_response is None and getattr(self, "response", None) is not None:
                self.request = None
                self.response = None
                self.parser_released = release_handshake_parser(self.conn)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if not self.parser_released and self.handshake_complete and self.initial_response is None and getattr(self, "response", 1) is None:
                self.parser_released = release_handshake_parser(self.conn)

    return SlimWebSocketsProtocol


def header_limited_protocol(max_head_bytes: int, at_once: Callable[[], Any] | None = None) -> type | None:
    """uvicorn's httptools protocol, refusing a request line and headers over
    ``max_head_bytes`` with 431 (None when httptools is not installed).

    With ``at_once`` (a getter of ``GraphQLHttp.at_once``, None while the gateway starts):
    a ``POST /graphql`` waits for its whole body (up to ``AT_ONCE_MAX_BODY``) before its
    ASGI task is made, and when ``at_once`` finds its answer in the response cache, the
    answer is written at once: the same status line, headers and body the ASGI path writes,
    without the task, the scope's request and response objects and the middleware. Anything
    else (a miss, a larger body, ``Expect: 100-continue``, a pipelined request, a socket
    whose buffer is full) goes the usual way."""
    try:
        from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
        from uvicorn.protocols.utils import get_client_addr
    except ImportError:
        return None

    status_ok = STATUS_LINE[200]

    class HeaderLimitedHttpTools(HttpToolsProtocol):
        """Counts the bytes of each request's head as they arrive; past the limit the
        connection gets 431 and is closed, before the rest is buffered."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_head = True
            self._head_bytes = 0
            self._from_head = False
            self._held: tuple[Any, Any] | None = None  # (cycle, app) of a POST /graphql awaiting its body

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                self._head_bytes += len(data)
            super().data_received(data)
            # Still in the head after this chunk: every byte of it was head.
            if self._in_head and self._head_bytes > max_head_bytes and not self.transport.is_closing():
                self._refuse_head()

        def on_message_begin(self) -> None:
            # A request answered at once may have armed the keep-alive timeout while the
            # next (pipelined) request was already in the same read: not while it runs.
            self._unset_keepalive_if_required()
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._from_head = True
            try:
                super().on_headers_complete()
            finally:
                self._from_head = False

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            scope = cycle.scope
            if (
                self._from_head
                and at_once is not None
                and app is self.app
                and scope["method"] == "POST"
                and scope["path"] == "/graphql"
                and not scope["query_string"]
                and not self.expect_100_continue
            ):
                self._held = (cycle, app)  # started, or answered, when its body is in
                return
            super()._start_asgi_task(cycle, app)

        def _release(self) -> None:
            held, self._held = self._held, None
            if held is not None:
                super()._start_asgi_task(*held)

        def on_body(self, body: bytes) -> None:
            super().on_body(body)
            if self._held is not None and len(self._held[0].body) > AT_ONCE_MAX_BODY:
                self._release()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head = True  # the next bytes on this connection are the next request's head
            self._head_bytes = 0
            if self._held is None:
                return
            cycle = self._held[0]
            answer = None
            if not self.flow.write_paused and not self.transport.is_closing():
                try:
                    answer_now = at_once()
                    answer = answer_now(cycle.scope["headers"], bytes(cycle.body)) if answer_now is not None else None
                except Exception:  # never fatal here: the full path answers (or reports) it
                    log.exception("answering a cached POST /graphql at once failed; it goes the full way")
                    answer = None
            if answer is None:
                self._release()
                return
            self._held = None
            self._answer(cycle, *answer)

        def _answer(self, cycle: Any, media_type: str, body: bytes) -> None:
            """Write a 200 with ``body`` as uvicorn's ``RequestResponseCycle.send`` writes
            what Starlette's ``Response(body, media_type=...)`` sends."""
            head = [status_ok]
            for name, value in self.server_state.default_headers:
                head += [name.lower(), b": ", value, b"\r\n"]
            head += [b"content-length: ", str(len(body)).encode(), b"\r\ncontent-type: ", media_type.encode(), b"\r\n"]
            if not cycle.keep_alive:
                head.append(b"connection: close\r\n")
            head += [b"\r\n", body]
            if self.access_log:
                scope = cycle.scope
                self.access_logger.info(
                    '%s - "%s %s HTTP/%s" %d', get_client_addr(scope), "POST", "/graphql", scope["http_version"], 200
                )
            cycle.response_started = cycle.response_complete = True
            self.transport.write(b"".join(head))
            if not cycle.keep_alive:
                self.transport.close()
            self.on_response_complete()

        def _refuse_head(self) -> None:
            message = f"Request line and headers over {max_head_bytes} bytes.".encode()
            log.warning("refused a request whose head is over %d bytes from %s", max_head_bytes, self.client)
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: text/plain; charset=utf-8\r\n"
                b"content-length: " + str(len(message)).encode() + b"\r\n"
                b"connection: close\r\n\r\n" + message
            )
            self.transport.close()

    return HeaderLimitedHttpTools

"""The HTTP server's own limits (uvicorn), set from the gateway's configuration.

Some limits must hold before the application sees a request, because by then the bytes
are read: the request line and headers (``[gateway] max_header_bytes``; a 50 MB
``Authorization`` header was read whole) and the size of a WebSocket message (uvicorn's
``ws_max_size``, 16 MB by default, against an HTTP body limit of 1 MB: one limit,
``[gateway] max_body_bytes``, for both). ``ordergraph serve``, the demo and the tests run
uvicorn with ``server_settings``.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from .config import Config

log = logging.getLogger("ordergraph.server")


def server_settings(config: Config) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config`` that apply the gateway's limits."""
    settings: dict[str, Any] = {
        "ws_max_size": config.gateway.max_body_bytes,
        "ws_per_message_deflate": False,
        # h11 (when httptools is missing) refuses a head larger than this with a 400
        "h11_max_incomplete_event_size": config.gateway.max_header_bytes,
    }
    protocol = header_limited_protocol(config.gateway.max_header_bytes)
    if protocol is not None:
        settings["http"] = protocol
    ws = slim_websocket_protocol()
    if ws is not None:
        settings["ws"] = ws
    return settings


@functools.cache
def slim_websocket_protocol() -> type | None:
    """uvicorn's sans-I/O WebSocket protocol (what it picks with websockets ≥ 14), letting go
    of the handshake's request and response once the connection is accepted.

    uvicorn keeps both, with their headers, for the connection's life though nothing reads
    them after the 101: about 5 KiB per idle subscription (bench/README.md, memory per idle
    subscription). None when that implementation is not installed (uvicorn's default then)."""
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    except ImportError:
        return None

    class SlimWebSocketsProtocol(WebSocketsSansIOProtocol):
        async def send(self, message: Any) -> None:
            await super().send(message)
            # After the 101 went out only frames are exchanged; a refused handshake
            # (initial_response) still needs its response, so only accepted ones let go.
            if self.handshake_complete and self.initial_response is None and getattr(self, "response", None) is not None:
                self.request = None
                self.response = None

    return SlimWebSocketsProtocol


def header_limited_protocol(max_head_bytes: int) -> type | None:
    """uvicorn's httptools protocol, refusing a request line and headers over
    ``max_head_bytes`` with 431 (None when httptools is not installed)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return None

    class HeaderLimitedHttpTools(HttpToolsProtocol):
        """Counts the bytes of each request's head as they arrive; past the limit the
        connection gets 431 and is closed, before the rest is buffered."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_head = True
            self._head_bytes = 0

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                self._head_bytes += len(data)
            super().data_received(data)
            # Still in the head after this chunk: every byte of it was head.
            if self._in_head and self._head_bytes > max_head_bytes and not self.transport.is_closing():
                self._refuse_head()

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head = True  # the next bytes on this connection are the next request's head
            self._head_bytes = 0

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

"""GraphQL over HTTP (POST and GET), as the GraphQL-over-HTTP spec says: the HTTP adapter
of the operation pipeline (``gateway/operation.py``).

It negotiates the media type, runs the stages (admit → read → document → cache → execute
→ format) and answers: request errors (bad JSON, parse, validation, variables) are 400
with a clear message and never reach execution; a mutation over GET is 405; an Accept
header we cannot serve is 406.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sources import tracing

from .admission import SIMPLE_CONTENT_TYPES, rate_key
from .auth import OPEN_DEMO, bearer_token
from .errors import RequestError
from .operation import GRAPHQL_RESPONSE, JSON, Operation, Operations, parse_body


def negotiate(accept: str | None) -> str:
    """The media type to answer with, or RequestError(406)."""
    if not accept:
        return JSON
    types = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    for t in types:
        if t == GRAPHQL_RESPONSE:
            return GRAPHQL_RESPONSE
        if t in (JSON, "application/*", "*/*"):
            return JSON
    raise RequestError(406, f"Cannot answer with any of {accept!r}; accept {GRAPHQL_RESPONSE} or {JSON}.")


def encode(payload: dict[str, Any], status: int, media_type: str, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=media_type, headers=headers)


class GraphQLHttp:
    """``/graphql`` over HTTP: one operation through ``operations`` per request."""

    def __init__(self, operations: Operations, *, observe: Callable[[str, float], None] | None = None) -> None:
        self.operations = operations
        self.observe = observe  # (outcome, seconds) of each request: the metrics
        self.answered_at_once = 0  # requests the HTTP server answered with ``at_once``

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        media_type = JSON
        outcome = "ok"
        traced = tracing.Operation.start("graphql.request", request.headers) if tracing.enabled() else None
        ops = self.operations
        try:
            media_type = negotiate(request.headers.get("accept"))
            viewer = await ops.admit(request)
            raw = None
            if request.method == "POST":
                raw = await ops.read_body(request)
                if traced is None and (body := await ops.stored(raw, viewer)) is not None:
                    outcome = "cached"
                    return Response(body, status_code=200, media_type=media_type)
                params = parse_body(raw)
            else:
                params = await ops.read(request)
            op = Operation(params, viewer, method=request.method)
            op.raw = raw
            op = await ops.document(op)
            if traced is not None:
                traced.span.update_name(f"{op.kind.value} {op.display_name}".strip())
                traced.span.set_attributes(op.span_attributes())
            body, outcome = await ops.respond(op)
            return Response(body, status_code=200, media_type=media_type)
        except RequestError as exc:
            outcome = f"http_{exc.status}"
            return encode(exc.payload(), exc.status, media_type, exc.headers)
        finally:
            if self.observe is not None:
                self.observe(outcome, time.perf_counter() - started)
            if traced is not None:
                traced.end(**{"ordergraph.outcome": outcome})


    def at_once(self, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[str, bytes] | None:
        """The (media type, body) of a response-cache hit for a whole ``POST /graphql``
        request, decided synchronously from its headers and body, or None: then the request
        goes the full way (``handle``), which answers it exactly alike.

        The HTTP server calls this before any ASGI work (``gateway/server.py``): a repeated
        question answered from the cache then costs the parse of its head and one write.
        Only the plain case is taken: no tracing, no scale-out fence, a JSON body, no
        ``Origin`` (CORS), the open demo viewer or a token verified less than a minute ago
        (``Authenticator.verified``), a token of the viewer's rate budget, an ``Accept`` we
        serve, and an answer stored for this body and viewer scope. Every refusal on the way
        (CSRF, 401, 429, 406, an oversized body) is the full path's to give."""
        ops = self.operations
        responses = ops.responses
        if responses is None or not ops._keys or ops.fence is not None or tracing.enabled():
            return None
        if len(body) > ops.max_body_bytes:
            return None
        started = time.perf_counter()
        authorization = accept = None
        content_type = b""
        for name, value in headers:
            if name == b"content-type":
                content_type = value
            elif name == b"authorization":
                authorization = value
            elif name == b"accept":
                accept = value
            elif name == b"origin":
                return None
        try:
            if content_type.split(b";")[0].strip().lower().decode("latin-1") in SIMPLE_CONTENT_TYPES:
                return None  # a browser's "simple" request: the full path's CSRF check
            media_type = negotiate(accept.decode("latin-1") if accept is not None else None)
        except (RequestError, UnicodeDecodeError):
            return None
        admission = ops.admission
        viewer = None
        if admission is not None:
            token = bearer_token(authorization.decode("latin-1")) if authorization is not None else None
            if token is None:
                if not admission.auth.open:
                    return None
                viewer = OPEN_DEMO
            elif (viewer := admission.auth.verified(token)) is None:
                return None
        key = ops._keys.get((body, (viewer.role.value, viewer.customer) if viewer is not None else None))
        if key is None or not responses.holds(key):
            return None
        if viewer is not None and admission is not None and (rk := rate_key(viewer)) is not None:
            if not admission.rate.try_take(rk):
                return None
        stored = responses.get(key, count_miss=False)
        if stored is None:
            return None
        self.answered_at_once += 1
        if self.observe is not None:
            self.observe("cached", time.perf_counter() - started)
        return media_type, stored


class GraphQLPostFirst:
    """ASGI middleware: ``POST /graphql`` goes straight to the HTTP adapter, before the
    router and its exception middleware (what the ``/graphql`` route would do for a POST:
    the GraphiQL page is for GETs). The adapter runs every stage as for any request
    (admission first); this only saves the routing of the most frequent request, which on a
    response-cache hit is a sizeable share of its cost. Placed inside CORS, when configured,
    and inside Starlette's server-error middleware."""

    def __init__(self, app: ASGIApp, http: Callable[[], GraphQLHttp | None]) -> None:
        self.app = app
        self.http = http

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and get_route_path(scope) == "/graphql":
            http = self.http()
            if http is not None:
                response = await http.handle(Request(scope, receive))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

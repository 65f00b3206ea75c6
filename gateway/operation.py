"""The operation pipeline: every GraphQL operation, whatever its transport, in named stages.

    admit → read → document → fence and response cache → execute → format

- admit (``gateway/admission.py``): CSRF, identity, rate limit → the ``Viewer``.
- read (``read_params``): the parameters of a GET's query string or a POST's JSON body
  (HTTP and SSE; a WebSocket's come in its ``subscribe`` message).
- document (``Operations.document``, checks in ``gateway/documents.py``): persisted
  operations, parse, cost bounds, validation, policy; then the operation to run, whether
  the transport serves its kind, its declared and coerced variables.
- fence and response cache (``Operations.respond``): the scale-out fence
  (``gateway/redis_fence.py``), then a stored response or one identical request in flight.
- execute (``Operations.execute``): the one call into graphql-core, with the viewer's
  policy middleware. The subscription hub calls it too, with each change as root value.
- format (``Operations.format``): the GraphQL response; field errors masked for customers.

A stage passes the ``Operation`` on or raises ``RequestError`` (``gateway/errors.py``),
which each transport answers in its own way (a 4xx, an ``error`` frame). The gateway
builds one ``Operations`` at start and hands it to HTTP (``gateway/graphql_http.py``), SSE
(``gateway/sse.py``), WebSocket (``gateway/websocket.py``) and the hub
(``gateway/subscriptions.py``).
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    parse,
)
from graphql.execution.values import get_variable_values
from starlette.requests import Request

from resolvers import policy
from resolvers.execution import execute
from resolvers.policy import Viewer
from sources import tracing
from sources.resilience import request_budget

from .admission import Admission
from .documents import DocumentCache, check_declared, check_params, select_operation
from .errors import RequestError, document_refusal, read_capped
from .response_cache import ResponseCache

log = logging.getLogger("ordergraph.operation")

JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"


_NO_VARIABLES: dict[str, Any] = {}  # shared, never written


class Transport(enum.Enum):
    """Where an operation came from, which decides the kinds of operation it may run."""

    HTTP = "http"  # /graphql: queries, and mutations by POST
    STREAM = "sse"  # /graphql/stream: subscriptions
    SOCKET = "ws"  # graphql-transport-ws: any kind


class Operation:
    """One GraphQL operation as it passes the stages; each stage fills in what it learned.

    (A plain class with slots: made once per request, it costs less than a dataclass.)"""

    __slots__ = ("params", "viewer", "transport", "method", "query", "variables", "name", "document", "definition", "coerced", "raw")

    def __init__(
        self, params: dict[str, Any], viewer: Viewer | None = None, transport: Transport = Transport.HTTP, method: str = "POST"
    ) -> None:
        self.params = params
        self.viewer = viewer
        self.transport = transport
        self.method = method  # GET never runs a mutation
        # the document stage
        self.query = ""
        self.variables: dict[str, Any] = _NO_VARIABLES
        self.name: str | None = None
        self.document: DocumentNode | None = None
        self.definition: OperationDefinitionNode | None = None
        self.coerced: dict[str, Any] = _NO_VARIABLES
        self.raw: bytes | None = None  # the POST body the parameters came from (HTTP)

    @property
    def kind(self) -> OperationType:
        assert self.definition is not None, "the document stage has not run"
        return self.definition.operation

    @property
    def display_name(self) -> str:
        """The operation's own name, else the requested ``operationName``, else ""."""
        d = self.definition
        return d.name.value if d is not None and d.name is not None else (self.name or "")

    def span_attributes(self) -> dict[str, Any]:
        """Span attributes of the operation (OpenTelemetry's GraphQL conventions)."""
        role = getattr(getattr(self.viewer, "role", None), "value", None)
        return {
            "graphql.operation.type": self.kind.value,
            "graphql.operation.name": self.display_name,
            "ordergraph.viewer.role": role or "",
        }


# --- read ------------------------------------------------------------------------------------


async def read_params(request: Request, max_body_bytes: int) -> dict[str, Any]:
    """The GraphQL request parameters of a GET or POST, or RequestError."""
    if request.method == "GET":
        q = request.query_params
        params: dict[str, Any] = {"query": q.get("query"), "operationName": q.get("operationName")}
        if q.get("variables"):
            try:
                params["variables"] = orjson.loads(q["variables"])
            except orjson.JSONDecodeError as exc:
                raise RequestError(400, f"`variables` is not valid JSON: {exc}") from exc
        if q.get("extensions"):
            try:
                params["extensions"] = orjson.loads(q["extensions"])
            except orjson.JSONDecodeError as exc:
                raise RequestError(400, f"`extensions` is not valid JSON: {exc}") from exc
        return params

    return parse_body(await read_body(request, max_body_bytes))


async def read_body(request: Request, max_body_bytes: int) -> bytes:
    """The JSON body of a POST, read once and capped, or RequestError (415, 413)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in (JSON, "application/graphql+json", GRAPHQL_RESPONSE):
        raise RequestError(415, f"POST needs Content-Type: {JSON} (got {content_type or 'none'!r}).")
    return await read_capped(request, max_body_bytes, lambda: RequestError(413, f"Request body over {max_body_bytes} bytes."))


def parse_body(body: bytes) -> dict[str, Any]:
    """The GraphQL request parameters of a POST's JSON body, or RequestError(400)."""
    try:
        params = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, f"Malformed JSON body: {exc}") from exc
    if not isinstance(params, dict):
        raise RequestError(400, "The JSON body must be an object with a `query`.")
    return params


# --- format ----------------------------------------------------------------------------------

# What a customer reads for a source fault: the code stays, the detail (hosts, entity
# sets, the source's own words) goes to internal viewers, /readyz and the log.
CUSTOMER_SOURCE_MESSAGES = {
    "SOURCE_UNAVAILABLE": "This part of the order is temporarily unavailable. Please try again shortly.",
    "CIRCUIT_OPEN": "This part of the order is temporarily unavailable. Please try again shortly.",
    "SOURCE_TIMEOUT": "This part of the order took too long to load. Please try again shortly.",
    "SOURCE_BAD_RESPONSE": "This part of the order cannot be shown right now. Please try again later.",
}
_masked_logged: dict[tuple[str, str], float] = {}


def format_error(err: GraphQLError, viewer: Any = None) -> dict[str, Any]:
    """Format a field error; unexpected exceptions are masked and logged; a source fault is
    told to a customer ``viewer`` in customer-safe words."""
    original = err.original_error
    code = (getattr(original, "extensions", None) or {}).get("code") if original is not None else None
    if viewer is not None and viewer.is_customer and code in CUSTOMER_SOURCE_MESSAGES:
        _log_masked(original)
        return {**err.formatted, "message": CUSTOMER_SOURCE_MESSAGES[code]}
    if original is not None and not isinstance(original, GraphQLError) and not hasattr(original, "extensions"):
        log.error("resolver failed at %s", err.path, exc_info=original)
        out: dict[str, Any] = {"message": "Internal error while resolving this field.", "extensions": {"code": "INTERNAL"}}
        if err.path:
            out["path"] = err.path
        if err.locations:
            out["locations"] = [{"line": loc.line, "column": loc.column} for loc in err.locations]
        return out
    return err.formatted


def _log_masked(original: Any) -> None:
    """Log the detail a customer was not shown, at most once a minute per source and text."""
    key = (str(getattr(original, "source", "")), str(original))
    now = time.monotonic()
    if now - _masked_logged.get(key, -60.0) >= 60.0:
        if len(_masked_logged) > 1000:
            _masked_logged.clear()
        _masked_logged[key] = now
        log.warning("a customer was shown %s for: %s", getattr(original, "code", "a source fault"), original)


# --- the pipeline ----------------------------------------------------------------------------


class Operations:
    """The stages of the operation pipeline, built once by the gateway.

    ``context_factory(viewer=...)`` makes a request's context (fresh loaders over the
    shared cache); ``fence`` (scale-out) is awaited before a query reads from the caches;
    ``responses`` stores whole responses, dropped by the events that touch what they read.
    """

    def __init__(
        self,
        schema: GraphQLSchema,
        context_factory: Callable[..., Any],
        *,
        documents: DocumentCache | None = None,
        admission: Admission | None = None,
        responses: ResponseCache | None = None,
        fence: Callable[[], Awaitable[None]] | None = None,
        max_body_bytes: int = 1_048_576,
    ) -> None:
        self.schema = schema
        self.context_factory = context_factory
        self.documents = documents or DocumentCache(schema)
        self.admission = admission
        self.responses = responses
        self.fence = fence
        self.max_body_bytes = max_body_bytes
        # admit: the viewer of an HTTP request (CSRF, token, rate limit), or RequestError;
        # read: the parameters of an HTTP request (GET query string or JSON POST body).
        # Bound once here: the hot path pays no extra call per stage.
        self.admit: Callable[[Request], Awaitable[Viewer | None]] = admission.admit if admission is not None else _no_viewer
        self.read: Callable[[Request], Awaitable[dict[str, Any]]] = functools.partial(read_params, max_body_bytes=max_body_bytes)
        self.read_body: Callable[[Request], Awaitable[bytes]] = functools.partial(read_body, max_body_bytes=max_body_bytes)
        # The response-cache key of each POST body a scope sent whose document passed the
        # document stage: the stages from read to the key are a function of the body and of
        # the viewer's scope, so a repeated body skips them (``stored``). The entry itself is
        # still looked up, and checked, in the response cache.
        self._keys: dict[tuple[bytes, Any], Any] = {}
        # Answers read since stored and then dropped by an event are computed again at once
        # (ResponseCache.refresh), at most ``refresh_limit`` at a time.
        self.refresh_limit = 4
        self._refreshing: set[asyncio.Task[Any]] = set()
        if responses is not None:
            responses.refresh = self._refresh
        # Operations executing now, and when the last one ended or a stored answer was
        # served: the freeze loop's full collection waits for a quiet moment (``quiet_seconds``).
        self.running = 0
        self.last_running = time.monotonic()

    def quiet_seconds(self) -> float:
        """Seconds since an operation last ran or a stored answer was served; 0 while one
        runs. ``Gateway._freeze_periodically`` holds a long full collection (seconds on a
        big plant's heap, a pause every request in flight waits for) until this is long
        enough, or until it has waited ``[gateway] gc_full_defer_seconds``."""
        return 0.0 if self.running else time.monotonic() - self.last_running

    async def stored(self, raw: bytes, viewer: Viewer | None) -> bytes | None:
        """The stored response for a POST body this viewer's scope sent before (after the
        fence, as ``respond``), or None: then the stages run as for any request."""
        responses = self.responses
        if responses is None or not self._keys:
            return None
        self.last_running = time.monotonic()  # someone waits for this answer too
        key = self._keys.get((raw, (viewer.role.value, viewer.customer) if viewer is not None else None))
        if key is None:
            return None
        if self.fence is not None:
            await self.fence()
        return responses.get(key, count_miss=False)  # a miss is counted by the full path

    # --- document ------------------------------------------------------------------------

    async def document(self, op: Operation) -> Operation:
        """Persisted operations, parse, limits, validation and policy (cached); then the
        operation to run, its kind for the transport, its variables; or RequestError."""
        query, variables, name = check_params(self.documents.resolve_persisted(op.params))
        doc, errors = await self.documents.get(query, op.viewer, variables)
        if doc is None:
            if op.method == "GET" and errors:
                self._refuse_mutation_over_get(query, name)
            raise document_refusal(errors)
        definition = select_operation(doc, name)
        if definition.operation is not OperationType.QUERY or op.transport is not Transport.HTTP:
            _check_kind(op, definition.operation)
        check_declared(definition, variables)
        coerced = get_variable_values(self.schema, definition.variable_definitions or (), variables)
        if isinstance(coerced, list):
            raise document_refusal(coerced)
        op.query, op.variables, op.name = query, variables, name
        op.document, op.definition = doc, definition
        op.coerced = coerced if isinstance(coerced, dict) else dict(coerced.coerced)
        return op

    def _refuse_mutation_over_get(self, query: str, name: str | None) -> None:
        """GET never runs a mutation: say 405 even before validation would say 400."""
        if "mutation" not in query:
            return
        try:
            doc = parse(query, max_tokens=self.documents.max_tokens)
        except GraphQLError:
            return
        try:
            definition = select_operation(doc, name)
        except RequestError:
            return
        if definition.operation is OperationType.MUTATION:
            raise RequestError(405, "mutation operations need POST.", {"Allow": "POST"})

    # --- fence and response cache, then execute and format ---------------------------------

    async def respond(self, op: Operation) -> tuple[bytes, str]:
        """The response body of a prepared query or mutation, and its outcome
        (``ok``, ``field_errors``, ``cached``)."""
        if self.fence is not None:
            await self.fence()
        responses = self.responses
        assert op.document is not None
        if responses is not None and responses.enabled and responses.cacheable(op.query, op.document):
            return await self._cached(op, responses)
        context = self.context_factory(viewer=op.viewer)
        try:
            result = await self.answer(op, context)
        finally:
            release(context)
        return orjson.dumps(self.format(result, op.viewer)), "field_errors" if result.errors else "ok"

    def _refresh(self, key: Any, op: Operation) -> None:
        """Compute the dropped answer of ``op`` again, in the background (its next reader
        joins the computation or finds it stored); skipped when enough are running."""
        if len(self._refreshing) >= self.refresh_limit or self.responses is None:
            return
        try:
            task = asyncio.get_running_loop().create_task(self._recompute(op))
        except RuntimeError:  # no loop (a dropped answer outside the gateway's loop)
            return
        self._refreshing.add(task)
        task.add_done_callback(self._refreshing.discard)

    async def _recompute(self, op: Operation) -> None:
        try:
            if self.fence is not None:
                await self.fence()
            assert self.responses is not None
            await self._cached(op, self.responses)
        except Exception:  # a source down, a timeout: the next reader computes it
            log.debug("refreshing a dropped answer failed", exc_info=True)

    async def _cached(self, op: Operation, responses: ResponseCache) -> tuple[bytes, str]:
        """The response body from the response cache, or computed (and stored when it may be)."""
        viewer = op.viewer
        scope = (viewer.role.value, viewer.customer) if viewer is not None else None
        key = (op.query, op.name, orjson.dumps(op.variables, option=orjson.OPT_SORT_KEYS), scope)
        if op.raw is not None and op.transport is Transport.HTTP:
            if len(self._keys) >= 2 * responses.maxsize:
                self._keys.clear()
            self._keys[(op.raw, scope)] = key
        body = responses.get(key)
        if body is not None:
            return body, "cached"
        flight = responses.joinable(key)
        if flight is not None:
            body = await asyncio.shield(flight)
            if body is not None:
                responses.shared += 1
                return body, "cached"
        fut = responses.begin(key)
        shared: bytes | None = None
        context = None
        try:
            ticket = responses.ticket()
            context = self.context_factory(viewer=viewer)
            result = await self.answer(op, context)
            body = orjson.dumps(self.format(result, viewer))
            if result.errors:
                return body, "field_errors"
            shared = body
            if context.cacheable and not any(s.stale for s in context.loaders.served.values()):
                responses.put(
                    key,
                    body,
                    (*context.loaders.served, *context.deps),
                    ticket,
                    clock_read=context.clock_read,
                    valid_until=context.valid_until,
                    recipe=op,
                )
            return body, "ok"
        finally:
            responses.end(key, fut, shared)
            release(context)

    async def answer(self, op: Operation, context: Any = None) -> ExecutionResult:
        """Execute one prepared operation as one request: each source's time budget holds
        for all of it."""
        if context is None:
            context = self.context_factory(viewer=op.viewer)
        assert op.document is not None
        with request_budget(), tracing.span("graphql.execute"):
            result = await self.execute(op.document, op.name, op.variables, context)
            if result.errors:
                tracing.set_attributes(errors=len(result.errors))
        return result

    async def execute(
        self, document: DocumentNode, name: str | None, variables: dict[str, Any], context: Any, root: Any = None
    ) -> ExecutionResult:
        """The one call into graphql-core (``resolvers.execution.execute``: the executor the
        schema was built for, ``[gateway] executor``), with the policy middleware of the
        context's viewer."""
        self.running += 1
        try:
            result = execute(
                self.schema,
                document,
                root_value=root,
                context_value=context,
                variable_values=variables,
                operation_name=name,
                middleware=policy.middleware(context.viewer),
            )
            if not isinstance(result, ExecutionResult):
                result = await result
        finally:
            self.running -= 1
            self.last_running = time.monotonic()
        return result

    @staticmethod
    def format(result: ExecutionResult, viewer: Any = None) -> dict[str, Any]:
        """The GraphQL response of ``result`` as ``viewer`` may read it."""
        payload: dict[str, Any] = {}
        if result.errors:
            payload["errors"] = [format_error(e, viewer) for e in result.errors]
        payload["data"] = result.data
        return payload

    async def run(
        self, document: DocumentNode, name: str | None, variables: dict[str, Any], context: Any, root: Any = None
    ) -> dict[str, Any]:
        """Execute and format, for the subscription hub's groups (``root``: the change)."""
        return self.format(await self.execute(document, name, variables, context, root), context.viewer)


def release(context: Any) -> None:
    """Let go of a request's context once its answer is written (``Context.release``: its
    views and records, kept in graphql-core's executor cycle, leave by reference counting
    instead of waiting for the cyclic collector)."""
    done = getattr(context, "release", None)
    if done is not None:
        done()


async def _no_viewer(_request: Request) -> None:
    """Admission when the pipeline has none (tests of a bare pipeline): nobody in particular."""
    return None


def _check_kind(op: Operation, kind: OperationType) -> None:
    """RequestError when the transport does not serve this kind of operation."""
    if op.transport is Transport.HTTP:
        if kind is OperationType.QUERY:
            return
        if op.method == "GET":
            raise RequestError(405, f"{kind.value} operations need POST.", {"Allow": "POST"})
        if kind is OperationType.SUBSCRIPTION:
            raise RequestError(
                400, "Subscriptions run over WebSocket (graphql-transport-ws) at /graphql or SSE at /graphql/stream."
            )
    elif op.transport is Transport.STREAM and kind is not OperationType.SUBSCRIPTION:
        raise RequestError(400, "/graphql/stream serves subscriptions; send queries to /graphql.")

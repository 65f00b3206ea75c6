"""GraphQL over HTTP (POST and GET), as the GraphQL-over-HTTP spec says.

The request pipeline, in named stages: read the request → parse (cached) → validate
(cached) → coerce variables → execute. Request errors (bad JSON, parse, validation,
variables) answer 400 with a clear message and never reach execution; a mutation over GET
answers 405; an Accept header we cannot serve answers 406.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import orjson
from cachetools import LRUCache
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    parse,
    validate,
)
from graphql.execution.values import get_variable_values
from starlette.requests import Request
from starlette.responses import Response

from resolvers import policy
from resolvers.execution import execute
from sources import tracing
from sources.resilience import request_budget

from .response_cache import ResponseCache

log = logging.getLogger("ordergraph.http")

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"


class RequestError(Exception):
    """A request that cannot be executed; answered with ``status`` and ``message``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.errors: list[dict[str, Any]] | None = None


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


def error_payload(message: str, code: str = "BAD_REQUEST") -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": code}}]}


class DocumentCache:
    """Parsed and validated documents by query text, so hot queries skip both steps."""

    def __init__(self, schema: GraphQLSchema, maxsize: int = 1024) -> None:
        self.schema = schema
        self._docs: LRUCache[str, tuple[DocumentNode | None, list[GraphQLError]]] = LRUCache(maxsize)

    def resolve_persisted(self, params: dict[str, Any]) -> dict[str, Any]:
        """Fill in a persisted operation's query (``gateway.limits.GuardedDocuments``)."""
        return params

    def close(self) -> None:
        """Release what the cache holds beyond memory (``GuardedDocuments``: its worker)."""

    async def get(self, query: str, viewer: Any = None, variables: Any = None) -> tuple[DocumentNode | None, list[GraphQLError]]:
        """The parsed, validated document (``viewer`` matters in ``GuardedDocuments``)."""
        hit = self._docs.get(query)
        if hit is not None:
            return hit
        try:
            doc: DocumentNode | None = parse(query)
        except GraphQLError as exc:
            entry: tuple[DocumentNode | None, list[GraphQLError]] = (None, [exc])
        else:
            errors = validate(self.schema, doc)
            entry = (doc if not errors else None, list(errors))
        self._docs[query] = entry
        return entry


def select_operation(doc: DocumentNode, name: str | None) -> OperationDefinitionNode:
    ops = [d for d in doc.definitions if isinstance(d, OperationDefinitionNode)]
    if name:
        for op in ops:
            if op.name and op.name.value == name:
                return op
        raise RequestError(400, f"Unknown operation named {name!r}.")
    if len(ops) != 1:
        raise RequestError(400, "Must provide operationName when the document has several operations.")
    return ops[0]


def check_declared(op: OperationDefinitionNode, variables: dict[str, Any]) -> None:
    """RequestError(400) for variables ``op`` does not declare: kept with a subscription for
    its whole life, padding there pinned memory for nothing."""
    declared = {v.variable.name.value for v in op.variable_definitions or ()}
    extra = sorted(k for k in variables if k not in declared)
    if extra:
        names = ", ".join(f"${k}" for k in extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        exc = RequestError(400, f"The operation does not declare {names}: send only the variables it declares.")
        exc.errors = [{"message": exc.message, "extensions": {"code": "UNDECLARED_VARIABLES"}}]
        raise exc


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

    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in (JSON, "application/graphql+json", GRAPHQL_RESPONSE):
        raise RequestError(415, f"POST needs Content-Type: {JSON} (got {content_type or 'none'!r}).")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_body_bytes:
        raise RequestError(413, f"Request body over {max_body_bytes} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body_bytes:
            raise RequestError(413, f"Request body over {max_body_bytes} bytes.")
    try:
        params = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, f"Malformed JSON body: {exc}") from exc
    if not isinstance(params, dict):
        raise RequestError(400, "The JSON body must be an object with a `query`.")
    return params


def check_params(params: dict[str, Any]) -> tuple[str, dict[str, Any], str | None]:
    query = params.get("query")
    if not isinstance(query, str) or not query.strip():
        raise RequestError(400, "Missing `query`: send a GraphQL document as a string.")
    variables = params.get("variables") or {}
    if not isinstance(variables, dict):
        raise RequestError(400, "`variables` must be a JSON object.")
    op_name = params.get("operationName")
    if op_name is not None and not isinstance(op_name, str):
        raise RequestError(400, "`operationName` must be a string.")
    return query, variables, op_name


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


class Prepared(NamedTuple):
    """A request ready to execute: its document (parsed and validated), operation, variables."""

    query: str
    doc: DocumentNode
    op: OperationDefinitionNode
    variables: dict[str, Any]
    op_name: str | None


class GraphQLHttp:
    """Executes GraphQL requests against ``schema`` with a per-request context."""

    def __init__(
        self,
        schema: GraphQLSchema,
        context_factory: Callable[..., Any],
        *,
        max_body_bytes: int = 1_048_576,
        observe: Callable[[str, float], None] | None = None,
        documents: DocumentCache | None = None,
        admit: Callable[[Request], Awaitable[Any]] | None = None,
        responses: ResponseCache | None = None,
    ) -> None:
        self.schema = schema
        self.documents = documents or DocumentCache(schema)
        # The request stage before GraphQL (gateway.limits.Guard): CSRF, identity, rate limit.
        self.admit = admit
        self.context_factory = context_factory
        self.max_body_bytes = max_body_bytes
        self.observe = observe
        # Whole responses, dropped by the events that touch what they read (optional).
        self.responses = responses
        # Scale-out: awaited before a query reads from the caches (gateway/redis_fence.py).
        self.before_read: Callable[[], Awaitable[None]] | None = None

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        media_type = JSON
        outcome = "ok"
        traced = tracing.Operation.start("graphql.request", request.headers) if tracing.enabled() else None
        try:
            media_type = negotiate(request.headers.get("accept"))
            viewer = await self.admit(request) if self.admit is not None else None
            params = await read_params(request, self.max_body_bytes)
            prepared = await self.prepare(request, params, viewer)
            if traced is not None:
                traced.span.update_name(f"{prepared.op.operation.value} {operation_name(prepared)}".strip())
                traced.span.set_attributes(operation_attributes(prepared, viewer))
            if self.before_read is not None:
                await self.before_read()
            responses = self.responses
            if responses is not None and responses.enabled and responses.cacheable(prepared.query, prepared.doc):
                body, outcome = await self._cached(request, prepared, viewer, responses)
                return Response(body, status_code=200, media_type=media_type)
            result = await self.execute(request, prepared, viewer)
            payload = self.payload(result, viewer)
            if result.errors:
                outcome = "field_errors"
            return encode(payload, 200, media_type)
        except RequestError as exc:
            outcome = f"http_{exc.status}"
            payload = {"errors": exc.errors} if exc.errors else error_payload(exc.message)
            return encode(payload, exc.status, media_type, exc.headers)
        finally:
            if self.observe is not None:
                self.observe(outcome, time.perf_counter() - started)
            if traced is not None:
                traced.end(**{"ordergraph.outcome": outcome})

    @staticmethod
    def payload(result: ExecutionResult, viewer: Any = None) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        if result.errors:
            payload["errors"] = [format_error(e, viewer) for e in result.errors]
        payload["data"] = result.data
        return payload

    async def _cached(
        self, request: Request, prepared: Prepared, viewer: Any, responses: ResponseCache
    ) -> tuple[bytes, str]:
        """The response body from the response cache, or computed (and stored when it may be)."""
        scope = (viewer.role.value, viewer.customer) if viewer is not None else None
        key = (prepared.query, prepared.op_name, orjson.dumps(prepared.variables, option=orjson.OPT_SORT_KEYS), scope)
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
        try:
            ticket = responses.ticket()
            context = self.context_factory(request, viewer=viewer)
            result = await self.execute(request, prepared, viewer, context)
            body = orjson.dumps(self.payload(result, viewer))
            if result.errors:
                return body, "field_errors"
            shared = body
            if context.cacheable and not any(s.stale for s in context.loaders.served.values()):
                responses.put(key, body, (*context.loaders.served, *context.deps), ticket)
            return body, "ok"
        finally:
            responses.end(key, fut, shared)

    async def prepare(self, request: Request, params: dict[str, Any], viewer: Any = None) -> Prepared:
        """Parse (cached), validate (cached), pick the operation, coerce variables; or RequestError."""
        query, variables, op_name = check_params(self.documents.resolve_persisted(params))
        doc, errors = await self.documents.get(query, viewer, variables)
        if request.method == "GET" and doc is None and errors:
            self._refuse_mutation_over_get(query, op_name, getattr(getattr(self.documents, "limits", None), "max_tokens", None))
        if doc is None:
            raise _request_errors(errors)
        op = select_operation(doc, op_name)
        if op.operation is not OperationType.QUERY:
            if request.method == "GET":
                raise RequestError(405, f"{op.operation.value} operations need POST.", {"Allow": "POST"})
            if op.operation is OperationType.SUBSCRIPTION:
                raise RequestError(
                    400, "Subscriptions run over WebSocket (graphql-transport-ws) at /graphql or SSE at /graphql/stream."
                )
        check_declared(op, variables)
        coerced = get_variable_values(self.schema, op.variable_definitions or (), variables)
        if isinstance(coerced, list):
            raise _request_errors(coerced)
        return Prepared(query, doc, op, variables, op_name)

    async def execute(self, request: Request, prepared: Prepared, viewer: Any = None, context: Any = None) -> ExecutionResult:
        if context is None:
            context = self.context_factory(request, viewer=viewer)
        with request_budget(), tracing.span("graphql.execute"):  # each source's time budget holds for the whole request
            result = execute(
                self.schema,
                prepared.doc,
                context_value=context,
                variable_values=prepared.variables,
                operation_name=prepared.op_name,
                middleware=policy.middleware(context.viewer),
            )
            if not isinstance(result, ExecutionResult):
                result = await result
            if result.errors:
                tracing.set_attributes(errors=len(result.errors))
        return result

    @staticmethod
    def _refuse_mutation_over_get(query: str, op_name: str | None, max_tokens: int | None) -> None:
        """GET never runs a mutation: say 405 even before validation would say 400."""
        if "mutation" not in query:
            return
        try:
            doc = parse(query, max_tokens=max_tokens)
        except GraphQLError:
            return
        try:
            op = select_operation(doc, op_name)
        except RequestError:
            return
        if op.operation is OperationType.MUTATION:
            raise RequestError(405, "mutation operations need POST.", {"Allow": "POST"})


def operation_name(prepared: Prepared) -> str:
    return prepared.op.name.value if prepared.op.name is not None else (prepared.op_name or "")


def operation_attributes(prepared: Prepared, viewer: Any) -> dict[str, Any]:
    """Span attributes of a GraphQL operation (OpenTelemetry's GraphQL conventions)."""
    role = getattr(getattr(viewer, "role", None), "value", None)
    return {
        "graphql.operation.type": prepared.op.operation.value,
        "graphql.operation.name": operation_name(prepared),
        "ordergraph.viewer.role": role or "",
    }


def _request_errors(errors: list[GraphQLError]) -> RequestError:
    message = "; ".join(e.message for e in errors) or "Invalid request."
    exc = RequestError(400, message)
    # Limits and policy errors keep their own code (QUERY_TOO_DEEP, FORBIDDEN, ...).
    exc.errors = [{**e.formatted, "extensions": {"code": "GRAPHQL_VALIDATION_FAILED", **(e.extensions or {})}} for e in errors]
    return exc

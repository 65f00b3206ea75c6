"""``RequestError``: how a stage of the operation pipeline answers early.

A stage either passes the operation on or raises ``RequestError`` with the HTTP status,
message and headers to answer with (``gateway/operation.py``). WebSocket and SSE turn the
same error into their own frames.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import GraphQLError
from starlette.requests import Request


class RequestError(Exception):
    """A request that cannot be executed; answered with ``status`` and ``message``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.errors: list[dict[str, Any]] | None = None

    def payload(self) -> dict[str, Any]:
        """The ``{"errors": [...]}`` body of this refusal."""
        return {"errors": self.errors} if self.errors else error_payload(self.message)


def coded(exc: RequestError, code: str) -> RequestError:
    """``exc`` with one error carrying ``extensions.code``."""
    exc.errors = [{"message": exc.message, "extensions": {"code": code}}]
    return exc


def error_payload(message: str, code: str = "BAD_REQUEST") -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": code}}]}


def document_refusal(errors: list[GraphQLError]) -> RequestError:
    """A 400 for a document that did not parse, validate or pass the limits; each error
    keeps its own code (QUERY_TOO_DEEP, FORBIDDEN, ...), else GRAPHQL_VALIDATION_FAILED."""
    message = "; ".join(e.message for e in errors) or "Invalid request."
    exc = RequestError(400, message)
    exc.errors = [{**e.formatted, "extensions": {"code": "GRAPHQL_VALIDATION_FAILED", **(e.extensions or {})}} for e in errors]
    return exc


async def read_capped(request: Request, limit: int, too_large: Callable[[], Exception]) -> bytes:
    """The request body, read once; ``too_large()`` is raised as soon as it is over
    ``limit`` bytes (a declared Content-Length over it is refused before reading). Shared
    by the GraphQL pipeline and the event door, each with its own refusal."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise too_large()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large()
    return bytes(body)

"""The admission stage: who is asking, and may they ask now (before any GraphQL work).

For an HTTP request (``Admission.admit``), in this order:
1. CSRF prevention (as Apollo Router does by default): a browser "simple" request — a GET,
   or a POST whose Content-Type is missing, ``application/x-www-form-urlencoded``,
   ``multipart/form-data`` or ``text/plain`` — is refused unless it carries a header a
   browser would not send cross-site without a CORS preflight: ``Apollo-Require-Preflight``,
   ``X-Apollo-Operation-Name``, ``X-Ordergraph-CSRF`` or ``Authorization``. A JSON POST is
   never simple. (POSTs other than JSON then get 415 anyway: we only speak JSON.) A browser
   that opens ``/graphql`` or ``/graphql?query=...`` gets the GraphiQL page (the query in
   the editor), which runs it with a proper POST.
2. Identity: the bearer token → ``Viewer`` (401 with ``WWW-Authenticate`` when refused).
3. Rate limit per viewer: a token bucket; 429 with ``Retry-After`` when empty.

A WebSocket is admitted once, at ``connection_init`` (``viewer``, ``connect``), and each
operation on it spends the same rate budget (``take``). Streams and WebSockets of one
viewer count against one connection cap (``connect``/``disconnect``).

What a document may cost is the next stage's business (``gateway/documents.py``).
"""

from __future__ import annotations

import math
import time
from typing import Any

from cachetools import LRUCache
from starlette.requests import Request

from resolvers.policy import Viewer

from .auth import (
    OPEN_DEMO,
    Authenticator,
    AuthError,
    AuthUnavailable,
    bearer_token,
    token_from_init,
)
from .config import LimitsConfig
from .errors import RequestError, coded

SIMPLE_CONTENT_TYPES = frozenset({"", "application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})
PREFLIGHT_HEADERS = ("apollo-require-preflight", "x-apollo-operation-name", "x-ordergraph-csrf", "authorization")

# --- rate limits ---------------------------------------------------------------------------


class RateLimiter:
    """A token bucket per viewer: ``rate`` tokens a second, up to ``burst``."""

    def __init__(self, rate: float, burst: int, *, clock: Any = time.monotonic, maxsize: int = 100_000) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.clock = clock
        self.buckets: LRUCache[str, tuple[float, float]] = LRUCache(maxsize)
        self.refused = 0

    def take(self, key: str) -> float | None:
        """Take one token; None when granted, else the seconds until the next one."""
        if self.try_take(key):
            return None
        self.refused += 1
        tokens, _now = self._tokens(key)
        return (1.0 - tokens) / self.rate

    def try_take(self, key: str) -> bool:
        """Take one token when there is one; when not, change nothing (the caller then goes
        the full way, whose ``take`` refuses and counts it)."""
        if self.rate <= 0:
            return True
        tokens, now = self._tokens(key)
        if tokens < 1.0:
            return False
        self.buckets[key] = (tokens - 1.0, now)
        return True

    def _tokens(self, key: str) -> tuple[float, float]:
        """The bucket's tokens now (refilled since its last take), and now."""
        now = self.clock()
        tokens, last = self.buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - last) * self.rate), now


def rate_key(viewer: Viewer) -> str | None:
    """Whose budget: the token's subject. The open demo viewer (no token) is no identity,
    so it has no budget of its own: no rate limit, no connection cap (demo, tests, bench)."""
    if viewer is OPEN_DEMO or viewer == OPEN_DEMO:
        return None
    return f"sub:{viewer.subject}"


# --- the request stage ---------------------------------------------------------------------


def csrf_refusal(request: Request) -> str | None:
    """Why a request looks like a cross-site "simple" request, or None when it does not."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.method == "POST" and content_type not in SIMPLE_CONTENT_TYPES:
        return None
    if any(request.headers.get(h) for h in PREFLIGHT_HEADERS):
        return None
    return (
        "This request could be a cross-site request forgery (a browser 'simple' request: "
        f"{request.method} without a preflight header). Send the operation as POST with "
        "Content-Type: application/json, or add the header `Apollo-Require-Preflight: true`."
    )


class Admission:
    """CSRF → identity → rate limit, for HTTP requests and WebSocket connections."""

    def __init__(self, auth: Authenticator, limits: LimitsConfig, *, csrf: bool = True) -> None:
        self.auth = auth
        self.limits = limits
        self.csrf = csrf
        self.rate = RateLimiter(limits.rate_per_second, limits.rate_burst)
        self.connections: dict[str, int] = {}

    async def admit(self, request: Request) -> Viewer:
        """The viewer of an HTTP GraphQL request, or RequestError (400/401/429/503)."""
        if self.csrf and (why := csrf_refusal(request)) is not None:
            raise coded(RequestError(400, why), "CSRF_PREVENTED")
        viewer = await self.viewer(bearer_token(request.headers.get("authorization")))
        self.take(viewer)
        return viewer

    async def viewer(self, token: str | None) -> Viewer:
        """The viewer of a token, as a RequestError(401/503) when refused."""
        try:
            return await self.auth.viewer(token)
        except AuthError as exc:
            raise coded(RequestError(401, f"Unauthorized: {exc.message}", {"WWW-Authenticate": exc.www_authenticate}), "UNAUTHENTICATED") from exc
        except AuthUnavailable as exc:
            raise coded(RequestError(503, f"Cannot check tokens right now: {exc}", {"Retry-After": "5"}), "AUTH_UNAVAILABLE") from exc

    def take(self, viewer: Viewer) -> None:
        """Spend one request of the viewer's budget, or RequestError(429) with Retry-After."""
        key = rate_key(viewer)
        wait = self.rate.take(key) if key is not None else None
        if wait is not None:
            retry = max(1, math.ceil(wait))
            raise coded(
                RequestError(429, f"Rate limit: at most {self.limits.rate_per_second:g} requests a second; retry in {retry} s.", {"Retry-After": str(retry)}),
                "RATE_LIMITED",
            )

    async def admit_socket(self, init_payload: dict[str, Any]) -> Viewer:
        """The viewer of a WebSocket's ``connection_init`` payload, or RequestError(401/503)."""
        return await self.viewer(token_from_init(init_payload))

    def connect(self, viewer: Viewer) -> str:
        """Count a live connection (an SSE stream or a WebSocket) of ``viewer``: its slot
        ("" when uncounted), to give back with ``disconnect``; RequestError(429) over the cap."""
        key = rate_key(viewer)
        if key is None:
            return ""
        cap = self.limits.connections_per_viewer
        if self.connections.get(key, 0) >= cap:
            raise coded(
                RequestError(429, f"Too many connections: at most {cap} streams and WebSockets per viewer."),
                "TOO_MANY_CONNECTIONS",
            )
        self.connections[key] = self.connections.get(key, 0) + 1
        return key

    def disconnect(self, key: str) -> None:
        if not key:
            return
        left = self.connections.get(key, 0) - 1
        if left > 0:
            self.connections[key] = left
        else:
            self.connections.pop(key, None)

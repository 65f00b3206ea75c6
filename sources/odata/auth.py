"""Authentication to SAP Gateway: HTTP basic, or OAuth 2.0 client credentials (BTP).

Both give the headers of one request. OAuth tokens are cached until shortly before they
expire and fetched by one caller at a time; a 401 on a data request makes the client drop
the token it used (``invalidate``) and try once more with a fresh one.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from typing import Protocol

import aiohttp
import orjson

from ..resilience import SOURCE_BAD_RESPONSE, SOURCE_UNAVAILABLE, SourceError

__all__ = ["Auth", "BasicAuth", "ClientCredentials"]


class Auth(Protocol):
    """What ``ODataClient`` needs of an authentication scheme."""

    async def headers(self, session: aiohttp.ClientSession, source: str) -> dict[str, str]:
        """Headers to send with one request (may fetch a token)."""
        ...

    def invalidate(self, headers: dict[str, str]) -> bool:
        """The source answered 401 to a request sent with ``headers``: forget the credential
        if a fresh one could help; True when a retry is worth it."""
        ...


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class BasicAuth:
    """HTTP basic authentication (an SAP user and password)."""

    def __init__(self, username: str, password: str) -> None:
        if not username:
            raise ValueError("basic auth needs a user name")
        self._header = {"Authorization": _basic(username, password)}

    async def headers(self, session: aiohttp.ClientSession, source: str) -> dict[str, str]:
        return dict(self._header)

    def invalidate(self, headers: dict[str, str]) -> bool:
        return False  # the same password will be refused again


class ClientCredentials:
    """OAuth 2.0 client credentials grant (RFC 6749 §4.4), e.g. SAP BTP's XSUAA.

    The client id and secret go to ``token_url`` in a basic Authorization header; the
    token is cached until ``refresh_margin_seconds`` before ``expires_in`` runs out.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        refresh_margin_seconds: float = 60.0,
        timeout_seconds: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not token_url or not client_id:
            raise ValueError("client credentials need a token URL and a client id")
        self.token_url = token_url
        self.client_id = client_id
        self._secret = client_secret
        self.scope = scope
        self.refresh_margin_seconds = refresh_margin_seconds
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._monotonic = monotonic
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.fetched = 0  # tokens fetched (a cached token costs no call)

    async def headers(self, session: aiohttp.ClientSession, source: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token(session, source)}"}

    def invalidate(self, headers: dict[str, str]) -> bool:
        used = headers.get("Authorization", "").removeprefix("Bearer ")
        if self._token is not None and used == self._token:
            self._token = None  # only the token that failed; a newer one stays
        return True

    def _valid(self) -> bool:
        return self._token is not None and self._monotonic() < self._expires_at - self.refresh_margin_seconds

    async def token(self, session: aiohttp.ClientSession, source: str) -> str:
        """A valid access token, fetched when none is cached or it is about to expire."""
        if self._valid():
            assert self._token is not None
            return self._token
        async with self._lock:  # one fetch for everyone waiting
            if self._valid():
                assert self._token is not None
                return self._token
            token, lifetime = await self._fetch(session, source)
            self._token = token
            self._expires_at = self._monotonic() + lifetime
            self.fetched += 1
            return token

    async def _fetch(self, session: aiohttp.ClientSession, source: str) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        headers = {"Accept": "application/json", "Authorization": _basic(self.client_id, self._secret)}
        try:
            async with session.post(self.token_url, data=form, timeout=self.timeout, headers=headers) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SourceError(source, SOURCE_UNAVAILABLE, f"OAuth token endpoint unreachable: {exc}") from exc
        if status >= 500 or status == 429:
            raise SourceError(source, SOURCE_UNAVAILABLE, f"OAuth token endpoint answered HTTP {status}")
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if status >= 400:
            why = ""
            if isinstance(data, dict) and data.get("error"):
                why = f": {data.get('error')} {data.get('error_description') or ''}".rstrip()
            # Wrong client credentials will stay wrong: not retried, counted by the breaker.
            raise SourceError(source, SOURCE_BAD_RESPONSE, f"OAuth token endpoint refused the client credentials: HTTP {status}{why}")
        if not isinstance(data, dict) or not isinstance(data.get("access_token"), str) or not data["access_token"]:
            raise SourceError(source, SOURCE_BAD_RESPONSE, "OAuth token endpoint answered without an access_token")
        lifetime = data.get("expires_in", 3600)
        try:
            lifetime = float(lifetime)
        except (TypeError, ValueError):
            lifetime = 3600.0
        return data["access_token"], max(lifetime, 0.0)

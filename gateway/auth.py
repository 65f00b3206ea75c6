"""Identity: JWT bearer tokens → ``Viewer`` (role, customer, subject, expiry).

- HS256 with a configured secret (development), RS256 / ES256 with keys from a JWKS URL
  (production). The JWKS is fetched with aiohttp (never PyJWKClient's blocking urllib in
  the event loop), cached, refetched after a TTL and, rate-limited, when a token names an
  unknown ``kid`` — so a key rotation at the identity provider needs no restart.
- Algorithms are explicit: the token's ``alg`` picks the key *kind* (HS256 → the secret,
  RS256/ES256 → a JWKS key whose own algorithm must match), and PyJWT is then told to
  accept that one algorithm only. ``alg: none`` and algorithm confusion (an RSA public
  key used as an HMAC secret, a key of one family with another's ``alg``) are refused.
- Issuer, audience and expiry are required and checked.
- A verified token's viewer is kept (``VERIFIED_KEEP_SECONDS``, never past its expiry), so
  a client sending the same token with every request pays for the signature check once a
  minute, not per request; a key removed from the JWKS stops its tokens within that time.

The token comes in ``Authorization: Bearer ...`` on HTTP and in the graphql-transport-ws
``connection_init`` payload (``Authorization``/``authorization``/``token``, or the same
under ``headers``), the way graphql-ws clients and GraphiQL send it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt
from cachetools import LRUCache

from resolvers.policy import Role, Viewer

from .config import AuthConfig

log = logging.getLogger("ordergraph.auth")

HMAC_ALGORITHMS = frozenset({"HS256"})
JWKS_ALGORITHMS = frozenset({"RS256", "ES256"})
# The open demo viewer, made once: a Viewer is frozen, and every tokenless request of the
# open mode (the benchmark's load) would otherwise build one, and rate_key another.
OPEN_DEMO = Viewer.open_demo()
DEV_SECRET = "ordergraph-development-secret-not-for-production"  # `ordergraph demo` / `token`


class AuthError(Exception):
    """The request carries no acceptable identity: HTTP 401, WebSocket close 4403."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.missing = missing

    @property
    def www_authenticate(self) -> str:
        if self.missing:
            return 'Bearer realm="ordergraph"'
        detail = self.message.replace('"', "'")
        return f'Bearer realm="ordergraph", error="invalid_token", error_description="{detail}"'


class AuthUnavailable(Exception):
    """Tokens cannot be checked right now (the key set cannot be fetched): HTTP 503."""


class JwksCache:
    """Signing keys from a JWKS URL, by ``kid``; refetched on TTL and on unknown kids.

    Refetches for unknown kids are limited to one per ``min_refetch_seconds`` so a flood of
    made-up kids cannot turn into a flood of requests to the identity provider. Concurrent
    refetches are shared (one request in flight).
    """

    def __init__(
        self,
        url: str,
        *,
        ttl_seconds: float = 300.0,
        min_refetch_seconds: float = 30.0,
        timeout_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.ttl = ttl_seconds
        self.min_refetch = min_refetch_seconds
        self.timeout = timeout_seconds
        self.monotonic = monotonic
        self.keys: dict[str, jwt.PyJWK] = {}
        self.fetched_at: float | None = None
        self.fetches = 0
        self._session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def key(self, kid: str | None) -> jwt.PyJWK:
        """The key for ``kid`` (AuthError when unknown even after a refetch)."""
        refreshed = False
        if self.fetched_at is None or self.monotonic() - self.fetched_at >= self.ttl:
            await self._refresh(since=self.fetched_at)
            refreshed = True
        found = self._lookup(kid)
        if found is None and not refreshed and self._may_refetch():
            await self._refresh(since=self.fetched_at)  # maybe rotated: look again, rate-limited
            found = self._lookup(kid)
        if found is None:
            if not self.keys:
                raise AuthUnavailable(f"no signing keys could be fetched from {self.url}")
            raise AuthError(f"unknown signing key {kid!r}" if kid else "token has no key id (kid)")
        return found

    def _may_refetch(self) -> bool:
        return self.fetched_at is None or self.monotonic() - self.fetched_at >= self.min_refetch

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            return next(iter(self.keys.values())) if len(self.keys) == 1 else None
        return self.keys.get(kid)

    async def _refresh(self, since: float | None) -> None:
        async with self._lock:
            if self.fetched_at != since:  # another task refreshed while we waited
                return
            try:
                keys = await self._fetch()
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                self.fetched_at = self.monotonic()  # don't hammer a failing provider
                if not self.keys:
                    raise AuthUnavailable(f"cannot fetch the signing keys from {self.url}: {exc}") from exc
                log.warning("JWKS refresh from %s failed (%s); keeping %d known keys", self.url, exc, len(self.keys))
                return
            self.keys = keys
            self.fetched_at = self.monotonic()

    async def _fetch(self) -> dict[str, jwt.PyJWK]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        self.fetches += 1
        async with self._session.get(self.url, headers={"Accept": "application/json"}) as resp:
            if resp.status != 200:
                raise ValueError(f"HTTP {resp.status}")
            data = await resp.json(content_type=None)
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise ValueError("not a JWK set")
        keys: dict[str, jwt.PyJWK] = {}
        for entry in data["keys"]:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError):
                log.warning("JWKS %s: skipping an unusable key %r", self.url, entry.get("kid"))
                continue
            if key.algorithm_name in JWKS_ALGORITHMS:
                keys[str(entry.get("kid", ""))] = key
        log.info("JWKS %s: %d signing keys", self.url, len(keys))
        return keys


# How long a verified token's viewer is kept before its signature is checked again, and
# how many are kept (least recently used go first).
VERIFIED_KEEP_SECONDS = 60.0
VERIFIED_MAXSIZE = 10_000


class Authenticator:
    """Turns a bearer token into a ``Viewer`` according to ``AuthConfig``."""

    def __init__(self, config: AuthConfig) -> None:
        if config.mode not in ("jwt", "open"):
            raise ValueError(f"auth.mode must be 'jwt' or 'open', not {config.mode!r}")
        self.config = config
        self.open = config.mode == "open"
        # token -> (viewer, kept until: POSIX seconds, the JWKS fetch it was checked
        # against), see VERIFIED_KEEP_SECONDS
        self._verified: LRUCache[str, tuple[Viewer, float, float | None]] = LRUCache(VERIFIED_MAXSIZE)
        self.jwks = (
            JwksCache(
                config.jwks_url,
                ttl_seconds=config.jwks_ttl_seconds,
                min_refetch_seconds=config.jwks_min_refetch_seconds,
            )
            if config.jwks_url
            else None
        )
        if self.open:
            log.warning(
                "AUTH IS OFF (auth.mode = open): requests without a token act as an integrator. "
                "Demo use only; never expose this gateway."
            )
        elif not config.hs256_secret and not config.jwks_url:
            log.error("auth.mode = jwt but neither auth.hs256_secret nor auth.jwks_url is set: every request gets 401")

    async def close(self) -> None:
        if self.jwks is not None:
            await self.jwks.close()

    async def viewer(self, token: str | None) -> Viewer:
        """The viewer of ``token`` (None: no token sent); AuthError when refused."""
        if not token:
            if self.open:
                return OPEN_DEMO
            raise AuthError("a bearer token is required (Authorization: Bearer <token>)", missing=True)
        if (known := self.verified(token)) is not None:
            return known
        claims = await self.verify(token)
        viewer = self.viewer_from_claims(claims)
        now = time.time()
        until = now + VERIFIED_KEEP_SECONDS
        if viewer.expires_at is not None:
            until = min(until, viewer.expires_at.timestamp())
        if until > now:
            self._verified[token] = (viewer, until, self._jwks_fetch())
        return viewer

    def _jwks_fetch(self) -> float | None:
        return self.jwks.fetched_at if self.jwks is not None else None

    def verified(self, token: str) -> Viewer | None:
        """The viewer of a token verified less than ``VERIFIED_KEEP_SECONDS`` ago, not
        expired since, against the signing keys still in use (a JWKS fetched again, e.g. a
        key rotated out, checks every token again), or None: then ``viewer`` checks it."""
        kept = self._verified.get(token)
        if kept is None:
            return None
        if kept[1] <= time.time() or kept[2] != self._jwks_fetch():
            self._verified.pop(token, None)
            return None
        return kept[0]

    async def verify(self, token: str) -> dict[str, Any]:
        """Check signature, algorithm, issuer, audience and expiry; the claims."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"malformed token: {exc}") from exc
        alg = header.get("alg")
        key: Any
        if alg in HMAC_ALGORITHMS:
            if not self.config.hs256_secret:
                raise AuthError(f"{alg} tokens are not accepted here")
            key = self.config.hs256_secret
        elif alg in JWKS_ALGORITHMS:
            if self.jwks is None:
                raise AuthError(f"{alg} tokens are not accepted here (no auth.jwks_url)")
            jwk = await self.jwks.key(header.get("kid"))
            if jwk.algorithm_name != alg:  # e.g. an RSA key presented as ES256
                raise AuthError(f"key {header.get('kid')!r} is not a {alg} key")
            key = jwk.key
        else:
            raise AuthError(f"algorithm {alg!r} is not accepted")
        cfg = self.config
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],  # exactly the one we chose the key for
                audience=cfg.audience or None,
                issuer=cfg.issuer or None,
                leeway=cfg.leeway_seconds,
                options={"require": ["exp", "sub"] + (["iss"] if cfg.issuer else []) + (["aud"] if cfg.audience else [])},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError("token is for another audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthError("token is from another issuer") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError("bad token signature") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from exc
        except (OverflowError, ValueError, TypeError) as exc:  # e.g. `exp: Infinity` (JSON allows it)
            raise AuthError("invalid token: a time claim is not a number of seconds") from exc
        check_time_claims(claims)
        return claims

    def viewer_from_claims(self, claims: dict[str, Any]) -> Viewer:
        """Map verified claims to a viewer: a known role, and a customer for customers."""
        raw_role = claims.get(self.config.role_claim)
        try:
            role = Role(raw_role)
        except ValueError as exc:
            raise AuthError(f"unknown role {raw_role!r} (known: {', '.join(r.value for r in Role)})") from exc
        customer = claims.get(self.config.customer_claim)
        if role is Role.CUSTOMER:
            if not isinstance(customer, str) or not customer:
                raise AuthError(f"a customer token needs a `{self.config.customer_claim}` claim")
        else:
            customer = None
        exp = claims.get("exp")
        # valid until exp plus the clock-skew leeway, exactly as long as decode() accepts it
        expires = (
            dt.datetime.fromtimestamp(min(exp + self.config.leeway_seconds, MAX_TIME), dt.UTC)
            if isinstance(exp, int | float)
            else None
        )
        return Viewer(role=role, customer=customer, subject=str(claims.get("sub")), expires_at=expires)


# The time claims a token may carry, and the range a time claim must lie in: from the
# epoch to the end of year 9999 (Python's datetime ends there; `exp: 10**12` is year 33658).
TIME_CLAIMS = ("exp", "nbf", "iat")
MAX_TIME = 253_402_300_799


def check_time_claims(claims: dict[str, Any]) -> None:
    """Refuse time claims that are not numbers of seconds within ``[0, MAX_TIME]``.

    PyJWT compares ``int(claim)``, so it takes ``"exp": "1700000000"`` (RFC 7519 says a
    NumericDate is a JSON number); a string ``exp`` then looked like no expiry at all."""
    for name in TIME_CLAIMS:
        if name not in claims:
            continue
        value = claims[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise AuthError(f"invalid token: `{name}` must be a number of seconds since the epoch")
        if not (0 <= value <= MAX_TIME):
            raise AuthError(f"invalid token: `{name}` is out of range (a time between 1970 and 9999)")


def bearer_token(value: str | None) -> str | None:
    """The token of an ``Authorization`` value (``Bearer x`` or a bare token)."""
    if not value or not isinstance(value, str):
        return None
    value = value.strip()
    if value.lower().startswith("bearer "):
        value = value[7:].strip()
    return value or None


def token_from_init(payload: dict[str, Any]) -> str | None:
    """The token a graphql-transport-ws client put in its ``connection_init`` payload."""
    for source in (payload, payload.get("headers") if isinstance(payload.get("headers"), dict) else {}):
        for name in ("Authorization", "authorization", "token", "authToken"):
            value = source.get(name)
            if isinstance(value, str) and value.strip():
                return bearer_token(value)
    return None


def mint_token(
    secret: str,
    *,
    role: str,
    customer: str | None = None,
    subject: str | None = None,
    ttl_seconds: float = 3600.0,
    issuer: str = "ordergraph",
    audience: str = "ordergraph",
    now: dt.datetime | None = None,
) -> str:
    """A development HS256 token (``ordergraph token``, the demo, the tests)."""
    Role(role)  # a clear ValueError for an unknown role
    now = now or dt.datetime.now(dt.UTC)
    claims: dict[str, Any] = {
        "sub": subject or (f"customer:{customer}" if customer else f"{role}:dev"),
        "role": role,
        "iat": int(now.timestamp()),
        "exp": int((now + dt.timedelta(seconds=ttl_seconds)).timestamp()),
    }
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    if customer:
        claims["customer"] = customer
    return jwt.encode(claims, secret, algorithm="HS256")

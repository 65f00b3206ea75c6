"""An asyncio OData v2 client for SAP Gateway, on the gateway's pooled aiohttp session.

One ``ODataClient`` per OData service (``…/sap/opu/odata/sap/API_SALES_ORDER_SRV``). Every
HTTP request runs under the source's ``Resilience`` (budget, retries, breaker, bulkhead,
single-flight; ``sources/resilience.py``), so an SAP system is bounded like any other
source, and answers are mapped to the same typed ``SourceError``s.

What it speaks:

- ``get(query)`` — one request; ``read_all(query)`` — every page, following ``__next``
  (server-driven paging) and, with ``page_size``, ``$top``/``$skip`` (client-driven).
- ``fetch_by(entity_set, field, keys)`` — a batch of keys as ``$filter`` terms joined with
  ``or``, cut into chunks whose URLs stay under ``max_url_length``; the chunks of one
  batch run concurrently.
- ``entity(entity_set, key)`` — one entity by key (``A_SalesOrder('1')``), ``None`` on 404.
- ``changes_since(entity_set, since)`` — a delta read
  (``LastChangeDateTime gt datetimeoffset'…'``) in change order, for polling.
- ``sap-client`` on every URL, ``$format=json``, ``$inlinecount=allpages`` → ``count``,
  ``sap-message`` warnings collected on the result.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urljoin, urlsplit

import aiohttp
import orjson
import yarl
from opentelemetry.trace import SpanKind

from .. import tracing
from ..resilience import (
    SOURCE_BAD_RESPONSE,
    SOURCE_UNAVAILABLE,
    Policy,
    Resilience,
    SourceError,
    utc_now,
)
from .auth import Auth
from .errors import ODataError, SapMessage, error_for_messages, error_for_status, parse_sap_message
from .query import Filter, Query, chunk_keys, encode_params, encode_value, field_filter
from .values import literal

__all__ = ["DEFAULT_MAX_URL_LENGTH", "ODataClient", "ODataPage", "ODataResult"]

T = TypeVar("T")
DEFAULT_MAX_URL_LENGTH = 8000  # under the 8 KB request line SAP's ICM and most proxies allow

# Called after every HTTP request: (source, entity_set, seconds, outcome) — the same hook
# as the REST connectors', so the bench's upstream-call table counts OData chunks too.
RequestHook = Callable[[str, str, float, str], None]


@dataclasses.dataclass(slots=True)
class ODataPage:
    """One answer to one request of a collection."""

    rows: list[dict[str, Any]]
    count: int | None  # __count, with $inlinecount=allpages
    next_url: str | None  # __next, absolute
    messages: list[SapMessage]


@dataclasses.dataclass(slots=True)
class ODataResult:
    """Every row of a read, across its pages (and chunks, for ``fetch_by``)."""

    rows: list[dict[str, Any]]
    count: int | None
    requests: int
    messages: list[SapMessage]


class ODataClient:
    """Reads one OData v2 service of one source system."""

    def __init__(
        self,
        name: str,
        service_url: str,
        session: aiohttp.ClientSession,
        *,
        auth: Auth | None = None,
        sap_client: str | None = None,
        policy: Policy | None = None,
        on_request: RequestHook | None = None,
        clock: Callable[[], dt.datetime] = utc_now,
        generation: Callable[[], int] | None = None,
        resilience: Resilience | None = None,
        max_url_length: int = DEFAULT_MAX_URL_LENGTH,
        max_keys_per_request: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if sap_client is not None and not (sap_client.isdigit() and len(sap_client) == 3):
            raise ValueError(f"sap-client must be three digits, got {sap_client!r}")
        if max_url_length < 256:
            raise ValueError("max_url_length below 256 characters leaves no room for a query")
        self.name = name
        self.service_url = service_url.rstrip("/")
        self._origin = urlsplit(self.service_url)[:2]
        self.session = session
        self.auth = auth
        self.sap_client = sap_client
        self.policy = policy or Policy()
        self.on_request = on_request
        self.max_url_length = max_url_length
        self.max_keys_per_request = max_keys_per_request
        self.headers = {"Accept": "application/json", **(headers or {})}
        self.timeout = aiohttp.ClientTimeout(total=self.policy.timeout_seconds)
        # Shared with a REST connector of the same system when given, so health is one.
        self.resilience = resilience or Resilience(name, self.policy, clock=clock, generation=generation)
        self.on_message: Callable[[str, SapMessage], None] | None = None  # warnings, for logs

    # --- URLs ------------------------------------------------------------------------

    def _common(self) -> list[tuple[str, str]]:
        out = [("$format", "json")]
        if self.sap_client:
            out.append(("sap-client", self.sap_client))
        return out

    def url(self, query: Query) -> str:
        """The request URL of ``query`` (encoded; its length is what the limit counts)."""
        return f"{self.service_url}/{query.entity_set}?{encode_params([*query.params(), *self._common()])}"

    def entity_url(self, entity_set: str, key: str | Mapping[str, Any], select: Sequence[str] = (), expand: Sequence[str] = ()) -> str:
        """``…/A_SalesOrder('1')?…`` (a mapping gives a compound key ``(K1='a',K2='b')``)."""
        Query(entity_set, select=tuple(select), expand=tuple(expand))  # validates the names
        if isinstance(key, Mapping):
            inner = ",".join(f"{k}={literal(v)}" for k, v in key.items())
        else:
            inner = literal(key)
        params: list[tuple[str, str]] = []
        if select:
            params.append(("$select", ",".join(select)))
        if expand:
            params.append(("$expand", ",".join(expand)))
        return f"{self.service_url}/{entity_set}({encode_value(inner)})?{encode_params([*params, *self._common()])}"

    def _next_url(self, next_link: Any, current: str) -> str:
        if not isinstance(next_link, str) or not next_link:
            raise SourceError(self.name, SOURCE_BAD_RESPONSE, "__next is not a URL")
        url = urljoin(current, next_link)
        parts = urlsplit(url)
        if parts[:2] != self._origin:
            # Never send our credentials to a host the service did not come from.
            raise SourceError(self.name, SOURCE_BAD_RESPONSE, f"__next points to another host: {parts.netloc}")
        present = {k for k, _ in parse_qsl(parts.query, keep_blank_values=True)}
        missing = [(k, v) for k, v in self._common() if k not in present]
        if missing:
            url += ("&" if parts.query else "?") + encode_params(missing)
        return url

    # --- one request -------------------------------------------------------------------

    async def _call(self, url: str, what: str) -> tuple[int, Any, list[SapMessage]]:
        """One GET under the policy: (status, decoded JSON or None for 404, messages)."""
        return await self.resilience.call(("odata", url), lambda: self._get_once(url, what), what=what)

    async def _get_once(self, url: str, what: str) -> tuple[int, Any, list[SapMessage]]:
        started = time.perf_counter()
        outcome = "ok"
        try:
            status, body, headers, sent = await self._send(url)
            if status == 401 and self.auth is not None and self.auth.invalidate(sent):
                # A token may have expired early or been revoked: one retry with a fresh one.
                status, body, headers, sent = await self._send(url)
            if status == 404:
                return status, None, parse_sap_message(headers.get("sap-message"))
            if status >= 300:
                outcome = "error"
                raise error_for_status(self.name, what, status, body, headers)
            messages = parse_sap_message(headers.get("sap-message"))
            bad = error_for_messages(self.name, what, messages)
            if bad is not None:
                outcome = "error"
                raise bad
            for m in messages:
                if self.on_message is not None:
                    self.on_message(what, m)
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                outcome = "error"
                raise SourceError(self.name, SOURCE_BAD_RESPONSE, f"{what} answered malformed JSON") from exc
            return status, data, messages
        except (TimeoutError, asyncio.CancelledError):
            outcome = "timeout"
            raise
        except aiohttp.ClientError as exc:
            outcome = "error"
            raise SourceError(self.name, SOURCE_UNAVAILABLE, f"{what} unreachable: {exc}") from exc
        except SourceError:
            outcome = "error"
            raise
        finally:
            if self.on_request is not None:
                self.on_request(self.name, what, time.perf_counter() - started, outcome)

    async def _send(self, url: str) -> tuple[int, bytes, dict[str, str], dict[str, str]]:
        """(status, body, response headers in lower case, the auth headers sent)."""
        sent: dict[str, str] = {}
        if self.auth is not None:
            sent = await self.auth.headers(self.session, self.name)
        trace = tracing.inject({}) if tracing.enabled() else {}  # traceparent to the source
        async with self.session.get(yarl.URL(url, encoded=True), headers={**self.headers, **sent, **trace}, timeout=self.timeout) as resp:
            body = await resp.read()
            return resp.status, body, {k.lower(): v for k, v in resp.headers.items()}, sent

    # --- envelopes -------------------------------------------------------------------

    def _page(self, data: Any, url: str, what: str, messages: list[SapMessage]) -> ODataPage:
        d = data.get("d") if isinstance(data, dict) else None
        if isinstance(d, list):  # OData v1-style collection
            rows, count, next_link = d, None, None
        elif isinstance(d, dict) and isinstance(d.get("results"), list):
            rows, count, next_link = d["results"], d.get("__count"), d.get("__next")
        else:
            raise SourceError(self.name, SOURCE_BAD_RESPONSE, f"{what} answered without a d.results collection")
        if not all(isinstance(r, dict) for r in rows):
            raise SourceError(self.name, SOURCE_BAD_RESPONSE, f"{what} answered rows that are not objects")
        if count is not None:
            try:
                count = int(count)
            except (TypeError, ValueError):
                raise SourceError(self.name, SOURCE_BAD_RESPONSE, f"{what} answered a bad __count {count!r}") from None
        next_url = self._next_url(next_link, url) if next_link else None
        return ODataPage(rows, count, next_url, messages)

    # --- reads -----------------------------------------------------------------------

    async def get(self, query: Query) -> ODataPage:
        """One request of ``query`` (no paging)."""
        return await self.get_url(self.url(query), query.entity_set)

    async def get_url(self, url: str, what: str) -> ODataPage:
        """One request of a collection URL (e.g. a ``__next`` link)."""
        if len(url) > self.max_url_length:
            raise SourceError(self.name, SOURCE_BAD_RESPONSE, f"{what}: URL of {len(url)} characters over the {self.max_url_length} limit", client_fault=True)
        attributes = {"ordergraph.source.system": self.name, "ordergraph.source.entity_set": what, "ordergraph.source.profile": "odata"}
        with tracing.span(f"source.call {self.name} {what}", attributes, kind=SpanKind.CLIENT):
            _status, data, messages = await self._call(url, what)
        if data is None:
            raise ODataError(self.name, SOURCE_BAD_RESPONSE, f"{what} not found (HTTP 404)", status=404, client_fault=True)
        return self._page(data, url, what, messages)

    async def read_all(self, query: Query, *, page_size: int | None = None, max_requests: int = 10_000) -> ODataResult:
        """Every row of ``query``: follows ``__next``; with ``page_size``, pages with
        ``$top``/``$skip`` as long as full pages come back. ``query.top`` caps the total."""
        if page_size is not None and page_size <= 0:
            raise ValueError("page_size must be positive")
        limit = query.top
        first = query
        if page_size is not None:
            first = query.replace(top=min(page_size, limit) if limit is not None else page_size, skip=query.skip or 0)
        rows: list[dict[str, Any]] = []
        messages: list[SapMessage] = []
        count: int | None = None
        requests = 0
        url: str | None = self.url(first)
        current = first
        seen: set[str] = set()
        while url is not None:
            if url in seen or requests >= max_requests:
                raise SourceError(self.name, SOURCE_BAD_RESPONSE, f"{query.entity_set}: paging does not end (__next repeats or over {max_requests} pages)")
            seen.add(url)
            page = await self.get_url(url, query.entity_set)
            requests += 1
            rows.extend(page.rows)
            messages.extend(page.messages)
            if page.count is not None and count is None:
                count = page.count
            if limit is not None and len(rows) >= limit:
                del rows[limit:]
                break
            if page.next_url is not None:
                url = page.next_url
            elif page_size is not None and current.top is not None and len(page.rows) >= current.top and page.rows:
                current = current.replace(skip=(current.skip or 0) + len(page.rows), inlinecount=False)
                if limit is not None:
                    current = current.replace(top=min(page_size, limit - len(rows)))
                url = self.url(current)
            else:
                url = None
        return ODataResult(rows, count, requests, messages)

    def chunks(self, query: Query, field: str, keys: Sequence[Any]) -> list[Query]:
        """``query`` restricted to ``field`` ∈ ``keys``, cut to fit ``max_url_length``."""
        try:
            return chunk_keys(self.url, query, field, keys, max_url_length=self.max_url_length, max_keys=self.max_keys_per_request)
        except ValueError as exc:
            raise SourceError(self.name, SOURCE_BAD_RESPONSE, f"{query.entity_set}: {exc}", client_fault=True) from exc

    async def fetch_by(
        self,
        entity_set: str,
        field: str,
        keys: Iterable[Any],
        *,
        select: Sequence[str] = (),
        expand: Sequence[str] = (),
        filter: Filter | None = None,
        page_size: int | None = None,
    ) -> ODataResult:
        """Every row whose ``field`` is one of ``keys``: one logical read, as few requests as
        the URL limit allows, the chunks concurrently."""
        base = Query(entity_set, filter=filter, select=tuple(select), expand=tuple(expand))
        queries = self.chunks(base, field, list(keys))
        if not queries:
            return ODataResult([], 0, 0, [])
        results = await _all([self.read_all(q, page_size=page_size) for q in queries])
        return ODataResult(
            [row for r in results for row in r.rows],
            None,
            sum(r.requests for r in results),
            [m for r in results for m in r.messages],
        )

    async def entity(
        self, entity_set: str, key: str | Mapping[str, Any], *, select: Sequence[str] = (), expand: Sequence[str] = ()
    ) -> dict[str, Any] | None:
        """One entity by key, or ``None`` when the source has no such entity (404)."""
        url = self.entity_url(entity_set, key, select, expand)
        _status, data, _messages = await self._call(url, entity_set)
        if data is None:
            return None
        d = data.get("d") if isinstance(data, dict) else None
        if not isinstance(d, dict) or "results" in d:
            raise SourceError(self.name, SOURCE_BAD_RESPONSE, f"{entity_set} answered without a d entity")
        return d

    async def changes_since(
        self,
        entity_set: str,
        since: dt.datetime,
        *,
        field: str = "LastChangeDateTime",
        kind: str = "datetimeoffset",
        inclusive: bool = False,
        select: Sequence[str] = (),
        expand: Sequence[str] = (),
        filter: Filter | None = None,
        page_size: int | None = 500,
    ) -> ODataResult:
        """Rows changed after ``since`` (``field gt <literal>``), oldest change first.

        ``kind`` is the field's Edm type as a literal: ``datetimeoffset``
        (``A_SalesOrder.LastChangeDateTime``), ``datetime`` (a date field such as
        ``A_OutbDeliveryHeader.LastChangeDate``; use ``inclusive=True`` since a day
        cannot say which of its changes were seen) or ``timestamp`` (SAP's decimal
        YYYYMMDDhhmmss, ``A_ProductionOrder_2.LastChangeDateTime``).
        """
        if since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        delta = field_filter(field, "ge" if inclusive else "gt", since, kind)
        query = Query(
            entity_set,
            filter=delta if filter is None else delta & filter,
            select=tuple(select),
            expand=tuple(expand),
            orderby=(f"{field} asc",),
        )
        return await self.read_all(query, page_size=page_size)


async def _all(coros: list[Awaitable[T]]) -> list[T]:
    """All results, in order; on the first failure the other requests are cancelled."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise

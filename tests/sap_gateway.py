"""A small SAP Gateway (OData v2) on loopback for the OData client's tests.

It serves entity sets from plain SAP-shaped rows the way S/4HANA does: ``d.results``
envelopes, server-driven paging with ``__next``/``$skiptoken``, ``$inlinecount``,
``$filter`` with eq/gt/ge joined by ``or``/``and``, ``$select``, ``$expand`` (navigations
not asked for come back ``__deferred``), ``$orderby``, ``$top``/``$skip``, entities by
key, ``sap-client``, basic auth or OAuth bearer tokens from its own token endpoint, and
injected failures. It records every request (URL, its length, auth) for the tests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import itertools
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import orjson
from aiohttp import web

from sources.odata.values import parse_datetime, parse_sap_timestamp
from sources.simulator.odata import parse_literal, row_matches

SERVICE_ROOT = "/sap/opu/odata/sap"


@dataclasses.dataclass
class Seen:
    url: str
    length: int
    authorization: str | None
    sap_client: str | None
    entity_set: str


@dataclasses.dataclass
class Failure:
    status: int
    body: bytes = b""
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    times: int | None = None  # None: every time


class SapGateway:
    def __init__(self, *, page_size: int | None = None, delay: float = 0.0) -> None:
        self.sets: dict[tuple[str, str], tuple[str, list[dict[str, Any]]]] = {}  # (service, set) -> (key, rows)
        self.page_size = page_size
        self.delay = delay
        self.seen: list[Seen] = []
        self.failures: dict[str, Failure] = {}  # entity set -> failure
        self.headers: dict[str, str] = {}  # added to every 2xx answer (e.g. sap-message)
        self.basic: tuple[str, str] | None = None
        self.client_credentials: tuple[str, str] | None = None
        self.tokens: set[str] = set()
        self.accept_tokens = True  # False: every bearer token is refused
        self.token_lifetime = 3600
        self.token_requests = 0
        self._token_ids = itertools.count(1)
        self.in_flight = 0
        self.max_in_flight = 0
        self.next_host: str | None = None  # serve __next on another host (to test refusal)
        self.url = ""

    def add(self, service: str, entity_set: str, key: str, rows: list[dict[str, Any]]) -> None:
        self.sets[(service, entity_set)] = (key, rows)

    def service_url(self, service: str) -> str:
        return f"{self.url}{SERVICE_ROOT}/{service}"

    # --- auth ------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> str | None:
        """None when the request may pass, else the reason for a 401."""
        header = request.headers.get("Authorization")
        if self.basic is not None:
            expected = "Basic " + base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()
            return None if header == expected else "Logon failed"
        if self.client_credentials is not None:
            token = (header or "").removeprefix("Bearer ")
            return None if self.accept_tokens and token in self.tokens else "Token invalid or expired"
        return None

    async def token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = await request.post()
        expected = "Basic " + base64.b64encode(":".join(self.client_credentials or ("", "")).encode()).decode()
        if form.get("grant_type") != "client_credentials" or request.headers.get("Authorization") != expected:
            return web.json_response({"error": "invalid_client", "error_description": "Bad credentials"}, status=401)
        token = f"tok-{next(self._token_ids)}"
        self.tokens.add(token)
        return web.json_response({"access_token": token, "token_type": "bearer", "expires_in": self.token_lifetime})

    # --- reads -----------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            return self._answer(request)
        finally:
            self.in_flight -= 1

    def _answer(self, request: web.Request) -> web.Response:
        raw = str(request.url)
        m = re.match(rf"^{SERVICE_ROOT}/([^/]+)/([A-Za-z_0-9]+)(?:\((.*)\))?$", request.path)
        if m is None:
            return _error(404, "/IWFND/MED/170", "No service found")
        service, entity_set, key_literal = m.groups()
        params = dict(parse_qsl(urlsplit(raw).query, keep_blank_values=True))
        self.seen.append(Seen(raw, len(raw), request.headers.get("Authorization"), params.get("sap-client"), entity_set))
        why = self._authorized(request)
        if why is not None:
            return _error(401, "/IWFND/CM_CONSUMER/101", why)
        failure = self.failures.get(entity_set)
        if failure is not None and (failure.times is None or failure.times > 0):
            if failure.times is not None:
                failure.times -= 1
            return web.Response(status=failure.status, body=failure.body, headers=failure.headers, content_type="application/json")
        if (service, entity_set) not in self.sets:
            return _error(404, "/IWBEP/CM_MGW_RT/020", f"Resource not found for segment '{entity_set}'")
        key, rows = self.sets[(service, entity_set)]
        if key_literal is not None:
            wanted = parse_literal(key_literal)
            found = [r for r in rows if r.get(key) == wanted]
            if not found:
                return _error(404, "/IWBEP/CM_MGW_RT/020", "Resource not found")
            return self._json({"d": self._shape(found[0], params, service, entity_set)})
        selected = [r for r in rows if row_matches(r, params.get("$filter"))]
        if "$orderby" in params:
            field, _, direction = params["$orderby"].partition(" ")
            selected.sort(key=lambda r: _sortable(r.get(field)), reverse=direction == "desc")
        count = len(selected)
        if "$skiptoken" in params:  # a __next link of ours: where the page starts and the read ends
            start, end = int(params["$skiptoken"]), int(params.get("_end", count))
        else:
            start = int(params.get("$skip", 0))
            end = count if "$top" not in params else min(count, start + int(params["$top"]))
        page_end = end if self.page_size is None else min(end, start + self.page_size)
        body: dict[str, Any] = {"results": [self._shape(r, params, service, entity_set) for r in selected[start:page_end]]}
        if params.get("$inlinecount") == "allpages":
            body["__count"] = str(count)
        if page_end < end:
            nxt = {k: v for k, v in params.items() if k not in ("$skip", "$top", "$skiptoken", "$inlinecount", "_end")}
            nxt.update({"$skiptoken": str(page_end), "_end": str(end)})
            host = self.next_host or self.url
            body["__next"] = f"{host}{request.path}?" + "&".join(f"{k}={quote(v, safe='$()/,:')}" for k, v in nxt.items())
        return self._json({"d": body})

    def _json(self, obj: Any) -> web.Response:
        return web.Response(body=orjson.dumps(obj), content_type="application/json", headers=self.headers)

    def _shape(self, row: dict[str, Any], params: dict[str, str], service: str, entity_set: str) -> dict[str, Any]:
        expand = [e for e in params.get("$expand", "").split(",") if e]
        select = [s for s in params.get("$select", "").split(",") if s]
        out: dict[str, Any] = {"__metadata": {"type": f"{service}.{entity_set}Type"}}
        for field, value in row.items():
            if select and field not in select and not any(e.split("/")[0] == field for e in expand):
                continue
            if field.startswith("to_"):
                nested = [e.split("/", 1)[1] for e in expand if e.startswith(field + "/")]
                if field in expand or nested or any(e == field for e in expand):
                    out[field] = {"results": [_expand(child, nested) for child in value]}
                else:
                    out[field] = {"__deferred": {"uri": f"{self.url}/{entity_set}/{field}"}}
            else:
                out[field] = value
        return out


def _expand(row: dict[str, Any], expand: list[str]) -> dict[str, Any]:
    out = {}
    for field, value in row.items():
        if field.startswith("to_"):
            out[field] = {"results": value} if field in expand else {"__deferred": {"uri": field}}
        else:
            out[field] = value
    return out


def _error(status: int, code: str, message: str) -> web.Response:
    body = {"error": {"code": code, "message": {"lang": "en", "value": message},
                      "innererror": {"errordetails": [{"code": code, "message": message, "severity": "error", "target": ""}]}}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _sortable(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("/Date("):
        return parse_datetime(value)
    if isinstance(value, str) and re.fullmatch(r"\d{14}", value):
        return parse_sap_timestamp(value)
    return value


@contextlib.asynccontextmanager
async def serving(gateway: SapGateway) -> AsyncIterator[SapGateway]:
    app = web.Application()
    app.router.add_post("/oauth/token", gateway.token)
    app.router.add_get(SERVICE_ROOT + "/{tail:.*}", gateway.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    gateway.url = f"http://127.0.0.1:{port}"
    try:
        yield gateway
    finally:
        await runner.cleanup()

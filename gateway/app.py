"""The ASGI application: routes, and the ``Gateway`` that owns everything with a lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from resolvers.context import Context
from resolvers.schema import schema as strawberry_schema
from sources import SourceEndpoint, Sources, event_registry

from .bus import Bus, LocalBus
from .cache import RecordCache
from .config import Config
from .graphiql import render_graphiql
from .graphql_http import GraphQLHttp
from .ingest import EventIngress, EventProcessor, Rejection
from .journal import Journal
from .metrics import Metrics
from .sse import stream_endpoint
from .subscriptions import Hub, Scope
from .websocket import Connection

log = logging.getLogger("ordergraph.gateway")

STATIC_DIR = Path(__file__).parent / "static"


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Gateway:
    """Owns the HTTP session to the sources, the record cache and the metrics."""

    def __init__(
        self, config: Config, *, clock: Callable[[], dt.datetime] = utc_now, bus: Bus | None = None
    ) -> None:
        self.config = config
        self.bus: Bus = bus or LocalBus()
        self.registry = event_registry()
        self.journal: Journal | None = None
        self.ingress: EventIngress | None = None
        self.processor: EventProcessor | None = None
        self.hub: Hub | None = None
        self.clock = clock
        self.cache = RecordCache(maxsize=config.cache.maxsize, ttl_seconds=config.cache.ttl_seconds)
        self.metrics = Metrics()
        self.schema = strawberry_schema
        self.session: aiohttp.ClientSession | None = None
        self.sources: Sources | None = None
        self.http = GraphQLHttp(
            strawberry_schema._schema,
            self.context,
            max_body_bytes=config.gateway.max_body_bytes,
            observe=self.metrics.on_graphql_request,
        )

    async def start(self) -> None:
        """Open the pooled HTTP session and the connectors."""
        limit = sum(s.max_connections for s in self.config.sources.values())
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit, ttl_dns_cache=300))
        endpoints = {
            name: SourceEndpoint(base_url=s.base_url, timeout_seconds=s.timeout_seconds, batch_size=s.batch_size)
            for name, s in self.config.sources.items()
        }
        self.sources = Sources.connect(self.session, endpoints, on_request=self.metrics.on_source_request)
        ev = self.config.events
        if ev.journal_path != ":memory:":
            Path(ev.journal_path).parent.mkdir(parents=True, exist_ok=True)
        self.journal = await Journal.open(ev.journal_path, retention_days=ev.retention_days, max_events=ev.max_events)
        self.ingress = EventIngress(ev, self.registry, self.journal, self.clock)
        self.hub = Hub(self.schema._schema, self.context, self.journal)
        self.bus.subscribe(self._on_bus)
        await self.bus.start()
        self.processor = EventProcessor(self.journal, self.registry, self.sources, self.cache, self.bus, self.ingress.wakeup)
        self.hub.start()
        self.processor.start()
        self._prune_task = asyncio.create_task(self._prune_periodically(), name="ordergraph-journal-prune")

    async def _prune_periodically(self, interval_seconds: float = 3600.0) -> None:
        """Keep the journal within its retention (age and size), once an hour."""
        while True:
            try:
                assert self.journal is not None
                deleted = await self.journal.prune(self.clock())
                if deleted:
                    log.info("journal retention: pruned %d events", deleted)
            except Exception:
                log.exception("journal prune failed")
            await asyncio.sleep(interval_seconds)

    def _on_bus(self, changes: list) -> None:
        # Changes published by any replica: drop their cache keys here too, then fan out.
        keys = {k for ch in changes for k in ch.invalidated}
        if keys:
            self.cache.invalidate(keys)
        if self.hub is not None:
            self.hub.on_changes(changes)

    async def stop(self) -> None:
        if getattr(self, "_prune_task", None) is not None:
            self._prune_task.cancel()
        if self.processor is not None:
            await self.processor.stop()
        if self.hub is not None:
            await self.hub.stop()
        await self.bus.stop()
        if self.journal is not None:
            await self.journal.close()
            self.journal = None
        if self.session is not None:
            await self.session.close()
            self.session = None

    def context(self, request: Request | None = None) -> Context:
        """A fresh per-request context: new loaders over the shared cache."""
        assert self.sources is not None, "gateway not started"
        return Context.create(
            self.sources, self.cache, self.clock(), max_first=self.config.gateway.max_first, journal=self.journal
        )

    async def ws_scope(self, init_payload: dict) -> Scope:
        return Scope()

    async def http_scope(self, request: Request) -> Scope:
        return Scope()


def create_app(config: Config, *, clock: Callable[[], dt.datetime] = utc_now, bus: Bus | None = None) -> Starlette:
    """Build the gateway's ASGI app; ``app.state.gateway`` is its ``Gateway``."""
    gateway = Gateway(config, clock=clock, bus=bus)
    subs = config.subscriptions

    async def graphql_endpoint(request: Request) -> Response:
        if (
            request.method == "GET"
            and config.gateway.graphiql
            and "query" not in request.query_params
            and "text/html" in request.headers.get("accept", "")
        ):
            return HTMLResponse(render_graphiql())
        return await gateway.http.handle(request)

    async def events_endpoint(request: Request) -> Response:
        assert gateway.ingress is not None
        limit = config.events.max_body_bytes
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit:
            return JSONResponse({"error": f"body over {limit} bytes"}, status_code=413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return JSONResponse({"error": f"body over {limit} bytes"}, status_code=413)
        try:
            accepted = await gateway.ingress.accept(
                bytes(body), request.headers.get("content-type", ""), request.headers.get("x-ordergraph-signature")
            )
        except Rejection as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        return JSONResponse(
            {"accepted": accepted.accepted, "duplicates": accepted.duplicates, "cursors": accepted.cursors},
            status_code=202,
        )

    async def graphql_ws(websocket: WebSocket) -> None:
        assert gateway.hub is not None
        conn = Connection(
            websocket,
            gateway.hub,
            gateway.http.documents,
            gateway.context,
            authenticate=gateway.ws_scope,
            init_timeout=subs.connection_init_timeout_seconds,
            max_subscriptions=subs.max_per_connection,
            queue_size=subs.queue_size,
        )
        await conn.run()

    async def graphql_stream(request: Request) -> Response:
        assert gateway.hub is not None
        return await stream_endpoint(
            request,
            gateway.hub,
            gateway.http.documents,
            gateway.http_scope,
            max_body_bytes=config.gateway.max_body_bytes,
            queue_size=subs.queue_size,
            keepalive_seconds=subs.keepalive_seconds,
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    STATIC_DIR.mkdir(exist_ok=True)
    app = Starlette(
        routes=[
            Route("/graphql", graphql_endpoint, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql_ws),
            Route("/graphql/stream", graphql_stream, methods=["GET", "POST"]),
            Route("/events", events_endpoint, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/metrics", gateway.metrics.endpoint),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        ],
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app

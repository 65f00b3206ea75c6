"""OpenTelemetry: the span tree of a query and of an event (in-memory span exporter),
traceparent from the caller into the source calls (a recording proxy in front of the ERP),
the OTLP exporter against a real OTLP/HTTP receiver, JSON logs, and "off by default".

Real plant, real gateway under uvicorn, real HTTP and WebSocket clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.app import create_app
from gateway.config import Config, LimitsConfig, TelemetryConfig
from gateway.telemetry import JsonFormatter, Telemetry, telemetry_problem, wanted
from sources import tracing

from .events_util import make_event, post_events
from .servers import serve_asgi
from .ws_client import WsClient

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
EVENT_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
EVENT_SPAN = "b7ad6b7169203331"


@contextlib.asynccontextmanager
async def traced_gateway(plant_url: str, *, exporter: Any = None, telemetry: TelemetryConfig | None = None,
                         erp_url: str | None = None) -> AsyncIterator[tuple[str, Any]]:
    cfg = Config.for_plant(plant_url)
    cfg.events.journal_path = ":memory:"
    cfg.auth.mode = "open"
    cfg.limits = LimitsConfig(document_seconds_per_second=0, rate_per_second=1000, rate_burst=1000)
    cfg.cache.response_ttl_seconds = 0  # every query executes (the tree is the thing under test)
    if telemetry is not None:
        cfg.telemetry = telemetry
    if erp_url is not None:
        cfg.sources["erp"].base_url = erp_url
    app = create_app(cfg)
    if exporter is not None:
        app.state.gateway.telemetry = Telemetry(cfg.telemetry, exporter=exporter)
    async with serve_asgi(app) as url:
        await app.state.gateway.exceptions.settled(30)
        yield url, app


@contextlib.asynccontextmanager
async def recording_proxy(target: str) -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """An HTTP proxy to ``target`` that keeps every request's headers."""
    seen: list[dict[str, str]] = []
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        async with session.get(f"{target}{request.path}", params=request.query) as resp:
            return web.Response(body=await resp.read(), status=resp.status, content_type=resp.content_type)

    app = web.Application()
    app.router.add_get("/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()
        await session.close()


def by_id(spans: list[Any]) -> dict[int, Any]:
    return {s.context.span_id: s for s in spans}


def children(spans: list[Any], parent: Any) -> list[Any]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def descendants(spans: list[Any], root: Any) -> list[Any]:
    out, todo = [], [root]
    while todo:
        for c in children(spans, todo.pop()):
            out.append(c)
            todo.append(c)
    return out


async def test_the_span_tree_of_a_query(plant, http):
    exporter = InMemorySpanExporter()
    async with recording_proxy(f"{plant.url}/erp") as (erp_url, seen):
        async with traced_gateway(plant.url, exporter=exporter, erp_url=erp_url) as (url, app):
            app.state.gateway.cache.invalidate_all()
            exporter.clear()
            seen.clear()
            query = "query Dashboard { orders(first: 5) { nodes { id customer { name } quality { status } } } }"
            async with http.post(f"{url}/graphql", json={"query": query}, headers={"traceparent": TRACEPARENT}) as resp:
                assert resp.status == 200
                body = await resp.json()
            assert len(body["data"]["orders"]["nodes"]) == 5
            spans = list(exporter.get_finished_spans())
    [root] = [s for s in spans if s.kind is SpanKind.SERVER]
    # the operation continues the caller's trace
    assert root.name == "query Dashboard"
    assert f"{root.context.trace_id:032x}" == TRACE_ID and f"{root.parent.span_id:016x}" == CALLER_SPAN
    assert root.attributes["graphql.operation.type"] == "query"
    assert root.attributes["graphql.operation.name"] == "Dashboard"
    assert all(s.context.trace_id == root.context.trace_id for s in spans)
    top = [s.name for s in sorted(children(spans, root), key=lambda s: s.start_time)]
    assert top == ["graphql.parse", "graphql.validate", "graphql.execute"]
    [execute] = [s for s in children(spans, root) if s.name == "graphql.execute"]
    below = descendants(spans, execute)
    calls = [s for s in below if s.name.startswith("source.call")]
    loads = [s for s in below if s.name.startswith("source.load")]
    # one span per source call, with what an operator needs
    systems = {s.attributes["ordergraph.source.system"] for s in calls}
    assert {"erp", "mes", "qms"} <= systems
    listing = next(s for s in calls if s.name == "source.call erp A_SalesOrder")
    assert listing.kind is SpanKind.CLIENT
    assert listing.attributes["ordergraph.source.entity_set"] == "A_SalesOrder"
    assert listing.attributes["ordergraph.source.batch_size"] == 6  # first + 1
    assert listing.attributes["ordergraph.source.breaker_state"] == "CLOSED"
    assert listing.attributes["ordergraph.source.retries"] == 0
    qms = next(s for s in calls if s.attributes["ordergraph.source.system"] == "qms")
    assert qms.attributes["ordergraph.source.batch_size"] >= 5  # one call for every order's production orders
    # a loader batch carries the cache hits and misses; its call is its child
    lots = next(s for s in loads if s.name == "source.load qms.lots_by_production_order")
    assert lots.attributes["ordergraph.cache.misses"] >= 5 and lots.attributes["ordergraph.cache.hit"] is False
    assert children(spans, lots) == [qms]
    # traceparent went to the source, naming the call's own span
    assert seen, "the ERP was not called through the proxy"
    sent = [h.get("traceparent") or h.get("Traceparent") for h in seen]
    erp_calls = {f"{s.context.span_id:016x}" for s in calls if s.attributes["ordergraph.source.system"] == "erp"}
    assert all(tp and tp.split("-")[1] == TRACE_ID for tp in sent), sent
    assert {tp.split("-")[2] for tp in sent} <= erp_calls


async def test_a_second_query_hits_the_cache_and_says_so(plant, http):
    exporter = InMemorySpanExporter()
    async with traced_gateway(plant.url, exporter=exporter) as (url, _app):
        query = "{ orders(first: 3) { nodes { id quality { status } } } }"
        for _ in range(2):
            exporter.clear()
            async with http.post(f"{url}/graphql", json={"query": query}) as resp:
                assert resp.status == 200
        spans = list(exporter.get_finished_spans())
    names = [s.name for s in spans]
    assert "graphql.parse" not in names and "graphql.validate" not in names  # a known document
    lots = next(s for s in spans if s.name == "source.load qms.lots_by_production_order")
    assert lots.attributes["ordergraph.cache.hit"] is True and lots.attributes["ordergraph.cache.misses"] == 0
    assert not children(spans, lots)  # no source call


async def test_the_span_tree_of_an_event(plant, http):
    exporter = InMemorySpanExporter()
    async with traced_gateway(plant.url, exporter=exporter) as (url, app):
        data = await (await http.post(f"{url}/graphql", json={"query": "{ orders(first: 1, filter: {stage: [PRODUCTION_RELEASED]}) { nodes { id } } }"})).json()
        so = data["data"]["orders"]["nodes"][0]["id"]
        ws = await WsClient.open(url)
        await ws.subscribe("1", "subscription($id: ID!) { orderUpdated(id: $id) { id stage } }", {"id": so})
        await ws.next("1")
        changes = plant.world.advance_order(so)
        assert changes
        from gateway.config import DEV_SECRETS
        from sources.simulator.emitter import EventEmitter

        em = EventEmitter(plant.world, url, DEV_SECRETS, duplicate_rate=0, reorder_rate=0, notification_rate=0)
        event = em.event_for(changes[0])
        event["traceparent"] = f"00-{EVENT_TRACE_ID}-{EVENT_SPAN}-01"  # CloudEvents distributed tracing
        exporter.clear()
        status, _ = await post_events(http, url, [event])
        assert status == 202
        pushed = await ws.next("1")
        assert pushed["data"]["orderUpdated"]["id"] == so
        await ws.close()
        for _ in range(100):  # the fan-out span ends just after the push is offered
            if any(s.name == "event.fanout" for s in exporter.get_finished_spans()):
                break
            await asyncio.sleep(0.02)
        spans = [s for s in exporter.get_finished_spans() if f"{s.context.trace_id:032x}" == EVENT_TRACE_ID]
    [ingest] = [s for s in spans if s.name == "event.ingest"]
    assert f"{ingest.parent.span_id:016x}" == EVENT_SPAN  # the event's own traceparent
    assert ingest.attributes["cloudevents.event_id"] == event["id"]
    assert ingest.attributes["ordergraph.event.traceparent_carried"] is True
    under_ingest = {s.name for s in children(spans, ingest)}
    assert under_ingest >= {"event.journal", "event.apply"}
    [journal] = [s for s in children(spans, ingest) if s.name == "event.journal"]
    assert journal.attributes["ordergraph.event.duplicate"] is False
    [apply] = [s for s in children(spans, ingest) if s.name == "event.apply"]
    assert apply.attributes["ordergraph.event.seq"] == journal.attributes["ordergraph.event.seq"]
    [fanout] = [s for s in children(spans, apply) if s.name == "event.fanout"]
    assert fanout.attributes["ordergraph.subscribers"] == 1 and fanout.attributes["ordergraph.groups"] == 1
    assert fanout.attributes["ordergraph.deliveries"] == 1
    # the re-resolution for the subscriber reads its sources inside the fan-out span
    assert any(s.name.startswith("source.") for s in descendants(spans, fanout))


async def test_an_event_without_traceparent_continues_the_requests_trace(plant, http):
    exporter = InMemorySpanExporter()
    async with traced_gateway(plant.url, exporter=exporter) as (url, _app):
        data = await (await http.post(f"{url}/graphql", json={"query": "{ orders(first: 1) { nodes { id } } }"})).json()
        so = data["data"]["orders"]["nodes"][0]["id"]
        exporter.clear()
        event = make_event("erp", "SalesOrder", "Changed", so)
        body = json.dumps([event]).encode()
        from gateway.config import DEV_SECRETS
        from sources.signing import HEADER, sign

        headers = {"Content-Type": "application/cloudevents-batch+json", HEADER: sign(DEV_SECRETS["erp"], body), "traceparent": TRACEPARENT}
        async with http.post(f"{url}/events", data=body, headers=headers) as resp:
            assert resp.status == 202, await resp.text()
        [ingest] = [s for s in exporter.get_finished_spans() if s.name == "event.ingest"]
    assert f"{ingest.context.trace_id:032x}" == TRACE_ID and f"{ingest.parent.span_id:016x}" == CALLER_SPAN
    assert ingest.attributes["ordergraph.event.traceparent_carried"] is False


async def test_tracing_is_off_by_default(plant, http):
    assert wanted(TelemetryConfig(), env={}) is None
    async with traced_gateway(plant.url) as (url, app):
        assert not app.state.gateway.telemetry.on and not tracing.enabled()
        async with http.post(f"{url}/graphql", json={"query": "{ orders(first: 1) { nodes { id } } }"}, headers={"traceparent": TRACEPARENT}) as resp:
            assert resp.status == 200


def test_settings_from_toml_and_otel_env():
    assert wanted(TelemetryConfig(traces=True), env={}) == "otlp"
    assert wanted(TelemetryConfig(), env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) == "otlp"
    assert wanted(TelemetryConfig(), env={"OTEL_TRACES_EXPORTER": "console"}) == "console"
    assert wanted(TelemetryConfig(traces=True), env={"OTEL_SDK_DISABLED": "true"}) is None
    assert wanted(TelemetryConfig(traces=True), env={"OTEL_TRACES_EXPORTER": "none"}) is None
    assert "zipkin" in telemetry_problem(TelemetryConfig(), env={"OTEL_TRACES_EXPORTER": "zipkin"})
    assert "sample_ratio" in telemetry_problem(TelemetryConfig(sample_ratio=2))


async def test_otlp_exporter_sends_to_a_collector(plant, http):
    """A real OTLP/HTTP receiver (protobuf) gets the query's spans when the gateway stops."""
    received: list[ExportTraceServiceRequest] = []

    async def traces(request: web.Request) -> web.Response:
        msg = ExportTraceServiceRequest()
        msg.ParseFromString(await request.read())
        received.append(msg)
        return web.Response(status=200, content_type="application/x-protobuf", body=b"")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        settings = TelemetryConfig(traces=True, otlp_endpoint=f"http://127.0.0.1:{port}", service_name="ordergraph-test")
        async with traced_gateway(plant.url, telemetry=settings) as (url, _gw):
            async with http.post(f"{url}/graphql", json={"query": "query Probe { orders(first: 2) { nodes { id } } }"}) as resp:
                assert resp.status == 200
        # stopping the gateway flushed the batch processor (the export runs in its thread)
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()
    names = {s.name for msg in received for rs in msg.resource_spans for ss in rs.scope_spans for s in ss.spans}
    services = {a.value.string_value for msg in received for rs in msg.resource_spans for a in rs.resource.attributes if a.key == "service.name"}
    assert "query Probe" in names and "graphql.execute" in names, names
    assert services == {"ordergraph-test"}


def test_json_logs_carry_trace_and_span_ids():
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    record = logging.LogRecord("ordergraph.test", logging.INFO, __file__, 1, "hello %s", ("plant",), None)
    with provider.get_tracer("t").start_as_current_span("s") as span:
        line = JsonFormatter().format(record)
    out = json.loads(line)
    assert out["message"] == "hello plant" and out["level"] == "INFO" and out["logger"] == "ordergraph.test"
    assert out["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    assert out["span_id"] == f"{span.get_span_context().span_id:016x}"
    assert "trace_id" not in json.loads(JsonFormatter().format(record))  # outside a span: none


async def test_a_websocket_operation_continues_the_handshakes_trace(plant, http):
    exporter = InMemorySpanExporter()
    async with traced_gateway(plant.url, exporter=exporter) as (url, app):
        data = await (await http.post(f"{url}/graphql", json={"query": "{ orders(first: 1) { nodes { id } } }"})).json()
        so = data["data"]["orders"]["nodes"][0]["id"]
        app.state.gateway.cache.invalidate_all()
        exporter.clear()
        ws_url = url.replace("http://", "ws://") + "/graphql"
        async with http.ws_connect(ws_url, protocols=["graphql-transport-ws"], headers={"traceparent": TRACEPARENT}) as ws:
            await ws.send_json({"type": "connection_init", "payload": {}})
            assert (await ws.receive_json())["type"] == "connection_ack"
            query = "subscription($id: ID!) { orderUpdated(id: $id) { id quality { status } } }"
            await ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": {"id": so}}})
            first = await ws.receive_json(timeout=10)
            assert first["payload"]["data"]["orderUpdated"]["id"] == so
        for _ in range(100):
            if any(s.name == "graphql.subscribe" for s in exporter.get_finished_spans()):
                break
            await asyncio.sleep(0.02)
        spans = list(exporter.get_finished_spans())
    [op] = [s for s in spans if s.name == "graphql.subscribe"]
    assert f"{op.context.trace_id:032x}" == TRACE_ID and f"{op.parent.span_id:016x}" == CALLER_SPAN
    assert op.attributes["ordergraph.graphql.operation"] == "subscription"
    calls = [s for s in descendants(spans, op) if s.name.startswith("source.call")]
    assert {"erp", "qms"} <= {s.attributes["ordergraph.source.system"] for s in calls}

"""The door of the event path: ``POST /events`` (and the other doors' shared checks).

One pass over a request, outside in: :func:`read_body` reads the body once, bounded by
``[events] max_body_bytes`` (the only size check); :meth:`EventIngress.accept` checks the
media type, JSON shape, signature and each CloudEvent (``sources/events.py``), then journals
the parsed events in one durable append (``Journal.append``: the 202's promise), then hands
the new ones to ``before_ack`` (``EventProcessor.accepted``: their impact, computed once,
and the cache keys it names dropped) before answering. The MQTT consumer and the carrier
endpoints parse their own messages and enter at :meth:`EventIngress.accept_parsed`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sources import tracing
from sources.events import EventError, EventRegistry, SourceEvent, system_of_source
from sources.signing import HEADER, SignatureError, verify

from .config import EventsConfig
from .errors import read_capped
from .journal import Journal, JournalEvent

if TYPE_CHECKING:
    from .telemetry import EventTimeline

SINGLE = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


@dataclasses.dataclass(slots=True)
class Rejection(Exception):
    status: int
    message: str


@dataclasses.dataclass(slots=True)
class Accepted:
    accepted: int
    duplicates: int
    cursors: list[int]


class EventIngress:
    """Validates and durably journals incoming events."""

    def __init__(
        self,
        config: EventsConfig,
        registry: EventRegistry,
        journal: Journal,
        clock: Callable[[], dt.datetime],
        plant_clock: Callable[[], dt.datetime] | None = None,
    ):
        self.config = config
        self.registry = registry
        self.journal = journal
        self.clock = clock  # signatures and receive times: the wall clock
        # Business times are checked against the plant's "now" (the demo's plant runs ahead).
        self.plant_clock = plant_clock or clock
        self.wakeup: asyncio.Event = asyncio.Event()
        # Set by the gateway (EventProcessor.accepted): runs on newly journaled events, with
        # their seqs, before the 202 (their impact, and the cache keys dropped).
        self.before_ack: Callable[[list[tuple[int, SourceEvent]]], Awaitable[None]] | None = None
        # Set by the gateway: seq → ingest trace context and accept time (gateway/telemetry.py).
        self.timeline: EventTimeline | None = None

    async def accept(
        self, body: bytes, content_type: str, signature: str | None, trace_headers: Mapping[str, str] | None = None
    ) -> Accepted:
        """Accept a request body read by :func:`read_body` (its size checked there), or
        raise Rejection (nothing stored)."""
        ctype = content_type.split(";")[0].strip().lower()
        if ctype not in (SINGLE, BATCH, "application/json"):
            raise Rejection(415, f"Content-Type must be {SINGLE} or {BATCH} (got {ctype or 'none'!r})")
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise Rejection(400, f"malformed JSON: {exc}") from exc
        if ctype == BATCH or (ctype == "application/json" and isinstance(decoded, list)):
            if not isinstance(decoded, list):
                raise Rejection(400, f"{BATCH} needs a JSON array of events")
            raw_events = decoded
        else:
            if not isinstance(decoded, dict):
                raise Rejection(400, f"{SINGLE} needs one JSON object")
            raw_events = [decoded]
        if not raw_events:
            raise Rejection(400, "empty batch")
        if len(raw_events) > self.config.max_batch:
            raise Rejection(413, f"batch over {self.config.max_batch} events")
        systems = {system_of_source(e["source"]) for e in raw_events if isinstance(e, dict) and isinstance(e.get("source"), str)}
        if len(systems) != 1 or len([e for e in raw_events if isinstance(e, dict) and isinstance(e.get("source"), str)]) != len(raw_events):
            raise Rejection(400, "every event needs a `source`, and one request carries events of one source system")
        system = systems.pop()
        secret = self.config.secrets.get(system or "")
        if not system or secret is None:
            shown = repr(system) if len(system or "") <= 40 else f"{system[:40]!r}…"
            raise Rejection(400, f"unknown source system {shown} (known: {', '.join(sorted(self.config.secrets))})")
        try:
            verify(secret, body, signature, now=self.clock().timestamp(), tolerance=self.config.tolerance_seconds)
        except SignatureError as exc:
            raise Rejection(401, f"{HEADER}: {exc}") from exc
        parsed: list[SourceEvent] = []
        plant_now = self.plant_clock()
        for raw in raw_events:
            try:
                parsed.append(self.registry.parse(raw, system=system, now=plant_now))
            except EventError as exc:
                raise Rejection(400, str(exc)) from exc
        if tracing.enabled():
            return await self._traced_store(raw_events, parsed, trace_headers)
        return await self._store(parsed, self._on_journaled)

    def check_window(self, event: SourceEvent) -> None:
        """Raise Rejection(400) when ``event``'s business time lies outside the accepted
        window around the plant's now (for doors that parse events themselves)."""
        try:
            self.registry.check_time(event.id, event.occurred_at, self.plant_clock())
        except EventError as exc:
            raise Rejection(400, str(exc)) from exc

    async def accept_parsed(self, parsed: list[SourceEvent]) -> Accepted:
        """Journal events another door already parsed and checked (``POST /events`` after
        its checks, the MQTT consumer, the carrier endpoints): one durable append, then the
        invalidation before the ack, as for every event."""
        if not parsed:
            return Accepted(accepted=0, duplicates=0, cursors=[])
        return await self._store(parsed, self._on_journaled)

    def _on_journaled(self, results: list[Any]) -> None:
        if self.timeline is not None:
            for r in results:
                if not r.duplicate:
                    self.timeline.accepted(r.seq, None)

    async def _traced_store(
        self, raw_events: list[Any], parsed: list[SourceEvent], trace_headers: Mapping[str, str] | None
    ) -> Accepted:
        """``_store`` with a span per event: ``event.ingest`` (parent: the event's CloudEvents
        ``traceparent``, else the request's) and its child ``event.journal``."""
        tracer = tracing.tracer()
        assert tracer is not None
        request_parent = tracing.extract(trace_headers)
        ingest, journal = [], []
        for raw, e in zip(raw_events, parsed, strict=True):
            carried = {k: raw[k] for k in ("traceparent", "tracestate") if isinstance(raw.get(k), str)}
            parent = tracing.extract(carried) if carried else request_parent
            attributes = {
                "cloudevents.event_id": e.id,
                "cloudevents.event_source": raw.get("source", ""),
                "cloudevents.event_type": e.type,
                "cloudevents.event_subject": e.key,
                "ordergraph.event.traceparent_carried": bool(carried),
            }
            span = tracer.start_span("event.ingest", context=parent, kind=SpanKind.CONSUMER, attributes=attributes)
            ingest.append(span)
            journal.append(tracer.start_span("event.journal", context=tracing.in_span(span)))

        def journaled(results: list[Any]) -> None:
            for span, child, r in zip(ingest, journal, results, strict=True):
                child.set_attributes({"ordergraph.event.seq": r.seq, "ordergraph.event.duplicate": r.duplicate})
                child.end()
                span.set_attribute("ordergraph.event.duplicate", r.duplicate)
                if not r.duplicate and self.timeline is not None:
                    self.timeline.accepted(r.seq, tracing.in_span(span))

        try:
            return await self._store(parsed, journaled)
        except Exception as exc:
            for span in ingest:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
            raise
        finally:
            for child in journal:
                if child.is_recording():
                    child.end()
            for span in ingest:
                span.end()

    async def _store(self, parsed: list[SourceEvent], journaled: Callable[[list[Any]], None]) -> Accepted:
        """Journal ``parsed`` (durable: the ack's promise) and acknowledge."""
        now = self.clock()
        results = await self.journal.append([JournalEvent.of(e, now) for e in parsed])
        journaled(results)
        try:
            if self.before_ack is not None:
                new = [(r.seq, e) for e, r in zip(parsed, results, strict=True) if not r.duplicate]
                if new:
                    await self.before_ack(new)
        finally:
            # After before_ack: the processor then finds the impact the door computed.
            self.wakeup.set()
        return Accepted(
            accepted=len(results),
            duplicates=sum(1 for r in results if r.duplicate),
            cursors=[r.seq for r in results],
        )



async def read_body(request: Request, limit: int) -> bytes:
    """The request body, read once; ``Rejection(413)`` as soon as it is over ``limit`` bytes
    (a declared Content-Length over it is refused before reading)."""
    return await read_capped(request, limit, lambda: Rejection(413, f"body over {limit} bytes"))


def events_endpoint(ingress: Callable[[], EventIngress | None]) -> Callable[[Request], Awaitable[Response]]:
    """``POST /events``: read the body, accept it, answer 202 with the cursors (or the
    Rejection's status and message). ``ingress`` gives the running gateway's door."""

    async def endpoint(request: Request) -> Response:
        door = ingress()
        if door is None:
            return JSONResponse({"error": "the gateway is starting"}, status_code=503)
        try:
            body = await read_body(request, door.config.max_body_bytes)
            accepted = await door.accept(
                body,
                request.headers.get("content-type", ""),
                request.headers.get(HEADER.lower()),
                trace_headers=request.headers,  # traceparent of the request (events may carry their own)
            )
        except Rejection as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        return JSONResponse(
            {"accepted": accepted.accepted, "duplicates": accepted.duplicates, "cursors": accepted.cursors},
            status_code=202,
        )

    return endpoint

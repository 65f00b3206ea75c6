"""OpenTelemetry for the gateway: the tracer provider and exporter, the event timeline
that ties an event's spans together across tasks, and JSON logs with trace ids.

Off by default. On with ``[telemetry] traces = true`` or the standard environment:
``OTEL_TRACES_EXPORTER=otlp`` (or ``console``), ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; ``OTEL_SDK_DISABLED=true`` keeps it off whatever
the file says. The SDK reads the rest of ``OTEL_*`` itself (service name, resource
attributes, sampler, headers, timeouts). Spans are described in ``sources/tracing.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from cachetools import LRUCache
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from sources import tracing

from .config import TelemetryConfig

log = logging.getLogger("ordergraph.telemetry")

EXPORTERS = ("otlp", "console", "none")


class TelemetryError(ValueError):
    """The tracing configuration cannot work (a one-line error at start)."""


def wanted(config: TelemetryConfig, env: Mapping[str, str] | None = None) -> str | None:
    """The exporter to use ("otlp", "console"), or None when tracing stays off."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    named = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if named:
        if named not in EXPORTERS:
            raise TelemetryError(f"OTEL_TRACES_EXPORTER={named!r}: ordergraph exports with {', '.join(EXPORTERS)}")
        return None if named == "none" else named
    if config.traces or config.otlp_endpoint:
        return "otlp"
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return "otlp"
    return None


def telemetry_problem(config: TelemetryConfig, env: Mapping[str, str] | None = None) -> str | None:
    """What is wrong with the tracing settings, in one line (None: nothing)."""
    if not 0.0 <= config.sample_ratio <= 1.0:
        return f"telemetry.sample_ratio: {config.sample_ratio} is not between 0 and 1"
    try:
        wanted(config, env)
    except TelemetryError as exc:
        return str(exc)
    return None


class Telemetry:
    """The gateway's tracer provider while it runs (``start`` / ``stop``)."""

    def __init__(self, config: TelemetryConfig, *, exporter: SpanExporter | None = None, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.env = os.environ if env is None else env
        self._exporter = exporter  # tests: an InMemorySpanExporter, exported synchronously
        self.provider: TracerProvider | None = None
        if not 0.0 <= config.sample_ratio <= 1.0:
            raise TelemetryError(f"telemetry.sample_ratio: {config.sample_ratio} is not between 0 and 1")

    @property
    def on(self) -> bool:
        return self.provider is not None

    def start(self) -> None:
        kind = "test" if self._exporter is not None else wanted(self.config, self.env)
        if kind is None:
            return
        resource = Resource.create({"service.name": self.env.get("OTEL_SERVICE_NAME") or self.config.service_name})
        sampler = None if self.env.get("OTEL_TRACES_SAMPLER") else ParentBased(TraceIdRatioBased(self.config.sample_ratio))
        self.provider = TracerProvider(resource=resource, sampler=sampler)
        if self._exporter is not None:
            self.provider.add_span_processor(SimpleSpanProcessor(self._exporter))
        elif kind == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            self.provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            endpoint = self.config.otlp_endpoint.rstrip("/")
            exporter = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces") if endpoint else OTLPSpanExporter()
            self.provider.add_span_processor(BatchSpanProcessor(exporter))
            log.info("tracing on: OTLP/HTTP to %s", getattr(exporter, "_endpoint", endpoint or "the OTEL_* endpoint"))
        tracing.enable(self.provider.get_tracer("ordergraph"))

    async def stop(self) -> None:
        if self.provider is None:
            return
        tracing.disable()
        provider, self.provider = self.provider, None
        # Flushes what the batch processor holds; in a thread, so an unreachable collector
        # (the exporter's timeout) does not stall the event loop while the gateway stops.
        await asyncio.to_thread(provider.shutdown)


class EventTimeline:
    """What the event path needs to remember between its tasks, by journal seq: the trace
    context of the event's ingest (parent of ``event.apply``) and of its apply (parent of
    ``event.fanout``), and when it was accepted (the event-to-push lag). In process only:
    an event another replica accepted starts a new trace when applied here, and has no lag.
    """

    def __init__(self, maxsize: int = 50_000) -> None:
        self._entries: LRUCache[int, list[Any]] = LRUCache(maxsize)

    def accepted(self, seq: int, ingest: otel_context.Context | None) -> None:
        self._entries[seq] = [time.perf_counter(), ingest, None]

    def applying(self, seq: int) -> otel_context.Context | None:
        entry = self._entries.get(seq)
        return entry[1] if entry else None

    def applied(self, seq: int, context: otel_context.Context | None) -> None:
        entry = self._entries.get(seq)
        if entry is not None:
            entry[2] = context

    def fanning_out(self, seq: int) -> otel_context.Context | None:
        entry = self._entries.get(seq)
        return entry[2] if entry else None

    def lag(self, seq: int) -> float | None:
        """Seconds since the event of ``seq`` was accepted here (None: not accepted here)."""
        entry = self._entries.get(seq)
        return time.perf_counter() - entry[0] if entry else None

    def forget(self, seqs: Iterable[int]) -> None:
        """Drop what is kept for ``seqs``: applied without a fan-out, or fanned out. The
        bound (``maxsize``) is for what is never told (e.g. an event another replica
        applied); without this every event's entry stayed until the bound pushed it out,
        and the timeline grew with every event until it held ``maxsize`` of them."""
        entries = self._entries
        for seq in seqs:
            entries.pop(seq, None)

    def __len__(self) -> int:
        return len(self._entries)


def current_context() -> otel_context.Context | None:
    """The current trace context when tracing is on (to parent later spans on)."""
    return otel_context.get_current() if tracing.enabled() else None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the trace and span ids
    of the span current when the line was logged (for joining logs to traces)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            out["trace_id"] = f"{ctx.trace_id:032x}"
            out["span_id"] = f"{ctx.span_id:016x}"
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


JsonFormatter.converter = time.gmtime


def use_json_logs() -> None:
    """Switch the root logger's handlers to JSON lines."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO)
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter())

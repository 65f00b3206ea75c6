"""The process's OpenTelemetry tracer, shared by every layer; off unless the gateway turns
it on (gateway/telemetry.py, ``[telemetry] traces`` or ``OTEL_TRACES_EXPORTER``).

Off, every helper here is one attribute test and a shared no-op context manager: tracing
costs nothing measurable when it is not wanted. On, spans go to the SDK's provider and
``traceparent`` travels on every source call (W3C Trace Context).

Span names and attributes (``ordergraph.*`` where no semantic convention fits):

- ``graphql.request`` / ``graphql.subscribe`` (server) → ``graphql.parse``,
  ``graphql.validate`` (new documents only) → ``graphql.execute``;
- ``source.load <namespace>`` (a DataLoader batch: keys, cache hits and misses) →
  ``source.call <system> <entity set>`` (client: batch size, attempts, retries, breaker
  state, outcome; ``traceparent`` sent to the source);
- ``event.ingest`` (per accepted event; its parent is the event's CloudEvents
  ``traceparent`` extension, else the HTTP request's) → ``event.journal``;
  ``event.apply`` → ``event.fanout`` (groups, subscribers, deliveries).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Tracer

_NOOP = contextlib.nullcontext(None)


class _State:
    tracer: Tracer | None = None


_state = _State()


def enable(tracer: Tracer) -> None:
    """Trace with ``tracer`` from now on (the gateway, at start)."""
    _state.tracer = tracer


def disable() -> None:
    """Stop tracing (the gateway, at stop)."""
    _state.tracer = None


def enabled() -> bool:
    return _state.tracer is not None


def span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: otel_context.Context | None = None,
) -> contextlib.AbstractContextManager[Span | None]:
    """A current span named ``name`` (a no-op yielding None when tracing is off)."""
    tracer = _state.tracer
    if tracer is None:
        return _NOOP
    return tracer.start_as_current_span(name, context=parent, kind=kind, attributes=attributes)


def extract(carrier: Mapping[str, str] | None) -> otel_context.Context | None:
    """The trace context a caller sent (``traceparent``/``tracestate``), if tracing is on."""
    if _state.tracer is None or not carrier:
        return None
    return propagate.extract(carrier)


def inject(headers: dict[str, str]) -> dict[str, str]:
    """Add ``traceparent`` (and ``tracestate``) of the current span to ``headers``."""
    if _state.tracer is not None:
        propagate.inject(headers)
    return headers


def current() -> Span | None:
    """The current span when tracing is on and one is recording, else None."""
    if _state.tracer is None:
        return None
    s = trace.get_current_span()
    return s if s.is_recording() else None


def set_attributes(**attributes: Any) -> None:
    """Set ``ordergraph.<name>`` attributes on the current span (no-op when off)."""
    s = current()
    if s is not None:
        s.set_attributes({f"ordergraph.{k}": v for k, v in attributes.items() if v is not None})


@contextlib.contextmanager
def operation(name: str, headers: Mapping[str, str] | None, **attributes: Any) -> Iterator[Span | None]:
    """A server span for one GraphQL operation, continuing the caller's trace."""
    tracer = _state.tracer
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(name, context=extract(headers), kind=SpanKind.SERVER, attributes=attributes) as s:
        yield s


class Operation:
    """A server span started and ended by hand (for code whose try/finally already exists),
    current between ``start`` and ``end``."""

    __slots__ = ("span", "_token")

    def __init__(self, span: Span, token: object) -> None:
        self.span = span
        self._token = token

    @classmethod
    def start(cls, name: str, headers: Mapping[str, str] | None, **attributes: Any) -> Operation | None:
        tracer = _state.tracer
        if tracer is None:
            return None
        s = tracer.start_span(name, context=extract(headers), kind=SpanKind.SERVER, attributes=attributes)
        return cls(s, otel_context.attach(trace.set_span_in_context(s)))

    def end(self, **attributes: Any) -> None:
        self.span.set_attributes({k: v for k, v in attributes.items() if v is not None})
        otel_context.detach(self._token)  # type: ignore[arg-type]
        self.span.end()


def tracer() -> Tracer | None:
    """The tracer when tracing is on (for spans started and ended by hand)."""
    return _state.tracer


def in_span(s: Span) -> otel_context.Context:
    """A context whose current span is ``s`` (a parent for spans in other tasks)."""
    return trace.set_span_in_context(s)

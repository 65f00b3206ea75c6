"""Prometheus metrics of one gateway (own registry, so several gateways can share a process)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

log = logging.getLogger("ordergraph.metrics")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Upstream calls and request latency, exposed at ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.source_requests = Counter(
            "ordergraph_source_requests_total",
            "Calls made to source systems (upstream calls).",
            ["source", "entity_set", "outcome"],
            registry=self.registry,
        )
        self.source_latency = Histogram(
            "ordergraph_source_request_duration_seconds",
            "Latency of calls to source systems.",
            ["source"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.request_latency = Histogram(
            "ordergraph_request_duration_seconds",
            "Latency of GraphQL requests over HTTP.",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.parked_events = Gauge(
            "ordergraph_parked_events",
            "Events parked as dead letters (processing failed for good); `ordergraph events parked` lists them.",
            registry=self.registry,
        )
        self.event_backlog = Gauge(
            "ordergraph_event_backlog",
            "Accepted events not processed yet (journaled, waiting for the processor; parked ones excluded).",
            registry=self.registry,
        )
        self.push_lag = Histogram(
            "ordergraph_event_push_lag_seconds",
            "From an event's acceptance (202) to its changes being offered to every subscriber it concerns.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        # Read before each scrape: values only the journal knows (another process may change them).
        self._before_scrape: list[Callable[[], Awaitable[None]]] = []

    def watch_parked_events(self, count: Callable[[], Awaitable[int]]) -> None:
        """Export the journal's number of parked events (read at every scrape)."""

        async def refresh() -> None:
            self.parked_events.set(await count())

        self._before_scrape.append(refresh)

    def watch_event_backlog(self, backlog: Callable[[], Awaitable[int]]) -> None:
        """Export the journal's backlog of unprocessed events (read at every scrape)."""

        async def refresh() -> None:
            self.event_backlog.set(await backlog())

        self._before_scrape.append(refresh)

    def on_push_lag(self, seconds: float) -> None:
        self.push_lag.observe(seconds)

    def watch_record_cache(self, cache: Any) -> None:
        """Export the record cache's look-ups by source namespace (``gateway.cache.RecordCache``)."""

        class Collector:
            def collect(self) -> Any:
                family = CounterMetricFamily(
                    "ordergraph_record_cache_lookups",
                    "Record cache look-ups by namespace (e.g. erp.sales_order): hit or miss (then read from the source).",
                    labels=["namespace", "outcome"],
                )
                for (namespace, outcome), n in sorted(cache.lookups_by_namespace().items()):
                    family.add_metric([namespace, outcome], n)
                yield family
                yield GaugeMetricFamily("ordergraph_record_cache_entries", "Records cached.", value=cache.size())

        self.registry.register(Collector())

    def watch_full_collections(self, gateway: Any) -> None:
        """Export the freeze loop's full collections (``gateway.app.Gateway``): each one a
        pause of the event loop that grows with the heap (seconds at 100,000 orders)."""

        class Collector:
            def collect(self) -> Any:
                yield CounterMetricFamily(
                    "ordergraph_gc_full_collections",
                    "Full cyclic garbage collections of the freeze loop (each pauses every request and subscriber).",
                    value=gateway.gc_full_passes,
                )
                yield CounterMetricFamily(
                    "ordergraph_gc_full_collection_seconds",
                    "CPU seconds spent in those full collections.",
                    value=gateway.gc_full_seconds,
                )
                yield GaugeMetricFamily(
                    "ordergraph_gc_full_collection_waiting",
                    "1 while a long full collection waits for a quiet moment (no operation for a second).",
                    value=0 if gateway.gc_full_due is None else 1,
                )

        self.registry.register(Collector())

    def watch_subscriptions(self, hub: Any, connections: Callable[[], int] | None = None) -> None:
        """Export live subscriptions (``gateway.subscriptions.Hub``)."""

        class Collector:
            def collect(self) -> Any:
                yield GaugeMetricFamily(
                    "ordergraph_subscriptions",
                    "Live subscriptions (orderUpdated, orderChanges, exceptionsChanged) over WebSocket and SSE.",
                    value=hub.subscriber_count,
                )
                yield GaugeMetricFamily(
                    "ordergraph_subscription_groups",
                    "Distinct subscriptions (same selection and scope are resolved once per event).",
                    value=len(hub.groups),
                )

        self.registry.register(Collector())

    def watch_response_cache(self, responses: Any) -> None:
        """Export the response cache's counters (``gateway.response_cache.ResponseCache``)."""

        class Collector:
            def collect(self) -> Any:
                stats = responses.stats()
                yield GaugeMetricFamily("ordergraph_response_cache_entries", "Responses cached.", value=stats["entries"])
                yield GaugeMetricFamily("ordergraph_response_cache_bytes", "Bytes of responses cached.", value=stats["bytes"])
                family = CounterMetricFamily(
                    "ordergraph_response_cache_lookups",
                    "Response cache look-ups: hit, miss, shared (waited for an identical request in flight).",
                    labels=["outcome"],
                )
                for outcome in ("hits", "misses", "shared"):
                    family.add_metric([outcome.rstrip("s") if outcome != "misses" else "miss"], stats[outcome])
                yield family
                yield CounterMetricFamily(
                    "ordergraph_response_cache_invalidated", "Responses dropped because an event touched their records.",
                    value=stats["invalidated"],
                )
                yield CounterMetricFamily(
                    "ordergraph_response_cache_refused",
                    "Responses not stored because a record they read was invalidated while they were computed.",
                    value=stats["refused"],
                )

        self.registry.register(Collector())

    def watch_documents(self, documents: Any) -> None:
        """Export the document stage's work (``gateway.documents.GuardedDocuments``)."""

        class Collector:
            def collect(self) -> Any:
                yield CounterMetricFamily(
                    "ordergraph_document_worker_seconds",
                    "CPU seconds spent parsing and validating new documents (in the document worker thread).",
                    value=documents.worker_seconds,
                )
                yield CounterMetricFamily(
                    "ordergraph_document_validations", "Documents graphql-core validated (new normal forms).", value=documents.validations
                )
                yield CounterMetricFamily(
                    "ordergraph_document_budget_refused",
                    "New documents refused because their viewer's document budget was spent (429).",
                    value=documents.budget.refused,
                )

        self.registry.register(Collector())

    def on_source_request(self, source: str, entity_set: str, seconds: float, outcome: str) -> None:
        self.source_requests.labels(source, entity_set, outcome).inc()
        self.source_latency.labels(source).observe(seconds)

    def on_graphql_request(self, outcome: str, seconds: float) -> None:
        self.request_latency.labels(outcome).observe(seconds)

    async def endpoint(self, request: Request) -> Response:
        for refresh in self._before_scrape:
            try:
                await refresh()
            except Exception as exc:  # the journal is away: serve the other metrics anyway
                log.warning("metrics: could not refresh a journal gauge (%s)", exc)
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

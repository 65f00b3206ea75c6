"""/metrics for operations: per-source latency histograms, record-cache hits and misses by
namespace, the event backlog, the event-to-push lag and the subscription count, read from
a real gateway after real queries, a real subscription and a real event."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from .events_util import send_changes
from .ws_client import WsClient


async def scrape(http, url: str) -> dict[tuple[str, tuple], float]:
    async with http.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_an_operator_needs(gql, http, plant, gateway):
    url, app = gateway
    app.state.gateway.cache.invalidate_all()
    before = await scrape(http, url)
    query = "{ orders(first: 1, filter: {stage: [PRODUCTION_RELEASED]}) { nodes { id customerId quality { status } } } }"
    order = (await gql.query(query))["orders"]["nodes"][0]
    await gql.query("{ orders(first: 5) { nodes { id quality { status } } } }")
    await gql.query("{ orders(first: 5) { nodes { id quality { status } } } }")
    ws = await WsClient.open(url)
    await ws.subscribe("c", "subscription($c: ID) { orderChanges(customer: $c) { cursor order { id } } }", {"c": order["customerId"]})
    for _ in range(100):  # the subscribe message is handled in its own task
        mid = await scrape(http, url)
        if value(mid, "ordergraph_subscriptions"):
            break
        await asyncio.sleep(0.02)
    assert value(mid, "ordergraph_subscriptions") == 1
    assert value(mid, "ordergraph_subscription_groups") == 1
    n = await send_changes(http, url, plant.world, plant.world.advance_order(order["id"]))
    for _ in range(n):
        await ws.next("c")
    after = await scrape(http, url)
    await ws.close()
    # per-source latency histograms
    for system in ("erp", "mes", "qms"):
        assert value(after, "ordergraph_source_request_duration_seconds_count", source=system) > value(
            before, "ordergraph_source_request_duration_seconds_count", source=system
        )
        assert ("ordergraph_source_request_duration_seconds_bucket", (("le", "0.1"), ("source", system))) in after
    # record cache: the first read of the lots missed, the repeat hit (hit ratio = hit / (hit + miss))
    lots = "qms.lots_by_production_order"
    assert value(after, "ordergraph_record_cache_lookups_total", namespace=lots, outcome="miss") > value(
        before, "ordergraph_record_cache_lookups_total", namespace=lots, outcome="miss"
    )
    assert value(after, "ordergraph_record_cache_lookups_total", namespace=lots, outcome="hit") > value(
        before, "ordergraph_record_cache_lookups_total", namespace=lots, outcome="hit"
    )
    assert value(after, "ordergraph_record_cache_entries") > 0
    # the event path: nothing left unprocessed, and each pushed event's lag observed
    assert ("ordergraph_event_backlog", ()) in after and value(after, "ordergraph_event_backlog") == 0
    pushes = value(after, "ordergraph_event_push_lag_seconds_count") - value(before, "ordergraph_event_push_lag_seconds_count")
    assert 1 <= pushes <= n
    assert value(after, "ordergraph_event_push_lag_seconds_sum") > 0

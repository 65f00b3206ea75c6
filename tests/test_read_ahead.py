"""A full view reads ahead (``fetch.read_ahead``): beside the ERP read that names the
orders, by their numbers (MES production orders, WMS deliveries) and by the ids the order
index last saw (customer, work centres, components, lots, shipments). One order's view, and
a page's, then waits for one level of source calls instead of three, with no call added;
without the index, two. The calls' starts and ends are logged around the gateway's own
source clients; no clock is asserted."""

from __future__ import annotations

import asyncio

import pytest

from .servers import running_gateway
from .test_graph import FULL_ORDER

ORDER_FULL = "query($id: ID!) { order(id: $id) { " + FULL_ORDER + " } }"
ORDER_ERP = "query($id: ID!) { order(id: $id) { id customerId netValue { amount } } }"
PAGE_FULL = "query($n: Int!, $after: String) { orders(first: $n, after: $after) { nodes { " + FULL_ORDER + " } } }"


@pytest.fixture
async def cold(plant):
    """A gateway whose records expire at once (every request reads its sources, as the
    bench's cold mode), its order index built."""
    async with running_gateway(plant.url, cache={"ttl_seconds": 1e-6, "response_ttl_seconds": 0}) as (url, app):
        await app.state.gateway.exceptions.settled(30)
        yield url, app


@pytest.fixture
async def cold_gql(cold, http):
    from .servers import GraphQLClient

    return GraphQLClient(cold[0], http)


def _log_calls(monkeypatch, sources, log: list[tuple[str, str]]) -> None:
    """Log ("start"/"end", name) around the source reads an order's view makes."""
    for system, name in (
        ("erp", "sales_orders"),
        ("erp", "list_sales_orders"),
        ("erp", "customers"),
        ("mes", "production_orders_for_sales_orders"),
        ("wms", "deliveries_for_sales_orders"),
        ("mes", "work_centers"),
        ("qms", "inspection_lots_for_production_orders"),
        ("wms", "components_for_production_orders"),
        ("tms", "shipments_for_deliveries"),
    ):
        client = getattr(sources, system)
        inner = getattr(client, name, None)
        if inner is None:
            continue

        async def logged(*args, _inner=inner, _name=f"{system}.{name}", **kwargs):
            log.append(("start", _name))
            await asyncio.sleep(0.02)  # every read takes a while: what overlaps shows
            try:
                return await _inner(*args, **kwargs)
            finally:
                log.append(("end", _name))

        monkeypatch.setattr(client, name, logged)


def _level_of(log: list[tuple[str, str]]) -> dict[str, int]:
    """Each read's level: 1 + the number of reads that ended before it started."""
    levels: dict[str, int] = {}
    ended = 0
    for event, name in log:
        if event == "end":
            ended += 1
        elif name not in levels:
            levels[name] = ended
    # reads that started with no read ended before them are level 0; group by "ended" count
    order = sorted(set(levels.values()))
    return {name: order.index(v) for name, v in levels.items()}


async def test_full_view_of_one_order_reads_in_one_level(cold_gql, cold, plant, monkeypatch):
    _url, app = cold
    gw = app.state.gateway
    assert gw.index.usable
    so = sorted(plant.world.sales_orders)[3]
    log: list[tuple[str, str]] = []
    _log_calls(monkeypatch, gw.sources, log)
    data = await cold_gql.query(ORDER_FULL, {"id": so})
    assert data["order"]["id"] == so and data["order"]["stage"]
    levels = _level_of(log)
    assert {"erp.sales_orders", "erp.customers", "mes.production_orders_for_sales_orders", "mes.work_centers"} <= set(levels)
    assert max(levels.values()) == 0, levels  # every read started before any ended
    assert sum(1 for e, _ in log if e == "start") == len(levels)  # each read once: nothing added


async def test_a_page_reads_its_views_beside_the_listing(cold_gql, cold, plant, monkeypatch):
    _url, app = cold
    gw = app.state.gateway
    log: list[tuple[str, str]] = []
    _log_calls(monkeypatch, gw.sources, log)
    data = await cold_gql.query(PAGE_FULL, {"n": 20, "after": None})
    assert len(data["orders"]["nodes"]) == 20
    levels = _level_of(log)
    assert levels["erp.list_sales_orders"] == 0 and max(levels.values()) == 0, levels
    assert sum(1 for e, _ in log if e == "start") == len(levels)


async def test_without_the_index_one_order_reads_in_two_levels(cold_gql, cold, plant, monkeypatch):
    _url, app = cold
    gw = app.state.gateway
    monkeypatch.setattr(type(gw.index), "usable", property(lambda self: False))
    so = sorted(plant.world.sales_orders)[5]
    log: list[tuple[str, str]] = []
    _log_calls(monkeypatch, gw.sources, log)
    data = await cold_gql.query(ORDER_FULL, {"id": so})
    assert data["order"]["id"] == so
    levels = _level_of(log)
    # the order, its production orders and deliveries at once; then the rest at once
    assert levels["erp.sales_orders"] == levels["mes.production_orders_for_sales_orders"] == 0
    assert levels["wms.deliveries_for_sales_orders"] == 0
    assert levels["erp.customers"] == 1 and levels["mes.work_centers"] == 1
    assert max(levels.values()) == 1
    assert sum(1 for e, _ in log if e == "start") == len(levels)


async def test_erp_only_view_reads_nothing_ahead_and_a_missing_order_is_null(cold_gql, cold, plant, monkeypatch):
    _url, app = cold
    gw = app.state.gateway
    log: list[tuple[str, str]] = []
    _log_calls(monkeypatch, gw.sources, log)
    so = sorted(plant.world.sales_orders)[4]
    data = await cold_gql.query(ORDER_ERP, {"id": so})
    assert data["order"]["id"] == so
    assert {name for _e, name in log} == {"erp.sales_orders"}
    log.clear()
    data = await cold_gql.query(ORDER_FULL, {"id": "19999999"})
    assert data["order"] is None

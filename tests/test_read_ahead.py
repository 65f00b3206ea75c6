"""One order's full view reads what needs only its number (MES production orders, WMS
deliveries) beside its ERP read (``fetch.read_ahead``), and the customer beside the second
level: two levels of source calls instead of three or four, with no call added. The calls'
starts and ends are logged around the gateway's own source clients; no clock is asserted."""

from __future__ import annotations

import asyncio

from .test_graph import FULL_ORDER

ORDER_FULL = "query($id: ID!) { order(id: $id) { " + FULL_ORDER + " } }"
ORDER_ERP = "query($id: ID!) { order(id: $id) { id customerId netValue { amount } } }"


def _log_calls(monkeypatch, sources, log: list[tuple[str, str]]) -> None:
    """Log ("start"/"end", name) around the source reads an order's view makes."""
    for system, name in (
        ("erp", "sales_orders"),
        ("erp", "customers"),
        ("mes", "production_orders_for_sales_orders"),
        ("wms", "deliveries_for_sales_orders"),
        ("mes", "work_centers"),
        ("qms", "inspection_lots_for_production_orders"),
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


async def test_full_view_of_one_order_reads_in_two_levels(gql, gateway, plant, http, monkeypatch):
    _url, app = gateway
    gw = app.state.gateway
    so = sorted(plant.world.sales_orders)[3]
    log: list[tuple[str, str]] = []
    _log_calls(monkeypatch, gw.sources, log)
    gw.cache.invalidate_all()
    data = await gql.query(ORDER_FULL, {"id": so})
    assert data["order"]["id"] == so and data["order"]["stage"]
    levels = _level_of(log)
    # the ERP order, its production orders and deliveries at once; then the rest at once
    assert levels["erp.sales_orders"] == levels["mes.production_orders_for_sales_orders"] == 0
    assert levels["wms.deliveries_for_sales_orders"] == 0
    assert levels["erp.customers"] == 1 and levels["mes.work_centers"] == 1
    assert max(levels.values()) == 1
    # each read once: reading ahead adds no call
    assert sum(1 for e, _ in log if e == "start") == len(levels)


async def test_erp_only_view_reads_nothing_ahead_and_a_missing_order_is_null(gql, gateway, plant, monkeypatch):
    _url, app = gateway
    gw = app.state.gateway
    log: list[tuple[str, str]] = []
    _log_calls(monkeypatch, gw.sources, log)
    gw.cache.invalidate_all()
    so = sorted(plant.world.sales_orders)[4]
    data = await gql.query(ORDER_ERP, {"id": so})
    assert data["order"]["id"] == so
    assert {name for _e, name in log} == {"erp.sales_orders"}
    log.clear()
    data = await gql.query(ORDER_FULL, {"id": "19999999"})
    assert data["order"] is None

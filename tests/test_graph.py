"""The order graph against the real simulated plant over HTTP on loopback."""

from __future__ import annotations

from .servers import plant_stats, reset_plant_stats

FULL_ORDER = """
  id
  customerId
  customer { id name commercialPriority }
  orderDate requestedDeliveryDate confirmedDeliveryDate
  netValue { amount currency }
  commercialPriority
  items { item material quantity netValue }
  production { status orders { id status workCenter { id state } totalQuantity confirmedYieldQuantity batch } }
  materials { status components { productionOrder material requiredQuantity availableQuantity shortageQuantity } }
  quality { status inspectionLots { id batch productionOrder usageDecision { valuation } } }
  logistics { status eta deliveries { id goodsMovementStatus } shipments { trackingNumber status events { code } } }
  stage
  milestones { kind status planned expected actual }
  predictedDeliveryDate
  deliveryRisk
"""

LIST_FULL = "query($n: Int!) { orders(first: $n) { nodes { " + FULL_ORDER + " } } }"
LIST_ERP = "query($n: Int!) { orders(first: $n) { nodes { id customerId orderDate confirmedDeliveryDate netValue { amount } items { material } } } }"
SYSTEMS = ("erp", "mes", "wms", "qms", "tms")


async def _calls_for(gql, http, plant, app, query: str, n: int) -> dict[str, int]:
    app.state.gateway.cache.invalidate_all()
    await reset_plant_stats(http, plant.url)
    data = await gql.query(query, {"n": n})
    assert len(data["orders"]["nodes"]) == n
    return await plant_stats(http, plant.url)


async def test_upstream_calls_do_not_grow_with_orders(gql, http, plant, gateway):
    _url, app = gateway
    small = await _calls_for(gql, http, plant, app, LIST_FULL, 5)
    large = await _calls_for(gql, http, plant, app, LIST_FULL, 50)
    assert large == small, (small, large)
    # levels: ERP list → (ERP customer, MES orders, WMS deliveries) → (MES work centres,
    # WMS components, QMS lots, TMS shipments): at most one call per source per level.
    assert large["erp"] <= 2 and large["mes"] <= 2 and large["wms"] <= 2
    assert large["qms"] == 1 and large["tms"] == 1


async def test_erp_fields_call_only_erp(gql, http, plant, gateway):
    _url, app = gateway
    calls = await _calls_for(gql, http, plant, app, LIST_ERP, 50)
    assert calls["erp"] == 1
    assert all(calls.get(s, 0) == 0 for s in SYSTEMS[1:]), calls


async def test_section_called_only_when_selected(gql, http, plant, gateway):
    _url, app = gateway
    q = "query($n: Int!) { orders(first: $n) { nodes { id quality { status } } } }"
    calls = await _calls_for(gql, http, plant, app, q, 20)
    assert calls["qms"] == 1 and calls["mes"] == 1
    assert calls.get("wms", 0) == 0 and calls.get("tms", 0) == 0


async def _source(http, plant, system: str, entity_set: str, **params: str) -> list[dict]:
    async with http.get(f"{plant.url}/{system}/{entity_set}", params=params) as resp:
        assert resp.status == 200
        return (await resp.json())["value"]


async def test_values_match_the_plant(gql, http, plant):
    data = await gql.query(LIST_FULL, {"n": 40})
    orders = data["orders"]["nodes"]
    ids = ",".join(o["id"] for o in orders)
    erp = {r["SalesOrder"]: r for r in await _source(http, plant, "erp", "A_SalesOrder", SalesOrder=ids)}
    mes = await _source(http, plant, "mes", "A_ProductionOrder", SalesOrder=ids)
    dels = await _source(http, plant, "wms", "A_OutbDeliveryHeader", ReferenceSDDocument=ids)
    mos = ",".join(p["ManufacturingOrder"] for p in mes)
    lots = await _source(http, plant, "qms", "A_InspectionLot", ManufacturingOrder=mos) if mos else []
    comps = await _source(http, plant, "wms", "A_ComponentAvailability", ManufacturingOrder=mos) if mos else []
    dds = ",".join(d["DeliveryDocument"] for d in dels)
    ships = await _source(http, plant, "tms", "Shipment", DeliveryDocument=dds) if dds else []
    seen_sections = {"production": 0, "lots": 0, "shipments": 0, "components": 0}
    for o in orders:
        so = erp[o["id"]]
        assert o["customerId"] == so["SoldToParty"]
        assert o["customer"]["id"] == so["SoldToParty"]
        assert o["confirmedDeliveryDate"] == so["ConfirmedDeliveryDate"]
        assert o["requestedDeliveryDate"] == so["RequestedDeliveryDate"]
        assert abs(o["netValue"]["amount"] - so["TotalNetAmount"]) < 1e-6
        assert [i["material"] for i in o["items"]] == [i["Material"] for i in so["to_Item"]]
        pos = sorted((p for p in mes if p["SalesOrder"] == o["id"]), key=lambda p: p["ManufacturingOrder"])
        got = sorted(o["production"]["orders"], key=lambda p: p["id"])
        assert [p["id"] for p in got] == [p["ManufacturingOrder"] for p in pos]
        for g, p in zip(got, pos, strict=True):
            assert g["status"] == p["OrderStatus"]
            assert g["workCenter"]["id"] == p["WorkCenter"]
            assert g["confirmedYieldQuantity"] == p["MfgOrderConfirmedYieldQty"]
        seen_sections["production"] += len(pos)
        my_mos = {p["ManufacturingOrder"] for p in pos}
        my_lots = sorted(lot["InspectionLot"] for lot in lots if lot["ManufacturingOrder"] in my_mos)
        assert sorted(lot["id"] for lot in o["quality"]["inspectionLots"]) == my_lots
        seen_sections["lots"] += len(my_lots)
        my_comps = [c for c in comps if c["ManufacturingOrder"] in my_mos]
        assert len(o["materials"]["components"]) == len(my_comps)
        seen_sections["components"] += len(my_comps)
        my_dels = {d["DeliveryDocument"] for d in dels if d["ReferenceSDDocument"] == o["id"]}
        assert {d["id"] for d in o["logistics"]["deliveries"]} == my_dels
        my_ships = sorted(s["TrackingNumber"] for s in ships if s["DeliveryDocument"] in my_dels)
        assert sorted(s["trackingNumber"] for s in o["logistics"]["shipments"]) == my_ships
        seen_sections["shipments"] += len(my_ships)
    # the sample really exercised every section
    assert all(v > 0 for v in seen_sections.values()), seen_sections


async def test_single_order_and_missing_order(gql, http, plant):
    [so] = await _source(http, plant, "erp", "A_SalesOrder", **{"$top": "1"})
    data = await gql.query('query($id: ID!) { order(id: $id) { id customer { name } stage } }', {"id": so["SalesOrder"]})
    assert data["order"]["id"] == so["SalesOrder"]
    data = await gql.query('{ order(id: "99999999") { id } }')
    assert data["order"] is None


async def test_paging_walks_all_orders(gql, http, plant):
    seen: list[str] = []
    after = None
    total = None
    while True:
        data = await gql.query(
            "query($after: String) { orders(first: 70, after: $after) { totalCount pageInfo { hasNextPage startCursor endCursor } edges { cursor node { id } } } }",
            {"after": after},
        )
        conn = data["orders"]
        total = conn["totalCount"]
        seen += [e["node"]["id"] for e in conn["edges"]]
        # Each edge's cursor is sealed once: the page's ends are the very same strings.
        assert conn["pageInfo"]["startCursor"] == conn["edges"][0]["cursor"]
        assert conn["pageInfo"]["endCursor"] == conn["edges"][-1]["cursor"]
        middle = conn["edges"][len(conn["edges"]) // 2]
        resumed = await gql.query("query($after: String) { orders(first: 1, after: $after) { nodes { id } } }", {"after": middle["cursor"]})
        following = conn["edges"][len(conn["edges"]) // 2 + 1 :]
        assert [n["id"] for n in resumed["orders"]["nodes"]] == [e["node"]["id"] for e in following[:1]] or not following
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    all_ids = [r["SalesOrder"] for r in await _source(http, plant, "erp", "A_SalesOrder", **{"$top": "1000"})]
    assert len(seen) == len(set(seen)) == total == len(all_ids)
    assert seen == sorted(all_ids)


async def test_filters(gql, http, plant):
    customers = await _source(http, plant, "erp", "A_Customer", **{"$top": "5"})
    cid = customers[0]["Customer"]
    data = await gql.query(
        'query($c: ID!) { orders(first: 500, filter: {customer: $c}) { totalCount nodes { customerId } } }', {"c": cid}
    )
    expected = await _source(http, plant, "erp", "A_SalesOrder", SoldToParty=cid)
    assert data["orders"]["totalCount"] == len(expected) > 0
    assert {n["customerId"] for n in data["orders"]["nodes"]} == {cid}

    data = await gql.query(
        '{ orders(first: 500, filter: {confirmedBefore: "2026-01-01"}) { nodes { confirmedDeliveryDate } } }'
    )
    assert all(n["confirmedDeliveryDate"] < "2026-01-01" for n in data["orders"]["nodes"])

    data = await gql.query("{ orders(first: 30, filter: {stage: [DELIVERED]}) { totalCount nodes { id stage } } }")
    nodes = data["orders"]["nodes"]
    assert nodes and all(n["stage"] == "DELIVERED" for n in nodes)
    assert data["orders"]["totalCount"] >= len(nodes)

    data = await gql.query("{ orders(first: 30, filter: {deliveryRisk: [LATE, AT_RISK]}) { nodes { deliveryRisk } } }")
    assert data["orders"]["nodes"] and all(n["deliveryRisk"] in ("LATE", "AT_RISK") for n in data["orders"]["nodes"])


async def test_customer_root_field(gql, http, plant):
    [c] = await _source(http, plant, "erp", "A_Customer", **{"$top": "1"})
    data = await gql.query(
        'query($id: ID!) { customer(id: $id) { id name commercialPriority orders(first: 5) { totalCount nodes { customerId } } } }',
        {"id": c["Customer"]},
    )
    assert data["customer"]["name"] == c["CustomerName"]
    assert data["customer"]["commercialPriority"] == c["CommercialPriority"]
    assert all(n["customerId"] == c["Customer"] for n in data["customer"]["orders"]["nodes"])

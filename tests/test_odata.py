"""The SAP OData v2 client and the S/4HANA mapping, against a SAP Gateway on loopback
(tests/sap_gateway.py) serving SAP-shaped answers."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import aiohttp
import orjson
import pytest

from sources.odata import (
    BasicAuth,
    ClientCredentials,
    ODataClient,
    ODataError,
    Query,
    any_of,
    customer_from_s4,
    eq,
    inspection_lot_from_s4,
    outbound_delivery_from_s4,
    production_order_from_s4,
    sales_order_from_s4,
)
from sources.odata.values import (
    EdmValueError,
    literal,
    parse_date,
    parse_datetime,
    parse_decimal,
    parse_sap_timestamp,
    parse_time,
)
from sources.records import RecordError
from sources.resilience import Policy, SourceError

from .sap_gateway import Failure, SapGateway, serving

SO = "API_SALES_ORDER_SRV"
MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def sap_date(day: dt.date) -> str:
    return f"/Date({int(dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC).timestamp() * 1000)})/"


def sales_order_row(n: int, **over) -> dict:
    """An A_SalesOrder as S/4HANA serves it (field names and formats of the public API)."""
    number = str(4000000 + n)
    row = {
        "SalesOrder": number,
        "SalesOrderType": "OR",
        "SalesOrganization": "1010",
        "DistributionChannel": "10",
        "SoldToParty": "17100001",
        "CreationDate": sap_date(dt.date(2026, 11, 2)),
        "LastChangeDateTime": f"/Date({MS + n * 60_000}+0000)/",
        "PurchaseOrderByCustomer": f"PO-{n}",
        "SalesOrderDate": sap_date(dt.date(2026, 11, 2)),
        "TotalNetAmount": "2656.24",
        "OverallDeliveryStatus": "",
        "TotalBlockStatus": "",
        "TransactionCurrency": "EUR",
        "RequestedDeliveryDate": sap_date(dt.date(2026, 12, 1)),
        "DeliveryBlockReason": "",
        "OverallSDProcessStatus": "A",
        "TotalCreditCheckStatus": "",
        "to_Item": [
            {
                "SalesOrder": number,
                "SalesOrderItem": "10",
                "Material": "FG-PUMP-100",
                "RequestedQuantity": "12.000",
                "RequestedQuantityUnit": "PC",
                "NetAmount": "1800.00",
                "SalesDocumentRjcnReason": "",
                "to_ScheduleLine": [
                    {"SalesOrder": number, "SalesOrderItem": "10", "ScheduleLine": "1",
                     "RequestedDeliveryDate": sap_date(dt.date(2026, 12, 1)),
                     "ConfirmedDeliveryDate": sap_date(dt.date(2026, 12, 3)),
                     "ScheduleLineOrderQuantity": "12.000", "ConfdOrderQtyByMatlAvailCheck": "8.000"},
                    {"SalesOrder": number, "SalesOrderItem": "10", "ScheduleLine": "2",
                     "RequestedDeliveryDate": sap_date(dt.date(2026, 12, 1)),
                     "ConfirmedDeliveryDate": sap_date(dt.date(2026, 12, 10)),
                     "ScheduleLineOrderQuantity": "0.000", "ConfdOrderQtyByMatlAvailCheck": "4.000"},
                    {"SalesOrder": number, "SalesOrderItem": "10", "ScheduleLine": "3",
                     "RequestedDeliveryDate": sap_date(dt.date(2026, 12, 1)),
                     "ConfirmedDeliveryDate": sap_date(dt.date(2027, 1, 20)),
                     "ScheduleLineOrderQuantity": "0.000", "ConfdOrderQtyByMatlAvailCheck": "0.000"},
                ],
            },
            {
                "SalesOrder": number,
                "SalesOrderItem": "20",
                "Material": "FG-VALVE-7",
                "RequestedQuantity": "3.000",
                "RequestedQuantityUnit": "PC",
                "NetAmount": "856.24",
                "SalesDocumentRjcnReason": "",
                "to_ScheduleLine": [
                    {"SalesOrder": number, "SalesOrderItem": "20", "ScheduleLine": "1",
                     "RequestedDeliveryDate": sap_date(dt.date(2026, 12, 1)), "ScheduleLineOrderQuantity": "3.000",
                     "ConfirmedDeliveryDate": sap_date(dt.date(2026, 12, 5)), "ConfdOrderQtyByMatlAvailCheck": "3.000"},
                ],
            },
            {
                "SalesOrder": number,
                "SalesOrderItem": "30",
                "Material": "FG-SEAL-2",
                "RequestedQuantity": "1.000",
                "NetAmount": "0.00",
                "SalesDocumentRjcnReason": "50",  # rejected by the customer
                "to_ScheduleLine": [],
            },
        ],
    }
    row.update(over)
    return row


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def sap():
    async with serving(SapGateway()) as gw:
        gw.add(SO, "A_SalesOrder", "SalesOrder", [sales_order_row(n) for n in range(250)])
        yield gw


def client(gw: SapGateway, session, **kw) -> ODataClient:
    kw.setdefault("sap_client", "100")
    kw.setdefault("policy", Policy(timeout_seconds=5, retries=0))
    return ODataClient("erp", gw.service_url(SO), session, **kw)


# --- Edm values ------------------------------------------------------------------------


def test_edm_values_as_sap_serves_them():
    assert parse_datetime("/Date(1700000000000)/") == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)
    # The ticks are the instant; the offset (minutes) does not move it.
    assert parse_datetime("/Date(1700000000000+0000)/") == parse_datetime("/Date(1700000000000+0060)/")
    assert parse_datetime("/Date(-86400000)/") == dt.datetime(1969, 12, 31, tzinfo=dt.UTC)
    assert parse_date("/Date(1764547200000)/") == dt.date(2025, 12, 1)
    assert parse_time("PT14H30M00S") == dt.time(14, 30)
    assert parse_time("PT07H05M09.5S") == dt.time(7, 5, 9, 500000)
    assert parse_time("PT24H00M00S") == dt.time(23, 59, 59, 999999)
    assert parse_decimal("2656.24") == Decimal("2656.24")
    assert parse_decimal("-0.001") == Decimal("-0.001")
    assert parse_sap_timestamp("20200723125718") == dt.datetime(2020, 7, 23, 12, 57, 18, tzinfo=dt.UTC)
    assert parse_sap_timestamp("0") is None
    for bad, parse in [("/Date(abc)/", parse_datetime), ("PT25H00M00S", parse_time), ("14:30", parse_time),
                       ("12,5", parse_decimal), ("NaN", parse_decimal), (True, parse_decimal),
                       ("20201323125718", parse_sap_timestamp)]:
        with pytest.raises(EdmValueError):
            parse(bad)


def test_literals_quote_and_type_values():
    assert literal("O'Neil") == "'O''Neil'"
    assert literal(dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))) == "datetimeoffset'2026-11-30T08:00:00Z'"
    assert literal(dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.UTC), "datetime") == "datetime'2026-11-30T08:00:00'"
    assert literal(dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.UTC), "timestamp") == "20261130080000M"
    assert literal(Decimal("12.50")) == "12.50M"
    assert literal(dt.time(14, 30)) == "time'PT14H30M00S'"
    assert (any_of("SalesOrder", ["1", "2"]) & eq("SalesOrderType", "OR")).text == (
        "(SalesOrder eq '1' or SalesOrder eq '2') and SalesOrderType eq 'OR'"
    )
    with pytest.raises(ValueError):
        eq("SalesOrder) or (1 eq 1", "x")
    with pytest.raises(ValueError):
        Query("A_SalesOrder", top=-1)


# --- paging ----------------------------------------------------------------------------


async def test_server_paging_follows_next_with_count_and_sap_client(sap, session):
    sap.page_size = 100
    c = client(sap, session)
    result = await c.read_all(Query("A_SalesOrder", select=("SalesOrder", "SoldToParty"), inlinecount=True))
    assert [r["SalesOrder"] for r in result.rows] == [str(4000000 + n) for n in range(250)]
    assert result.count == 250
    assert result.requests == 3 and len(sap.seen) == 3
    assert all(s.sap_client == "100" for s in sap.seen)
    assert all("$skiptoken" in s.url for s in sap.seen[1:])
    # $select honoured: only the selected fields come back.
    assert set(result.rows[0]) == {"__metadata", "SalesOrder", "SoldToParty"}


async def test_client_paging_with_top_and_skip(sap, session):
    c = client(sap, session)
    result = await c.read_all(Query("A_SalesOrder", filter=eq("SoldToParty", "17100001"), top=100), page_size=40)
    assert len(result.rows) == 100
    assert [r["SalesOrder"] for r in result.rows] == [str(4000000 + n) for n in range(100)]
    assert result.requests == 3
    assert ["$top=40" in s.url and "$skip=0" in s.url for s in sap.seen[:1]] == [True]
    assert "$skip=80" in sap.seen[2].url and "$top=20" in sap.seen[2].url


async def test_next_link_to_another_host_is_refused(sap, session):
    sap.page_size = 100
    sap.next_host = "http://203.0.113.9:8443"
    c = client(sap, session)
    with pytest.raises(SourceError) as err:
        await c.read_all(Query("A_SalesOrder"))
    assert err.value.code == "SOURCE_BAD_RESPONSE" and "another host" in str(err.value)
    assert len(sap.seen) == 1  # the link was never followed


# --- key batches -----------------------------------------------------------------------


async def test_key_batch_is_chunked_under_the_url_limit_and_runs_concurrently(sap, session):
    sap.delay = 0.05
    c = client(sap, session, max_url_length=2000)
    keys = [str(4000000 + n) for n in range(250)] + ["9999999"]  # one unknown key
    result = await c.fetch_by("A_SalesOrder", "SalesOrder", keys, select=("SalesOrder",))
    assert sorted(r["SalesOrder"] for r in result.rows) == sorted(keys[:-1])
    planned = c.chunks(Query("A_SalesOrder", select=("SalesOrder",)), "SalesOrder", keys)
    assert len(sap.seen) == result.requests == len(planned) > 1
    assert all(s.length <= 2000 for s in sap.seen)
    term = len("%20or%20SalesOrder%20eq%20'4000000'")
    # Every chunk but the last is full: one more key would not have fitted.
    assert sum(1 for s in sap.seen if s.length > 2000 - term) >= len(planned) - 1
    assert sap.max_in_flight > 1  # the chunks of one batch were in flight together
    # Every key asked exactly once across the chunks.
    asked = [k for s in sap.seen for k in keys if f"'{k}'" in s.url]
    assert sorted(asked) == sorted(keys)


async def test_small_batch_is_one_request_and_combines_with_a_filter(sap, session):
    c = client(sap, session)
    result = await c.fetch_by("A_SalesOrder", "SalesOrder", ["4000001", "4000002", "4000001"], filter=eq("SalesOrderType", "OR"))
    assert sorted(r["SalesOrder"] for r in result.rows) == ["4000001", "4000002"]
    assert len(sap.seen) == 1
    assert "(SalesOrder%20eq%20'4000001'%20or%20SalesOrder%20eq%20'4000002')%20and%20SalesOrderType%20eq%20'OR'" in sap.seen[0].url


async def test_a_cap_on_keys_per_request_cuts_batches_too(sap, session):
    c = client(sap, session, max_keys_per_request=50)
    keys = [str(4000000 + n) for n in range(120)]
    result = await c.fetch_by("A_SalesOrder", "SalesOrder", keys)
    assert len(result.rows) == 120 and len(sap.seen) == 3
    assert sorted(s.url.count("%20eq%20") for s in sap.seen) == [20, 50, 50]


async def test_a_limit_too_small_for_one_key_is_a_clear_error(sap, session):
    c = client(sap, session, max_url_length=300)
    with pytest.raises(SourceError) as err:
        await c.fetch_by("A_SalesOrder", "SalesOrder", ["x" * 400])
    assert err.value.client_fault and "over the 300 limit" in str(err.value)
    assert sap.seen == []


# --- entities, expand, mapping -----------------------------------------------------------


async def test_entity_by_key_with_expand_maps_to_a_sales_order(sap, session):
    c = client(sap, session)
    row = await c.entity("A_SalesOrder", "4000007", expand=("to_Item/to_ScheduleLine",))
    assert row is not None and "A_SalesOrder('4000007')" in sap.seen[0].url
    order = sales_order_from_s4(row)
    assert order.sales_order == "4000007"
    assert order.sales_order_date == dt.date(2026, 11, 2)
    assert order.requested_delivery_date == dt.date(2026, 12, 1)
    assert order.total_net_amount == 2656.24
    assert order.last_change_date_time == dt.datetime(2023, 11, 14, 22, 20, 20, tzinfo=dt.UTC)
    assert order.overall_delivery_status == "A"  # blank: nothing delivered
    assert order.total_credit_check_status == "A"  # blank: no credit check, no block
    # Item 30 was rejected: kept with its reason (the domain cuts it), as REST records are.
    assert [(i.sales_order_item, i.rejection_reason) for i in order.items] == [("10", ""), ("20", ""), ("30", "50")]
    item = order.items[0]
    # The promise: the latest line with a confirmed quantity; line 3 confirms nothing.
    assert item.confirmed_delivery_date == dt.date(2026, 12, 10)
    assert item.confirmed_quantity == 12.0 and item.requested_quantity == 12.0
    assert order.confirmed_delivery_date == dt.date(2026, 12, 10)
    assert await c.entity("A_SalesOrder", "1") is None  # 404: no such order


async def test_without_expand_items_are_deferred_and_absent(sap, session):
    c = client(sap, session)
    row = await c.entity("A_SalesOrder", "4000007")
    assert row is not None and "__deferred" in row["to_Item"]
    assert sales_order_from_s4(row).items == []


def test_production_order_from_s4_flags_operations_and_times():
    row = {
        "ManufacturingOrder": "1000123", "ManufacturingOrderType": "YBM1", "Material": "FG-PUMP-100",
        "ProductionPlant": "1710", "SalesOrder": "4000007", "SalesOrderItem": "10",
        "OrderIsCreated": "X", "OrderIsReleased": "X", "OrderIsPartiallyConfirmed": "X", "OrderIsConfirmed": "",
        "OrderIsTechnicallyCompleted": "", "OrderIsClosed": "", "OrderIsLocked": "",
        "MfgOrderScheduledStartDate": sap_date(dt.date(2026, 11, 20)), "MfgOrderScheduledStartTime": "PT07H00M00S",
        "MfgOrderScheduledEndDate": sap_date(dt.date(2026, 11, 21)), "MfgOrderScheduledEndTime": "PT10H22M30S",
        "MfgOrderActualReleaseDate": sap_date(dt.date(2026, 11, 19)),
        "ProductionUnit": "PC", "TotalQuantity": "12", "MfgOrderPlannedScrapQty": "0",
        "MfgOrderConfirmedYieldQty": "5", "LastChangeDateTime": "20261120093000",
        "to_ProductionOrderOperation": {"results": [
            {"ManufacturingOrder": "1000123", "ManufacturingOrderSequence": "0", "ManufacturingOrderOperation": "0020",
             "WorkCenter": "ASSEMBLY-02", "OpPlannedTotalQuantity": "12", "OpTotalConfirmedYieldQty": "5",
             "OpActualExecutionStartDate": sap_date(dt.date(2026, 11, 20)), "OpActualExecutionStartTime": "PT11H15M00S"},
            {"ManufacturingOrder": "1000123", "ManufacturingOrderSequence": "0", "ManufacturingOrderOperation": "0010",
             "WorkCenter": "MACHINING-01", "OpPlannedTotalQuantity": "12", "OpTotalConfirmedYieldQty": "12",
             "OpActualExecutionStartDate": sap_date(dt.date(2026, 11, 20)), "OpActualExecutionStartTime": "PT07H05M00S",
             "OpActualExecutionEndDate": sap_date(dt.date(2026, 11, 20)), "OpActualExecutionEndTime": "PT11H00M00S"},
        ]},
        "to_ProductionOrderItem": {"results": [{"ManufacturingOrder": "1000123", "ManufacturingOrderItem": "1", "Batch": "B000042"}]},
    }
    berlin = dt.timezone(dt.timedelta(hours=1))
    po = production_order_from_s4(row, tz=berlin)
    assert po.status == "PARTIALLY_CONFIRMED"
    assert po.work_center == "ASSEMBLY-02"  # 0010 is done; 0020 is where the order is
    assert po.scheduled_start_date == dt.datetime(2026, 11, 20, 6, 0, tzinfo=dt.UTC)  # 07:00 plant time
    assert po.scheduled_end_date == dt.datetime(2026, 11, 21, 9, 22, 30, tzinfo=dt.UTC)
    assert po.actual_start_date == dt.datetime(2026, 11, 20, 6, 5, tzinfo=dt.UTC)
    assert po.actual_end_date is None  # not finished
    assert po.confirmed_yield_qty == 5.0 and po.total_quantity == 12.0
    assert po.batch == "B000042"
    assert po.last_change_date_time == dt.datetime(2026, 11, 20, 9, 30, tzinfo=dt.UTC)
    assert production_order_from_s4({**row, "OrderIsTechnicallyCompleted": "X"}).status == "TECO"
    released = {**row, "OrderIsPartiallyConfirmed": "", "to_ProductionOrderOperation": {"results": [
        {"ManufacturingOrderOperation": "0010", "WorkCenter": "MACHINING-01"}]}}
    assert production_order_from_s4(released).status == "RELEASED"
    with pytest.raises(RecordError, match=r"A_ProductionOrder_2 '1000123': WorkCenter"):
        production_order_from_s4({**row, "to_ProductionOrderOperation": {"__deferred": {}}})
    with pytest.raises(RecordError, match="OrderIsReleased: expected a flag"):
        production_order_from_s4({**row, "OrderIsReleased": "Y"})


def test_outbound_delivery_from_s4():
    row = {
        "DeliveryDocument": "80000123", "ShipToParty": "17100001", "ShippingPoint": "1710",
        "DeliveryDate": sap_date(dt.date(2026, 12, 2)), "OverallPickingStatus": "C", "OverallPackingStatus": "C",
        "OverallGoodsMovementStatus": "C", "ActualGoodsMovementDate": sap_date(dt.date(2026, 12, 1)),
        "ActualGoodsMovementTime": "PT16H45M00S", "BillOfLading": "BOL-99812", "LastChangeDate": sap_date(dt.date(2026, 12, 1)),
        "to_DeliveryDocumentItem": {"results": [
            {"DeliveryDocument": "80000123", "DeliveryDocumentItem": "10", "ReferenceSDDocument": "4000007",
             "ReferenceSDDocumentItem": "10", "Material": "FG-PUMP-100", "ActualDeliveryQuantity": "8.000",
             "DeliveryQuantityUnit": "PC", "Batch": "B000042"},
        ]},
    }
    d = outbound_delivery_from_s4(row)
    assert d.sales_order == "4000007" and d.items[0].actual_delivery_quantity == 8.0
    assert d.actual_goods_movement_date == dt.datetime(2026, 12, 1, 16, 45, tzinfo=dt.UTC)
    assert d.bill_of_lading == "BOL-99812" and d.overall_goods_movement_status == "C"
    # Goods movement not complete: an old date on the header is not a goods issue.
    assert outbound_delivery_from_s4({**row, "OverallGoodsMovementStatus": "A"}).actual_goods_movement_date is None
    with pytest.raises(RecordError, match="to_DeliveryDocumentItem"):
        outbound_delivery_from_s4({**row, "to_DeliveryDocumentItem": {"__deferred": {}}})


def test_inspection_lot_and_usage_decision_from_s4():
    lot = {
        "InspectionLot": "10000000042", "Material": "FG-PUMP-100", "Batch": "B000042", "Plant": "1710",
        "InspectionLotOrigin": "04", "ManufacturingOrder": "1000123",
        "InspectionLotCreatedOn": sap_date(dt.date(2026, 11, 22)), "InspectionLotCreatedOnTime": "PT08H10M00S",
        "InspectionLotEndDate": sap_date(dt.date(2026, 11, 24)), "InspectionLotEndTime": "PT00H00M00S",
        "InspectionLotHasUsageDecision": True, "ChangedDateTime": f"/Date({MS}+0000)/",
    }
    decision = {
        "InspectionLot": "10000000042", "InspLotUsageDecisionCodeGroup": "UD04", "InspectionLotUsageDecisionCode": "R2",
        "InspLotUsageDecisionValuation": "R", "InspectionLotUsageDecidedOn": sap_date(dt.date(2026, 11, 23)),
        "InspLotUsageDecisionTime": "PT13H05M00S", "InspectionLotQualityScore": "40",
    }
    parsed = inspection_lot_from_s4(lot, usage_decision=decision)
    assert parsed.has_usage_decision and parsed.usage_decision is not None
    assert parsed.usage_decision.valuation == "REJECTED" and parsed.usage_decision.code == "R2"
    assert parsed.usage_decision.decided_at == dt.datetime(2026, 11, 23, 13, 5, tzinfo=dt.UTC)
    assert parsed.usage_decision.quality_score == 40.0
    assert parsed.created_at == dt.datetime(2026, 11, 22, 8, 10, tzinfo=dt.UTC)
    assert parsed.last_change_date_time == parse_datetime(f"/Date({MS})/")
    # A decision of unknown valuation must never read as accepted.
    with pytest.raises(RecordError, match="InspLotUsageDecisionValuation"):
        inspection_lot_from_s4(lot, usage_decision={**decision, "InspLotUsageDecisionValuation": ""})
    with pytest.raises(RecordError, match="no A_InspLotUsageDecision"):
        inspection_lot_from_s4(lot)
    open_lot = inspection_lot_from_s4({**lot, "InspectionLotHasUsageDecision": False})
    assert not open_lot.has_usage_decision and open_lot.usage_decision is None


def test_customer_from_business_partner():
    bp = {
        "BusinessPartner": "17100001", "BusinessPartnerFullName": "Inlandkunde DE 1", "Customer": "17100001",
        "LastChangeDate": sap_date(dt.date(2026, 10, 1)), "LastChangeTime": "PT09H30M00S",
        "to_Customer": {"Customer": "17100001", "CustomerName": "Inlandkunde DE 1", "CustomerClassification": "A"},
        "to_BusinessPartnerAddress": {"results": [{"BusinessPartner": "17100001", "AddressID": "1", "Country": "DE", "CityName": "Walldorf"}]},
    }
    c = customer_from_s4(bp)
    assert (c.customer, c.customer_name, c.country, c.commercial_priority) == ("17100001", "Inlandkunde DE 1", "DE", "STRATEGIC")
    assert c.last_change_date_time == dt.datetime(2026, 10, 1, 9, 30, tzinfo=dt.UTC)
    plain = customer_from_s4({"Customer": "17100002", "CustomerName": "Domestic US Customer 2"})
    assert plain.commercial_priority == "NORMAL" and plain.country is None
    with pytest.raises(RecordError, match="A_Customer '17100003': CustomerName: missing"):
        customer_from_s4({"Customer": "17100003"})


def test_sales_order_that_does_not_fit_names_the_field():
    with pytest.raises(RecordError, match=r"A_SalesOrder '4000001': SoldToParty: missing"):
        sales_order_from_s4(sales_order_row(1, SoldToParty=""))
    with pytest.raises(RecordError, match=r"TotalNetAmount: not an Edm.Decimal"):
        sales_order_from_s4(sales_order_row(1, TotalNetAmount="12,40"))
    with pytest.raises(RecordError, match=r"OverallDeliveryStatus: expected A, B or C"):
        sales_order_from_s4(sales_order_row(1, OverallDeliveryStatus="Z"))


# --- delta reads -----------------------------------------------------------------------


async def test_changes_since_reads_only_newer_changes_in_order(sap, session):
    sap.page_size = 30
    c = client(sap, session)
    since = parse_datetime(f"/Date({MS + 199 * 60_000})/")
    assert since is not None
    result = await c.changes_since("A_SalesOrder", since, select=("SalesOrder", "LastChangeDateTime"), page_size=None)
    assert [r["SalesOrder"] for r in result.rows] == [str(4000000 + n) for n in range(200, 250)]
    assert result.requests == 2
    assert "LastChangeDateTime%20gt%20datetimeoffset'2023-11-15T01:32:20Z'" in sap.seen[0].url
    assert "$orderby=LastChangeDateTime%20asc" in sap.seen[0].url


async def test_changes_since_with_sap_decimal_timestamps(sap, session):
    sap.add("API_PRODUCTION_ORDER_2_SRV", "A_ProductionOrder_2", "ManufacturingOrder", [
        {"ManufacturingOrder": str(1000000 + n), "LastChangeDateTime": f"202611201{n}0000"} for n in range(5)
    ])
    c = ODataClient("mes", sap.service_url("API_PRODUCTION_ORDER_2_SRV"), session)
    since = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
    result = await c.changes_since("A_ProductionOrder_2", since, kind="timestamp")
    assert [r["ManufacturingOrder"] for r in result.rows] == ["1000003", "1000004"]
    assert "LastChangeDateTime%20gt%2020261120120000M" in sap.seen[0].url


# --- auth ------------------------------------------------------------------------------


async def test_basic_auth(sap, session):
    sap.basic = ("ORDERGRAPH", "s3cret")
    ok = client(sap, session, auth=BasicAuth("ORDERGRAPH", "s3cret"))
    assert (await ok.get(Query("A_SalesOrder", top=1))).rows
    wrong = client(sap, session, auth=BasicAuth("ORDERGRAPH", "wrong"), policy=Policy(retries=2, backoff_seconds=0.001))
    with pytest.raises(ODataError) as err:
        await wrong.get(Query("A_SalesOrder", top=1))
    e = err.value
    assert (e.code, e.status, e.client_fault) == ("SOURCE_BAD_RESPONSE", 401, False)
    assert "refused our credentials" in str(e) and "Logon failed" in str(e)
    assert len(sap.seen) == 2  # one good read, one refused; a wrong password is never retried


async def test_oauth_token_is_cached_refreshed_on_expiry_and_on_401(sap, session):
    sap.client_credentials = ("sb-ordergraph", "client-secret")
    now = [1000.0]
    auth = ClientCredentials(f"{sap.url}/oauth/token", "sb-ordergraph", "client-secret", monotonic=lambda: now[0])
    sap.token_lifetime = 600
    c = client(sap, session, auth=auth)
    for _ in range(3):
        await c.get(Query("A_SalesOrder", top=1))
    assert sap.token_requests == 1 and auth.fetched == 1
    assert {s.authorization for s in sap.seen} == {"Bearer tok-1"}
    # Near expiry (inside the refresh margin): a new token before the request, no 401.
    now[0] += 545
    await c.get(Query("A_SalesOrder", top=1))
    assert sap.token_requests == 2 and sap.seen[-1].authorization == "Bearer tok-2"
    # Revoked at the source: the 401 makes the client fetch a token and retry once.
    sap.tokens.clear()
    await c.get(Query("A_SalesOrder", top=1))
    assert sap.token_requests == 3
    assert [s.authorization for s in sap.seen[-2:]] == ["Bearer tok-2", "Bearer tok-3"]


async def test_oauth_refused_twice_is_an_error_after_one_retry(sap, session):
    sap.client_credentials = ("sb-ordergraph", "client-secret")
    auth = ClientCredentials(f"{sap.url}/oauth/token", "sb-ordergraph", "client-secret")
    c = client(sap, session, auth=auth)
    sap.accept_tokens = False  # the source refuses even the tokens it issues
    with pytest.raises(ODataError) as err:
        await c.get(Query("A_SalesOrder", top=1))
    assert err.value.status == 401
    assert len(sap.seen) == 2 and sap.token_requests == 2  # one retry with a fresh token, no more


async def test_oauth_bad_client_secret(sap, session):
    sap.client_credentials = ("sb-ordergraph", "client-secret")
    auth = ClientCredentials(f"{sap.url}/oauth/token", "sb-ordergraph", "nope")
    c = client(sap, session, auth=auth)
    with pytest.raises(SourceError) as err:
        await c.get(Query("A_SalesOrder", top=1))
    assert err.value.code == "SOURCE_BAD_RESPONSE" and "invalid_client" in str(err.value)
    assert sap.seen == []  # no data request without a token


# --- errors ----------------------------------------------------------------------------


def odata_error(code: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": {"lang": "en", "value": message}}})


async def test_403_is_a_typed_error_with_sap_text(sap, session):
    sap.failures["A_SalesOrder"] = Failure(403, odata_error("/IWBEP/CM_MGW_RT/002", "No authorization for A_SalesOrder"))
    c = client(sap, session, policy=Policy(retries=2, backoff_seconds=0.001))
    with pytest.raises(ODataError) as err:
        await c.get(Query("A_SalesOrder"))
    e = err.value
    assert (e.code, e.status, e.client_fault, e.sap_code) == ("SOURCE_BAD_RESPONSE", 403, False, "/IWBEP/CM_MGW_RT/002")
    assert "No authorization for A_SalesOrder" in str(e) and e.extensions == {"code": "SOURCE_BAD_RESPONSE", "source": "erp"}
    assert len(sap.seen) == 1


async def test_500_is_retried_by_policy_then_unavailable(sap, session):
    sap.failures["A_SalesOrder"] = Failure(500, odata_error("SY/530", "Runtime error CX_SY_OPEN_SQL_DB"))
    c = client(sap, session, policy=Policy(retries=2, backoff_seconds=0.001, timeout_seconds=5))
    with pytest.raises(ODataError) as err:
        await c.get(Query("A_SalesOrder"))
    assert err.value.code == "SOURCE_UNAVAILABLE" and "CX_SY_OPEN_SQL_DB" in str(err.value)
    assert len(sap.seen) == 3  # the first try and two retries
    sap.failures["A_SalesOrder"] = Failure(503, b"<html>Service Unavailable</html>", times=1)
    page = await c.get(Query("A_SalesOrder", top=2))
    assert len(page.rows) == 2  # the retry after one 503 got through


async def test_400_is_the_request_fault_and_not_retried(sap, session):
    sap.failures["A_SalesOrder"] = Failure(400, odata_error("/IWBEP/CM_MGW_RT/004", "Invalid filter expression"))
    c = client(sap, session, policy=Policy(retries=2, backoff_seconds=0.001))
    with pytest.raises(ODataError) as err:
        await c.get(Query("A_SalesOrder"))
    assert (err.value.code, err.value.client_fault) == ("SOURCE_BAD_RESPONSE", True)
    assert "Invalid filter expression" in str(err.value) and len(sap.seen) == 1


async def test_sap_message_warnings_are_kept_and_errors_fail_the_read(sap, session):
    warning = {"code": "V1/555", "message": "Credit limit almost reached", "severity": "warning", "target": "",
               "details": [{"code": "V1/556", "message": "Check customer 17100001", "severity": "info", "target": ""}]}
    sap.headers = {"sap-message": orjson.dumps(warning).decode()}
    c = client(sap, session)
    seen = []
    c.on_message = lambda what, m: seen.append((what, m.code))
    page = await c.get(Query("A_SalesOrder", top=1))
    assert [(m.code, m.severity) for m in page.messages[0].all()] == [("V1/555", "warning"), ("V1/556", "info")]
    assert seen == [("A_SalesOrder", "V1/555")]
    sap.headers = {"sap-message": orjson.dumps({**warning, "severity": "error", "message": "Data inconsistent"}).decode()}
    with pytest.raises(ODataError) as err:
        await c.get(Query("A_SalesOrder", top=1))
    assert err.value.code == "SOURCE_BAD_RESPONSE" and "Data inconsistent" in str(err.value)


async def test_bad_envelopes_are_bad_responses(sap, session):
    c = client(sap, session)
    for body in (b"not json", b'{"value": []}', b'{"d": {"results": [1, 2]}}', b'{"d": {"results": [], "__count": "many"}}'):
        sap.failures["A_SalesOrder"] = Failure(200, body)
        with pytest.raises(SourceError) as err:
            await c.get(Query("A_SalesOrder"))
        assert err.value.code == "SOURCE_BAD_RESPONSE"


async def test_upstream_hook_sees_every_request(sap, session):
    calls = []
    sap.page_size = 100
    c = client(sap, session, on_request=lambda *a: calls.append(a))
    await c.read_all(Query("A_SalesOrder"))
    assert [(s, e, o) for s, e, _t, o in calls] == [("erp", "A_SalesOrder", "ok")] * 3

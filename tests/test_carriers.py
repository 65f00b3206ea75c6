"""Carrier messages: AfterShip webhooks (signature, parsing, events) and EDI 214."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest

from sources import event_registry
from sources.carriers import (
    AfterShipError,
    Edi214Error,
    parse_edi214,
    parse_webhook,
    verify_signature,
)
from sources.carriers.aftership import sign
from sources.signing import SignatureError

SECRET = "whsec-aftership-test"
UTC = dt.UTC


def webhook(**msg_over) -> bytes:
    msg = {
        "id": "5b74f4958776db0e00b6f5ed",
        "tracking_number": "1Z0F28171596013711",
        "slug": "ups",
        "title": "Order 80000123",
        "order_number": "80000123",
        "tag": "InTransit",
        "subtag": "InTransit_003",
        "subtag_message": "Arrived at the hub",
        "expected_delivery": "2026-12-03",
        "signed_by": None,
        "checkpoints": [
            {"slug": "ups", "city": "Louisville", "state": "KY", "country_iso3": "USA", "location": "Louisville, KY, USA",
             "message": "Departed from facility", "tag": "InTransit", "subtag": "InTransit_002",
             "checkpoint_time": "2026-12-01T19:02:00-05:00", "created_at": "2026-12-02T00:10:13+00:00"},
            {"slug": "ups", "location": "Walldorf, DE", "message": "Shipper created a label, UPS has not received the package yet.",
             "tag": "InfoReceived", "subtag": "InfoReceived_001", "checkpoint_time": "2026-11-30T09:15:00+01:00"},
            {"slug": "ups", "city": "Chicago", "state": "IL", "country_iso3": "USA", "message": "Arrived at Facility",
             "tag": "InTransit", "subtag": "InTransit_003", "checkpoint_time": "2026-12-02T06:40:00-06:00"},
        ],
    }
    msg.update(msg_over)
    return orjson.dumps({"event": "tracking_update", "event_id": "7a2ef5c4-91c5-4a56-8e2b-0f2d0f6f0b1a",
                         "is_tracking_first_tag": False, "msg": msg, "ts": 1796191813})


# --- AfterShip ---------------------------------------------------------------------------


def test_aftership_signature_is_checked_over_the_raw_body():
    body = webhook()
    verify_signature(SECRET, body, sign(SECRET, body))
    for header, why in [
        (None, "missing"),
        ("", "missing"),
        ("not base64!!", "not base64"),
        (sign("another-secret", body), "does not match"),
        (sign(SECRET, body + b" "), "does not match"),  # re-serialised bodies do not verify
    ]:
        with pytest.raises(SignatureError, match=why):
            verify_signature(SECRET, body, header)
    with pytest.raises(SignatureError, match="no AfterShip webhook secret"):
        verify_signature("", body, sign(SECRET, body))


def test_aftership_checkpoints_become_shipment_events_in_time_order():
    hook = parse_webhook(webhook())
    assert (hook.tracking_number, hook.slug, hook.tag, hook.subtag) == ("1Z0F28171596013711", "ups", "InTransit", "InTransit_003")
    assert [s.tag for s in hook.statuses] == ["InfoReceived", "InTransit", "InTransit"]
    assert [s.status_code for s in hook.statuses] == ["X3", "X6", "X6"]
    assert hook.statuses[0].occurred_at == dt.datetime(2026, 11, 30, 8, 15, tzinfo=UTC)
    assert hook.statuses[1].location == "Louisville, KY, USA"
    assert hook.statuses[2].location == "Chicago, IL, USA"
    # A date-only expected delivery: that day, the whole day as the window.
    assert hook.expected_delivery == dt.datetime(2026, 12, 3, tzinfo=UTC)
    assert hook.eta_window == (dt.datetime(2026, 12, 3, tzinfo=UTC), dt.datetime(2026, 12, 3, 23, 59, 59, tzinfo=UTC))
    events = hook.events(event_registry())
    assert [(e.action, e.key) for e in events] == [
        ("StatusUpdated", "1Z0F28171596013711"), ("StatusUpdated", "1Z0F28171596013711"),
        ("StatusUpdated", "1Z0F28171596013711"), ("EtaRevised", "1Z0F28171596013711"),
    ]
    last = events[-1]
    assert last.type == "ordergraph.tms.shipment.v1.Shipment.EtaRevised.v1"
    assert last.data is not None and last.data["EstimatedDeliveryAt"] == "2026-12-03T00:00:00Z"
    assert last.data["ShipmentIdentification"] == "80000123"
    assert events[0].record is None  # no delivery document named: the gateway re-reads the shipment
    assert events[0].refs == {"TrackingNumber": "1Z0F28171596013711"}


def test_aftership_repeats_of_a_milestone_are_one_event():
    registry = event_registry()
    first = parse_webhook(webhook()).events(registry)
    later = parse_webhook(webhook(tag="OutForDelivery", checkpoints=[
        *orjson.loads(webhook())["msg"]["checkpoints"],
        {"slug": "ups", "location": "Milwaukee, WI, USA", "message": "Out For Delivery Today", "tag": "OutForDelivery",
         "subtag": "OutForDelivery_001", "checkpoint_time": "2026-12-03T07:55:00-06:00"},
    ])).events(registry)
    old_ids = {e.id for e in first}
    new = [e for e in later if e.id not in old_ids]
    # Only the new checkpoint (and its expected delivery, carried by the newest scan) is new.
    assert [(e.action, e.data["Tag"]) for e in new] == [("StatusUpdated", "OutForDelivery"), ("EtaRevised", "OutForDelivery")]


def test_aftership_delivered_and_exception():
    delivered = parse_webhook(webhook(tag="Delivered", signed_by="J. MUELLER", checkpoints=[
        {"slug": "ups", "location": "Milwaukee, WI, USA", "message": "Delivered", "tag": "Delivered",
         "subtag": "Delivered_001", "checkpoint_time": "2026-12-03T11:20:00-06:00"}]))
    (e, _eta) = delivered.events(event_registry())
    assert e.type == "ordergraph.tms.shipment.v1.Shipment.Delivered.v1"
    assert e.data is not None and e.data["DeliveredAt"] == "2026-12-03T17:20:00Z" and e.data["StatusCode"] == "D1"
    assert delivered.signed_by == "J. MUELLER"
    exc = parse_webhook(webhook(tag="Exception", expected_delivery=None, checkpoints=[
        {"slug": "ups", "message": "Weather delay", "tag": "Exception", "subtag": "Exception_005",
         "checkpoint_time": "2026-12-02T10:00:00Z"}]))
    (only,) = exc.events(event_registry())
    assert only.action == "Exception" and only.data is not None and only.data["Subtag"] == "Exception_005"


def test_aftership_edd_revise_without_checkpoints():
    body = orjson.dumps({"event": "edd_revise", "event_id": "e-1", "ts": 1796191813, "msg": {
        "tracking_number": "1Z0F28171596013711", "slug": "ups", "tag": "InTransit", "checkpoints": [],
        "latest_estimated_delivery": {"type": "specific", "source": "Carrier", "datetime": "2026-12-04T12:00:00Z",
                                      "datetime_min": "2026-12-04T09:00:00Z", "datetime_max": "2026-12-04T17:00:00Z"}}})
    hook = parse_webhook(body)
    (e,) = hook.events(event_registry())
    assert e.action == "EtaRevised" and e.occurred_at == dt.datetime.fromtimestamp(1796191813, UTC)
    assert e.data is not None and (e.data["EtaWindowStart"], e.data["EtaWindowEnd"]) == ("2026-12-04T09:00:00Z", "2026-12-04T17:00:00Z")


def test_aftership_bad_webhooks_name_the_field():
    cases = [
        (b"{not json", "body is not JSON"),
        (b"[]", "body: expected a JSON object"),
        (orjson.dumps({"event": "tracking_update"}), "msg: missing"),
        (webhook(tracking_number=""), "msg.tracking_number: missing"),
        (webhook(tag="Lost"), "msg.tag: unknown tag 'Lost'"),
        (webhook(expected_delivery="soon"), "msg.expected_delivery: not an ISO 8601 time"),
        (webhook(checkpoints=[{"tag": "InTransit", "checkpoint_time": "2026-13-01T00:00:00Z"}]), r"msg.checkpoints\[0\].checkpoint_time"),
        (webhook(checkpoints=[{"tag": "InTransit"}]), r"msg.checkpoints\[0\].checkpoint_time: missing"),
        (webhook(checkpoints=[{"tag": "Teleported", "checkpoint_time": "2026-12-01T00:00:00Z"}]), r"msg.checkpoints\[0\].tag"),
        (webhook(checkpoints="none"), "msg.checkpoints: expected a list"),
    ]
    for body, why in cases:
        with pytest.raises(AfterShipError, match=why):
            parse_webhook(body)


# --- EDI 214 ---------------------------------------------------------------------------

ISA = "ISA*00*          *00*          *02*ODFL           *ZZ*ORDERGRAPH     *261202*1432*U*00401*000000917*0*P*>~"


def edi(*segments: str, envelope: bool = True, terminator: str = "~\n") -> str:
    text = list(segments)
    if envelope:
        text = [ISA.rstrip("~"), "GS*QM*ODFL*ORDERGRAPH*20261202*1432*917*X*004010", *text, "GE*1*917", "IEA*1*000000917"]
    return terminator.join(text) + terminator


def transaction(*inner: str, control: str = "0001", count: int | None = None) -> list[str]:
    segs = [f"ST*214*{control}", *inner]
    n = len(segs) + 1 if count is None else count
    return [*segs, f"SE*{n}*{control}"]


GOOD = transaction(
    "B10*74839201*80000123*ODFL",
    "L11*BOL-99812*BM",
    "L11*4500012345*PO",
    "L11*80000123*DO",
    "N1*SH*ACME PUMPS PLANT 1000",
    "N1*CN*NORTHWIND INDUSTRIAL",
    "MS3*ODFL*B**M",
    "LX*1",
    "AT7*AF*NS***20261201*1715*LT",
    "MS1*WALLDORF*BW*DE",
    "MS2*ODFL*TRL48211*TL",
    "AT8*G*K*1250.5*12",
    "LX*2",
    "AT7*SD*AO***20261202*0610*CT",
    "MS1*CHICAGO*IL*US",
    "AT7*AG*NS***20261204*1200*CT",
    "MS1*CHICAGO*IL*US",
)


def test_edi214_with_envelopes():
    (msg,) = parse_edi214(edi(*GOOD))
    assert (msg.tracking_number, msg.shipment_identification, msg.scac) == ("74839201", "80000123", "ODFL")
    assert msg.interchange_control_number == "000000917" and msg.group_control_number == "917"
    assert msg.references == {"BM": ["BOL-99812"], "PO": ["4500012345"], "DO": ["80000123"]}
    af, sd, ag = msg.statuses
    assert (af.status_code, af.reason_code, af.location, af.equipment_number) == ("AF", "NS", "WALLDORF, BW, DE", "TRL48211")
    assert af.occurred_at == dt.datetime(2026, 12, 1, 17, 15, tzinfo=UTC)  # LT: the parser's local zone (UTC here)
    assert sd.occurred_at == dt.datetime(2026, 12, 2, 12, 10, tzinfo=UTC)  # 06:10 Central is 12:10 UTC
    assert msg.weights[0].weight is not None and str(msg.weights[0].weight) == "1250.5"
    assert (msg.weights[0].unit, msg.weights[0].lading_quantity) == ("K", 12)
    events = msg.events(event_registry())
    assert [e.action for e in events] == ["StatusUpdated", "Exception", "EtaRevised"]
    first, delayed, eta = events
    assert first.data is not None and first.data["Tag"] == "InTransit" and first.data["BillOfLading"] == "BOL-99812"
    assert first.data["Weight"] == "1250.5" and first.data["WeightUnit"] == "K"
    # The delivery document makes the event a whole (if partial) shipment record; it is a join key.
    assert first.refs["DeliveryDocument"] == "80000123" and first.record is not None
    assert delayed.data is not None and (delayed.data["ReasonCode"], delayed.data["Reason"]) == ("AO", "Weather or natural disaster related")
    assert eta.data is not None and eta.data["EstimatedDeliveryAt"] == "2026-12-04T18:00:00Z"


def test_edi214_without_envelopes_and_with_other_separators():
    bare = edi(*GOOD, envelope=False, terminator="\n")
    (msg,) = parse_edi214(bare)
    assert len(msg.statuses) == 3
    isa = ISA.replace("*", "|").replace(">~", "^'")
    text = "'".join([isa.rstrip("'"), "GS|QM|ODFL|ORDERGRAPH|20261202|1432|917|X|004010",
                     *[s.replace("*", "|") for s in GOOD], "GE|1|917", "IEA|1|000000917"]) + "'"
    (msg,) = parse_edi214(text.encode())
    assert msg.statuses[0].city == "WALLDORF"


def test_edi214_two_sets_in_one_group():
    second = transaction("B10*74839202*80000124*ODFL", "LX*1", "AT7*D1*NS***20261203*0930*ET", "MS1*DAYTON*OH*US", control="0002")
    text = edi(*GOOD, *second).replace("GE*1*917", "GE*2*917")
    one, two = parse_edi214(text)
    assert two.tracking_number == "74839202"
    (delivered,) = two.events(event_registry())
    assert delivered.action == "Delivered" and delivered.data is not None
    assert delivered.data["DeliveredAt"] == "2026-12-03T14:30:00Z"


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda s: s.replace("20261202*0610", "20261399*0610"), "AT7 element 5: bad date '20261399' (segment 17)"),
        (lambda s: s.replace("*1715*LT", "*2575*LT"), "AT7 element 6: bad time '2575'"),
        (lambda s: s.replace("*1715*LT", "*1715*XX"), "AT7 element 7: unknown time code 'XX'"),
        (lambda s: s.replace("AT7*AF*NS", "AT7*ZZ*NS"), "AT7 element 1: unknown shipment status code 'ZZ'"),
        (lambda s: s.replace("AT7*AF*NS", "AT7*AF*"), "AT7 element 2: status code and reason code go together"),
        (lambda s: s.replace("AT7*AF*NS***20261201", "AT7*AF*NS***"), "AT7 element 5: date missing"),
        (lambda s: s.replace("AT8*G*K*1250.5", "AT8*G*K*12x0"), "AT8 element 3: bad weight '12x0'"),
        (lambda s: s.replace("AT8*G*K", "AT8*G*Q"), "AT8 element 2: unknown weight unit 'Q'"),
        (lambda s: s.replace("MS1*WALLDORF*BW*DE", "MS1****"), "MS1 element 1: neither a city"),
        (lambda s: s.replace("SE*19*0001", "SE*18*0001"), "SE element 1: says '18' segments, the transaction set has 19"),
        (lambda s: s.replace("SE*19*0001", "SE*19*0002"), "SE element 2: control number '0002' does not match ST02 '0001'"),
        (lambda s: s.replace("ST*214", "ST*210"), "ST element 1: transaction set '210' is not a 214"),
        (lambda s: s.replace("B10*74839201*80000123*ODFL", "B10*74839201*80000123*"), "B10 element 3: bad SCAC ''"),
        (lambda s: s.replace("GE*1*917", "GE*2*917"), "GE element 1: says '2' transaction sets, the group has 1"),
        (lambda s: s.replace("IEA*1*000000917", "IEA*1*000000918"), "IEA element 2: control number '000000918' does not match"),
        (lambda s: s.replace("GS*QM", "GS*IN"), "GS element 1: functional group 'IN' is not QM"),
        (lambda s: s.replace("LX*1~\n", ""), "AT7: outside an LX loop"),
        (lambda s: s.replace("~\nSE*19*0001", ""), "GE: inside transaction set 0001 (no SE before it)"),
        (lambda s: s.split("SE*19")[0], "SE: missing: transaction set 0001 has no end"),
        (lambda s: s[:40], "ISA: shorter than the 106 characters"),
        (lambda s: "HELLO*WORLD~", "expected an ISA, GS or ST segment"),
    ],
)
def test_edi214_bad_messages_name_the_segment_and_element(mutate, error):
    good = edi(*GOOD)
    parse_edi214(good)  # the unmutated message is fine
    bad = mutate(good)
    assert bad != good
    with pytest.raises(Edi214Error) as err:
        parse_edi214(bad)
    assert error in str(err.value)


def test_edi214_is_all_or_nothing_across_transaction_sets():
    second = transaction("B10*74839202*80000124*ODFL", "LX*1", "AT7*D1*NS***20261303*0930*ET", control="0002")
    text = edi(*GOOD, *second).replace("GE*1*917", "GE*2*917")
    with pytest.raises(Edi214Error, match="AT7 element 5: bad date '20261303'"):
        parse_edi214(text)  # the good first set is not returned on its own


def test_edi214_error_positions():
    with pytest.raises(Edi214Error) as err:
        parse_edi214(edi(*GOOD).replace("20261202*0610", "20261399*0610"))
    e = err.value
    assert (e.segment, e.element, e.position) == ("AT7", 5, 17)

"""Carrier status vocabularies and how they map onto each other and onto ordergraph's
shipment events (``sources/tms.py``: Created, StatusUpdated, EtaRevised, Delivered,
ProofOfDelivery, Exception).

A ``Shipment`` record keeps both an EDI 214 status code (``StatusCode``) and an
AfterShip tag (``Tag``), as the simulated plant does (X3 InfoReceived, AF / X6 InTransit,
X1 OutForDelivery, D1 Delivered, SD delayed). Each source gives one of the two; the other
is derived from the tables below.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo

AFTERSHIP_TAGS = (
    "Pending", "InfoReceived", "InTransit", "OutForDelivery", "AttemptFail",
    "Delivered", "AvailableForPickup", "Exception", "Expired",
)


@dataclasses.dataclass(frozen=True, slots=True)
class StatusCode:
    """One X12 AT701 shipment status code."""

    code: str
    description: str
    tag: str  # the AfterShip tag it corresponds to
    action: str  # the shipment event action
    estimate: bool = False  # the AT7 date/time is an estimate (an ETA), not a scan


def _s(code: str, description: str, tag: str, action: str = "StatusUpdated", estimate: bool = False) -> tuple[str, StatusCode]:
    return code, StatusCode(code, description, tag, action, estimate)


# X12 AT701 (shipment status code), the codes carriers send in 214s.
STATUS_CODES: dict[str, StatusCode] = dict(
    [
        _s("A3", "Shipment returned to shipper", "Exception", "Exception"),
        _s("A7", "Refused by consignee", "Exception", "Exception"),
        _s("A9", "Shipment damaged", "Exception", "Exception"),
        _s("AF", "Carrier departed pick-up location with shipment", "InTransit"),
        _s("AG", "Estimated delivery", "InTransit", "EtaRevised", estimate=True),
        _s("AH", "Attempted delivery", "AttemptFail"),
        _s("AI", "Shipment has been reconsigned", "InTransit"),
        _s("AJ", "Tendered for delivery", "OutForDelivery"),
        _s("AM", "Loaded on truck", "InTransit"),
        _s("AN", "Diverted to air carrier", "InTransit"),
        _s("AP", "Delivery not completed", "AttemptFail"),
        _s("AR", "Rail arrival at destination intermodal ramp", "InTransit"),
        _s("AV", "Available for delivery", "InTransit"),
        _s("B6", "Estimated to arrive at carrier terminal", "InTransit", estimate=True),
        _s("BA", "Connecting line or cartage pick-up", "InTransit"),
        _s("BC", "Storage in transit", "InTransit"),
        _s("C1", "Estimated to depart terminal location", "InTransit", estimate=True),
        _s("CA", "Shipment cancelled", "Exception", "Exception"),
        _s("CD", "Carrier departed delivery location", "Delivered"),
        _s("CL", "Trailer closed out", "InTransit"),
        _s("CP", "Completed loading at pick-up location", "InfoReceived"),
        _s("D1", "Completed unloading at delivery location", "Delivered", "Delivered"),
        _s("I1", "In-gate", "InTransit"),
        _s("J1", "Delivered to connecting line", "InTransit"),
        _s("K1", "Arrived at customs", "InTransit"),
        _s("L1", "Loading", "InfoReceived"),
        _s("OA", "Out-gate", "InTransit"),
        _s("OO", "Paperwork received - did not receive shipment or equipment", "InfoReceived"),
        _s("P1", "Departed terminal location", "InTransit"),
        _s("PR", "U.S. customs hold at in-land destination", "Exception", "Exception"),
        _s("R1", "Received from prior carrier", "InTransit"),
        _s("RL", "Rail departure from origin intermodal ramp", "InTransit"),
        _s("S1", "Trailer spotted at consignee's location", "OutForDelivery"),
        _s("SD", "Shipment delayed", "Exception", "Exception"),
        _s("X1", "Arrived at delivery location", "OutForDelivery"),
        _s("X2", "Estimated date and/or time of arrival at consignee's location", "InTransit", "EtaRevised", estimate=True),
        _s("X3", "Arrived at pick-up location", "InfoReceived"),
        _s("X4", "Arrived at terminal location", "InTransit"),
        _s("X5", "Arrived at delivery location loading dock", "OutForDelivery"),
        _s("X6", "En route to delivery location", "InTransit"),
        _s("X8", "Arrived at pick-up location loading dock", "InfoReceived"),
        _s("XB", "Shipment acknowledged", "InfoReceived"),
    ]
)

# X12 AT702 (shipment status or appointment reason code): why, mostly why late.
REASON_CODES: dict[str, str] = {
    "NS": "Normal status",
    "A1": "Missed delivery",
    "A2": "Incorrect address",
    "A3": "Indirect delivery",
    "A5": "Unable to locate",
    "A6": "Address corrected - delivery attempted",
    "AA": "Mis-sort",
    "AD": "Customer requested future delivery",
    "AE": "Restricted articles unacceptable",
    "AF": "Accident",
    "AG": "Consignee related",
    "AH": "Driver related",
    "AI": "Mechanical breakdown",
    "AJ": "Other carrier related",
    "AK": "Damaged, rewrapped in hub",
    "AL": "Previous stop",
    "AM": "Shipper related",
    "AN": "Holiday - closed",
    "AO": "Weather or natural disaster related",
    "AP": "Awaiting export",
    "AQ": "Recipient unavailable - delivery delayed",
    "AR": "Improper international paperwork",
    "AS": "Hold due to customs documentation problems",
    "AT": "Unable to contact recipient for broker information",
    "AU": "Civil event related delay",
    "AV": "Exceeds service limitations",
    "AW": "Past cut-off time",
    "AX": "Insufficient pick-up time",
    "AY": "Missed pick-up",
    "AZ": "Alternate carrier delivered",
    "B1": "Consignee closed",
    "B2": "Trap for customer",
    "B4": "Held for payment",
    "B5": "Held for consignee",
    "B8": "Improper unloading facility or equipment",
    "B9": "Receiving time restricted",
    "BB": "Held per shipper",
    "BC": "Missing documents",
    "BD": "Border clearance",
    "BE": "Road conditions",
    "BF": "Carrier keying error",
    "BG": "Other",
    "BH": "Insufficient time to complete delivery",
    "BJ": "Customer wanted earlier delivery",
    "BK": "Prearranged appointment",
    "BP": "Load shifted",
    "BQ": "Shipment overweight",
    "BS": "Refused by customer",
    "BT": "Returned to shipper",
    "C1": "Waiting for customer pick-up",
    "C2": "Credit hold",
    "C3": "Suspended at customer request",
    "C6": "Waiting shipping instructions",
    "CA": "Customs (import or export)",
    "D1": "Carrier dispatch error",
    "D2": "Driver not available",
    "HB": "Held pending appointment",
    "P1": "Processing delay",
    "P2": "Waiting inspection",
    "RC": "Reconsigned",
    "S1": "Delivery shortage",
    "T3": "Trailer not available",
    "T7": "Insufficient delivery time",
}

# X12 AT707 (time code) → the zone the AT705/AT706 date and time are in. LT (local time at
# the status location) has no zone in the message: the parser's ``local_tz`` applies.
TIME_CODES: dict[str, dt.tzinfo | None] = {
    "UT": dt.UTC, "GM": dt.UTC, "Z": dt.UTC,
    "ET": zoneinfo.ZoneInfo("America/New_York"), "ES": dt.timezone(dt.timedelta(hours=-5)), "ED": dt.timezone(dt.timedelta(hours=-4)),
    "CT": zoneinfo.ZoneInfo("America/Chicago"), "CS": dt.timezone(dt.timedelta(hours=-6)), "CD": dt.timezone(dt.timedelta(hours=-5)),
    "MT": zoneinfo.ZoneInfo("America/Denver"), "MS": dt.timezone(dt.timedelta(hours=-7)), "MD": dt.timezone(dt.timedelta(hours=-6)),
    "PT": zoneinfo.ZoneInfo("America/Los_Angeles"), "PS": dt.timezone(dt.timedelta(hours=-8)), "PD": dt.timezone(dt.timedelta(hours=-7)),
    "AT": zoneinfo.ZoneInfo("America/Halifax"), "AS": dt.timezone(dt.timedelta(hours=-4)), "AD": dt.timezone(dt.timedelta(hours=-3)),
    "HT": zoneinfo.ZoneInfo("Pacific/Honolulu"), "HS": dt.timezone(dt.timedelta(hours=-10)),
    "NT": zoneinfo.ZoneInfo("America/St_Johns"),
    "LT": None,
}

# AfterShip tag → (the EDI 214 status code it matches, the shipment event action). The
# pairs follow the plant's own shipments (tests and simulator use the same codes).
TAG_CODES: dict[str, tuple[str | None, str]] = {
    "Pending": (None, "StatusUpdated"),
    "InfoReceived": ("X3", "StatusUpdated"),
    "InTransit": ("X6", "StatusUpdated"),
    "OutForDelivery": ("X1", "StatusUpdated"),
    "AttemptFail": ("AH", "StatusUpdated"),
    "AvailableForPickup": ("AV", "StatusUpdated"),
    "Delivered": ("D1", "Delivered"),
    "Exception": ("SD", "Exception"),
    "Expired": (None, "StatusUpdated"),
}

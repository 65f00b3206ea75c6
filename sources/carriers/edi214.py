"""EDI 214 (X12 Transportation Carrier Shipment Status Message) as text.

The envelopes are optional: ``ISA … IEA`` (its element separator, component separator
and segment terminator are read from the ISA segment itself) and ``GS*QM … GE``; without
them the text starts at ``ST*214`` with ``*`` between elements and ``~`` (or a line
break) after each segment. One interchange may hold several 214 transaction sets.

Per transaction set (``ST … SE``):

- ``B10`` — B1001 the carrier's reference (PRO, the tracking number), B1002 the shipper's
  shipment identification, B1003 the carrier's SCAC;
- ``L11`` — references by qualifier (``BM`` bill of lading, ``PO`` purchase order, ``CN``
  carrier's reference, ``SI`` shipper's identifying number, ``DO`` delivery order: the
  shipper's delivery document);
- ``LX`` loops, each with ``AT7`` statuses (AT701 status code, AT702 reason code, AT703 /
  AT704 appointment status and reason, AT705 date CCYYMMDD, AT706 time HHMM[SS], AT707
  time code), each ``AT7`` followed by its ``MS1`` location (city, state, country, or
  longitude/latitude) and ``MS2`` equipment (SCAC, equipment number, type), and ``AT8``
  weights and quantities (qualifier, unit, weight, lading quantities);
- ``SE`` — SE01 the number of segments from ST to SE, SE02 the ST control number.

A message is all or nothing: the first fault raises ``Edi214Error`` naming the segment,
its position and the element, e.g. ``AT7 element 5: bad date '20261399' (segment 7)``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation

from ..events import EventRegistry, SourceEvent
from .codes import REASON_CODES, STATUS_CODES, TIME_CODES
from .status import CarrierStatus, status_events

__all__ = ["Edi214Error", "Edi214Message", "Edi214Status", "parse_edi214"]

MAX_BYTES = 5 * 1024 * 1024
_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{1,2}$")
REFERENCE_NAMES = {"BM": "BillOfLading", "PO": "PurchaseOrder", "DO": "DeliveryDocument", "SI": "ShipperReference", "CN": "CarrierReference"}


class Edi214Error(ValueError):
    """An EDI 214 that cannot be taken; ``segment``, ``position`` and ``element`` say where."""

    def __init__(self, segment: str | None, position: int | None, element: int | None, problem: str) -> None:
        where = segment or "message"
        if element is not None:
            where += f" element {element}"
        text = f"{where}: {problem}"
        if position is not None:
            text += f" (segment {position})"
        super().__init__(text)
        self.segment = segment
        self.position = position
        self.element = element


@dataclasses.dataclass(frozen=True, slots=True)
class _Segment:
    id: str
    elements: tuple[str, ...]  # elements[0] is element 1
    position: int

    def get(self, n: int) -> str:
        return self.elements[n - 1].strip() if len(self.elements) >= n else ""

    def fail(self, element: int | None, problem: str) -> Edi214Error:
        return Edi214Error(self.id, self.position, element, problem)


@dataclasses.dataclass(frozen=True, slots=True)
class Edi214Status:
    """One AT7 status with its location and equipment."""

    status_code: str | None
    reason_code: str | None
    appointment_status_code: str | None
    appointment_reason_code: str | None
    occurred_at: dt.datetime
    time_code: str
    city: str | None = None
    state: str | None = None
    country: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    equipment_scac: str | None = None
    equipment_number: str | None = None
    equipment_type: str | None = None
    lx: int = 0  # the LX loop it came in

    @property
    def location(self) -> str | None:
        text = ", ".join(p for p in (self.city, self.state, self.country) if p)
        if text:
            return text
        if self.latitude is not None and self.longitude is not None:
            return f"{self.latitude:.5f},{self.longitude:.5f}"
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class Weight:
    """An AT8: weight with its qualifier and unit, and lading quantities."""

    qualifier: str
    unit: str
    weight: Decimal | None
    lading_quantity: int | None
    lx: int


@dataclasses.dataclass(frozen=True, slots=True)
class Edi214Message:
    """One 214 transaction set."""

    control_number: str
    carrier_reference: str  # B1001: the PRO / tracking number
    shipment_identification: str | None  # B1002
    scac: str  # B1003
    references: dict[str, list[str]]  # L11 by qualifier (header and LX loops)
    statuses: list[Edi214Status]
    weights: list[Weight]
    interchange_control_number: str | None = None
    group_control_number: str | None = None

    @property
    def tracking_number(self) -> str:
        return self.carrier_reference

    def carrier_statuses(self) -> list[CarrierStatus]:
        """Each AT7 as a ``CarrierStatus`` (appointment-only AT7s are left out)."""
        refs = {name: self.references[q][0] for q, name in REFERENCE_NAMES.items() if self.references.get(q)}
        if self.shipment_identification:
            refs["ShipmentIdentification"] = self.shipment_identification
        out = []
        for s in self.statuses:
            if s.status_code is None:
                continue
            code = STATUS_CODES[s.status_code]
            extra: dict[str, object] = {}
            lx_weights = [w for w in self.weights if w.lx in (s.lx, 0) and w.weight is not None]
            if lx_weights:
                w = lx_weights[-1]
                extra.update({"Weight": str(w.weight), "WeightUnit": w.unit, "WeightQualifier": w.qualifier})
                if w.lading_quantity is not None:
                    extra["LadingQuantity"] = w.lading_quantity
            if s.equipment_number:
                extra["EquipmentNumber"] = s.equipment_number
            out.append(
                CarrierStatus(
                    channel="edi214",
                    tracking_number=self.carrier_reference,
                    carrier=self.scac,
                    tag=code.tag,
                    status_code=s.status_code,
                    action=code.action,
                    occurred_at=s.occurred_at,
                    description=code.description,
                    location=s.location,
                    reason_code=s.reason_code,
                    reason=REASON_CODES.get(s.reason_code or "") if s.reason_code else None,
                    estimated_delivery_at=s.occurred_at if code.estimate and s.status_code in ("AG", "X2") else None,
                    references=refs,
                    extra=extra,
                )
            )
        return out

    def events(self, registry: EventRegistry, *, source: str = "/carriers/edi214/tms") -> list[SourceEvent]:
        """The shipment events of this message (see ``sources.carriers.status``)."""
        return status_events(self.carrier_statuses(), registry, source=source)


# --- lexing ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Delimiters:
    element: str
    component: str
    segment: str


def _delimiters(text: str) -> Delimiters:
    if text.startswith("ISA"):
        if len(text) < 106:
            raise Edi214Error("ISA", 1, None, "shorter than the 106 characters of an ISA segment")
        element = text[3]
        parts = text.split(element, 16)
        if len(parts) < 17 or len(parts[16]) < 2:
            raise Edi214Error("ISA", 1, None, "does not have 16 elements")
        component, segment = parts[16][0], parts[16][1]
        if segment in "\r\n":
            segment = "\n"
        if element.isalnum() or segment.isalnum() or len({element, component, segment}) < 3:
            raise Edi214Error("ISA", 1, None, f"separators {element!r}, {component!r}, {segment!r} are not usable")
        return Delimiters(element, component, segment)
    if not (text.startswith("ST") or text.startswith("GS")):
        raise Edi214Error(None, None, None, "expected an ISA, GS or ST segment at the start")
    element = text[2]
    if element.isalnum() or element.isspace():
        raise Edi214Error(text[:2], 1, None, f"element separator {element!r} is not usable")
    segment = "~" if "~" in text else "\n"
    return Delimiters(element, ":", segment)


def _segments(text: str, d: Delimiters) -> Iterator[_Segment]:
    position = 0
    for raw in text.split(d.segment):
        raw = raw.strip("\r\n\t ")
        if not raw:
            continue
        position += 1
        fields = raw.split(d.element)
        seg_id = fields[0].strip()
        if not _SEGMENT_ID.match(seg_id):
            raise Edi214Error(seg_id[:10] or None, position, None, f"not a segment id: {seg_id[:10]!r}")
        yield _Segment(seg_id, tuple(fields[1:]), position)


# --- values ------------------------------------------------------------------------------


def _date(seg: _Segment, n: int) -> dt.date:
    raw = seg.get(n)
    if not raw:
        raise seg.fail(n, "date missing")
    if not re.fullmatch(r"\d{8}", raw):
        raise seg.fail(n, f"bad date {raw!r} (expected CCYYMMDD)")
    try:
        return dt.date(int(raw[:4]), int(raw[4:6]), int(raw[6:]))
    except ValueError:
        raise seg.fail(n, f"bad date {raw!r}") from None


def _clock(seg: _Segment, n: int) -> dt.time:
    raw = seg.get(n)
    if not raw:
        raise seg.fail(n, "time missing")
    if not re.fullmatch(r"\d{4}(\d{2}(\d{1,2})?)?", raw):
        raise seg.fail(n, f"bad time {raw!r} (expected HHMM or HHMMSS)")
    hh, mm, ss = int(raw[:2]), int(raw[2:4]), int(raw[4:6] or 0)
    if hh > 23 or mm > 59 or ss > 59:
        raise seg.fail(n, f"bad time {raw!r}")
    return dt.time(hh, mm, ss)


def _decimal(seg: _Segment, n: int, what: str) -> Decimal | None:
    raw = seg.get(n)
    if not raw:
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise seg.fail(n, f"bad {what} {raw!r}") from None
    if not value.is_finite() or value < 0:
        raise seg.fail(n, f"bad {what} {raw!r}")
    return value


def _float(seg: _Segment, n: int, what: str, bound: float) -> float | None:
    raw = seg.get(n)
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise seg.fail(n, f"bad {what} {raw!r}") from None
    if not -bound <= value <= bound:
        raise seg.fail(n, f"{what} {raw!r} out of range")
    return value


# --- parsing -----------------------------------------------------------------------------


def parse_edi214(text: str | bytes, *, local_tz: dt.tzinfo = dt.UTC, strict_codes: bool = True) -> list[Edi214Message]:
    """Every 214 transaction set of ``text``, or ``Edi214Error`` at the first fault.

    ``local_tz`` places AT706 times with time code LT (local time) or none.
    ``strict_codes`` refuses AT701 status codes outside ``codes.STATUS_CODES``.
    """
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise Edi214Error(None, None, None, f"over {MAX_BYTES} bytes")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            text = text.decode("latin-1")
    if len(text) > MAX_BYTES:
        raise Edi214Error(None, None, None, f"over {MAX_BYTES} characters")
    text = text.lstrip("\ufeff \r\n\t")
    if not text:
        raise Edi214Error(None, None, None, "empty message")
    d = _delimiters(text)
    segments = list(_segments(text, d))
    return _Parser(segments, local_tz, strict_codes).interchange()


class _Parser:
    def __init__(self, segments: list[_Segment], local_tz: dt.tzinfo, strict_codes: bool) -> None:
        self.segments = segments
        self.i = 0
        self.local_tz = local_tz
        self.strict_codes = strict_codes

    def peek(self) -> _Segment | None:
        return self.segments[self.i] if self.i < len(self.segments) else None

    def take(self) -> _Segment:
        seg = self.segments[self.i]
        self.i += 1
        return seg

    def expect(self, seg_id: str, after: str) -> _Segment:
        seg = self.peek()
        if seg is None:
            last = self.segments[-1] if self.segments else None
            raise Edi214Error(seg_id, last.position + 1 if last else None, None, f"missing after {after}")
        if seg.id != seg_id:
            raise seg.fail(None, f"expected {seg_id} after {after}")
        return self.take()

    def interchange(self) -> list[Edi214Message]:
        first = self.peek()
        assert first is not None
        if first.id != "ISA":
            messages = self.groups(None)
        else:
            isa = self.take()
            control = isa.get(13)
            if not re.fullmatch(r"\d{9}", control):
                raise isa.fail(13, f"bad interchange control number {control!r}")
            groups_before = self.i
            messages = self.groups(control)
            group_count = sum(1 for s in self.segments[groups_before:self.i] if s.id == "GS")
            iea = self.expect("IEA", "the last group")
            if iea.get(2) != control:
                raise iea.fail(2, f"control number {iea.get(2)!r} does not match ISA13 {control!r}")
            if iea.get(1) != str(group_count):
                raise iea.fail(1, f"says {iea.get(1)!r} groups, the interchange has {group_count}")
        extra = self.peek()
        if extra is not None:
            raise extra.fail(None, "after the end of the interchange")
        if not messages:
            raise Edi214Error("ST", None, None, "no 214 transaction set in the message")
        return messages

    def groups(self, interchange: str | None) -> list[Edi214Message]:
        out: list[Edi214Message] = []
        while (seg := self.peek()) is not None and seg.id in ("GS", "ST"):
            if seg.id == "ST":
                if interchange is not None:
                    raise seg.fail(None, "a transaction set inside ISA needs a GS group")
                out.append(self.transaction(None, None))
                continue
            gs = self.take()
            if gs.get(1) != "QM":
                raise gs.fail(1, f"functional group {gs.get(1)!r} is not QM (shipment status)")
            control = gs.get(6)
            if not control.isdigit():
                raise gs.fail(6, f"bad group control number {control!r}")
            count = 0
            while (nxt := self.peek()) is not None and nxt.id == "ST":
                out.append(self.transaction(interchange, control))
                count += 1
            ge = self.expect("GE", "the group's transaction sets")
            if ge.get(2) != control:
                raise ge.fail(2, f"control number {ge.get(2)!r} does not match GS06 {control!r}")
            if ge.get(1) != str(count):
                raise ge.fail(1, f"says {ge.get(1)!r} transaction sets, the group has {count}")
        return out

    def transaction(self, interchange: str | None, group: str | None) -> Edi214Message:
        st = self.take()
        if st.get(1) != "214":
            raise st.fail(1, f"transaction set {st.get(1)!r} is not a 214")
        control = st.get(2)
        if not control:
            raise st.fail(2, "control number missing")
        start = self.i - 1
        b10 = self.expect("B10", "ST")
        reference, shipment_id, scac = b10.get(1), b10.get(2) or None, b10.get(3)
        if not re.fullmatch(r"[A-Z0-9]{2,4}", scac):
            raise b10.fail(3, f"bad SCAC {scac!r}")
        references: dict[str, list[str]] = {}
        statuses: list[Edi214Status] = []
        weights: list[Weight] = []
        lx = 0
        while True:
            seg = self.peek()
            if seg is None:
                raise Edi214Error("SE", self.segments[-1].position + 1, None, f"missing: transaction set {control} has no end")
            if seg.id == "SE":
                break
            self.take()
            if seg.id in ("ST", "GS", "GE", "ISA", "IEA"):
                raise seg.fail(None, f"inside transaction set {control} (no SE before it)")
            if seg.id == "B10":
                raise seg.fail(None, "a second B10 in one transaction set")
            if seg.id == "L11":
                value, qualifier = seg.get(1), seg.get(2)
                if not value or not qualifier:
                    raise seg.fail(1 if not value else 2, "reference and qualifier are required")
                references.setdefault(qualifier, []).append(value)
            elif seg.id == "LX":
                number = seg.get(1)
                if not number.isdigit():
                    raise seg.fail(1, f"bad assigned number {number!r}")
                lx = int(number)
            elif seg.id == "AT7":
                if lx == 0:
                    raise seg.fail(None, "outside an LX loop")
                statuses.append(self.at7(seg, lx))
            elif seg.id == "MS1":
                if not statuses or statuses[-1].lx != lx:
                    raise seg.fail(None, "without an AT7 before it in its LX loop")
                statuses[-1] = self.ms1(seg, statuses[-1])
            elif seg.id == "MS2":
                if not statuses or statuses[-1].lx != lx:
                    raise seg.fail(None, "without an AT7 before it in its LX loop")
                statuses[-1] = dataclasses.replace(
                    statuses[-1], equipment_scac=seg.get(1) or None, equipment_number=seg.get(2) or None,
                    equipment_type=seg.get(3) or None,
                )
            elif seg.id == "AT8":
                weights.append(self.at8(seg, lx))
            # Other 214 segments (N1 loops, MS3, MAN, K1, Q7, …) carry nothing ordergraph reads.
        se = self.take()
        count = self.i - start
        if se.get(1) != str(count):
            raise se.fail(1, f"says {se.get(1)!r} segments, the transaction set has {count}")
        if se.get(2) != control:
            raise se.fail(2, f"control number {se.get(2)!r} does not match ST02 {control!r}")
        if not reference:
            reference = (references.get("CN") or [""])[0]
        if not reference:
            raise b10.fail(1, "no carrier reference (PRO / tracking number), and no L11 CN")
        if not statuses:
            raise st.fail(None, f"transaction set {control} has no AT7 status")
        return Edi214Message(
            control_number=control,
            carrier_reference=reference,
            shipment_identification=shipment_id,
            scac=scac,
            references=references,
            statuses=statuses,
            weights=weights,
            interchange_control_number=interchange,
            group_control_number=group,
        )

    def at7(self, seg: _Segment, lx: int) -> Edi214Status:
        status, reason = seg.get(1) or None, seg.get(2) or None
        appointment, appointment_reason = seg.get(3) or None, seg.get(4) or None
        if status is None and appointment is None:
            raise seg.fail(1, "neither a shipment status (element 1) nor an appointment status (element 3)")
        if (status is None) != (reason is None):
            raise seg.fail(2 if status else 1, "status code and reason code go together")
        if (appointment is None) != (appointment_reason is None):
            raise seg.fail(4 if appointment else 3, "appointment status and reason go together")
        if status is not None and status not in STATUS_CODES and self.strict_codes:
            raise seg.fail(1, f"unknown shipment status code {status!r}")
        if reason is not None and not re.fullmatch(r"[A-Z0-9]{2}", reason):
            raise seg.fail(2, f"bad reason code {reason!r}")
        day = _date(seg, 5)
        clock = _clock(seg, 6)
        time_code = seg.get(7) or "LT"
        if time_code not in TIME_CODES:
            raise seg.fail(7, f"unknown time code {time_code!r}")
        tz = TIME_CODES[time_code] or self.local_tz
        occurred = dt.datetime.combine(day, clock, tzinfo=tz).astimezone(dt.UTC)
        return Edi214Status(status, reason, appointment, appointment_reason, occurred, time_code, lx=lx)

    def ms1(self, seg: _Segment, status: Edi214Status) -> Edi214Status:
        city, state, country = seg.get(1) or None, seg.get(2) or None, seg.get(3) or None
        longitude = _float(seg, 4, "longitude", 180.0)
        latitude = _float(seg, 5, "latitude", 90.0)
        if seg.get(6) == "W" and longitude is not None:
            longitude = -abs(longitude)
        if seg.get(7) == "S" and latitude is not None:
            latitude = -abs(latitude)
        if city is None and longitude is None:
            raise seg.fail(1, "neither a city (element 1) nor a longitude and latitude (elements 4, 5)")
        if country is not None and not re.fullmatch(r"[A-Z]{2,3}", country):
            raise seg.fail(3, f"bad country code {country!r}")
        return dataclasses.replace(status, city=city, state=state, country=country, latitude=latitude, longitude=longitude)

    def at8(self, seg: _Segment, lx: int) -> Weight:
        qualifier, unit = seg.get(1), seg.get(2)
        weight = _decimal(seg, 3, "weight")
        if weight is not None and (not qualifier or not unit):
            raise seg.fail(1 if not qualifier else 2, "a weight needs its qualifier and unit")
        if unit and unit not in ("L", "K", "E", "M", "S"):
            raise seg.fail(2, f"unknown weight unit {unit!r} (L pounds, K kilograms, …)")
        quantity = seg.get(4)
        if quantity and not quantity.isdigit():
            raise seg.fail(4, f"bad lading quantity {quantity!r}")
        return Weight(qualifier, unit, weight, int(quantity) if quantity else None, lx)

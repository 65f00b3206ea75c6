"""OData v2 primitive values as SAP Gateway serves them, and as filter literals.

JSON (``$format=json``, OData v2 "verbose" JSON) carries:

- ``Edm.DateTime`` as ``"/Date(1700000000000)/"`` — milliseconds since the epoch, UTC by
  convention; SAP date fields (DATS) are midnight UTC of the day.
- ``Edm.DateTimeOffset`` as ``"/Date(1700000000000+0000)/"`` — the same instant with an
  offset in minutes (SAP sends ``+0000``).
- ``Edm.Time`` as ``"PT14H30M00S"`` (an xs:duration since midnight).
- ``Edm.Decimal`` as a string (``"2656.24"``), so no precision is lost in JSON numbers.
- SAP's ``TIMESTAMP`` (``Edm.Decimal`` precision 15) as ``"20200723125718"``
  (YYYYMMDDhhmmss, UTC), e.g. ``A_ProductionOrder_2.LastChangeDateTime``.

URI literals for ``$filter`` follow the OData v2 URI conventions: ``'text'`` (quotes
doubled), ``datetime'2026-11-30T08:00:00'``, ``datetimeoffset'2026-11-30T08:00:00Z'``,
``time'PT14H30M00S'``, ``12.50M`` (decimal), ``true``/``false``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from decimal import Decimal
from typing import Any

__all__ = [
    "EdmValueError",
    "format_time",
    "literal",
    "parse_date",
    "parse_datetime",
    "parse_decimal",
    "parse_sap_timestamp",
    "parse_time",
]

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_DATE_RE = re.compile(r"^/Date\((-?\d{1,15})(?:([+-])(\d{1,4}))?\)/$")
_TIME_RE = re.compile(r"^PT(?:(\d{1,2})H)?(?:(\d{1,2})M)?(?:(\d{1,2})(?:\.(\d{1,7}))?S)?$")
_TIMESTAMP_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.\d+)?$")


class EdmValueError(ValueError):
    """A value that is not what its Edm type says it is."""


def parse_datetime(value: Any) -> dt.datetime | None:
    """``/Date(ms)/`` or ``/Date(ms+0000)/`` (or an ISO 8601 string) → an aware UTC datetime.

    The milliseconds are the instant in UTC whatever the offset says; the offset (minutes)
    only tells the zone the source displayed it in. ``None`` and ``""`` give ``None``.
    """
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if not isinstance(value, str):
        raise EdmValueError(f"expected an Edm.DateTime string, got {type(value).__name__}")
    m = _DATE_RE.match(value)
    if m is not None:
        ms = int(m.group(1))
        if m.group(3) is not None and int(m.group(3)) > 24 * 60:
            raise EdmValueError(f"bad offset in {value!r}")
        try:
            return EPOCH + dt.timedelta(milliseconds=ms)
        except OverflowError as exc:
            raise EdmValueError(f"date out of range: {value!r}") from exc
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise EdmValueError(f"not an Edm.DateTime: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def parse_date(value: Any) -> dt.date | None:
    """An SAP date field (``/Date(ms)/`` at midnight UTC, or ISO) → the calendar day."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and len(value) == 10 and value[4] == "-":
        try:
            return dt.date.fromisoformat(value)
        except ValueError as exc:
            raise EdmValueError(f"not a date: {value!r}") from exc
    parsed = parse_datetime(value)
    return None if parsed is None else parsed.astimezone(dt.UTC).date()


def parse_time(value: Any) -> dt.time | None:
    """``PT14H30M00S`` (Edm.Time) → ``datetime.time(14, 30)``; ``None``/``""`` → ``None``."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise EdmValueError(f"expected an Edm.Time string, got {type(value).__name__}")
    m = _TIME_RE.match(value)
    if m is None or value == "PT":
        raise EdmValueError(f"not an Edm.Time: {value!r}")
    hours, minutes, seconds = (int(g) if g else 0 for g in m.group(1, 2, 3))
    fraction = (m.group(4) or "").ljust(6, "0")[:6]
    if hours == 24 and minutes == 0 and seconds == 0:
        return dt.time(23, 59, 59, 999999)  # SAP's end of day
    if hours > 23 or minutes > 59 or seconds > 59:
        raise EdmValueError(f"time out of range: {value!r}")
    return dt.time(hours, minutes, seconds, int(fraction))


def format_time(value: dt.time) -> str:
    """``datetime.time(14, 30)`` → ``PT14H30M00S``."""
    return f"PT{value.hour:02d}H{value.minute:02d}M{value.second:02d}S"


def parse_decimal(value: Any) -> Decimal | None:
    """``"2656.24"`` (Edm.Decimal) → ``Decimal('2656.24')``; numbers are accepted too."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise EdmValueError("expected an Edm.Decimal, got a boolean")
    if isinstance(value, (int, Decimal)):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if not isinstance(value, str):
        raise EdmValueError(f"expected an Edm.Decimal string, got {type(value).__name__}")
    try:
        parsed = Decimal(value.strip())
    except decimal.InvalidOperation as exc:
        raise EdmValueError(f"not an Edm.Decimal: {value!r}") from exc
    if not parsed.is_finite():
        raise EdmValueError(f"not a finite Edm.Decimal: {value!r}")
    return parsed


def parse_sap_timestamp(value: Any) -> dt.datetime | None:
    """SAP's ``TIMESTAMP`` as ``Edm.Decimal`` (``"20200723125718"``, UTC) → aware datetime.

    Also takes ``/Date(...)/`` and ISO strings, since services differ in how they expose it;
    ``0`` (SAP's initial value) gives ``None``.
    """
    if value is None or value == "" or value == "0" or value == 0:
        return None
    if isinstance(value, (int, Decimal)):
        value = str(int(value))
    if isinstance(value, str) and value.startswith("/Date("):
        return parse_datetime(value)
    if not isinstance(value, str):
        raise EdmValueError(f"expected a timestamp, got {type(value).__name__}")
    m = _TIMESTAMP_RE.match(value)
    if m is None:
        return parse_datetime(value)
    try:
        return dt.datetime(*(int(g) for g in m.groups()), tzinfo=dt.UTC)
    except ValueError as exc:
        raise EdmValueError(f"not a timestamp: {value!r}") from exc


def literal(value: Any, kind: str | None = None) -> str:
    """A Python value as an OData v2 URI literal for ``$filter``.

    ``kind`` picks the Edm type where Python's is ambiguous: ``"datetime"`` (no zone,
    UTC wall time), ``"datetimeoffset"`` (the default for datetimes), ``"timestamp"``
    (SAP's decimal YYYYMMDDhhmmss), ``"decimal"``.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        utc = (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
        if kind == "datetime":
            return f"datetime'{utc.strftime('%Y-%m-%dT%H:%M:%S')}'"
        if kind == "timestamp":
            return f"{utc.strftime('%Y%m%d%H%M%S')}M"
        if kind not in (None, "datetimeoffset"):
            raise ValueError(f"unknown literal kind {kind!r} for a datetime")
        return f"datetimeoffset'{utc.strftime('%Y-%m-%dT%H:%M:%SZ')}'"
    if isinstance(value, dt.date):
        return f"datetime'{value.isoformat()}T00:00:00'"
    if isinstance(value, dt.time):
        return f"time'{format_time(value)}'"
    if isinstance(value, Decimal) or (kind == "decimal" and isinstance(value, (int, float))):
        return f"{Decimal(value) if not isinstance(value, float) else Decimal(repr(value))}M"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value!r}d"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no OData literal for {type(value).__name__}")

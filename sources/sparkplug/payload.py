"""Sparkplug B payloads (``org.eclipse.tahu.protobuf.Payload``) as plain Python values.

``decode_payload`` turns the protobuf bytes into a ``Payload`` of ``Metric``s whose
``value`` is a Python value of the metric's datatype (int, float, bool, str, bytes,
datetime, list for arrays, a dict for a DataSet); ``encode_payload`` does the reverse.
Anything that is not a valid payload raises ``SparkplugError`` naming the metric.

The protobuf classes come from ``sparkplug_b_pb2`` (generated, checked in; see
``sources/sparkplug/README.md``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import struct
from typing import Any

from google.protobuf.message import DecodeError, EncodeError

from . import sparkplug_b_pb2 as pb
from .errors import SparkplugError

__all__ = ["DataType", "Metric", "Payload", "decode_payload", "encode_payload"]

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MAX_METRICS = 100_000  # a bound on one message's work


class DataType(enum.IntEnum):
    """Sparkplug B metric datatypes (the specification's numbering)."""

    Unknown = 0
    Int8 = 1
    Int16 = 2
    Int32 = 3
    Int64 = 4
    UInt8 = 5
    UInt16 = 6
    UInt32 = 7
    UInt64 = 8
    Float = 9
    Double = 10
    Boolean = 11
    String = 12
    DateTime = 13
    Text = 14
    UUID = 15
    DataSet = 16
    Bytes = 17
    File = 18
    Template = 19
    PropertySet = 20
    PropertySetList = 21
    Int8Array = 22
    Int16Array = 23
    Int32Array = 24
    Int64Array = 25
    UInt8Array = 26
    UInt16Array = 27
    UInt32Array = 28
    UInt64Array = 29
    FloatArray = 30
    DoubleArray = 31
    BooleanArray = 32
    StringArray = 33
    DateTimeArray = 34


_SIGNED_BITS = {DataType.Int8: 8, DataType.Int16: 16, DataType.Int32: 32, DataType.Int64: 64}
_UNSIGNED_BITS = {DataType.UInt8: 8, DataType.UInt16: 16, DataType.UInt32: 32, DataType.UInt64: 64}
_ARRAY_FORMATS = {
    DataType.Int8Array: "b", DataType.Int16Array: "h", DataType.Int32Array: "i", DataType.Int64Array: "q",
    DataType.UInt8Array: "B", DataType.UInt16Array: "H", DataType.UInt32Array: "I", DataType.UInt64Array: "Q",
    DataType.FloatArray: "f", DataType.DoubleArray: "d", DataType.DateTimeArray: "q",
}
_STRINGS = (DataType.String, DataType.Text, DataType.UUID)


@dataclasses.dataclass(slots=True)
class Metric:
    """One metric of a payload. ``name`` is None in DATA messages that send only aliases."""

    name: str | None = None
    alias: int | None = None
    datatype: DataType | None = None  # optional in DATA (the birth declared it)
    value: Any = None
    timestamp: dt.datetime | None = None
    is_null: bool = False
    is_historical: bool = False
    is_transient: bool = False


@dataclasses.dataclass(slots=True)
class Payload:
    """A Sparkplug B payload. ``seq`` is absent in NDEATH and commands."""

    timestamp: dt.datetime | None = None
    metrics: list[Metric] = dataclasses.field(default_factory=list)
    seq: int | None = None
    uuid: str | None = None
    body: bytes | None = None

    def metric(self, name: str) -> Metric | None:
        """The first metric called ``name`` (births and deaths carry names)."""
        return next((m for m in self.metrics if m.name == name), None)


def _ms(value: int) -> dt.datetime:
    try:
        return EPOCH + dt.timedelta(milliseconds=value)
    except OverflowError as exc:
        raise SparkplugError(f"timestamp {value} out of range") from exc


def _to_ms(value: dt.datetime) -> int:
    if value.tzinfo is None:
        raise SparkplugError("timestamps must be timezone-aware")
    return int((value - EPOCH) / dt.timedelta(milliseconds=1))


def _label(m: Any, index: int) -> str:
    if m.HasField("name") and m.name:
        return f"metric {m.name!r}"
    if m.HasField("alias"):
        return f"metric alias {m.alias}"
    return f"metric #{index}"


def decode_payload(data: bytes, *, datatypes: dict[int, DataType] | None = None) -> Payload:
    """Decode a Sparkplug B payload; ``datatypes`` (alias → type, from the birth) types
    DATA metrics that omit their datatype."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SparkplugError("payload must be bytes")
    raw = pb.Payload()
    try:
        raw.ParseFromString(bytes(data))
    except (DecodeError, RuntimeWarning) as exc:
        raise SparkplugError(f"payload is not a Sparkplug B protobuf: {exc}") from exc
    if len(raw.metrics) > MAX_METRICS:
        raise SparkplugError(f"payload has {len(raw.metrics)} metrics, over {MAX_METRICS}")
    if raw.HasField("seq") and raw.seq > 255:
        raise SparkplugError(f"seq {raw.seq} out of range 0..255")
    metrics = []
    for i, m in enumerate(raw.metrics):
        label = _label(m, i)
        if not (m.HasField("name") and m.name) and not m.HasField("alias"):
            raise SparkplugError(f"{label}: neither a name nor an alias")
        datatype: DataType | None = None
        if m.HasField("datatype"):
            try:
                datatype = DataType(m.datatype)
            except ValueError:
                raise SparkplugError(f"{label}: unknown datatype {m.datatype}") from None
        elif m.HasField("alias") and datatypes and m.alias in datatypes:
            datatype = datatypes[m.alias]
        is_null = m.HasField("is_null") and m.is_null
        value = None if is_null else _decode_value(m, datatype, label)
        metrics.append(
            Metric(
                name=m.name if m.HasField("name") and m.name else None,
                alias=m.alias if m.HasField("alias") else None,
                datatype=datatype,
                value=value,
                timestamp=_ms(m.timestamp) if m.HasField("timestamp") else None,
                is_null=is_null,
                is_historical=m.HasField("is_historical") and m.is_historical,
                is_transient=m.HasField("is_transient") and m.is_transient,
            )
        )
    return Payload(
        timestamp=_ms(raw.timestamp) if raw.HasField("timestamp") else None,
        metrics=metrics,
        seq=raw.seq if raw.HasField("seq") else None,
        uuid=raw.uuid if raw.HasField("uuid") else None,
        body=raw.body if raw.HasField("body") else None,
    )


def _decode_value(m: Any, datatype: DataType | None, label: str) -> Any:
    which = m.WhichOneof("value")
    if which is None:
        return None
    raw = getattr(m, which)
    if datatype is None:
        # Untyped (an alias the birth did not declare): the wire type is all we know.
        return raw if which not in ("dataset_value", "template_value", "extension_value") else None
    expected = _field_for(datatype)
    if expected is not None and which != expected:
        raise SparkplugError(f"{label}: {datatype.name} value sent in {which}")
    if datatype in _SIGNED_BITS:
        bits = _SIGNED_BITS[datatype]
        wire = 64 if datatype is DataType.Int64 else 32
        value = raw - (1 << wire) if raw >= 1 << (wire - 1) else raw
        if bits < wire and value >= 1 << (bits - 1):  # sent as an unsigned N-bit pattern
            value -= 1 << bits
        if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
            raise SparkplugError(f"{label}: {raw} out of range for {datatype.name}")
        return value
    if datatype in _UNSIGNED_BITS:
        if raw >= 1 << _UNSIGNED_BITS[datatype]:
            raise SparkplugError(f"{label}: {raw} out of range for {datatype.name}")
        return raw
    if datatype is DataType.DateTime:
        return _ms(raw)
    if datatype in _ARRAY_FORMATS:
        return _decode_array(raw, datatype, label)
    if datatype is DataType.BooleanArray:
        if len(raw) < 4:
            raise SparkplugError(f"{label}: BooleanArray shorter than its count")
        (count,) = struct.unpack_from("<I", raw)
        if len(raw) < 4 + (count + 7) // 8:
            raise SparkplugError(f"{label}: BooleanArray shorter than its {count} values")
        return [bool(raw[4 + i // 8] >> (7 - i % 8) & 1) for i in range(count)]
    if datatype is DataType.StringArray:
        if raw and not raw.endswith(b"\x00"):
            raise SparkplugError(f"{label}: StringArray not null-terminated")
        try:
            return [s.decode() for s in raw.split(b"\x00")[:-1]]
        except UnicodeDecodeError as exc:
            raise SparkplugError(f"{label}: StringArray not UTF-8") from exc
    if datatype is DataType.DataSet:
        return _decode_dataset(raw)
    return raw


def _decode_array(raw: bytes, datatype: DataType, label: str) -> list[Any]:
    fmt = _ARRAY_FORMATS[datatype]
    size = struct.calcsize(fmt)
    if len(raw) % size:
        raise SparkplugError(f"{label}: {datatype.name} of {len(raw)} bytes is not a whole number of values")
    values = list(struct.unpack(f"<{len(raw) // size}{fmt}", raw))
    return [_ms(v) for v in values] if datatype is DataType.DateTimeArray else values


def _decode_dataset(ds: Any) -> dict[str, Any]:
    rows = []
    for row in ds.rows:
        rows.append([getattr(e, e.WhichOneof("value")) if e.WhichOneof("value") else None for e in row.elements])
    return {"columns": list(ds.columns), "types": [DataType(t).name if t in DataType._value2member_map_ else t for t in ds.types], "rows": rows}


def _field_for(datatype: DataType) -> str | None:
    if datatype in (DataType.Int8, DataType.Int16, DataType.Int32, DataType.UInt8, DataType.UInt16, DataType.UInt32):
        return "int_value"
    if datatype in (DataType.Int64, DataType.UInt64, DataType.DateTime):
        return "long_value"
    if datatype is DataType.Float:
        return "float_value"
    if datatype is DataType.Double:
        return "double_value"
    if datatype is DataType.Boolean:
        return "boolean_value"
    if datatype in _STRINGS:
        return "string_value"
    if datatype in (DataType.Bytes, DataType.File) or datatype in _ARRAY_FORMATS or datatype in (
        DataType.BooleanArray, DataType.StringArray
    ):
        return "bytes_value"
    if datatype is DataType.DataSet:
        return "dataset_value"
    if datatype is DataType.Template:
        return "template_value"
    return None


def encode_payload(payload: Payload) -> bytes:
    """Encode a ``Payload``; every metric needs a name or an alias, and a datatype."""
    raw = pb.Payload()
    if payload.timestamp is not None:
        raw.timestamp = _to_ms(payload.timestamp)
    if payload.seq is not None:
        if not 0 <= payload.seq <= 255:
            raise SparkplugError(f"seq {payload.seq} out of range 0..255")
        raw.seq = payload.seq
    if payload.uuid is not None:
        raw.uuid = payload.uuid
    if payload.body is not None:
        raw.body = payload.body
    for metric in payload.metrics:
        m = raw.metrics.add()
        label = f"metric {metric.name!r}" if metric.name else f"metric alias {metric.alias}"
        if metric.name:
            m.name = metric.name
        if metric.alias is not None:
            m.alias = metric.alias
        if not metric.name and metric.alias is None:
            raise SparkplugError("a metric needs a name or an alias")
        if metric.timestamp is not None:
            m.timestamp = _to_ms(metric.timestamp)
        if metric.is_historical:
            m.is_historical = True
        if metric.is_transient:
            m.is_transient = True
        if metric.datatype is None:
            raise SparkplugError(f"{label}: no datatype")
        m.datatype = int(metric.datatype)
        if metric.is_null or metric.value is None:
            m.is_null = True
            continue
        _encode_value(m, metric.datatype, metric.value, label)
    try:
        return raw.SerializeToString()
    except EncodeError as exc:
        raise SparkplugError(f"cannot encode payload: {exc}") from exc


def _encode_value(m: Any, datatype: DataType, value: Any, label: str) -> None:
    try:
        if datatype in _SIGNED_BITS:
            bits = _SIGNED_BITS[datatype]
            if isinstance(value, bool) or not isinstance(value, int) or not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
                raise SparkplugError(f"{label}: {value!r} is not a {datatype.name}")
            wire = 64 if datatype is DataType.Int64 else 32
            setattr(m, _field_for(datatype) or "", value & ((1 << wire) - 1))
        elif datatype in _UNSIGNED_BITS:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << _UNSIGNED_BITS[datatype]:
                raise SparkplugError(f"{label}: {value!r} is not a {datatype.name}")
            setattr(m, _field_for(datatype) or "", value)
        elif datatype is DataType.DateTime:
            m.long_value = _to_ms(value)
        elif datatype is DataType.Float:
            m.float_value = float(value)
        elif datatype is DataType.Double:
            m.double_value = float(value)
        elif datatype is DataType.Boolean:
            if not isinstance(value, bool):
                raise SparkplugError(f"{label}: {value!r} is not a Boolean")
            m.boolean_value = value
        elif datatype in _STRINGS:
            if not isinstance(value, str):
                raise SparkplugError(f"{label}: {value!r} is not a {datatype.name}")
            m.string_value = value
        elif datatype in (DataType.Bytes, DataType.File):
            m.bytes_value = bytes(value)
        elif datatype in _ARRAY_FORMATS:
            items = [_to_ms(v) for v in value] if datatype is DataType.DateTimeArray else list(value)
            m.bytes_value = struct.pack(f"<{len(items)}{_ARRAY_FORMATS[datatype]}", *items)
        elif datatype is DataType.BooleanArray:
            bits = bytearray((len(value) + 7) // 8)
            for i, v in enumerate(value):
                if v:
                    bits[i // 8] |= 1 << (7 - i % 8)
            m.bytes_value = struct.pack("<I", len(value)) + bytes(bits)
        elif datatype is DataType.StringArray:
            m.bytes_value = b"".join(s.encode() + b"\x00" for s in value)
        else:
            raise SparkplugError(f"{label}: encoding {datatype.name} values is not supported")
    except (struct.error, TypeError, ValueError) as exc:
        if isinstance(exc, SparkplugError):
            raise
        raise SparkplugError(f"{label}: {value!r} is not a {datatype.name}: {exc}") from exc

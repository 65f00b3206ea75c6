"""AfterShip tracking webhooks.

AfterShip POSTs ``{"event": "tracking_update" | "edd_revise" | …, "event_id": "<uuid>",
"is_tracking_first_tag": bool, "ts": <unix seconds>, "msg": {<tracking>}}`` and signs the
raw body: ``aftership-hmac-sha256: base64(HMAC-SHA256(webhook secret, body))``.

From ``msg`` it reads ``tracking_number``, ``slug`` (the carrier), ``tag``, ``subtag``,
``subtag_message``, the expected delivery (``latest_estimated_delivery.datetime``, else
``expected_delivery``, else ``courier_estimated_delivery_date``, else
``aftership_estimated_delivery_date``), ``order_number``/``order_id`` (the shipper's
reference, kept as ``ShipmentIdentification``), ``signed_by`` and ``checkpoints[]``
(``checkpoint_time``, ``location`` or city/state/country, ``message``, ``tag``,
``subtag``). Every checkpoint becomes a ``CarrierStatus``; a tracking without checkpoints
gives one status from its own tag. A webhook that does not fit raises
``AfterShipError`` naming the field; nothing of it is taken.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import hmac
from typing import Any

import orjson

from ..events import EventRegistry, SourceEvent
from ..signing import SignatureError
from .codes import AFTERSHIP_TAGS, TAG_CODES
from .status import CarrierStatus, status_events

__all__ = ["HEADER", "AfterShipError", "AfterShipWebhook", "parse_webhook", "sign", "verify_signature"]

HEADER = "aftership-hmac-sha256"
MAX_BYTES = 2 * 1024 * 1024
MAX_CHECKPOINTS = 1000


class AfterShipError(ValueError):
    """A webhook body that is not an AfterShip tracking webhook; the message names the field."""


def sign(secret: str, body: bytes) -> str:
    """The ``aftership-hmac-sha256`` value for ``body`` (tests and the simulated carrier)."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def verify_signature(secret: str, body: bytes, header: str | None) -> None:
    """Check the signature over the raw body; raise ``SignatureError`` (constant-time compare)."""
    if not secret:
        raise SignatureError("no AfterShip webhook secret configured")
    if not header:
        raise SignatureError(f"missing {HEADER} header")
    try:
        given = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{HEADER} is not base64") from None
    expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, given):
        raise SignatureError(f"{HEADER} does not match the body")


@dataclasses.dataclass(frozen=True, slots=True)
class AfterShipWebhook:
    """One parsed webhook."""

    event: str
    event_id: str | None
    sent_at: dt.datetime | None
    tracking_number: str
    slug: str
    tag: str
    subtag: str | None
    expected_delivery: dt.datetime | None
    eta_window: tuple[dt.datetime, dt.datetime] | None
    signed_by: str | None
    statuses: list[CarrierStatus]

    def events(self, registry: EventRegistry, *, source: str = "/carriers/aftership/tms") -> list[SourceEvent]:
        """The shipment events of this webhook (see ``sources.carriers.status``)."""
        return status_events(self.statuses, registry, source=source)


def _field(path: str, problem: str) -> AfterShipError:
    return AfterShipError(f"{path}: {problem}")


def _text(obj: dict[str, Any], key: str, path: str, *, required: bool = False) -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        if required:
            raise _field(f"{path}.{key}", "missing")
        return None
    if not isinstance(value, str):
        raise _field(f"{path}.{key}", f"expected a string, got {type(value).__name__}")
    return value


def _time(value: Any, path: str, local_tz: dt.tzinfo) -> dt.datetime | None:
    """AfterShip times: ``YYYY-MM-DD``, ``YYYY-MM-DDTHH:mm:ss`` (the carrier's local time) or
    with an offset; empty is None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _field(path, f"expected an ISO 8601 time, got {type(value).__name__}")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise _field(path, f"not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=local_tz)
    return parsed.astimezone(dt.UTC)


def _tag(value: str | None, path: str) -> str:
    if value not in AFTERSHIP_TAGS:
        raise _field(path, f"unknown tag {value!r} (expected one of {', '.join(AFTERSHIP_TAGS)})")
    return value


def _estimate(msg: dict[str, Any], local_tz: dt.tzinfo) -> tuple[dt.datetime | None, tuple[dt.datetime, dt.datetime] | None]:
    """The latest expected delivery the webhook carries, and its window when it has one."""
    latest = msg.get("latest_estimated_delivery")
    if isinstance(latest, dict) and latest.get("datetime"):
        at = _time(latest.get("datetime"), "msg.latest_estimated_delivery.datetime", local_tz)
        lo = _time(latest.get("datetime_min"), "msg.latest_estimated_delivery.datetime_min", local_tz)
        hi = _time(latest.get("datetime_max"), "msg.latest_estimated_delivery.datetime_max", local_tz)
        return at, (lo, hi) if lo and hi else None
    if msg.get("expected_delivery"):
        raw = msg["expected_delivery"]
        at = _time(raw, "msg.expected_delivery", local_tz)
        if at is not None and isinstance(raw, str) and len(raw) == 10:  # a day: the whole day is the window
            return at, (at, at + dt.timedelta(days=1) - dt.timedelta(seconds=1))
        return at, None
    for key in ("courier_estimated_delivery_date", "aftership_estimated_delivery_date"):
        edd = msg.get(key)
        if isinstance(edd, dict) and edd.get("estimated_delivery_date"):
            at = _time(edd["estimated_delivery_date"], f"msg.{key}.estimated_delivery_date", local_tz)
            lo = _time(edd.get("estimated_delivery_date_min"), f"msg.{key}.estimated_delivery_date_min", local_tz)
            hi = _time(edd.get("estimated_delivery_date_max"), f"msg.{key}.estimated_delivery_date_max", local_tz)
            return at, (lo, hi) if lo and hi else None
    return None, None


def _location(cp: dict[str, Any], path: str) -> str | None:
    loc = cp.get("location")
    if isinstance(loc, str) and loc:
        return loc
    if loc is not None and not isinstance(loc, (str, dict)):
        raise _field(f"{path}.location", "expected a string")
    parts = [cp.get(k) for k in ("city", "state", "country_iso3")]
    text = ", ".join(p for p in parts if isinstance(p, str) and p)
    return text or None


def parse_webhook(body: bytes, *, local_tz: dt.tzinfo = dt.UTC) -> AfterShipWebhook:
    """Parse a webhook body (already verified); ``local_tz`` places times sent without an
    offset (AfterShip passes on the carrier's local time as is)."""
    if len(body) > MAX_BYTES:
        raise AfterShipError(f"body over {MAX_BYTES} bytes")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise AfterShipError(f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise AfterShipError("body: expected a JSON object")
    event = _text(doc, "event", "body", required=True) or ""
    event_id = _text(doc, "event_id", "body")
    ts = doc.get("ts")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, (int, float))):
        raise _field("ts", "expected a unix timestamp")
    sent_at = dt.datetime.fromtimestamp(ts, dt.UTC) if ts is not None else None
    msg = doc.get("msg")
    if not isinstance(msg, dict):
        raise _field("msg", "missing or not an object")
    tracking = (_text(msg, "tracking_number", "msg", required=True) or "").strip()
    slug = _text(msg, "slug", "msg", required=True) or ""
    tag = _tag(_text(msg, "tag", "msg", required=True), "msg.tag")
    subtag = _text(msg, "subtag", "msg")
    expected, window = _estimate(msg, local_tz)
    references = {}
    shipper_ref = _text(msg, "order_number", "msg") or _text(msg, "order_id", "msg")
    if shipper_ref:
        references["ShipmentIdentification"] = shipper_ref
    checkpoints = msg.get("checkpoints") or []
    if not isinstance(checkpoints, list):
        raise _field("msg.checkpoints", "expected a list")
    if len(checkpoints) > MAX_CHECKPOINTS:
        raise _field("msg.checkpoints", f"over {MAX_CHECKPOINTS} checkpoints")
    statuses: list[CarrierStatus] = []
    for i, cp in enumerate(checkpoints):
        path = f"msg.checkpoints[{i}]"
        if not isinstance(cp, dict):
            raise _field(path, "expected an object")
        cp_tag = _tag(_text(cp, "tag", path, required=True), f"{path}.tag")
        at = _time(cp.get("checkpoint_time"), f"{path}.checkpoint_time", local_tz) or _time(
            cp.get("created_at"), f"{path}.created_at", local_tz
        )
        if at is None:
            raise _field(f"{path}.checkpoint_time", "missing (and no created_at)")
        code, action = TAG_CODES[cp_tag]
        statuses.append(
            CarrierStatus(
                channel="aftership",
                tracking_number=tracking,
                carrier=_text(cp, "slug", path) or slug,
                tag=cp_tag,
                status_code=code,
                action=action,
                occurred_at=at,
                subtag=_text(cp, "subtag", path),
                description=_text(cp, "message", path) or _text(cp, "subtag_message", path),
                location=_location(cp, path),
                references=references,
            )
        )
    statuses.sort(key=lambda s: s.occurred_at)
    if statuses:
        # The tracking's expected delivery goes with its latest scan.
        last = statuses[-1]
        statuses[-1] = dataclasses.replace(last, estimated_delivery_at=expected, eta_window=window)
    else:
        code, action = TAG_CODES[tag]
        at = sent_at or _time(msg.get("updated_at"), "msg.updated_at", local_tz)
        if at is None:
            raise _field("ts", "missing, and the tracking has no checkpoints to date it")
        statuses.append(
            CarrierStatus(
                channel="aftership", tracking_number=tracking, carrier=slug, tag=tag, status_code=code,
                action="EtaRevised" if event == "edd_revise" and expected else action, occurred_at=at, subtag=subtag,
                description=_text(msg, "subtag_message", "msg"), estimated_delivery_at=expected, eta_window=window,
                references=references,
            )
        )
    return AfterShipWebhook(
        event=event,
        event_id=event_id,
        sent_at=sent_at,
        tracking_number=tracking,
        slug=slug,
        tag=tag,
        subtag=subtag,
        expected_delivery=expected,
        eta_window=window,
        signed_by=_text(msg, "signed_by", "msg"),
        statuses=statuses,
    )

"""Carrier tracking endpoints: AfterShip webhooks and EDI 214, as shipment events.

``POST /carriers/aftership`` takes AfterShip's tracking webhook, verified by its
``aftership-hmac-sha256`` signature over the raw body (``[carriers] aftership_secret``).
``POST /carriers/edi214`` takes an X12 214 as text (``Authorization: Bearer
<[carriers] edi214_token>``). Both are parsed by ``sources/carriers`` into shipment events
with the TMS codes and go through the event path's door (``EventIngress.accept_parsed``):
journaled, deduplicated, invalidating, pushed.

A message is all or nothing: a bad one gets a 400 naming the field (AfterShip) or the
segment, its position and element (EDI 214), and nothing of it is journaled. Bodies are
bounded as for ``/events`` (``[events] max_body_bytes``).
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import zoneinfo
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sources.carriers import (
    AFTERSHIP_HEADER,
    AfterShipError,
    Edi214Error,
    parse_edi214,
    parse_webhook,
    verify_signature,
)
from sources.events import EventError, SourceEvent
from sources.signing import SignatureError

from .auth import bearer_token
from .config import CarriersConfig
from .ingress import Rejection, read_body

if TYPE_CHECKING:
    from .app import Gateway

log = logging.getLogger("ordergraph.carriers")

EDI_TYPES = ("text/plain", "application/edi-x12", "application/x12", "text/x12", "application/octet-stream", "")

Endpoint = Callable[[Request], Awaitable[Response]]


def warn_if_development(config: Any) -> None:
    """Log loudly when a carrier endpoint is on with its development secret."""
    defaults = CarriersConfig()
    c = config.carriers
    for name, value, default in (
        ("aftership_secret", c.aftership_secret, defaults.aftership_secret),
        ("edi214_token", c.edi214_token, defaults.edi214_token),
    ):
        if value and value == default:
            log.warning("[carriers] %s is the development default: set your own (or empty, to turn it off)", name)


def _error(status: int, message: str, **where: object) -> JSONResponse:
    return JSONResponse({"error": message, **{k: v for k, v in where.items() if v is not None}}, status_code=status)


async def _body(request: Request, limit: int) -> bytes | Response:
    try:
        return await read_body(request, limit)
    except Rejection as exc:
        return _error(exc.status, exc.message)


def _zone(gateway: Gateway) -> dt.tzinfo:
    cfg = gateway.config
    return zoneinfo.ZoneInfo(cfg.carriers.time_zone or cfg.calendar.time_zone)


async def _journal(gateway: Gateway, events: list[SourceEvent]) -> Response:
    assert gateway.ingress is not None
    try:
        for event in events:
            # An ETA message's time is the estimate itself, in the future by nature (the
            # processor never lets it move a record's newest-seen time past now + skew).
            if event.action != "EtaRevised":
                gateway.ingress.check_window(event)
    except Rejection as exc:
        return _error(exc.status, exc.message)
    accepted = await gateway.ingress.accept_parsed(events)
    return JSONResponse(
        {"accepted": accepted.accepted, "duplicates": accepted.duplicates, "cursors": accepted.cursors},
        status_code=202,
    )


def aftership_endpoint(gateway: Gateway) -> Endpoint:
    """``POST /carriers/aftership``."""

    async def endpoint(request: Request) -> Response:
        cfg = gateway.config
        secret = cfg.carriers.aftership_secret
        if not secret:
            return _error(404, "AfterShip webhooks are off (no [carriers] aftership_secret)")
        body = await _body(request, cfg.events.max_body_bytes)
        if isinstance(body, Response):
            return body
        try:
            verify_signature(secret, body, request.headers.get(AFTERSHIP_HEADER))
        except SignatureError as exc:
            return _error(401, str(exc))
        try:
            hook = parse_webhook(body, local_tz=_zone(gateway))
            events = hook.events(gateway.registry)
        except (AfterShipError, EventError) as exc:
            return _error(400, str(exc))
        return await _journal(gateway, events)

    return endpoint


def edi214_endpoint(gateway: Gateway) -> Endpoint:
    """``POST /carriers/edi214``."""

    async def endpoint(request: Request) -> Response:
        cfg = gateway.config
        token = cfg.carriers.edi214_token
        if not token:
            return _error(404, "the EDI 214 endpoint is off (no [carriers] edi214_token)")
        given = bearer_token(request.headers.get("authorization"))
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            return JSONResponse(
                {"error": "EDI 214 needs Authorization: Bearer <[carriers] edi214_token>"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in EDI_TYPES:
            return _error(415, f"Content-Type must be text/plain or application/edi-x12 (got {ctype!r})")
        body = await _body(request, cfg.events.max_body_bytes)
        if isinstance(body, Response):
            return body
        try:
            messages = parse_edi214(body, local_tz=_zone(gateway))
            events = [e for m in messages for e in m.events(gateway.registry)]
        except Edi214Error as exc:
            return _error(400, str(exc), segment=exc.segment, position=exc.position, element=exc.element)
        except EventError as exc:
            return _error(400, str(exc))
        if not events:
            return _error(400, "no AT7 shipment status in the message: nothing to apply", segment="AT7")
        return await _journal(gateway, events)

    return endpoint

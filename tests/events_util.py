"""Helpers to build and send signed CloudEvents in tests."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import aiohttp
import orjson

from gateway.config import DEV_SECRETS
from sources.signing import HEADER, sign
from sources.simulator.emitter import EVENT_TYPES

_ids = itertools.count(1)
BATCH = "application/cloudevents-batch+json"
SINGLE = "application/cloudevents+json"


def make_event(
    system: str,
    entity: str,
    action: str,
    key: str,
    *,
    data: dict[str, Any] | None = None,
    time: dt.datetime | None = None,
    id: str | None = None,
) -> dict[str, Any]:
    etype = EVENT_TYPES[(system, entity)]
    t = time or dt.datetime.now(dt.UTC)
    return {
        "specversion": "1.0",
        "id": id or f"test-{next(_ids)}",
        "source": f"/plant/1000/{system}",
        "type": etype.type_for(action),
        "time": t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "subject": key,
        "data": data if data is not None else {etype.key_field: key},
    }


async def post_events(
    http: aiohttp.ClientSession,
    base_url: str,
    events: list[dict[str, Any]] | dict[str, Any],
    *,
    system: str | None = None,
    secret: str | None = None,
    content_type: str | None = None,
    body: bytes | None = None,
    timestamp: int | None = None,
    signature: str | None = "auto",
) -> tuple[int, dict[str, Any]]:
    """POST events signed like a source would; every part can be spoiled for tests."""
    if body is None:
        body = orjson.dumps(events)
    if system is None:
        first = events[0] if isinstance(events, list) else events
        system = first["source"].rsplit("/", 1)[-1]
    headers = {"Content-Type": content_type or (BATCH if isinstance(events, list) else SINGLE)}
    if signature == "auto":
        headers[HEADER] = sign(secret or DEV_SECRETS[system], body, timestamp)
    elif signature is not None:
        headers[HEADER] = signature
    async with http.post(f"{base_url}/events", data=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def send_changes(http: aiohttp.ClientSession, base_url: str, world: Any, changes: list[Any], **emitter: Any) -> int:
    """Send world changes as the plant would (one signed request per system); returns events sent."""
    from sources.simulator.emitter import EventEmitter

    em = EventEmitter(world, base_url, DEV_SECRETS, duplicate_rate=0, reorder_rate=0, notification_rate=0, **emitter)
    by_system: dict[str, list[dict[str, Any]]] = {}
    for change in changes:
        by_system.setdefault(change.system, []).append(em.event_for(change))
    for events in by_system.values():
        status, body = await post_events(http, base_url, events)
        assert status == 202, body
    return len(changes)

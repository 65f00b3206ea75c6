"""``/notices``: the internal page of proactive notices, and its JSON feed.

The feed lists the notices decided (newest first) with their deliveries, the outbox's
counts, events processed vs notice items decided vs notices released (the debounce's
effect), and, in the demo, the messages the local SMTP sink received.
"""

from __future__ import annotations

import time
from typing import Any


async def feed(gateway: Any, mailbox: Any, *, limit: Any = 200) -> dict[str, Any]:
    """The JSON behind ``/notices`` (internal viewers only; the route checks)."""
    try:
        n = max(1, min(int(limit), 1000))
    except (TypeError, ValueError):
        n = 200
    engine = gateway.notices
    if engine is None:
        return {"enabled": False, "notices": [], "mail": []}
    rows = await engine.outbox.notices(None, limit=n)
    counts = await engine.outbox.counts()
    processor = gateway.processor
    return {
        "enabled": True,
        "now": time.time(),
        "debounceSeconds": engine.config.debounce_seconds,
        "stats": {
            "eventsProcessed": processor.processed if processor is not None else 0,
            "ordersEvaluated": engine.observed,
            "itemsDecided": engine.decisions,
            **counts,
        },
        "notices": [
            {
                "id": notice.id,
                "customer": notice.customer or "(internal)",
                "subject": notice.subject,
                "kinds": notice.kinds,
                "items": notice.items,
                "decisions": notice.decisions,
                "status": notice.status,
                "createdAt": notice.created_at,
                "sendAt": notice.send_at,
                "deliveries": [
                    {
                        "id": d.id,
                        "channel": d.channel,
                        "target": d.target,
                        "status": d.status,
                        "attempts": d.attempts,
                        "lastError": d.last_error,
                        "sentAt": d.sent_at,
                    }
                    for d in deliveries
                ],
            }
            for notice, deliveries in rows
        ],
        "mail": mailbox.to_json(limit=n) if mailbox is not None else [],
    }

"""Signed CloudEvents for the benchmark, and the event-ingestion load generator.

``python -m bench.ingest --url http://gateway --duration D --concurrency C --batch B
--orders o1,o2,...`` posts signed batches of notification-only ERP sales-order events
(unique ids, the wall clock as their time) as fast as the gateway accepts them, and prints
one JSON line: events accepted with 202 (durably journaled), requests, refusals.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import sys
import time
import uuid
from typing import Any

import aiohttp
import orjson

from gateway.config import DEV_SECRETS
from sources.erp import EVENT_TYPES as ERP_EVENT_TYPES
from sources.signing import HEADER, sign

from .procs import raise_fd_limit

BATCH = "application/cloudevents-batch+json"
SALES_ORDER_CHANGED = ERP_EVENT_TYPES[0].type_for("Changed")


def sales_order_event(sales_order: str, event_id: str, when: dt.datetime | None = None) -> dict[str, Any]:
    """A notification-only ``SalesOrder.Changed`` event (keys, no record: the gateway re-reads)."""
    t = when or dt.datetime.now(dt.UTC)
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "/plant/1000/erp",
        "type": SALES_ORDER_CHANGED,
        "time": t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "subject": sales_order,
        "data": {"SalesOrder": sales_order},
    }


def signed_request(events: list[dict[str, Any]]) -> tuple[bytes, dict[str, str]]:
    """Body and headers of one signed batch, as the ERP would send it."""
    body = orjson.dumps(events)
    return body, {"Content-Type": BATCH, HEADER: sign(DEV_SECRETS["erp"], body)}


async def flood(url: str, duration: float, concurrency: int, batch: int, orders: list[str], headers: dict[str, str]) -> dict[str, Any]:
    """Post signed batches from ``concurrency`` loops for ``duration`` seconds."""
    run_id = uuid.uuid4().hex[:8]
    ids = itertools.count(1)
    picks = itertools.cycle(orders)
    out = {"accepted": 0, "duplicates": 0, "requests": 0, "refused": 0, "errors": 0}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), headers=headers) as http:
        deadline = time.perf_counter() + duration

        async def loop() -> None:
            while time.perf_counter() < deadline:
                events = [sales_order_event(next(picks), f"bench-{run_id}-{next(ids)}") for _ in range(batch)]
                body, hdrs = signed_request(events)
                try:
                    async with http.post(f"{url}/events", data=body, headers=hdrs) as resp:
                        answer = await resp.read()
                        out["requests"] += 1
                        if resp.status == 202:
                            got = orjson.loads(answer)
                            out["accepted"] += int(got.get("accepted", 0))
                            out["duplicates"] += int(got.get("duplicates", 0))
                        else:
                            out["refused"] += 1
                except (aiohttp.ClientError, OSError):
                    out["errors"] += 1

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        out["duration_s"] = round(time.perf_counter() - started, 3)
    out["events_per_second"] = round(out["accepted"] / max(out["duration_s"], 1e-9), 1)
    out["batch"] = batch
    out["concurrency"] = concurrency
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.ingest")
    p.add_argument("--url", required=True)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--orders", required=True)
    p.add_argument("--headers", default="{}")
    a = p.parse_args(argv)
    raise_fd_limit()
    runner = asyncio.run
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        pass
    out = runner(flood(a.url, a.duration, a.concurrency, a.batch, a.orders.split(","), json.loads(a.headers)))
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()

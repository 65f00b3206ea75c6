"""Subscription clients for the fan-out benchmark: one process holding many real WebSockets.

``python -m bench.subs --url ws://.../graphql --count N --customers c1,c2,...`` opens N
graphql-transport-ws connections (no per-message deflate), each subscribing to
``orderChanges(customer: c)`` for one customer, round-robin. It talks to the harness with
lines: ``READY <connected> <failed>`` once every subscription is sent and acknowledged by a
ping/pong round trip; ``START <unix time>`` from stdin marks when the injection begins, then
it prints ``COUNT <messages>`` twice a second; on ``STOP`` it writes its result (messages
received, event-to-client latencies) as JSON to ``--result`` and prints ``RESULT``.

Only changes that occurred after ``START`` count: the injector stamps its events with the
wall clock, so anything older (say, a source event the gateway was still working through)
is counted apart as ``foreign``. Latency is the client's wall clock at arrival minus the
event's ``occurredAt`` (all processes share the machine's clock).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from .procs import raise_fd_limit

PROTOCOL = "graphql-transport-ws"
QUERY = "subscription ($c: ID) { orderChanges(customer: $c) { cursor occurredAt eventType order { id stage } } }"


class Stats:
    def __init__(self) -> None:
        self.received = 0
        self.foreign = 0  # changes that occurred before the injection started
        self.errors = 0
        self.closed = 0
        self.since = float("inf")  # set by START
        self.latencies: list[float] = []


async def client(
    http: aiohttp.ClientSession, url: str, customer: str, init: dict[str, Any], stats: Stats, ready: asyncio.Event, stop: asyncio.Event
) -> bool:
    """One connection: init, subscribe, then count messages until ``stop``."""
    try:
        ws = await http.ws_connect(url, protocols=[PROTOCOL], compress=0, autoping=True, heartbeat=None, timeout=aiohttp.ClientWSTimeout(ws_close=2))
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False
    try:
        await ws.send_str(json.dumps({"type": "connection_init", "payload": init}))
        msg = await asyncio.wait_for(ws.receive(), 30)
        if msg.type != aiohttp.WSMsgType.TEXT or orjson.loads(msg.data).get("type") != "connection_ack":
            return False
        await ws.send_str(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": QUERY, "variables": {"c": customer}}}))
        await ws.send_str('{"type":"ping"}')
        while True:  # the pong says the subscribe was read
            msg = await asyncio.wait_for(ws.receive(), 30)
            if msg.type != aiohttp.WSMsgType.TEXT:
                return False
            kind = orjson.loads(msg.data).get("type")
            if kind == "pong":
                break
            if kind == "error":
                stats.errors += 1
                return False
        ready.set()
    except (aiohttp.ClientError, OSError, TimeoutError):
        await ws.close()
        return False

    async def read() -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            now = time.time()
            data = orjson.loads(msg.data)
            if data.get("type") != "next":
                if data.get("type") in ("error", "complete"):
                    stats.errors += 1
                continue
            payload = data.get("payload") or {}
            change = (payload.get("data") or {}).get("orderChanges") or {}
            if payload.get("errors"):
                stats.errors += 1
            occurred = change.get("occurredAt")
            t = dt.datetime.fromisoformat(occurred.replace("Z", "+00:00")).timestamp() if occurred else 0.0
            if t < stats.since:
                stats.foreign += 1
                continue
            stats.received += 1
            stats.latencies.append(round((now - t) * 1000, 3))
        stats.closed += 1

    reader = asyncio.create_task(read())
    await stop.wait()
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    with contextlib.suppress(Exception):
        await ws.close()
    return True


async def run(url: str, count: int, customers: list[str], offset: int, init: dict[str, Any], parallel: int, result_path: str) -> None:
    raise_fd_limit()
    stats = Stats()
    stop = asyncio.Event()
    gate = asyncio.Semaphore(parallel)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        ready_flags: list[asyncio.Event] = []

        async def one(i: int) -> bool:
            ev = asyncio.Event()
            ready_flags.append(ev)
            async with gate:
                task = asyncio.create_task(client(http, url, customers[(offset + i) % len(customers)], init, stats, ev, stop))
                waiter = asyncio.create_task(ev.wait())
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
            return await task

        tasks = [asyncio.create_task(one(i)) for i in range(count)]
        # wait until every connection is subscribed (or failed)
        while True:
            done = sum(1 for e in ready_flags if e.is_set()) + sum(1 for t in tasks if t.done())
            if len(ready_flags) == count and done >= count:
                break
            await asyncio.sleep(0.05)
        connected = sum(1 for e in ready_flags if e.is_set())
        print(f"READY {connected} {count - connected}", flush=True)

        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

        async def counter() -> None:
            while True:
                print(f"COUNT {stats.received}", flush=True)
                await asyncio.sleep(0.5)

        ticker = asyncio.create_task(counter())
        while True:
            line = await reader.readline()
            if line.startswith(b"START "):
                stats.since = float(line.split()[1])
                continue
            if not line or line.strip() == b"STOP":
                break
        ticker.cancel()
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    result = {
        "connected": connected,
        "received": stats.received,
        "foreign": stats.foreign,
        "errors": stats.errors,
        "closed": stats.closed,
        "latencies_ms": stats.latencies,
    }
    await asyncio.to_thread(Path(result_path).write_text, json.dumps(result))
    print("RESULT", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.subs")
    p.add_argument("--url", required=True, help="ws://host:port/graphql")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--customers", required=True, help="comma-separated customer ids, assigned round-robin")
    p.add_argument("--offset", type=int, default=0, help="round-robin start (the first connection's index overall)")
    p.add_argument("--init", default="{}", help="connection_init payload (JSON)")
    p.add_argument("--parallel", type=int, default=200, help="connections being opened at once")
    p.add_argument("--result", required=True, help="file for the JSON result")
    a = p.parse_args(argv)
    runner = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.run
    runner(run(a.url, a.count, a.customers.split(","), a.offset, json.loads(a.init), a.parallel, a.result))


if __name__ == "__main__":
    main()

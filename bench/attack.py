"""A hostile viewer for the "under attack" scenario: ``python -m bench.attack``.

It sends, at a fixed rate (open loop: it does not wait for answers), documents made to be
expensive for the document stage, each one new (a random tag per process in aliases and
string arguments, so no cache and no shared validation can answer it):

1. issue 12's document: 350 aliased copies of ``orders(first: 500) { nodes { id } }`` (it
   took seconds of validation before the shape checks; now it is over the token limit);
2. the most a document may be under the default limits: 25 aliased listings of ~18
   fields each, with one unknown field at the end, so all of it is validated and then
   refused, and nothing executes (execution is the rate and cost limits' business);
3. the same fields selected repeatedly in one selection set (the overlapping-fields
   rule's quadratic case), as often as the limits let it, refused after validation like 2.

Prints one JSON line: requests sent, answers by HTTP status, transport errors.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import secrets
import sys
import time
from typing import Any

import aiohttp
import orjson

ORDER_FIELDS = (
    "id customerId orderDate requestedDeliveryDate confirmedDeliveryDate purchaseOrderByCustomer stage deliveryRisk "
    "predictedDeliveryDate netValue { amount currency } erpStatus { overallProcessStatus overallDeliveryStatus }"
)


def documents(salt: str | None = None) -> Any:
    """An endless stream of new hostile documents (see the module docstring); ``salt``
    (random by default) makes every process's documents new to the gateway, text and
    normal form alike."""
    salt = salt or secrets.token_hex(4)
    for n in itertools.count():
        kind = n % 3
        tag = f"{salt}{n}"  # in a string argument: part of the document's normal form
        if kind == 0:
            yield "{" + " ".join(f"x{tag}_{i}: orders(first: 500) {{ nodes {{ id }} }}" for i in range(350)) + "}"
        elif kind == 1:
            listings = " ".join(
                f'l{i}: orders(first: {1 + (n + i) % 400}, after: "{tag}") {{ nodes {{ {ORDER_FIELDS} }} }}' for i in range(25)
            )
            yield "{" + listings + " nope }"
        else:
            inner = f"customer {{ name orders(first: {1 + n % 300}) {{ nodes {{ id stage }} }} }}"
            yield f'{{ orders(first: 5, after: "{tag}") {{ nodes {{ ' + " ".join([inner] * 10) + " } } nope }"


async def attack(url: str, token: str, rate: float, duration: float, max_in_flight: int) -> dict[str, Any]:
    statuses: collections.Counter[str] = collections.Counter()
    errors = 0
    sent = 0
    in_flight: set[asyncio.Task[None]] = set()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    docs = documents()
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=max_in_flight)) as http:

        async def one(body: bytes) -> None:
            nonlocal errors
            try:
                async with http.post(url, data=body) as resp:
                    await resp.read()
                    statuses[str(resp.status)] += 1
            except (TimeoutError, aiohttp.ClientError, OSError):
                errors += 1

        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < duration:
            while sent < int(elapsed * rate) + 1:
                if len(in_flight) >= max_in_flight:
                    statuses["not sent (too many in flight)"] += 1
                else:
                    task = asyncio.create_task(one(orjson.dumps({"query": next(docs)})))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                sent += 1
            await asyncio.sleep(max(0.0, sent / rate - (time.monotonic() - started)))
        if in_flight:
            await asyncio.wait(in_flight, timeout=30)
    return {"sent": sent, "statuses": dict(statuses), "errors": errors, "duration_s": round(time.monotonic() - started, 3)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.attack", description="a hostile GraphQL client for the bench")
    p.add_argument("--url", required=True, help="the gateway's /graphql")
    p.add_argument("--token", required=True, help="the hostile viewer's bearer token")
    p.add_argument("--rate", type=float, default=50.0, help="requests per second (its rate limit)")
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--max-in-flight", type=int, default=200)
    a = p.parse_args(argv)
    out = asyncio.run(attack(a.url, a.token, a.rate, a.duration, a.max_in_flight))
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()

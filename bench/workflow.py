"""Workflow on exceptions: what the store and the board's read cost, as ratios in one run.

    python -m bench.workflow [--actions 400] [--redis-url redis://127.0.0.1:6379/0]

1. Store: actions per second (comments on one exception, each its own clientMutationId)
   through one store, and through two stores on the same data at once (two processes on
   one SQLite file; two replicas on one Redis), SQLite and Redis side by side.
2. Board: the ``exceptions`` page (500 exceptions) over HTTP against the simulated plant,
   with workflow fields selected vs the page as it was before the workflow existed
   (no workflow fields), median of N, as a ratio.

Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

from gateway.workflow_store import RedisWorkflowStore, SQLiteWorkflowStore
from resolvers.workflow import Command, WorkflowAction, normalise

EID = "MACHINE_DOWN:mes:WC-20"


def _comment(i: int, actor: str, targets: int) -> Command:
    return normalise(
        Command(
            action=WorkflowAction.COMMENTED,
            actor=actor,
            role="service",
            at=dt.datetime.now(dt.UTC),
            client_mutation_id=f"bench-{i}",
            exception_id=f"{EID}-{i % targets}",
            sales_orders=("10000001",),
            text=f"note {i}",
        )
    )


async def _rate(stores: list, n: int, targets: int, concurrency: int = 8) -> float:
    """Actions per second, ``n`` in all over ``targets`` exceptions, spread over ``stores``,
    ``concurrency`` in flight each."""
    sem = asyncio.Semaphore(concurrency * len(stores))

    async def one(i: int) -> None:
        async with sem:
            await stores[i % len(stores)].act(_comment(i, f"user{i % len(stores)}", targets))

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - started)


SCENARIOS = (("50 exceptions", 50), ("one hot exception", 1))


async def bench_store(n: int, redis_url: str) -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, targets in SCENARIOS:
            for count in (1, 2):
                path = str(Path(tmp) / f"{targets}-{count}.sqlite")
                stores = [await SQLiteWorkflowStore.open(path) for _ in range(count)]
                out[f"sqlite, {count} store(s), {name}"] = await _rate(stores, n, targets)
                for s in stores:
                    await s.close()
    import redis.asyncio as redis

    client = redis.from_url(redis_url)
    try:
        await client.ping()
    except OSError as exc:
        print(f"  (Redis at {redis_url} not reachable: {exc}; Redis rows skipped)")
        return out
    for name, targets in SCENARIOS:
        for count in (1, 2):
            prefix = f"ordergraph-bench:{uuid.uuid4().hex[:8]}:"
            stores = [await RedisWorkflowStore.open(redis_url, prefix=prefix) for _ in range(count)]
            label = f"redis, {count} store(s), {name}"
            out[label] = await _rate(stores, n, targets)
            out[f"{label}: retries per action"] = sum(s.conflicts for s in stores) / n
            for s in stores:
                await s.close()
            keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
            if keys:
                await client.delete(*keys)
    await client.aclose()
    return out


PLAIN = "{ exceptions(first: 500) { totalCount nodes { id kind severity description detectedAt valueAtRisk { amount } } } }"
WITH_WORKFLOW = (
    "{ exceptions(first: 500) { totalCount nodes { id kind severity description detectedAt valueAtRisk { amount } "
    "workflow { status acknowledged acknowledgedBy acknowledgedAt assignee { kind name } snoozed snoozedUntil resolved } } } }"
)


async def bench_board(rounds: int) -> dict[str, float]:
    from tests.servers import running_gateway, running_plant

    async with running_plant(orders=2000) as plant, running_gateway(plant.url) as (url, app):
        await app.state.gateway.exceptions.settled(120)
        async with aiohttp.ClientSession() as http:

            async def post(query: str, variables: dict | None = None) -> dict:
                async with http.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}) as r:
                    return await r.json()

            nodes = (await post(PLAIN))["data"]["exceptions"]["nodes"]
            # Some workflow state to read: a third of the exceptions acknowledged and assigned.
            for i, node in enumerate(nodes[::3]):
                await post(
                    'mutation($id: ID!, $m: String!) { acknowledgeException(exceptionId: $id, clientMutationId: $m) { replayed } }',
                    {"id": node["id"], "m": f"b-{i}"},
                )
                await post(
                    'mutation($id: ID!, $m: String!) { assignException(exceptionId: $id, clientMutationId: $m, assignee: {team: "Planning"}) { replayed } }',
                    {"id": node["id"], "m": f"a-{i}"},
                )

            gateway = app.state.gateway
            service = gateway.workflow

            async def timed(query: str, workflow_on: bool) -> float:
                # workflow off: the page as before the workflow existed (no service, nothing read)
                gateway.workflow = service if workflow_on else None
                try:
                    started = time.perf_counter()
                    await post(query)
                    return (time.perf_counter() - started) * 1000
                finally:
                    gateway.workflow = service

            variants = {
                "workflow off (as before)": (PLAIN, False),
                "no workflow fields": (PLAIN, True),
                "with workflow fields": (WITH_WORKFLOW, True),
            }
            times: dict[str, list[float]] = {name: [] for name in variants}
            for query, on in variants.values():  # warm
                await timed(query, on)
            for _ in range(rounds):  # interleaved: the machine's noise hits each alike
                for name, (query, on) in variants.items():
                    times[name].append(await timed(query, on))
            med = {name: statistics.median(t) for name, t in times.items()}
            base = med["workflow off (as before)"]
            out = {"exceptions open": float(len(nodes))}
            out.update({f"board page, {name} (ms, median)": value for name, value in med.items()})
            out.update({f"ratio {name} / workflow off": value / base for name, value in med.items() if value is not base})
            return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--actions", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    print("store: actions per second")
    for label, value in (await bench_store(args.actions, args.redis_url)).items():
        print(f"  {label:58s} {value:10.2f}")
    print("board: the exceptions page")
    for label, value in (await bench_board(args.rounds)).items():
        print(f"  {label:58s} {value:10.2f}")


if __name__ == "__main__":
    asyncio.run(main())

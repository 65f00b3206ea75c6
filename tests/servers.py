"""Real servers on loopback for tests: the simulated plant and the gateway under uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import uvicorn

from gateway.app import create_app
from gateway.config import AuthConfig, Config, LimitsConfig
from gateway.server import server_settings

# Scale-out tests talk to a real Redis here (.ci/run starts one); without it they skip.
REDIS_URL = os.environ.get("ORDERGRAPH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# "standard" runs the gateways of the tests on graphql-core's executor over strawberry's own
# resolvers ([gateway] executor); unset, the default (fast). .ci/run runs the graph and
# subscription tests under both.
TEST_EXECUTOR = "ORDERGRAPH_TEST_EXECUTOR"


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def serve_asgi(app: Any) -> AsyncIterator[str]:
    """Run an ASGI app under uvicorn on a free loopback port; yields its base URL."""
    sock = free_socket()
    port = sock.getsockname()[1]
    gateway = getattr(app.state, "gateway", None)
    # the gateway's server limits (request heads, WebSocket messages), as `ordergraph serve` sets them
    settings = server_settings(gateway.config, app) if gateway is not None else {"ws_per_message_deflate": False}
    config = uvicorn.Config(app, log_level="warning", lifespan="on", **settings)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(500):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@contextlib.asynccontextmanager
async def running_plant(**kwargs: Any) -> AsyncIterator[Any]:
    """The simulated plant on a free port (small world by default)."""
    from sources.simulator.app import start_simulator

    kwargs.setdefault("orders", 300)
    kwargs.setdefault("latency_ms", 0.0)
    sim = await start_simulator("127.0.0.1", 0, **kwargs)
    try:
        yield sim
    finally:
        await sim.close()


@contextlib.asynccontextmanager
async def running_gateway(
    plant_url: str,
    *,
    journal_path: str = ":memory:",
    bus: Any = None,
    scaleout: dict[str, Any] | None = None,
    auth: AuthConfig | None = None,
    limits: LimitsConfig | None = None,
    sources: dict[str, dict[str, Any]] | None = None,
    events: dict[str, Any] | None = None,
    cache: dict[str, Any] | None = None,
    clock: Any = None,
    domain_clock: Any = None,
    notices: dict[str, Any] | None = None,
    mailbox: Any = None,
    **gateway: Any,
) -> AsyncIterator[tuple[str, Any]]:
    """The gateway under uvicorn against a plant; yields (base URL, app).

    ``scaleout``: settings of the ``[scaleout]`` section (e.g. ``redis_url``, ``replica_id``).
    ``auth``: tests run in the explicit open demo mode unless they pass one (the production
    default is ``mode = "jwt"``; tests/test_auth.py uses real tokens). ``limits``: the
    ``[limits]`` section. ``sources``: settings per source system (e.g. ``{"mes":
    {"base_url": ..., "timeout_seconds": 0.3}}``). ``events``: settings of the ``[events]``
    section (e.g. ``park_after_failures``). ``cache``: settings of the ``[cache]`` section
    (e.g. ``{"ttl_seconds": 1e-6}``: every request reads its sources). ``clock``: the
    gateway's clock.
    ``domain_clock``: the clock of predictions and exceptions (e.g. the plant's).
    ``notices``: settings of the ``[notices]`` section; ``mailbox``: an SMTP sink for /notices.
    """
    if "executor" not in gateway and os.environ.get(TEST_EXECUTOR):
        gateway["executor"] = os.environ[TEST_EXECUTOR]  # the graph tests under either executor
    cfg = Config.for_plant(plant_url, **gateway)
    cfg.events.journal_path = journal_path
    cfg.auth = auth or AuthConfig(mode="open")
    if limits is not None:
        cfg.limits = limits
    for key, value in (scaleout or {}).items():
        setattr(cfg.scaleout, key, value)
    for key, value in (events or {}).items():
        setattr(cfg.events, key, value)
    for key, value in (cache or {}).items():
        setattr(cfg.cache, key, value)
    for system, settings in (sources or {}).items():
        for key, value in settings.items():
            setattr(cfg.sources[system], key, value)
    for key, value in (notices or {}).items():
        setattr(cfg.notices, key, value)
    clocks = {"clock": clock} if clock is not None else {}
    app = create_app(cfg, bus=bus, domain_clock=domain_clock, mailbox=mailbox, **clocks)
    async with serve_asgi(app) as url:
        yield url, app


class GraphQLClient:
    """A minimal GraphQL-over-HTTP client for tests."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.url = f"{base_url}/graphql"
        self.session = session

    async def post(self, query: str, variables: dict | None = None, **kwargs: Any) -> tuple[int, dict]:
        body: dict[str, Any] = {"query": query}
        if variables:
            body["variables"] = variables
        async with self.session.post(self.url, json=body, **kwargs) as resp:
            return resp.status, await resp.json(content_type=None)

    async def query(self, query: str, variables: dict | None = None) -> dict:
        """Run a query that must succeed without errors; returns `data`."""
        status, body = await self.post(query, variables)
        assert status == 200, body
        assert "errors" not in body, body["errors"]
        return body["data"]


async def plant_stats(session: aiohttp.ClientSession, plant_url: str) -> dict[str, int]:
    async with session.get(f"{plant_url}/control/stats") as resp:
        return (await resp.json())["requests"]


async def reset_plant_stats(session: aiohttp.ClientSession, plant_url: str) -> None:
    async with session.post(f"{plant_url}/control/stats/reset") as resp:
        assert resp.status == 200

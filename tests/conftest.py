from __future__ import annotations

import datetime as dt
import gc
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError

from .servers import REDIS_URL, GraphQLClient, running_gateway, running_plant


@pytest.fixture
async def plant():
    async with running_plant() as sim:
        yield sim


@pytest.fixture
async def gateway(plant):
    async with running_gateway(plant.url) as (url, app):
        # The exception tracker reads every order once at start; let it finish, so tests
        # that count source calls see only their own.
        await app.state.gateway.exceptions.settled(30)
        yield url, app


@pytest.fixture
async def frozen_world():
    """A plant whose clock stands still, and a gateway whose domain rules run on it (its
    tracker's start-up pass done): (plant, url, app, http)."""
    async with running_plant() as plant:
        plant.world.set_speed(0)

        def clock() -> dt.datetime:
            return plant.world.now().replace(microsecond=0)

        async with running_gateway(plant.url, domain_clock=clock) as (url, app):
            async with aiohttp.ClientSession() as session:
                await app.state.gateway.exceptions.settled(30)
                yield plant, url, app, session


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def gql(gateway, http):
    url, _app = gateway
    return GraphQLClient(url, http)


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A fresh key prefix on the test Redis; its keys are deleted afterwards."""
    client = redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (RedisConnectionError, OSError) as exc:
        await client.aclose()
        pytest.skip(f"scale-out tests need Redis at {REDIS_URL} (.ci/run starts one): {exc}")
    p = f"ordergraph-test:{uuid.uuid4().hex[:12]}:"
    try:
        yield p
    finally:
        keys = [k async for k in client.scan_iter(match=f"{p}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


# --- say it out loud when the browser tests did not run ---------------------------------


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001
    """A skipped browser test (no Chromium, no Playwright, no GraphiQL assets) is easy to
    miss among dots: name them at the end of every run, with what they need."""
    skipped = terminalreporter.stats.get("skipped", [])
    browser = [r for r in skipped if "test_browser" in r.nodeid]
    if not browser:
        return
    reasons = sorted({str(r.longrepr[2]).removeprefix("Skipped: ") for r in browser if isinstance(r.longrepr, tuple)})
    terminalreporter.write_sep("=", f"{len(browser)} BROWSER TESTS SKIPPED", yellow=True, bold=True)
    for reason in reasons:
        terminalreporter.write_line(f"  {reason}")
    terminalreporter.write_line(
        "  They need Debian's chromium (apt-get install chromium, or ORDERGRAPH_CHROMIUM=/path) and"
        " playwright (pip install -e '.[test]'); GraphiQL's also need `ordergraph assets`."
    )


@pytest.fixture
def collector_on():
    """The cyclic collector on for the test (a test of when the gateway pauses it), restored
    after, with anything the code under test froze unfrozen."""
    enabled = gc.isenabled()
    gc.enable()
    try:
        yield
    finally:
        gc.unfreeze()
        (gc.enable if enabled else gc.disable)()

from __future__ import annotations

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

from __future__ import annotations

import aiohttp
import pytest

from .servers import GraphQLClient, running_gateway, running_plant


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

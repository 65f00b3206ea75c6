"""A source answer is decoded and parsed with the cyclic collector paused (sources/client.py),
and the collector runs again afterwards, also when the answer does not parse; the loaders'
per-key loops likewise (resolvers/loaders.py)."""

from __future__ import annotations

import gc
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sources.client import SourceClient
from sources.records import WorkCenter
from sources.resilience import SourceError


@pytest.fixture
async def source() -> Any:
    answers: dict[str, Any] = {}

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=answers["body"], content_type="application/json")

    app = web.Application()
    app.router.add_get("/mes/A_WorkCenter", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session:
        yield SourceClient("mes", f"http://127.0.0.1:{port}/mes", session), answers
    await runner.cleanup()


async def test_parsing_runs_with_the_collector_paused_and_restores_it(
    source: Any, monkeypatch: Any
) -> None:
    client, answers = source
    answers["body"] = (
        b'{"value": [{"WorkCenter": "WC-20", "State": "DOWN"}, {"WorkCenter": "WC-30"}]}'
    )
    seen: list[bool] = []
    parse = SourceClient._parse

    def spy(self: SourceClient, record_type: Any, rows: Any) -> Any:
        seen.append(gc.isenabled())
        return parse(self, record_type, rows)

    monkeypatch.setattr(SourceClient, "_parse", spy)
    assert gc.isenabled()
    found = await client.fetch_by(WorkCenter, "WorkCenter", ["WC-20", "WC-30"])
    assert seen == [False]
    assert gc.isenabled()
    assert [(w.work_center, w.state) for w in found] == [("WC-20", "DOWN"), ("WC-30", "UP")]


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"no": "value"}', b'{"value": [{"State": "DOWN"}]}'],
    ids=["malformed", "no value list", "record without its key"],
)
async def test_an_answer_that_does_not_parse_leaves_the_collector_running(
    source: Any, body: bytes
) -> None:
    client, answers = source
    answers["body"] = body
    with pytest.raises(SourceError):
        await client.fetch_by(WorkCenter, "WorkCenter", ["WC-20"])
    assert gc.isenabled()


async def test_a_paused_collector_stays_paused(source: Any) -> None:
    """Inside another paused section (the simulator's bulk work), parsing leaves it off."""
    client, answers = source
    answers["body"] = b'{"value": [{"WorkCenter": "WC-20"}]}'
    gc.disable()
    try:
        await client.fetch_by(WorkCenter, "WorkCenter", ["WC-20"])
        assert not gc.isenabled()
    finally:
        gc.enable()


async def test_the_loaders_per_key_loops_run_with_the_collector_paused() -> None:
    """Storing what a source answered and priming the request's futures: paused, then on."""
    from gateway.cache import RecordCache
    from resolvers.loaders import cached_loader

    cache = RecordCache()
    seen: list[bool] = []
    put_many = cache.put_many

    def spy(items: Any, *args: Any, **kwargs: Any) -> int:
        seen.extend(gc.isenabled() for _ in items)
        return put_many(items, *args, **kwargs)

    cache.put_many = spy  # type: ignore[method-assign]

    async def fetch(keys: list[str]) -> dict[str, str]:
        assert gc.isenabled()  # awaiting the source: the collector runs
        return {k: k.upper() for k in keys}

    loader = cached_loader(cache, "mes.work_center", fetch, lambda: None)
    assert await loader.load_all(["a", "b"]) == {"a": "A", "b": "B"}
    assert seen == [False, False]
    assert gc.isenabled()
    assert await loader.load("a") == "A"  # primed: no new call
    again = cached_loader(cache, "mes.work_center", fetch, lambda: None)
    assert await again.load_all(["a", "b"]) == {"a": "A", "b": "B"}  # from the cache
    assert seen == [False, False]
    assert gc.isenabled()

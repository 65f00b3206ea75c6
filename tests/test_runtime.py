"""Process-level behaviour of a running gateway."""

from __future__ import annotations

import asyncio
import gc

import aiohttp
import pytest

from gateway.app import SERVING_MIDDLE_THRESHOLD

from .servers import GraphQLClient, running_gateway


async def test_long_lived_objects_leave_the_collectors_full_passes(plant):
    gc.unfreeze()
    before = gc.get_threshold()
    async with running_gateway(plant.url, gc_freeze_seconds=0.05) as (_url, app):
        await app.state.gateway.exceptions.settled(30)
        for _ in range(100):
            if gc.get_freeze_count() > 0:
                break
            await asyncio.sleep(0.05)
        assert gc.get_freeze_count() > 0
        # Serving: the middle generation is collected less often than Python's default.
        assert gc.get_threshold()[1] == SERVING_MIDDLE_THRESHOLD != before[1]
        assert gc.get_threshold()[0::2] == before[0::2]
    assert gc.get_freeze_count() == 0  # a stopped gateway leaves the process as it found it
    assert gc.get_threshold() == before


async def test_freezing_can_be_turned_off(plant):
    gc.unfreeze()
    async with running_gateway(plant.url, gc_freeze_seconds=0) as (_url, app):
        await app.state.gateway.exceptions.settled(30)
        await asyncio.sleep(0.2)
        assert gc.get_freeze_count() == 0


async def test_a_sweep_over_every_order_is_followed_by_a_full_collection(plant):
    """A sweep's cycles are collected when it ends, not at the next periodic full pass."""
    gc.unfreeze()
    async with running_gateway(plant.url, gc_freeze_seconds=0.05, gc_full_seconds=3600) as (_url, app):
        gateway = app.state.gateway
        await gateway.exceptions.settled(30)
        for _ in range(100):  # the freeze loop is serving
            if gc.get_freeze_count() > 0:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        passes = gateway.gc_full_passes
        assert passes == 0  # the periodic one is an hour away
        done = gateway.exceptions.full_evaluations_done
        gateway.exceptions.request_full()
        for _ in range(200):
            if gateway.exceptions.full_evaluations_done > done and gateway.gc_full_passes > passes:
                break
            await asyncio.sleep(0.05)
        assert gateway.exceptions.full_evaluations_done == done + 1
        assert gateway.gc_full_passes == passes + 1


def test_long_full_passes_that_free_almost_nothing_are_put_off():
    """A full collection over a big plant's heap (1.2 s at 100,000 orders) that frees almost
    nothing waits twice as long next time, up to a bound; garbage found, or a short pass
    (a small plant: the soak's memory), keeps the normal spacing."""
    from gateway.app import FULL_PASS_MAX_BACKOFF, full_pass_spacing

    walked = 2_300_000
    spacing, backoff = full_pass_spacing(60.0, 1.2, 4_905, walked, 1)
    assert (spacing, backoff) == (240.0, 2)  # 100 x its length, then doubled
    for _ in range(10):
        spacing, backoff = full_pass_spacing(60.0, 1.2, 4_905, walked, backoff)
    assert backoff == FULL_PASS_MAX_BACKOFF and spacing == 120.0 * FULL_PASS_MAX_BACKOFF
    assert full_pass_spacing(60.0, 1.2, walked // 50, walked, backoff) == (120.0, 1)  # it found garbage
    assert full_pass_spacing(60.0, 0.03, 10, 200_000, 4) == (60.0, 1)  # short: as before


async def _busy(client: GraphQLClient, stop: asyncio.Event) -> int:
    """Ask one order's view back to back until ``stop``: operations keep running."""
    asked = 0
    while not stop.is_set():
        await client.query("{ orders(first: 3) { edges { node { id stage } } } }")
        asked += 1
    return asked


async def _wait_for(condition, seconds: float) -> bool:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


async def test_a_full_pass_due_while_operations_run_waits_for_a_quiet_moment(plant, monkeypatch):
    """The first full pass after start-up walks the whole heap (seconds at 100,000 orders):
    it waits while answers are being computed, and runs once none has run for a second."""
    import gateway.app as app_module

    monkeypatch.setattr(app_module, "full_pass_spacing", lambda *_args: (0.2, 1))
    monkeypatch.setattr(app_module, "FULL_PASS_WAIT_SECONDS", 0.0)  # this small heap's passes count as long
    # Sizing the heap never walks it: gc.get_freeze_count() is O(frozen objects), 0.44-0.51 s
    # with the loop stopped at 100,000 orders.
    walks = []
    monkeypatch.setattr(gc, "get_freeze_count", lambda real=gc.get_freeze_count: walks.append(1) or real())
    gc.unfreeze()
    async with running_gateway(plant.url, gc_freeze_seconds=0.05, gc_full_seconds=0.2, cache={"ttl_seconds": 1e-6}) as (url, app):
        gateway = app.state.gateway
        await gateway.exceptions.settled(30)
        assert await _wait_for(lambda: gateway.gc_full_passes > 0, 30)  # quiet: it ran
        async with aiohttp.ClientSession() as session:
            stop = asyncio.Event()
            load = asyncio.create_task(_busy(GraphQLClient(url, session), stop))
            assert await _wait_for(lambda: gateway.gc_full_due is not None, 30)
            passes = gateway.gc_full_passes
            await asyncio.sleep(1.5)  # the pass is due and answers keep coming: it waits
            assert gateway.gc_full_passes == passes
            assert gateway.gc_full_due is not None
            assert await _metric(session, url, "ordergraph_gc_full_collection_waiting") == 1  # operators see it
            stop.set()
            assert await load > 10
            assert await _wait_for(lambda: gateway.gc_full_passes > passes, 10)  # quiet again
            assert gateway.gc_full_due is None or gateway.gc_full_passes > passes + 1
            # /metrics counts the passes and their CPU (a scrape is not an operation: no wait)
            counted = await _metric(session, url, "ordergraph_gc_full_collections_total")
            assert passes < counted <= gateway.gc_full_passes
            assert await _metric(session, url, "ordergraph_gc_full_collection_seconds_total") > 0
    assert gateway.gc_full_passes > passes and not walks


async def _metric(session: aiohttp.ClientSession, url: str, name: str) -> float:
    async with session.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    [value] = [line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")]
    return float(value)


async def test_a_full_pass_waits_no_longer_than_gc_full_defer_seconds(plant, monkeypatch):
    """Under load that never pauses the pass still runs, once it has waited its limit."""
    import gateway.app as app_module

    monkeypatch.setattr(app_module, "full_pass_spacing", lambda *_args: (0.2, 1))
    monkeypatch.setattr(app_module, "FULL_PASS_WAIT_SECONDS", 0.0)
    gc.unfreeze()
    async with running_gateway(
        plant.url, gc_freeze_seconds=0.05, gc_full_seconds=0.2, gc_full_defer_seconds=0.5, cache={"ttl_seconds": 1e-6}
    ) as (url, app):
        gateway = app.state.gateway
        await gateway.exceptions.settled(30)
        async with aiohttp.ClientSession() as session:
            stop = asyncio.Event()
            load = asyncio.create_task(_busy(GraphQLClient(url, session), stop))
            assert await _wait_for(lambda: gateway.gc_full_due is not None, 30)
            passes = gateway.gc_full_passes
            ran = await _wait_for(lambda: gateway.gc_full_passes >= passes + 2, 10)
            stop.set()
            await load
            assert ran  # two passes while the load never paused for a second


async def test_a_short_full_pass_runs_when_due_under_load(plant, monkeypatch):
    """Only a long pass waits for quiet: a short one (a small plant's, tens of ms, on which
    the soak's memory depends) runs when due, answers in flight or not."""
    import gateway.app as app_module

    monkeypatch.setattr(app_module, "full_pass_spacing", lambda *_args: (0.2, 1))
    monkeypatch.setattr(app_module, "FULL_PASS_WAIT_SECONDS", 1e9)  # every pass counts as short
    gc.unfreeze()
    async with running_gateway(plant.url, gc_freeze_seconds=0.05, gc_full_seconds=0.2, cache={"ttl_seconds": 1e-6}) as (url, app):
        gateway = app.state.gateway
        await gateway.exceptions.settled(30)
        async with aiohttp.ClientSession() as session:
            stop = asyncio.Event()
            load = asyncio.create_task(_busy(GraphQLClient(url, session), stop))
            await asyncio.sleep(0.3)
            passes = gateway.gc_full_passes
            ran = await _wait_for(lambda: gateway.gc_full_passes >= passes + 2, 10)
            stop.set()
            await load
            assert ran  # two passes while answers kept coming, with no wait limit reached (300 s)


@pytest.mark.parametrize("setting", ["gc_freeze_seconds = -1", "gc_full_seconds = nan", "gc_full_defer_seconds = -300"])
def test_negative_collector_settings_are_a_clear_config_error(tmp_path, setting: str) -> None:
    from gateway.config import ConfigError, load_config

    path = tmp_path / "ordergraph.toml"
    path.write_text(f"[gateway]\n{setting}\n")
    with pytest.raises(ConfigError, match=f"gateway.{setting.split()[0]}: must be a number of seconds, 0 or more"):
        load_config(path, env={})
    path.write_text("[gateway]\ngc_full_defer_seconds = 0\n")  # no wait at all: allowed
    assert load_config(path, env={}).gateway.gc_full_defer_seconds == 0

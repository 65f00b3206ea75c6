"""A poison event is parked as a dead letter and the processor moves on; parked events are
visible (metrics, GraphQL, CLI) and can be replayed. SQLite and Redis journals alike.

Before: a signed ``SalesOrder.Changed`` with a 70 KB subject got a 202, ERP refused every
read for it (HTTP 400), and the processor retried it every second, forever: every event
behind it waited, also after a restart on the same journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.auth import DEV_SECRET, mint_token
from gateway.cli import main as cli_main
from gateway.config import AuthConfig
from gateway.journal import JournalEvent
from gateway.sqlite_journal import SQLiteJournal
from sources.simulator.faults import parse_fault_option

from .events_util import make_event, post_events, send_changes
from .servers import REDIS_URL, GraphQLClient, running_gateway

# The door would refuse the reported event now: open it, to see what the processor does.
OPEN_DOOR = {"key_formats": {"SalesOrder": ".*"}, "max_subject_length": 100_000}
PARKED_QUERY = "{ parkedEvents { seq eventId source type subject attempts reason parkedAt } }"


@pytest.fixture(params=["sqlite", "redis"])
def journal_kind(request, tmp_path) -> dict[str, Any]:
    """Where the gateway journals (SQLite file, or Redis under a fresh prefix) and how the
    CLI names the same journal."""
    if request.param == "sqlite":
        path = str(tmp_path / "journal.sqlite")
        return {"settings": {"journal_path": path}, "cli": ["--journal", path]}
    prefix = request.getfixturevalue("prefix")  # skips, visibly, without Redis
    config = tmp_path / "ordergraph.toml"
    config.write_text(f'[scaleout]\nredis_url = "{REDIS_URL}"\nkey_prefix = "{prefix}"\n')
    return {
        "settings": {"scaleout": {"redis_url": REDIS_URL, "key_prefix": prefix, "replica_id": "r1"}},
        "cli": ["--config", str(config)],
    }


@contextlib.asynccontextmanager
async def gateway_on(journal_kind: dict, plant, **settings: Any) -> AsyncIterator[tuple[str, Any]]:
    settings.update(journal_kind["settings"])
    auth = AuthConfig(mode="open", hs256_secret=DEV_SECRET)
    async with running_gateway(plant.url, auth=auth, **settings) as (url, app):
        await app.state.gateway.exceptions.settled(30)
        yield url, app


async def _until(predicate, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)


async def test_a_refused_event_is_parked_at_once_and_the_rest_flow(journal_kind, plant, http):
    async with gateway_on(journal_kind, plant, events=OPEN_DOOR) as (url, app):
        gw = app.state.gateway
        poison = make_event("erp", "SalesOrder", "Changed", "1" * 70_000)
        status, body = await post_events(http, url, poison)
        assert status == 202, body
        poison_seq = body["cursors"][0]
        # A real change of the plant, behind the poison event.
        so = plant.world.sales_orders[0]
        changes = plant.world.advance_order(so) or plant.world.advance_order(plant.world.sales_orders[1])
        processed = gw.processor.processed
        await send_changes(http, url, plant.world, changes)
        await gw.processor.drain(15)
        assert gw.processor.processed >= processed + 1, "the events behind the poison one were applied"
        [parked] = await gw.journal.parked()
        assert parked.event.seq == poison_seq
        assert parked.attempts == 1, "a 4xx is not retried"
        assert "HTTP 400" in parked.reason and "refused" in parked.reason
        assert await gw.journal.parked_count() == 1

        async with http.get(f"{url}/metrics") as resp:
            assert "ordergraph_parked_events 1.0" in await resp.text()

        internal = GraphQLClient(url, http)  # open mode: an integrator
        [row] = (await internal.query(PARKED_QUERY))["parkedEvents"]
        assert row["seq"] == poison_seq and row["source"] == "erp" and row["attempts"] == 1
        assert "HTTP 400" in row["reason"]
        customer = plant.world.get("A_SalesOrder", so).sold_to_party
        token = mint_token(DEV_SECRET, role="customer", customer=customer)
        status, answer = await internal.post(PARKED_QUERY, headers={"Authorization": f"Bearer {token}"})
        assert answer.get("data") is None
        assert answer["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_a_poison_event_in_the_journal_does_not_block_after_a_restart(plant, http, tmp_path):
    path = tmp_path / "journal.sqlite"
    now = dt.datetime.now(dt.UTC)
    so = plant.world.sales_orders[0]
    # As the gateway before the door checks journaled it: then the gateway stopped.
    async with await SQLiteJournal.open(path) as journal:
        poison, good = await journal.append(
            [
                JournalEvent("erp", "poison", "sap.s4.beh.salesorder.v1.SalesOrder.Changed.v1", "1" * 70_000, now,
                             {"SalesOrder": "1" * 70_000}, now),
                JournalEvent("erp", "good", "sap.s4.beh.salesorder.v1.SalesOrder.Changed.v1", so, now,
                             {"SalesOrder": so}, now),
            ]
        )  # fmt: skip
    async with running_gateway(plant.url, journal_path=str(path)) as (_url, app):
        gw = app.state.gateway
        await gw.processor.drain(15)
        assert (await gw.journal.get(good.seq)).processed
        [parked] = await gw.journal.parked()
        assert parked.event.seq == poison.seq and "no longer acceptable" in parked.reason


async def _cli(*argv: str) -> int:
    # The CLI runs its own event loop, as it would in another process.
    return await asyncio.to_thread(cli_main, list(argv))


async def test_n_failures_in_a_row_park_and_replay_applies_once_fixed(journal_kind, plant, http, capsys):
    settings = {
        "events": {"park_after_failures": 3},
        # The breaker stays closed: MES answers, just not usefully (as if for this record only).
        "sources": {"mes": {"breaker_failures": 1000, "breaker_window": 1000, "breaker_failure_rate": 1.0}},
    }
    async with gateway_on(journal_kind, plant, **settings) as (url, app):
        gw = app.state.gateway
        gw.processor.retry_seconds = 0.02
        # Notification-only: the processor asks MES which sales order the production order is for.
        mo = plant.world.tables["A_ProductionOrder"].keys()[0]
        await plant.faults.set(*parse_fault_option("mes=malformed"))
        status, body = await post_events(http, url, make_event("mes", "ProductionOrder", "Changed", mo))
        assert status == 202
        seq = body["cursors"][0]
        await _until(lambda: gw.journal.parked_count(), 20)
        [parked] = await gw.journal.parked()
        assert parked.event.seq == seq and parked.attempts == 3
        assert "failed 3 times in a row" in parked.reason

        journal_args = journal_kind["cli"]
        capsys.readouterr()
        assert await _cli("events", "parked", *journal_args) == 0
        listing = capsys.readouterr().out
        assert f"{seq:>8}" in listing and "failed 3 times in a row" in listing and "1 parked event." in listing

        await plant.faults.clear()  # the cause is fixed
        assert await _cli("events", "replay", str(seq), "--wait", "15", *journal_args) == 0
        out = capsys.readouterr().out
        assert "applied: 1" in out, out
        assert (await gw.journal.get(seq)).processed
        assert await gw.journal.parked_count() == 0
        assert await _cli("events", "replay", str(seq), *journal_args) == 1  # not parked any more
        assert await _cli("events", "parked", *journal_args) == 0
        assert "no parked events" in capsys.readouterr().out


async def test_a_source_down_for_everyone_parks_nothing(http):
    from .servers import running_plant

    async with running_plant(separate_ports=True) as sim:
        sources = {s: {"base_url": u} for s, u in sim.system_urls.items()}
        async with running_gateway(sim.url, sources=sources, events={"park_after_failures": 2}) as (url, app):
            gw = app.state.gateway
            await gw.exceptions.settled(30)
            gw.processor.retry_seconds = 0.02
            gw.processor.max_retry_seconds = 0.1
            await sim.faults.set(*parse_fault_option("mes=down"))
            mo = sim.world.tables["A_ProductionOrder"].keys()[1]
            status, body = await post_events(http, url, make_event("mes", "ProductionOrder", "Changed", mo))
            assert status == 202
            await asyncio.sleep(2.0)  # many attempts: the source is down, it is no one event's fault
            assert await gw.journal.parked_count() == 0
            assert not (await gw.journal.get(body["cursors"][0])).processed
            await sim.faults.clear()
            await gw.processor.drain(20)
            assert (await gw.journal.get(body["cursors"][0])).processed
            assert await gw.journal.parked_count() == 0


async def test_events_cli_explains_a_missing_journal(tmp_path, capsys):
    assert await _cli("events", "parked", "--journal", str(tmp_path / "nope.sqlite")) == 2
    assert "no journal file at" in capsys.readouterr().err
    assert not (tmp_path / "nope.sqlite").exists(), "listing must not create an empty journal"
    assert await _cli("events", "replay", "--journal", str(tmp_path / "nope.sqlite"), "--all") == 2

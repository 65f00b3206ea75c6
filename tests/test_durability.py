"""An accepted event survives SIGKILL of the gateway process right after its 202."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import aiohttp

from gateway.sqlite_journal import SQLiteJournal

from .events_util import make_event, post_events
from .servers import free_socket


async def _wait_up(http: aiohttp.ClientSession, url: str, proc: subprocess.Popen) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise AssertionError(f"gateway exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            async with http.get(f"{url}/healthz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("gateway did not come up")


def _start(config: str, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", config, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def test_sigkill_after_202_loses_nothing(plant, http, tmp_path):
    journal_path = tmp_path / "journal.sqlite"
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    config = tmp_path / "ordergraph.toml"
    # auth off in this test's gateway (explicit open mode): it is about the journal
    lines = [f'[events]\njournal_path = "{journal_path}"\n', '[auth]\nmode = "open"\n']
    for system in ("erp", "mes", "wms", "qms", "tms"):
        lines.append(f'[sources.{system}]\nbase_url = "{plant.url}/{system}"\n')
    config.write_text("\n".join(lines))
    url = f"http://127.0.0.1:{port}"

    # An event that names its sales order, so we can find it in the order's history.
    po = next(iter(plant.world.tables["A_ProductionOrder"].records()))
    events = [
        make_event("mes", "ProductionOrder", "Changed", po.manufacturing_order, data=po.to_api(), id=f"kill-{i}")
        for i in range(20)
    ]

    proc = _start(str(config), port)
    try:
        await _wait_up(http, url, proc)
        status, body = await post_events(http, url, events)
        assert status == 202 and body["accepted"] == 20
        proc.send_signal(signal.SIGKILL)  # no chance to flush or shut down cleanly
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()

    journal = await SQLiteJournal.open(journal_path)
    try:
        assert await journal.count() == 20
    finally:
        await journal.close()

    proc = _start(str(config), port)
    try:
        await _wait_up(http, url, proc)
        query = {"query": "query($id: ID!) { order(id: $id) { history(first: 100) { entries { eventType } } } }",
                 "variables": {"id": po.sales_order}}
        for _ in range(100):  # the restarted gateway finishes processing what it had accepted
            async with http.post(f"{url}/graphql", json=query) as resp:
                entries = (await resp.json())["data"]["order"]["history"]["entries"]
            if len(entries) == 20:
                break
            await asyncio.sleep(0.1)
        assert len(entries) == 20
        # a redelivery after the restart is still recognised as a duplicate
        status, body = await post_events(http, url, events[:3])
        assert status == 202 and body["duplicates"] == 3
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)

"""`ordergraph serve --workers N`: several processes on one port acting as one over Redis."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from bench.procs import free_port
from gateway.config import SYSTEMS

from .events_util import send_changes
from .servers import REDIS_URL, running_plant

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = "query($id: ID!) { order(id: $id) { id production { orders { id status } } } }"


def _config(tmp_path: Path, plant_url: str, port: int, prefix: str | None) -> Path:
    lines = ["[gateway]", 'host = "127.0.0.1"', f"port = {port}", "", "[auth]", 'mode = "open"', ""]
    lines += ["[events]", f'journal_path = "{tmp_path / "journal.sqlite"}"', ""]
    if prefix is not None:
        lines += ["[scaleout]", f'redis_url = "{REDIS_URL}"', f'key_prefix = "{prefix}"', "poll_seconds = 0.1", ""]
    for s in SYSTEMS:
        lines += [f"[sources.{s}]", f'base_url = "{plant_url}/{s}"', ""]
    path = tmp_path / "ordergraph.toml"
    path.write_text("\n".join(lines))
    return path


def _running(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if "zombie" not in status.lower():
            alive.add(pid)
    return alive


def test_several_workers_need_redis(tmp_path):
    config = _config(tmp_path, "http://127.0.0.1:9", free_port(), None)
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--workers", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 2
    assert "redis_url" in out.stderr


async def test_workers_share_one_port_and_act_as_one(tmp_path, prefix):
    port = free_port()
    async with running_plant() as plant, aiohttp.ClientSession() as http:
        config = _config(tmp_path, plant.url, port, prefix)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--workers", "2",
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            # Both workers answer on the one port (new connection each time).
            pids: set[int] = set()
            async with asyncio.timeout(60):
                while len(pids) < 2:
                    try:
                        async with aiohttp.ClientSession() as fresh, fresh.get(f"{base}/healthz") as resp:
                            if resp.status == 200:
                                pids.add((await resp.json())["pid"])
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.05)
            assert proc.pid not in pids

            so = next(s for s in plant.world.sales_orders if plant.world.state_of(s) == "RELEASED") if any(
                plant.world.state_of(s) == "RELEASED" for s in plant.world.sales_orders
            ) else plant.world.sales_orders[0]

            async def production() -> dict:
                async with http.post(f"{base}/graphql", json={"query": PRODUCTION, "variables": {"id": so}}) as resp:
                    assert resp.status == 200
                    body = await resp.json()
                    assert "errors" not in body, body
                    return body["data"]["order"]

            before = await production()
            for _ in range(5):  # cached on whichever worker answers
                assert await production() == before
            changes = plant.world.advance_order(so)
            assert changes
            await send_changes(http, base, plant.world, changes)
            # Read after the 202s, whichever worker answers: the new state.
            for _ in range(10):
                assert await production() != before
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(60):
                    out, _ = await proc.communicate()
            except TimeoutError:
                proc.kill()
                out, _ = await proc.communicate()
        assert proc.returncode == 0, out.decode()[-2000:]
        assert not _running(pids)  # no worker left behind

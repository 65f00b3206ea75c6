"""Bad configuration and CLI input: one clear line and an exit status, never a traceback.

Before: ``ordergraph serve`` in jwt mode without a key started anyway (every request a
401); with no source reachable it printed a 50-line traceback every 2 s; a busy port gave
a traceback after the banner; ``ordergraph token --customer NOPE`` minted silently.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main as cli_main

from .servers import free_socket, running_gateway

ROOT = Path(__file__).resolve().parents[1]


def _run(*argv: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ORDERGRAPH_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *argv],
        cwd=ROOT,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_serve_in_jwt_mode_without_a_key_refuses_to_start():
    done = _run("serve", "--port", "0")
    assert done.returncode == 2
    assert done.stdout == ""  # no banner: it never started
    [line] = done.stderr.strip().splitlines()
    assert "auth.mode = jwt needs a key" in line and "hs256_secret" in line and "jwks_url" in line


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--port", "{port}"],
        ["demo", "--port", "{port}", "--plant-port", "{free}", "--no-assets", "--orders", "50"],
        ["demo", "--port", "{free}", "--plant-port", "{port}", "--no-assets", "--orders", "50"],
        ["simulate", "--port", "{port}", "--orders", "50"],
    ],
    ids=["serve", "demo-gateway-port", "demo-plant-port", "simulate"],
)
def test_a_busy_port_is_one_line_before_the_banner(argv):
    held = free_socket()
    held.listen()
    spare = free_socket()
    free_port = spare.getsockname()[1]
    spare.close()
    try:
        port = held.getsockname()[1]
        done = _run(
            *[a.format(port=port, free=free_port) for a in argv], env={"ORDERGRAPH_AUTH_HS256_SECRET": "s"}
        )
    finally:
        held.close()
    assert done.returncode == 1, done
    assert done.stdout == "", "nothing may be printed before the port is known to be free"
    [line] = done.stderr.strip().splitlines()
    assert f"127.0.0.1:{port}" in line and "Address already in use" in line


async def test_sources_down_then_back_are_said_once_each_without_tracebacks(caplog):
    caplog.set_level(logging.INFO)
    sock = free_socket()  # a port nobody listens on yet: every source is down
    port = sock.getsockname()[1]
    sock.close()
    plant_url = f"http://127.0.0.1:{port}"
    async with running_gateway(plant_url) as (_url, app):
        gw = app.state.gateway
        gw.exceptions.retry_seconds = 0.2  # many rounds while it is down
        await asyncio.sleep(3.0)
        down = [r for r in caplog.records if "is down" in r.getMessage()]
        assert [r.getMessage().split(":")[0] for r in down] == ["ERP is down"]
        waits = [r for r in caplog.records if "first exception evaluation" in r.getMessage()]
        assert len(waits) == 1, [r.getMessage() for r in waits]
        from sources.simulator.app import start_simulator

        sim = await start_simulator("127.0.0.1", port, orders=100, latency_ms=0.0)
        try:
            await gw.exceptions.settled(30)
        finally:
            await sim.close()
        back = [r.getMessage() for r in caplog.records if "answers again" in r.getMessage()]
        assert back == ["ERP answers again"]
    tracebacks = [r.getMessage() for r in caplog.records if r.exc_info]
    assert tracebacks == [], "an expected condition (a source down) must not print a traceback"


async def test_token_warns_about_an_unknown_customer(plant, monkeypatch, capsys):
    monkeypatch.setenv("ORDERGRAPH_SOURCES_ERP_BASE_URL", f"{plant.url}/erp")
    known = plant.world.get("A_SalesOrder", plant.world.sales_orders[0]).sold_to_party

    async def token(customer: str) -> tuple[int, str, str]:
        code = await asyncio.to_thread(cli_main, ["token", "--role", "customer", "--customer", customer, "--secret", "s" * 32])
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, err = await token("NOPE")
    assert code == 0 and out.count(".") == 2  # still minted: a token may be made ahead of the customer
    assert "knows no customer 'NOPE'" in err
    code, out, err = await token(known)
    assert code == 0 and "warning" not in err
    code, out, err = await token("A,B")
    assert "is not a valid key" in err
    # ERP unreachable: nothing to warn about (tokens can be minted offline)
    sock = free_socket()
    monkeypatch.setenv("ORDERGRAPH_SOURCES_ERP_BASE_URL", f"http://127.0.0.1:{sock.getsockname()[1]}/erp")
    sock.close()
    code, out, err = await token("17100999")
    assert code == 0 and "warning" not in err

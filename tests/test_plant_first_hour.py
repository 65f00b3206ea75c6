"""The first hour with the simulated plant: its clock, its order intake, its webhooks and
the demo's command line, each tried as a user would (real servers on loopback, the CLI
as a process)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web

from sources.simulator.emitter import EventEmitter, PlantDriver
from sources.simulator.world import PLANT_CALENDAR, World

START = dt.datetime(2025, 3, 10, 8, 0, tzinfo=dt.UTC)
ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "gateway.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 60.0) -> list[str]:
    """Lines the process printed up to the one containing ``needle``."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        lines.append(line.rstrip("\n"))
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} never printed; got:\n" + "\n".join(lines))


def _start(args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        CLI + args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- the plant clock --------------------------------------------------------------------


async def test_speed_zero_freezes_the_plant_clock_and_only_the_control_api_moves_it() -> None:
    port = _free_port()
    proc = _start(["simulate", "--orders", "60", "--port", str(port), "--speed", "0"])
    try:
        banner = _wait_for_line(proc, "plant time")
        assert any("frozen" in line for line in banner)
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            async with http.get("/control/world") as resp:
                first = await resp.json()
            await asyncio.sleep(1.5)  # at 1x a clock would have moved a second by now
            async with http.get("/control/world") as resp:
                second = await resp.json()
            assert first["speed"] == second["speed"] == 0
            assert first["clock"] == second["clock"]
            async with http.post("/control/clock/advance", json={"hours": 2}) as resp:
                assert resp.status == 200
            async with http.get("/control/world") as resp:
                moved = await resp.json()
        assert dt.datetime.fromisoformat(moved["clock"]) - dt.datetime.fromisoformat(first["clock"]) == dt.timedelta(hours=2)
    finally:
        _stop(proc)


async def test_simulate_at_a_speed_reports_that_speed_and_moves_on_its_own() -> None:
    port = _free_port()
    proc = _start(["simulate", "--orders", "60", "--port", str(port), "--speed", "3600"])
    try:
        _wait_for_line(proc, "plant time")
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            async with http.get("/control/world") as resp:
                first = await resp.json()
            await asyncio.sleep(1.5)
            async with http.get("/control/world") as resp:
                second = await resp.json()
        assert first["speed"] == second["speed"] == 3600
        assert dt.datetime.fromisoformat(second["clock"]) > dt.datetime.fromisoformat(first["clock"])
    finally:
        _stop(proc)


# --- order intake -----------------------------------------------------------------------


def _run_days(world: World, days: int, *, intake: float | None, seed: int = 11) -> PlantDriver:
    driver = PlantDriver(
        world, speed=3600, breakdown_rate=0, shortage_rate=0, delay_rate=0, intake_per_day=intake, seed=seed
    )
    for _ in range(24 * days):
        driver.step()
    return driver


def test_new_orders_keep_arriving_dated_on_the_plant_clock_and_then_move() -> None:
    world = World.generate(300, start=START, speed=0)
    before = set(world.sales_orders)
    driver = _run_days(world, 4, intake=30)
    new = [so for so in world.sales_orders if so not in before]
    assert driver.placed == len(new)
    assert 60 <= len(new) <= 180  # a Poisson stream of about 30 a day for 4 days
    days = {world.get("A_SalesOrder", so).sales_order_date for so in new}
    # Dated when they arrived on the plant clock, not at the clock's start.
    assert len(days) >= 3
    assert max(days) > PLANT_CALENDAR.local_date(START + dt.timedelta(days=2))
    # They do not sit still: the early arrivals have moved on from RECEIVED.
    assert any(world.state_of(so) not in ("RECEIVED", "MATERIAL_SHORTAGE") for so in new[:20])


def test_the_default_intake_balances_what_the_plant_delivers() -> None:
    world = World.generate(300, start=START, speed=0)
    rate = world.steady_intake_per_day()
    open_orders = sum(1 for so in world.sales_orders if world.state_of(so) != "DELIVERED")
    assert 0 < rate < open_orders  # open orders over a lead time of more than a day
    assert PlantDriver(world).intake_per_day == rate
    assert PlantDriver(world, intake_per_day=0).intake_per_day == 0
    with pytest.raises(ValueError):
        PlantDriver(world, intake_per_day=-1)


def test_the_default_intake_keeps_the_open_orders_steady() -> None:
    """A demo's worth of plant time (4 days at 600x for 10 minutes, and then some): with the
    default intake the open orders stay within 10 % of where they started; without intake
    the plant runs dry by more than that in the same time."""
    def open_after(intake: float | None) -> tuple[int, int]:
        world = World.generate(800, start=START, speed=0)
        start = world.open_orders()
        _run_days(world, 6, intake=intake)
        return start, world.open_orders()

    start, steady = open_after(None)
    assert abs(steady - start) <= 0.1 * start, (start, steady)
    start, dry = open_after(0)
    assert dry < 0.9 * start, (start, dry)


def test_intake_is_deterministic() -> None:
    def run() -> list[tuple[str, str]]:
        world = World.generate(200, start=START, speed=0)
        before = len(world.sales_orders)
        _run_days(world, 2, intake=20)
        return [(so, world.get("A_SalesOrder", so).sold_to_party) for so in world.sales_orders[before:]]

    first = run()
    assert first and run() == first


def test_no_intake_when_told_none() -> None:
    world = World.generate(200, start=START, speed=0)
    before = len(world.sales_orders)
    _run_days(world, 2, intake=0)
    assert len(world.sales_orders) == before


# --- the emitter's reorder hold ---------------------------------------------------------


async def test_a_held_event_goes_out_on_its_own_when_nothing_follows_it() -> None:
    received: list[dict] = []
    arrived = asyncio.Event()

    async def events(request: web.Request) -> web.Response:
        received.extend(orjson.loads(await request.read()))
        arrived.set()
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/events", events)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    world = World.generate(60, start=START, speed=0)
    secrets = dict.fromkeys(("erp", "mes", "wms", "qms", "tms"), "s")
    # Every event is held back to arrive after the next one: here no next one comes.
    emitter = EventEmitter(
        world, f"http://127.0.0.1:{port}", secrets, duplicate_rate=0, reorder_rate=1.0, notification_rate=0
    )
    emitter.start()
    try:
        # A repair is one change alone (a breakdown also reschedules the queue behind it).
        wc = world.summary()["workCentersDown"][0]
        world.work_center_up(wc)
        await asyncio.wait_for(arrived.wait(), 10)  # generous: the hold itself is half a second
        assert len(received) == 1 and ".Up." in received[0]["type"] + "."
        assert emitter.stats.reordered == 1
    finally:
        await emitter.close()
        await runner.cleanup()


# --- the demo's command line ------------------------------------------------------------


def test_demo_removes_its_temporary_journal_on_exit_and_keeps_a_named_one(tmp_path: Path) -> None:
    # Ctrl-C the moment the banner is out, while the gateway may still be starting: the
    # start finishes, the demo stops cleanly (status 0, no traceback) and the scratch
    # journal is gone. Several times: the race was with the journal's opening thread.
    for _ in range(3):
        port, plant = _free_port(), _free_port()
        proc = _start(["demo", "--orders", "60", "--port", str(port), "--plant-port", str(plant), "--no-assets"])
        try:
            banner = _wait_for_line(proc, "Ctrl-C stops")
        finally:
            _stop(proc)
        assert proc.stdout is not None
        after = proc.stdout.read()
        assert proc.returncode == 0, after
        assert "Traceback" not in after and "ERROR" not in after, after
        text = "\n".join(banner)
        journal = Path(next(line for line in banner if "journal:" in line).split("journal:")[1].split(" (")[0].strip())
        assert "removed on exit" in text
        assert not journal.parent.exists()
    # The banner says plant time is not real time, and names customer ids for tokens.
    assert "plant time (not real time)" in text
    assert "customer ids: 17100001" in text

    # A service manager's stop (SIGTERM) cleans up too.
    port, plant = _free_port(), _free_port()
    proc = _start(["demo", "--orders", "60", "--port", str(port), "--plant-port", str(plant), "--no-assets"])
    try:
        banner = _wait_for_line(proc, "Ctrl-C stops")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        _stop(proc)
    journal = Path(next(line for line in banner if "journal:" in line).split("journal:")[1].split(" (")[0].strip())
    assert not journal.parent.exists()

    named = tmp_path / "kept.sqlite"
    port, plant = _free_port(), _free_port()
    proc = _start(
        ["demo", "--orders", "60", "--port", str(port), "--plant-port", str(plant), "--no-assets", "--journal", str(named)]
    )
    try:
        _wait_for_line(proc, "Ctrl-C stops")
    finally:
        _stop(proc)
    assert named.exists()


def test_customers_lists_the_erp_customer_ids() -> None:
    port = _free_port()
    proc = _start(["simulate", "--orders", "60", "--port", str(port), "--speed", "0"])
    try:
        _wait_for_line(proc, "plant time")
        out = subprocess.run(
            CLI + ["customers", "--erp-url", f"http://127.0.0.1:{port}/erp", "--json"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )
    finally:
        _stop(proc)
    assert out.returncode == 0, out.stderr
    rows = [orjson.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == 50 and rows[0]["id"] == "17100001" and rows[0]["name"]
    down = subprocess.run(
        CLI + ["customers", "--erp-url", f"http://127.0.0.1:{_free_port()}/erp"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert down.returncode == 1
    assert "cannot read customers" in down.stderr and "Traceback" not in down.stderr


def test_a_run_without_chromium_says_so_visibly() -> None:
    env = dict(os.environ, ORDERGRAPH_CHROMIUM=str(ROOT / "no-such-chromium"))
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_browser_pages.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=env,
    )
    assert out.returncode == 0, out.stdout[-2000:]
    assert "BROWSER TESTS SKIPPED" in out.stdout
    assert "apt-get install chromium" in out.stdout


# --- completed orders leave the working list, and stay readable -----------------------------


async def test_orders_completed_long_ago_leave_the_default_listing_but_stay_readable() -> None:
    from .servers import GraphQLClient, running_gateway, running_plant

    async with running_plant(orders=300, start=START) as sim:
        world = sim.world
        now = world.now()
        week = dt.timedelta(days=7)
        old = sorted(
            so for so in world.sales_orders
            if world.get("A_SalesOrder", so).overall_sd_process_status == "C"
            and world.get("A_SalesOrder", so).last_change_date_time < now - week
        )
        recent_done = sorted(
            so for so in world.sales_orders
            if world.get("A_SalesOrder", so).overall_sd_process_status == "C" and so not in old
        )
        assert old and recent_done
        async with aiohttp.ClientSession() as http:
            # The source: openOrChangedSince on A_SalesOrder, refused elsewhere.
            since = (now - week).strftime("%Y-%m-%dT%H:%M:%SZ")
            async with http.get(f"{sim.url}/erp/A_SalesOrder", params={"openOrChangedSince": since, "$top": "1000"}) as r:
                listed = {o["SalesOrder"] for o in (await r.json())["value"]}
            assert listed == set(world.sales_orders) - set(old)
            async with http.get(f"{sim.url}/mes/A_ProductionOrder", params={"openOrChangedSince": since}) as r:
                assert r.status == 400

            async with running_gateway(sim.url, domain_clock=world.now, list_completed_days=7) as (url, _app):
                gql = GraphQLClient(url, http)
                page = "{ orders(first: 500) { totalCount nodes { id } } }"
                data = (await gql.query(page))["orders"]
                ids = {n["id"] for n in data["nodes"]}
                assert ids == set(world.sales_orders) - set(old) and data["totalCount"] == len(ids)
                assert set(recent_done) <= ids  # delivered lately: still on the list
                everything = await gql.query("{ orders(first: 500, filter: {includeCompleted: true}) { totalCount } }")
                assert everything["orders"]["totalCount"] == len(world.sales_orders)
                delivered = await gql.query("{ orders(first: 500, filter: {stage: [DELIVERED]}) { nodes { id } } }")
                assert set(old) <= {n["id"] for n in delivered["orders"]["nodes"]}
                one = await gql.query('query($id: ID!) { order(id: $id) { id stage } }', {"id": old[0]})
                assert one["order"] == {"id": old[0], "stage": "DELIVERED"}
                # The same list whatever the sort or a filter that can match a delivered order
                # (the order index holds every order; the cut must hold there too).
                await _app.state.gateway.exceptions.ready.wait()
                for listing in ("sort: VALUE", "sort: PREDICTED_DATE", "filter: {deliveryRisk: [DELIVERED, LATE]}"):
                    sorted_page = (await gql.query(f"{{ orders(first: 500, {listing}) {{ totalCount nodes {{ id }} }} }}"))["orders"]
                    got = {n["id"] for n in sorted_page["nodes"]}
                    assert not got & set(old), listing
                    if listing.startswith("sort"):
                        assert got == ids and sorted_page["totalCount"] == len(ids), listing

"""A demo run measured: start ``ordergraph demo``, read the plant and the gateway at the
start and after ``--minutes``, and print order intake, open orders (neither delivered nor
cancelled) and the stage and risk distribution.

    python -m bench.demo_run --minutes 10 [--port 8300 --plant-port 8400] [--json]

Counts come from the plant's control API (orders, lifecycle states) and from the gateway
(every order's ``stage`` and ``deliveryRisk``, including completed ones), read as the
integrator the demo prints a token for.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
PAGE = """query($after: String) { orders(first: 500, after: $after, filter: {includeCompleted: true}) {
  pageInfo { hasNextPage endCursor } nodes { id stage deliveryRisk } } }"""


async def snapshot(http: aiohttp.ClientSession, gateway: str, plant: str, token: str) -> dict[str, Any]:
    async with http.get(f"{plant}/control/world") as resp:
        world = await resp.json()
    stages: collections.Counter[str] = collections.Counter()
    risks: collections.Counter[str] = collections.Counter()
    after = None
    while True:
        async with http.post(
            f"{gateway}/graphql",
            json={"query": PAGE, "variables": {"after": after}},
            headers={"Authorization": f"Bearer {token}"},
        ) as resp:
            body = await resp.json()
        conn = body["data"]["orders"]
        for node in conn["nodes"]:
            stages[node["stage"]] += 1
            risks[node["deliveryRisk"]] += 1
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    return {
        "plantClock": world["clock"],
        "orders": world["orders"],
        "plantStates": world["states"],
        "stages": dict(sorted(stages.items())),
        "risks": dict(sorted(risks.items())),
        "workCentersDown": world["workCentersDown"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.demo_run", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--port", type=int, default=8300)
    p.add_argument("--plant-port", type=int, default=8400)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    cmd = [sys.executable, "-m", "gateway.cli", "demo", "--port", str(args.port), "--plant-port", str(args.plant_port), "--no-assets"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    banner: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        banner.append(line.rstrip())
        if "Ctrl-C stops" in line:
            break
    token = next(banner[i + 1].strip() for i, line in enumerate(banner) if "integrator token" in line)
    gateway = f"http://127.0.0.1:{args.port}"
    plant = f"http://127.0.0.1:{args.plant_port}"

    async def run() -> dict[str, Any]:
        async with aiohttp.ClientSession() as http:
            await asyncio.sleep(5)  # the gateway's first exception sweep
            start = await snapshot(http, gateway, plant, token)
            t0 = time.monotonic()
            await asyncio.sleep(args.minutes * 60)
            end = await snapshot(http, gateway, plant, token)
            return {"minutes": round((time.monotonic() - t0) / 60, 2), "start": start, "end": end}

    try:
        result = asyncio.run(run())
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    result["intake"] = result["end"]["orders"] - result["start"]["orders"]
    for key in ("start", "end"):
        snap = result[key]
        closed = snap["plantStates"].get("DELIVERED", 0) + snap["plantStates"].get("CANCELLED", 0)
        snap["openOrders"] = snap["orders"] - closed
    intake_line = next((line for line in banner if "new orders arrive" in line), "")
    result["intakePerPlantDay"] = float(m.group(1)) if (m := re.search(r"about (\d+)", intake_line)) else None
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['minutes']} real minutes; plant clock {result['start']['plantClock']} -> {result['end']['plantClock']}")
    print(f"orders {result['start']['orders']} -> {result['end']['orders']} (intake {result['intake']}, "
          f"configured ~{result['intakePerPlantDay']} per plant day)")
    opened, closed = result["start"]["openOrders"], result["end"]["openOrders"]
    print(f"open orders {opened} -> {closed} ({(closed - opened) / max(opened, 1):+.1%})")
    for key in ("stages", "risks", "plantStates"):
        names = sorted(set(result["start"][key]) | set(result["end"][key]))
        print(f"{key}:")
        for name in names:
            print(f"  {name:24} {result['start'][key].get(name, 0):6} -> {result['end'][key].get(name, 0):6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

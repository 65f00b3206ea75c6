"""Load generators: ``wrk`` with a Lua script when installed, else asyncio/aiohttp workers.

Both run outside the harness process, at a fixed number of open connections, each
connection sending its next request as soon as the previous answer arrived (closed loop),
cycling through a list of request bodies. Both count GraphQL errors (a 200 with
``"errors"``) as well as HTTP errors, and the caller measures their CPU so a saturated
load generator shows in the results.

The fallback worker is ``python -m bench.loadgen --url ... --bodies FILE ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from .procs import ROOT, raise_fd_limit

WRK_TEMPLATE = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
%(headers)s
local bodies = {
%(bodies)s
}
local n = #bodies
local counter = 0
gql_errors = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("start", #threads * 7919)
end

function init(args)
  counter = start %% n
end

function request()
  counter = counter %% n + 1
  return wrk.format(nil, nil, nil, bodies[counter])
end

function response(status, headers, body)
  if status ~= 200 or string.find(body, '"errors"', 1, true) then
    gql_errors = gql_errors + 1
  end
end

function done(summary, latency, requests)
  local errs = 0
  for _, t in ipairs(threads) do errs = errs + t:get("gql_errors") end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%%d,"duration_s":%%.6f,"errors":%%d,"socket_errors":%%d,"non_2xx":%%d,' ..
    '"p50_ms":%%.3f,"p90_ms":%%.3f,"p99_ms":%%.3f,"mean_ms":%%.3f,"max_ms":%%.3f}\n',
    summary.requests, summary.duration / 1e6, errs, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.mean / 1000, latency.max / 1000))
end
"""


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(s: str) -> str:
    level = "=" * 3
    while f"]{level}]" in s:
        level += "="
    return f"[{level}[{s}]{level}]"


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of sorted values, nearest rank."""
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


async def run_load(
    url: str,
    bodies: list[bytes],
    *,
    connections: int,
    duration: float,
    headers: dict[str, str] | None = None,
    use_wrk: bool | None = None,
    workers: int = 2,
) -> dict[str, Any]:
    """Closed-loop load at ``connections`` for ``duration`` seconds; returns the figures.

    ``requests_per_second``, ``p50_ms``/``p99_ms``, ``errors`` (HTTP or GraphQL),
    ``loadgen_cpu`` (cores used by the load generator) and ``tool``.
    """
    use_wrk = have_wrk() if use_wrk is None else use_wrk
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    if use_wrk:
        out = await _run_wrk(url, bodies, connections, duration, headers or {})
    else:
        out = await _run_python(url, bodies, connections, duration, headers or {}, workers)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out["loadgen_cpu"] = round(cpu / max(wall, 1e-9), 3)
    out["requests_per_second"] = round(out["requests"] / max(out["duration_s"], 1e-9), 1)
    out["connections"] = connections
    return out


async def _run_wrk(url: str, bodies: list[bytes], connections: int, duration: float, headers: dict[str, str]) -> dict[str, Any]:
    threads = 1 if connections < 4 else 2
    script = WRK_TEMPLATE % {
        "headers": "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()),
        "bodies": ",\n".join(_lua_string(b.decode()) for b in bodies),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
        path = f.name
    try:
        proc = await asyncio.create_subprocess_exec(
            "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
            "-s", path, url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        try:
            stdout, _ = await proc.communicate()
        except BaseException:
            proc.kill()  # the harness is stopping: do not leave wrk running
            raise
    finally:
        os.unlink(path)
    text = stdout.decode(errors="replace")
    for line in text.splitlines():
        if line.startswith("WRKJSON "):
            out = json.loads(line[len("WRKJSON ") :])
            out["errors"] += out.pop("socket_errors") + out.pop("non_2xx")
            out["tool"] = "wrk"
            return out
    raise RuntimeError(f"wrk gave no result:\n{text[-2000:]}")


async def _run_python(
    url: str, bodies: list[bytes], connections: int, duration: float, headers: dict[str, str], workers: int
) -> dict[str, Any]:
    workers = max(1, min(workers, connections))
    with tempfile.TemporaryDirectory() as tmp:
        body_file = Path(tmp) / "bodies.json"
        body_file.write_text(json.dumps([b.decode() for b in bodies]))
        procs = []
        for i in range(workers):
            conns = connections // workers + (1 if i < connections % workers else 0)
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bench.loadgen", "--url", url, "--bodies", str(body_file),
                    "--connections", str(conns), "--duration", str(duration), "--offset", str(i * 7919),
                    "--headers", json.dumps(headers),
                    stdout=asyncio.subprocess.PIPE, cwd=str(ROOT),
                )
            )
        results = [json.loads((await p.communicate())[0]) for p in procs]
    latencies = sorted(x for r in results for x in r.pop("latencies_ms"))
    return {
        "requests": sum(r["requests"] for r in results),
        "duration_s": max(r["duration_s"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "p50_ms": round(percentile(latencies, 50), 3),
        "p90_ms": round(percentile(latencies, 90), 3),
        "p99_ms": round(percentile(latencies, 99), 3),
        "mean_ms": round(sum(latencies) / len(latencies), 3) if latencies else 0.0,
        "max_ms": round(latencies[-1], 3) if latencies else 0.0,
        "tool": f"aiohttp x{workers}",
    }


async def _worker(url: str, bodies: list[bytes], connections: int, duration: float, offset: int, headers: dict[str, str]) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    counter = offset
    hdrs = {"Content-Type": "application/json", **headers}
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    async with aiohttp.ClientSession(connector=connector, headers=hdrs) as http:
        deadline = time.perf_counter() + duration

        async def loop() -> None:
            nonlocal errors, counter
            while time.perf_counter() < deadline:
                counter += 1
                body = bodies[counter % len(bodies)]
                t0 = time.perf_counter()
                try:
                    async with http.post(url, data=body) as resp:
                        data = await resp.read()
                        if resp.status != 200 or b'"errors"' in data:
                            errors += 1
                except (aiohttp.ClientError, OSError):
                    errors += 1
                latencies.append((time.perf_counter() - t0) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "duration_s": elapsed, "errors": errors, "latencies_ms": latencies}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen")
    p.add_argument("--url", required=True)
    p.add_argument("--bodies", required=True)
    p.add_argument("--connections", type=int, default=10)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--headers", default="{}")
    a = p.parse_args(argv)
    raise_fd_limit()
    bodies = [b.encode() for b in json.loads(Path(a.bodies).read_text())]
    run = asyncio.run
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        pass
    out = run(_worker(a.url, bodies, a.connections, a.duration, a.offset, json.loads(a.headers)))
    sys.stdout.write(json.dumps(out))


if __name__ == "__main__":
    main()

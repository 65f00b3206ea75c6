"""Processes of a benchmark run: start, wait until ready, read CPU and memory, stop.

Every server runs in its own OS process (the plant, the gateway under uvicorn, the Node
peer) and every load generator too, so none of them measures itself. CPU and RSS come from
``/proc`` (Linux), read by the harness from outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to the hard limit (10k sockets need it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def free_port() -> int:
    """A free loopback port (released again; the child binds it right away)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(pid: int) -> list[int]:
    """The direct child processes of ``pid`` (a gateway's workers)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its live children."""
    return cpu_seconds(pid) + sum(cpu_seconds(c) for c in children(pid))


def tree_rss_bytes(pid: int) -> int:
    """Resident set size of a process and its live children."""
    return rss_bytes(pid) + sum(rss_bytes(c) for c in children(pid))


def rss_bytes(pid: int) -> int:
    """Resident set size of a live process."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (FileNotFoundError, ProcessLookupError):
        return 0


def loadavg() -> str:
    """The machine's 1/5/15-minute load: others' work on a shared machine shows here."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def machine() -> dict[str, object]:
    """What the run ran on: kernel, cores, memory, tool versions."""
    mem = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    info: dict[str, object] = {
        "uname": " ".join(os.uname()),
        "nproc": os.cpu_count(),
        "memory_bytes": mem,
        "python": sys.version.split()[0],
        "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
    }
    for tool, args in (("node", ["--version"]), ("wrk", ["--version"])):
        path = shutil.which(tool)
        if path is None:
            info[tool] = None
            continue
        out = subprocess.run([path, *args], capture_output=True, text=True, check=False)
        text = (out.stdout or out.stderr).strip().splitlines()
        info[tool] = text[0] if text else "present"
    return info


def _preexec() -> None:
    raise_fd_limit()
    os.setsid()  # own process group: stop() ends the child and anything it started


@dataclasses.dataclass
class Proc:
    """A child process with a name, its log file and a readiness URL."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    url: str

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu(self) -> float:
        return tree_cpu_seconds(self.pid)  # a gateway with --workers: its workers too

    def rss(self) -> int:
        return tree_rss_bytes(self.pid)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    async def wait_ready(self, path: str = "/healthz", timeout: float = 60.0) -> None:
        """Poll ``url + path`` until it answers 200; fail with the log tail if the child died."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if not self.alive():
                    raise RuntimeError(f"{self.name} exited ({self.popen.returncode}):\n{self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(self.url + path, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the child's process group, SIGKILL after ``timeout``."""
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(5)


def spawn(
    name: str,
    argv: Sequence[str],
    url: str,
    log_dir: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Proc:
    """Start ``argv`` in its own process group, output to ``log_dir/<name>.log``."""
    log_path = log_dir / f"{name}.log"
    log = log_path.open("wb")
    full_env = child_env(env)
    popen = subprocess.Popen(
        list(argv),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=full_env,
        cwd=str(cwd or ROOT),
        preexec_fn=_preexec,
    )
    log.close()
    return Proc(name, popen, log_path, url)


def child_env(extra: dict[str, str] | None = None, source: Path | None = None) -> dict[str, str]:
    """Environment of a child: the project importable from ``source`` (default: this checkout).

    ``source`` lets a run measure another checkout of the gateway (``--gateway-src``);
    the ``bench`` package itself always comes from this checkout.
    """
    # ORDERGRAPH_* overrides would silently change the measured configuration.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERGRAPH_")}
    env.update({"PYTHONUNBUFFERED": "1", **(extra or {})})
    src = source or SOURCE
    paths = [str(src), str(ROOT)] if src != ROOT else [str(ROOT)]
    env["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [os.environ.get("PYTHONPATH", "")])])
    return env


SOURCE = ROOT  # set by the harness from --gateway-src


class CpuMeter:
    """CPU used by some processes over a window, as a share of one core."""

    def __init__(self, procs: dict[str, Proc]) -> None:
        self.procs = procs
        self.t0 = time.monotonic()
        self.c0 = {k: p.cpu() for k, p in procs.items()}
        self.children0 = _children_cpu()

    def read(self) -> dict[str, float]:
        dt = max(time.monotonic() - self.t0, 1e-9)
        out = {k: round((p.cpu() - self.c0[k]) / dt, 3) for k, p in self.procs.items()}
        # Load generators that already exited (wrk, loadgen workers) were reaped by us.
        out["loadgen"] = round((_children_cpu() - self.children0) / dt, 3)
        return out


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


async def read_subscriber_client(c: dict[str, Any]) -> None:
    """Follow one subscriber client process's stdout (bench/subs.py):
    ``READY connected failed``, ``COUNT n`` as messages arrive, ``RESULT`` once its
    result file is written. Updates ``c``'s "ready", "count" and "result"."""
    assert c["proc"].stdout is not None
    async for raw in c["proc"].stdout:
        line = raw.decode().strip()
        if line.startswith("READY "):
            c["ready"] = [int(x) for x in line.split()[1:3]]
        elif line.startswith("COUNT "):
            c["count"] = int(line.split()[1])
        elif line.startswith("RESULT"):
            c["result"] = json.loads(c["file"].read_text())


async def subscribers_ready(clients: list[dict[str, Any]], what: str = "a subscriber process") -> None:
    """Wait until every subscriber client process has said READY; fail when one died first."""
    while any(c["ready"] is None for c in clients):
        if any(c["proc"].returncode is not None and c["ready"] is None for c in clients):
            raise RuntimeError(f"{what} died before it was ready")
        await asyncio.sleep(0.2)


async def stop_subscriber_clients(
    clients: list[dict[str, Any]], readers: list[asyncio.Task[None]], *, tolerant: bool = False
) -> None:
    """Ask every subscriber client process to write its result and stop, follow their
    output to the end (``tolerant``: a reader that failed does not fail the run) and reap
    them."""
    for c in clients:
        assert c["proc"].stdin is not None
        c["proc"].stdin.write(b"STOP\n")
        with contextlib.suppress(ConnectionError):
            await c["proc"].stdin.drain()
    await asyncio.wait_for(asyncio.gather(*readers, return_exceptions=tolerant), timeout=120)
    for c in clients:
        await c["proc"].wait()

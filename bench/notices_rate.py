"""Proactive notices in the default demo: notices per minute, and events vs notices for
several debounce windows.

    python -m bench.notices_rate [--minutes 5] [--windows 0,60,900]

For each window, runs ``ordergraph demo --notice-window W`` (2,000 orders, the plant at
600x, a local SMTP server, every customer's address registered) for ``--minutes``, then
reads the gateway's ``/notices/feed`` and the notices outbox, and prints one row per
window: events processed, order decisions with something to tell, customer notices (sent,
waiting in their window, cancelled because a delay and its recovery fell in one window),
customer notices per minute, events per notice, and the internal notices. Numbers only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(window: float, minutes: float) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="ordergraph-notices-bench-"))
    port, plant = _free_port(), _free_port()
    log = (folder / "demo.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "demo", "--port", str(port), "--plant-port", str(plant), "--no-assets",
         "--journal", str(folder / "journal.sqlite"), "--notice-window", str(window)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        token = ""
        for _ in range(600):
            lines = (folder / "demo.log").read_text().splitlines()
            for i, line in enumerate(lines):
                if line.strip().startswith("integrator token") and i + 1 < len(lines):
                    token = lines[i + 1].strip()
            if token and any("exception tracker:" in line and "evaluated in" in line for line in lines):
                break
            time.sleep(0.5)
        started = time.time()
        time.sleep(minutes * 60)
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/notices/feed?limit=1", headers={"Authorization": f"Bearer {token}"}
        )
        stats = json.load(urllib.request.urlopen(req))["stats"]
        elapsed = (time.time() - started) / 60
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    db = sqlite3.connect(f"file:{folder / 'notices.sqlite'}?mode=ro", uri=True)

    def one(sql: str) -> int:
        return db.execute(sql).fetchone()[0] or 0

    row = {
        "window_s": window,
        "minutes": round(elapsed, 1),
        "events": stats["eventsProcessed"],
        "decisions": one("SELECT SUM(decisions) FROM notices WHERE customer != ''"),
        "sent": one("SELECT COUNT(*) FROM notices WHERE customer != '' AND status = 'released'"),
        "waiting": one("SELECT COUNT(*) FROM notices WHERE customer != '' AND status = 'waiting'"),
        "cancelled": one("SELECT COUNT(*) FROM notices WHERE customer != '' AND status = 'cancelled'"),
        "internal": one("SELECT COUNT(*) FROM notices WHERE customer = ''"),
    }
    db.close()
    told = row["sent"] + row["waiting"]
    row["notices_per_min"] = round(row["sent"] / max(elapsed, 1e-9), 1)
    row["events_per_notice"] = round(row["events"] / told, 1) if told else None
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--windows", default="0,60,900", help="debounce windows in seconds, comma-separated")
    args = parser.parse_args()
    rows = [run(float(w), args.minutes) for w in args.windows.split(",")]
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + " --- |" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()

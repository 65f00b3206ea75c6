"""Smoke test of the benchmark harness (``bench/``) at its tiny size.

It runs the real harness — plant, gateway under uvicorn, the Node peer when node/npm are
installed, load generators, WebSocket subscriber processes — and checks that the run
produces every figure of every scenario. It asserts no timing: numbers live in bench/.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The harness's own smoke runs take most of a minute each: `-m "not slow"` skips them
# locally; CI runs them.
pytestmark = pytest.mark.slow

HAVE_NODE = bool(shutil.which("node") and shutil.which("npm"))
COUNTS = (1, 10, 50, 200)
SYSTEMS = ("erp", "mes", "wms", "qms", "tms")


@pytest.mark.timeout(960)  # the run itself is bounded at 900 s below
def test_tiny_run_produces_every_figure(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "bench", "--tiny", "--out", str(tmp_path), "--no-readme"]
    if not HAVE_NODE:
        argv.append("--no-peer")
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "[bench" in run.stdout  # progress output while it runs

    [json_file] = tmp_path.glob("*.json")
    [md_file] = tmp_path.glob("*.md")
    results = json.loads(json_file.read_text())
    servers = ["ordergraph", "peer"] if HAVE_NODE else ["ordergraph"]

    meta = results["meta"]
    assert meta["machine"]["nproc"] and meta["machine"]["uname"] and meta["date"]

    # 1. upstream calls per query: every size x both field sets, per source, read from the plant
    rows = results["upstream_calls"]
    assert {(r["orders"], r["fields"]) for r in rows} == {(n, f) for n in COUNTS for f in ("ERP only", "every section")}
    for r in rows:
        for s in servers:
            assert r[s]["orders_returned"] == r["orders"]
            assert set(SYSTEMS) <= set(r[s]) and r[s]["total"] == sum(r[s][x] for x in SYSTEMS)
            assert r[s]["erp"] >= 1
            if r["fields"] == "ERP only":
                assert r[s]["total"] == r[s]["erp"]  # no other source is called for ERP fields
            elif r["orders"] > 1:
                assert all(r[s][x] >= 1 for x in ("mes", "wms", "qms"))

    # 2. latency p50/p99 against the critical path, as ratios
    assert [r["query"] for r in results["latency"]] == ["one order, full view", "50-order page"]
    for r in results["latency"]:
        assert r["ideal_ms"] == 3 * 20.0
        for s in servers:
            assert r[s]["requests"] > 0 and r[s]["errors"] == 0
            assert r[s]["p50_ms"] > 0 and r[s]["p99_ms"] >= r[s]["p50_ms"]
            assert r[s]["p50_ratio"] > 0 and r[s]["p99_ratio"] > 0

    # 3. throughput: three workloads, cold and warm, ordergraph / peer ratios
    rows = results["throughput"]
    assert {(r["workload"], r["cache"]) for r in rows} == {
        (w, c) for w in ("where is my order", "dashboard page (50)", "customer's orders") for c in ("cold", "warm")
    }
    for r in rows:
        for s in servers:
            assert r[s]["errors"] == 0
            assert "requests_per_second" in r[s] and "loadgen_cpu" in r[s] and "server_cpu" in r[s]
        if HAVE_NODE:
            assert "ratio" in r
    driver = results["freshness"]["driver"]
    assert driver["events_sent"] > 0 and driver["rejected"] == 0  # the plant's signed events were accepted
    # Reads right after the gateway's 202 for a change's events never serve the old state.
    fresh = results["freshness"]
    assert fresh["stale_after_ack"] == 0 and fresh["never_fresh"] == 0, fresh

    # 3b. the warm runs against the peer with yoga's response cache (5 s and 60 s TTLs) and
    # ordergraph as `serve --workers 2`: every workload measured for each, ratios to each,
    # and every server's read right after the 202 checked against the sources
    if HAVE_NODE:
        rivals = {"peer", "peer-ttl5s", "peer-ttl60s", "ordergraph-rttl60s"}
        if not any("--also-workers" in n for n in results["notes"]):  # Redis reachable
            rivals.add("ordergraph-w2")
        for r in (r for r in rows if r["cache"] == "warm"):
            assert set(r["ratios"]) == rivals, r.get("ratios")
            for name in rivals:
                assert r[name]["requests"] > 0 and r[name]["errors"] == 0
                assert r["ratios"][name] == round(r["ordergraph"]["requests_per_second"] / r[name]["requests_per_second"], 2)
        tallies = fresh["by_workload"]
        assert set(tallies) <= {"where is my order", "dashboard page (50)", "customer's orders"} and tallies
        for per_server in tallies.values():
            assert set(per_server) == rivals | {"ordergraph"}
            assert per_server["ordergraph"]["stale"] == 0 and per_server["ordergraph"]["probes"] > 0
            assert per_server["peer"]["stale"] == 0  # the uncached peer reads the sources: the probe's control
            assert per_server.get("ordergraph-w2", {"stale": 0})["stale"] == 0  # read-after-202 across replicas
            assert per_server["ordergraph-rttl60s"]["stale"] == 0  # a longer clock bound, events still drop answers
        # the cached peers answered some probe from their cache: the probe can see staleness
        assert sum(t["peer-ttl60s"]["stale"] for t in tallies.values()) > 0

    # 4. subscriptions: two sizes from separate processes; every expected message delivered
    subs = results["subscriptions"]
    assert len(subs) == 2
    for r in subs:
        assert r["connected"] == r["subscribers"] and r["failed_connections"] == 0
        assert r["client_processes"] >= 2
        assert r["events"] > 0 and r["expected"] > 0
        assert r["delivered"] == r["expected"] and r["equal"]
        assert r["errors"] == 0
        assert r["p50_ms"] > 0 and r["p99_ms"] >= r["p50_ms"]
        assert "bytes_per_connection" in r

    # 5. ingestion: signed events accepted durably (202), single and batched
    ing = results["ingestion"]
    assert [r["batch"] for r in ing] == [1, 100]
    for r in ing:
        assert r["accepted"] > 0 and r["refused"] == 0 and r["errors"] == 0 and r["events_per_second"] > 0

    # 6. under attack: the normal workloads unloaded and attacked, the hostile viewer refused
    rows = results["attack"]
    assert [r["workload"] for r in rows] == ["where is my order", "dashboard page (50)"]
    for r in rows:
        for label in ("unloaded", "attacked"):
            assert r[label]["requests"] > 0 and r[label]["errors"] == 0
            assert r[label]["p99_ms"] >= r[label]["p50_ms"] > 0
        assert r["p50_ratio"] > 0 and r["p99_ratio"] > 0
        hostile = r["hostile"]
        assert hostile["sent"] > 0 and hostile["errors"] == 0
        # every hostile document was refused (a limit: 400; its rate limit or budget: 429)
        assert set(hostile["statuses"]) <= {"400", "429"} and sum(hostile["statuses"].values()) == hostile["sent"]

    # 7. tracing overhead: cold and warm, both workloads, tracing on as a ratio to off
    rows = results["tracing"]
    assert {(r["workload"], r["cache"]) for r in rows} == {
        (w, c) for w in ("where is my order", "dashboard page (50)") for c in ("cold", "warm")
    }
    for r in rows:
        for label in ("off", "on"):
            assert r[label]["requests"] > 0 and r[label]["errors"] == 0
        assert r["ratio"] == round(r["on"]["requests_per_second"] / r["off"]["requests_per_second"], 3)

    table = md_file.read_text()
    if HAVE_NODE:
        assert "Against the cache a team would add" in table and "warm ≥ 3 × the peer with a 60 s response cache" in table
    for heading in ("Upstream calls per query", "Latency vs the critical path", "Throughput", "Subscriptions", "Event ingestion", "Under attack", "Tracing overhead", "Targets"):
        assert heading in table


def _redis_up() -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def test_tiny_soak_and_scaleout_produce_their_figures(tmp_path: Path) -> None:
    """``--only soak,scaleout,apply`` (not in the default set): the soak's windows and summary,
    the processor's apply rate, and the Redis commands of ``serve --workers 2`` per event and
    per request."""
    argv = [sys.executable, "-m", "bench", "--tiny", "--only", "soak,scaleout,apply", "--out", str(tmp_path), "--no-readme"]
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    [json_file] = tmp_path.glob("*.json")
    results = json.loads(json_file.read_text())
    table = next(tmp_path.glob("*.md")).read_text()

    soak = results["soak"]
    workloads = {"where is my order", "dashboard page (50)", "customer's orders"}
    assert soak["windows"] >= 2 and len(soak["samples"]) == soak["windows"]
    assert soak["connected"] == soak["subscribers"] > 0
    assert soak["event_rate"] == 2 * 23.0 and soak["driver"]["events_sent"] > 0 and soak["driver"]["rejected"] == 0
    for s in soak["samples"]:
        assert s["rss_bytes"] > 0 and s["backlog"] is not None and s["gateway_cpu"] >= 0
        # the bounded caches' sizes, to tell their filling from growth
        assert s["record_cache_entries"] > 0 and s["response_cache_entries"] is not None
        for w in workloads:
            assert s[w]["requests"] > 0 and s[w]["p99_ms"] >= s[w]["p50_ms"] > 0
    assert soak["errors"] == 0 and set(soak["p99_drift"]) == workloads
    assert soak["rss_growth_pct"] is not None and soak["backlog_max"] >= soak["backlog_last"] >= 0
    assert soak["caches_end"]["record_cache_entries"] == soak["samples"][-1]["record_cache_entries"]
    assert "Soak" in table and "soak: RSS growth after warm-up" in table

    apply = results["apply"]
    # every event the driver offered was applied: the backlog emptied, at a measured rate
    assert apply["new_events"] > 0 and apply["driver"]["rejected"] == 0
    assert apply["samples"][-1]["backlog"] == 0 and apply["applied_events_per_second"] > 0

    if not _redis_up():
        assert any("scaleout: no Redis" in n for n in results["notes"])
        pytest.skip("no Redis on 127.0.0.1:6379: the scale-out cost was not measured (the soak was)")
    so = results["scaleout"]
    assert so["workers"] == 2
    phases = {p["phase"]: p for p in so["phases"]}
    assert list(phases) == ["idle", "events", "queries, caches cold (misses)", "queries, caches warm (mostly hits)"]
    events = phases["events"]
    # every accepted event is journaled in Redis by a script call: commands were counted
    assert events["units"] > 0 and events["per_unit"] > 0 and events["commands"].get("EVALSHA", 0) >= events["units"]
    hits = phases["queries, caches warm (mostly hits)"]
    assert hits["units"] > 0 and hits["errors"] == 0 and hits["per_unit"] is not None
    # a replica reads the fence before answering from its caches: at most one GET per request
    assert hits["commands"].get("GET", 0) <= hits["units"]
    assert "Scale-out cost" in table

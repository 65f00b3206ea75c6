"""Smoke test of the scale scenario (``bench/scale.py``) at a tiny size: the real plant and
gateway processes, every figure of the table present. It asserts no timing."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ("order", "dashboard", "dashboard LATE", "exceptions", "impact")


@pytest.mark.parametrize("together", [False, True])
def test_scale_run_produces_every_figure(tmp_path: Path, together: bool) -> None:
    argv = [sys.executable, "-m", "bench.scale", "--sizes", "200,400", "--samples", "3", "--out", str(tmp_path)]
    # Together: started twice each, in turn (start to ready a median of starts).
    extra = ["--together", "--ready-rounds", "2"] if together else []
    run = subprocess.run(argv + extra, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    # Together: both sizes started first, then each question asked of both in turn.
    lines = run.stdout.splitlines()
    started = [i for i, line in enumerate(lines) if "ready in" in line and "gateway" in line]
    asked = [i for i, line in enumerate(lines) if " orders, order: cold" in line]
    assert len(started) == (4 if together else 2) and len(asked) == 2
    assert (started[1] < asked[0]) == together
    if together:  # the second starts come after both first ones, 200 then 400
        assert [lines[i].endswith("(start 2)") for i in started] == [False, False, True, True]
        settled = [i for i, line in enumerate(lines) if "first full collection done" in line]
        assert len(settled) == 2 and started[-1] < min(settled) and max(settled) < asked[0]
    [json_file] = tmp_path.glob("scale-*/scale.json")
    results = json.loads(json_file.read_text())
    assert [r["orders"] for r in results] == [200, 400]
    for r in results:
        assert r["gateway"] == "after"
        assert r["ready_s"] >= r["listening_s"] > 0 and r["plant_ready_s"] > 0
        assert r["rss_ready_mb"] > 0 and r["load_before"] and r["load_after"]
        assert r["plant_cpu_s"] > 0 and r["ready_cpu_s"] > 0  # CPU to ready, apart from the load
        assert set(r["queries"]) == set(QUESTIONS)
        # together: asked once each gateway had run its first full collection after start-up
        assert ("first_full_collection_cpu_s" in r) == together
        rounds = r["ready_rounds"]
        assert len(rounds) == (2 if together else 1)
        assert r["ready_s"] == statistics.median(x["ready_s"] for x in rounds)
        assert r["ready_cpu_s"] == statistics.median(x["ready_cpu_s"] for x in rounds)
        for q in r["queries"].values():
            assert q["errors"] == 0 and q["cold"] > 0 and 0 < q["p50"] <= q["p99"]
            assert q["full_collections"] >= 0 and q["full_collection_s"] >= 0  # read from /metrics
    table = (json_file.parent / "scale.md").read_text()
    assert table.count("\n| after |") == 2
    assert table.count(" s CPU)") == 4  # plant and gateway, both sizes
    assert table.count("median of 2 starts") == (2 if together else 0)


def test_scale_refuses_bad_arguments(tmp_path: Path) -> None:
    for bad in (
        ["--sizes", "ten"], ["--sizes", "5"], ["--gateway-src", str(tmp_path)],
        ["--ready-rounds", "0", "--together"], ["--ready-rounds", "2"],
    ):  # fmt: skip
        run = subprocess.run([sys.executable, "-m", "bench.scale", *bad], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert run.returncode == 2 and "error:" in run.stderr, (bad, run.stderr)

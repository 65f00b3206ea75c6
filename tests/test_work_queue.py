"""A work centre's queue: the pure rule (sources/work_queue.py) and the simulated MES that
reschedules by it when a machine breaks."""

from __future__ import annotations

import datetime as dt

from sources.calendars import ROUND_THE_CLOCK
from sources.records import ProductionOrder
from sources.simulator.world import World
from sources.work_queue import Job, downtime_delays, expedite, in_sequence

H = dt.timedelta(hours=1)
NOW = dt.datetime(2026, 3, 2, 6, 0, tzinfo=dt.UTC)
PLANT = ROUND_THE_CLOCK


def job(key: str, start_h: float, end_h: float, running: bool = False) -> Job:
    return Job(key, NOW + start_h * H, NOW + end_h * H, running)


def test_a_breakdown_pushes_the_running_job_and_the_queue_until_idle_time_absorbs_it() -> None:
    jobs = [
        job("A", -2, 3, running=True),  # running: stands still 8 h
        job("B", 3, 6),  # queued right behind it: waits for its end, 8 h later
        job("C", 6, 9),  # carries the same 8 h
        job("D", 12, 14),  # 3 h idle before it: 3 h less
        job("E", 40, 42),  # far enough out: idle time took it all
    ]
    delays = downtime_delays(jobs, now=NOW, up_at=NOW + 8 * H, plant=PLANT)
    assert delays["A"] == 8 * H
    assert delays["B"] == NOW + 11 * H
    assert delays["C"] == NOW + 14 * H
    assert delays["D"] == NOW + 17 * H
    assert "E" not in delays
    # With nothing running, a job due before the repair starts at the repair.
    idle_first = downtime_delays(jobs[1:], now=NOW, up_at=NOW + 8 * H, plant=PLANT)
    assert idle_first["B"] == NOW + 8 * H and idle_first["C"] == NOW + 11 * H
    # Each job carries its own delay; a longer breakdown pushes further.
    longer = downtime_delays(jobs, now=NOW, up_at=NOW + 32 * H, plant=PLANT)
    assert longer["D"] > delays["D"] and longer["E"] == NOW + 43 * H  # 29 h carried, 26 h idle


def test_the_queue_runs_running_jobs_first_then_by_scheduled_start() -> None:
    queue = in_sequence([job("2", 5, 6), job("1", 1, 2), job("9", 9, 10, running=True)])
    assert [j.key for j in queue] == ["9", "1", "2"]


def test_expedite_moves_a_job_to_the_front_and_the_jobs_it_passes_wait() -> None:
    jobs = [job("A", 0, 2, running=True), job("B", 2, 6), job("C", 6, 10), job("D", 10, 12), job("E", 30, 31)]
    shifts = expedite(jobs, {"D"}, now=NOW, plant=PLANT)
    assert shifts["D"] == -8 * H  # starts where B was due
    assert shifts["B"] == shifts["C"] == 2 * H  # each waits for D's 2 h of work
    assert "A" not in shifts and "E" not in shifts  # running; idle time before E absorbs it
    assert expedite(jobs, {"B"}, now=NOW, plant=PLANT) == {}  # already at the front


START = dt.datetime(2026, 3, 2, 6, 0, tzinfo=dt.UTC)


def _queued(world: World, wc: str) -> dict[str, ProductionOrder]:
    out = {}
    for po in world.table("A_ProductionOrder").records():
        assert isinstance(po, ProductionOrder)
        if po.work_center == wc and po.status in ("CREATED", "RELEASED"):
            out[po.manufacturing_order] = po
    return out


def test_the_simulated_mes_reschedules_the_queue_behind_a_breakdown_and_gives_it_back() -> None:
    world = World.generate(400, start=START, speed=0)
    wc = next(w for w in sorted(world.tables["A_WorkCenter"].keys()) if w not in world.summary()["workCentersDown"])
    before = {k: (po.scheduled_start_date, po.scheduled_end_date) for k, po in _queued(world, wc).items()}
    assert before
    changes = world.work_center_down(wc, 8)
    up = START + 8 * H
    rescheduled = {c.key for c in changes if c.change_type == "ProductionOrder.Changed"}
    after = _queued(world, wc)
    assert rescheduled and rescheduled <= set(before)
    for key, po in after.items():
        start, end = before[key]
        if key in rescheduled:
            assert po.scheduled_start_date > start and po.scheduled_start_date >= up
            assert po.scheduled_end_date > end
            assert po.planned_start_date <= start  # the basic dates stay the plan
        else:
            assert (po.scheduled_start_date, po.scheduled_end_date) == (start, end)
    # Everything due before the repair waits for it, and at least one job due after it too
    # (queued behind), each by its own delay.
    assert all(key in rescheduled for key, (start, _) in before.items() if start < up)
    assert any(before[key][0] >= up for key in rescheduled)
    assert len({after[k].scheduled_start_date - before[k][0] for k in rescheduled}) > 1

    # Up again at once: the downtime took nothing, the queue is back where it was.
    world.work_center_up(wc)
    again = _queued(world, wc)
    assert {k: (po.scheduled_start_date, po.scheduled_end_date) for k, po in again.items()} == before


def test_no_job_on_a_broken_work_centre_starts_before_its_new_start() -> None:
    world = World.generate(400, start=START, speed=0)
    wc = next(w for w in sorted(world.tables["A_WorkCenter"].keys()) if w not in world.summary()["workCentersDown"])
    world.work_center_down(wc, 8)
    planned = {k: po.scheduled_start_date for k, po in _queued(world, wc).items()}
    world.advance_clock(48)
    started = [
        po for po in world.table("A_ProductionOrder").records()
        if isinstance(po, ProductionOrder) and po.manufacturing_order in planned and po.actual_start_date
    ]
    assert started  # the plant moved on
    for po in started:
        assert po.actual_start_date >= START + 8 * H

"""A work centre's queue: its production orders in sequence, and how a down period or a
job moved to the front pushes them.

One rule for the simulated MES (which reschedules its production orders when a machine
breaks) and the gateway's what-if (which reschedules copies). The queue is the work
centre's unfinished production orders: the running ones first, then the others by
scheduled start (then number). The plan may overlap jobs (a work centre with more than one
station); what the queue has no room for is the idle time between them: a delay carried by
one job passes to the next one less the idle working time between the end of everything
planned before it and its start. So a breakdown delays the running job and everything
queued behind it, until idle time in the plan has absorbed it. Times count working time
on the plant's calendar.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable

from .calendars import FactoryCalendar

ZERO = dt.timedelta(0)


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """One production order in a work centre's queue."""

    key: str  # the production order
    start: dt.datetime  # scheduled start
    end: dt.datetime  # scheduled end
    running: bool = False  # started, not yet confirmed


def in_sequence(jobs: Iterable[Job]) -> list[Job]:
    """The queue in the order the work centre works through it."""
    return sorted(jobs, key=lambda j: (not j.running, j.start, len(j.key), j.key))


def _carry(queue: list[Job], direct: dict[str, dt.timedelta], plant: FactoryCalendar) -> dict[str, dt.timedelta]:
    """Each job's delay: its own (``direct``) or what the job before it carries, less the
    idle working time in the plan between them."""
    out: dict[str, dt.timedelta] = {}
    carried = ZERO
    planned_until: dt.datetime | None = None
    for job in queue:
        idle = ZERO
        if planned_until is not None and job.start > planned_until:
            idle = plant.working_time_between(planned_until, job.start)
        delay = max(direct.get(job.key, ZERO), carried - idle, ZERO)
        out[job.key] = delay
        carried = delay
        planned_until = job.end if planned_until is None else max(planned_until, job.end)
    return out


def _from_now(job: Job, now: dt.datetime, plant: FactoryCalendar) -> Job:
    """A job not running that was due to start before now starts now at the earliest."""
    if job.running or job.start >= now:
        return job
    work = plant.working_time_between(job.start, job.end)
    return dataclasses.replace(job, start=now, end=plant.add_working_time(now, work))


def downtime_delays(
    jobs: Iterable[Job], *, now: dt.datetime, up_at: dt.datetime, plant: FactoryCalendar
) -> dict[str, dt.datetime | dt.timedelta]:
    """What a down period from now until ``up_at`` does to the queue (see the module): a
    running job stands still for the working time the machine is down (its delay, a
    timedelta); a job due to start before ``up_at`` starts then, and the jobs queued behind
    move by what they carry: for each job not running, its new start (a datetime; one due
    before now counts from now). Jobs not delayed are left out."""
    queue = in_sequence(_from_now(j, now, plant) for j in jobs)
    direct: dict[str, dt.timedelta] = {}
    for job in queue:
        if job.running:
            direct[job.key] = plant.working_time_between(now, up_at)
        elif job.start < up_at:
            direct[job.key] = plant.working_time_between(job.start, up_at)
    out: dict[str, dt.datetime | dt.timedelta] = {}
    by_key = {j.key: j for j in queue}
    for key, delay in _carry(queue, direct, plant).items():
        if delay <= ZERO:
            continue
        job = by_key[key]
        out[key] = delay if job.running else plant.next_working_time(plant.add_working_time(job.start, delay))
    return out


def expedite(
    jobs: Iterable[Job], keys: set[str], *, now: dt.datetime, plant: FactoryCalendar
) -> dict[str, dt.timedelta]:
    """Move the jobs ``keys`` (not running) to the front of the queue: they start when the
    first job not yet running was to start (not before now) and run their scheduled work;
    every job they pass waits that much longer, less idle time. Returns each moved job's
    shift: negative for the expedited jobs (earlier), positive for those pushed back."""
    queue = in_sequence(jobs)
    waiting = [j for j in queue if not j.running]
    moved = [j for j in waiting if j.key in keys]
    if not moved or not waiting:
        return {}
    first = waiting[0]
    at = max(first.start, now)
    shifts: dict[str, dt.timedelta] = {}
    work = ZERO
    for job in moved:
        run = plant.working_time_between(job.start, job.end)
        new_start = plant.next_working_time(plant.add_working_time(at, work))
        shifts[job.key] = -plant.working_time_between(new_start, job.start) if new_start < job.start else ZERO
        work += run
    # The jobs passed (between the front and the last expedited one) wait for that work.
    last = max(waiting.index(j) for j in moved)
    passed = [j for j in waiting[: last + 1] if j.key not in keys]
    rest = [j for j in waiting if j.key not in keys]
    direct = {j.key: work for j in passed}
    for key, delay in _carry(rest, direct, plant).items():
        if delay > ZERO:
            shifts[key] = delay
    return {k: d for k, d in shifts.items() if d != ZERO}


def shifted(at: dt.datetime, delay: dt.timedelta, plant: FactoryCalendar) -> dt.datetime:
    """``at`` moved by a working-time ``delay`` (negative: earlier) on the plant's calendar."""
    if delay >= ZERO:
        return plant.add_working_time(at, delay)
    return plant.subtract_working_time(at, -delay)

"""Which production a work centre's downtime holds, one rule for the exceptions
(MACHINE_DOWN) and the what-if (``impact``): a running production order, one scheduled to
start before the machine is expected back, or one queued behind it: the MES rescheduled
its start past its basic (planned) start while the machine is down (``sources.work_queue``:
a breakdown pushes the queue until idle time absorbs it). Work the downtime leaves where
the plan had it is not held (the prediction lets it start on time:
``prediction._production_run``)."""

from __future__ import annotations

import datetime as dt

from sources.records import ProductionOrder, WorkCenter

from .view import production_completed, production_started


def expected_up(work_center: WorkCenter, now: dt.datetime, default_downtime_hours: float) -> dt.datetime:
    """When a DOWN work centre is expected back: its expected-up time, or, when that is
    unknown or already passed, the default downtime from now (as the prediction counts)."""
    expected = work_center.expected_up_at
    return expected if expected and expected > now else now + dt.timedelta(hours=default_downtime_hours)


def held_by_downtime(
    order: ProductionOrder, work_center: WorkCenter, now: dt.datetime, default_downtime_hours: float
) -> bool:
    """True when ``work_center`` is down and its downtime holds ``order``."""
    if work_center.state.upper() != "DOWN" or production_completed(order):
        return False
    if production_started(order):
        return True
    start = order.scheduled_start_date
    if start is None or start < expected_up(work_center, now, default_downtime_hours):
        return True
    # Queued behind the downtime: rescheduled later than planned while the machine is down.
    planned = order.planned_start_date
    return planned is not None and start > planned

"""Working time: the calendars an order's steps happen on, and how long the gaps between
them are.

The plant works on its factory calendar (``PLANT_CALENDAR``: Stuttgart, two shifts Mon–Fri,
Baden-Württemberg's holidays): production, quality and warehouse steps happen in its
shifts and their gaps count its working time; carriers drive at any time and deliver in
the ship-to's receiving hours on its working days.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Callable, Mapping

from ...calendars import FactoryCalendar
from .clock import hours_span, whole_seconds
from .master_data import ShipTo

# The plant's factory calendar (the gateway's [calendar] defaults say the same) and the
# receiving days and hours of its customers, placed at each customer's address.
PLANT_CALENDAR = FactoryCalendar(
    time_zone="Europe/Berlin",
    country="DE",
    subdivision="BW",
    working_days=(0, 1, 2, 3, 4),
    shifts=((6 * 60, 14 * 60), (14 * 60, 22 * 60)),
)
RECEIVING_CALENDAR = FactoryCalendar(time_zone="Europe/Berlin", working_days=(0, 1, 2, 3, 4), shifts=((8 * 60, 17 * 60),))
# How the gap before each step is measured and where the step may happen. Gaps before
# these steps are elapsed time (a supplier, the planning queue, a credit desk, a truck);
# every other gap counts the plant's working time. Transit steps happen at any time,
# delivery steps in the ship-to's receiving hours, all others in the plant's shifts.
ELAPSED_GAPS = frozenset(
    {"clear_shortage", "release", "unblock", "delay", "en_route", "out_for_delivery", "attempt_fail", "deliver"}
)
TRANSIT_STEPS = frozenset({"delay", "en_route"})
DELIVERY_STEPS = frozenset({"out_for_delivery", "attempt_fail", "deliver"})


class WorkingTime:
    """When an order's steps happen: each gap measured as its step counts it, each step
    placed in its working time (the plant's shifts, the ship-to's receiving hours, or any
    time)."""

    def __init__(self, start: dt.datetime, ship_tos: Mapping[str, ShipTo]) -> None:
        self.start = start  # the plant clock's origin: generated orders are laid out around it
        self._ship_tos = ship_tos

    def lay_out(
        self, names: list[str], times: list[float], now_rel: float, customer: str, now: dt.datetime | None = None
    ) -> tuple[list[dt.datetime], Callable[[float], dt.datetime]]:
        """Instants of an order's steps at relative hours ``times`` (``now_rel`` is the plant
        clock's start), each gap measured and each step placed on its calendar; and the
        instant of any relative position. Walks out from now both ways, so the order is in
        the same state at the start whatever the calendars stretch. ``now``: the instant
        ``now_rel`` stands for (default the clock's start; an order placed later passes the
        plant clock)."""
        origin = self.start if now is None else now
        n = len(names)
        k = bisect.bisect_right(times, now_rel)  # steps at or before now
        dues: list[dt.datetime] = [origin] * n
        t, pos = origin, now_rel
        for i in range(k, n):
            t = self.place(names[i], self.measure(names[i], t, times[i] - pos), customer, forward=True)
            dues[i], pos = t, times[i]
        t, pos = origin, now_rel
        for i in range(k - 1, -1, -1):
            gap = names[i + 1] if i + 1 < n else None  # the gap after step i is its successor's
            t = self.place(names[i], self.measure(gap, t, times[i] - pos), customer, forward=False)
            dues[i], pos = t, times[i]

        def at(x: float) -> dt.datetime:
            exact = bisect.bisect_left(times, x)
            if exact < n and times[exact] == x:
                return dues[exact]
            j = bisect.bisect_right(times, x)  # x lies in the gap before step j
            gap = names[j] if j < n else None
            if x >= now_rel:
                base, pos = (dues[j - 1], times[j - 1]) if j > 0 and times[j - 1] >= now_rel else (origin, now_rel)
            else:
                base, pos = (dues[j], times[j]) if j < n and times[j] <= now_rel else (origin, now_rel)
            return self.measure(gap, base, x - pos)

        return dues, at

    @staticmethod
    def measure(step: str | None, at: dt.datetime, hours: float) -> dt.datetime:
        """``hours`` from ``at`` (negative: before) as the gap before ``step`` counts them."""
        if step is None or step in ELAPSED_GAPS:
            return at + hours_span(hours)
        return PLANT_CALENDAR.add_working_time(at, hours_span(hours))

    def calendar_of(self, step: str, customer: str) -> FactoryCalendar | None:
        """Where a step may happen: the plant's shifts, the ship-to's hours, or any time."""
        if step in TRANSIT_STEPS:
            return None
        if step in DELIVERY_STEPS:
            return self._ship_tos[customer].receiving
        return PLANT_CALENDAR

    def after(self, step: str, at: dt.datetime, hours: float, customer: str) -> dt.datetime:
        """When ``step`` happens ``hours`` after ``at``: the gap measured as the step counts
        it, then placed in the step's working time."""
        return self.place(step, self.measure(step, at, hours), customer, forward=True)

    def place(self, step: str, at: dt.datetime, customer: str, *, forward: bool) -> dt.datetime:
        """``at`` moved into the step's working time: the next such instant, or the last."""
        calendar = self.calendar_of(step, customer)
        if calendar is None:
            return at
        return calendar.next_working_time(at) if forward else calendar.subtract_working_time(at, dt.timedelta(0))

    def receiving_calendar(self, customer: str) -> FactoryCalendar:
        """The ship-to's receiving days and hours."""
        return self._ship_tos[customer].receiving

    def receiving_time(self, customer: str, at: dt.datetime) -> dt.datetime:
        """A carrier's estimate: within the ship-to's receiving hours, on a working day."""
        return whole_seconds(self._ship_tos[customer].receiving.next_working_time(at))

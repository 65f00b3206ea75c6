"""The scheduler: plant time moving on.

A tick takes everything that fell due up to the plant clock, in time order: late goods
arriving, work centres coming back up, and each order's next step, unless a disruption
holds it or it must wait for its working time, in which case the order's schedule slips.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Mapping

from .clock import PlantClock, whole_seconds
from .disruptions import Disruptions
from .lifecycle import Lifecycle
from .orders import OrderTrack
from .working_time import WorkingTime

# What falls due, in the order of things due at the same instant: goods first (a start
# due then may use them), then repairs, then the orders' steps.
_GOODS_ARRIVE = -1
_REPAIRED = 0
_STEP = 1


class Scheduler:
    """Takes what is due: arrivals and repairs through the disruptions, order steps through
    the lifecycle."""

    def __init__(
        self,
        clock: PlantClock,
        times: WorkingTime,
        lifecycle: Lifecycle,
        disruptions: Disruptions,
        tracks: Mapping[str, OrderTrack],
    ) -> None:
        self._clock = clock
        self._times = times
        self._lifecycle = lifecycle
        self._disruptions = disruptions
        self._tracks = tracks

    def run_due(self) -> None:
        """Apply everything due at the current plant time, in time order.

        Work centres whose ``ExpectedUpAt`` passed come back up; orders whose next step
        is due take it, unless production is on a work centre that is down then, in which
        case the rest of their schedule slips until it is up again.
        """
        now = whole_seconds(self._clock.now())
        heap: list[tuple[dt.datetime, int, str]] = [
            (arrival, _GOODS_ARRIVE, reservation) for reservation, arrival in self._disruptions.receipts_due(now)
        ]
        heap += [(up, _REPAIRED, work_center) for work_center, up in self._disruptions.repairs_due(now)]
        for key, track in self._tracks.items():
            if track.schedule and track.schedule[0].due <= now:
                heap.append((track.schedule[0].due, _STEP, key))
        heapq.heapify(heap)
        while heap:
            due, kind, key = heapq.heappop(heap)
            if kind == _GOODS_ARRIVE:
                self._disruptions.receive(key, due)
                continue
            if kind == _REPAIRED:
                self._disruptions.repair_if_due(key, now)
                continue
            track = self._tracks[key]
            if not track.schedule:
                continue
            if track.schedule[0].due != due:
                # An earlier repair pulled the order's schedule in meanwhile (a rescheduled
                # queue): its step is due now, at this point in time order.
                if track.schedule[0].due < due:
                    track.schedule[0].due = due
                    heapq.heappush(heap, (due, _STEP, key))
                continue
            step = track.schedule[0]
            # Held by a down machine or a late part, then into the step's working time.
            held = self._disruptions.held_until(track, step, now)
            placed = self._times.place(step.name, held or step.due, track.customer, forward=True)
            if placed > step.due:
                # Held production holds every part that shares it; a step waiting for its
                # shift moves only its own part.
                track.shift(step.part, placed - step.due, production=held is not None)
                if track.schedule[0].due <= now:
                    heapq.heappush(heap, (track.schedule[0].due, _STEP, key))
                continue
            track.schedule.popleft()
            at = max(due, track.last_step_at) if track.last_step_at is not None else due
            self._lifecycle.apply(track, step.name, at, part=step.part)
            if track.schedule:
                following = track.schedule[0]
                following.due = max(following.due, at)
                if following.due <= now:
                    heapq.heappush(heap, (following.due, _STEP, key))

    def step_now(self, track: OrderTrack) -> None:
        """Take the order's next step now, whatever holds it (no step once it is delivered)."""
        if not track.schedule:
            return
        step = track.schedule.popleft()
        at = whole_seconds(self._clock.now())
        if track.last_step_at is not None and at < track.last_step_at:
            at = track.last_step_at
        self._lifecycle.apply(track, step.name, at, part=step.part)

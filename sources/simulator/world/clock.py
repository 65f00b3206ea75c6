"""Plant time: a clock that starts at a given instant and runs at a chosen speed, and the
small time helpers every concern of the world shares."""

from __future__ import annotations

import datetime as dt
import math
import time


def iso_utc(value: dt.datetime) -> str:
    """An instant as the source APIs write it: UTC, whole seconds, ``Z``."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def hours_span(h: float) -> dt.timedelta:
    """``h`` hours (negative: back in time)."""
    return dt.timedelta(hours=h)


def whole_seconds(value: dt.datetime) -> dt.datetime:
    """Record times are whole seconds, as the JSON renders them."""
    return value if not value.microsecond else value.replace(microsecond=0)


def _check_speed(factor: float) -> None:
    if factor < 0 or not math.isfinite(factor):
        raise ValueError("speed must be a finite number >= 0")


class PlantClock:
    """The plant's clock: ``start`` + hours advanced by hand + ``speed`` x wall time elapsed.

    ``start`` defaults to now (UTC) rounded down to the hour; a naive ``start`` is UTC.
    """

    def __init__(self, start: dt.datetime | None = None, speed: float = 1.0) -> None:
        _check_speed(speed)
        if start is None:
            start = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
        elif start.tzinfo is None:
            start = start.replace(tzinfo=dt.UTC)
        self.start = whole_seconds(start)
        self._offset = dt.timedelta(0)
        self._speed = float(speed)
        self._wall0 = time.monotonic()

    def now(self) -> dt.datetime:
        """Plant time: start + manual offset + speed x wall time elapsed."""
        elapsed = (time.monotonic() - self._wall0) * self._speed
        return self.start + self._offset + dt.timedelta(seconds=elapsed)

    @property
    def speed(self) -> float:
        """Plant seconds per wall second."""
        return self._speed

    def set_speed(self, factor: float) -> None:
        """Plant seconds per wall second from now on (0 stops the clock between advances)."""
        _check_speed(factor)
        wall = time.monotonic()
        self._offset += dt.timedelta(seconds=(wall - self._wall0) * self._speed)
        self._wall0 = wall
        self._speed = float(factor)

    def advance(self, hours: float) -> None:
        """Move plant time ``hours`` forward."""
        if not math.isfinite(hours) or hours <= 0:
            raise ValueError("hours must be a positive number")
        self._offset += hours_span(hours)

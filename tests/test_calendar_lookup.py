"""Working time by lookup (``sources.calendars``: a calendar's intervals and working-day
counts listed once) answers exactly what walking the calendar day by day answers: random
calendars (night shifts, DST zones, holidays, odd working days, overlapping shifts), random
instants around DST changes, holidays and far dates (spans restarted far away), random
durations up to weeks (as the plant asks: the walk gives up after ten years of days)."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from sources import calendars
from sources.calendars import FactoryCalendar

ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Sydney")
PLACES = ((None, None), ("DE", "BW"), ("US", "NY"), ("GB", None), ("IN", None))
# Days around DST changes (Europe, US, Australia), New Year and Easter, and far ones.
DAYS = (
    dt.date(2026, 3, 29), dt.date(2026, 10, 25), dt.date(2026, 3, 8), dt.date(2026, 11, 1),
    dt.date(2026, 4, 5), dt.date(2026, 10, 4), dt.date(2025, 12, 31), dt.date(2026, 4, 3),
    dt.date(2024, 2, 29), dt.date(2027, 6, 15), dt.date(2001, 5, 1), dt.date(2034, 1, 2),
)  # fmt: skip


def random_shifts(rng: random.Random) -> tuple[tuple[int, int], ...]:
    """One to three shifts; sometimes a night shift past midnight, sometimes overlapping."""
    kind = rng.choice(["day", "two", "three", "night", "overlap", "odd"])
    if kind == "day":
        return ((8 * 60, 17 * 60),)
    if kind == "two":
        return ((6 * 60, 14 * 60), (14 * 60, 22 * 60))
    if kind == "three":
        return ((6 * 60, 14 * 60), (14 * 60, 22 * 60), (22 * 60, 30 * 60))
    if kind == "night":
        return ((22 * 60, 30 * 60),)
    if kind == "overlap":
        return ((6 * 60, 15 * 60), (14 * 60, 23 * 60))
    start = rng.randrange(0, 24 * 60, 15)
    return ((start, start + rng.randrange(15, 24 * 60 + 1, 15)),)


def random_calendar(rng: random.Random) -> FactoryCalendar:
    country, region = rng.choice(PLACES)
    days = tuple(sorted(rng.sample(range(7), rng.randint(1, 7))))
    return FactoryCalendar.build(
        time_zone=rng.choice(ZONES), country=country, subdivision=region, working_days=days,
        shifts=random_shifts(rng),
    )  # fmt: skip


def random_instant(rng: random.Random) -> dt.datetime:
    day = rng.choice(DAYS) + dt.timedelta(days=rng.randint(-3, 3))
    midnight = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    return midnight + dt.timedelta(minutes=rng.choice([0, 6 * 60, 22 * 60, rng.randrange(0, 36 * 60)]))


def answers(cal: FactoryCalendar, questions: list[tuple[dt.datetime, dt.datetime, dt.timedelta]]) -> list:
    out = []
    for a, b, duration in questions:
        out.append((
            cal.add_working_time(a, duration),
            cal.subtract_working_time(a, duration),
            cal.add_working_time(a, -duration),
            cal.working_time_between(a, b),
            cal.working_time_between(b, a),
            cal.next_working_time(a),
            cal.is_working_time(a),
            cal.working_days_between(a.date(), b.date()),
            cal.working_days_between(b.date(), a.date()),
        ))  # fmt: skip
    return out


@pytest.mark.parametrize("seed", range(12))
def test_lookup_answers_what_the_day_by_day_walk_answers(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    cal = random_calendar(rng)
    questions = []
    for _ in range(150):
        a = random_instant(rng)
        b = a + dt.timedelta(minutes=rng.randrange(-20_000, 20_000))  # within two weeks either way
        duration = dt.timedelta(minutes=rng.choice([0, 1, 60, 8 * 60, rng.randrange(0, 30_000)]))
        questions.append((a, b, duration))
    # Shift boundaries exactly: the start and end of each interval of a few days.
    for day in rng.sample(DAYS, 3):
        for start, end in cal.shifts_on(day):
            questions += [(start, end, end - start), (end, start, dt.timedelta(minutes=1))]
    got = answers(cal, questions)
    with monkeypatch.context() as walk:
        walk.setattr(calendars, "_timeline", lambda _calendar: None)
        walk.setattr(calendars, "_working_days_until", lambda *_args: None)
        expected = answers(cal, questions)
    assert got == expected
    if any(s2 < e1 for (_s1, e1), (s2, _e2) in zip(cal.shifts, cal.shifts[1:], strict=False)):
        assert calendars._TIMELINES.get(cal) is None  # overlapping shifts keep the walk

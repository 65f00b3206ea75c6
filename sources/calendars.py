"""Working calendars: when a plant works and when a ship-to receives goods.

Master data as an ERP keeps it (SAP's factory calendar), so both the simulated plant and
the domain rules (``resolvers/prediction.py``) read it from here.

A ``FactoryCalendar`` is what SAP calls a factory calendar, plus its time zone: the working
weekdays, the shifts of a working day (local times) and the public holidays of a country
and region (the ``holidays`` package). Lead times of production, quality and picking count
working time on the plant's calendar; transit, slack and days late count working days on
the ship-to's delivery calendar (its receiving days and hours), and a calendar date means
the local date in that calendar's zone.

Pure and deterministic: no I/O (the holiday tables are computed, per year, and memoised).
The default calendar never stops: every day a working day, round the clock, UTC, no
holidays (the model's arithmetic without any calendar).
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import functools
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

_DAY = dt.timedelta(days=1)
_ZERO = dt.timedelta(0)
# A calendar with no working time at all would make every search run forever: give up
# after this many days (a calendar with working days and shifts finds time within a week
# or two, whatever its holidays).
_SEARCH_DAYS = 3660
# Days whose working intervals one calendar keeps (about eleven years; then it starts over).
_DAYS_KEPT = 4096

WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")

# Time zones of countries that have one; for the others a ship-to needs its own
# (``Customer.time_zone``), else the delivery calendar's default zone applies.
COUNTRY_TIME_ZONES: dict[str, str] = {
    "AT": "Europe/Vienna", "BE": "Europe/Brussels", "BG": "Europe/Sofia", "CH": "Europe/Zurich",
    "CN": "Asia/Shanghai", "CZ": "Europe/Prague", "DE": "Europe/Berlin", "DK": "Europe/Copenhagen",
    "EE": "Europe/Tallinn", "ES": "Europe/Madrid", "FI": "Europe/Helsinki", "FR": "Europe/Paris",
    "GB": "Europe/London", "GR": "Europe/Athens", "HR": "Europe/Zagreb", "HU": "Europe/Budapest",
    "IE": "Europe/Dublin", "IN": "Asia/Kolkata", "IT": "Europe/Rome", "JP": "Asia/Tokyo",
    "KR": "Asia/Seoul", "LT": "Europe/Vilnius", "LU": "Europe/Luxembourg", "LV": "Europe/Riga",
    "NL": "Europe/Amsterdam", "NO": "Europe/Oslo", "PL": "Europe/Warsaw", "PT": "Europe/Lisbon",
    "RO": "Europe/Bucharest", "RS": "Europe/Belgrade", "SE": "Europe/Stockholm", "SG": "Asia/Singapore",
    "SI": "Europe/Ljubljana", "SK": "Europe/Bratislava", "TR": "Europe/Istanbul",
}  # fmt: skip


class CalendarError(ValueError):
    """A calendar setting that cannot work (unknown zone, country, region, no working time)."""


def parse_shift(text: str) -> tuple[int, int]:
    """``"06:00-14:00"`` → minutes after local midnight ``(360, 840)``.

    A shift that ends at or before its start runs past midnight (``"22:00-06:00"`` →
    ``(1320, 1800)``); it belongs to the day it starts on.
    """
    try:
        start_text, end_text = (part.strip() for part in text.split("-"))
        start, end = _minutes(start_text), _minutes(end_text)
    except ValueError:
        raise CalendarError(f"shift {text!r}: expected HH:MM-HH:MM, e.g. 06:00-14:00") from None
    if end <= start:
        end += 24 * 60
    return start, end


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    h, m = int(hours), int(minutes)
    if not (0 <= h <= 24 and 0 <= m < 60) or (h == 24 and m):
        raise ValueError(text)
    return h * 60 + m


def parse_weekdays(names: list[str] | tuple[str, ...]) -> tuple[int, ...]:
    """``["MON", "TUE", ...]`` → weekday numbers (Monday = 0), sorted, without repeats."""
    out = set()
    for name in names:
        key = str(name).strip().upper()[:3]
        if key not in WEEKDAYS:
            raise CalendarError(f"working day {name!r}: expected one of {', '.join(WEEKDAYS)}")
        out.add(WEEKDAYS.index(key))
    if not out:
        raise CalendarError("a calendar needs at least one working day")
    return tuple(sorted(out))


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CalendarError(f"unknown time zone {name!r} (IANA names, e.g. Europe/Berlin)") from None


@functools.lru_cache(maxsize=512)
def _holidays(country: str, subdivision: str | None, year: int) -> frozenset[dt.date]:
    try:
        return frozenset(holidays.country_holidays(country, subdiv=subdivision, years=year))
    except NotImplementedError as exc:
        raise CalendarError(f"public holidays: {exc}") from None


@dataclasses.dataclass(frozen=True, slots=True)
class FactoryCalendar:
    """Working days, shifts and public holidays of one place, in its time zone.

    ``shifts`` are ``(start, end)`` minutes after local midnight of a working day; an end
    beyond 1440 runs into the next day. ``country`` (ISO 3166-1 alpha-2) and
    ``subdivision`` (the region code of the ``holidays`` package, e.g. ``BW`` for
    Baden-Württemberg) select the public holidays; no country means none.
    """

    time_zone: str = "UTC"
    country: str | None = None
    subdivision: str | None = None
    working_days: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
    shifts: tuple[tuple[int, int], ...] = ((0, 24 * 60),)
    # The hash, once computed: a calendar keys the shift cache on every working-time step
    # (hashing the fields' tuples each time was a visible share of a prediction).
    _hash: int = dataclasses.field(default=0, init=False, repr=False, compare=False)
    # The working intervals per day, once computed (see ``shifts_on``): a plain dict on the
    # calendar, read once per day walked by every working-time step.
    _days: dict[dt.date, tuple[tuple[dt.datetime, dt.datetime], ...]] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # Local midnight (UTC instant) and whether it is a working day, per day asked: every
    # order's evaluation asks for a few (ship-by day, promise, receipts), over a few hundred
    # distinct days; each computed is a zone lookup or a holiday set's.
    _starts: dict[dt.date, dt.datetime] = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)
    _working: dict[dt.date, bool] = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    def __hash__(self) -> int:
        h = self._hash
        if not h:
            h = hash((self.time_zone, self.country, self.subdivision, self.working_days, self.shifts)) or 1
            object.__setattr__(self, "_hash", h)
        return h

    def validate(self) -> FactoryCalendar:
        """Raise ``CalendarError`` unless the calendar can work; returns itself."""
        _zone(self.time_zone)
        if self.country:
            _holidays(self.country, self.subdivision, 2000)
        if not self.working_days or any(not 0 <= d <= 6 for d in self.working_days):
            raise CalendarError("working days must be weekday numbers 0 (Monday) to 6 (Sunday)")
        if not self.shifts:
            raise CalendarError("a calendar needs at least one shift")
        for start, end in self.shifts:
            if not (0 <= start < 24 * 60 and start < end <= start + 24 * 60):
                raise CalendarError(f"shift {start}-{end}: minutes out of range")
        return self

    @classmethod
    def build(cls, **kw: Any) -> FactoryCalendar:
        """A validated calendar (``CalendarError`` when a setting cannot work)."""
        return cls(**kw).validate()

    # --- days -------------------------------------------------------------------------

    @property
    def zone(self) -> ZoneInfo:
        """The calendar's time zone."""
        return _zone(self.time_zone)

    def local_date(self, at: dt.datetime) -> dt.date:
        """The calendar date of an instant in this calendar's zone."""
        return at.astimezone(_zone(self.time_zone)).date()

    def day_start(self, day: dt.date) -> dt.datetime:
        """Local midnight of ``day`` as an aware instant (UTC)."""
        start = self._starts.get(day)
        if start is None:
            if len(self._starts) >= _DAYS_KEPT:
                self._starts.clear()
            start = self._starts[day] = dt.datetime(day.year, day.month, day.day, tzinfo=self.zone).astimezone(dt.UTC)
        return start

    def day_end(self, day: dt.date) -> dt.datetime:
        """The end of ``day`` (the next local midnight) as an aware instant (UTC)."""
        return self.day_start(day + _DAY)

    def is_holiday(self, day: dt.date) -> bool:
        """True on a public holiday of the calendar's country and region."""
        return bool(self.country) and day in _holidays(self.country, self.subdivision, day.year)  # type: ignore[arg-type]

    def is_working_day(self, day: dt.date) -> bool:
        """True on a working weekday that is not a public holiday."""
        working = self._working.get(day)
        if working is None:
            if len(self._working) >= _DAYS_KEPT:
                self._working.clear()
            working = self._working[day] = day.weekday() in self.working_days and not self.is_holiday(day)
        return working

    def next_working_day(self, day: dt.date) -> dt.date:
        """``day`` if it is a working day, else the first working day after it."""
        for _ in range(_SEARCH_DAYS):
            if self.is_working_day(day):
                return day
            day += _DAY
        raise CalendarError("the calendar has no working day")

    def previous_working_day(self, day: dt.date) -> dt.date:
        """``day`` if it is a working day, else the last working day before it."""
        for _ in range(_SEARCH_DAYS):
            if self.is_working_day(day):
                return day
            day -= _DAY
        raise CalendarError("the calendar has no working day")

    def add_working_days(self, day: dt.date, n: int) -> dt.date:
        """The ``n``-th working day after ``day`` (``n`` ≥ 1), or the working day on or after
        ``day`` for ``n`` = 0. Friday + 1 is Monday (a holiday Monday: Tuesday)."""
        if n <= 0:
            return self.next_working_day(day)
        for _ in range(n):
            day = self.next_working_day(day + _DAY)
        return day

    def working_days_between(self, a: dt.date, b: dt.date) -> int:
        """Working days after ``a`` up to and including ``b``; negative if ``b`` < ``a``.

        Friday → Monday is 1, Monday → Monday is 0, Monday → Friday is 4 (Mon–Fri, no holidays).
        """
        if b < a:
            return -self.working_days_between(b, a)
        counted = _working_days_until(self, a, b)
        if counted is not None:
            return counted[1] - counted[0]
        days = (b - a).days
        if days > 60:  # whole weeks at once, then the rest day by day
            weeks = days // 7 - 1
            full = weeks * len(self.working_days)
            full -= sum(
                1 for h in self._holidays_between(a + _DAY, a + weeks * 7 * _DAY)
                if h.weekday() in self.working_days
            )
            return full + self.working_days_between(a + weeks * 7 * _DAY, b)
        return sum(1 for i in range(1, days + 1) if self.is_working_day(a + i * _DAY))

    def _holidays_between(self, first: dt.date, last: dt.date) -> list[dt.date]:
        if not self.country:
            return []
        out = []
        for year in range(first.year, last.year + 1):
            out += [h for h in _holidays(self.country, self.subdivision, year) if first <= h <= last]
        return out

    # --- working time -----------------------------------------------------------------

    def shifts_on(self, day: dt.date) -> tuple[tuple[dt.datetime, dt.datetime], ...]:
        """The working intervals that start on ``day`` (UTC instants); none off work."""
        shifts = self._days.get(day)
        if shifts is None:
            if len(self._days) >= _DAYS_KEPT:
                self._days.clear()
            shifts = self._days[day] = _shifts_on(self, day)
        return shifts

    def _intervals_from(self, at: dt.datetime):
        """Working intervals ending after ``at``, in time order (a night shift of the day
        before included)."""
        day = self.local_date(at) - _DAY
        days = self._days
        for _ in range(_SEARCH_DAYS):
            shifts = days.get(day)
            if shifts is None:
                shifts = self.shifts_on(day)
            for start, end in shifts:
                if end > at:
                    yield start, end
            day += _DAY
        raise CalendarError("the calendar has no working time")

    def _intervals_before(self, at: dt.datetime):
        """Working intervals starting before ``at``, latest first."""
        day = self.local_date(at) + _DAY
        days = self._days
        for _ in range(_SEARCH_DAYS):
            shifts = days.get(day)
            if shifts is None:
                shifts = self.shifts_on(day)
            for start, end in reversed(shifts):
                if start < at:
                    yield start, end
            day -= _DAY
        raise CalendarError("the calendar has no working time")

    def is_working_time(self, at: dt.datetime) -> bool:
        """True while a shift runs."""
        start, _end = self._next_interval(at)
        return start <= at

    def next_working_time(self, at: dt.datetime) -> dt.datetime:
        """``at`` during a shift, else the start of the next shift."""
        start, _end = self._next_interval(at)
        return max(start, at)

    # Each working-time step asks this calendar's timeline (see below) first, and walks
    # day by day when it has none (its intervals overlap). The look-up is written out in
    # each step rather than through one helper taking the step's name: a prediction makes
    # about ten steps per production order, and the helper's call and ``getattr`` were
    # a visible share of a what-if over a work centre's whole queue.

    def _next_interval(self, at: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
        tl = _timeline(self)
        if tl is not None:
            try:
                return tl.next_interval(at)
            except _Overlap:
                _no_timeline(self)
        return next(self._intervals_from(at))

    def add_working_time(self, at: dt.datetime, duration: dt.timedelta) -> dt.datetime:
        """The instant ``duration`` of working time after ``at`` (shifts only).

        A zero duration gives the next working instant; a negative one counts back
        (``subtract_working_time``).
        """
        if duration < _ZERO:
            return self.subtract_working_time(at, -duration)
        tl = _timeline(self)
        if tl is not None:
            try:
                return tl.add(at, duration)
            except _Overlap:
                _no_timeline(self)
        left = duration
        for start, end in self._intervals_from(at):
            begin = max(start, at)
            if begin + left <= end:
                return begin + left
            left -= end - begin
        raise AssertionError("unreachable")  # pragma: no cover - _intervals_from raises

    def subtract_working_time(self, at: dt.datetime, duration: dt.timedelta) -> dt.datetime:
        """The instant ``duration`` of working time before ``at``; zero gives the last
        working instant at or before ``at`` (the end of the last shift when off work)."""
        tl = _timeline(self)
        if tl is not None:
            try:
                return tl.subtract(at, duration)
            except _Overlap:
                _no_timeline(self)
        left = duration
        for start, end in self._intervals_before(at):
            finish = min(end, at)
            if finish - left >= start:
                return finish - left
            left -= finish - start
        raise AssertionError("unreachable")  # pragma: no cover - _intervals_before raises

    def working_time_between(self, a: dt.datetime, b: dt.datetime) -> dt.timedelta:
        """Working time from ``a`` to ``b``; negative if ``b`` < ``a``."""
        if b < a:
            return -self.working_time_between(b, a)
        tl = _timeline(self)
        if tl is not None:
            try:
                return tl.between(a, b)
            except _Overlap:
                _no_timeline(self)
        total = _ZERO
        for start, end in self._intervals_from(a):
            if start >= b:
                break
            total += min(end, b) - max(start, a)
        return total

    def within_working_hours(self, day: dt.date, at: dt.datetime) -> dt.datetime:
        """``at`` moved into the shifts of ``day`` (a working day): the first shift's start
        if earlier, the last shift's end if later; unchanged when it falls between them."""
        shifts = self.shifts_on(day)
        if not shifts:
            return at
        return min(max(at, shifts[0][0]), shifts[-1][1])

    # --- ship-to calendars ------------------------------------------------------------

    def for_place(
        self, country: str | None, region: str | None = None, time_zone: str | None = None
    ) -> FactoryCalendar:
        """This calendar's working days and hours at another place: its country's and
        region's holidays and its time zone (given, else the country's, else this one's).

        Anything unknown falls back (an unknown region to the country's holidays, an
        unknown country to none), so a source's odd master data never stops a prediction.
        """
        if not country:
            return self
        return _for_place(self, country.upper(), region or None, time_zone or None)


def _shifts_on(calendar: FactoryCalendar, day: dt.date) -> tuple[tuple[dt.datetime, dt.datetime], ...]:
    if not calendar.is_working_day(day):
        return ()
    zone = calendar.zone
    midnight = dt.datetime(day.year, day.month, day.day)
    out = []
    for start, end in calendar.shifts:
        # Local wall times, converted one by one: a shift on a DST change day is an hour
        # shorter or longer, as it is on the shop floor.
        s = (midnight + dt.timedelta(minutes=start)).replace(tzinfo=zone).astimezone(dt.UTC)
        e = (midnight + dt.timedelta(minutes=end)).replace(tzinfo=zone).astimezone(dt.UTC)
        if e > s:
            out.append((s, e))
    out.sort()
    return tuple(out)


# --- working time by lookup -------------------------------------------------------------
#
# The working-time steps above walk the calendar day by day (each step of a prediction
# walked a day or more of shifts). A timeline lists a calendar's working intervals of a run
# of days once, with the working time before each, so a step is a binary search and a
# subtraction. The answers are the walk's, to the microsecond: the same intervals
# (``_shifts_on``) in the same order, counted with the same exact ``timedelta`` arithmetic.
# Calendars whose intervals overlap (overlapping shifts) keep the walk.

_BLOCK_DAYS = 64  # a timeline starts this many days either side of its first question, then doubles
_SPAN_DAYS = 4 * _SEARCH_DAYS  # asked beyond: it starts again around the question


class _Overlap(Exception):
    """A calendar whose working intervals overlap: its steps walk day by day."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Span:
    """Working intervals of the days ``first`` to ``last`` (inclusive), in time order and not
    overlapping; ``worked[i]`` is the working time before interval ``i`` (from ``first``).

    A step forwards from an instant at or after ``lo`` reads no interval before the span (a
    night shift of the day before ``first`` ends before then); a step back from one before
    ``hi`` none after it (the days after ``last`` start later)."""

    first: dt.date
    last: dt.date
    lo: dt.datetime
    hi: dt.datetime
    starts: list[dt.datetime]
    ends: list[dt.datetime]
    worked: list[dt.timedelta]

    @classmethod
    def build(cls, calendar: FactoryCalendar, first: dt.date, last: dt.date) -> _Span:
        starts: list[dt.datetime] = []
        ends: list[dt.datetime] = []
        worked = [_ZERO]
        day = first
        shifts_on = _shifts_on  # not through the day cache: a span reads each day once
        while day <= last:
            for start, end in shifts_on(calendar, day):
                if ends and start < ends[-1]:
                    raise _Overlap
                starts.append(start)
                ends.append(end)
                worked.append(worked[-1] + (end - start))
            day += _DAY
        lo, hi = calendar.day_start(first + 2 * _DAY), calendar.day_start(last)
        return cls(first, last, lo, hi, starts, ends, worked)

    def after(self, at: dt.datetime) -> int | None:
        """The first interval that ends after ``at`` (None: not in the span)."""
        if at < self.lo:
            return None
        i = bisect.bisect_right(self.ends, at)
        return i if i < len(self.ends) else None

    def worked_until(self, at: dt.datetime, i: int) -> dt.timedelta:
        """Working time from the span's start until ``at``; ``i`` = ``after(at)``."""
        start = self.starts[i]
        return self.worked[i] + (at - start) if start < at else self.worked[i]


class _Timeline:
    """One calendar's working time by lookup: a span of days around the questions asked,
    grown (doubled) towards a question beyond it, started again around one far from it.
    The span is replaced whole, so a reader on another thread always holds a consistent one.
    Like the walk, a step gives up after ``_SEARCH_DAYS`` days without the working time."""

    __slots__ = ("calendar", "span")

    def __init__(self, calendar: FactoryCalendar) -> None:
        self.calendar = calendar
        self.span: _Span | None = None

    def _cover(self, first: dt.date, last: dt.date) -> _Span:
        """A span that holds the days ``first`` to ``last``."""
        span = self.span
        if span is not None and span.first <= first and last <= span.last:
            return span
        if span is not None and (max(last, span.last) - min(first, span.first)).days <= _SPAN_DAYS:
            grow = max((span.last - span.first).days, _BLOCK_DAYS) * _DAY
            lo = span.first if first >= span.first else min(first, span.first - grow)
            hi = span.last if last <= span.last else max(last, span.last + grow)
        else:
            lo, hi = first - _BLOCK_DAYS * _DAY, last + _BLOCK_DAYS * _DAY
        span = _Span.build(self.calendar, lo, hi)
        self.span = span
        return span

    def _forward(self, at: dt.datetime) -> tuple[_Span, int]:
        """A span with an interval that ends after ``at``, and its index."""
        span = self.span
        if span is not None and (i := span.after(at)) is not None:
            return span, i
        day = self.calendar.local_date(at)
        ahead = 2
        while ahead <= _SEARCH_DAYS + 2:
            span = self._cover(day - 2 * _DAY, day + ahead * _DAY)
            i = span.after(at)
            if i is not None:
                return span, i
            ahead = max(2 * ahead, (span.last - day).days + 1)
        raise CalendarError("the calendar has no working time")

    def next_interval(self, at: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
        span, i = self._forward(at)
        return span.starts[i], span.ends[i]

    def between(self, a: dt.datetime, b: dt.datetime) -> dt.timedelta:
        """Working time from ``a`` to ``b`` >= ``a``."""
        span, j = self._forward(b)
        i = span.after(a)
        if i is None:  # ``a`` before the span: one that holds both
            span = self._cover(self.calendar.local_date(a) - 2 * _DAY, span.last)
            i, j = span.after(a), span.after(b)
            assert i is not None and j is not None
        return span.worked_until(b, j) - span.worked_until(a, i)

    def add(self, at: dt.datetime, duration: dt.timedelta) -> dt.datetime:
        """``duration`` >= 0 of working time after ``at``."""
        span, i = self._forward(at)
        while True:
            target = span.worked_until(at, i) + duration
            # The interval where the working time is reached: the first that ends at or after it.
            j = bisect.bisect_left(span.worked, target, lo=i + 1) - 1
            if j < len(span.starts):
                return span.starts[j] + (target - span.worked[j])
            day = self.calendar.local_date(at)
            if (span.last - day).days > _SEARCH_DAYS:
                raise CalendarError("the calendar has no working time")
            span = self._cover(day - 2 * _DAY, span.last + _DAY)
            i = span.after(at)
            assert i is not None

    def subtract(self, at: dt.datetime, duration: dt.timedelta) -> dt.datetime:
        """``duration`` >= 0 of working time before ``at``."""
        day = self.calendar.local_date(at)
        span = self._cover(day - 2 * _DAY, day + 2 * _DAY)
        while True:
            last = bisect.bisect_left(span.starts, at) - 1  # the last interval that starts before ``at``
            if last >= 0:
                target = span.worked[last] + (min(span.ends[last], at) - span.starts[last]) - duration
                # The latest interval where it is reached: the last that starts at or before it.
                j = bisect.bisect_right(span.worked, target, hi=last + 1) - 1
                if j >= 0:
                    return span.starts[j] + (target - span.worked[j])
            if (day - span.first).days > _SEARCH_DAYS:
                raise CalendarError("the calendar has no working time")
            span = self._cover(span.first - _DAY, day + 2 * _DAY)


_TIMELINES: dict[FactoryCalendar, _Timeline | None] = {}
# Per calendar: the first day's ordinal and, per day from it, the working days up to it.
_DAY_COUNTS: dict[FactoryCalendar, tuple[int, list[int]]] = {}


def _working_days_until(calendar: FactoryCalendar, a: dt.date, b: dt.date) -> tuple[int, int] | None:
    """Working days up to and including ``a`` and ``b`` (``a`` <= ``b``), counted from the
    same day; None when the days lie too far apart for a table (then they are counted)."""
    first, counts = _DAY_COUNTS.get(calendar) or (0, [])
    i, j = a.toordinal() - first, b.toordinal() - first
    if i < 0 or j >= len(counts):
        lo = min(a.toordinal(), first if counts else a.toordinal())
        hi = max(b.toordinal(), first + len(counts) - 1 if counts else b.toordinal())
        if hi - lo > _SPAN_DAYS:  # far from the table's days: a table of its own days only
            lo, hi = a.toordinal(), b.toordinal()
            if hi - lo > _SPAN_DAYS:
                return None
        grow = max(hi - lo, _BLOCK_DAYS)
        first = max(1, lo - grow if i < 0 or not counts else lo)
        last = min(dt.date.max.toordinal(), hi + grow if j >= len(counts) or not counts else hi)
        counts, total = [], 0
        for ordinal in range(first, last + 1):
            total += calendar.is_working_day(dt.date.fromordinal(ordinal))
            counts.append(total)
        _DAY_COUNTS[calendar] = (first, counts)
        i, j = a.toordinal() - first, b.toordinal() - first
    return counts[i], counts[j]


def _timeline(calendar: FactoryCalendar) -> _Timeline | None:
    """The calendar's timeline (None: one with overlapping shifts keeps the day-by-day walk)."""
    try:
        return _TIMELINES[calendar]
    except KeyError:
        tl = _TIMELINES[calendar] = _Timeline(calendar)
        return tl


def _no_timeline(calendar: FactoryCalendar) -> None:
    _TIMELINES[calendar] = None


@functools.lru_cache(maxsize=1024)
def _for_place(
    base: FactoryCalendar, country: str, region: str | None, time_zone: str | None
) -> FactoryCalendar:
    zone = time_zone or COUNTRY_TIME_ZONES.get(country) or base.time_zone
    try:
        _zone(zone)
    except CalendarError:
        zone = COUNTRY_TIME_ZONES.get(country) or base.time_zone
    for subdivision in (region, None):
        try:
            _holidays(country, subdivision, 2000)
        except CalendarError:
            continue
        return dataclasses.replace(base, time_zone=zone, country=country, subdivision=subdivision)
    return dataclasses.replace(base, time_zone=zone, country=None, subdivision=None)


ROUND_THE_CLOCK = FactoryCalendar()

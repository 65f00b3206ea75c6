"""Factory and delivery calendars on plain dates and instants."""

from __future__ import annotations

import datetime as dt

import pytest

from sources.calendars import (
    ROUND_THE_CLOCK,
    CalendarError,
    FactoryCalendar,
    parse_shift,
    parse_weekdays,
)

UTC = dt.UTC
HOUR = dt.timedelta(hours=1)
# The simulated plant's calendar: Stuttgart, two shifts, Mon–Fri, Baden-Württemberg holidays.
STUTTGART = FactoryCalendar.build(
    time_zone="Europe/Berlin",
    country="DE",
    subdivision="BW",
    working_days=(0, 1, 2, 3, 4),
    shifts=((6 * 60, 14 * 60), (14 * 60, 22 * 60)),
)
# 2026: Thu 1 Jan New Year, Tue 6 Jan Epiphany (BW, not in Hamburg), Fri 3 Apr Good Friday.


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def test_public_holidays_follow_country_and_region() -> None:
    assert STUTTGART.is_holiday(dt.date(2026, 1, 6))  # Epiphany in Baden-Württemberg
    hamburg = STUTTGART.for_place("DE", "HH")
    assert not hamburg.is_holiday(dt.date(2026, 1, 6))
    assert hamburg.is_holiday(dt.date(2026, 10, 31))  # Reformation Day in Hamburg
    assert not STUTTGART.is_holiday(dt.date(2026, 10, 31))
    assert STUTTGART.is_working_day(dt.date(2026, 1, 7))
    assert not STUTTGART.is_working_day(dt.date(2026, 1, 10))  # a Saturday


@pytest.mark.parametrize(
    ("a", "b", "days"),
    [
        (dt.date(2026, 1, 2), dt.date(2026, 1, 5), 1),  # Fri → Mon: the weekend does not count
        (dt.date(2026, 1, 5), dt.date(2026, 1, 7), 1),  # Mon → Wed over Epiphany
        (dt.date(2025, 12, 31), dt.date(2026, 1, 2), 1),  # over New Year's Day
        (dt.date(2026, 1, 7), dt.date(2026, 1, 5), -1),
        (dt.date(2026, 1, 5), dt.date(2026, 1, 5), 0),
        (dt.date(2026, 1, 2), dt.date(2026, 4, 10), 67),  # 14 weeks less 3 holidays (fast path)
    ],
)
def test_working_days_between_skips_weekends_and_holidays(a: dt.date, b: dt.date, days: int) -> None:
    assert STUTTGART.working_days_between(a, b) == days
    if b >= a:  # the same as counting day by day
        assert days == sum(STUTTGART.is_working_day(a + dt.timedelta(days=i)) for i in range(1, (b - a).days + 1))


def test_add_working_days_lands_on_working_days() -> None:
    assert STUTTGART.add_working_days(dt.date(2026, 1, 2), 1) == dt.date(2026, 1, 5)
    assert STUTTGART.add_working_days(dt.date(2026, 1, 5), 1) == dt.date(2026, 1, 7)  # not Epiphany
    assert STUTTGART.add_working_days(dt.date(2026, 1, 3), 0) == dt.date(2026, 1, 5)
    assert STUTTGART.next_working_day(dt.date(2026, 4, 3)) == dt.date(2026, 4, 7)  # Easter
    assert STUTTGART.previous_working_day(dt.date(2026, 4, 6)) == dt.date(2026, 4, 2)


def test_working_time_counts_shifts_only() -> None:
    # Friday 20:00 Berlin (19:00 UTC) + 4 working hours: 2 h on Friday, 2 h from Monday 06:00.
    friday = at("2026-01-09T19:00:00+00:00")
    assert STUTTGART.add_working_time(friday, 4 * HOUR) == at("2026-01-12T07:00:00+00:00")
    assert STUTTGART.working_time_between(friday, at("2026-01-12T07:00:00+00:00")) == 4 * HOUR
    assert STUTTGART.subtract_working_time(at("2026-01-12T07:00:00+00:00"), 4 * HOUR) == friday
    # Off work, zero working time means the next shift start.
    night = at("2026-01-07T23:00:00+00:00")
    assert STUTTGART.next_working_time(night) == at("2026-01-08T05:00:00+00:00")
    assert not STUTTGART.is_working_time(night)
    assert STUTTGART.is_working_time(at("2026-01-08T05:00:00+00:00"))


def test_summer_time_moves_the_shifts_in_utc() -> None:
    winter = STUTTGART.shifts_on(dt.date(2026, 3, 20))
    summer = STUTTGART.shifts_on(dt.date(2026, 3, 30))
    assert winter[0][0] == at("2026-03-20T05:00:00+00:00")
    assert summer[0][0] == at("2026-03-30T04:00:00+00:00")


def test_night_shift_belongs_to_the_day_it_starts() -> None:
    night = FactoryCalendar.build(time_zone="UTC", working_days=(0, 1, 2, 3, 4), shifts=(parse_shift("22:00-06:00"),))
    friday_night = night.shifts_on(dt.date(2026, 1, 9))
    assert friday_night == ((at("2026-01-09T22:00:00+00:00"), at("2026-01-10T06:00:00+00:00")),)
    # Saturday 02:00 is still Friday's shift; Saturday 22:00 is not.
    assert night.is_working_time(at("2026-01-10T02:00:00+00:00"))
    assert not night.is_working_time(at("2026-01-10T22:30:00+00:00"))
    assert night.add_working_time(at("2026-01-10T05:00:00+00:00"), 2 * HOUR) == at("2026-01-12T23:00:00+00:00")


def test_local_dates_follow_the_zone() -> None:
    late_evening = at("2026-01-07T23:30:00+00:00")
    assert STUTTGART.local_date(late_evening) == dt.date(2026, 1, 8)
    chicago = STUTTGART.for_place("US", "IL", "America/Chicago")
    assert chicago.local_date(late_evening) == dt.date(2026, 1, 7)
    assert STUTTGART.day_start(dt.date(2026, 1, 8)) == at("2026-01-07T23:00:00+00:00")


def test_a_place_falls_back_on_unknown_master_data() -> None:
    assert STUTTGART.for_place("IT", "ZZ").country == "IT"  # unknown region: the country's holidays
    assert STUTTGART.for_place("IT", "ZZ").subdivision is None
    assert STUTTGART.for_place("XX").country is None  # unknown country: no holidays
    assert STUTTGART.for_place("FR").time_zone == "Europe/Paris"
    assert STUTTGART.for_place("FR", time_zone="Not/AZone").time_zone == "Europe/Paris"
    assert STUTTGART.for_place(None) is STUTTGART


def test_round_the_clock_is_plain_arithmetic() -> None:
    t = at("2026-01-10T03:00:00+00:00")  # a Saturday night
    assert ROUND_THE_CLOCK.add_working_time(t, 30 * HOUR) == t + 30 * HOUR
    assert ROUND_THE_CLOCK.working_days_between(dt.date(2026, 1, 9), dt.date(2026, 1, 12)) == 3


@pytest.mark.parametrize(
    "settings",
    [
        {"time_zone": "Mars/Olympus"},
        {"country": "XX"},
        {"country": "DE", "subdivision": "ZZ"},
        {"working_days": ()},
        {"shifts": ()},
        {"shifts": ((600, 500),)},
    ],
)
def test_settings_that_cannot_work_are_refused(settings: dict) -> None:
    with pytest.raises(CalendarError):
        FactoryCalendar.build(**settings)


def test_parsing_settings() -> None:
    assert parse_shift("06:00-14:00") == (360, 840)
    assert parse_shift("22:00-06:00") == (1320, 1800)
    assert parse_weekdays(["mon", "Tuesday", "FRI", "MON"]) == (0, 1, 4)
    for bad in ("6-14", "25:00-26:00", "06:00"):
        with pytest.raises(CalendarError):
            parse_shift(bad)
    with pytest.raises(CalendarError):
        parse_weekdays(["Funday"])


# --- the gateway's [calendar] settings -----------------------------------------------------------


def test_calendar_settings_from_toml_and_environment(tmp_path) -> None:
    from gateway.config import load_config

    path = tmp_path / "ordergraph.toml"
    path.write_text(
        '[calendar]\ncountry = "US"\nregion = "IL"\ntime_zone = "America/Chicago"\n'
        'working_days = ["MON", "TUE", "WED", "THU", "FRI", "SAT"]\nshifts = ["22:00-06:00"]\n'
        'receiving_hours = ["07:00-15:30"]\n'
    )
    cfg = load_config(path, env={"ORDERGRAPH_CALENDAR_DELIVERY_DAYS": "MON,WED,FRI"})
    plant = cfg.calendar.plant_calendar()
    assert (plant.country, plant.subdivision, plant.time_zone) == ("US", "IL", "America/Chicago")
    assert plant.working_days == (0, 1, 2, 3, 4, 5) and plant.shifts == ((1320, 1800),)
    assert plant.is_holiday(dt.date(2026, 7, 3))  # Independence Day observed
    receiving = cfg.calendar.delivery_calendar()
    assert receiving.working_days == (0, 2, 4) and receiving.shifts == ((420, 930),)
    assert load_config(None, env={}).calendar.plant_calendar() == STUTTGART  # the defaults


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('time_zone = "Europe/Stutgart"', "unknown time zone"),
        ('country = "XY"', "public holidays"),
        ('region = "ZZ"', "subdivision"),
        ('shifts = ["6-14"]', "HH:MM-HH:MM"),
        ('working_days = ["MON", "Funday"]', "working day"),
        ("working_days = []", "at least one working day"),
        ("shifts = 8", "calendar"),
    ],
)
def test_bad_calendar_settings_are_a_clear_config_error(tmp_path, toml: str, message: str) -> None:
    from gateway.config import ConfigError, load_config

    path = tmp_path / "ordergraph.toml"
    path.write_text(f"[calendar]\n{toml}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(path, env={})


def test_serve_refuses_a_bad_calendar_in_one_line(tmp_path) -> None:
    import subprocess
    import sys

    path = tmp_path / "ordergraph.toml"
    path.write_text('[calendar]\ntime_zone = "Mars/Olympus"\n')
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "Mars/Olympus" in done.stderr and "Traceback" not in done.stderr

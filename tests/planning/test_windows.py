"""Maintenance windows: the recurrence syntax, time zones, daylight saving, month ends, and their union."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaleset_operator.api.models import MaintenanceWindow
from scaleset_operator.planning.windows import (
    Window,
    WindowError,
    localize,
    next_windows,
    parse_window,
    resolve_time_zone,
    union,
    union_window_at,
    window_at,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def window(
    recur: str, start: str = "2026-01-01 22:00", duration: str = "03:00", zone: str = "UTC", **more: str
) -> MaintenanceWindow:
    return MaintenanceWindow.model_validate(
        {"startDateTime": start, "duration": duration, "timeZone": zone, "recurEvery": recur, **more}
    )


def starts(config: MaintenanceWindow, count: int = 4, after: datetime = T0) -> list[str]:
    return [opening.start.isoformat() for opening in next_windows(config, after, count)]


@pytest.mark.parametrize(
    ("recur", "start", "expected"),
    [
        ("Day", "2026-01-01 22:00", ["2026-01-01", "2026-01-02", "2026-01-03"]),
        ("3Days", "2026-01-01 22:00", ["2026-01-01", "2026-01-04", "2026-01-07"]),
        ("Week Saturday,Sunday", "2026-01-01 22:00", ["2026-01-03", "2026-01-04", "2026-01-10"]),
        ("week saturday, sunday", "2026-01-01 22:00", ["2026-01-03", "2026-01-04", "2026-01-10"]),
        ("2Weeks Friday", "2026-01-02 22:00", ["2026-01-02", "2026-01-16", "2026-01-30"]),
        ("Week", "2026-01-01 22:00", ["2026-01-01", "2026-01-08", "2026-01-15"]),
        ("Month day1,day15", "2026-01-01 22:00", ["2026-01-01", "2026-01-15", "2026-02-01"]),
        ("Month day-1", "2026-01-01 22:00", ["2026-01-31", "2026-02-28", "2026-03-31"]),
        ("Month", "2026-01-10 22:00", ["2026-01-10", "2026-02-10", "2026-03-10"]),
        ("2Months day5", "2026-01-01 22:00", ["2026-01-05", "2026-03-05", "2026-05-05"]),
        ("Month Last Sunday", "2026-01-01 22:00", ["2026-01-25", "2026-02-22", "2026-03-29"]),
        ("Month First Monday", "2026-01-01 22:00", ["2026-01-05", "2026-02-02", "2026-03-02"]),
        ("Month Second Tuesday Offset2", "2026-01-01 22:00", ["2026-01-15", "2026-02-12", "2026-03-12"]),
        ("Month Fourth Friday Offset-6", "2026-01-01 22:00", ["2026-01-17", "2026-02-21", "2026-03-21"]),
    ],
)
def test_recurrence_syntax(recur: str, start: str, expected: list[str]) -> None:
    assert [day[:10] for day in starts(window(recur, start), 3)] == expected


def test_day31_is_skipped_in_months_without_it() -> None:
    assert [day[:10] for day in starts(window("Month day31"), 4)] == [
        "2026-01-31",
        "2026-03-31",
        "2026-05-31",
        "2026-07-31",
    ]


def test_day29_of_february_only_in_leap_years() -> None:
    config = window("Month day29", start="2027-02-01 01:00")
    februaries = [
        opening.start.date().isoformat()
        for opening in next_windows(config, datetime(2027, 1, 1, tzinfo=UTC), 30)
        if opening.start.month == 2
    ]
    assert februaries == ["2028-02-29"]


def test_last_day_of_february_in_a_leap_year() -> None:
    config = window("Month day-1", start="2028-01-01 01:00")
    assert starts(config, 2, datetime(2028, 1, 1, tzinfo=UTC))[1][:10] == "2028-02-29"


def test_pacific_window_in_its_own_offset_json_shape() -> None:
    config = window(
        "Week Saturday,Sunday", start="2026-11-01 22:00", duration="04:00", zone="Pacific Standard Time"
    )
    first = next_windows(config, datetime(2026, 11, 20, tzinfo=UTC), 1)[0]
    assert first.start.isoformat() == "2026-11-21T22:00:00-08:00"
    assert first.end.isoformat() == "2026-11-22T02:00:00-08:00"


def test_windows_time_zone_names_resolve_through_the_cldr_table() -> None:
    assert resolve_time_zone("W. Europe Standard Time") == ZoneInfo("Europe/Berlin")
    assert resolve_time_zone("Pacific Standard Time") == ZoneInfo("America/Los_Angeles")
    assert resolve_time_zone("Europe/Amsterdam") == ZoneInfo("Europe/Amsterdam")


def test_start_in_the_spring_forward_gap_opens_when_the_gap_ends() -> None:
    # 2026-03-08: New York clocks jump from 02:00 to 03:00.
    config = window("Day", start="2026-03-07 02:30", zone="America/New_York")
    opened = next_windows(config, datetime(2026, 3, 7, tzinfo=UTC), 3)
    assert [opening.start.isoformat() for opening in opened] == [
        "2026-03-07T02:30:00-05:00",
        "2026-03-08T03:30:00-04:00",
        "2026-03-09T02:30:00-04:00",
    ]


def test_a_window_spanning_the_fall_back_change_lasts_its_duration_in_real_time() -> None:
    # 2026-11-01: New York clocks go back from 02:00 to 01:00.
    config = window("Day", start="2026-10-31 00:00", duration="04:00", zone="America/New_York")
    opening = next_windows(config, datetime(2026, 11, 1, 3, tzinfo=UTC), 1)[0]
    assert opening.start.isoformat() == "2026-11-01T00:00:00-04:00"
    assert opening.end.isoformat() == "2026-11-01T03:00:00-05:00"
    assert opening.length == timedelta(hours=4)


def test_an_ambiguous_start_takes_the_first_of_the_two() -> None:
    config = window("Day", start="2026-10-31 01:30", zone="America/New_York")
    opening = next_windows(config, datetime(2026, 11, 1, tzinfo=UTC), 1)[0]
    assert opening.start.isoformat() == "2026-11-01T01:30:00-04:00"


def test_no_window_opens_at_or_after_expiration() -> None:
    config = window("Day", expirationDateTime="2026-01-03 22:00")
    assert [day[:10] for day in starts(config, 10)] == ["2026-01-01", "2026-01-02"]


def test_no_window_opens_before_start_even_with_a_negative_offset() -> None:
    config = window("Month First Monday Offset-6", start="2026-01-01 22:00")
    assert starts(config, 1)[0][:10] == "2026-01-27"  # February 2 less six days


def test_window_at_finds_the_open_window() -> None:
    config = window("Day")
    assert window_at(config, datetime(2026, 1, 2, 23, tzinfo=UTC)) == Window(
        datetime(2026, 1, 2, 22, tzinfo=ZoneInfo("UTC")), datetime(2026, 1, 3, 1, tzinfo=ZoneInfo("UTC"))
    )
    assert window_at(config, datetime(2026, 1, 3, 1, tzinfo=UTC)) is None
    assert window_at(config, datetime(2026, 1, 1, 12, tzinfo=UTC)) is None


def test_an_open_window_is_the_first_of_next_windows() -> None:
    assert starts(window("Day"), 1, datetime(2026, 1, 2, 23, tzinfo=UTC))[0][:10] == "2026-01-02"


def test_union_merges_overlapping_windows_of_several_configs() -> None:
    evening = window("Day", start="2026-01-01 20:00", duration="03:00")
    night = window("Day", start="2026-01-01 22:00", duration="04:00")
    united = union([evening, night], T0, 2)
    assert [(u.start.hour, u.end.hour) for u in united] == [(20, 2), (20, 2)]
    assert union_window_at([evening, night], datetime(2026, 1, 2, 1, tzinfo=UTC)) is not None


def test_a_union_that_never_closes_still_answers() -> None:
    first = window("Day", start="2026-01-01 00:00", duration="13:00")
    second = window("Day", start="2026-01-01 12:00", duration="13:00")
    united = union([first, second], T0, 2)
    assert united[0].end == united[1].start


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"recur": "Fortnight"}, "spec.window.recurEvery"),
        ({"recur": "Week Caturday"}, "spec.window.recurEvery"),
        ({"recur": "Month day32"}, "spec.window.recurEvery"),
        ({"recur": "Month day0"}, "spec.window.recurEvery"),
        ({"recur": "Month Fifth Monday"}, "spec.window.recurEvery"),
        ({"recur": "Month Last Sunday Offset7"}, "spec.window.recurEvery"),
        ({"recur": "0Days"}, "spec.window.recurEvery"),
        ({"recur": "Day Monday"}, "spec.window.recurEvery"),
        ({"recur": "Day", "duration": "01:00"}, "spec.window.duration"),
        ({"recur": "Day", "duration": "23:56"}, "spec.window.duration"),
        ({"recur": "Day", "duration": "30m"}, "spec.window.duration"),
        ({"recur": "Day", "duration": "02:75"}, "spec.window.duration"),
        ({"recur": "Day", "zone": "Mars/Olympus"}, "spec.window.timeZone"),
        ({"recur": "Day", "start": "2026-02-30 22:00"}, "spec.window.startDateTime"),
        ({"recur": "Day", "expirationDateTime": "2025-01-01 00:00"}, "spec.window.expirationDateTime"),
    ],
)
def test_bad_input_names_the_field(fields: dict[str, str], field: str) -> None:
    with pytest.raises(WindowError) as raised:
        parse_window(window(**fields))
    assert raised.value.field == field
    assert str(raised.value).startswith(field + ": ")
    assert str(raised.value).count(". ") == 0


# --------------------------------------------------------------------------- properties

ZONES = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Pacific Standard Time",
    "Asia/Kolkata",
]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


@st.composite
def recurrences(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["day", "week", "monthdays", "monthweek"]))
    interval = draw(st.sampled_from(["", "2", "3"]))
    if kind == "day":
        return f"{interval}Days" if interval else "Day"
    if kind == "week":
        days = draw(st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=3, unique=True))
        return f"{interval}Week {','.join(days)}"
    if kind == "monthdays":
        days = draw(st.lists(st.sampled_from([*range(1, 32), -1]), min_size=1, max_size=3, unique=True))
        return f"{interval}Month {','.join(f'day{d}' for d in days)}"
    nth = draw(st.sampled_from(["First", "Second", "Third", "Fourth", "Last"]))
    offset = draw(st.integers(-6, 6))
    return f"{interval}Month {nth} {draw(st.sampled_from(WEEKDAYS))} Offset{offset}"


@st.composite
def configs(draw: st.DrawFn) -> MaintenanceWindow:
    start = draw(st.datetimes(datetime(2024, 1, 1), datetime(2027, 12, 31)))
    minutes = draw(st.integers(90 // 5, (23 * 60 + 55) // 5)) * 5
    expiration = draw(st.none() | st.integers(1, 800))
    fields = {
        "startDateTime": start.strftime("%Y-%m-%d %H:%M"),
        "duration": f"{minutes // 60:02d}:{minutes % 60:02d}",
        "timeZone": draw(st.sampled_from(ZONES)),
        "recurEvery": draw(recurrences()),
    }
    if expiration is not None:
        fields["expirationDateTime"] = (start + timedelta(days=expiration)).strftime("%Y-%m-%d %H:%M")
    return MaintenanceWindow.model_validate(fields)


instants = st.datetimes(datetime(2023, 6, 1), datetime(2029, 1, 1), timezones=st.just(UTC))


@settings(max_examples=60, deadline=None)
@given(configs(), instants)
def test_windows_are_sorted_last_their_duration_and_respect_start_and_expiration(
    config: MaintenanceWindow, after: datetime
) -> None:
    schedule = parse_window(config)
    openings = next_windows(config, after, 8)
    for opening in openings:
        assert opening.length == schedule.duration
        assert opening.end_utc > after
        assert opening.start_utc >= schedule.first_start_instant
        if schedule.expiration_instant is not None:
            assert opening.start_utc < schedule.expiration_instant
        local = opening.start.astimezone(schedule.zone)
        assert opening.start.utcoffset() == local.utcoffset()
    assert [o.start_utc for o in openings] == sorted(o.start_utc for o in openings)
    assert len({o.start_utc for o in openings}) == len(openings)


@settings(max_examples=60, deadline=None)
@given(configs(), instants)
def test_window_at_agrees_with_next_windows(config: MaintenanceWindow, now: datetime) -> None:
    openings = next_windows(config, now, 3)
    held = [opening for opening in openings if opening.contains(now)]
    assert window_at(config, now) == (held[0] if held else None)


@settings(max_examples=40, deadline=None)
@given(st.lists(configs(), min_size=1, max_size=3), instants)
def test_union_is_sorted_disjoint_and_covers_every_window(
    configs_: list[MaintenanceWindow], after: datetime
) -> None:
    united = union(configs_, after, 6)
    for earlier, later in itertools.pairwise(united):
        assert earlier.end_utc <= later.start_utc
    if not united:
        assert all(not next_windows(config, after, 1) for config in configs_)
        return
    horizon = united[-1].start
    for config in configs_:
        for opening in next_windows(config, after, 6):
            if opening.start < horizon:
                assert any(u.contains(opening.start) for u in united)
                assert any(u.start_utc < opening.end_utc <= u.end_utc for u in united)


@settings(max_examples=60, deadline=None)
@given(configs(), instants)
def test_windows_open_at_the_configured_wall_clock_time_unless_it_does_not_exist_that_day(
    config: MaintenanceWindow, after: datetime
) -> None:
    schedule = parse_window(config)
    for opening in next_windows(config, after, 6):
        local = opening.start.astimezone(schedule.zone)
        if local.time() == schedule.first_start.time():
            continue
        wanted = datetime.combine(local.date(), schedule.first_start.time())
        # Only a start that falls in a spring-forward gap moves, and it moves forward by the gap.
        assert localize(wanted, schedule.zone).replace(tzinfo=None) != wanted
        assert local.replace(tzinfo=None) > wanted


def test_localize_moves_a_time_in_the_gap_forward_and_takes_the_first_of_a_fold() -> None:
    new_york = ZoneInfo("America/New_York")
    assert localize(datetime(2026, 3, 8, 2, 30), new_york).isoformat() == "2026-03-08T03:30:00-04:00"
    assert localize(datetime(2026, 11, 1, 1, 30), new_york).isoformat() == "2026-11-01T01:30:00-04:00"

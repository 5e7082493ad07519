"""Maintenance windows: the VM maintenance-configuration recurrence, in its time zone, on an explicit clock.

Choices, each one a place where the VM syntax leaves room:

- A window lasts its ``duration`` in real elapsed time. A window that spans a daylight-saving
  change therefore ends one wall-clock hour earlier or later than its start plus the duration.
- A start that does not exist on the wall clock (02:30 on a spring-forward day) opens when the
  clock would have shown it in the offset before the change: 03:30 daylight time. A start that
  exists twice (01:30 on a fall-back day) opens at the first of them.
- A day of the month that a month lacks (``day31`` in February, ``day30`` in a common year's
  February) is skipped in that month, as iCalendar does; ``day-1`` is the last day of every month.
- No window opens before ``startDateTime`` (an ``Offset`` that moves a start before it drops that
  window) and none opens at or after ``expirationDateTime``; a window that opened before the
  expiration runs its whole duration.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil import rrule
from tzlocal.windows_tz import win_tz

from scaleset_operator.api.durations import parse_duration
from scaleset_operator.api.models import MaintenanceWindow

SHORTEST_WINDOW = timedelta(hours=1, minutes=30)
LONGEST_WINDOW = timedelta(hours=23, minutes=55)
MAX_OFFSET_DAYS = 6
# Openings of several windows that keep overlapping are cut into pieces this long, so that a
# union that never closes still answers.
LONGEST_UNITED_OPENING = timedelta(days=35)

_WEEKDAYS: dict[str, rrule.weekday] = {
    "monday": rrule.MO,
    "tuesday": rrule.TU,
    "wednesday": rrule.WE,
    "thursday": rrule.TH,
    "friday": rrule.FR,
    "saturday": rrule.SA,
    "sunday": rrule.SU,
}
_WEEK_OF_MONTH = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
_FREQUENCY = re.compile(r"^(\d*)(day|days|week|weeks|month|months)$", re.IGNORECASE)
_MONTH_DAY = re.compile(r"^day(-1|\d{1,2})$", re.IGNORECASE)
_OFFSET = re.compile(r"^offset([+-]?\d+)$", re.IGNORECASE)
_LOCAL_DATE_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?$")
_HOURS_MINUTES = re.compile(r"^(\d{1,2}):(\d{2})$")
_RECURRENCE_HELP = (
    "Day, 3Days, Week Saturday,Sunday, 2Weeks Friday, Month day1,day-1 or Month Last Sunday Offset2"
)


class WindowError(ValueError):
    """A maintenance window the user wrote that cannot be scheduled; the message names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Window:
    """One opening of a maintenance window: [start, end), both aware, in the window's own zone."""

    start: datetime
    end: datetime

    # Aware datetimes that share a tzinfo compare and subtract by wall clock, which is wrong
    # across a daylight-saving change; every comparison goes through UTC.
    @property
    def start_utc(self) -> datetime:
        return self.start.astimezone(UTC)

    @property
    def end_utc(self) -> datetime:
        return self.end.astimezone(UTC)

    @property
    def length(self) -> timedelta:
        """Real elapsed time from start to end."""
        return self.end_utc - self.start_utc

    def contains(self, instant: datetime) -> bool:
        return self.start_utc <= instant.astimezone(UTC) < self.end_utc


@dataclass(frozen=True)
class Schedule:
    """A parsed maintenance window: everything needed to list its openings."""

    zone: ZoneInfo
    first_start: datetime
    duration: timedelta
    rule: rrule.rrule
    offset: timedelta
    expiration: datetime | None

    @property
    def first_start_instant(self) -> datetime:
        return localize(self.first_start, self.zone)

    @property
    def expiration_instant(self) -> datetime | None:
        return None if self.expiration is None else localize(self.expiration, self.zone)


# --------------------------------------------------------------------------- parsing


@lru_cache(maxsize=256)
def resolve_time_zone(name: str, field: str = "spec.window.timeZone") -> ZoneInfo:
    """The zone of an IANA name ("Europe/Berlin") or a Windows name ("W. Europe Standard Time")."""
    for key in (name, win_tz.get(name)):
        if key:
            try:
                return ZoneInfo(key)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    raise WindowError(field, f"{name!r} is neither an IANA time zone nor a Windows time zone name.")


def parse_local_date_time(text: str, field: str) -> datetime:
    """A naive wall-clock time written as 'YYYY-MM-DD hh:mm' (seconds optional)."""
    match = _LOCAL_DATE_TIME.match(text.strip())
    if not match:
        raise WindowError(field, f"{text!r} is not a local date and time such as '2026-11-21 22:00'.")
    year, month, day, hour, minute, second = (int(part or 0) for part in match.groups())
    try:
        return datetime(year, month, day, hour, minute, second)
    except ValueError:
        raise WindowError(field, f"{text!r} is not a date and time that exists on the calendar.") from None


def parse_window_duration(text: str, field: str = "spec.window.duration") -> timedelta:
    """A window's length: 'hh:mm' or a duration such as 3h, between 01:30 and 23:55."""
    hours_minutes = _HOURS_MINUTES.match(text.strip())
    if hours_minutes:
        hours, minutes = int(hours_minutes[1]), int(hours_minutes[2])
        if minutes >= 60:
            raise WindowError(field, f"{text!r} has {minutes} minutes; write hh:mm with minutes below 60.")
        duration = timedelta(hours=hours, minutes=minutes)
    else:
        try:
            duration = parse_duration(text.strip())
        except ValueError:
            raise WindowError(field, f"{text!r} is neither hh:mm nor a duration such as 3h.") from None
    if not SHORTEST_WINDOW <= duration <= LONGEST_WINDOW:
        raise WindowError(field, f"{text!r} must be between 01:30 and 23:55.")
    return duration


def _weekday(name: str, field: str) -> rrule.weekday:
    try:
        return _WEEKDAYS[name.lower()]
    except KeyError:
        raise WindowError(field, f"{name!r} is not a day of the week such as Saturday.") from None


def parse_recurrence(
    text: str, first_start: datetime, field: str = "spec.window.recurEvery"
) -> tuple[rrule.rrule, timedelta]:
    """The rule of `recurEvery` from `first_start` on, and the offset in days added to each occurrence."""
    words = re.sub(r"\s*,\s*", ",", text.strip()).split()
    frequency = _FREQUENCY.match(words[0]) if words else None
    if frequency is None:
        raise WindowError(field, f"{text!r} is not a recurrence; use {_RECURRENCE_HELP}.")
    interval = int(frequency[1] or 1)
    if interval < 1:
        raise WindowError(field, f"{text!r} repeats every {interval}; the interval must be at least 1.")
    unit = frequency[2].lower().rstrip("s")
    rest = words[1:]
    offset = timedelta(0)
    if unit == "day":
        if rest:
            raise WindowError(field, f"{text!r} has words after {words[0]}; a daily recurrence takes none.")
        return rrule.rrule(rrule.DAILY, dtstart=first_start, interval=interval), offset
    if unit == "week":
        if len(rest) > 1:
            raise WindowError(field, f"{text!r} must list its days with commas, as in Week Saturday,Sunday.")
        days = [_weekday(name, field) for name in rest[0].split(",")] if rest else [first_start.weekday()]
        return rrule.rrule(rrule.WEEKLY, dtstart=first_start, interval=interval, byweekday=days), offset
    if not rest:
        return rrule.rrule(
            rrule.MONTHLY, dtstart=first_start, interval=interval, bymonthday=first_start.day
        ), offset
    if rest[0].lower().startswith("day"):
        if len(rest) > 1:
            raise WindowError(field, f"{text!r} must list its days with commas, as in Month day1,day15.")
        month_days = []
        for word in rest[0].split(","):
            match = _MONTH_DAY.match(word)
            if match is None or not (int(match[1]) == -1 or 1 <= int(match[1]) <= 31):
                raise WindowError(field, f"{word!r} is not a day of the month; use day1 to day31 or day-1.")
            month_days.append(int(match[1]))
        return rrule.rrule(
            rrule.MONTHLY, dtstart=first_start, interval=interval, bymonthday=month_days
        ), offset
    if rest[0].lower() not in _WEEK_OF_MONTH or len(rest) not in (2, 3):
        raise WindowError(
            field, f"{text!r} must read Month First|Second|Third|Fourth|Last <Weekday> [Offset-6..6]."
        )
    nth = _WEEK_OF_MONTH[rest[0].lower()]
    day = _weekday(rest[1], field)
    if len(rest) == 3:
        match = _OFFSET.match(rest[2])
        if match is None or abs(int(match[1])) > MAX_OFFSET_DAYS:
            raise WindowError(field, f"{rest[2]!r} is not an offset; use Offset-6 to Offset6 (days).")
        offset = timedelta(days=int(match[1]))
    return rrule.rrule(rrule.MONTHLY, dtstart=first_start, interval=interval, byweekday=day(nth)), offset


def parse_window(window: MaintenanceWindow, field: str = "spec.window") -> Schedule:
    """Check and parse a MaintenanceWindow; a WindowError names the first field that is wrong."""
    zone = resolve_time_zone(window.time_zone, f"{field}.timeZone")
    first_start = parse_local_date_time(window.start_date_time, f"{field}.startDateTime")
    duration = parse_window_duration(window.duration, f"{field}.duration")
    rule, offset = parse_recurrence(window.recur_every, first_start, f"{field}.recurEvery")
    expiration = None
    if window.expiration_date_time is not None:
        expiration = parse_local_date_time(window.expiration_date_time, f"{field}.expirationDateTime")
        if expiration <= first_start:
            raise WindowError(f"{field}.expirationDateTime", "must be later than startDateTime.")
    return Schedule(zone, first_start, duration, rule, offset, expiration)


# --------------------------------------------------------------------------- openings


def localize(wall_time: datetime, zone: ZoneInfo) -> datetime:
    """The instant a naive wall-clock time names in `zone`: gaps move forward, folds take the first."""
    # zoneinfo reads a time in a gap with the offset before the change; the round trip through UTC
    # turns it into a real wall time after the change (02:30 -> 03:30).
    return wall_time.replace(tzinfo=zone, fold=0).astimezone(UTC).astimezone(zone)


def _as_schedule(window: MaintenanceWindow | Schedule) -> Schedule:
    return window if isinstance(window, Schedule) else parse_window(window)


def iter_windows(window: MaintenanceWindow | Schedule, after: datetime) -> Iterator[Window]:
    """The openings that end after `after` (an aware instant), in order; one already open comes first."""
    if after.tzinfo is None:
        raise ValueError("after must be an aware datetime")
    schedule = _as_schedule(window)
    first = schedule.first_start_instant.astimezone(UTC)
    expiration = schedule.expiration_instant
    expiration = None if expiration is None else expiration.astimezone(UTC)
    after = after.astimezone(UTC)
    # Start looking early enough that an opening still running at `after` is found.
    local_after = after.astimezone(schedule.zone).replace(tzinfo=None)
    look_from = local_after - schedule.duration - abs(schedule.offset) - timedelta(days=2)
    for occurrence in schedule.rule.xafter(max(look_from, schedule.first_start), inc=True):
        start = localize(occurrence + schedule.offset, schedule.zone).astimezone(UTC)
        if start < first:
            continue
        if expiration is not None and start >= expiration:
            return
        end = start + schedule.duration
        if end > after:
            yield Window(start.astimezone(schedule.zone), end.astimezone(schedule.zone))


def next_windows(window: MaintenanceWindow | Schedule, after: datetime, count: int) -> list[Window]:
    """The first `count` openings that end after `after`; fewer when the window expires."""
    windows = iter_windows(window, after)
    return [opening for _, opening in zip(range(count), windows, strict=False)]


def window_at(window: MaintenanceWindow | Schedule, now: datetime) -> Window | None:
    """The opening that holds `now`, if any."""
    opening = next(iter_windows(window, now), None)
    return opening if opening is not None and opening.contains(now) else None


def iter_union(windows: Iterable[MaintenanceWindow | Schedule], after: datetime) -> Iterator[Window]:
    """The openings of several windows united: overlapping or touching openings become one."""
    streams = [iter_windows(window, after) for window in windows]
    merged = heapq.merge(*streams, key=lambda opening: opening.start_utc)
    current: Window | None = None
    for opening in merged:
        if current is None:
            current = opening
        elif opening.start_utc <= current.end_utc:
            if opening.end_utc > current.end_utc:
                current = Window(current.start, opening.end.astimezone(current.start.tzinfo))
        else:
            yield current
            current = opening
        while current.length > LONGEST_UNITED_OPENING:
            cut = (current.start_utc + LONGEST_UNITED_OPENING).astimezone(current.start.tzinfo)
            yield Window(current.start, cut)
            current = Window(cut, current.end)
    if current is not None:
        yield current


def union(windows: Sequence[MaintenanceWindow | Schedule], after: datetime, count: int) -> list[Window]:
    """The first `count` united openings of several windows that end after `after`.

    United openings are sorted and never overlap; one united opening lasts at most 35 days.
    """
    return [opening for _, opening in zip(range(count), iter_union(windows, after), strict=False)]


def union_window_at(windows: Sequence[MaintenanceWindow | Schedule], now: datetime) -> Window | None:
    """The united opening that holds `now`, if any."""
    opening = next(iter_union(windows, now), None)
    return opening if opening is not None and opening.contains(now) else None


def merge_openings(openings: Iterable[Window]) -> list[Window]:
    """Unite finished lists of openings: sorted, and no two overlap or touch."""
    result: list[Window] = []
    for opening in sorted(openings, key=lambda item: item.start_utc):
        if result and opening.start_utc <= result[-1].end_utc:
            last = result[-1]
            if opening.end_utc > last.end_utc:
                result[-1] = Window(last.start, opening.end.astimezone(last.start.tzinfo))
        else:
            result.append(opening)
    return result

"""Reception-time arithmetic: weekly rules to UTC intervals, subtraction, free slots.

Pure functions, no database: the property tests drive them directly.
"""

from __future__ import annotations

import bisect
from bisect import insort
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

QUANTUM_MINUTES = 5
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, order=True)
class Interval:
    """A half-open period ``[start, end)`` in UTC."""

    start: datetime
    end: datetime

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end

    def contains(self, other: Interval) -> bool:
        return self.start <= other.start and other.end <= self.end


class WeeklyRule(NamedTuple):
    """Local weekly hours: ``weekday`` 0 = Monday, minutes after local midnight. A named
    tuple: a calendar load builds hundreds (a frozen dataclass's ``__init__`` showed)."""

    weekday: int
    start_minute: int
    end_minute: int
    slot_minutes: int = 30
    valid_from: date | None = None
    valid_until: date | None = None


@dataclass(frozen=True)
class Window:
    """Available time cut into slots of ``slot_minutes``."""

    interval: Interval
    slot_minutes: int


@lru_cache(maxsize=65536)
def local_instant(day: date, minute: int, tz: ZoneInfo) -> datetime:
    """The UTC instant of ``minute`` minutes after local midnight of ``day`` (memoized: the
    free-slot search asks for the same few instants of the same days again and again)."""
    base = datetime.combine(day + timedelta(days=minute // 1440), time(0), tzinfo=tz)
    return (base + timedelta(minutes=minute % 1440)).astimezone(UTC)


def local_day(instant: datetime, tz: ZoneInfo) -> date:
    return instant.astimezone(tz).date()


def days(first: date, last: date) -> Iterable[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


# How people read a weekday (0 = Monday); the pages' own list is app.js's WEEKDAYS.
WEEKDAY_NAMES = ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日")

WeekTable = dict[int, tuple[WeeklyRule, ...]]
"""Weekly rules by weekday (0 = Monday)."""


def by_weekday(rules: Iterable[WeeklyRule]) -> WeekTable:
    table: dict[int, list[WeeklyRule]] = {}
    for rule in rules:
        table.setdefault(rule.weekday, []).append(rule)
    return {weekday: tuple(day) for weekday, day in table.items()}


def day_windows(
    table: WeekTable, day: date, tz: ZoneInfo, weekday: int | None = None
) -> list[Window]:
    """The occurrences of a week table's rules on one local day (a new list); ``weekday``:
    the day keeps another weekday's hours (a 调休上班日)."""
    rules = table.get(day.weekday() if weekday is None else weekday)
    return list(_rule_windows(rules, day, tz)) if rules else []


@lru_cache(maxsize=16384)
def _rule_windows(rules: tuple[WeeklyRule, ...], day: date, tz: ZoneInfo) -> tuple[Window, ...]:
    """Memoized: a court's judges mostly share their hours, and a search asks for each
    judge's day (building the windows showed in the free-slot search's profile)."""
    out: list[Window] = []
    for rule in rules:
        if rule.valid_from and day < rule.valid_from:
            continue
        if rule.valid_until and day > rule.valid_until:
            continue
        out.append(
            Window(
                Interval(
                    local_instant(day, rule.start_minute, tz),
                    local_instant(day, rule.end_minute, tz),
                ),
                rule.slot_minutes,
            )
        )
    return tuple(out)


def expand_weekly(
    rules: Iterable[WeeklyRule], first: date, last: date, tz: ZoneInfo
) -> list[Window]:
    """Every occurrence of ``rules`` on the local days ``first`` … ``last``."""
    table = by_weekday(rules)
    return [w for day in days(first, last) for w in day_windows(table, day, tz)]


def subtract(windows: Iterable[Window], removed: Sequence[Interval]) -> list[Window]:
    """``windows`` with every ``removed`` period cut out."""
    out: list[Window] = []
    for window in windows:
        pieces = [window.interval]
        for cut in removed:
            next_pieces = []
            for piece in pieces:
                if not piece.overlaps(cut):
                    next_pieces.append(piece)
                    continue
                if piece.start < cut.start:
                    next_pieces.append(Interval(piece.start, cut.start))
                if cut.end < piece.end:
                    next_pieces.append(Interval(cut.end, piece.end))
            pieces = next_pieces
        out.extend(Window(p, window.slot_minutes) for p in pieces)
    return out


def closed_days_removed(windows: Iterable[Window], closed: set[date], tz: ZoneInfo) -> list[Window]:
    """Drop the parts of ``windows`` that fall on a closed local day."""
    if not closed:
        return list(windows)
    cuts = [Interval(local_instant(d, 0, tz), local_instant(d, 1440, tz)) for d in sorted(closed)]
    return subtract(windows, cuts)


Span = tuple[datetime, datetime]
"""A half-open period as a plain (start, end) pair, compared in C."""


class BusyIndex:
    """Sorted busy intervals with a fast overlap test, and the free parts of given spans."""

    def __init__(self, busy: Iterable[Span]) -> None:
        # plain (start, end) pairs: compared in C, and no dataclass built per busy period
        self._items = sorted(busy)
        self._starts = [start for start, _ in self._items]
        # running maximum of ends, so one bisect answers "does anything overlap?"
        self._max_end: list[datetime] = []
        latest: datetime | None = None
        for _, end in self._items:
            latest = end if latest is None or end > latest else latest
            self._max_end.append(latest)

    @classmethod
    def of(cls, busy: Iterable[Interval]) -> BusyIndex:
        return cls((b.start, b.end) for b in busy)

    def overlaps(self, interval: Interval) -> bool:
        return self.overlaps_span(interval.start, interval.end)

    def overlaps_span(self, start: datetime, end: datetime) -> bool:
        i = bisect.bisect_left(self._starts, end)  # items starting before its end
        return i > 0 and self._max_end[i - 1] > start

    def free_parts(self, spans: Iterable[Span]) -> list[Span]:
        """What is left of each of ``spans`` once the busy intervals are cut out: one
        (start, end) pair per free stretch, in the order of ``spans``."""
        out: list[Span] = []
        for a, b in spans:
            lo = bisect.bisect_right(self._max_end, a)  # every item before ends by ``a``
            hi = bisect.bisect_left(self._starts, b)  # every item from here starts at ``b``
            cur = a
            for s, e in self._items[lo:hi]:
                if e <= cur:
                    continue
                if s > cur:
                    out.append((cur, s))
                cur = e
                if cur >= b:
                    break
            if cur < b:
                out.append((cur, b))
        return out


def free_slots(
    windows: Iterable[Window],
    *,
    open_hours: Sequence[Interval] | None,
    busy: BusyIndex,
    not_before: datetime,
    limit: int,
) -> list[Interval]:
    """Slots cut from ``windows`` that fit in ``open_hours`` (None: no limit), do not
    overlap ``busy`` and start no earlier than ``not_before``; earliest first."""
    pairs = free_pairs(
        windows,
        open_spans=None if open_hours is None else [(o.start, o.end) for o in open_hours],
        busy=busy,
        not_before=not_before,
        limit=limit,
    )
    return [Interval(a, b) for a, b in pairs]


def free_pairs(
    windows: Iterable[Window],
    *,
    open_spans: Sequence[Span] | None,
    busy: BusyIndex,
    not_before: datetime,
    limit: int,
    not_after: datetime | None = None,
) -> list[Span]:
    """:func:`free_slots` as (start, end) pairs, the open hours given as pairs too: the
    free-slot search calls it for every judge and day and keeps only the first few, so no
    Interval is built for the rest. Only the slots inside an open span are looked at (the
    search passes the room's free stretches: a full day costs nothing per slot).
    ``not_after``: no slot starting later is wanted (the search already has enough)."""
    opens = sorted(open_spans) if open_spans is not None else None
    kept: list[Span] = []  # the earliest ``limit`` free slots found so far, in order
    seen: set[Span] = set()  # (windows may overlap: a slot is offered once)
    for window in sorted(windows, key=lambda w: w.interval.start):
        first, last = window.interval.start, window.interval.end
        if len(kept) >= limit and first > kept[-1][0]:
            break  # windows are sorted: nothing later can give an earlier slot
        if not_after is not None and first > not_after:
            break
        step = timedelta(minutes=window.slot_minutes)
        if opens is None:
            spans = [(first, last)]
        else:
            spans = [(max(a, first), min(b, last)) for a, b in opens if a < last and first < b]
        for lo, hi in spans:
            lo = max(lo, not_before)
            # the window's first slot starting at or after ``lo`` (slots are cut from
            # the window's start, whole steps apart)
            start = first - ((first - lo) // step) * step if lo > first else first
            while start + step <= hi:
                end = start + step
                slot_start, start = start, end
                if not_after is not None and slot_start > not_after:
                    break
                if len(kept) >= limit and slot_start > kept[-1][0]:
                    break  # this span's later slots start later still: none is wanted
                slot = (slot_start, end)
                if slot not in seen and not busy.overlaps_span(slot_start, end):
                    seen.add(slot)
                    insort(kept, slot)
                    if len(kept) > limit:
                        kept.pop()
    return kept


def covered(interval: Interval, windows: Iterable[Window | Interval]) -> bool:
    """True when one window contains the whole interval."""
    for w in windows:
        span = w.interval if isinstance(w, Window) else w
        if span.contains(interval):
            return True
    return False


def units(interval: Interval) -> range:
    """The 5-minute units the interval occupies (epoch minutes // 5)."""
    first = int((interval.start - EPOCH).total_seconds()) // 60 // QUANTUM_MINUTES
    end_minutes = -(-int((interval.end - EPOCH).total_seconds()) // 60)
    last = -(-end_minutes // QUANTUM_MINUTES)
    return range(first, last)


def aligned(instant: datetime) -> bool:
    return (
        instant.second == 0 and instant.microsecond == 0 and instant.minute % QUANTUM_MINUTES == 0
    )

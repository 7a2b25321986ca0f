"""Property tests of slot generation: no slot outside opening hours, on a holiday, or
overlapping another booking; every slot inside reception hours and in the future."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.slots import (
    BusyIndex,
    Interval,
    WeeklyRule,
    Window,
    closed_days_removed,
    covered,
    expand_weekly,
    free_pairs,
    free_slots,
    local_day,
    subtract,
    units,
)

TZ = ZoneInfo("Asia/Shanghai")
FIRST = date(2026, 12, 7)  # a Monday
LAST = FIRST + timedelta(days=13)


@st.composite
def weekly_rules(draw: st.DrawFn, slot: bool = True) -> list[WeeklyRule]:
    rules = []
    for _ in range(draw(st.integers(0, 6))):
        start = draw(st.integers(0, 280)) * 5
        end = draw(st.integers(start // 5 + 1, 288)) * 5
        minutes = draw(st.sampled_from([10, 15, 20, 30, 45, 60])) if slot else 30
        rules.append(WeeklyRule(draw(st.integers(0, 6)), start, end, minutes))
    return rules


@st.composite
def intervals(draw: st.DrawFn, n: int = 8) -> list[Interval]:
    base = datetime.combine(FIRST, datetime.min.time(), tzinfo=TZ).astimezone(UTC)
    out = []
    for _ in range(draw(st.integers(0, n))):
        start = base + timedelta(minutes=5 * draw(st.integers(0, 14 * 288)))
        out.append(Interval(start, start + timedelta(minutes=5 * draw(st.integers(1, 48)))))
    return out


@settings(max_examples=300, deadline=None)
@given(
    rules=weekly_rules(),
    room_rules=weekly_rules(slot=False),
    holidays=st.sets(st.sampled_from([FIRST + timedelta(days=i) for i in range(14)]), max_size=4),
    busy=intervals(),
    cancellations=intervals(4),
    now_offset=st.integers(0, 14 * 24 * 60),
)
def test_free_slots_respect_every_rule(
    rules: list[WeeklyRule],
    room_rules: list[WeeklyRule],
    holidays: set[date],
    busy: list[Interval],
    cancellations: list[Interval],
    now_offset: int,
) -> None:
    now = datetime.combine(FIRST, datetime.min.time(), tzinfo=TZ) + timedelta(minutes=now_offset)
    availability = subtract(expand_weekly(rules, FIRST, LAST, TZ), cancellations)
    availability = closed_days_removed(availability, holidays, TZ)
    room_open = [
        w.interval
        for w in closed_days_removed(expand_weekly(room_rules, FIRST, LAST, TZ), holidays, TZ)
    ]
    slots = free_slots(
        availability, open_hours=room_open, busy=BusyIndex.of(busy), not_before=now, limit=10_000
    )
    for slot in slots:
        assert slot.start >= now
        assert any(o.contains(slot) for o in room_open), "outside opening hours"
        assert local_day(slot.start, TZ) not in holidays, "on a holiday"
        assert local_day(slot.end - timedelta(seconds=1), TZ) not in holidays
        assert not any(slot.overlaps(b) for b in busy), "overlaps a booking"
        assert not any(slot.overlaps(c) for c in cancellations), "in a cancelled period"
        assert covered(slot, availability), "outside reception hours"
    assert slots == sorted(slots)
    assert len(set(slots)) == len(slots)
    # and none is missing: every slot of every window that breaks no rule is offered
    every = set()
    for w in availability:
        step = timedelta(minutes=w.slot_minutes)
        start = w.interval.start
        while start + step <= w.interval.end:
            slot = Interval(start, start + step)
            if (
                start >= now
                and any(o.contains(slot) for o in room_open)
                and not any(slot.overlaps(b) for b in busy)
            ):
                every.add(slot)
            start += step
    assert slots == sorted(every)


@settings(max_examples=200, deadline=None)
@given(
    rules=weekly_rules(),
    busy=intervals(),
    limit=st.integers(1, 40),
    cut_offset=st.integers(0, 14 * 288),
)
def test_a_cut_off_search_gives_the_same_first_slots(
    rules: list[WeeklyRule], busy: list[Interval], limit: int, cut_offset: int
) -> None:
    """``not_after`` (the free-slot search has enough slots that start earlier) drops only
    the slots that start after it."""
    windows = expand_weekly(rules, FIRST, LAST, TZ)
    now = datetime.combine(FIRST, datetime.min.time(), tzinfo=TZ)
    cut = now + timedelta(minutes=5 * cut_offset)
    index = BusyIndex.of(busy)
    whole = free_pairs(windows, open_spans=None, busy=index, not_before=now, limit=limit)
    cut_off = free_pairs(
        windows, open_spans=None, busy=index, not_before=now, limit=limit, not_after=cut
    )
    assert cut_off == [p for p in whole if p[0] <= cut]


def _search(
    rules: list[WeeklyRule], room_rules: list[WeeklyRule], now_offset: int
) -> tuple[list[Window], list[tuple[datetime, datetime]], datetime]:
    """A search's judges' windows, the room's open spans, and its "now" (5-minute steps
    after the first day's midnight)."""
    windows = expand_weekly(rules, FIRST, LAST, TZ)
    opens = [(w.interval.start, w.interval.end) for w in expand_weekly(room_rules, FIRST, LAST, TZ)]
    start = datetime.combine(FIRST, datetime.min.time(), tzinfo=TZ)
    return windows, opens, start + timedelta(minutes=5 * now_offset)


@settings(max_examples=200, deadline=None)
@given(
    rules=weekly_rules(),
    room_rules=weekly_rules(slot=False),
    busy=intervals(),
    limit=st.integers(1, 40),
    now_offset=st.integers(0, 14 * 288),
)
def test_a_limited_search_gives_the_first_slots_of_the_whole_search(
    rules: list[WeeklyRule],
    room_rules: list[WeeklyRule],
    busy: list[Interval],
    limit: int,
    now_offset: int,
) -> None:
    """The search keeps only the earliest ``limit`` slots as it goes (and stops looking past
    them): the same slots as the first ``limit`` of every free slot."""
    windows, opens, now = _search(rules, room_rules, now_offset)
    index = BusyIndex.of(busy)
    every = free_pairs(windows, open_spans=opens, busy=index, not_before=now, limit=100_000)
    first = free_pairs(windows, open_spans=opens, busy=index, not_before=now, limit=limit)
    assert first == every[:limit]
    assert len(set(every)) == len(every) and every == sorted(every)


@settings(max_examples=200, deadline=None)
@given(busy=intervals(12), probe=intervals(1))
def test_busy_index_agrees_with_brute_force(busy: list[Interval], probe: list[Interval]) -> None:
    index = BusyIndex.of(busy)
    for p in probe:
        assert index.overlaps(p) == any(p.overlaps(b) for b in busy)


def _runs(units_: list[int]) -> list[tuple[int, int]]:
    """Maximal runs of consecutive 5-minute units, as [first, end) unit pairs."""
    runs: list[tuple[int, int]] = []
    for u in units_:
        if runs and runs[-1][1] == u:
            runs[-1] = (runs[-1][0], u + 1)
        else:
            runs.append((u, u + 1))
    return runs


@settings(max_examples=300, deadline=None)
@given(busy=intervals(12), spans=intervals(4))
def test_free_parts_are_each_span_less_the_busy_time(
    busy: list[Interval], spans: list[Interval]
) -> None:
    taken = {u for b in busy for u in units(b)}
    parts = BusyIndex.of(busy).free_parts((s.start, s.end) for s in spans)
    expected = [run for s in spans for run in _runs([u for u in units(s) if u not in taken])]
    assert [(units(Interval(a, b))[0], units(Interval(a, b))[-1] + 1) for a, b in parts] == (
        expected
    )


@settings(max_examples=300, deadline=None)
@given(
    rules=weekly_rules(),
    room_rules=weekly_rules(slot=False),
    own=intervals(6),
    shared=intervals(12),
    limit=st.integers(1, 40),
    now_offset=st.integers(0, 14 * 288),
)
def test_slots_in_the_rooms_free_parts_are_those_the_room_does_not_block(
    rules: list[WeeklyRule],
    room_rules: list[WeeklyRule],
    own: list[Interval],
    shared: list[Interval],
    limit: int,
    now_offset: int,
) -> None:
    """The search cuts the room's visits out of its opening hours once, then checks each
    judge's slots against the judge's own visits only: the same slots as checking both."""
    windows, opens, now = _search(rules, room_rules, now_offset)
    both = free_pairs(
        windows, open_spans=opens, busy=BusyIndex.of(own + shared), not_before=now, limit=limit
    )
    split = free_pairs(
        windows,
        open_spans=BusyIndex.of(shared).free_parts(opens),
        busy=BusyIndex.of(own),
        not_before=now,
        limit=limit,
    )
    assert split == both


@given(a=intervals(1), b=intervals(1))
def test_units_overlap_exactly_when_intervals_do(a: list[Interval], b: list[Interval]) -> None:
    for x in a:
        for y in b:
            assert bool(set(units(x)) & set(units(y))) == x.overlaps(y)


def test_weekly_rules_use_local_time() -> None:
    (window,) = expand_weekly([WeeklyRule(0, 9 * 60, 12 * 60)], FIRST, FIRST, TZ)
    assert window == Window(
        Interval(datetime(2026, 12, 7, 1, tzinfo=UTC), datetime(2026, 12, 7, 4, tzinfo=UTC)), 30
    )
    assert (
        expand_weekly(
            [WeeklyRule(0, 0, 1440, valid_from=FIRST + timedelta(days=1))], FIRST, FIRST, TZ
        )
        == []
    )

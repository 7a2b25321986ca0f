"""Every petition statistic, defined once (信访大数据).

A :class:`Figure` says what is counted, from which table and for which period, and computes
it with one aggregate query grouped by court. The rows come back per court; rolling them up
into the whole scope and into each child court of the scope happens here, in Python, over
the court tree loaded once per request (:class:`Scope`). ``docs/statistics.md`` is generated
from :data:`FIGURES` (``python -m scheduler.stats.figures``) and a test keeps it equal.

Periods are whole months in court local time; a period ends at the start of the month after
its last month (exclusive).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    and_,
    case,
    delete,
    distinct,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from config.db import Database, utcnow
from config.errors import InvalidError, NotFoundError, PermissionDeniedError
from config.vocabulary import label
from scheduler.cases.models import Contact
from scheduler.cases.rules import CLOSED, OPEN
from scheduler.cases.words import CaseCategory, CaseState, Channel
from scheduler.lifecycle import BOOKABLE_KINDS
from scheduler.models import Court, CourtLevel, Petition, Role, Visit, VisitState
from scheduler.portal.feedback_models import Rating
from scheduler.scope import Actor
from scheduler.stats.models import CourtCaseCount, MonthlyFigure, MonthlyRefresh

MAX_MONTHS = 60  # five years
# The years a period may lie in: a month outside them is refused (9999-12 would end in year
# 10000, which no date holds; the statistics are about the system's own records anyway).
FIRST_YEAR, LAST_YEAR = 2000, 2099
STATS_ROLES = frozenset({Role.leader, Role.petition_officer, Role.admin})
NO_DATA = "无数据"
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


# ------------------------------------------------------------------ period


@dataclass(frozen=True)
class Period:
    """Whole months ``first``..``last`` (``YYYY-MM``) in ``tz``; ``start``/``end`` in UTC."""

    first: str
    last: str
    tz: ZoneInfo
    start: datetime
    end: datetime  # exclusive: the start of the month after ``last``
    months: tuple[str, ...]

    @property
    def offset_hours(self) -> int:
        """The zone's UTC offset in whole hours at the period start (China: +8, no DST)."""
        delta = self.start.astimezone(self.tz).utcoffset()
        return int(delta.total_seconds() // 3600) if delta else 0


def _month_of(text: str, what: str) -> tuple[int, int]:
    match = _MONTH.match(text.strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise InvalidError(f"{what}格式应为 YYYY-MM（例如 2026-01），收到：{text!r}")
    year = int(match.group(1))
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise InvalidError(f"{what}的年份应在 {FIRST_YEAR} 年至 {LAST_YEAR} 年之间，收到：{text!r}")
    return year, int(match.group(2))


def parse_period(first: str | None, last: str | None, tz: ZoneInfo) -> Period:
    """The statistics period from ``first`` to ``last``; refused when missing, malformed,
    outside the years FIRST_YEAR..LAST_YEAR, reversed or longer than five years (each with
    a zh-CN message)."""
    if not first or not last:
        raise InvalidError("请指定统计期间的起始月份和截止月份（格式 YYYY-MM）")
    y1, m1 = _month_of(first, "起始月份")
    y2, m2 = _month_of(last, "截止月份")
    count = (y2 * 12 + m2) - (y1 * 12 + m1) + 1
    if count < 1:
        raise InvalidError(f"起始月份 {first} 晚于截止月份 {last}，请调换后重试")
    if count > MAX_MONTHS:
        raise InvalidError(f"统计期间最长 5 年（{MAX_MONTHS} 个月），所选期间为 {count} 个月")
    months = [shift_month(f"{y1:04d}-{m1:02d}", i) for i in range(count)]
    ey, em = divmod(y2 * 12 + m2, 12)
    start = datetime(y1, m1, 1, tzinfo=tz).astimezone(UTC)
    end = datetime(ey, em + 1, 1, tzinfo=tz).astimezone(UTC)
    return Period(months[0], months[-1], tz, start, end, tuple(months))


def parse_month(text: str | None, tz: ZoneInfo) -> Period:
    """One whole month (``YYYY-MM``) as a period; refused when missing or malformed."""
    if not text:
        raise InvalidError("请选择通报月份（格式 YYYY-MM）")
    _month_of(text, "通报月份")
    return parse_period(text.strip(), text.strip(), tz)


def shift_month(month: str, months: int) -> str:
    """``month`` (``YYYY-MM``) moved by ``months`` (negative: back)."""
    y, m = divmod(int(month[:4]) * 12 + int(month[5:7]) - 1 + months, 12)
    return f"{y:04d}-{m + 1:02d}"


# ------------------------------------------------------------------ scope


@dataclass(frozen=True)
class CourtNode:
    id: int
    name: str
    level: CourtLevel
    parent_id: int | None


@dataclass(frozen=True)
class Scope:
    """The court whose figures are asked for, its children, and where each court below it
    rolls up to (the child court that contains it; the root's own records to the root)."""

    root: CourtNode
    children: tuple[CourtNode, ...]
    bucket: dict[int, int]
    courts: dict[int, CourtNode]
    whole_tree: bool  # the root is the top court: no court filter needed

    @property
    def court_ids(self) -> frozenset[int]:
        return frozenset(self.bucket)

    def where(self, column: Any) -> ColumnElement[bool]:
        """A filter of ``column`` (a court id) to this scope."""
        if self.whole_tree:
            return true()
        filtered: ColumnElement[bool] = column.in_(sorted(self.bucket))
        return filtered


async def load_scope(db: AsyncSession, root_id: int) -> Scope:
    """The scope below ``root_id``: the tree from one narrow query over every court (id and
    parent only), names and levels for the root and its children (``courts`` holds those)."""
    tree = (await db.execute(select(Court.id, Court.parent_id))).all()
    kids: dict[int | None, list[int]] = defaultdict(list)
    parents: dict[int, int | None] = {}
    for court_id, parent_id in tree:
        kids[parent_id].append(court_id)
        parents[court_id] = parent_id
    if root_id not in parents:
        raise NotFoundError("法院不存在")
    bucket = {root_id: root_id}
    children = sorted(kids[root_id])
    for child in children:
        stack = [child]
        while stack:
            current = stack.pop()
            bucket[current] = child
            stack.extend(kids[current])
    named = await db.execute(
        select(Court.id, Court.name, Court.level, Court.parent_id).where(
            Court.id.in_([root_id, *children])
        )
    )
    courts = {r.id: CourtNode(r.id, r.name, r.level, r.parent_id) for r in named}
    return Scope(
        root=courts[root_id],
        children=tuple(courts[c] for c in children),
        bucket=bucket,
        courts=courts,
        whole_tree=parents[root_id] is None,
    )


async def scope_for(db: AsyncSession, actor: Actor, court_id: int | None) -> Scope:
    """The scope ``actor`` asks for: a leader or petition officer sees their court and every
    court below it; an admin any court (by default the top one)."""
    if actor.role not in STATS_ROLES:
        raise PermissionDeniedError("只有院领导、信访专员和系统管理员可以查看信访统计")
    if court_id is None:
        if actor.court_id is not None:
            court_id = actor.court_id
        elif actor.is_admin:
            top = await db.scalar(select(Court.id).where(Court.parent_id.is_(None)))
            if top is None:
                raise NotFoundError("尚未设置法院")
            court_id = top
        else:
            raise PermissionDeniedError("账号未关联法院，无法查看统计")
    if actor.is_admin:
        return await load_scope(db, court_id)
    if actor.court_id is None:
        raise PermissionDeniedError("账号未关联法院，无法查看统计")
    own = await load_scope(db, actor.court_id)
    if court_id not in own.bucket:
        raise PermissionDeniedError("只能查看本院及下级法院的统计")
    return own if court_id == actor.court_id else await load_scope(db, court_id)


# ------------------------------------------------------------------ SQL helpers


def _month(db: AsyncSession, column: Any, period: Period) -> ColumnElement[str]:
    """``YYYY-MM`` of a UTC timestamp column in court local time."""
    if db.get_bind().dialect.name == "sqlite":
        return func.strftime("%Y-%m", column, f"{period.offset_hours:+d} hours")
    return func.to_char(func.timezone(period.tz.key, column), "YYYY-MM")


def _seconds(db: AsyncSession, later: Any, earlier: Any) -> Any:
    if db.get_bind().dialect.name == "sqlite":
        return (func.julianday(later) - func.julianday(earlier)) * 86400.0
    return func.extract("epoch", later - earlier)


def _in(column: Any, period: Period) -> ColumnElement[bool]:
    return and_(column >= period.start, column < period.end)


def _case_court() -> ColumnElement[int]:
    """The court a case's outcome counts for: its handling court, else where it was filed."""
    return func.coalesce(Petition.handler_court_id, Petition.court_id)


# ------------------------------------------------------------------ figures

# One row of a figure's query: (court id, key, numerator, denominator). ``key`` is "" for a
# figure without a breakdown; the denominator is 0 for plain counts.
Row = tuple[int, str, float, float]
Compute = Callable[[AsyncSession, Scope, Period], Awaitable[list[Row] | None]]


@dataclass(frozen=True)
class Figure:
    """One statistic: what it is called, how it is defined, and its query."""

    key: str
    label: str
    unit: str
    definition: str  # what is counted (English, for docs/statistics.md)
    source: str  # from which table(s)
    period_rule: str  # which records fall in the period
    compute: Compute
    kind: str = "count"  # count: Σ numerator · ratio: Σ num ÷ Σ den × scale
    scale: float = 1.0
    breakdown: str = ""  # what ``key`` of a row means: channel, category, level, month
    court_rule: str = ""  # which court a record counts for
    key_label: Callable[[str], str] = field(default=str)
    # sum: the period's value is the sum of its months' · last: the value of its last month
    span: str = "sum"

    def value(self, num: float, den: float) -> float | None:
        if self.kind == "count":
            return num
        return None if den == 0 else round(num / den * self.scale, 2)


def _rows(result: Iterable[Any]) -> list[Row]:
    return [(int(r[0]), str(r[1]), float(r[2] or 0), float(r[3] or 0)) for r in result]


async def _contacts_by(db: AsyncSession, scope: Scope, period: Period, key: Any) -> list[Row]:
    what = key if key is not None else literal("")
    stmt = (
        select(Contact.court_id, what, func.count(), literal(0))
        .where(_in(Contact.occurred_at, period), scope.where(Contact.court_id))
        .group_by(Contact.court_id, what)
    )
    return _rows(await db.execute(stmt))


async def _volume_channel(db: AsyncSession, scope: Scope, period: Period) -> list[Row]:
    return await _contacts_by(db, scope, period, Contact.channel)


async def _volume_month(db: AsyncSession, scope: Scope, period: Period) -> list[Row]:
    return await _contacts_by(db, scope, period, _month(db, Contact.occurred_at, period))


async def _volume_court(db: AsyncSession, scope: Scope, period: Period) -> list[Row]:
    return [(c, "", n, d) for c, _, n, d in await _contacts_by(db, scope, period, None)]


async def _volume_level(db: AsyncSession, scope: Scope, period: Period) -> list[Row]:
    return [
        (c, scope.courts[c].level.value, n, d)
        for c, _, n, d in await _contacts_by(db, scope, period, None)
    ]


async def _volume_category(db: AsyncSession, scope: Scope, period: Period) -> list[Row]:
    stmt = (
        select(Contact.court_id, Petition.category, func.count(), literal(0))
        .join(Petition, Petition.id == Contact.petition_id)
        .where(_in(Contact.occurred_at, period), scope.where(Contact.court_id))
        .group_by(Contact.court_id, Petition.category)
    )
    return _rows(await db.execute(stmt))


async def _case_visit_ratio(db: AsyncSession, scope: Scope, period: Period) -> list[Row]:
    registered = (
        select(Petition.court_id, func.count())
        .where(_in(Petition.created_at, period), scope.where(Petition.court_id))
        .group_by(Petition.court_id)
    )
    decided = (
        select(CourtCaseCount.court_id, func.sum(CourtCaseCount.decided_count))
        .where(
            CourtCaseCount.month >= period.first,
            CourtCaseCount.month <= period.last,
            scope.where(CourtCaseCount.court_id),
        )
        .group_by(CourtCaseCount.court_id)
    )
    num = {int(c): float(n) for c, n in (await db.execute(registered)).all()}
    den = {int(c): float(n or 0) for c, n in (await db.execute(decided)).all()}
    return [(c, "", num.get(c, 0.0), den.get(c, 0.0)) for c in sorted(set(num) | set(den))]


def _closed_in(period: Period) -> ColumnElement[bool]:
    return and_(
        _in(Petition.closed_at, period),
        Petition.state.in_(sorted(CLOSED)),
    )


async def _closed_ratio(
    db: AsyncSession, scope: Scope, period: Period, hit: ColumnElement[bool]
) -> list[Row]:
    court = _case_court()
    stmt = (
        select(court, literal(""), func.sum(case((hit, 1), else_=0)), func.count())
        .where(_closed_in(period), scope.where(court))
        .group_by(court)
    )
    return _rows(await db.execute(stmt))


async def _resolution_rate(db: AsyncSession, scope: Scope, period: Period) -> list[Row]:
    return await _closed_ratio(db, scope, period, Petition.state == CaseState.resolved)


async def _on_time_rate(db: AsyncSession, scope: Scope, period: Period) -> list[Row]:
    # the deadline that ran at closing, not due_at: closing replaces that (化解: the 回访
    # deadline, 30 days on; 信访终结, 导入诉讼: none), which read every case as on time
    deadline = Petition.closed_due_at
    on_time = func.coalesce(Petition.closed_at <= deadline, deadline.is_(None))
    return await _closed_ratio(db, scope, period, on_time)


async def _overdue(db: AsyncSession, scope: Scope, period: Period) -> list[Row]:
    as_of = min(period.end, datetime.now(UTC))
    court = _case_court()
    stmt = (
        select(court, literal(""), func.count(), literal(0))
        .where(
            Petition.state.in_(sorted(OPEN)),
            Petition.created_at < period.end,
            Petition.due_at < as_of,
            scope.where(court),
        )
        .group_by(court)
    )
    return _rows(await db.execute(stmt))


async def _repeat_rate(db: AsyncSession, scope: Scope, period: Period) -> list[Row]:
    stmt = (
        select(
            Petition.court_id,
            literal(""),
            func.count(distinct(case((Contact.repeat.is_(True), Contact.petition_id)))),
            func.count(distinct(Contact.petition_id)),
        )
        .join(Petition, Petition.id == Contact.petition_id)
        .where(_in(Contact.occurred_at, period), scope.where(Petition.court_id))
        .group_by(Petition.court_id)
    )
    return _rows(await db.execute(stmt))


async def _video_share(db: AsyncSession, scope: Scope, period: Period) -> list[Row]:
    stmt = (
        select(
            Contact.court_id,
            literal(""),
            func.sum(case((Contact.channel == Channel.video, 1), else_=0)),
            func.count(),
        )
        .where(_in(Contact.occurred_at, period), scope.where(Contact.court_id))
        .group_by(Contact.court_id)
    )
    return _rows(await db.execute(stmt))


# The visits 视频接访平均等待 is about: the kinds a court books for a petitioner (视频接访,
# 判后答疑, 领导接访; not meetings, nor on-site receptions, which start as they are made) that
# began (a visit cancelled or missed was never waited for to the end).
VIDEO_KINDS = tuple(sorted(BOOKABLE_KINDS))
STARTED = (VisitState.in_progress, VisitState.ended, VisitState.archived)


async def _video_wait(db: AsyncSession, scope: Scope, period: Period) -> list[Row]:
    stmt = (
        select(
            Visit.court_id,
            literal(""),
            func.sum(_seconds(db, Visit.starts_at, Visit.created_at)),
            func.count(),
        )
        .where(
            _in(Visit.created_at, period),
            Visit.starts_at.is_not(None),
            Visit.kind.in_(VIDEO_KINDS),
            Visit.state.in_(STARTED),
            scope.where(Visit.court_id),
        )
        .group_by(Visit.court_id)
    )
    return _rows(await db.execute(stmt))


RATINGS_TABLE = Rating.__tablename__


async def _satisfaction(db: AsyncSession, scope: Scope, period: Period) -> list[Row] | None:
    """Average score (1–5) of the petitioners' ratings given in the period (满意度评价)."""
    stmt = (
        select(Rating.court_id, literal(""), func.sum(Rating.score), func.count())
        .where(_in(Rating.created_at, period), scope.where(Rating.court_id))
        .group_by(Rating.court_id)
    )
    return _rows(await db.execute(stmt))


def _channel_label(key: str) -> str:
    return label(Channel(key))


def _category_label(key: str) -> str:
    try:
        return label(CaseCategory(key))
    except ValueError:
        return key


def _level_label(key: str) -> str:
    return label(CourtLevel(key))


_CONTACTS = "case_contacts"
_IN_CONTACT = "contacts whose occurred_at falls in the period"
_CONTACT_COURT = "the court that received the contact (case_contacts.court_id)"
_CASE_COURT = "the handling court (petitions.handler_court_id, else petitions.court_id)"
_CLOSED_IN = (
    "cases closed (state guided, resolved or terminated) whose closed_at falls in the period"
)

FIGURES: tuple[Figure, ...] = (
    Figure(
        "volume_channel",
        "信访量（按渠道）",
        "件次",
        "Number of contacts (every time a matter reached a court: visit, letter, call, "
        "video, online), by channel.",
        _CONTACTS,
        _IN_CONTACT,
        _volume_channel,
        breakdown="channel",
        court_rule=_CONTACT_COURT,
        key_label=_channel_label,
    ),
    Figure(
        "volume_category",
        "信访量（按类别）",
        "件次",
        "Number of contacts by the category of their case.",
        "case_contacts joined to petitions (category)",
        _IN_CONTACT,
        _volume_category,
        breakdown="category",
        court_rule=_CONTACT_COURT,
        key_label=_category_label,
    ),
    Figure(
        "volume_court",
        "信访量（按法院）",
        "件次",
        "Number of contacts per court; the breakdown by court is the child-court roll-up.",
        _CONTACTS,
        _IN_CONTACT,
        _volume_court,
        court_rule=_CONTACT_COURT,
    ),
    Figure(
        "volume_level",
        "信访量（按法院层级）",
        "件次",
        "Number of contacts by the level of the court that received them.",
        "case_contacts, courts (level)",
        _IN_CONTACT,
        _volume_level,
        breakdown="level",
        court_rule=_CONTACT_COURT,
        key_label=_level_label,
    ),
    Figure(
        "volume_month",
        "信访量（按月）",
        "件次",
        "Number of contacts by month (court local time).",
        _CONTACTS,
        _IN_CONTACT,
        _volume_month,
        breakdown="month",
        court_rule=_CONTACT_COURT,
    ),
    Figure(
        "case_visit_ratio",
        "案访比",
        "件/千件",
        "Petition cases registered per 1,000 cases decided: cases whose created_at falls in "
        "the period × 1000 ÷ the sum of decided_count of the period's months. No decided "
        "counts imported → no value.",
        "petitions (created_at, court_id); court_case_counts (imported)",
        "cases registered in the period; decided counts of the months month_from..month_to",
        _case_visit_ratio,
        kind="ratio",
        scale=1000.0,
        court_rule="the registering court (petitions.court_id, court_case_counts.court_id)",
    ),
    Figure(
        "resolution_rate",
        "化解率",
        "%",
        "Cases closed as resolved (state resolved, 已化解) ÷ all cases closed, × 100.",
        "petitions (state, closed_at)",
        _CLOSED_IN,
        _resolution_rate,
        kind="ratio",
        scale=100.0,
        court_rule=_CASE_COURT,
    ),
    Figure(
        "on_time_rate",
        "按期办结率",
        "%",
        "Cases closed on time ÷ all cases closed, × 100. On time: closed_at on or before "
        "closed_due_at, the deadline of the node the case was at when it closed (kept at "
        "closing, since closing replaces due_at: with the 回访 deadline after 化解, with "
        "none after 信访终结 or 导入诉讼程序); a case closed with no deadline running "
        "counts as on time.",
        "petitions (closed_at, closed_due_at, state)",
        _CLOSED_IN,
        _on_time_rate,
        kind="ratio",
        scale=100.0,
        court_rule=_CASE_COURT,
    ),
    Figure(
        "overdue",
        "超期未办结",
        "件",
        "Open cases (registered, handling, assigned, reported) registered before the end of "
        "the period whose due_at is before the end of the period, or before now when the "
        "period has not ended. Uses the current state: a case closed since is not counted.",
        "petitions (state, created_at, due_at)",
        "open at the end of the period (or now)",
        _overdue,
        court_rule=_CASE_COURT,
        span="last",
    ),
    Figure(
        "repeat_rate",
        "重复信访率",
        "%",
        "Cases with at least one repeat contact (case_contacts.repeat) in a month ÷ cases "
        "with any contact in that month, summed over the period's months (case-months), "
        "× 100.",
        "case_contacts joined to petitions",
        "contacts whose occurred_at falls in each month of the period",
        _repeat_rate,
        kind="ratio",
        scale=100.0,
        court_rule="the registering court of the case (petitions.court_id)",
    ),
    Figure(
        "satisfaction",
        "满意度",
        "分（1–5）",
        "Average score (1–5) of the petitioners' ratings of visits and cases given in the "
        "period (the portal's 满意度评价); 无数据 when nobody rated.",
        RATINGS_TABLE,
        f"{RATINGS_TABLE} rows whose created_at falls in the period",
        _satisfaction,
        kind="ratio",
        court_rule=f"{RATINGS_TABLE}.court_id (the court rated)",
    ),
    Figure(
        "video_share",
        "视频信访占比",
        "%",
        "Contacts of channel video (远程视频: the booked video visits that took place, see "
        "*Contacts* above) ÷ all contacts, × 100.",
        _CONTACTS,
        _IN_CONTACT,
        _video_share,
        kind="ratio",
        scale=100.0,
        court_rule=_CONTACT_COURT,
    ),
    Figure(
        "video_wait",
        "视频接访平均等待",
        "小时",
        "Average hours from booking a video visit (visits.created_at) to its start "
        "(starts_at), over the visits booked in the period that have a start time, are of a "
        "kind a court books for a petitioner (reception 视频接访, post_judgment 判后答疑, "
        "leader 领导接访) and began (state in_progress, ended or archived). Left out: video "
        "supervision meetings, on-site receptions (they start as they are made), visits "
        "cancelled, missed (no_show) or still to come.",
        "visits (created_at, starts_at, kind, state)",
        "visits whose created_at falls in the period",
        _video_wait,
        kind="ratio",
        scale=1 / 3600,
        court_rule="the court holding the visit (visits.court_id)",
    ),
)
BY_KEY = {f.key: f for f in FIGURES}
# Columns of the ranking table (通报), ranked by 化解率 then 按期办结率.
RANKING = (
    "volume_court",
    "case_visit_ratio",
    "resolution_rate",
    "on_time_rate",
    "overdue",
    "repeat_rate",
    "video_share",
)

# The key figures of the monthly report (月度通报, scheduler/stats/report.py), each shown
# beside the month before.
REPORT = (
    "volume_court",
    "case_visit_ratio",
    "resolution_rate",
    "on_time_rate",
    "overdue",
    "repeat_rate",
    "satisfaction",
    "video_share",
    "video_wait",
)


# ------------------------------------------------------------------ results


def number_text(value: float) -> str:
    """A figure's value as people read it: a count with thousands separators
    (``3,000,000``, never ``3e+06``), a ratio with its decimals (at most two, as it is
    rounded; ``12.5``, ``1,234.56``)."""
    value = float(value) + 0.0  # no "-0"
    if value.is_integer():
        return f"{value:,.0f}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class Cell:
    num: float
    den: float
    value: float | None


@dataclass(frozen=True)
class FigureResult:
    figure: Figure
    total: Cell | None  # None: 无数据
    by_key: tuple[tuple[str, Cell], ...]
    by_child: tuple[tuple[CourtNode, Cell], ...]  # the root's own records first

    def as_dict(self) -> dict[str, Any]:
        f = self.figure

        def cell(c: Cell | None) -> dict[str, Any]:
            if c is None:
                return {"value": None, "num": None, "den": None, "text": NO_DATA}
            text = NO_DATA if c.value is None else number_text(c.value)
            return {"value": c.value, "num": c.num, "den": c.den, "text": text}

        return {
            "key": f.key,
            "label": f.label,
            "unit": f.unit,
            "kind": f.kind,
            "breakdown": f.breakdown,
            "total": cell(self.total),
            "by_key": [{"key": k, "label": f.key_label(k), **cell(c)} for k, c in self.by_key],
            "by_court": [{"court_id": n.id, "name": n.name, **cell(c)} for n, c in self.by_child],
        }


def _result(
    figure: Figure, scope: Scope, stored: dict[int, dict[str, list[float]]]
) -> FigureResult:
    """A figure's cells from the stored subtree sums of the scope's root and its children:
    the root's own records are its subtree less its children's subtrees."""
    root = stored.get(scope.root.id, {})

    def cell(acc: Sequence[float]) -> Cell:
        return Cell(acc[0], acc[1], figure.value(acc[0], acc[1]))

    def summed(rows: dict[str, list[float]]) -> list[float]:
        return [sum(v[0] for v in rows.values()), sum(v[1] for v in rows.values())]

    total = summed(root)
    kids = [summed(stored.get(c.id, {})) for c in scope.children]
    own = [total[i] - sum(k[i] for k in kids) for i in (0, 1)]
    own = [0.0 if abs(v) < 1e-6 else v for v in own]
    by_key: tuple[tuple[str, Cell], ...] = ()
    if figure.breakdown:
        by_key = tuple((k, cell(root[k])) for k in sorted(root))
    return FigureResult(
        figure,
        cell(total),
        by_key,
        (
            (scope.root, cell(own)),
            *((c, cell(k)) for c, k in zip(scope.children, kids, strict=True)),
        ),
    )


@dataclass(frozen=True)
class Dashboard:
    scope: Scope
    period: Period
    results: tuple[FigureResult, ...]

    def result(self, key: str) -> FigureResult:
        return next(r for r in self.results if r.figure.key == key)

    def ranking(self) -> list[dict[str, Any]]:
        """The child courts of the scope ranked for the period (通报)."""
        rows = []
        for i, child in enumerate(self.scope.children):
            row: dict[str, Any] = {"court_id": child.id, "name": child.name}
            for key in RANKING:
                cell = self.result(key).by_child[i + 1][1]
                row[key] = cell.value
            rows.append(row)

        def order(r: dict[str, Any]) -> tuple[float, float, str]:
            res, on_time = r["resolution_rate"], r["on_time_rate"]
            return (
                -(res if res is not None else -1),
                -(on_time if on_time is not None else -1),
                r["name"],
            )

        rows.sort(key=order)
        for rank, row in enumerate(rows, 1):
            row["rank"] = rank
        return rows

    def as_dict(self) -> dict[str, Any]:
        root = self.scope.root
        return {
            "court": {"id": root.id, "name": root.name, "level": root.level.value},
            "children": [{"id": c.id, "name": c.name} for c in self.scope.children],
            "period": {"from": self.period.first, "to": self.period.last},
            "figures": [r.as_dict() for r in self.results],
            "ranking": self.ranking(),
            "ranking_columns": [
                {"key": k, "label": BY_KEY[k].label, "unit": BY_KEY[k].unit} for k in RANKING
            ],
        }


async def dashboard(
    db: AsyncSession, scope: Scope, period: Period, keys: Iterable[str] | None = None
) -> Dashboard:
    """Every figure (or those in ``keys``) for ``scope`` over ``period``, summed from the
    monthly store (bring it up to date first: :func:`fresh_dashboard`)."""
    wanted = FIGURES if keys is None else tuple(BY_KEY[k] for k in keys)
    summed = [f.key for f in wanted if f.span == "sum"]
    last = [f.key for f in wanted if f.span == "last"]
    ids = [scope.root.id, *(c.id for c in scope.children)]
    stmt = (
        select(
            MonthlyFigure.figure,
            MonthlyFigure.court_id,
            MonthlyFigure.key,
            func.sum(MonthlyFigure.num),
            func.sum(MonthlyFigure.den),
        )
        .where(
            MonthlyFigure.court_id.in_(ids),
            or_(
                and_(
                    MonthlyFigure.figure.in_(summed),
                    MonthlyFigure.month >= period.first,
                    MonthlyFigure.month <= period.last,
                ),
                and_(MonthlyFigure.figure.in_(last), MonthlyFigure.month == period.last),
            ),
        )
        .group_by(MonthlyFigure.figure, MonthlyFigure.court_id, MonthlyFigure.key)
    )
    stored: dict[str, dict[int, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(dict))
    for figure, court_id, key, num, den in (await db.execute(stmt)).all():
        stored[figure][court_id][key] = [float(num or 0), float(den or 0)]
    results = [_result(f, scope, stored.get(f.key, {})) for f in wanted]
    return Dashboard(scope, period, tuple(results))


# ------------------------------------------------------------------ the monthly store
#
# Each figure is computed by its own query for one month at a time over the whole court
# tree, and the per-court rows are added into every court above (a court's row holds its
# whole subtree). A dashboard then reads the rows of its root and the root's children only.
# The current and the previous month change as work goes on: they are recomputed when older
# than ``stats_refresh_seconds`` (housekeeping does it in the background, the dashboard
# before reading); earlier months once a day (backdated contacts, corrections).

DAILY = timedelta(days=1)


async def _whole_tree(db: AsyncSession) -> tuple[Scope, dict[int, tuple[int, ...]]]:
    """A scope over every court (no court filter) and each court's chain up to its root."""
    rows = (await db.execute(select(Court.id, Court.name, Court.level, Court.parent_id))).all()
    courts = {r.id: CourtNode(r.id, r.name, r.level, r.parent_id) for r in rows}
    chains: dict[int, tuple[int, ...]] = {}
    for court_id in courts:
        chain, current, seen = [], courts.get(court_id), set()
        while current is not None and current.id not in seen:
            seen.add(current.id)
            chain.append(current.id)
            current = courts.get(current.parent_id) if current.parent_id is not None else None
        chains[court_id] = tuple(chain)
    root = next((c for c in courts.values() if c.parent_id is None), None)
    if root is None:
        raise NotFoundError("尚未设置法院")
    tree = Scope(root, (), {c: c for c in courts}, courts, whole_tree=True)
    return tree, chains


async def compute_month(db: AsyncSession, month: str, tz: ZoneInfo) -> list[dict[str, Any]]:
    """Every figure of ``month`` per court subtree: the rows :func:`store_month` writes."""
    period = parse_period(month, month, tz)
    tree, chains = await _whole_tree(db)
    sums: dict[tuple[str, int, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for figure in FIGURES:
        for court_id, key, num, den in await figure.compute(db, tree, period) or []:
            for above in chains.get(court_id, ()):
                acc = sums[(figure.key, above, key)]
                acc[0] += num
                acc[1] += den
    return [
        {"figure": f, "court_id": c, "month": month, "key": k, "num": v[0], "den": v[1]}
        for (f, c, k), v in sums.items()
    ]


async def store_month(
    db: AsyncSession, month: str, rows: Sequence[dict[str, Any]], now: datetime
) -> None:
    """Replace the stored rows of ``month`` (in the caller's write transaction)."""
    await db.execute(delete(MonthlyFigure).where(MonthlyFigure.month == month))
    if rows:
        await db.execute(insert(MonthlyFigure), list(rows))
    done = await db.execute(
        update(MonthlyRefresh).where(MonthlyRefresh.month == month).values(refreshed_at=now)
    )
    if getattr(done, "rowcount", 0) == 0:
        db.add(MonthlyRefresh(month=month, refreshed_at=now))
        await db.flush()


def _recent(now: datetime, tz: ZoneInfo) -> tuple[str, str]:
    """The current and the previous month in court local time."""
    local = now.astimezone(tz)
    y, m = divmod(local.year * 12 + local.month - 2, 12)
    return f"{local.year:04d}-{local.month:02d}", f"{y:04d}-{m + 1:02d}"


async def stale_months(
    db: AsyncSession, months: Iterable[str], now: datetime, max_age: timedelta, tz: ZoneInfo
) -> list[str]:
    """Which of ``months`` the store lacks, or holds older than allowed: ``max_age`` for the
    current and the previous month, a day for earlier ones."""
    wanted = sorted(set(months))
    stored = dict(
        (
            await db.execute(
                select(MonthlyRefresh.month, MonthlyRefresh.refreshed_at).where(
                    MonthlyRefresh.month.in_(wanted)
                )
            )
        ).all()
    )
    recent = _recent(now, tz)
    stale = []
    for month in wanted:
        at = stored.get(month)
        limit = max_age if month in recent else DAILY
        if at is None or now - at > limit:
            stale.append(month)
    return stale


async def refresh_months(database: Database, months: Iterable[str], tz: ZoneInfo) -> int:
    """Recompute ``months`` into the store: each computed with a reader (no write lock held
    while the figures' queries run), then written in one short write transaction."""
    count = 0
    for month in months:
        async with database.reader() as db:
            rows = await compute_month(db, month, tz)
        try:
            async with database.writer() as db:
                await store_month(db, month, rows, utcnow())
        except IntegrityError:  # another node stored the same month at the same time
            continue
        count += 1
    return count


async def fresh_dashboard(
    database: Database,
    db: AsyncSession,
    scope: Scope,
    period: Period,
    max_age: timedelta,
    keys: Iterable[str] | None = None,
) -> Dashboard:
    """:func:`dashboard` after recomputing the period's months the store lacks or holds too
    old (``db`` is a reader; it is ended to see the new rows)."""
    stale = await stale_months(db, period.months, utcnow(), max_age, period.tz)
    if stale:
        await refresh_months(database, stale, period.tz)
        await db.rollback()
    return await dashboard(db, scope, period, keys)


async def refresh_due(database: Database, tz: ZoneInfo, max_age: timedelta) -> int:
    """Background upkeep (housekeeping): the current and the previous month when older than
    ``max_age``, and the earlier stored month computed longest ago when over a day old."""
    now = utcnow()
    async with database.reader() as db:
        due = await stale_months(db, _recent(now, tz), now, max_age, tz)
        oldest = (
            await db.execute(
                select(MonthlyRefresh.month)
                .where(
                    MonthlyRefresh.refreshed_at < now - DAILY,
                    MonthlyRefresh.month.not_in(_recent(now, tz)),
                )
                .order_by(MonthlyRefresh.refreshed_at)
                .limit(1)
            )
        ).scalar_one_or_none()
    if oldest is not None:
        due.append(oldest)
    return await refresh_months(database, due, tz)


# ------------------------------------------------------------------ docs


def render_docs() -> str:
    """``docs/statistics.md``, from :data:`FIGURES`."""
    out = [
        "# Petition statistics (信访大数据)",
        "",
        "Generated from `scheduler/stats/figures.py` (`python -m scheduler.stats.figures "
        "> docs/statistics.md`); a test keeps the two equal. Every figure is defined once "
        "there and computed with one aggregate query grouped by court.",
        "",
        "- **Period**: whole months `from`..`to` (`YYYY-MM`) in court local time; the "
        "period starts at 00:00 of the first day of `from` and ends (exclusive) at the "
        "start of the month after `to`. Missing, malformed, outside the years "
        f"{FIRST_YEAR}–{LAST_YEAR}, reversed or longer than {MAX_MONTHS} months: refused "
        "(422).",
        "- **Scope**: a leader or petition officer sees their court and every court below "
        "it, an admin any court. Each record counts for one court (below); the dashboard "
        "rolls the per-court rows up into the scope total and into each child court of "
        "the scope (the child containing the court), over the court tree loaded once.",
        "- **Monthly store**: each figure is computed by its query one month at a time over "
        "the whole court tree and kept per court subtree (`stats_monthly`); a period sums "
        "its months (a figure marked *as of the last month* takes its last month only). "
        "The current and the previous month are recomputed when older than "
        "`stats_refresh_seconds` (default 300 s; housekeeping in the background, the "
        "dashboard before reading), earlier months once a day.",
        "- **Contacts** (`case_contacts`, the 信访量 figures): every time a matter reached a "
        "court. A booked video visit (视频接访, 判后答疑, 领导接访) is a contact once it takes "
        "place — when it reaches `in_progress` (the judge admitted the petitioner) — at its "
        "receiving court, dated when it began (`scheduler/cases/visits.py`, `visit_held`); an "
        "on-site reception when it begins. A visit cancelled, missed (no-show), ended before "
        "anyone was admitted or still to come is none; a visit moved to another day counts "
        "on the day it takes place.",
        "- **Ratios** are Σ numerator ÷ Σ denominator over the courts rolled up, never an "
        "average of ratios. A ratio with no denominator reads 无数据.",
        "- **Text** (`text` of the API, the page, the PDF report): counts with thousands "
        "separators (`3,000,000`), ratios with their decimals (at most two, `12.5`); the "
        "CSV/XLSX export gives the numbers themselves. Text cells of the export that a "
        "spreadsheet would read as a formula (starting with `=`, `+`, `-`, `@`, a tab or a "
        "carriage return) are prefixed with `'`.",
        "- **Own records**: the figures by court list the scope's court itself first (本院: "
        "what it received or handles itself, not what its courts below did), then each "
        "child court, so that the rows add up to 合计.",
        "- **Ranking (通报)**: the child courts with "
        + ", ".join(BY_KEY[k].label for k in RANKING)
        + "; ranked by 化解率, then 按期办结率 (no value ranks last).",
        "- **案访比 input**: `court_case_counts(court_id, month, decided_count)`, imported "
        "as CSV (`court_code,month,decided_count`) or through "
        "`POST /api/v1/stats/case-counts`; an import replaces the rows it names.",
        "- **Monthly report (月度信访工作通报)**: `GET /api/v1/stats/report?month=YYYY-MM"
        "[&court_id=]` (the 月度通报 PDF button of `/stats`), an A4 PDF: a title page (court, "
        "month, time generated in court local time); "
        + ", ".join(BY_KEY[k].label for k in REPORT)
        + " of the month beside the month before; charts of the month's volume by channel, "
        "of the volume of the twelve months up to it and of the child courts' 化解率; the "
        "ranking table (as in the export). Every number is one of the figures above, "
        "computed the same way. Refused: a month malformed, after the current month or "
        "before the scope's first contact; a court outside the caller's scope. Each report "
        "and each CSV/XLSX export is audited (`stats.report`, `stats.exported`).",
        "",
    ]
    for f in FIGURES:
        out += [
            f"## {f.label} (`{f.key}`)",
            "",
            f.definition,
            "",
            f"- Unit: {f.unit}",
            f"- From: {f.source}",
            f"- Period: {f.period_rule}",
            f"- Court: {f.court_rule}",
        ]
        if f.breakdown:
            out.append(f"- Broken down by: {f.breakdown}")
        if f.span == "last":
            out.append("- Over a period: as of the last month (not summed)")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(render_docs(), end="")

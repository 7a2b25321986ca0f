"""Video supervision meetings (视频约谈/督办会): a supervising court's staff meet named staff
of lower courts about one or more cases, with no petitioner.

A meeting is a :class:`Visit` of kind ``meeting``: its host is kept as ``judge_id``, its
court as both ``court_id`` and ``receiving_court_id``, its first case as ``petition_id``; its
cases and invitees are rows of ``meeting_cases`` and ``meeting_invitees``. It is booked like a
visit: the host's, every invitee's and the room's time are booking locks, so nobody and no
room is booked twice. Who may enter, open and end it is decided in ``scheduler/lifecycle.py``;
its minutes reach the cases' timelines when it ends (``scheduler/cases/minutes.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from config.audit import audit_time
from config.db import utcnow
from config.errors import ConflictError, InvalidError, NotFoundError, PermissionDeniedError
from config.settings import Settings
from scheduler.booking import hold, person_resource
from scheduler.cases.minutes import recording_link
from scheduler.cases.models import MeetingCase, MeetingInvitee
from scheduler.cases.rules import CaseAction, next_state
from scheduler.cases.service import get_case
from scheduler.cases.timeline import add_event
from scheduler.cases.words import CaseState, EventKind, VisitKind
from scheduler.lifecycle import OPEN, Action, may
from scheduler.models import (
    Court,
    Petition,
    ReceptionRoom,
    Role,
    User,
    Visit,
    VisitEventKind,
    VisitState,
    new_visit_id,
)
from scheduler.notify import notify
from scheduler.scope import Actor, descendant_court_ids
from scheduler.slots import aligned
from scheduler.visits import audit_visit, local_text, visit_event

# Who may hold a meeting: staff of the supervising court.
HOST_ROLES = frozenset({Role.judge, Role.petition_officer, Role.leader, Role.admin})
# A gallery of up to 9: the host and at most 8 invitees.
MAX_INVITEES = 8
MAX_CASES = 20
MIN_MINUTES, MAX_MINUTES = 15, 240


async def courts_below(db: AsyncSession, court_id: int) -> set[int]:
    """The courts strictly below ``court_id``."""
    return await descendant_court_ids(db, court_id) - {court_id}


def _host_court(actor: Actor) -> int:
    if actor.role not in HOST_ROLES or actor.user_id is None:
        raise PermissionDeniedError("只有法官、信访工作人员、院领导或管理员可以安排视频约谈")
    if actor.court_id is None:
        raise PermissionDeniedError("请以所属法院工作人员的账号安排视频约谈")
    return actor.court_id


# The case states a meeting may be about (the case rule, scheduler/cases/rules.py).
MEETABLE = frozenset(s for s in CaseState if next_state(s, CaseAction.meet) is not None)


@dataclass
class MeetingView:
    """A meeting as its pages show it."""

    visit: Visit
    host_name: str
    host_court_name: str
    cases: list[tuple[int, str]] = field(default_factory=list)  # (id, number)
    invitees: list[tuple[int, str, str]] = field(default_factory=list)  # (id, name, court)
    role: str = ""  # "host" or "attendee": the caller's part

    @property
    def recording(self) -> str:
        return recording_link(self.visit.id)


async def schedule_meeting(
    db: AsyncSession,
    actor: Actor,
    settings: Settings,
    *,
    case_ids: list[int],
    invitee_ids: list[int],
    starts_at: datetime,
    minutes: int,
    room_id: int | None = None,
    now: datetime | None = None,
) -> Visit:
    """Book a meeting of ``actor`` (the host) with ``invitee_ids`` about ``case_ids``.

    Refuses (4xx, zh-CN): a caller who may not host, a case the case rule keeps from a
    meeting (not handled below the host court, or closed),
    an invitee who is not active staff of a court below it, a time in the past or not on
    the 5-minute grid, and (409) anyone or the room already booked then."""
    now = now or utcnow()
    host_court = _host_court(actor)
    if not case_ids:
        raise InvalidError("请至少选择一件信访件", code="no_cases")
    if not invitee_ids:
        raise InvalidError("请至少邀请一名下级法院工作人员", code="no_invitees")
    if len(set(invitee_ids)) > MAX_INVITEES:
        raise InvalidError(f"每次约谈最多邀请 {MAX_INVITEES} 人", code="too_many_invitees")
    if not MIN_MINUTES <= minutes <= MAX_MINUTES:
        raise InvalidError(
            f"约谈时长须在 {MIN_MINUTES} 至 {MAX_MINUTES} 分钟之间", code="invalid_period"
        )
    # the horizon before the end is computed: a start near the calendar's end overflowed
    if starts_at < now - timedelta(minutes=5):
        raise InvalidError("不能安排已经过去的时间", code="in_the_past")
    if starts_at > now + timedelta(days=settings.booking_horizon_days):
        raise InvalidError(
            f"只能安排 {settings.booking_horizon_days} 天以内的约谈", code="too_far_ahead"
        )
    ends_at = starts_at + timedelta(minutes=minutes)
    if not (aligned(starts_at) and aligned(ends_at)):
        raise InvalidError("时间须为 5 分钟的整数倍", code="invalid_period")
    below = await courts_below(db, host_court)
    # each case by the case rule (CaseAction.meet: a court above its handling court, the
    # case open): 404 for a case the host may not see, 403 or 409 naming why otherwise
    cases = [
        (await get_case(db, actor, case_id, CaseAction.meet))[0]
        for case_id in dict.fromkeys(case_ids)
    ]
    host = await db.get(User, actor.user_id)
    assert host is not None
    invitees: list[User] = []
    for user_id in dict.fromkeys(invitee_ids):
        user = await db.get(User, user_id)
        if user is None or not user.active or user.court_id not in below:
            name = user.display_name if user is not None else str(user_id)
            raise InvalidError(
                f"{name} 不是本院下级法院的在职工作人员，不能邀请",
                code="invitee_not_below",
                details={"user_id": user_id},
            )
        invitees.append(user)
    resources = [person_resource(host), *(person_resource(u) for u in invitees)]
    room: ReceptionRoom | None = None
    if room_id is not None:
        room = await db.get(ReceptionRoom, room_id)
        if room is None or room.court_id != host_court:
            raise InvalidError("只能使用本院的接访室", code="room_of_other_court")
        if not room.active:
            raise InvalidError("该接访室已停用", code="room_inactive")
        resources.append(f"room:{room.id}")
    visit = Visit(
        id=new_visit_id(),
        kind=VisitKind.meeting,
        petition_id=cases[0].id,
        court_id=host_court,
        receiving_court_id=host_court,
        judge_id=host.id,
        room_id=room.id if room else None,
        state=VisitState.scheduled,
        starts_at=starts_at,
        ends_at=ends_at,
        booked_by=actor.user_id,
    )
    conflicts = await hold(db, visit, resources)
    if conflicts:
        raise await conflict_error(db, conflicts)
    db.add_all(MeetingCase(visit_id=visit.id, petition_id=p.id) for p in cases)
    db.add_all(MeetingInvitee(visit_id=visit.id, user_id=u.id) for u in invitees)
    numbers = [p.number for p in cases]
    visit_event(
        db,
        actor,
        visit,
        VisitEventKind.booked,
        None,
        VisitState.scheduled,
        starts_at=starts_at.isoformat(),
        ends_at=ends_at.isoformat(),
        cases=[p.id for p in cases],
        invitees=[u.id for u in invitees],
    )
    audit_visit(
        db,
        actor,
        "meeting.schedule",
        visit,
        cases=numbers,
        invitees=[u.display_name for u in invitees],
        starts_at=audit_time(starts_at, settings.tz),
        minutes=minutes,
    )
    names = {cid: (await db.get(Court, cid)) for cid in {u.court_id for u in invitees}}
    who = "、".join(
        f"{u.display_name}（{court.name}）" if (court := names.get(u.court_id)) else u.display_name
        for u in invitees
    )
    for p in cases:  # each case it concerns shows it from now on, not only once held
        add_event(
            db,
            p.id,
            EventKind.meeting_scheduled,
            actor,
            f"安排视频约谈：{local_text(starts_at, settings)}，{minutes} 分钟；"
            f"主持人：{host.display_name}；参会：{who}",
            court_id=host_court,
            # not ``visit_id``: the page links that to a recording, and none exists yet
            detail={"meeting_id": visit.id, "starts_at": starts_at.isoformat()},
        )
    await notify(
        db,
        [u.id for u in invitees],
        kind="meeting_scheduled",
        title=f"视频约谈通知：{'、'.join(numbers)}",
        body=f"{local_text(starts_at, settings)} · 主持人 {host.display_name}",
        visit_id=visit.id,
    )
    return visit


async def conflict_error(db: AsyncSession, conflicts: list[dict[str, object]]) -> ConflictError:
    """409 naming who (or which room) is already booked then (a meeting, an on-site
    reception)."""
    names: list[str] = []
    for c in conflicts:
        kind, _, raw = str(c.get("key", "")).partition(":")
        if kind in ("judge", "user") and raw.isdigit():
            user = await db.get(User, int(raw))
            names.append(user.display_name if user else raw)
        elif kind == "room":
            room = await db.get(ReceptionRoom, int(raw)) if raw.isdigit() else None
            names.append(room.name if room is not None else "接访室")
    who = "、".join(dict.fromkeys(names)) or "参会人员或接访室"
    return ConflictError(
        f"时间冲突：{who}在该时段已有安排", code="double_booking", details={"conflicts": conflicts}
    )


async def my_meetings(
    db: AsyncSession, actor: Actor, *, since: datetime | None = None, limit: int = 200
) -> list[MeetingView]:
    """The meetings ``actor`` hosts or is invited to, from ``since`` (default: a week ago),
    earliest first."""
    if actor.user_id is None:
        return []
    since = since or utcnow() - timedelta(days=7)
    invited = select(MeetingInvitee.visit_id).where(MeetingInvitee.user_id == actor.user_id)
    visits = (
        await db.scalars(
            select(Visit)
            .where(
                Visit.kind == VisitKind.meeting,
                or_(Visit.judge_id == actor.user_id, Visit.id.in_(invited)),
                Visit.starts_at >= since,
            )
            .order_by(Visit.starts_at, Visit.id)
            .limit(limit)
        )
    ).all()
    return await _views(db, actor, list(visits))


async def meeting_view(db: AsyncSession, actor: Actor, visit_id: str) -> MeetingView:
    """One meeting, for its host and invitees (and admins); 404 for anyone else."""
    visit = await db.get(Visit, visit_id)
    if visit is None or visit.kind is not VisitKind.meeting:
        raise NotFoundError("约谈不存在")
    views = await _views(db, actor, [visit])
    if not views[0].role and not actor.is_admin:
        raise NotFoundError("约谈不存在")
    return views[0]


async def _views(db: AsyncSession, actor: Actor, visits: list[Visit]) -> list[MeetingView]:
    if not visits:
        return []
    ids = [v.id for v in visits]
    host_rows = await db.execute(
        select(Visit.id, User.display_name, Court.name)
        .join(User, User.id == Visit.judge_id)
        .join(Court, Court.id == Visit.court_id)
        .where(Visit.id.in_(ids))
    )
    hosts = {vid: (name, court) for vid, name, court in host_rows}
    case_rows = await db.execute(
        select(MeetingCase.visit_id, Petition.id, Petition.number)
        .join(Petition, Petition.id == MeetingCase.petition_id)
        .where(MeetingCase.visit_id.in_(ids))
        .order_by(Petition.number)
    )
    invitee_rows = await db.execute(
        select(MeetingInvitee.visit_id, User.id, User.display_name, Court.name)
        .join(User, User.id == MeetingInvitee.user_id)
        .join(Court, Court.id == User.court_id)
        .where(MeetingInvitee.visit_id.in_(ids))
        .order_by(Court.name, User.display_name)
    )
    views = {
        v.id: MeetingView(v, *hosts.get(v.id, ("", ""))) for v in visits
    }  # a host's account is never deleted (RESTRICT), so each has one
    for vid, pid, number in case_rows:
        views[vid].cases.append((pid, number))
    for vid, uid, name, court in invitee_rows:
        views[vid].invitees.append((uid, name, court))
    for view in views.values():
        if view.visit.judge_id == actor.user_id:
            view.role = "host"
        elif any(uid == actor.user_id for uid, _, _ in view.invitees):
            view.role = "attendee"
    return [views[v.id] for v in visits]


def can_enter(actor: Actor, view: MeetingView) -> bool:
    """Whether the lists should offer ``actor`` to enter the meeting's room now."""
    invitees = [uid for uid, _, _ in view.invitees]
    return view.visit.state in OPEN and may(actor, Action.enter, view.visit, invitees)


async def reachable_cases(
    db: AsyncSession, actor: Actor, number: str, limit: int = 20
) -> list[tuple[int, str, str]]:
    """Cases the caller's court may hold a meeting about whose number contains ``number``:
    handled by a court below it and open (as ``CaseAction.meet`` allows); (id, number,
    handling court's name)."""
    host_court = _host_court(actor)
    below = await courts_below(db, host_court)
    handler = func.coalesce(Petition.handler_court_id, Petition.court_id)
    rows = await db.execute(
        select(Petition.id, Petition.number, Court.name)
        .join(Court, Court.id == handler)
        .where(
            handler.in_(below),
            Petition.state.in_(MEETABLE),
            Petition.number.contains(number, autoescape=True),
        )
        .order_by(Petition.number, Petition.id)
        .limit(limit)
    )
    return [(pid, num, court) for pid, num, court in rows]


async def invitable_courts(db: AsyncSession, actor: Actor) -> list[tuple[int, str]]:
    """The courts below the caller's court, by name."""
    below = await courts_below(db, _host_court(actor))
    rows = await db.execute(
        select(Court.id, Court.name).where(Court.id.in_(below)).order_by(Court.name)
    )
    return [(cid, name) for cid, name in rows]


async def invitable_people(
    db: AsyncSession, actor: Actor, court_id: int
) -> list[tuple[int, str, Role]]:
    """The active staff of ``court_id`` (a court below the caller's): (id, name, role)."""
    if court_id not in await courts_below(db, _host_court(actor)):
        raise InvalidError("只能邀请本院下级法院的工作人员", code="court_not_below")
    rows = await db.execute(
        select(User.id, User.display_name, User.role)
        .where(User.court_id == court_id, User.active)
        .order_by(User.display_name, User.id)
    )
    return [(uid, name, role) for uid, name, role in rows]

"""Video supervision meetings (视频约谈): schedule, list mine, look up cases and invitees,
cancel. The rules are in ``scheduler/cases/meetings.py`` and ``scheduler/lifecycle.py``."""

from __future__ import annotations

from config.vocabulary import label
from scheduler import lifecycle
from scheduler.cases import meetings
from scheduler.lifecycle import Action
from scheduler.models import Role, VisitState
from scheduler.scope import Actor
from web.meeting_schemas import (
    CaseLookupQuery,
    CourtChoiceOut,
    MeetingCancelIn,
    MeetingCaseOut,
    MeetingIn,
    MeetingOut,
    MeetingPersonOut,
    PeopleQuery,
    PersonChoiceOut,
    ReachableCaseOut,
)
from web.routes import Context, api

# who uses the meetings page: hosts, and the lower courts' staff they invite
MEETING_ROLES = frozenset(
    {Role.judge, Role.petition_officer, Role.leader, Role.admin, Role.operator}
)


def _out(actor: Actor, view: meetings.MeetingView) -> MeetingOut:
    v = view.visit
    return MeetingOut(
        id=v.id,
        state=v.state,
        state_name=label(v.state),
        starts_at=v.starts_at,
        ends_at=v.ends_at,
        host_id=v.judge_id,
        host_name=view.host_name,
        host_court_name=view.host_court_name,
        cases=[MeetingCaseOut(id=i, number=n) for i, n in view.cases],
        invitees=[MeetingPersonOut(id=i, name=n, court_name=c) for i, n, c in view.invitees],
        my_role=view.role,
        can_enter=meetings.can_enter(actor, view),
        can_cancel=VisitState.cancelled in lifecycle.allowed(v)[v.state]
        and lifecycle.may(actor, Action.cancel, v),
        call_url=f"/call/{v.id}",
        recording_url=view.recording,
    )


@api.route(
    "POST",
    "/meetings",
    summary="Schedule a video supervision meeting",
    tag="meetings",
    roles=meetings.HOST_ROLES,
    body=MeetingIn,
    answer=MeetingOut,
    status=201,
    errors=(403, 404, 409),
)
async def schedule_meeting(ctx: Context) -> MeetingOut:
    """The host's court must be above each case's handling court (or supervise it); each
    invitee must be active staff of a court below it. 409 ``double_booking`` names whoever
    (or the room) is already booked then."""
    b: MeetingIn = ctx.body
    actor = ctx.me.actor()
    visit = await meetings.schedule_meeting(
        ctx.db,
        actor,
        ctx.settings,
        case_ids=b.case_ids,
        invitee_ids=b.invitee_ids,
        starts_at=b.starts_at,
        minutes=b.minutes,
        room_id=b.room_id,
    )
    return _out(actor, await meetings.meeting_view(ctx.db, actor, visit.id))


@api.route(
    "GET",
    "/meetings",
    summary="My meetings (hosted or invited to)",
    tag="meetings",
    roles=MEETING_ROLES,
    answer=list[MeetingOut],
)
async def my_meetings(ctx: Context) -> list[MeetingOut]:
    """From a week ago on, earliest first."""
    actor = ctx.me.actor()
    return [_out(actor, v) for v in await meetings.my_meetings(ctx.db, actor)]


@api.route(
    "GET",
    "/meetings/{visit_id:[0-9a-f]{32}}",
    summary="One meeting",
    tag="meetings",
    roles=MEETING_ROLES,
    answer=MeetingOut,
    errors=(404,),
)
async def get_meeting(ctx: Context) -> MeetingOut:
    actor = ctx.me.actor()
    view = await meetings.meeting_view(ctx.db, actor, ctx.request.match_info["visit_id"])
    return _out(actor, view)


@api.route(
    "POST",
    "/meetings/{visit_id:[0-9a-f]{32}}/cancel",
    summary="Cancel a meeting",
    tag="meetings",
    roles=MEETING_ROLES,
    body=MeetingCancelIn,
    answer=MeetingOut,
    errors=(403, 404, 409),
)
async def cancel_meeting(ctx: Context) -> MeetingOut:
    """Only its host (or an admin) cancels a meeting that has not started; everyone's time
    is free again."""
    b: MeetingCancelIn = ctx.body
    actor = ctx.me.actor()
    view = await meetings.meeting_view(ctx.db, actor, ctx.request.match_info["visit_id"])
    await lifecycle.cancel_visit(ctx.db, actor, ctx.settings, view.visit.id, reason=b.reason)
    return _out(actor, await meetings.meeting_view(ctx.db, actor, view.visit.id))


@api.route(
    "GET",
    "/meetings/cases",
    summary="Cases a meeting of my court may be about, by number",
    tag="meetings",
    roles=meetings.HOST_ROLES,
    query=CaseLookupQuery,
    answer=list[ReachableCaseOut],
    errors=(403,),
)
async def meeting_cases(ctx: Context) -> list[ReachableCaseOut]:
    q: CaseLookupQuery = ctx.query
    rows = await meetings.reachable_cases(ctx.db, ctx.me.actor(), q.number.strip())
    return [ReachableCaseOut(id=i, number=n, handler_court_name=c) for i, n, c in rows]


@api.route(
    "GET",
    "/meetings/courts",
    summary="Courts below mine, whose staff a meeting may invite",
    tag="meetings",
    roles=meetings.HOST_ROLES,
    answer=list[CourtChoiceOut],
    errors=(403,),
)
async def meeting_courts(ctx: Context) -> list[CourtChoiceOut]:
    rows = await meetings.invitable_courts(ctx.db, ctx.me.actor())
    return [CourtChoiceOut(id=i, name=n) for i, n in rows]


@api.route(
    "GET",
    "/meetings/people",
    summary="Active staff of a court below mine",
    tag="meetings",
    roles=meetings.HOST_ROLES,
    query=PeopleQuery,
    answer=list[PersonChoiceOut],
    errors=(403, 422),
)
async def meeting_people(ctx: Context) -> list[PersonChoiceOut]:
    q: PeopleQuery = ctx.query
    rows = await meetings.invitable_people(ctx.db, ctx.me.actor(), q.court_id)
    return [PersonChoiceOut(id=i, name=n, role=r.value, role_name=label(r)) for i, n, r in rows]

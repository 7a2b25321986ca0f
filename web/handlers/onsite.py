"""On-site receptions recorded at a window (现场接待录音录像) and live observation from a
supervising court (监看): start a reception, list what may be watched."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from scheduler import lifecycle, onsite
from scheduler.cases.visits import visit_link
from scheduler.models import Role
from web.handlers.visits import visit_answers
from web.routes import Context, api
from web.scheduling_schemas import VisitOut
from web.schemas import Answer, Body, Id, OptionalText128


class OnsiteIn(Body):
    """Start recording a walk-in at a window: a reception room of the court, or a window
    named in ``window`` (one of the two)."""

    petition_id: Id
    room_id: Id | None = None
    window: OptionalText128 = ""
    people_count: Annotated[int, Field(ge=1, le=1000)] = 1
    summary: Annotated[str, Field(max_length=2000)] = ""


class OnsiteOut(Answer):
    visit: VisitOut
    contact_id: int
    window: str
    call_url: str  # the window terminal's call page, in single-party mode
    recording_url: str  # the recording, once processed


class WatchableOut(Answer):
    """A visit or on-site reception in progress below the caller's court."""

    visit: VisitOut
    watch_url: str


@api.route(
    "POST",
    "/onsite-receptions",
    summary="Start recording an on-site reception at a window",
    tag="visits",
    roles={Role.operator},
    body=OnsiteIn,
    answer=OnsiteOut,
    status=201,
    errors=(404,),
)
async def start_onsite(ctx: Context) -> OnsiteOut:
    """An operator of the basic court records a walk-in conversation at a window (一案一
    录音视频): a visit of kind ``onsite``, in progress at once, recorded and signed like a
    visit once the operator's terminal enters it; a walk-in contact on the case bound to
    it, and a timeline entry linking to the recording. The operator ends it."""
    b: OnsiteIn = ctx.body
    started = await onsite.start_onsite(
        ctx.db,
        ctx.me.actor(),
        petition_id=b.petition_id,
        room_id=b.room_id,
        window=b.window,
        people_count=b.people_count,
        summary=b.summary,
    )
    await ctx.db.flush()
    (visit,) = await visit_answers(ctx.db, [started.visit], ctx.me.actor())
    return OnsiteOut(
        visit=visit,
        contact_id=started.contact.id,
        window=started.window,
        call_url=f"/call/{started.visit.id}",
        recording_url=visit_link(started.visit.id),
    )


@api.route(
    "GET",
    "/monitor/visits",
    summary="Visits and on-site receptions in progress below the caller's court (监看)",
    tag="visits",
    roles=lifecycle.WATCHERS,
    answer=list[WatchableOut],
)
async def watchable(ctx: Context) -> list[WatchableOut]:
    """What the caller may watch live, as an observer who sends nothing: every visit in
    progress whose court or receiving court is below the caller's (an admin: all)."""
    visits = await onsite.watchable_visits(ctx.db, ctx.me.actor())
    answers = await visit_answers(ctx.db, visits)
    return [WatchableOut(visit=a, watch_url=f"/call/{a.id}?watch=1") for a in answers]

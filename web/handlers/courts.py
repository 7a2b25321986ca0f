"""Courts: the four-level tree."""

from __future__ import annotations

from scheduler import service
from scheduler.models import Role
from web.routes import ALL_STAFF, Context, api
from web.schemas import CourtIn, CourtOut, CourtPatch


@api.route(
    "GET",
    "/courts",
    summary="List all courts",
    tag="courts",
    roles=ALL_STAFF,
    answer=list[CourtOut],
)
async def list_courts(ctx: Context) -> list[CourtOut]:
    """The court tree is not personal data: every staff member may read it."""
    return [CourtOut.of(c) for c in await service.list_courts(ctx.db)]


@api.route(
    "GET",
    r"/courts/{court_id:\d+}",
    summary="One court",
    tag="courts",
    roles=ALL_STAFF,
    answer=CourtOut,
)
async def get_court(ctx: Context) -> CourtOut:
    return CourtOut.of(await service.get_court(ctx.db, ctx.path_id("court_id")))


@api.route(
    "POST",
    "/courts",
    summary="Add a court",
    tag="courts",
    roles={Role.admin},
    body=CourtIn,
    answer=CourtOut,
    status=201,
    errors=(409,),
)
async def create_court(ctx: Context) -> CourtOut:
    """A court's parent must be one level above it; there is one supreme court."""
    body: CourtIn = ctx.body
    court = await service.create_court(
        ctx.db,
        ctx.me.actor(),
        code=body.code,
        name=body.name,
        level=body.level,
        parent_id=body.parent_id,
    )
    return CourtOut.of(court)


@api.route(
    "PATCH",
    r"/courts/{court_id:\d+}",
    summary="Rename a court",
    tag="courts",
    roles={Role.admin},
    body=CourtPatch,
    answer=CourtOut,
    errors=(409,),
)
async def update_court(ctx: Context) -> CourtOut:
    body: CourtPatch = ctx.body
    court = await service.update_court(
        ctx.db, ctx.me.actor(), ctx.path_id("court_id"), code=body.code, name=body.name
    )
    return CourtOut.of(court)

"""Reception rooms at basic courts."""

from __future__ import annotations

from scheduler import service
from scheduler.models import Role
from web.routes import ALL_STAFF, Context, api
from web.schemas import RoomIn, RoomOut, RoomPatch, RoomQuery


@api.route(
    "GET",
    "/rooms",
    summary="List reception rooms in scope",
    tag="rooms",
    roles=ALL_STAFF,
    query=RoomQuery,
    answer=list[RoomOut],
)
async def list_rooms(ctx: Context) -> list[RoomOut]:
    """Operators see their court's rooms, archivists their subtree, judges and admins all."""
    q: RoomQuery = ctx.query
    rooms = await service.list_rooms(ctx.db, ctx.me.actor(), court_id=q.court_id)
    return [RoomOut.of(r) for r in rooms]


@api.route(
    "POST",
    "/rooms",
    summary="Add a reception room",
    tag="rooms",
    roles={Role.admin},
    body=RoomIn,
    answer=RoomOut,
    status=201,
    errors=(409,),
)
async def create_room(ctx: Context) -> RoomOut:
    body: RoomIn = ctx.body
    room = await service.create_room(
        ctx.db, ctx.me.actor(), court_id=body.court_id, name=body.name, location=body.location
    )
    return RoomOut.of(room)


@api.route(
    "PATCH",
    r"/rooms/{room_id:\d+}",
    summary="Change a reception room",
    tag="rooms",
    roles={Role.admin},
    body=RoomPatch,
    answer=RoomOut,
    errors=(409,),
)
async def update_room(ctx: Context) -> RoomOut:
    body: RoomPatch = ctx.body
    room = await service.update_room(
        ctx.db,
        ctx.me.actor(),
        ctx.path_id("room_id"),
        name=body.name,
        location=body.location,
        active=body.active,
    )
    return RoomOut.of(room)

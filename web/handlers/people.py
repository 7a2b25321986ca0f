"""Petitioners and their petitions, always within the caller's court scope."""

from __future__ import annotations

from scheduler import service
from scheduler.models import Role
from web.routes import ALL_STAFF, Context, api
from web.schemas import (
    Page,
    PetitionerIn,
    PetitionerOut,
    PetitionerQuery,
    PetitionOut,
    PetitionQuery,
    page_of,
)

REGISTRARS = {Role.operator, Role.admin}


@api.route(
    "GET",
    "/petitioners",
    summary="List petitioners in scope (masked)",
    tag="petitioners",
    roles=ALL_STAFF,
    query=PetitionerQuery,
    answer=Page[PetitionerOut],
)
async def list_petitioners(ctx: Context) -> Page[PetitionerOut]:
    """``q`` matches the name, or the last four characters of the ID number."""
    q: PetitionerQuery = ctx.query
    page = await service.list_petitioners(
        ctx.db, ctx.me.actor(), query=q.q, limit=q.limit, offset=q.offset
    )
    return page_of(Page[PetitionerOut], page.items, page.total, q, PetitionerOut.of)


@api.route(
    "GET",
    r"/petitioners/{petitioner_id:\d+}",
    summary="One petitioner (masked)",
    tag="petitioners",
    roles=ALL_STAFF,
    answer=PetitionerOut,
)
async def get_petitioner(ctx: Context) -> PetitionerOut:
    """Out of scope answers 404, as if the record did not exist."""
    petitioner = await service.get_petitioner(ctx.db, ctx.me.actor(), ctx.path_id("petitioner_id"))
    return PetitionerOut.of(petitioner)


@api.route(
    "POST",
    "/petitioners",
    summary="Register a petitioner",
    tag="petitioners",
    roles=REGISTRARS,
    body=PetitionerIn,
    answer=PetitionerOut,
    status=201,
    errors=(409,),
)
async def create_petitioner(ctx: Context) -> PetitionerOut:
    """A resident ID number is checked (18 characters, GB 11643 check digit)."""
    body: PetitionerIn = ctx.body
    petitioner = await service.create_petitioner(
        ctx.db,
        ctx.me.actor(),
        court_id=body.court_id,
        name=body.name,
        id_type=body.id_type,
        id_number=body.id_number,
        phone=body.phone,
    )
    return PetitionerOut.of(petitioner)


@api.route(
    "GET",
    "/petitions",
    summary="List petitions in scope",
    tag="petitions",
    roles=ALL_STAFF,
    query=PetitionQuery,
    answer=Page[PetitionOut],
)
async def list_petitions(ctx: Context) -> Page[PetitionOut]:
    q: PetitionQuery = ctx.query
    page = await service.list_petitions(
        ctx.db,
        ctx.me.actor(),
        petitioner_id=q.petitioner_id,
        number=q.number,
        limit=q.limit,
        offset=q.offset,
    )
    return page_of(Page[PetitionOut], page.items, page.total, q, PetitionOut.of)


@api.route(
    "GET",
    r"/petitions/{petition_id:\d+}",
    summary="One petition",
    tag="petitions",
    roles=ALL_STAFF,
    answer=PetitionOut,
)
async def get_petition(ctx: Context) -> PetitionOut:
    return PetitionOut.of(
        await service.get_petition(ctx.db, ctx.me.actor(), ctx.path_id("petition_id"))
    )

"""A visit's recording: where it stands, legal hold, and deletion after its retention."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Annotated

from aiohttp import web
from pydantic import StringConstraints
from sqlalchemy import delete

from config.db import utcnow
from config.errors import ConflictError, NotFoundError
from recorder.manifest import chinese, load_signing_key, verify
from recorder.models import Integrity, Recording, RecordingState, TranscriptCorrection
from recorder.retention import delete_media, retain_until, retention_years
from recorder.search import index_texts
from recorder.state import SIGNED_STATES, load_state
from scheduler import visits as vs
from scheduler.models import Petition, Role
from web import archive
from web.errors import app_error_response
from web.routes import ALL_STAFF, Context, api
from web.schemas import Answer, Body

Reason = Annotated[str, StringConstraints(min_length=2, max_length=256)]


class GapOut(Answer):
    """A span of one track that is not in the recording (the recorder could not write)."""

    start: datetime
    end: datetime | None  # None: not written again yet
    role: str
    kind: str  # audio | video
    reason: str


class RecordingOut(Answer):
    """A recording as staff see it: state, processing, integrity and retention."""

    visit_id: str
    state: str
    step: str
    progress: int
    message: str
    transcript: str
    started_at: datetime | None
    ended_at: datetime | None
    interrupted_at: datetime | None
    duration_seconds: float | None
    size_bytes: int
    legal_hold: bool
    hold_reason: str
    retain_until: datetime | None
    deleted_at: datetime | None
    gaps: list[GapOut]  # the spans missing from the files, as recording.json says
    unrepairable: list[str]  # files a crash left unplayable (relative to the recording)


class HoldIn(Body):
    hold: bool
    reason: Reason


class DeleteIn(Body):
    reason: Reason


async def _recording(ctx: Context) -> tuple[Recording, str, int]:
    visit = await vs.visible_visit(ctx.db, ctx.me.actor(), ctx.request.match_info["visit_id"])
    row = await ctx.db.get(Recording, visit.id)
    if row is None or (row.sealed and ctx.me.role is not Role.admin):
        raise NotFoundError("该接访没有录像")  # a sealed recording is seen by admins only
    category = await ctx.db.get(Petition, visit.petition_id)
    return row, category.category if category else "", visit.court_id


def _stamp(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _until(ctx: Context, row: Recording, category: str) -> datetime | None:
    """When the recording's retention runs out (its category's period after its end)."""
    years = retention_years(
        category, ctx.settings.retention_years, ctx.settings.retention_years_by_category
    )
    return retain_until(row.ended_at, years) if row.ended_at else None


async def _answer(ctx: Context, row: Recording, category: str) -> RecordingOut:
    state = await asyncio.get_running_loop().run_in_executor(None, load_state, Path(row.folder))
    tracks = state.tracks if state is not None else []
    return RecordingOut(
        visit_id=row.visit_id,
        state=row.state.value,
        step=row.step,
        progress=row.progress,
        message=row.message,
        transcript=row.transcript,
        started_at=row.started_at,
        ended_at=row.ended_at,
        interrupted_at=row.interrupted_at,
        duration_seconds=row.duration_seconds,
        size_bytes=row.size_bytes,
        legal_hold=row.legal_hold,
        hold_reason=row.hold_reason,
        retain_until=_until(ctx, row, category),
        deleted_at=row.deleted_at,
        gaps=[
            GapOut(
                start=datetime.fromtimestamp(g.start, UTC),
                end=_stamp(g.end),
                role=t.role,
                kind=t.kind,
                reason=g.reason,
            )
            for t in tracks
            for g in t.gaps
        ],
        unrepairable=[name for t in tracks for name in t.unrepairable],
    )


@api.route(
    "GET",
    r"/visits/{visit_id:[0-9a-f]{32}}/recording",
    summary="The visit's recording: processing, retention, hold",
    tag="recordings",
    roles=ALL_STAFF,
    answer=RecordingOut,
)
async def get_recording(ctx: Context) -> RecordingOut:
    row, category, _ = await _recording(ctx)
    return await _answer(ctx, row, category)


@api.route(
    "POST",
    r"/visits/{visit_id:[0-9a-f]{32}}/recording/hold",
    summary="Place or lift a legal hold (blocks deletion)",
    tag="recordings",
    roles={Role.admin},
    body=HoldIn,
    answer=RecordingOut,
)
async def set_hold(ctx: Context) -> RecordingOut:
    body: HoldIn = ctx.body
    row, category, court_id = await _recording(ctx)
    row.legal_hold, row.hold_reason = body.hold, body.reason if body.hold else ""
    ctx.audit_visit(
        "recording.hold" if body.hold else "recording.hold_lifted",
        row.visit_id,
        court_id,
        reason=body.reason,
    )
    return await _answer(ctx, row, category)


TAMPERED = "录像完整性核验未通过（文件缺失或被改动），不能删除"


def _refuse_deletion(row: Recording, until: datetime | None, tz: tzinfo) -> None:
    """409 unless the recording's media may be deleted now."""
    if row.sealed:
        raise ConflictError("录像已封存，不能删除", code="sealed")
    if row.legal_hold:
        raise ConflictError("该录像处于法律保全中，不能删除", code="legal_hold")
    if row.state is RecordingState.deleted:
        raise ConflictError("该录像已删除", code="already_deleted")
    if row.state not in SIGNED_STATES:
        raise ConflictError("录像尚未处理完成，不能删除", code="not_ready")
    if until is None:
        raise ConflictError("录像没有结束时间，不能计算保存期限", code="retention_running")
    if until > utcnow():
        day = until.astimezone(tz)  # the court's day, not UTC's
        raise ConflictError(f"保存期限至 {day:%Y-%m-%d}，期满前不能删除", code="retention_running")
    if row.integrity == Integrity.tampered.value:
        raise ConflictError(TAMPERED, code="integrity_failed")


@api.route(
    "POST",
    r"/visits/{visit_id:[0-9a-f]{32}}/recording/delete",
    summary="Delete the media of a recording whose retention has run out",
    tag="recordings",
    roles={Role.admin},
    body=DeleteIn,
    answer=RecordingOut,
    errors=(409,),
    split=True,  # the check of every file before the deletion holds no write lock
)
async def delete_recording(ctx: Context) -> RecordingOut | web.Response:
    """Only a recording that verifies is deleted (its files are hashed again as they are
    removed, so the deletion record names what went as it was); one that does not is kept,
    and marked tampered."""
    body: DeleteIn = ctx.body
    row, category, court_id = await _recording(ctx)
    tz = ctx.settings.tz
    _refuse_deletion(row, _until(ctx, row, category), tz)
    folder, key = Path(row.folder), load_signing_key(ctx.settings.data_dir)
    revisions = await archive.revision_count(ctx.db, row.visit_id)
    before = archive.signed_list(folder)
    loop = asyncio.get_running_loop()
    check = await loop.run_in_executor(
        None, lambda: verify(folder, key.public_key(), revisions=revisions)
    )
    async with ctx.write() as db:
        row = await archive.as_checked(db, row.visit_id, folder, before)
        _refuse_deletion(row, _until(ctx, row, category), tz)  # a hold placed meanwhile
        if not check.ok:
            found = "；".join(f"{k}: {chinese(v)}" for k, v in check.failed.items())
            row.integrity, row.integrity_detail = Integrity.tampered.value, found[:512]
            row.integrity_checked_at = utcnow()
            ctx.audit_visit(
                "recording.tampered",
                row.visit_id,
                court_id,
                db=db,
                checked=len(check.checked),
                failed=sorted(check.failed),
            )
        else:
            record = await loop.run_in_executor(
                None,
                lambda: delete_media(folder, actor=ctx.me.username, reason=body.reason, key=key),
            )
            row.state, row.deleted_at = RecordingState.deleted, utcnow()
            # what was said went with the media: no longer found by a search, nor its
            # corrections kept (their texts stay on the audit trail, as every correction's do)
            await index_texts(db, row.visit_id, {}, [])
            await db.execute(
                delete(TranscriptCorrection).where(TranscriptCorrection.visit_id == row.visit_id)
            )
            ctx.audit_visit(
                "recording.deleted",
                row.visit_id,
                court_id,
                db=db,
                reason=body.reason,
                files=len(record["removed"]),
            )
    if not check.ok:  # answered, not raised: the finding and its audit event are committed
        return app_error_response(ConflictError(TAMPERED, code="integrity_failed"))
    return await _answer(ctx, row, category)

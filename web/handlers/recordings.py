"""A visit's recording: where it stands, legal hold, and deletion after its retention."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from pydantic import StringConstraints
from sqlalchemy import delete

from config.db import utcnow
from config.errors import ConflictError, NotFoundError
from recorder.manifest import load_signing_key
from recorder.models import Recording, RecordingState, TranscriptCorrection
from recorder.retention import delete_media, retain_until, retention_years
from recorder.search import index_texts
from recorder.state import SIGNED_STATES, load_state
from scheduler import visits as vs
from scheduler.models import Petition, Role
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


async def _answer(ctx: Context, row: Recording, category: str) -> RecordingOut:
    state = await asyncio.get_running_loop().run_in_executor(None, load_state, Path(row.folder))
    tracks = state.tracks if state is not None else []
    years = retention_years(
        category, ctx.settings.retention_years, ctx.settings.retention_years_by_category
    )
    until = retain_until(row.ended_at, years) if row.ended_at else None
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
        retain_until=until,
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


@api.route(
    "POST",
    r"/visits/{visit_id:[0-9a-f]{32}}/recording/delete",
    summary="Delete the media of a recording whose retention has run out",
    tag="recordings",
    roles={Role.admin},
    body=DeleteIn,
    answer=RecordingOut,
    errors=(409,),
)
async def delete_recording(ctx: Context) -> RecordingOut:
    body: DeleteIn = ctx.body
    row, category, court_id = await _recording(ctx)
    answer = await _answer(ctx, row, category)
    if row.legal_hold:
        raise ConflictError("该录像处于法律保全中，不能删除", code="legal_hold")
    if row.state is RecordingState.deleted:
        raise ConflictError("该录像已删除", code="already_deleted")
    if row.state not in SIGNED_STATES:
        raise ConflictError("录像尚未处理完成，不能删除", code="not_ready")
    if answer.retain_until is None or answer.retain_until > utcnow():
        raise ConflictError(
            f"保存期限至 {answer.retain_until:%Y-%m-%d}，期满前不能删除",
            code="retention_running",
        )
    record = await asyncio.get_running_loop().run_in_executor(
        None,
        lambda: delete_media(
            Path(row.folder),
            actor=ctx.me.username,
            reason=body.reason,
            key=load_signing_key(ctx.settings.data_dir),
        ),
    )
    row.state, row.deleted_at = RecordingState.deleted, utcnow()
    # what was said went with the media: no longer found by a search, nor its corrections
    # kept (their texts stay on the audit trail, as every correction's does)
    await index_texts(ctx.db, row.visit_id, {}, [])
    await ctx.db.execute(
        delete(TranscriptCorrection).where(TranscriptCorrection.visit_id == row.visit_id)
    )
    ctx.audit_visit(
        "recording.deleted",
        row.visit_id,
        court_id,
        reason=body.reason,
        files=len(record["removed"]),
    )
    return await _answer(ctx, row, category)

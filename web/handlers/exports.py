"""Certified exports: a watermarked, signed ZIP of a recording (archivists and admins),
fetched once by its token; every export and refusal is audited."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path
from typing import Annotated

from aiohttp import web
from pydantic import StringConstraints

from config.db import utcnow
from config.errors import ConflictError, NotFoundError
from recorder.export import ExportError, build_export, export_name
from recorder.manifest import load_signing_key
from recorder.models import Integrity, RecordingState
from web import archive
from web.errors import app_error_response
from web.handlers.archive import (
    EXPORTERS,
    VISIT_ID,
    audit_now,
    load_json,
    open_recording,
)
from web.routes import Context, api
from web.schemas import Answer, Body

EXPORT_TTL_SECONDS = 24 * 3600


class ExportIn(Body):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=256)] = ""


class ExportOut(Answer):
    url: str
    file: str
    size: int
    sha256: str
    key_id: str
    watermark: str


def _exports_dir(ctx: Context) -> Path:
    folder = Path(ctx.settings.data_dir) / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _expired(path: Path) -> bool:
    return path.stat().st_mtime < time.time() - EXPORT_TTL_SECONDS


def _sweep(folder: Path) -> None:
    """Exports are fetched once made; any older than a day are removed."""
    for path in folder.iterdir():
        if _expired(path):
            path.unlink(missing_ok=True)


def _remove(folder: Path, token: str) -> None:
    for suffix in (".zip", ".json"):
        (folder / f"{token}{suffix}").unlink(missing_ok=True)


@api.route(
    "POST",
    f"/recordings/{VISIT_ID}/exports",
    summary="Make a certified export ZIP (watermarked, signed; audited)",
    tag="archive",
    roles=EXPORTERS,
    body=ExportIn,
    answer=ExportOut,
    status=201,
    errors=(409,),
    split=True,  # hashing and zipping gigabytes holds no write lock
)
async def export_recording(ctx: Context) -> ExportOut | web.Response:
    body: ExportIn = ctx.body
    recording, visit, names = await open_recording(ctx)
    # processed and signed, or signed as it was after its processing failed (the originals
    # and the timeline): either can be proven untouched, so either can be exported
    if not recording.verifiable:
        raise ConflictError("录像尚未处理完成（或已删除），不能导出", code="not_ready")
    folder = _exports_dir(ctx)
    token = secrets.token_hex(16)
    out = folder / f"{token}.zip"
    key = load_signing_key(ctx.settings.data_dir)
    actor = f"{ctx.me.display_name}（{ctx.me.username}）"
    now = utcnow()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, _sweep, folder)
    before = archive.signed_list(Path(recording.folder))
    revision = await archive.revision_count(ctx.db, visit.id)
    try:
        made = await loop.run_in_executor(
            None,
            lambda: build_export(
                Path(recording.folder),
                out,
                key=key,
                actor=actor,
                at=now,
                tz=ctx.settings.tz,
                details=names,
                revision=revision,
            ),
        )
    except ExportError as exc:
        # answered, not raised: the finding and its audit event must be committed
        async with ctx.write() as db:
            row = await archive.as_checked(db, visit.id, Path(recording.folder), before)
            row.integrity = Integrity.tampered.value
            row.integrity_checked_at = now
            row.integrity_detail = str(exc)[:512]
            ctx.audit_visit(
                "recording.export_refused", visit.id, visit.court_id, db=db, reason=str(exc)
            )
        return app_error_response(ConflictError(str(exc), code="integrity_failed"))
    (folder / f"{token}.json").write_text(
        json.dumps({"user_id": ctx.me.user_id, "visit_id": visit.id, "file": made["file"]})
    )
    try:
        async with ctx.write() as db:
            row = await archive.as_checked(db, visit.id, Path(recording.folder), before)
            row.integrity, row.integrity_checked_at = Integrity.verified.value, now
            row.integrity_detail = ""
            ctx.audit_visit(
                "recording.export",
                visit.id,
                visit.court_id,
                db=db,
                sha256=made["sha256"],
                size=made["size"],
                reason=body.reason,
            )
    except ConflictError:  # signed again while it was zipped: that copy is not handed out
        _remove(folder, token)
        raise
    return ExportOut(
        url=f"/api/v1/recordings/exports/{token}",
        file=made["file"],
        size=made["size"],
        sha256=made["sha256"],
        key_id=made["key_id"],
        watermark=made["watermark"],
    )


@api.route(
    "GET",
    "/recordings/exports/{token:[0-9a-f]{32}}",
    summary="Download an export ZIP (by the staff member who made it; audited)",
    tag="archive",
    roles=EXPORTERS,
)
async def download_export(ctx: Context) -> web.StreamResponse:
    folder = _exports_dir(ctx)
    token = ctx.request.match_info["token"]
    meta = load_json(folder / f"{token}.json")
    path = folder / f"{token}.zip"
    if meta.get("user_id") != ctx.me.user_id or not path.is_file():
        raise NotFoundError("导出文件不存在或已过期")
    recording, visit = await archive.accessible(ctx.db, ctx.me.actor(), str(meta["visit_id"]))
    if recording.state is RecordingState.deleted or _expired(path):
        # a copy outlives neither its day nor the recording's retention
        _remove(folder, token)
        raise NotFoundError("导出文件已过期或录像已删除，请重新导出")
    await audit_now(ctx, "recording.download", visit, file="export.zip", export=token)
    return web.FileResponse(
        path,
        headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="{export_name(visit.id)}"',
            "Cache-Control": "private, no-store",
        },
    )

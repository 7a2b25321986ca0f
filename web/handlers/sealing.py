"""Sealing a recording (admins) and checking its files against the signed manifest now."""

from __future__ import annotations

import asyncio
import functools
from datetime import datetime
from pathlib import Path

from config.db import utcnow
from config.errors import ConflictError
from recorder.manifest import chinese, load_signing_key, verify
from recorder.models import Integrity
from scheduler.models import Role
from web import archive
from web.handlers.archive import (
    VISIT_ID,
    ArchiveItem,
    Reason,
    item_of,
    open_recording,
)
from web.routes import ALL_STAFF, Context, api
from web.schemas import Answer, Body


class SealIn(Body):
    sealed: bool
    reason: Reason


class IntegrityOut(Answer):
    integrity: str
    checked_at: datetime | None
    detail: str
    checked: int
    failed: dict[str, str]


@api.route(
    "POST",
    f"/recordings/{VISIT_ID}/seal",
    summary="Seal or unseal a recording (admins only; sealed: visible to admins alone)",
    tag="archive",
    roles={Role.admin},
    body=SealIn,
    answer=ArchiveItem,
)
async def seal(ctx: Context) -> ArchiveItem:
    body: SealIn = ctx.body
    recording, visit, names = await open_recording(ctx)
    if recording.sealed == body.sealed:
        raise ConflictError("该录像已封存" if body.sealed else "该录像未封存", code="unchanged")
    recording.sealed = body.sealed
    recording.seal_reason = body.reason if body.sealed else ""
    ctx.audit_visit(
        "recording.sealed" if body.sealed else "recording.unsealed",
        visit.id,
        visit.court_id,
        reason=body.reason,
    )
    return item_of(recording, visit, names)


@api.route(
    "POST",
    f"/recordings/{VISIT_ID}/verify",
    summary="Check every file of the recording against its signed manifest now",
    tag="archive",
    roles=ALL_STAFF,
    answer=IntegrityOut,
    errors=(409,),
    split=True,  # hashing gigabytes holds no write lock: only the finding is written
)
async def check_integrity(ctx: Context) -> IntegrityOut:
    recording, visit = await archive.accessible(
        ctx.db, ctx.me.actor(), ctx.request.match_info["visit_id"]
    )
    if not recording.verifiable:
        raise ConflictError("录像尚未签名（或已删除），无法核验", code="not_ready")
    key = load_signing_key(ctx.settings.data_dir)
    folder = Path(recording.folder)
    before = archive.signed_list(folder)
    # every transcript revision the database knows of must be in the folder
    revisions = await archive.revision_count(ctx.db, visit.id)
    result = await asyncio.get_running_loop().run_in_executor(
        None, functools.partial(verify, folder, key.public_key(), revisions=revisions)
    )
    async with ctx.write() as db:
        recording = await archive.as_checked(db, visit.id, folder, before)
        recording.integrity = (Integrity.verified if result.ok else Integrity.tampered).value
        recording.integrity_checked_at = utcnow()
        recording.integrity_detail = (
            "" if result.ok else "；".join(f"{k}: {chinese(v)}" for k, v in result.failed.items())
        )[:512]
        ctx.audit_visit(
            "recording.verified" if result.ok else "recording.tampered",
            visit.id,
            visit.court_id,
            db=db,
            checked=len(result.checked),
            failed=sorted(result.failed),
        )
    return IntegrityOut(
        integrity=recording.integrity,
        checked_at=recording.integrity_checked_at,
        detail=recording.integrity_detail,
        checked=len(result.checked),
        failed={name: chinese(why) for name, why in result.failed.items()},
    )

"""The archive: search recordings, play them back (range requests), seal them, check their
integrity and export a certified copy. Every search, open, play, download and export is an
audit event; access rules live in ``web/archive.py``."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field, StringConstraints, field_validator
from sqlalchemy import select

from config.audit import record_audit
from config.db import utcnow
from config.errors import AppError, ConflictError, NotFoundError, PermissionDeniedError
from config.privacy import mask_id_number
from recorder.export import ExportError, build_export
from recorder.manifest import load_signing_key, verify
from recorder.models import Integrity, Recording, RecordingState
from recorder.search import QueryError, parse_query
from recorder.state import SIGNED_STATES
from scheduler.models import Role, Visit, VisitEvent
from web import archive
from web.errors import app_error_response
from web.keys import DB
from web.routes import ALL_STAFF, Context, api
from web.schemas import Answer, Body, Page, PageQuery

EXPORTERS = {Role.archivist, Role.admin}
EXPORT_TTL_SECONDS = 24 * 3600
MEDIA_TYPES = {
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".vtt": "text/vtt; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".pem": "text/plain; charset=utf-8",
}
PLAYABLE = (".mp4", ".webm", ".mkv")
VISIT_ID = r"{visit_id:[0-9a-f]{32}}"
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=256)]
Text64 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class ArchiveQuery(PageQuery):
    """Search criteria; all given ones must hold."""

    number: Text64 | None = None
    petitioner: Text64 | None = None
    id_tail: Annotated[str, StringConstraints(pattern=r"^[0-9Xx]{4,18}$")] | None = None
    court_id: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    include_below: bool = True
    judge: Text64 | None = None
    since: date | None = None
    until: date | None = None
    state: RecordingState | None = None
    q: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = None
    sort: archive.Sort = archive.Sort.newest

    @field_validator("q")
    @classmethod
    def _searchable(cls, value: str | None) -> str | None:
        if value:
            try:
                parse_query(value)
            except QueryError as exc:
                raise ValueError(str(exc)) from None
        return value or None


class HitOut(Answer):
    kind: str
    start: float
    role: str
    speaker: str
    text: str


class ArchiveItem(Answer):
    """One recording in a result list (personal data masked)."""

    visit_id: str
    petition_number: str
    petition_category: str
    court_name: str
    receiving_court_name: str
    judge_name: str
    petitioner: str  # masked name
    petitioner_id: str  # masked ID number
    started_at: datetime | None
    duration_seconds: float | None
    state: str
    progress: int
    integrity: str
    integrity_checked_at: datetime | None
    interrupted: bool
    sealed: bool
    legal_hold: bool
    transcript: str
    hits: list[HitOut]


class ArchivePage(Page[ArchiveItem]):
    """A page of results. ``total`` counts up to 200; ``more``: more than that match
    (narrow the search to count them; the next pages are still served)."""

    more: bool


class FileOut(Answer):
    name: str
    kind: str  # composite | original | transcript | proof | other
    role: str
    source: str
    media: str  # audio | video | ""
    offset: float | None  # where an original starts on the visit's clock (seconds)
    size: int
    playable: bool


class LineOut(Answer):
    start: float
    end: float
    role: str
    name: str
    text: str


class NoteOut(Answer):
    at: float  # seconds from the visit's start
    author: str
    text: str


class EventOut(Answer):
    at: float | None  # seconds from the visit's start (None: before it)
    wall: datetime
    kind: str
    text: str


class GapOut(Answer):
    start: float
    end: float
    role: str
    reason: str


class RecordingDetail(Answer):
    """Everything the playback page shows."""

    item: ArchiveItem
    petition_summary: str
    petitioner_name: str
    visit_start: float | None
    files: list[FileOut]
    lines: list[LineOut]
    notes: list[NoteOut]
    events: list[EventOut]
    gaps: list[GapOut]
    transcript_reason: str
    integrity_detail: str
    seal_reason: str


class PlayIn(Body):
    file: Annotated[str, StringConstraints(max_length=200)]
    position: Annotated[float, Field(ge=0, le=1e7)] = 0.0


class SealIn(Body):
    sealed: bool
    reason: Reason


class ExportIn(Body):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=256)] = ""


class ExportOut(Answer):
    url: str
    file: str
    size: int
    sha256: str
    key_id: str
    watermark: str


class IntegrityOut(Answer):
    integrity: str
    checked_at: datetime | None
    detail: str
    checked: int
    failed: dict[str, str]


def _item(found: archive.Found) -> ArchiveItem:
    r = found.recording
    return ArchiveItem(
        visit_id=r.visit_id,
        petition_number=found.number,
        petition_category=found.category,
        court_name=found.court_name,
        receiving_court_name=found.receiving_court_name,
        judge_name=found.judge_name,
        petitioner=archive.mask_name(found.petitioner_name),
        petitioner_id=mask_id_number(found.petitioner_id_number),
        started_at=r.started_at,
        duration_seconds=r.duration_seconds,
        state=r.state.value,
        progress=r.progress,
        integrity=r.integrity,
        integrity_checked_at=r.integrity_checked_at,
        interrupted=r.interrupted_at is not None,
        sealed=r.sealed,
        legal_hold=r.legal_hold,
        transcript=r.transcript,
        hits=[HitOut(**h.__dict__) for h in found.hits],
    )


async def audit_now(ctx: Context, action: str, visit: Visit | None, **detail: Any) -> None:
    """Write an audit event at once, in its own transaction (reads audit too: a search or a
    view is recorded even though it changes nothing)."""
    async with ctx.request.app[DB].writer() as db:
        if visit is not None:
            ctx.audit_visit(action, visit.id, visit.court_id, db=db, **detail)
        else:
            record_audit(
                db,
                action=action,
                actor_id=ctx.me.user_id,
                actor_name=ctx.me.username,
                address=ctx.address,
                court_id=ctx.me.court_id,
                detail=detail,
            )


@api.route(
    "GET",
    "/recordings",
    summary="Search the archive of recordings (paged, sortable; audited)",
    tag="archive",
    roles=ALL_STAFF,
    query=ArchiveQuery,
    answer=ArchivePage,
)
async def search_recordings(ctx: Context) -> ArchivePage:
    """By petition number, petitioner (name prefix, or the exact last digits of the ID
    number), court (with the courts below), judge, dates, state and words said."""
    q: ArchiveQuery = ctx.query
    if q.since and q.until and q.since > q.until:
        raise AppError("起始日期不能晚于结束日期", code="validation_failed")
    criteria = archive.Criteria(
        number=q.number,
        petitioner=q.petitioner,
        id_tail=q.id_tail,
        court_id=q.court_id,
        include_below=q.include_below,
        judge=q.judge,
        since=q.since,
        until=q.until,
        state=q.state,
        terms=parse_query(q.q) if q.q else None,
        sort=q.sort,
    )
    found, total, more = await archive.search(
        ctx.db, ctx.me.actor(), criteria, limit=q.limit, offset=q.offset, tz=ctx.settings.tz
    )
    asked = {k: v for k, v in q.model_dump(mode="json").items() if v not in (None, "")}
    await audit_now(ctx, "recording.search", None, query=asked, total=total, more=more)
    return ArchivePage(
        items=[_item(f) for f in found], total=total, more=more, limit=q.limit, offset=q.offset
    )


def _files(folder: Path) -> dict[str, Path]:
    """The recording's files by their name relative to its folder; nothing else is served."""
    if not folder.is_dir():
        return {}
    return {
        p.relative_to(folder).as_posix(): p
        for p in folder.rglob("*")
        if p.is_file() and not p.is_symlink() and not p.name.endswith(".tmp")
    }


def _file_kind(name: str) -> str:
    if name == "composite.mp4":
        return "composite"
    if name.startswith("tracks/"):
        return "original"
    if name.startswith("transcript."):
        return "transcript"
    if name in ("manifest.json", "SHA256SUMS", "SHA256SUMS.sig", "public-key.pem"):
        return "proof"
    return "other"


def _load_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


async def _open(ctx: Context) -> tuple[Recording, Visit, dict[str, Any]]:
    """The recording of the path's visit if the caller may see it (else 404), its visit and
    the names the pages show."""
    recording, visit = await archive.accessible(
        ctx.db, ctx.me.actor(), ctx.request.match_info["visit_id"]
    )
    names = await archive.describe(ctx.db, visit.id)
    if names is None:
        raise NotFoundError("录像不存在或您无权查看")
    return recording, visit, names


def _item_of(recording: Recording, visit: Visit, names: dict[str, Any]) -> ArchiveItem:
    item = _item(
        archive.Found(
            recording=recording,
            visit=visit,
            number=names["petition_number"],
            category=names["petition_category"],
            court_name=names["court_name"],
            receiving_court_name=names["receiving_court_name"],
            judge_name=names["judge_name"],
            petitioner_name=names["petitioner_name"],
            petitioner_id_number="",
            hits=[],
        )
    )
    item.petitioner_id = names["petitioner_id_masked"]
    return item


EVENT_TEXT = {
    "joined": "进入",
    "left": "离开",
    "admitted": "准入",
    "refused": "拒绝",
    "evidence_shown": "出示证据",
    "evidence_stopped": "停止出示证据",
    "invited": "邀请",
    "ended": "结束",
}
STATE_TEXT = {
    "in_lobby": "进入等候区",
    "in_progress": "法官准入，接访开始",
    "ended": "接访结束",
    "checked_in": "签到",
}
ROLE_TEXT = {
    "petitioner": "信访人",
    "judge": "法官",
    "operator": "操作员",
    "lawyer": "律师",
    "mediator": "调解员",
}


def _event_text(event: VisitEvent) -> str:
    detail = event.detail or {}
    if event.kind.value == "room":
        what = str(detail.get("event", ""))
        who = f"{ROLE_TEXT.get(str(detail.get('role', '')), '')} {event.actor_name}".strip()
        return f"{who} {EVENT_TEXT.get(what, what)}".strip()
    if event.kind.value == "state":
        return STATE_TEXT.get(event.to_state or "", f"状态：{event.to_state}")
    return {"booked": "预约", "checked_in": "签到", "rescheduled": "改期"}.get(
        event.kind.value, event.kind.value
    )


@api.route(
    "GET",
    f"/recordings/{VISIT_ID}",
    summary="One recording for playback: files, transcript, notes, timeline (audited)",
    tag="archive",
    roles=ALL_STAFF,
    answer=RecordingDetail,
)
async def get_recording_detail(ctx: Context) -> RecordingDetail:
    recording, visit, names = await _open(ctx)
    folder = Path(recording.folder)
    loop = asyncio.get_running_loop()
    files, timeline, transcript = await loop.run_in_executor(
        None,
        lambda: (
            _files(folder),
            _load_json(folder / "timeline.json"),
            _load_json(folder / "transcript.json"),
        ),
    )
    start = timeline.get("start") or transcript.get("visit_start")
    if start is None and recording.started_at is not None:
        start = recording.started_at.timestamp()
    by_file: dict[str, dict[str, Any]] = {}
    gaps: list[GapOut] = []
    for track in timeline.get("tracks", []):
        for name in track.get("files", []):
            by_file[name] = track
        for gap in track.get("gaps", []):
            if start is not None:
                # a gap that never closed lasts to the track's (or the visit's) end
                until = gap.get("end") or track.get("wall_end") or timeline.get("end") or start
                gaps.append(
                    GapOut(
                        start=max(0.0, float(gap["start"]) - start),
                        end=max(0.0, float(until) - start),
                        role=str(track.get("role", "")),
                        reason=str(gap.get("reason", "")),
                    )
                )
    out_files = []
    for name, path in sorted(files.items()):
        track = by_file.get(name, {})
        out_files.append(
            FileOut(
                name=name,
                kind=_file_kind(name),
                role=str(track.get("role", "")),
                source=str(track.get("source", "")),
                media=str(track.get("kind", "video" if name.endswith(".mp4") else "")),
                offset=track.get("offset") if track else (0.0 if name == "composite.mp4" else None),
                size=path.stat().st_size,
                playable=name.endswith(PLAYABLE),
            )
        )
    notes_raw = transcript.get("notes") or timeline.get("notes") or []
    notes = [
        NoteOut(
            at=max(0.0, float(n.get("at", start or 0)) - (start or 0)),
            author=str(n.get("author", "")),
            text=str(n.get("text", "")),
        )
        for n in notes_raw
    ]
    history = (
        await ctx.db.scalars(
            select(VisitEvent).where(VisitEvent.visit_id == visit.id).order_by(VisitEvent.id)
        )
    ).all()
    events = [
        EventOut(
            at=(e.at.timestamp() - start)
            if start is not None and e.at.timestamp() >= start
            else None,
            wall=e.at,
            kind=(e.detail or {}).get("event", e.kind.value)
            if e.kind.value == "room"
            else e.kind.value,
            text=_event_text(e),
        )
        for e in history
        if not (e.kind.value == "room" and (e.detail or {}).get("event") == "note")
    ]
    if recording.interrupted_at is not None:
        events.append(
            EventOut(
                at=(recording.interrupted_at.timestamp() - start) if start is not None else None,
                wall=recording.interrupted_at,
                kind="interrupted",
                text="录制中断（服务器异常），中断前的内容已修复保存",
            )
        )
        events.sort(key=lambda e: e.wall)
    await audit_now(ctx, "recording.open", visit)
    return RecordingDetail(
        item=_item_of(recording, visit, names),
        petition_summary=names["petition_summary"],
        petitioner_name=names["petitioner_name"],
        visit_start=start,
        files=out_files,
        lines=[
            LineOut(**{k: line[k] for k in ("start", "end", "role", "name", "text")})
            for line in transcript.get("lines", [])
        ],
        notes=notes,
        events=events,
        gaps=gaps,
        transcript_reason=""
        if transcript.get("available", True)
        else str(transcript.get("reason", "")),
        integrity_detail=recording.integrity_detail,
        seal_reason=recording.seal_reason if ctx.me.role is Role.admin else "",
    )


@api.route(
    "GET",
    f"/recordings/{VISIT_ID}/files/{{name:[A-Za-z0-9._/-]{{1,200}}}}",
    summary="A file of the recording, with HTTP range requests (download=1: audited download)",
    tag="archive",
    roles=ALL_STAFF,
)
async def recording_file(ctx: Context) -> web.StreamResponse:
    """Serves only names that are files of the recording's own folder; anything else,
    ``..`` included, is 404. Seeking asks for ranges (206); a download is audited."""
    recording, visit = await archive.accessible(
        ctx.db, ctx.me.actor(), ctx.request.match_info["visit_id"]
    )
    name = ctx.request.match_info["name"]
    if recording.state is RecordingState.deleted:
        raise NotFoundError("该录像已按保存期限删除")
    files = await asyncio.get_running_loop().run_in_executor(None, _files, Path(recording.folder))
    path = files.get(name)
    if path is None:
        raise NotFoundError("录像中没有这个文件")
    headers = {
        "Content-Type": MEDIA_TYPES.get(path.suffix, "application/octet-stream"),
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
    }
    if ctx.request.query.get("download") == "1":
        if ctx.me.role not in EXPORTERS:
            raise PermissionDeniedError("您的角色无权下载录像文件", code="forbidden_role")
        headers["Content-Disposition"] = f'attachment; filename="{visit.id}-{path.name}"'
        await audit_now(ctx, "recording.download", visit, file=name)
    return web.FileResponse(path, headers=headers)


@api.route(
    "POST",
    f"/recordings/{VISIT_ID}/views",
    summary="Playback started: written to the audit trail",
    tag="archive",
    roles=ALL_STAFF,
    body=PlayIn,
    answer=Answer,
)
async def played(ctx: Context) -> dict[str, bool]:
    body: PlayIn = ctx.body
    recording, visit = await archive.accessible(
        ctx.db, ctx.me.actor(), ctx.request.match_info["visit_id"]
    )
    if body.file not in await asyncio.get_running_loop().run_in_executor(
        None, _files, Path(recording.folder)
    ):
        raise NotFoundError("录像中没有这个文件")
    ctx.audit_visit(
        "recording.view", visit.id, visit.court_id, file=body.file, position=round(body.position, 1)
    )
    return {"ok": True}


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
    recording, visit, names = await _open(ctx)
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
    return _item_of(recording, visit, names)


@api.route(
    "POST",
    f"/recordings/{VISIT_ID}/verify",
    summary="Check every file of the recording against its signed manifest now",
    tag="archive",
    roles=ALL_STAFF,
    answer=IntegrityOut,
    errors=(409,),
)
async def check_integrity(ctx: Context) -> IntegrityOut:
    recording, visit = await archive.accessible(
        ctx.db, ctx.me.actor(), ctx.request.match_info["visit_id"]
    )
    if recording.state not in SIGNED_STATES:
        raise ConflictError("录像尚未处理完成（或已删除），无法核验", code="not_ready")
    key = load_signing_key(ctx.settings.data_dir)
    result = await asyncio.get_running_loop().run_in_executor(
        None, verify, Path(recording.folder), key.public_key()
    )
    recording.integrity = (Integrity.verified if result.ok else Integrity.tampered).value
    recording.integrity_checked_at = utcnow()
    recording.integrity_detail = (
        "" if result.ok else "；".join(f"{k}: {v}" for k, v in result.failed.items())
    )[:512]
    ctx.audit_visit(
        "recording.verified" if result.ok else "recording.tampered",
        visit.id,
        visit.court_id,
        checked=len(result.checked),
        failed=sorted(result.failed),
    )
    return IntegrityOut(
        integrity=recording.integrity,
        checked_at=recording.integrity_checked_at,
        detail=recording.integrity_detail,
        checked=len(result.checked),
        failed=result.failed,
    )


def _exports_dir(ctx: Context) -> Path:
    folder = Path(ctx.settings.data_dir) / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _sweep(folder: Path) -> None:
    """Exports are fetched once made; any older than a day are removed."""
    cutoff = time.time() - EXPORT_TTL_SECONDS
    for path in folder.iterdir():
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)


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
)
async def export_recording(ctx: Context) -> ExportOut | web.Response:
    body: ExportIn = ctx.body
    recording, visit, names = await _open(ctx)
    if recording.state is not RecordingState.ready:
        raise ConflictError("录像尚未处理完成（或已删除），不能导出", code="not_ready")
    folder = _exports_dir(ctx)
    token = secrets.token_hex(16)
    out = folder / f"{token}.zip"
    key = load_signing_key(ctx.settings.data_dir)
    actor = f"{ctx.me.display_name}（{ctx.me.username}）"
    now = utcnow()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, _sweep, folder)
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
            ),
        )
    except ExportError as exc:
        # answered, not raised: the finding and its audit event must be committed
        recording.integrity = Integrity.tampered.value
        recording.integrity_checked_at = now
        recording.integrity_detail = str(exc)[:512]
        ctx.audit_visit("recording.export_refused", visit.id, visit.court_id, reason=str(exc))
        return app_error_response(ConflictError(str(exc), code="integrity_failed"))
    recording.integrity, recording.integrity_checked_at = Integrity.verified.value, now
    recording.integrity_detail = ""
    (folder / f"{token}.json").write_text(
        json.dumps({"user_id": ctx.me.user_id, "visit_id": visit.id, "file": made["file"]})
    )
    ctx.audit_visit(
        "recording.export",
        visit.id,
        visit.court_id,
        sha256=made["sha256"],
        size=made["size"],
        reason=body.reason,
    )
    return ExportOut(
        url=f"/api/v1/recordings/exports/{token}",
        file=f"{names['petition_number'] or visit.id}-{visit.id[:8]}.zip",
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
    meta = _load_json(folder / f"{token}.json")
    path = folder / f"{token}.zip"
    if meta.get("user_id") != ctx.me.user_id or not path.is_file():
        raise NotFoundError("导出文件不存在或已过期")
    recording, visit = await archive.accessible(ctx.db, ctx.me.actor(), str(meta["visit_id"]))
    del recording
    await audit_now(ctx, "recording.download", visit, file="export.zip", export=token)
    return web.FileResponse(
        path,
        headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="visit-{visit.id}.zip"',
            "Cache-Control": "private, no-store",
        },
    )

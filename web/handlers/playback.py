"""Playback of one recording: its files (range requests), transcript, notes and timeline,
and the audit of each play."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field, StringConstraints
from sqlalchemy import select

from config.errors import NotFoundError, PermissionDeniedError
from config.vocabulary import label_of
from recorder.models import RecordingState
from scheduler.models import Role, VisitEvent
from web import archive
from web.handlers.archive import (
    EXPORTERS,
    VISIT_ID,
    ArchiveItem,
    audit_now,
    file_kind,
    item_of,
    load_json,
    open_recording,
    recording_files,
)
from web.routes import ALL_STAFF, Context, api
from web.schemas import Answer, Body

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
    "checked_in": "签到",
}


def _event_text(event: VisitEvent) -> str:
    detail = event.detail or {}
    if event.kind.value == "room":
        what = str(detail.get("event", ""))
        role = label_of("participant_role", str(detail.get("role", "")))
        who = f"{role} {event.actor_name}".strip()
        return f"{who} {EVENT_TEXT.get(what, what)}".strip()
    if event.kind.value == "state":
        if event.to_state == "ended":
            return label_of("end_reason", str(detail.get("reason", "ended")))
        return STATE_TEXT.get(event.to_state or "", label_of("visit_state", event.to_state or ""))
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
    recording, visit, names = await open_recording(ctx)
    folder = Path(recording.folder)
    loop = asyncio.get_running_loop()
    files, timeline, transcript = await loop.run_in_executor(
        None,
        lambda: (
            recording_files(folder),
            load_json(folder / "timeline.json"),
            load_json(folder / "transcript.json"),
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
                kind=file_kind(name),
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
        item=item_of(recording, visit, names),
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
    files = await asyncio.get_running_loop().run_in_executor(
        None, recording_files, Path(recording.folder)
    )
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
        None, recording_files, Path(recording.folder)
    ):
        raise NotFoundError("录像中没有这个文件")
    ctx.audit_visit(
        "recording.view", visit.id, visit.court_id, file=body.file, position=round(body.position, 1)
    )
    return {"ok": True}

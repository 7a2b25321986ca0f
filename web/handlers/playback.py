"""Playback of one recording: its files (range requests), transcript, notes and timeline,
and the audit of each play."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from aiohttp import hdrs, web
from pydantic import Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from config.errors import ConflictError, NotFoundError, PermissionDeniedError
from config.vocabulary import label_of
from recorder.manifest import chinese, load_signing_key
from recorder.models import Recording, RecordingState, TranscriptCorrection
from recorder.revisions import RevisionError, corrected, write_revision
from recorder.search import index_texts
from recorder.state import SIGNED_STATES
from scheduler.models import Role, Visit, VisitEvent
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
    index: int  # the line's place in the machine transcript (transcript.json)
    start: float
    end: float
    role: str
    name: str
    text: str  # as corrected, if it was
    machine_text: str | None = None  # the engine's text, when a person corrected the line
    corrected_by: str | None = None
    corrected_at: datetime | None = None


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
    can_correct: bool  # the caller may correct transcript lines
    transcript_revision: int  # 0: the machine transcript as signed


class CorrectionIn(Body):
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class CorrectionOut(Answer):
    revision: int
    line: LineOut


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
    revised, revision = await _revised(ctx, visit.id, transcript)
    await audit_now(ctx, "recording.open", visit)
    return RecordingDetail(
        item=item_of(recording, visit, names),
        petition_summary=names["petition_summary"],
        petitioner_name=names["petitioner_name"],
        visit_start=start,
        files=out_files,
        lines=[_line_out(line) for line in revised["lines"]],
        notes=notes,
        events=events,
        gaps=gaps,
        transcript_reason=""
        if transcript.get("available", True)
        else str(transcript.get("reason", "")),
        integrity_detail=chinese(recording.integrity_detail),
        seal_reason=recording.seal_reason if ctx.me.role is Role.admin else "",
        can_correct=_may_correct(ctx, visit, recording) and bool(revised["lines"]),
        transcript_revision=revision,
    )


def _line_out(line: dict[str, Any]) -> LineOut:
    return LineOut(
        **{k: line[k] for k in ("index", "start", "end", "role", "name", "text")},
        machine_text=line.get("machine_text"),
        corrected_by=line.get("corrected_by"),
        corrected_at=line.get("corrected_at"),
    )


def _may_correct(ctx: Context, visit: Visit, recording: Recording | None = None) -> bool:
    """The judge who received the visit, or an archivist (the court's clerk of records);
    with ``recording``: and it is processed and signed for good, so can be corrected."""
    role = ctx.me.role
    who = role is Role.archivist or (role is Role.judge and visit.judge_id == ctx.me.user_id)
    return who and (recording is None or recording.state in SIGNED_STATES)


async def _corrections(db: AsyncSession, visit_id: str) -> list[dict[str, Any]]:
    rows = (
        await db.scalars(
            select(TranscriptCorrection)
            .where(TranscriptCorrection.visit_id == visit_id)
            .order_by(TranscriptCorrection.revision)
        )
    ).all()
    return [
        {
            "line": r.line,
            "text": r.text,
            "machine_text": r.machine_text,
            "corrected_by": r.corrected_by,
            "corrected_at": r.corrected_at.isoformat(),
            "revision": r.revision,
        }
        for r in rows
    ]


async def _revised(
    ctx: Context, visit_id: str, transcript: dict[str, Any]
) -> tuple[dict[str, Any], int]:
    """The transcript with the people's corrections, and its revision number."""
    done = await _corrections(ctx.db, visit_id)
    return corrected(transcript, done), max((c["revision"] for c in done), default=0)


@api.route(
    "POST",
    f"/recordings/{VISIT_ID}/transcript/{{line:[0-9]{{1,6}}}}/corrections",
    summary="Correct one transcript line: kept beside the machine text, with who and when, "
    "in a new signed revision of the transcript; the search index follows (audited)",
    tag="archive",
    roles=frozenset({Role.judge, Role.archivist}),
    body=CorrectionIn,
    answer=CorrectionOut,
)
async def correct_line(ctx: Context) -> CorrectionOut:
    body: CorrectionIn = ctx.body
    recording, visit = await archive.accessible(
        ctx.db, ctx.me.actor(), ctx.request.match_info["visit_id"]
    )
    if not _may_correct(ctx, visit):
        raise PermissionDeniedError(
            "只有本次接访的法官或档案管理员可以更正笔录", code="forbidden_role"
        )
    if recording.state is RecordingState.deleted:
        raise NotFoundError("该录像已按保存期限删除")
    if recording.sealed:
        raise ConflictError("录像已封存，不能更正笔录", code="sealed")
    if recording.state not in SIGNED_STATES:
        # a revision names the recording's signed list, which a later signing would replace
        raise ConflictError("录像尚未处理完成并签名，暂不能更正笔录", code="not_ready")
    folder = Path(recording.folder)
    loop = asyncio.get_running_loop()
    transcript = await loop.run_in_executor(None, load_json, folder / "transcript.json")
    revised, revision = await _revised(ctx, visit.id, transcript)
    index = int(ctx.request.match_info["line"])
    if index >= len(revised["lines"]):
        raise NotFoundError("笔录中没有这一句")
    line = revised["lines"][index]
    if body.text == line["text"]:
        raise ConflictError("更正内容与现有文字相同", code="unchanged")
    names = await archive.describe(ctx.db, visit.id) or {}
    revision += 1
    row = TranscriptCorrection(
        visit_id=visit.id,
        line=index,
        revision=revision,
        machine_text=str(transcript["lines"][index]["text"]),
        text=body.text,
        corrected_by_id=ctx.me.user_id,
        corrected_by=(ctx.me.display_name or ctx.me.username)[:64],
    )
    async with ctx.write() as db:
        db.add(row)
        await db.flush()
        done = await _corrections(db, visit.id)
        key = load_signing_key(ctx.settings.data_dir)
        details = {k: v for k, v in names.items() if isinstance(v, str)}
        try:
            data = await loop.run_in_executor(
                None, write_revision, folder, key, revision, done, ctx.settings.tz, details
            )
        except RevisionError as exc:
            raise ConflictError(str(exc), code="not_correctable") from exc
        await index_texts(db, visit.id, data, data.get("notes", []))
        ctx.audit_visit(
            "transcript.correct",
            visit.id,
            visit.court_id,
            db=db,
            line=index,
            revision=revision,
            machine_text=row.machine_text,
            text=body.text,
        )
    return CorrectionOut(revision=revision, line=_line_out(data["lines"][index]))


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
    elif _from_start(ctx.request):
        # read from its first byte (a player starting, or a whole copy taken without
        # download=1): on the audit trail whatever the page reports (seeks are not)
        await audit_now(ctx, "recording.fetch", visit, file=name)
    return web.FileResponse(path, headers=headers)


def _from_start(request: web.Request) -> bool:
    """The request may read a file from its first byte, or all of it: no range, one starting
    at 0, a suffix range (``bytes=-N``: the whole file when N is its size or more), a
    malformed one (served whole), or any with ``If-Range`` (served whole when it does not
    match)."""
    if hdrs.IF_RANGE in request.headers:
        return True
    try:
        start = request.http_range.start
    except ValueError:
        return True
    return start is None or start <= 0


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

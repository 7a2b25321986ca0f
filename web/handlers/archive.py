"""The archive: search recordings, and what its other routes share (access through
``web/archive.py``, the answer for one recording, the audit of reads). Playback is in
``playback.py``, sealing and integrity checks in ``sealing.py``, certified exports in
``exports.py``. Every search, open, play, download and export is an audit event."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, StringConstraints, field_validator

from config.audit import record_audit
from config.errors import AppError, NotFoundError
from config.privacy import mask_id_number, mask_text
from recorder.models import Recording, RecordingState
from recorder.search import QueryError, parse_query
from scheduler.models import Role, Visit
from web import archive
from web.keys import DB
from web.routes import ALL_STAFF, Context, api
from web.schemas import Answer, Page, PageQuery

EXPORTERS = {Role.archivist, Role.admin}


VISIT_ID = r"{visit_id:[0-9a-f]{32}}"


Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=256)]
Text64 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class ArchiveQuery(PageQuery):
    """Search criteria; all given ones must hold."""

    number: Text64 | None = None
    petitioner: Text64 | None = None
    # the last 4 to 6 characters of the ID number, or the whole number: a longer tail would
    # let repeated searches reveal the digits the lists mask
    id_tail: (
        Annotated[str, StringConstraints(pattern=r"^(?:[0-9Xx]{4,6}|[0-9]{17}[0-9Xx])$")] | None
    ) = None
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
        # a number said aloud and transcribed is masked in lists as a typed one is, and the
        # petitioner's name as in the list (the whole line stays in playback, audited)
        hits=[_hit(h) for h in found.hits],
    )


def _hit(hit: archive.Hit) -> HitOut:
    speaker = archive.mask_name(hit.speaker) if hit.role == "petitioner" else hit.speaker
    return HitOut(**{**hit.__dict__, "speaker": speaker, "text": mask_text(hit.text)})


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
    """By petition number, petitioner (name prefix, or the last 4 to 6 characters of the ID
    number, or all of it), court (with the courts below), judge, dates, state and words said."""
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


def recording_files(folder: Path) -> dict[str, Path]:
    """The recording's files by their name relative to its folder; nothing else is served."""
    if not folder.is_dir():
        return {}
    return {
        p.relative_to(folder).as_posix(): p
        for p in folder.rglob("*")
        if p.is_file() and not p.is_symlink() and not p.name.endswith(".tmp")
    }


def file_kind(name: str) -> str:
    if name == "composite.mp4":
        return "composite"
    if name.startswith("tracks/"):
        return "original"
    if name.startswith("transcript."):
        return "transcript"
    if name in ("manifest.json", "SHA256SUMS", "SHA256SUMS.sig", "public-key.pem"):
        return "proof"
    return "other"


def load_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


async def open_recording(ctx: Context) -> tuple[Recording, Visit, dict[str, Any]]:
    """The recording of the path's visit if the caller may see it (else 404), its visit and
    the names the pages show."""
    recording, visit = await archive.accessible(
        ctx.db, ctx.me.actor(), ctx.request.match_info["visit_id"]
    )
    names = await archive.describe(ctx.db, visit.id)
    if names is None:
        raise NotFoundError("录像不存在或您无权查看")
    return recording, visit, names


def item_of(recording: Recording, visit: Visit, names: dict[str, Any]) -> ArchiveItem:
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

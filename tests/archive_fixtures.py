"""Archive test data: visits in chosen courts, and real recordings for them.

``record_visit`` writes per-track originals as the recorder writes them (VP8 and Opus in
WebM, made by ffmpeg from a test pattern and an espeak-ng sentence), a ``recording.json``,
and runs the real post-visit pipeline on them (composite, PocketSphinx transcript held to a
small grammar, signed manifest, full-text index). ``signed_recording`` is the quick kind:
small files, signed, indexed from a given transcript, for the access and search tests.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from config.db import Database, utcnow
from config.settings import Settings
from recorder.jobs import Pipeline
from recorder.manifest import load_signing_key, sign_folder
from recorder.models import Integrity, Recording, RecordingState
from recorder.search import index_texts
from recorder.state import TrackFile, VisitRecording, save_state
from scheduler.models import IdType, Petition, Petitioner, Visit, VisitState

SENTENCE = "i object to the judgment of the district court"
GRAMMAR = """#JSGF V1.0;
grammar court;
public <s> = ( good morning | i object to the judgment of the district court
             | the hearing is adjourned | please show the evidence | thank you ) + ;
"""


@dataclass
class ArchivedVisit:
    """A visit of the test world with a recording."""

    visit_id: str
    number: str
    petitioner: str
    id_number: str
    folder: Path


async def add_visit(
    settings: Settings,
    *,
    court_id: int,
    receiving_court_id: int,
    judge_id: int | None,
    number: str,
    petitioner: str,
    id_number: str,
    category: str = "other",
    starts_at: datetime | None = None,
) -> str:
    """An ended visit of a new petitioner and petition (straight into the tables)."""
    starts_at = starts_at or utcnow() - timedelta(hours=2)
    database = Database(settings)
    async with database.writer() as db:
        person = Petitioner(
            court_id=court_id, name=petitioner, id_type=IdType.resident_id, id_number=id_number
        )
        db.add(person)
        await db.flush()
        petition = Petition(
            court_id=court_id,
            petitioner_id=person.id,
            number=number,
            category=category,
            summary="对一审判决不服，请求复查",
        )
        db.add(petition)
        await db.flush()
        visit = Visit(
            petition_id=petition.id,
            court_id=court_id,
            receiving_court_id=receiving_court_id,
            judge_id=judge_id,
            state=VisitState.ended,
            starts_at=starts_at,
            ends_at=starts_at + timedelta(minutes=30),
        )
        db.add(visit)
        await db.flush()
        visit_id = visit.id
    await database.dispose()
    return visit_id


async def signed_recording(
    settings: Settings,
    visit_id: str,
    *,
    started_at: datetime | None = None,
    lines: list[dict[str, Any]] | None = None,
    notes: list[dict[str, Any]] | None = None,
) -> Path:
    """A small signed recording folder with a transcript, its row and its index."""
    started_at = started_at or utcnow() - timedelta(hours=1)
    start = started_at.timestamp()
    folder = settings.resolved_recordings_dir / visit_id
    (folder / "tracks").mkdir(parents=True)
    (folder / "tracks" / "petitioner-camera-1.webm").write_bytes(b"\x1aE\xdf\xa3" + b"v" * 8000)
    (folder / "composite.mp4").write_bytes(bytes(range(256)) * 64)
    transcript: dict[str, Any] = {
        "visit_id": visit_id,
        "engine": "fixture",
        "available": True,
        "reason": "",
        "visit_start": start,
        "lines": [{"track_id": "t1", "name": "", **line} for line in (lines or [])],
        "notes": [{"at": start + n.pop("offset", 0.0), **n} for n in (notes or [])],
    }
    (folder / "transcript.json").write_text(json.dumps(transcript, ensure_ascii=False))
    (folder / "transcript.txt").write_text("远程视频接访笔录\n")
    sign_folder(folder, load_signing_key(settings.data_dir), {"visit_id": visit_id})
    database = Database(settings)
    async with database.writer() as db:
        db.add(ready_row(visit_id, folder, started_at))
        await db.flush()
        await index_texts(db, visit_id, transcript, transcript["notes"])
    await database.dispose()
    return folder


def ready_row(visit_id: str, folder: Path, started_at: datetime) -> Recording:
    """The ``recordings`` row of a signed recording in ``folder``, 20 minutes long."""
    return Recording(
        visit_id=visit_id,
        state=RecordingState.ready,
        step="done",
        progress=100,
        folder=str(folder),
        started_at=started_at,
        ended_at=started_at + timedelta(minutes=20),
        duration_seconds=1200.0,
        integrity=Integrity.signed.value,
        details={},
    )


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def write_originals(folder: Path, seconds: float) -> tuple[Path, Path, Path]:
    """Petitioner camera (VP8), judge camera (VP8) and petitioner microphone (Opus), as
    the recorder writes them: WebM files of encoded frames."""
    tracks = folder / "tracks"
    tracks.mkdir(parents=True, exist_ok=True)
    petitioner, judge = tracks / "petitioner-camera-1.webm", tracks / "judge-camera-1.webm"
    mic = tracks / "petitioner-microphone-1.webm"
    for path, pattern in ((petitioner, "testsrc2"), (judge, "smptebars")):
        _run(
            "ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi",
            "-i", f"{pattern}=size=320x240:rate=15", "-t", str(seconds),
            "-c:v", "libvpx", "-b:v", "300k", "-g", "15", "-deadline", "realtime",
            str(path),
        )  # fmt: skip
    speech = folder / "speech.wav"
    _run("espeak-ng", "-v", "en-us", "-s", "140", "-w", str(speech), SENTENCE)
    _run(
        "ffmpeg", "-loglevel", "error", "-y", "-i", str(speech),
        "-af", f"adelay=2000:all=1,apad=whole_dur={seconds}", "-t", str(seconds),
        "-ar", "48000", "-ac", "2", "-c:a", "libopus", str(mic),
    )  # fmt: skip
    speech.unlink()
    return petitioner, judge, mic


async def record_visit(
    settings: Settings,
    visit_id: str,
    details: dict[str, Any],
    *,
    seconds: float = 10.0,
    expect: RecordingState = RecordingState.ready,
) -> Path:
    """A real recording of ``visit_id`` run through the whole post-visit pipeline, which
    leaves it ``expect``."""
    folder = settings.resolved_recordings_dir / visit_id
    petitioner, judge, mic = write_originals(folder, seconds)
    t0 = time.time() - seconds - 60
    tracks = [
        TrackFile("v1", "p1", "petitioner", "张三", "video", "vp8", "camera",
                  [petitioner.relative_to(folder).as_posix()], t0, 0, 90000, t0 + seconds),
        TrackFile("v2", "p2", "judge", "李法官", "video", "vp8", "camera",
                  [judge.relative_to(folder).as_posix()], t0 + 0.2, 0, 90000, t0 + seconds),
        TrackFile("a1", "p1", "petitioner", "张三", "audio", "opus", "microphone",
                  [mic.relative_to(folder).as_posix()], t0, 0, 48000, t0 + seconds),
    ]  # fmt: skip
    notes = details.get("notes", [])
    for note in notes:
        note["at"] = t0 + note.pop("offset", 0.0)
    save_state(
        folder,
        VisitRecording(
            visit_id=visit_id,
            state=RecordingState.queued,
            started_at=t0,
            stopped_at=t0 + seconds,
            details={"notes": notes},
            tracks=tracks,
        ),
    )
    database = Database(settings)
    pipeline = Pipeline(database, settings)
    try:
        async with database.writer() as db:
            db.add(
                Recording(
                    visit_id=visit_id,
                    state=RecordingState.recording,
                    folder=str(folder),
                    started_at=datetime.fromtimestamp(t0, UTC),
                    details={},
                )
            )
        await pipeline.enqueue(visit_id, details)
        await pipeline.wait(visit_id)
    finally:
        await pipeline.close()
        await database.dispose()
    database = Database(settings)
    async with database.reader() as db:
        row = await db.get(Recording, visit_id)
        assert row is not None and row.state is expect, row and row.message
    await database.dispose()
    return folder


def grammar_settings(settings: Settings, folder: Path) -> Settings:
    """``settings`` with PocketSphinx held to the test grammar."""
    grammar = folder / "court.jsgf"
    grammar.write_text(GRAMMAR)
    return settings.model_copy(
        update={"transcribe_engine": "pocketsphinx", "transcribe_grammar": grammar}
    )


async def judged_yesterday(
    settings: Settings, world: Any, number: str, lines: list[dict[str, Any]]
) -> tuple[str, Path]:
    """A signed recording of yesterday's visit of 张三丰 (``number``), booked by basic_a and
    received by judge_a (mid_a), saying ``lines``; its visit id and folder."""
    visit_id = await add_visit(
        settings,
        court_id=world.courts["basic_a"],
        receiving_court_id=world.courts["mid_a"],
        judge_id=world.users["judge_a"],
        number=number,
        petitioner="张三丰",
        id_number="110101199003071234",
        starts_at=utcnow() - timedelta(days=1),
    )
    folder = await signed_recording(
        settings, visit_id, started_at=utcnow() - timedelta(days=1), lines=list(lines)
    )
    return visit_id, folder

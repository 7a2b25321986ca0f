"""The recording of a visit in the database: the post-visit pipeline's state (so a restart
resumes where it stopped) and what the pages and the archive show of it."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from config.db import Base, UTCDateTime, utcnow
from config.vocabulary import define
from recorder.state import SIGNED_STATES, RecordingState

__all__ = ["STEPS", "Integrity", "Recording", "RecordingState", "RecordingText"]


STEPS = ("finalize", "composite", "transcribe", "sign")


class Integrity(enum.StrEnum):
    """What the last check of a recording's files against its signed manifest found."""

    unsigned = "unsigned"  # not yet signed (still processing)
    signed = "signed"  # signed by the pipeline, not checked since
    verified = "verified"  # every hash and the signature held at ``integrity_checked_at``
    tampered = "tampered"  # a file is missing or changed, or the signature fails


define(
    "integrity",
    Integrity,
    {
        Integrity.unsigned: "未签名",
        Integrity.signed: "已签名",
        Integrity.verified: "核验通过",
        Integrity.tampered: "已被篡改",
    },
)


class Recording(Base):
    """One visit's recording (一案一录): folder, pipeline step, progress and outcome."""

    __tablename__ = "recordings"

    visit_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("visits.id", ondelete="RESTRICT"), primary_key=True
    )
    state: Mapped[RecordingState] = mapped_column(
        Enum(
            RecordingState,
            name="recording_state",
            native_enum=False,
            validate_strings=True,
            length=16,
        ),
        nullable=False,
    )
    step: Mapped[str] = mapped_column(String(16), default="", nullable=False)
    progress: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    message: Mapped[str] = mapped_column(String(512), default="", nullable=False)
    transcript: Mapped[str] = mapped_column(String(512), default="", nullable=False)
    folder: Mapped[str] = mapped_column(String(255), nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    interrupted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    hold_reason: Mapped[str] = mapped_column(String(256), default="", nullable=False)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sealed: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    seal_reason: Mapped[str] = mapped_column(String(256), default="", nullable=False)
    integrity: Mapped[str] = mapped_column(
        String(16), default=Integrity.unsigned.value, nullable=False
    )
    integrity_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    integrity_detail: Mapped[str] = mapped_column(String(512), default="", nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )

    __table_args__ = (Index("ix_recordings_started", "started_at"),)

    @property
    def verifiable(self) -> bool:
        """Its files can be checked against its signed manifest: processed (ready, empty),
        or failed after its originals and timeline were signed as they were."""
        return self.state in SIGNED_STATES or (
            self.state is RecordingState.failed and self.integrity != Integrity.unsigned.value
        )


class RecordingText(Base):
    """One transcript line or note of a recording, indexed for full-text search
    (recorder/search.py): ``tokens`` holds its Han bigrams and Latin words."""

    __tablename__ = "recording_texts"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    visit_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("recordings.visit_id", ondelete="CASCADE"), nullable=False
    )
    kind: Mapped[str] = mapped_column(String(8), nullable=False)  # line | note
    start: Mapped[float] = mapped_column(Float, nullable=False)  # seconds from visit start
    end: Mapped[float] = mapped_column(Float, nullable=False)
    role: Mapped[str] = mapped_column(String(16), default="", nullable=False)
    speaker: Mapped[str] = mapped_column(String(64), default="", nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    tokens: Mapped[str] = mapped_column(Text, nullable=False)

    __table_args__ = (Index("ix_recording_texts_visit", "visit_id", "start"),)


class TranscriptCorrection(Base):
    """A person's correction of one machine-transcribed line (by the visit's judge or an
    archivist, in playback). The machine text stays in the signed ``transcript.json``; each
    correction makes a new signed revision of the transcript (recorder/revisions.py)."""

    __tablename__ = "transcript_corrections"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    visit_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("recordings.visit_id", ondelete="CASCADE"), nullable=False
    )
    line: Mapped[int] = mapped_column(Integer, nullable=False)  # index in transcript.json
    revision: Mapped[int] = mapped_column(Integer, nullable=False)
    machine_text: Mapped[str] = mapped_column(Text, nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    corrected_by_id: Mapped[int | None] = mapped_column(Integer)
    corrected_by: Mapped[str] = mapped_column(String(64), nullable=False)
    corrected_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)

    __table_args__ = (
        UniqueConstraint("visit_id", "revision", name="uq_transcript_corrections_revision"),
        Index("ix_transcript_corrections_visit", "visit_id", "line"),
    )

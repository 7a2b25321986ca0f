"""The recording of a visit in the database: the post-visit pipeline's state (so a restart
resumes where it stopped) and what the pages and the archive show of it."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Enum, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from config.db import Base, UTCDateTime, utcnow


class RecordingState(enum.StrEnum):
    """Where a recording stands."""

    recording = "recording"  # the visit is in progress
    queued = "queued"  # ended; waiting for the pipeline
    processing = "processing"
    ready = "ready"  # composite, transcripts and signed manifest done
    failed = "failed"  # a step failed (message says which); retried on the next start
    deleted = "deleted"  # media removed after retention; manifest and deletion record kept


STEPS = ("finalize", "composite", "transcribe", "sign")


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
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )

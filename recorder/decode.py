"""Reading recorded tracks back: every decodable frame with its time, damaged frames
skipped (a track repaired after a crash may end in one)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av

log = logging.getLogger("vreception.recorder")


def decoded(path: Path, kind: str) -> Iterator[tuple[float, Any]]:
    """(seconds from the file's zero, frame) of the first ``kind`` ("video" or "audio")
    stream of ``path``; a file that cannot be opened yields nothing and is logged."""
    try:
        with av.open(str(path)) as container:
            stream: Any
            if kind == "video":
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
            else:
                stream = container.streams.audio[0]
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    continue
                for frame in frames:
                    pts, time_base = getattr(frame, "pts", None), getattr(frame, "time_base", None)
                    if pts is not None and time_base is not None:
                        yield float(pts * time_base), frame
    except (av.FFmpegError, OSError, IndexError) as exc:
        log.error("cannot read %s: %s", path, exc)

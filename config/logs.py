"""Log output: plain text lines, or one JSON object per line for the journal and collectors.

Either way every record passes the privacy filter (config/privacy.py) first, so ID and
phone numbers are masked before anything is written; both formatters mask a record's
traceback too, which the filter does not see.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from types import TracebackType
from typing import Literal
from zoneinfo import ZoneInfo

from config.privacy import MaskingFilter, mask_text

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_SysExcInfo = (
    tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
)


class MaskingFormatter(logging.Formatter):
    """The plain text format, masked as a whole: the message, a traceback (a database
    error's ``[parameters: (...)]`` holds the numbers a statement was given) and a stack.

    The traceback and stack are masked as they are made, so the text cached on the record
    (``exc_text``) is masked for any other handler too."""

    def formatException(self, ei: _SysExcInfo) -> str:
        return mask_text(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return mask_text(super().formatStack(stack_info))

    def format(self, record: logging.LogRecord) -> str:
        return mask_text(super().format(record))


class JsonFormatter(logging.Formatter):
    """``{"time": "2026-12-01T09:30:00.123+08:00", "level": "INFO", "logger": ...,
    "message": ...}``, plus ``exception`` (masked too) when the record carries one."""

    def __init__(self, tz: ZoneInfo) -> None:
        super().__init__()
        self.tz = tz

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, self.tz).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = mask_text(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = mask_text(record.exc_text)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str, fmt: Literal["text", "json"] = "text", tz: str = "UTC") -> None:
    """Send every log record to stderr, masked, as text or JSON lines."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter(ZoneInfo(tz)))
    else:
        handler.setFormatter(MaskingFormatter(TEXT_FORMAT))
    handler.addFilter(MaskingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if fmt == "json":  # warnings and a crash's traceback become JSON lines too
        logging.captureWarnings(True)
        sys.excepthook = _log_uncaught


def _log_uncaught(
    kind: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    logging.getLogger("vreception").critical("uncaught exception", exc_info=(kind, value, tb))

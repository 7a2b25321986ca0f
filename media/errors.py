"""Errors of the relay."""

from __future__ import annotations


class MediaError(Exception):
    """A media negotiation or forwarding failure, with a machine-readable code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

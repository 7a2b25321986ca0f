"""The /visit signaling protocol, version 1: every inbound message is a strict model.

Unknown fields, wrong types and oversize values are refused; see docs/protocol.md.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from config.vocabulary import GUEST_ROLES, ParticipantRole

__all__ = ["GUEST_ROLES", "ErrorCode", "Message", "ParticipantRole", "ProtocolError", "parse"]

PROTOCOL_VERSION = 1

VisitId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
ParticipantId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
ShortText = Annotated[str, StringConstraints(max_length=128)]


class ErrorCode(enum.StrEnum):
    """Codes of the ``error`` event and of refused acknowledgements."""

    invalid_message = "invalid_message"
    unsupported_version = "unsupported_version"
    rate_limited = "rate_limited"
    not_joined = "not_joined"
    already_joined = "already_joined"
    unauthenticated = "unauthenticated"
    invalid_code = "invalid_code"
    expired_code = "expired_code"
    used_code = "used_code"
    revoked_code = "revoked_code"
    not_entitled = "not_entitled"
    visit_closed = "visit_closed"
    forbidden = "forbidden"
    not_admitted = "not_admitted"
    not_open = "not_open"  # a meeting's invitee before its host opened it: the page waits
    unknown_participant = "unknown_participant"
    media_failed = "media_failed"
    invalid_sdp = "invalid_sdp"
    wrong_node = "wrong_node"
    internal_error = "internal_error"


class Message(BaseModel):
    """Base of inbound messages: strict types, no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Join(Message):
    v: Literal[1]
    visit_id: VisitId
    code: Annotated[str, StringConstraints(min_length=8, max_length=40)] | None = None
    rejoin: Annotated[str, StringConstraints(min_length=16, max_length=1024)] | None = None
    watch: bool = False  # a staff member of a supervising court observes (监看)


class Admit(Message):
    participant_id: ParticipantId


class Refuse(Message):
    participant_id: ParticipantId
    reason: ShortText = ""


class Invite(Message):
    role: Literal["lawyer", "mediator"]
    label: ShortText = ""


class MediaState(Message):
    audio: bool
    video: bool
    evidence: bool = False


MAX_SDP = 64 * 1024
Sdp = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SDP)]


class Publish(Message):
    type: Literal["offer"]
    sdp: Sdp
    stream: Literal["main", "evidence"] = "main"


class Note(Message):
    text: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class Unpublish(Message):
    stream: Literal["main", "evidence"]


class Subscribe(Message):
    restart: bool = False  # a new connection instead of a re-offer on the existing one


class SubscribeAnswer(Message):
    type: Literal["answer"]
    sdp: Sdp


Mid = Annotated[str, StringConstraints(min_length=1, max_length=16)]
Height = Annotated[int, Field(ge=0, le=8640)]


class View(Message):
    """How tall the page shows each picture it receives: media section's MID → device
    pixels (0: not shown)."""

    heights: Annotated[dict[Mid, Height], Field(max_length=64)]


class Empty(Message):
    pass


INBOUND: dict[str, type[Message]] = {
    "join": Join,
    "admit": Admit,
    "refuse": Refuse,
    "invite": Invite,
    "media_state": MediaState,
    "publish": Publish,
    "unpublish": Unpublish,
    "note": Note,
    "subscribe": Subscribe,
    "subscribe_answer": SubscribeAnswer,
    "view": View,
    "leave": Empty,
    "end": Empty,
}


class ProtocolError(Exception):
    """A refused message; the connection survives and gets an ``error`` event."""

    def __init__(self, code: ErrorCode, message: str, details: Any | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def payload(self, event: str) -> dict[str, Any]:
        body: dict[str, Any] = {"event": event, "code": self.code.value, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return body


def parse(event: str, data: Any) -> Message:
    """Validate one inbound message (``data`` as socket.io delivered it)."""
    model = INBOUND[event]
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.invalid_message, "消息须为 JSON 对象")
    version = data.get("v")
    if event == "join" and version is not None and type(version) is not int:  # 1.0, true
        raise ProtocolError(ErrorCode.invalid_message, "协议版本 v 须为整数 1")
    if event == "join" and version not in (None, PROTOCOL_VERSION):
        raise ProtocolError(
            ErrorCode.unsupported_version,
            f"不支持的协议版本 {data.get('v')}（服务器为 {PROTOCOL_VERSION}）",
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [
            {"field": ".".join(str(p) for p in e["loc"]) or "(message)", "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise ProtocolError(ErrorCode.invalid_message, "消息格式有误", details) from None

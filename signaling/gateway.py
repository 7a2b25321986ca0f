"""What signaling needs from the rest of the system, as a Protocol that ``web`` implements:
who a staff connection is, whether they may enter a visit, one-time codes, visit states."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from signaling.protocol import ErrorCode, ParticipantRole, ProtocolError


@dataclass(frozen=True)
class Staff:
    """A logged-in staff member behind a socket.io connection."""

    user_id: int
    name: str
    role: str  # the account's role (operator, judge, archivist, admin)
    court_id: int | None
    session_id: str = ""  # the login session the connection was opened with


@dataclass(frozen=True)
class Identity:
    """Who a participant is; ``key`` is stable across reconnects, unlike the participant id."""

    key: str
    role: ParticipantRole
    name: str
    user_id: int | None = None
    host: bool = False  # holds the call (see VisitGateway.entitle); staff only
    court: str = ""  # an observer's court, shown to everyone in the room


@dataclass(frozen=True)
class Invitation:
    code: str
    role: ParticipantRole
    expires_at: datetime


class VisitGateway(Protocol):
    """Implemented in ``web`` (wired in ``web/app.py``) over the scheduler and the database."""

    async def staff(self, environ: dict[str, Any]) -> Staff | None:
        """The staff member of the connection's session cookie, if any."""
        ...

    async def current(self, staff: Staff) -> Staff | None:
        """The staff member again, checked now: None once their session has ended (logout,
        expiry), their account was disabled or their role or court changed. A live socket
        counts as activity: it keeps the session from idling out."""
        ...

    async def entitle(self, visit_id: str, staff: Staff, watch: bool = False) -> Identity:
        """The staff member's place in the visit; raises ProtocolError(not_entitled).
        ``host`` when the call depends on them (ended as abandoned while no host is there;
        a host may end it). ``watch``: as an observer of a supervising court (监看), who
        receives and never sends; the watch is audited."""
        ...

    async def watch_stopped(self, visit_id: str, identity: Identity, reason: str) -> None:
        """An observer left the room (audited)."""
        ...

    async def redeem(self, visit_id: str, code: str) -> Identity:
        """Consume a one-time code of this visit; raises ProtocolError(*_code)."""
        ...

    async def release(self, visit_id: str, identity: Identity) -> None:
        """The code ``identity`` was redeemed with is usable again: the join it opened did
        not complete (the guest never got the answer, nor the rejoin token in it)."""
        ...

    async def may_host(self, visit_id: str, staff: Staff) -> None:
        """Raise ``forbidden`` unless ``staff`` still holds the visit's call now (admit,
        refuse, invite, note): the visit may have been given to another judge since they
        joined."""
        ...

    async def starts_recording(self, visit_id: str, identity: Identity) -> bool:
        """Whether this participant's entering the call starts the visit's recording."""
        ...

    async def recording_started(self, visit_id: str) -> None:
        """The room started recording the visit (its record exists from now on)."""
        ...

    async def is_open(self, visit_id: str) -> bool:
        """False once the visit has ended, was cancelled or never existed."""
        ...

    async def open_visits(self, visit_ids: list[str]) -> set[str]:
        """Those of ``visit_ids`` that are still open (one query for a node's rooms)."""
        ...

    async def room_roles(self, visit_id: str, staff: list[Staff]) -> dict[int, str | None]:
        """Each staff member's role in the visit's room now, by user id (None: no longer
        entitled, e.g. the visit given to another judge)."""
        ...

    async def lobby(self, visit_id: str, identity: Identity) -> None:
        """The petitioner waits in the lobby (checked_in → in_lobby)."""
        ...

    async def admitted(self, visit_id: str, judge: Staff, identity: Identity) -> None:
        """The judge admitted a participant (the petitioner: in_lobby → in_progress);
        raises ProtocolError when the visit cannot go on (then nobody is admitted)."""
        ...

    async def refused(self, visit_id: str, judge: Staff, identity: Identity, reason: str) -> None:
        """The judge refused a participant (the petitioner: back to checked_in)."""
        ...

    async def ended(self, visit_id: str, host: Staff) -> None:
        """The host (the judge; an on-site reception's operator) ended the visit for
        everyone (the room is closed through ``VisitNamespace.close_visit`` and the
        recording processed)."""
        ...

    async def room_event(
        self, visit_id: str, event: str, identity: Identity, **detail: Any
    ) -> None:
        """Something happened in the live room (joined, left, evidence shown/stopped…):
        kept on the visit's timeline."""
        ...

    async def note(self, visit_id: str, identity: Identity, text: str) -> None:
        """The host's note on the visit's timeline (and so in its minutes and transcript);
        raises when it could not be kept: the host is told, the note is not shown as kept."""
        ...

    async def invite(
        self, visit_id: str, judge: Staff, role: ParticipantRole, label: str
    ) -> Invitation:
        """Issue a one-time code for a lawyer or mediator bound to this visit."""
        ...


class RejoinTokens:
    """Tokens with which a guest rejoins (a dropped connection, a crashed browser, a new tab):
    the one-time code is spent, the identity is kept. Opaque: AES-GCM encrypted and bound to
    the visit, so they carry nothing readable. A rejoin replaces the identity's previous
    connection (``replaced``): one live connection per identity."""

    def __init__(self, secret: bytes, ttl_seconds: int = 24 * 3600) -> None:
        self._aead = AESGCM(hashlib.sha256(b"vreception-rejoin:" + secret).digest())
        self._ttl = ttl_seconds

    def issue(self, visit_id: str, identity: Identity, admitted: bool) -> str:
        body = json.dumps(
            {
                "k": identity.key,
                "r": identity.role.value,
                "n": identity.name,
                "a": admitted,
                "e": int(time.time()) + self._ttl,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        nonce = os.urandom(12)
        sealed = nonce + self._aead.encrypt(nonce, body, visit_id.encode())
        return base64.urlsafe_b64encode(sealed).decode().rstrip("=")

    def verify(self, visit_id: str, token: str) -> tuple[Identity, bool]:
        """The identity and whether it was admitted; raises ProtocolError(invalid_code) for a
        token of another visit or a forged one, ProtocolError(expired_code) once expired."""
        try:
            sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            body = self._aead.decrypt(sealed[:12], sealed[12:], visit_id.encode())
            data = json.loads(body)
            identity = Identity(
                key=str(data["k"]), role=ParticipantRole(data["r"]), name=str(data["n"])
            )
            admitted, expires = bool(data["a"]), int(data["e"])
        except (InvalidTag, ValueError, KeyError, TypeError, binascii.Error):
            raise ProtocolError(ErrorCode.invalid_code, "重新加入凭证无效") from None
        if expires < time.time():
            raise ProtocolError(ErrorCode.expired_code, "重新加入凭证已过期，请使用新的接访码")
        return identity, admitted

"""The signaling gateway: staff sessions, entitlement, one-time codes and visit states."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import select

from config.audit import record_audit
from config.db import Database, utcnow
from config.errors import AppError
from config.settings import Settings
from scheduler import visits as vs
from scheduler.codes import VisitCodeError, issue_visit_code, verify_visit_code
from scheduler.models import (
    CodeRole,
    Petition,
    Petitioner,
    Role,
    Visit,
    VisitEvent,
    VisitEventKind,
    VisitState,
)
from scheduler.scope import Actor
from signaling.gateway import Identity, Invitation, Staff
from signaling.protocol import ErrorCode, ParticipantRole, ProtocolError
from web import pages
from web.archive import describe
from web.auth import SessionProblem, session_principal, touch_session
from web.keys import PIPELINE

log = logging.getLogger("vreception.signaling")

OPEN = (VisitState.scheduled, VisitState.checked_in, VisitState.in_lobby, VisitState.in_progress)
ROLE_NAMES = {
    ParticipantRole.petitioner: "信访人",
    ParticipantRole.lawyer: "律师",
    ParticipantRole.mediator: "调解员",
}


# what the recording's overlay, transcript header and manifest name of the visit
RECORDING_NAMES = (
    "court_name",
    "receiving_court_name",
    "petition_number",
    "petition_category",
    "petitioner_name",
    "judge_name",
)


class DatabaseVisitGateway:
    """VisitGateway over the database (see signaling/gateway.py)."""

    def __init__(
        self, app: web.Application, database: Database, settings: Settings, secret: bytes
    ) -> None:
        self._app = app
        self._db = database
        self._settings = settings
        self._secret = secret

    async def staff(self, environ: dict[str, Any]) -> Staff | None:
        request = environ.get("aiohttp.request")
        if request is None:
            return None
        principal = await pages.page_principal(request)
        if principal is None:
            return None
        return Staff(
            user_id=principal.user_id,
            name=principal.display_name,
            role=principal.role.value,
            court_id=principal.court_id,
            session_id=principal.session_id,
        )

    async def current(self, staff: Staff) -> Staff | None:
        try:
            async with self._db.reader() as db:
                now = await session_principal(db, self._settings, staff.session_id, None, live=True)
        except SessionProblem:
            return None
        if (now.user_id, now.role.value, now.court_id) != (
            staff.user_id,
            staff.role,
            staff.court_id,
        ):
            return None
        if now.needs_touch:
            async with self._db.writer() as db:
                await touch_session(db, now.session_id)
        return staff

    async def entitle(self, visit_id: str, staff: Staff) -> Identity:
        async with self._db.reader() as db:
            visit = await db.get(Visit, visit_id)
        if visit is not None:
            if staff.role == Role.judge.value and (
                visit.judge_id == staff.user_id
                or (visit.judge_id is None and visit.receiving_court_id == staff.court_id)
            ):
                return Identity(
                    key=f"user:{staff.user_id}",
                    role=ParticipantRole.judge,
                    name=staff.name,
                    user_id=staff.user_id,
                )
            if staff.role == Role.operator.value and visit.court_id == staff.court_id:
                return Identity(
                    key=f"user:{staff.user_id}",
                    role=ParticipantRole.operator,
                    name=staff.name,
                    user_id=staff.user_id,
                )
        raise ProtocolError(ErrorCode.not_entitled, "您无权进入该接访")

    async def redeem(self, visit_id: str, code: str) -> Identity:
        try:
            async with self._db.writer() as db:
                record = await verify_visit_code(
                    db, secret=self._secret, code=code, visit_id=visit_id
                )
                role = ParticipantRole(record.role.value)
                name = record.label or ROLE_NAMES[role]
                if role is ParticipantRole.petitioner:
                    name = (
                        await db.scalar(
                            select(Petitioner.name)
                            .join(Petition, Petition.petitioner_id == Petitioner.id)
                            .join(Visit, Visit.petition_id == Petition.id)
                            .where(Visit.id == visit_id)
                        )
                        or name
                    )
                record_audit(
                    db,
                    action="visit.code_used",
                    actor_type="guest",
                    actor_id=f"code:{record.id}",
                    actor_name=name,
                    target_type="visit",
                    target_id=visit_id,
                    detail={"role": role.value},
                )
                return Identity(key=f"code:{record.id}", role=role, name=name)
        except VisitCodeError as exc:
            raise ProtocolError(ErrorCode(exc.code), exc.message) from None

    async def is_open(self, visit_id: str) -> bool:
        async with self._db.reader() as db:
            visit = await db.get(Visit, visit_id)
        return visit is not None and visit.state in OPEN

    async def _move(self, visit_id: str, to: VisitState, actor: Actor, **detail: Any) -> None:
        try:
            async with self._db.writer() as db:
                await vs.change_state(db, actor, visit_id, to, **detail)
        except AppError as exc:  # already there, or moved by someone else: log, go on
            log.info("visit %s: not moved to %s: %s", visit_id, to.value, exc.message)

    @staticmethod
    def _actor(staff: Staff) -> Actor:
        return Actor(
            user_id=staff.user_id,
            username=staff.name,
            role=Role(staff.role),
            court_id=staff.court_id,
        )

    async def lobby(self, visit_id: str, identity: Identity) -> None:
        async with self._db.reader() as db:
            visit = await db.get(Visit, visit_id)
        if visit is not None and visit.state is VisitState.checked_in:
            await self._move(visit_id, VisitState.in_lobby, vs.SYSTEM, by="signaling")

    async def admitted(self, visit_id: str, judge: Staff, identity: Identity) -> None:
        if identity.role is ParticipantRole.petitioner:
            await self._move(visit_id, VisitState.in_progress, self._actor(judge))
            await self._app[PIPELINE].recording_started(visit_id)

    async def refused(self, visit_id: str, judge: Staff, identity: Identity, reason: str) -> None:
        if identity.role is ParticipantRole.petitioner:
            await self._move(visit_id, VisitState.checked_in, self._actor(judge), reason=reason)
        async with self._db.writer() as db:
            record_audit(
                db,
                action="visit.refused",
                actor_id=judge.user_id,
                actor_name=judge.name,
                target_type="visit",
                target_id=visit_id,
                court_id=judge.court_id,
                detail={"role": identity.role.value, "reason": reason},
            )

    async def ended(self, visit_id: str, judge: Staff) -> None:
        async with self._db.reader() as db:
            visit = await db.get(Visit, visit_id)
        if visit is None:
            return
        if visit.state is VisitState.in_progress:
            await self._move(visit_id, VisitState.ended, self._actor(judge))
        elif visit.state is VisitState.in_lobby:
            await self._move(visit_id, VisitState.ended, self._actor(judge), refused=True)
        await self._app[PIPELINE].enqueue(visit_id, await self.recording_details(visit_id))

    async def recording_details(self, visit_id: str) -> dict[str, Any]:
        """What the composite's overlay, the transcript header and the manifest name: the
        courts, the petition, the parties, and the room's events."""
        async with self._db.reader() as db:
            names = await describe(db, visit_id)
            events = (
                await db.scalars(
                    select(VisitEvent)
                    .where(VisitEvent.visit_id == visit_id, VisitEvent.kind == VisitEventKind.room)
                    .order_by(VisitEvent.id)
                )
            ).all()
        if names is None:
            return {}
        return {
            **{k: names[k] for k in RECORDING_NAMES},
            "events": [
                {"at": e.at.timestamp(), "name": e.actor_name, **e.detail}
                for e in events
                if e.detail.get("event") != "note"
            ],
            "notes": [
                {"at": e.at.timestamp(), "author": e.actor_name, "text": e.detail.get("text", "")}
                for e in events
                if e.detail.get("event") == "note"
            ],
        }

    async def room_event(
        self, visit_id: str, event: str, identity: Identity, **detail: Any
    ) -> None:
        try:
            async with self._db.writer() as db:
                db.add(
                    VisitEvent(
                        visit_id=visit_id,
                        at=utcnow(),
                        kind=VisitEventKind.room,
                        actor_id=identity.user_id,
                        actor_name=identity.name[:64],
                        detail={"event": event, "role": identity.role.value, **detail},
                    )
                )
        except Exception:  # the timeline must never break the call
            log.exception("visit %s: could not record room event %s", visit_id, event)

    async def invite(
        self, visit_id: str, judge: Staff, role: ParticipantRole, label: str
    ) -> Invitation:
        async with self._db.writer() as db:
            issued = await issue_visit_code(
                db,
                secret=self._secret,
                visit_id=visit_id,
                role=CodeRole(role.value),
                ttl=timedelta(minutes=self._settings.visit_code_ttl_minutes),
                length=self._settings.visit_code_length,
                created_by=judge.user_id,
                label=label,
            )
            record_audit(
                db,
                action="visit.invite",
                actor_id=judge.user_id,
                actor_name=judge.name,
                target_type="visit",
                target_id=visit_id,
                court_id=judge.court_id,
                detail={"role": role.value, "label": label},
            )
        return Invitation(code=issued.code, role=role, expires_at=issued.record.expires_at)

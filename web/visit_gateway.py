"""The signaling gateway: staff sessions, entitlement, one-time codes and visit states."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from config.audit import record_audit
from config.db import Database, utcnow
from config.errors import AppError, ConflictError
from config.settings import Settings
from config.vocabulary import EndReason, label
from scheduler import lifecycle
from scheduler.cases.models import MeetingCase
from scheduler.cases.words import VisitKind
from scheduler.codes import VisitCodeError, issue_visit_code, verify_visit_code
from scheduler.models import (
    CodeRole,
    Court,
    Petition,
    Petitioner,
    Role,
    Visit,
    VisitCode,
    VisitEvent,
    VisitEventKind,
    VisitState,
)
from scheduler.notify import push_all, take_outbox
from scheduler.scope import SYSTEM_ACTOR, Actor
from signaling.gateway import Identity, Invitation, Staff
from signaling.protocol import ErrorCode, ParticipantRole, ProtocolError
from web import pages
from web.archive import describe
from web.auth import SessionProblem, session_principal, touch_session
from web.keys import DB, NOTIFIER, PIPELINE, SECRET, SETTINGS, VISITS

log = logging.getLogger("vreception.signaling")

# A room's lease (signaling/placement.py, RedisPlacement: 45 s, renewed every 15 s): a visit
# in progress whose lease has been missing for longer has no node holding its room.
UNHELD_GRACE = timedelta(seconds=45)

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

    def __init__(self, app: web.Application) -> None:
        self._app = app
        # multi-node: when housekeeping first found each stale visit in progress held by no
        # node (see reap_abandoned)
        self._unheld_since: dict[str, datetime] = {}

    # the application's parts exist once it runs (cleanup contexts), not when it is built
    @property
    def _db(self) -> Database:
        return self._app[DB]

    @property
    def _settings(self) -> Settings:
        return self._app[SETTINGS]

    @property
    def _secret(self) -> bytes:
        return self._app[SECRET]

    async def staff(self, environ: dict[str, Any]) -> Staff | None:
        request = environ.get("aiohttp.request")
        if request is None:
            return None
        principal = await pages.page_principal(request)
        if principal is None or principal.must_change_password:
            return None  # (a password an administrator chose: nothing until it is changed)
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

    async def entitle(self, visit_id: str, staff: Staff, watch: bool = False) -> Identity:
        if watch:
            return await self._watch(visit_id, staff)
        actor = self._actor(staff)
        async with self._db.reader() as db:
            visit = await db.get(Visit, visit_id)
            invitees = await lifecycle.meeting_invitees(db, visit) if visit is not None else ()
        role = lifecycle.room_role(actor, visit, invitees) if visit is not None else None
        if visit is None or role is None:
            raise ProtocolError(ErrorCode.not_entitled, "您无权进入该接访")
        refusal = lifecycle.meeting_entry_refusal(visit, role, self._settings)
        if refusal is not None:
            # an invitee waits for the host (the page asks again); the host, too early, is told
            # from when
            waits = role is not lifecycle.MEETING_OPENED_BY
            raise ProtocolError(ErrorCode.not_open if waits else ErrorCode.not_admitted, refusal)
        if role is lifecycle.MEETING_OPENED_BY:

            async def change(db: AsyncSession, visit: Visit) -> None:
                await lifecycle.open_meeting(db, actor, visit)

            await self._change(visit_id, change)
        return Identity(
            key=f"user:{staff.user_id}",
            role=role,
            name=staff.name,
            user_id=staff.user_id,
            host=lifecycle.hosts(role, visit),
        )

    async def _watch(self, visit_id: str, staff: Staff) -> Identity:
        """监看: the lifecycle's rule decides (a court above the visit's courts, a visit in
        progress); the watch is audited before the observer sees anything."""
        actor = self._actor(staff)
        async with self._db.writer() as db:
            visit = await db.get(Visit, visit_id)
            refusal = (
                await lifecycle.watch_refusal(db, actor, visit)
                if visit is not None
                else "该接访已结束或不存在"
            )
            if visit is None or refusal is not None:
                raise ProtocolError(ErrorCode.not_entitled, refusal or "")
            court = await db.get(Court, staff.court_id) if staff.court_id else None
            court_name = court.name if court is not None else label(Role.admin)
            self._audit(db, visit, staff, "visit.watch_started", court=court_name)
        return Identity(
            key=f"watch:{staff.user_id}",
            role=ParticipantRole.observer,
            name=staff.name,
            user_id=staff.user_id,
            court=court_name,
        )

    @staticmethod
    def _audit(db: AsyncSession, visit: Visit, staff: Staff, action: str, **detail: Any) -> None:
        record_audit(
            db,
            action=action,
            actor_id=staff.user_id,
            actor_name=staff.name,
            target_type="visit",
            target_id=visit.id,
            court_id=visit.court_id,
            detail={"kind": visit.kind.value, **detail},
        )

    async def watch_stopped(self, visit_id: str, identity: Identity, reason: str) -> None:
        async with self._db.writer() as db:
            visit = await db.get(Visit, visit_id)
            if visit is None or identity.user_id is None:
                return
            staff = Staff(user_id=identity.user_id, name=identity.name, role="", court_id=None)
            self._audit(
                db, visit, staff, "visit.watch_stopped", court=identity.court, reason=reason
            )

    async def may_host(self, visit_id: str, staff: Staff) -> None:
        async with self._db.reader() as db:
            visit = await db.get(Visit, visit_id)
            if visit is None:
                raise ProtocolError(ErrorCode.visit_closed, "该接访已结束或不存在")
            try:
                lifecycle.require(self._actor(staff), lifecycle.Action.admit, visit)
            except AppError as exc:
                raise ProtocolError(ErrorCode.forbidden, exc.message) from None

    async def starts_recording(self, visit_id: str, identity: Identity) -> bool:
        async with self._db.reader() as db:
            visit = await db.get(Visit, visit_id)
        return visit is not None and lifecycle.starts_recording(identity.role, visit)

    async def recording_started(self, visit_id: str) -> None:
        await self._app[PIPELINE].recording_started(visit_id)

    async def redeem(self, visit_id: str, code: str) -> Identity:
        try:
            async with self._db.writer() as db:
                record = await verify_visit_code(
                    db, secret=self._secret, code=code, visit_id=visit_id
                )
                role = ParticipantRole(record.role.value)
                name = record.label or label(role)
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

    async def release(self, visit_id: str, identity: Identity) -> None:
        kind, _, number = identity.key.partition(":")
        if kind != "code" or not number.isdigit():
            return
        async with self._db.writer() as db:
            released = await db.execute(
                update(VisitCode)
                .where(
                    VisitCode.id == int(number),
                    VisitCode.visit_id == visit_id,
                    VisitCode.used_at.is_not(None),
                    VisitCode.revoked_at.is_(None),
                )
                .values(used_at=None)
                .execution_options(synchronize_session=False)
            )
            if getattr(released, "rowcount", 0):
                record_audit(
                    db,
                    action="visit.code_released",
                    actor_type="guest",
                    actor_id=identity.key,
                    actor_name=identity.name[:64],
                    target_type="visit",
                    target_id=visit_id,
                    detail={"role": identity.role.value},
                )

    async def is_open(self, visit_id: str) -> bool:
        async with self._db.reader() as db:
            visit = await db.get(Visit, visit_id)
        return visit is not None and visit.state in lifecycle.OPEN

    @staticmethod
    def _actor(staff: Staff) -> Actor:
        return Actor(
            user_id=staff.user_id,
            username=staff.name,
            role=Role(staff.role),
            court_id=staff.court_id,
        )

    async def _change(
        self, visit_id: str, change: Callable[[AsyncSession, Visit], Awaitable[Any]]
    ) -> Any:
        """Run a lifecycle change on the visit in one write; its refusals reach the
        participant as protocol errors, and its notifications go out after the commit."""
        try:
            async with self._db.writer() as db:
                visit = await db.get(Visit, visit_id)
                if visit is None:
                    raise ProtocolError(ErrorCode.visit_closed, "该接访已结束或不存在")
                result = await change(db, visit)
                outbox = take_outbox(db)
        except AppError as exc:
            code = ErrorCode.forbidden if exc.status == 403 else ErrorCode.visit_closed
            raise ProtocolError(code, exc.message) from None
        await push_all(self._app[NOTIFIER], outbox)
        return result

    async def lobby(self, visit_id: str, identity: Identity) -> None:
        async def change(db: AsyncSession, visit: Visit) -> None:
            if visit.state is VisitState.scheduled and await self._from_portal(db, identity):
                await lifecycle.check_in_online(db, visit)
            await lifecycle.enter_lobby(db, SYSTEM_ACTOR, visit)

        await self._change(visit_id, change)

    @staticmethod
    async def _from_portal(db: AsyncSession, identity: Identity) -> bool:
        """The petitioner's code was given by the portal (nobody on the staff issued it: a
        counter's code needs the check-in first), so they proved who they are there."""
        kind, _, number = identity.key.partition(":")
        if kind != "code" or not number.isdigit():
            return False
        code = await db.get(VisitCode, int(number))
        return code is not None and code.role is CodeRole.petitioner and code.created_by is None

    async def admitted(self, visit_id: str, judge: Staff, identity: Identity) -> None:
        if identity.role is not lifecycle.RECORDING_STARTS_WITH:
            # a lawyer or mediator: only once the visit is in progress (recorded)
            async with self._db.reader() as db:
                visit = await db.get(Visit, visit_id)
                if visit is None:
                    raise ProtocolError(ErrorCode.visit_closed, "该接访已结束或不存在")
                try:
                    lifecycle.admit_guest(self._actor(judge), visit)
                except ConflictError as exc:
                    raise ProtocolError(ErrorCode.not_admitted, exc.message) from None
                except AppError as exc:
                    raise ProtocolError(ErrorCode.forbidden, exc.message) from None
            return

        async def change(db: AsyncSession, visit: Visit) -> None:
            await lifecycle.admit_petitioner(db, self._actor(judge), visit)

        await self._change(visit_id, change)

    async def refused(self, visit_id: str, judge: Staff, identity: Identity, reason: str) -> None:
        async def change(db: AsyncSession, visit: Visit) -> None:
            if identity.role is lifecycle.RECORDING_STARTS_WITH:
                await lifecycle.send_back(db, self._actor(judge), visit, reason)
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

        await self._change(visit_id, change)

    async def ended(self, visit_id: str, host: Staff) -> None:
        await self.end(visit_id, self._actor(host))

    async def end(self, visit_id: str, actor: Actor, reason: EndReason = EndReason.ended) -> bool:
        """End the visit (lifecycle rules), then :meth:`finish` it. False when it had
        already ended."""

        async def change(db: AsyncSession, visit: Visit) -> bool:
            return await lifecycle.end_visit(db, actor, self._settings, visit, reason)

        ended: bool = await self._change(visit_id, change)
        await self.finish(visit_id, reason)
        return ended

    async def finish(self, visit_id: str, reason: EndReason = EndReason.ended) -> None:
        """What follows the end of a visit, wherever it was ended (the call, the lists,
        housekeeping): the live room closes for everyone (told why) and the recording is
        processed (finalized, composited, transcribed, signed)."""
        await self._app[VISITS].close_visit(visit_id, reason.value)
        await self._app[PIPELINE].enqueue(visit_id, await self.recording_details(visit_id))

    async def reap_abandoned(self, now: datetime | None = None) -> list[str]:
        """End, as ``abandoned``, every visit in progress whose room has had no host (its
        judge; an on-site reception's operator) for ``visit_abandon_minutes``: rooms on this
        node whose host left, and (after a
        restart) visits in progress that no node holds a room for and whose history has
        been quiet that long; with several nodes, only once no node has held their room for
        more than a lease (``UNHELD_GRACE``) of this node's successive runs."""
        now = now or utcnow()
        limit = timedelta(minutes=self._settings.visit_abandon_minutes)
        visits = self._app[VISITS]
        due = set(visits.host_absent(now.timestamp() - limit.total_seconds()))
        async with self._db.reader() as db:
            stale = await lifecycle.stale_live_visits(db, now, limit)
        unheld: dict[str, datetime] = {}
        for visit_id in stale:
            if visit_id in visits.rooms or await visits.placement.held(visit_id):
                continue
            if self._settings.embedded:  # this process holds every room: none is here
                due.add(visit_id)
                continue
            # With Redis a lease can be missing while its room lives: after Redis restarted
            # or failed over, until the owner's next renewal (every third of a lease) takes
            # it again. Only a visit still held by nobody more than a lease after it was
            # first found so has lost its room.
            unheld[visit_id] = since = self._unheld_since.get(visit_id, now)
            if now - since > UNHELD_GRACE:
                due.add(visit_id)
        self._unheld_since = unheld
        ended = []
        for visit_id in sorted(due):
            try:
                if await self.end(visit_id, SYSTEM_ACTOR, EndReason.abandoned):
                    ended.append(visit_id)
                    log.warning("visit %s: no host for %s; ended as abandoned", visit_id, limit)
            except ProtocolError as exc:  # ended or changed meanwhile
                log.info("visit %s: not ended as abandoned: %s", visit_id, exc.message)
        return ended

    async def open_visits(self, visit_ids: list[str]) -> set[str]:
        if not visit_ids:
            return set()
        async with self._db.reader() as db:
            return set(
                await db.scalars(
                    select(Visit.id).where(Visit.id.in_(visit_ids), Visit.state.in_(lifecycle.OPEN))
                )
            )

    async def room_roles(self, visit_id: str, staff: list[Staff]) -> dict[int, str | None]:
        async with self._db.reader() as db:
            visit = await db.get(Visit, visit_id)
            if visit is None:
                return {s.user_id: None for s in staff}
            invitees = await lifecycle.meeting_invitees(db, visit)
        roles: dict[int, str | None] = {}
        for s in staff:
            role = lifecycle.room_role(self._actor(s), visit, invitees)
            roles[s.user_id] = role.value if role is not None else None
        return roles

    async def recording_details(self, visit_id: str) -> dict[str, Any]:
        """What the composite's overlay, the transcript header and the manifest name: the
        courts, the petition, the parties, and the room's events."""
        async with self._db.reader() as db:
            names = await describe(db, visit_id)
            meeting = await db.scalar(select(Visit.kind).where(Visit.id == visit_id)) is (
                VisitKind.meeting
            )
            numbers = (
                await db.scalars(
                    select(Petition.number)
                    .join(MeetingCase, MeetingCase.petition_id == Petition.id)
                    .where(MeetingCase.visit_id == visit_id)
                    .order_by(Petition.number)
                )
            ).all()
            events = (
                await db.scalars(
                    select(VisitEvent)
                    .where(VisitEvent.visit_id == visit_id, VisitEvent.kind == VisitEventKind.room)
                    .order_by(VisitEvent.id)
                )
            ).all()
        if names is None:
            return {}
        if meeting:  # staff only, each named by their own tracks (主持人, 参会人员)
            names = {**names, "petitioner_name": "", "judge_name": ""}
            names["petition_number"] = "、".join(numbers)
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
            await self._room_event(visit_id, event, identity, **detail)
        except Exception:  # the timeline must never break the call
            log.exception("visit %s: could not record room event %s", visit_id, event)

    async def note(self, visit_id: str, identity: Identity, text: str) -> None:
        await self._room_event(visit_id, "note", identity, text=text)

    async def _room_event(
        self, visit_id: str, event: str, identity: Identity, **detail: Any
    ) -> None:
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

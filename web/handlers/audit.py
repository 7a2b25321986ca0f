"""The audit trail, read only: no route edits or deletes an event."""

from __future__ import annotations

from sqlalchemy import exists, func, or_, select

from config.audit import AuditEvent
from recorder.models import Recording
from scheduler.models import Role
from scheduler.scope import court_scope
from web.audit_text import ACTIONS, action_label, sentence, target_label
from web.routes import Context, api
from web.schemas import AuditActionOut, AuditOut, AuditQuery, Page, page_of


@api.route(
    "GET",
    "/audit",
    summary="Search the audit trail",
    tag="audit",
    roles={Role.admin, Role.archivist},
    query=AuditQuery,
    answer=Page[AuditOut],
)
async def list_audit(ctx: Context) -> Page[AuditOut]:
    """Admins see every event; archivists the events of their court and the courts below,
    but not those of a sealed recording (its seal reason, corrected texts...), which only
    admins see, as the recording itself. Each event comes with its Chinese sentence (times
    in the court's zone)."""
    q: AuditQuery = ctx.query
    stmt = select(AuditEvent)
    scope = await court_scope(ctx.db, ctx.me.actor())
    if scope is not None:
        stmt = stmt.where(AuditEvent.court_id.in_(scope))
    if ctx.me.role is not Role.admin:
        sealed = exists().where(
            AuditEvent.target_type == "visit",
            Recording.visit_id == AuditEvent.target_id,
            Recording.sealed.is_(True),
            or_(
                AuditEvent.action.startswith("recording."),
                AuditEvent.action.startswith("transcript."),
            ),
        )
        stmt = stmt.where(~sealed)
    if q.actor:
        stmt = stmt.where(or_(AuditEvent.actor_name == q.actor, AuditEvent.actor_id == q.actor))
    if q.action:
        stmt = stmt.where(AuditEvent.action == q.action)
    if q.target_type:
        stmt = stmt.where(AuditEvent.target_type == q.target_type)
    if q.target_id:
        stmt = stmt.where(AuditEvent.target_id == q.target_id)
    if q.since:
        stmt = stmt.where(AuditEvent.at >= q.since)
    if q.until:
        stmt = stmt.where(AuditEvent.at < q.until)
    total = await ctx.db.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = await ctx.db.scalars(stmt.order_by(AuditEvent.id.desc()).limit(q.limit).offset(q.offset))
    tz = ctx.settings.tz

    def out(event: AuditEvent) -> AuditOut:
        return AuditOut.model_validate(event).model_copy(
            update={
                "sentence": sentence(event, tz),
                "action_label": action_label(event.action),
                "target_label": target_label(event),
            }
        )

    return page_of(Page[AuditOut], rows, int(total or 0), q, out)


@api.route(
    "GET",
    "/audit/actions",
    summary="The audited actions and their Chinese names (for the audit filter)",
    tag="audit",
    roles={Role.admin, Role.archivist},
    answer=list[AuditActionOut],
)
async def list_audit_actions(ctx: Context) -> list[AuditActionOut]:
    return [AuditActionOut(action=a, label=label) for a, (label, _) in ACTIONS.items()]

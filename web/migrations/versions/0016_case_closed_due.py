"""按期办结率: the deadline running when a case closed is kept (``petitions.closed_due_at``).

Closing replaces ``due_at`` (化解: the 回访 deadline, 30 days on; 信访终结 and 导入诉讼程序:
the node ``done``, no deadline), and the figure compared ``closed_at`` with that, so it read
100%. From now on ``service._act`` sets ``closed_due_at`` in the UPDATE that closes a case
and clears it on reopening; the figure reads it.

Backfill of the cases already closed, from their timeline (``case_events``, insert-only).
The closing entry is the case's last ``resolved``, ``terminated`` or ``triaged`` entry whose
state is ``guided``; the deadline running then is the one set by the last entry before it
that sets one:

- ``assigned`` (交办): its ``detail.deadline``, exact;
- ``returned`` (退回重办): the deadline of the case's latest assignment made before it (the
  return moves that assignment's deadline to the new one), exact;
- either, when that is missing: the feedback rule counted from the entry's time, as below;
- ``registered``: the triage rule counted from the first contact's ``occurred_at``;
  ``triaged`` (to handling), ``accepted``, ``reopened``: the handling rule, ``reported``:
  the review rule, counted from the entry's time — the end of the court's day (23:59:59 in
  the configured time zone) the rule's days later, as ``service.day_end`` computes it. The
  rule's days are those in force then: the ``before`` days of the first rule change audited
  after it (``audit_events`` ``case.rule``), else today's rule. Exact unless the time zone
  setting changed since, or a rule was created (not changed) after the case's entry.

A closed case with no closing entry, or none that set a deadline before it (petitions from
before cases, migration 0006, had no deadline), keeps NULL: closed with no deadline running,
counted on time, as before.

The stored monthly figures (``stats_monthly``) of every month holding a closed case (the
months with an ``on_time_rate`` row) are marked stale (``stats_months.refreshed_at`` set to
1970): the dashboard recomputes them before reading, housekeeping in the background. The
downgrade does the same.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from config.db import UTCDateTime
from config.settings import Settings, load_settings

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000
CLOSED = ("guided", "resolved", "terminated")
# entries that set a case's deadline as of this revision, and the node whose rule counted it
# (交办 and 退回重办 name theirs: the rule only when that is lost)
SETS_DEADLINE: dict[str, str] = {
    "registered": "triage",
    "triaged": "handling",
    "accepted": "handling",
    "reopened": "handling",
    "reported": "review",
    "assigned": "feedback",
    "returned": "feedback",
}
CLOSING = ("resolved", "terminated", "triaged")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

petitions = sa.table(
    "petitions",
    sa.column("id", sa.Integer),
    sa.column("state", sa.String),
    sa.column("closed_at", UTCDateTime()),
    sa.column("closed_due_at", UTCDateTime()),
)
events = sa.table(
    "case_events",
    sa.column("id", sa.Integer),
    sa.column("petition_id", sa.Integer),
    sa.column("at", UTCDateTime()),
    sa.column("kind", sa.String),
    sa.column("detail", sa.JSON),
)
assignments = sa.table(
    "case_assignments",
    sa.column("id", sa.Integer),
    sa.column("petition_id", sa.Integer),
    sa.column("assigned_at", UTCDateTime()),
    sa.column("deadline", UTCDateTime()),
)
contacts = sa.table(
    "case_contacts",
    sa.column("id", sa.Integer),
    sa.column("petition_id", sa.Integer),
    sa.column("occurred_at", UTCDateTime()),
)
rules = sa.table("case_deadline_rules", sa.column("node", sa.String), sa.column("days", sa.Integer))
audits = sa.table(
    "audit_events",
    sa.column("id", sa.Integer),
    sa.column("at", UTCDateTime()),
    sa.column("action", sa.String),
    sa.column("target_id", sa.String),
    sa.column("detail", sa.JSON),
)
months = sa.table(
    "stats_months", sa.column("month", sa.String), sa.column("refreshed_at", UTCDateTime())
)
monthly = sa.table("stats_monthly", sa.column("figure", sa.String), sa.column("month", sa.String))


def upgrade() -> None:
    with op.batch_alter_table("petitions") as batch_op:
        batch_op.add_column(sa.Column("closed_due_at", UTCDateTime(), nullable=True))
    _backfill(op.get_bind())
    _stale_months()


def downgrade() -> None:
    with op.batch_alter_table("petitions") as batch_op:
        batch_op.drop_column("closed_due_at")
    _stale_months()


def _stale_months() -> None:
    """The months whose stored 按期办结率 counted closed cases are recomputed."""
    affected = sa.select(monthly.c.month).where(monthly.c.figure == "on_time_rate").distinct()
    op.get_bind().execute(
        sa.update(months).where(months.c.month.in_(affected)).values(refreshed_at=EPOCH)
    )


def _court_tz() -> tzinfo:
    settings: Settings = context.config.attributes.get("settings") or load_settings()
    return settings.tz


class Rules:
    """The days of each node's rule at any time: today's, taken back through the audited
    changes (each names the days before it)."""

    def __init__(self, bind: sa.Connection) -> None:
        self.now = {str(n): int(d) for n, d in bind.execute(sa.select(rules.c.node, rules.c.days))}
        self.changes: dict[str, list[tuple[datetime, int | None]]] = {}
        stmt = (
            sa.select(audits.c.at, audits.c.target_id, audits.c.detail)
            .where(audits.c.action == "case.rule")
            .order_by(audits.c.id)
        )
        for at, node, detail in bind.execute(stmt):
            before = (detail or {}).get("before")
            days = int(before[0]) if isinstance(before, list) and before else None
            self.changes.setdefault(str(node), []).append((at, days))

    def days(self, node: str, at: datetime) -> int | None:
        for changed, before in self.changes.get(node, ()):
            if changed > at:
                return before
        return self.now.get(node)


def _day_end(instant: datetime, tz: tzinfo) -> datetime:
    """``service.day_end`` as of this revision: 23:59:59 of the instant's court day."""
    local = instant.astimezone(tz)
    return datetime.combine(local.date(), time(23, 59, 59), tzinfo=tz).astimezone(UTC)


def _closed_batches(bind: sa.Connection) -> Iterator[list[int]]:
    last = 0
    while True:
        ids = list(
            bind.execute(
                sa.select(petitions.c.id)
                .where(
                    petitions.c.id > last,
                    petitions.c.closed_at.is_not(None),
                    petitions.c.state.in_(CLOSED),
                )
                .order_by(petitions.c.id)
                .limit(BATCH)
            ).scalars()
        )
        if not ids:
            return
        yield ids
        last = ids[-1]


def _backfill(bind: sa.Connection) -> None:
    tz = _court_tz()
    history = Rules(bind)
    for ids in _closed_batches(bind):
        timeline: dict[int, list[Any]] = {}
        entries = (
            sa.select(events.c.petition_id, events.c.at, events.c.kind, events.c.detail)
            .where(
                events.c.petition_id.in_(ids),
                events.c.kind.in_(sorted({*SETS_DEADLINE, *CLOSING})),
            )
            .order_by(events.c.petition_id, events.c.id)
        )
        for row in bind.execute(entries):
            timeline.setdefault(row.petition_id, []).append(row)
        handed: dict[int, list[tuple[datetime, datetime]]] = {}
        made = (
            sa.select(assignments.c.petition_id, assignments.c.assigned_at, assignments.c.deadline)
            .where(assignments.c.petition_id.in_(ids))
            .order_by(assignments.c.id)
        )
        for pid, assigned_at, deadline in bind.execute(made):
            handed.setdefault(pid, []).append((assigned_at, deadline))
        came: dict[int, datetime] = {}  # each case's first contact (its registration's)
        contacted = (
            sa.select(contacts.c.petition_id, contacts.c.occurred_at)
            .where(contacts.c.petition_id.in_(ids))
            .order_by(contacts.c.id.desc())
        )
        for pid, occurred_at in bind.execute(contacted):
            came[pid] = occurred_at
        found: list[dict[str, Any]] = []
        for pid in ids:
            due = _running_at_close(
                timeline.get(pid, []), handed.get(pid, []), came.get(pid), history, tz
            )
            if due is not None:
                found.append({"pid": pid, "due": due})
        if found:
            bind.execute(
                sa.update(petitions)
                .where(petitions.c.id == sa.bindparam("pid"))
                .values(closed_due_at=sa.bindparam("due", type_=UTCDateTime())),
                found,
            )


def _closes(entry: Any) -> bool:
    if entry.kind == "triaged":
        return (entry.detail or {}).get("state") == "guided"
    return entry.kind in CLOSING


def _running_at_close(
    entries: list[Any],
    handed: list[tuple[datetime, datetime]],
    came: datetime | None,
    history: Rules,
    tz: tzinfo,
) -> datetime | None:
    """The deadline the case's last closing entry found running (None: none, or unknown)."""
    closing = next((i for i in range(len(entries) - 1, -1, -1) if _closes(entries[i])), None)
    if closing is None:
        return None
    setting = next((e for e in reversed(entries[:closing]) if e.kind in SETS_DEADLINE), None)
    if setting is None or _closes(setting):
        return None
    if setting.kind in ("assigned", "returned"):
        given = (setting.detail or {}).get("deadline") if setting.kind == "assigned" else None
        if given:
            return datetime.fromisoformat(given).astimezone(UTC)
        made = [deadline for at, deadline in handed if at <= setting.at]
        if made:
            return made[-1]
    node = SETS_DEADLINE[setting.kind]
    start = came if setting.kind == "registered" and came is not None else setting.at
    days = history.days(node, setting.at)
    return None if days is None else _day_end(start + timedelta(days=days), tz)

"""The rules of a petition case, in one place: which action moves a case from which state
to which, and who may take it. The service, the API and the pages ask here; nothing else
writes a case rule. Tested as a table and by property tests over action sequences.

::

    registered ─┬─► guided (诉讼事项, 导入诉讼程序)                        ─┐
                └─► handling ─► assigned ─► reported ─► handling (审核通过) │
                      │  ▲        │  ▲         ├──► assigned (退回重办)    │
                      │  └────────┘  └── (交办 further down)               │
                      │                        └──► assigned (审核通过, an  │
                      │                             upper hand-over open)  │
                      ├─► resolved (化解)      ◄── assigned, reported      │
                      └─► terminated (信访终结, high or supreme court)     │
    guided, resolved, terminated ─► handling (reopened with a reason)  ◄──┘

A court that was handed a case may hand it further down (交办 further down): the upper
hand-over stays open, and accepting the lower court's feedback (审核通过) brings the case
back to the court the upper one awaits (``CHAINED``), which then reports upwards itself.
While its feedback awaits review (reported) the handling court may not close the case
itself (化解): the assigning court decides.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from config.vocabulary import define, label
from scheduler.cases.words import CaseState, Node
from scheduler.models import CourtLevel, Role
from scheduler.scope import Actor


class CaseAction(enum.StrEnum):
    """What staff do to a case; :func:`may` and :func:`next_state` decide."""

    view = "view"
    add_contact = "add_contact"
    upload = "upload"
    correct = "correct"
    triage_litigation = "triage_litigation"
    triage_petition = "triage_petition"
    set_owner = "set_owner"
    assign = "assign"
    progress = "progress"
    report = "report"
    accept = "accept"
    return_ = "return"
    flag = "flag"
    unflag = "unflag"
    take_lead = "take_lead"
    judicial_aid = "judicial_aid"
    resolve = "resolve"
    terminate = "terminate"
    schedule_followup = "schedule_followup"
    record_followup = "record_followup"
    review = "review"
    reopen = "reopen"
    meet = "meet"


define(
    "case_action",
    CaseAction,
    {
        CaseAction.view: "查看信访件",
        CaseAction.add_contact: "登记来访来信",
        CaseAction.upload: "上传材料",
        CaseAction.correct: "更正记录",
        CaseAction.triage_litigation: "分流为诉讼事项",
        CaseAction.triage_petition: "分流为信访事项",
        CaseAction.set_owner: "指定首办责任人",
        CaseAction.assign: "交办",
        CaseAction.progress: "报告进展",
        CaseAction.report: "反馈结果",
        CaseAction.accept: "审核通过",
        CaseAction.return_: "退回重办",
        CaseAction.flag: "挂牌督办",
        CaseAction.unflag: "撤销挂牌",
        CaseAction.take_lead: "包案",
        CaseAction.judicial_aid: "司法救助",
        CaseAction.resolve: "化解",
        CaseAction.terminate: "信访终结",
        CaseAction.schedule_followup: "安排回访",
        CaseAction.record_followup: "回访",
        CaseAction.review: "评查",
        CaseAction.reopen: "重新启动",
        CaseAction.meet: "发起视频约谈",
    },
)

CLOSED = frozenset({CaseState.guided, CaseState.resolved, CaseState.terminated})
OPEN = frozenset(s for s in CaseState if s not in CLOSED)
# Cases that take no new video visit until reopened (已化解, 已终结); a case guided to a legal
# procedure still may (判后答疑, 释法明理).
NO_VISITS = frozenset({CaseState.resolved, CaseState.terminated})
# Cases whose current node has a deadline that may pass.
WATCHED = OPEN | {CaseState.resolved}

# (state, action) → the state after it; actions absent here never change the state.
MOVES: dict[tuple[CaseState, CaseAction], CaseState] = {
    (CaseState.registered, CaseAction.triage_litigation): CaseState.guided,
    (CaseState.registered, CaseAction.triage_petition): CaseState.handling,
    (CaseState.handling, CaseAction.assign): CaseState.assigned,
    (CaseState.assigned, CaseAction.assign): CaseState.assigned,
    (CaseState.assigned, CaseAction.report): CaseState.reported,
    (CaseState.reported, CaseAction.accept): CaseState.handling,
    (CaseState.reported, CaseAction.return_): CaseState.assigned,
    (CaseState.handling, CaseAction.resolve): CaseState.resolved,
    (CaseState.assigned, CaseAction.resolve): CaseState.resolved,
    (CaseState.reported, CaseAction.resolve): CaseState.resolved,
    (CaseState.handling, CaseAction.terminate): CaseState.terminated,
    (CaseState.assigned, CaseAction.terminate): CaseState.terminated,
    (CaseState.reported, CaseAction.terminate): CaseState.terminated,
    (CaseState.guided, CaseAction.reopen): CaseState.handling,
    (CaseState.resolved, CaseAction.reopen): CaseState.handling,
    (CaseState.terminated, CaseAction.reopen): CaseState.handling,
}
# (state, action) → the state after it when the case is under a further hand-over from above
# (交办 further down): accepting the lower court's feedback brings the case back to the court
# the upper hand-over awaits, still owing its own feedback (see the service's chain).
CHAINED: dict[tuple[CaseState, CaseAction], CaseState] = {
    (CaseState.reported, CaseAction.accept): CaseState.assigned,
}
# Actions that keep the state, and the states they are allowed in.
STAYS: dict[CaseAction, frozenset[CaseState]] = {
    CaseAction.view: frozenset(CaseState),
    CaseAction.add_contact: frozenset(CaseState),
    CaseAction.upload: frozenset(CaseState),
    CaseAction.correct: frozenset(CaseState),
    CaseAction.set_owner: OPEN,
    CaseAction.progress: frozenset({CaseState.assigned, CaseState.handling}),
    CaseAction.flag: OPEN - {CaseState.registered},
    CaseAction.unflag: frozenset(CaseState),
    CaseAction.take_lead: OPEN,
    CaseAction.judicial_aid: OPEN - {CaseState.registered},
    CaseAction.schedule_followup: frozenset({CaseState.resolved, CaseState.terminated}),
    CaseAction.record_followup: frozenset({CaseState.resolved, CaseState.terminated}),
    CaseAction.review: CLOSED,
    CaseAction.meet: OPEN - {CaseState.registered},
}

# The node a case is at after entering a state (the node carries the deadline).
NODE_OF: dict[CaseState, Node] = {
    CaseState.registered: Node.triage,
    CaseState.guided: Node.done,
    CaseState.handling: Node.handling,
    CaseState.assigned: Node.feedback,
    CaseState.reported: Node.review,
    CaseState.resolved: Node.followup,
    CaseState.terminated: Node.done,
}

# Staff who handle cases; archivists only read them.
HANDLERS = frozenset({Role.operator, Role.judge, Role.petition_officer, Role.leader, Role.admin})
# Courts whose decision ends a petition (信访终结).
TERMINATING_LEVELS = frozenset({CourtLevel.high, CourtLevel.supreme})


@dataclass(frozen=True)
class Standing:
    """How an actor's court stands to one case (computed from the court tree by the service).

    ``handler``: the actor's court handles the case now (首办责任); ``registrar``: it
    registered it; ``supervisor``: it is above the handling court; ``assigner``: it handed the
    case to the handling court and awaits its feedback; ``level``: the actor's court's level.
    """

    handler: bool = False
    registrar: bool = False
    supervisor: bool = False
    assigner: bool = False
    level: CourtLevel | None = None


def next_state(state: CaseState, action: CaseAction, *, chained: bool = False) -> CaseState | None:
    """The state after ``action``, the same state for an action that keeps it, or ``None``
    when the action is not allowed in ``state``. ``chained``: the case is under a hand-over
    from above that stays open (``CHAINED`` applies)."""
    moved = CHAINED.get((state, action)) if chained else None
    moved = moved or MOVES.get((state, action))
    if moved is not None:
        return moved
    if state in STAYS.get(action, frozenset()):
        return state
    return None


def _who(actor: Actor, action: CaseAction, s: Standing) -> bool:
    if actor.is_admin:
        return True
    if action is CaseAction.view:
        return s.handler or s.registrar or s.supervisor
    if actor.role not in HANDLERS:
        return False
    if action in (CaseAction.add_contact, CaseAction.upload, CaseAction.correct):
        return s.handler or s.registrar or s.supervisor
    if action in (CaseAction.accept, CaseAction.return_):
        return s.assigner
    if action in (CaseAction.flag, CaseAction.unflag, CaseAction.meet):
        return s.supervisor
    if action is CaseAction.take_lead:
        return actor.role is Role.leader and (s.handler or s.supervisor)
    if action is CaseAction.terminate:
        return (s.handler or s.supervisor) and s.level in TERMINATING_LEVELS
    if action in (CaseAction.assign, CaseAction.review, CaseAction.reopen):
        return s.handler or s.supervisor
    if action is CaseAction.resolve:
        return s.handler or s.assigner
    # triage, owner, progress, report, judicial aid, follow-ups: the handling court
    return s.handler


def _undoes_termination(actor: Actor, action: CaseAction, state: CaseState, s: Standing) -> bool:
    """Reopening a 信访终结 undoes a high court's decision: a court below high level may not."""
    return (
        action is CaseAction.reopen
        and state is CaseState.terminated
        and not actor.is_admin
        and s.level not in TERMINATING_LEVELS
    )


def _awaits_review(actor: Actor, action: CaseAction, state: CaseState, s: Standing) -> bool:
    """A handling court whose feedback awaits the assigning court's review (reported) may not
    close the case as 化解 itself: the assigning court accepts, returns or closes it."""
    return (
        action is CaseAction.resolve
        and state is CaseState.reported
        and not actor.is_admin
        and not s.assigner
    )


def may(actor: Actor, action: CaseAction, state: CaseState, standing: Standing) -> bool:
    """Whether ``actor`` may take ``action`` on a case in ``state``."""
    return (
        next_state(state, action) is not None
        and _who(actor, action, standing)
        and not _undoes_termination(actor, action, state, standing)
        and not _awaits_review(actor, action, state, standing)
    )


def refusal(actor: Actor, action: CaseAction, state: CaseState, standing: Standing) -> str:
    """Why ``may`` said no, in the words people read (zh-CN)."""
    if next_state(state, action) is None:
        return f"信访件当前状态为「{label(state)}」，不能进行此操作"
    if action is CaseAction.terminate and standing.level not in TERMINATING_LEVELS:
        return "信访终结只能由高级人民法院或最高人民法院决定"
    if _undoes_termination(actor, action, state, standing):
        return "已终结的信访件只能由高级人民法院或最高人民法院重新启动"
    if _awaits_review(actor, action, state, standing):
        return "办理结果已反馈交办法院，正在等待审核，审核前不能化解"
    if action is CaseAction.take_lead and actor.role is not Role.leader:
        return "只有院领导可以包案"
    if action in (CaseAction.flag, CaseAction.unflag, CaseAction.meet):
        return "只有上级法院可以挂牌督办或约谈"
    if action in (CaseAction.accept, CaseAction.return_):
        return "只有交办法院可以审核反馈"
    return "无权对该信访件进行此操作"

"""The words of petition case handling (涉诉信访办理), each with its zh-CN label.

A petition case (信访件) is stored as a :class:`scheduler.models.Petition`: the matter one or
more petitioners raise. These enums name its channels, categories, states, nodes, decisions
and timeline entries; their labels reach the pages through ``/vocabulary.js``.
"""

from __future__ import annotations

import enum

from config.vocabulary import define


class Channel(enum.StrEnum):
    """How a contact reached the court (有访必录、有信必录)."""

    walk_in = "walk_in"
    letter = "letter"
    video = "video"
    online = "online"
    phone = "phone"


# A case's channels seen (petitions.channels): one bit a channel. Stored: never renumber.
CHANNEL_BITS: dict[Channel, int] = {
    Channel.walk_in: 1,
    Channel.letter: 2,
    Channel.video: 4,
    Channel.online: 8,
    Channel.phone: 16,
}

define(
    "case_channel",
    Channel,
    {
        Channel.walk_in: "来访",
        Channel.letter: "来信",
        Channel.video: "视频接访",
        Channel.online: "网上申诉",
        Channel.phone: "12368热线",
    },
)


class CaseCategory(enum.StrEnum):
    """What kind of matter the case is about."""

    criminal_appeal = "criminal_appeal"
    civil_retrial = "civil_retrial"
    admin_retrial = "admin_retrial"
    enforcement = "enforcement"
    state_compensation = "state_compensation"
    other = "other"


define(
    "case_category",
    CaseCategory,
    {
        CaseCategory.criminal_appeal: "刑事申诉",
        CaseCategory.civil_retrial: "民事再审申请",
        CaseCategory.admin_retrial: "行政再审申请",
        CaseCategory.enforcement: "执行",
        CaseCategory.state_compensation: "国家赔偿",
        CaseCategory.other: "其他",
    },
)


class CaseTrack(enum.StrEnum):
    """Triage (分流, 诉访分离): a litigation matter or a petition matter."""

    undecided = "undecided"
    litigation = "litigation"
    petition = "petition"


define(
    "case_track",
    CaseTrack,
    {
        CaseTrack.undecided: "未分流",
        CaseTrack.litigation: "诉讼事项",
        CaseTrack.petition: "信访事项",
    },
)


class Procedure(enum.StrEnum):
    """The legal procedure a litigation matter is guided to (导入诉讼程序)."""

    retrial = "retrial"
    enforcement_objection = "enforcement_objection"
    enforcement_supervision = "enforcement_supervision"
    state_compensation = "state_compensation"
    criminal_appeal = "criminal_appeal"
    appeal = "appeal"
    other = "other"


define(
    "case_procedure",
    Procedure,
    {
        Procedure.retrial: "申请再审",
        Procedure.enforcement_objection: "执行异议",
        Procedure.enforcement_supervision: "执行监督",
        Procedure.state_compensation: "国家赔偿",
        Procedure.criminal_appeal: "刑事申诉",
        Procedure.appeal: "上诉",
        Procedure.other: "其他诉讼程序",
    },
)


class HandlingMode(enum.StrEnum):
    """How a petition matter is handled."""

    immediate = "immediate"
    careful = "careful"
    joint = "joint"
    supervised = "supervised"


define(
    "handling_mode",
    HandlingMode,
    {
        HandlingMode.immediate: "马上办",
        HandlingMode.careful: "精细办",
        HandlingMode.joint: "联合办",
        HandlingMode.supervised: "督导办",
    },
)


class CaseState(enum.StrEnum):
    """Where a case stands; the moves between states are in scheduler/cases/rules.py."""

    registered = "registered"
    guided = "guided"
    handling = "handling"
    assigned = "assigned"
    reported = "reported"
    resolved = "resolved"
    terminated = "terminated"


define(
    "case_state",
    CaseState,
    {
        CaseState.registered: "待分流",
        CaseState.guided: "已导入诉讼程序",
        CaseState.handling: "办理中",
        CaseState.assigned: "已交办",
        CaseState.reported: "已反馈待审核",
        CaseState.resolved: "已化解",
        CaseState.terminated: "已终结",
    },
)


class Node(enum.StrEnum):
    """A step of a case that carries a deadline (节点); the rules give each its days."""

    triage = "triage"
    handling = "handling"
    feedback = "feedback"
    review = "review"
    followup = "followup"
    done = "done"


define(
    "case_node",
    Node,
    {
        Node.triage: "分流",
        Node.handling: "办理",
        Node.feedback: "限期反馈",
        Node.review: "审核反馈",
        Node.followup: "回访",
        Node.done: "办结",
    },
)


class ResolutionGround(enum.StrEnum):
    """Grounds for closing a case as resolved (化解)."""

    enforced = "enforced"
    settled_performing = "settled_performing"
    written_undertaking = "written_undertaking"
    explained_accepted = "explained_accepted"
    retrial_filed = "retrial_filed"
    judicial_aid_granted = "judicial_aid_granted"
    corrected = "corrected"
    compensation_decided = "compensation_decided"
    other = "other"


define(
    "resolution_ground",
    ResolutionGround,
    {
        ResolutionGround.enforced: "执行到位",
        ResolutionGround.settled_performing: "达成和解并开始履行",
        ResolutionGround.written_undertaking: "书面承诺息诉罢访",
        ResolutionGround.explained_accepted: "释法明理后服判息诉",
        ResolutionGround.retrial_filed: "依法启动再审",
        ResolutionGround.judicial_aid_granted: "给予司法救助",
        ResolutionGround.corrected: "纠正错误并答复",
        ResolutionGround.compensation_decided: "依法作出国家赔偿决定",
        ResolutionGround.other: "其他",
    },
)

_G = ResolutionGround
_RETRIAL = (  # a civil or administrative retrial application
    _G.explained_accepted,
    _G.retrial_filed,
    _G.settled_performing,
    _G.corrected,
    _G.judicial_aid_granted,
    _G.written_undertaking,
    _G.other,
)
# The grounds a case of each category may be closed on as 化解 (an enforcement matter is
# not "retried", a civil retrial is not "enforced"); the case's page offers these only.
RESOLUTION_GROUNDS: dict[CaseCategory, tuple[ResolutionGround, ...]] = {
    CaseCategory.enforcement: (
        _G.enforced,
        _G.settled_performing,
        _G.written_undertaking,
        _G.explained_accepted,
        _G.judicial_aid_granted,
        _G.other,
    ),
    CaseCategory.criminal_appeal: (
        _G.explained_accepted,
        _G.retrial_filed,
        _G.corrected,
        _G.judicial_aid_granted,
        _G.written_undertaking,
        _G.other,
    ),
    CaseCategory.civil_retrial: _RETRIAL,
    CaseCategory.admin_retrial: _RETRIAL,
    CaseCategory.state_compensation: (
        _G.compensation_decided,
        _G.settled_performing,
        _G.explained_accepted,
        _G.corrected,
        _G.judicial_aid_granted,
        _G.written_undertaking,
        _G.other,
    ),
    CaseCategory.other: tuple(ResolutionGround),
}


def resolution_grounds(category: str) -> tuple[ResolutionGround, ...]:
    """The 化解 grounds of a case of ``category`` (every ground for a category not known)."""
    try:
        return RESOLUTION_GROUNDS[CaseCategory(category)]
    except ValueError:
        return tuple(ResolutionGround)


class TerminationGround(enum.StrEnum):
    """Grounds for ending a petition (信访终结), decided by a high or the supreme court."""

    lawful_handled = "lawful_handled"
    reviewed_upheld = "reviewed_upheld"
    no_new_facts = "no_new_facts"


define(
    "termination_ground",
    TerminationGround,
    {
        TerminationGround.lawful_handled: "已依法处理完毕且诉求无理",
        TerminationGround.reviewed_upheld: "经复查原处理正确",
        TerminationGround.no_new_facts: "无新事实新证据重复信访",
    },
)


class FollowUpResult(enum.StrEnum):
    """What a follow-up contact (回访) after closing found."""

    satisfied = "satisfied"
    accepted = "accepted"
    unsatisfied = "unsatisfied"
    unreachable = "unreachable"


define(
    "followup_result",
    FollowUpResult,
    {
        FollowUpResult.satisfied: "满意",
        FollowUpResult.accepted: "基本满意",
        FollowUpResult.unsatisfied: "不满意",
        FollowUpResult.unreachable: "未能联系",
    },
)


class AidStage(enum.StrEnum):
    """A step of judicial aid (司法救助): the application and its result."""

    applied = "applied"
    granted = "granted"
    refused = "refused"


define(
    "judicial_aid_stage",
    AidStage,
    {
        AidStage.applied: "申请司法救助",
        AidStage.granted: "司法救助已批准",
        AidStage.refused: "司法救助未批准",
    },
)


class ReviewRating(enum.StrEnum):
    """The conclusion of a review of a closed case (评查)."""

    good = "good"
    passed = "pass"
    failed = "fail"


define(
    "review_rating",
    ReviewRating,
    {
        ReviewRating.good: "优秀",
        ReviewRating.passed: "合格",
        ReviewRating.failed: "不合格",
    },
)


class AssignmentState(enum.StrEnum):
    """One hand-over of a case to a lower court (交办)."""

    open = "open"
    reported = "reported"
    accepted = "accepted"
    returned = "returned"  # written by earlier versions for what ``withdrawn`` says now
    withdrawn = "withdrawn"  # the assigning court handed the case to another court instead


define(
    "assignment_state",
    AssignmentState,
    {
        AssignmentState.open: "办理中",
        AssignmentState.reported: "已反馈",
        AssignmentState.accepted: "已审核通过",
        AssignmentState.returned: "已改派",
        AssignmentState.withdrawn: "已改派",
    },
)


class VisitOutcome(enum.StrEnum):
    """What the judge recorded as a video visit's outcome, on the case's timeline."""

    explained = "explained"
    guided_to_litigation = "guided_to_litigation"
    assign = "assign"
    resolved = "resolved"
    suggest_termination = "suggest_termination"
    other = "other"


define(
    "visit_outcome",
    VisitOutcome,
    {
        VisitOutcome.explained: "释法明理",
        VisitOutcome.guided_to_litigation: "引导诉讼",
        VisitOutcome.assign: "交办",
        VisitOutcome.resolved: "化解",
        VisitOutcome.suggest_termination: "终结建议",
        VisitOutcome.other: "其他",
    },
)


class EventKind(enum.StrEnum):
    """One entry of a case's timeline (全程留痕); entries are only ever added."""

    registered = "registered"
    contact = "contact"
    material = "material"
    triaged = "triaged"
    owner = "owner"
    assigned = "assigned"
    progress = "progress"
    reported = "reported"
    accepted = "accepted"
    returned = "returned"
    flagged = "flagged"
    unflagged = "unflagged"
    leader = "leader"
    reminder = "reminder"
    overdue = "overdue"
    escalated = "escalated"
    meeting_scheduled = "meeting_scheduled"
    meeting = "meeting"
    visit = "visit"
    outcome = "outcome"
    judicial_aid = "judicial_aid"
    resolved = "resolved"
    terminated = "terminated"
    followup_scheduled = "followup_scheduled"
    followup = "followup"
    review = "review"
    reopened = "reopened"
    correction = "correction"
    question = "question"
    answer = "answer"
    mediation = "mediation"
    rated = "rated"
    complaint = "complaint"


define(
    "case_event",
    EventKind,
    {
        EventKind.registered: "登记",
        EventKind.contact: "来访来信",
        EventKind.material: "上传材料",
        EventKind.triaged: "分流",
        EventKind.owner: "确定首办责任",
        EventKind.assigned: "交办",
        EventKind.progress: "进展报告",
        EventKind.reported: "办理结果反馈",
        EventKind.accepted: "审核通过",
        EventKind.returned: "退回重办",
        EventKind.flagged: "挂牌督办",
        EventKind.unflagged: "撤销挂牌",
        EventKind.leader: "领导包案",
        EventKind.reminder: "到期提醒",
        EventKind.overdue: "超期预警",
        EventKind.escalated: "超期上报",
        EventKind.meeting_scheduled: "安排视频约谈",
        EventKind.meeting: "视频约谈",
        EventKind.visit: "视频接访",
        EventKind.outcome: "接访结果",
        EventKind.judicial_aid: "司法救助",
        EventKind.resolved: "化解",
        EventKind.terminated: "信访终结",
        EventKind.followup_scheduled: "安排回访",
        EventKind.followup: "回访",
        EventKind.review: "评查",
        EventKind.reopened: "重新启动",
        EventKind.correction: "更正记录",
        EventKind.question: "网上咨询",
        EventKind.answer: "咨询答复",
        EventKind.mediation: "申请第三方化解",
        EventKind.rated: "满意度评价",
        EventKind.complaint: "投诉建议",
    },
)


class VisitKind(enum.StrEnum):
    """What a booked visit is: a reception, one of its special forms, or a meeting."""

    reception = "reception"
    post_judgment = "post_judgment"
    leader = "leader"
    meeting = "meeting"
    onsite = "onsite"


define(
    "visit_kind",
    VisitKind,
    {
        VisitKind.reception: "视频接访",
        VisitKind.post_judgment: "判后答疑",
        VisitKind.leader: "领导接访",
        VisitKind.meeting: "视频约谈",
        VisitKind.onsite: "现场接待",
    },
)

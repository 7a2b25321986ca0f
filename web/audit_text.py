"""The audit trail in words: one Chinese sentence per audited action.

Every action written with :func:`config.audit.record_audit` anywhere in the code base has a
label and a sentence template here (``tests/test_audit_text.py`` reads the code to make
sure). Templates name the event's (already masked) details, e.g. ``{reason}``; a format spec
after the colon says how a value is shown (``{starts_at:time}`` is a court local time).
Details a template does not name are not shown, except ``reason``, which is always added.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Any

from config.audit import AuditEvent
from config.vocabulary import label, label_of
from scheduler.cases.words import EventKind
from scheduler.models import VisitState
from scheduler.slots import WEEKDAY_NAMES
from scheduler.visits import MINUTES

MISSING = "—"

_LOGIN_REASONS = {"bad_credentials": "用户名或密码错误", "inactive": "账户已停用"}
_OPTIONAL = {
    "as_weekday",
    "court_day_mark",
    "stranded",
}  # formats of details some events of an action have: absent, nothing
_FIELDS = {  # fields of ``changes`` and of ``recording.search`` queries
    "display_name": "姓名",
    "role": "角色",
    "court_id": "法院",
    "active": "状态",
    "password": "密码",
    "code": "代码",
    "name": "名称",
    "location": "位置",
    "number": "案号",
    "petitioner": "信访人",
    "id_tail": "证件号尾号",
    "judge": "法官",
    "since": "起始日期",
    "until": "结束日期",
    "state": "状态",
    "q": "关键词",
}
_SEARCH_IGNORED = {"limit", "offset", "include_below", "sort"}
_TARGETS = {  # target_type is the model's table name, "visit" or "user"
    "visit": "接访",
    "visits": "接访",
    "user": "账户",
    "users": "账户",
    "courts": "法院",
    "reception_rooms": "接访室",
    "petitioners": "信访人",
    "petitions": "信访件",
    "case": "信访件",
    "case_rule": "办理期限规则",
    "calendar_feed": "日历订阅",
    "walk_in": "现场来访候补",
    "reception_templates": "每周接访时段",
    "availability_exceptions": "接访时间调整",
    "court_days": "日历标记",
    "room_hours": "开放时间",
    "duty_lawyers": "值班律师",
    "duty_periods": "律师值班时段",
}

_STATE_SENTENCES: dict[VisitState, tuple[str, str]] = {
    VisitState.scheduled: ("恢复预约", "{actor}将接访恢复为已预约（原为{from_state:state}）"),
    VisitState.checked_in: ("签到", "{actor}为信访人办理了签到（原为{from_state:state}）"),
    VisitState.in_lobby: ("进入候场", "{actor}安排信访人进入候场（原为{from_state:state}）"),
    VisitState.in_progress: ("开始接访", "{actor}开始了接访（原为{from_state:state}）"),
    VisitState.ended: ("结束接访", "{actor}结束了接访（原为{from_state:state}）"),
    VisitState.archived: ("归档", "{actor}将接访归档（原为{from_state:state}）"),
    VisitState.cancelled: ("取消接访", "{actor}取消了接访（原为{from_state:state}）"),
    VisitState.no_show: ("未到场", "{actor}将接访记为信访人未到场（原为{from_state:state}）"),
}

# A case timeline entry's audit event carries the entry's sentence as ``text``; the audit
# sentence is who did it and that sentence (``{text:instants}``: its times in local time).
_CASE_SENTENCES: dict[EventKind, str] = {
    EventKind.registered: "{actor}{text:instants}",
    EventKind.contact: "{actor}在信访件上记录了一次来访来信（{text:instants}）",
    EventKind.material: "{actor}为信访件{text:instants}",
    EventKind.triaged: "{actor}将信访件{text:instants}",
    EventKind.owner: "{actor}确定信访件的{text:instants}",
    EventKind.assigned: "{actor}将信访件{text:instants}",
    EventKind.progress: "{actor}报告了信访件的办理进展：{text:instants}",
    EventKind.reported: "{actor}就交办的信访件{text:instants}",
    EventKind.accepted: "{actor}对信访件{text:instants}",
    EventKind.returned: "{actor}将信访件{text:instants}",
    EventKind.flagged: "{actor}对信访件{text:instants}",
    EventKind.unflagged: "{actor}对信访件{text:instants}",
    EventKind.leader: "{actor}以院领导身份包案了该信访件",
    EventKind.reminder: "{actor}提醒：信访件的{text:instants}",
    EventKind.overdue: "{actor}预警：信访件的{text:instants}",
    EventKind.escalated: "{actor}记录：信访件{text:instants}",
    EventKind.meeting_scheduled: "{actor}就信访件{text:instants}",
    EventKind.meeting: "{actor}记录了信访件的视频约谈：{text:instants}",
    EventKind.visit: "{actor}记录了信访件的视频接访：{text:instants}",
    EventKind.outcome: "{actor}记录了信访件的接访结果：{text:instants}",
    EventKind.judicial_aid: "{actor}记录了信访件的司法救助：{text:instants}",
    EventKind.resolved: "{actor}将信访件办结为{text:instants}",
    EventKind.terminated: "{actor}决定{text:instants}",
    EventKind.followup_scheduled: "{actor}为信访件{text:instants}",
    EventKind.followup: "{actor}记录了信访件的{text:instants}",
    EventKind.review: "{actor}对信访件进行了{text:instants}",
    EventKind.reopened: "{actor}将信访件{text:instants}",
    EventKind.correction: "{actor}{text:instants}",
    EventKind.question: "{actor}在网上提出咨询：{text:instants}",
    EventKind.answer: "{actor}答复了网上咨询：{text:instants}",
    EventKind.mediation: "{actor}申请第三方化解：{text:instants}",
    EventKind.rated: "{actor}作出满意度评价：{text:instants}",
    EventKind.complaint: "{actor}提出投诉建议：{text:instants}",
}

# action -> (short label for lists and filters, sentence template)
ACTIONS: dict[str, tuple[str, str]] = {
    "auth.login": ("登录", "{actor}登录了系统"),
    "auth.login_failed": ("登录失败", "{actor}登录失败：{reason:login_reason}"),
    "auth.login_blocked": (
        "登录被锁定",
        "{actor}登录失败次数过多，登录被暂停，约 {retry_after:minutes}后可再试",
    ),
    "auth.logout": ("退出登录", "{actor}退出了登录"),
    "auth.password_changed": ("修改密码", "{actor}修改了自己的登录密码"),
    "auth.password_change_failed": ("修改密码失败", "{actor}修改密码时输入的当前密码不正确"),
    "auth.password_change_blocked": (
        "修改密码被锁定",
        "{actor}修改密码时当前密码错误次数过多，约 {retry_after:minutes}后可再试",
    ),
    "user.unlock": ("解除登录锁定", "{actor}解除了账户 {username} 的登录锁定"),
    "user.password_reset": ("重置密码", "{actor}重置了账户 {username} 的密码"),
    "court.create": ("新增法院", "{actor}新增法院 {name}（代码 {code}，{level:level}）"),
    "court.update": ("修改法院", "{actor}修改了法院信息：{changes:changes}"),
    "stats.case_counts_imported": ("导入结案数", "{actor}导入各法院月度结案数 {rows} 条"),
    "stats.exported": ("导出统计表", "{actor}导出了{court} {first}至{last} 的统计表（{format}）"),
    "stats.report": ("生成月度通报", "{actor}生成了{court} {month} 的月度信访工作通报"),
    "user.create": ("新增账户", "{actor}新增账户 {username}（{role:role}）"),
    "user.update": ("修改账户", "{actor}修改了账户：{changes:changes}"),
    "room.create": ("新增接访室", "{actor}新增接访室 {name}"),
    "room.update": ("修改接访室", "{actor}修改了接访室：{changes:changes}"),
    "room.hours_add": ("新增开放时间", "{actor}为接访室 #{room_id} 新增了开放时间"),
    "room.hours_delete": ("删除开放时间", "{actor}删除了接访室 #{room_id} 的一项开放时间"),
    "petitioner.create": ("登记信访人", "{actor}登记了信访人（证件号 {id_number}）"),
    "petition.create": ("登记信访件", "{actor}登记了信访件 {number}"),
    "calendar.feed_create": ("创建日历订阅", "{actor}创建了日历订阅"),
    "calendar.feed_revoke": ("撤销日历订阅", "{actor}撤销了日历订阅"),
    "calendar.court_day_add": (
        "标记日历",
        "{actor}将 {day} 标记为{kind:court_day}{as_weekday:as_weekday}",
    ),
    "calendar.court_day_delete": (
        "取消日历标记",
        "{actor}取消了 {day} 的日历标记{kind:court_day_mark}{stranded:stranded}",
    ),
    "availability.template_add": (
        "新增每周接访时段",
        "{actor}为法官 #{judge_id} 新增每周接访时段：{weekday:weekday} {start:minute}–{end:minute}",
    ),
    "availability.template_delete": (
        "删除每周接访时段",
        "{actor}删除了法官 #{judge_id} 的一项每周接访时段",
    ),
    "availability.addition": (
        "临时增加接访时间",
        "{actor}为法官 #{judge_id} 临时增加接访时间 {starts_at:time} 至 {ends_at:time}",
    ),
    "availability.cancellation": (
        "临时取消接访时间",
        "{actor}取消了法官 #{judge_id} 在 {starts_at:time} 至 {ends_at:time} 的接访时间",
    ),
    "availability.exception_delete": ("删除接访时间调整", "{actor}删除了一项接访时间调整"),
    "roster.lawyer_add": (
        "新增值班律师",
        "{actor}将律师 {name}（电话 {phone}）加入值班名册",
    ),
    "roster.period_add": ("新增律师值班时段", "{actor}为律师 #{lawyer_id} 新增了值班时段"),
    "roster.period_delete": ("删除律师值班时段", "{actor}删除了一项律师值班时段"),
    "visit.book": (
        "预约接访",
        "{actor}预约了接访：信访件 {petition}，{starts_at:time} 开始，"
        "法官 #{judge_id}，接访室 #{room_id}",
    ),
    "visit.walk_in": (
        "现场来访即时接访",
        "{actor}为现场来访安排了即时接访：信访件 {petition}，{starts_at:time} 开始",
    ),
    "meeting.schedule": (
        "安排视频约谈",
        "{actor}安排了视频约谈：信访件 {cases:list}，{starts_at:time} 开始，"
        "约 {minutes} 分钟，参加人员 {invitees:list}",
    ),
    "sms.marked_sent": ("短信已人工发送", "{actor}确认发件箱中发往 {phone} 的短信已人工发送"),
    "visit.reschedule": ("接访改期", "{actor}将接访从 {from:span} 改至 {to:span}"),
    **{f"visit.{state.value}": texts for state, texts in _STATE_SENTENCES.items()},
    "visit.walk_in_queued": (
        "现场来访候补",
        "{actor}将信访件 {petition} 的现场来访加入候补队列",
    ),
    "visit.walk_in_withdrawn": ("撤回候补", "{actor}撤回了一项现场来访候补"),
    "visit.walk_in_expired": ("候补过期", "当日未能安排的现场来访候补已自动撤回"),
    "visit.code_issued": ("签发接访码", "{actor}为{role:role}签发了接访码"),
    "visit.code_used": ("使用接访码", "{actor}（{role:role}）使用接访码进入了接访"),
    "visit.code_released": (
        "接访码恢复可用",
        "{actor}（{role:role}）未能完成进入接访，所用接访码恢复可用",
    ),
    "visit.refused": ("拒绝入场", "{actor}拒绝{role:role}进入接访"),
    "visit.invite": ("邀请参加", "{actor}邀请{role:role} {label} 加入接访"),
    "visit.onsite_started": (
        "开始现场接待录音录像",
        "{actor}在接待窗口 {window} 开始了信访件 {petition} 的现场接待，全程录音录像",
    ),
    "visit.watch_started": ("开始监看", "{actor}（{court}）开始监看{kind:visit_kind}"),
    "visit.watch_stopped": ("结束监看", "{actor}（{court}）结束监看{kind:visit_kind}"),
    "recording.search": (
        "检索录像",
        "{actor}检索了录像档案（{query:query}），找到 {total} 条",
    ),
    "recording.open": ("打开录像", "{actor}打开了录像"),
    "recording.view": ("播放录像", "{actor}播放了录像文件 {file}（自第 {position} 秒）"),
    "recording.download": ("下载录像", "{actor}下载了录像文件 {file}"),
    "recording.fetch": ("读取录像文件", "{actor}从头读取了录像文件 {file}（播放或复制）"),
    "recording.sealed": ("封存录像", "{actor}封存了录像"),
    "recording.unsealed": ("解除封存", "{actor}解除了录像的封存"),
    "recording.hold": ("法律保全", "{actor}对录像实施了法律保全"),
    "recording.hold_lifted": ("解除法律保全", "{actor}解除了录像的法律保全"),
    "recording.verified": (
        "核验通过",
        "{actor}核验了录像完整性：{checked} 个文件与签名清单一致",
    ),
    "recording.tampered": (
        "核验不符",
        "{actor}核验了录像完整性：{failed:list} 与签名清单不符",
    ),
    "recording.export": ("导出核证副本", "{actor}导出了录像的核证副本（校验值 {sha256}）"),
    "recording.export_refused": ("导出被拒绝", "{actor}导出录像被拒绝"),
    "recording.deleted": ("删除录像", "{actor}删除了保存期满的录像（{files} 个文件）"),
    "recording.interrupted": (
        "录制中断",
        "{actor}记录：录制因服务中断而终止（中断于 {interrupted_at:time}）",
    ),
    "recording.write_failed": ("录制写入失败", "{actor}记录：轨道 {track} 录制写入失败"),
    "transcript.correct": (
        "更正转写",
        "{actor}更正了转写第 {line:ordinal} 行（修订版 {revision}）",
    ),
    **{f"case.{kind.value}": (label(kind), text) for kind, text in _CASE_SENTENCES.items()},
    "case.rule": (
        "修改办理期限规则",
        "{actor}将「{node}」节点的办理期限改为 {days} 天，提前 {remind} 天提醒",
    ),
    "case.material_view": ("查看信访材料", "{actor}查看了信访材料《{filename}》"),
    "recording.write_resumed": (
        "录制写入恢复",
        "{actor}记录：录制写入已恢复，{missing_from:time} 至 {missing_to:time} 的内容缺失",
    ),
}


def _time(value: Any, tz: tzinfo) -> str:
    try:
        instant = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if instant.tzinfo is None:
        return instant.strftime(MINUTES)
    return instant.astimezone(tz).strftime(MINUTES)


# an instant as the service writes it into a sentence: 2026-12-05T02:00:00+00:00
_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})")


def local_instants(text: str, tz: tzinfo) -> str:
    """``text`` with every ISO 8601 instant in it written as the court's local time."""
    return _INSTANT.sub(lambda m: _time(m.group(0).replace("Z", "+00:00"), tz), text)


def _plain(value: Any) -> str:
    if value is None or value == "":
        return "空"
    if value is True:
        return "是"
    if value is False:
        return "否"
    if isinstance(value, list | tuple):
        return "、".join(_plain(v) for v in value) or "无"
    return str(value)


class _Formatter(string.Formatter):
    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz

    def get_value(self, key: int | str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        return kwargs.get(str(key), MISSING)

    def format_field(self, value: Any, format_spec: str) -> str:
        if value is MISSING or value == MISSING:
            return "" if format_spec in _OPTIONAL else MISSING
        return self.shown(value, format_spec)

    def shown(self, value: Any, how: str) -> str:
        if how == "time":
            return _time(value, self.tz)
        if how == "instants":
            return local_instants(str(value), self.tz)
        if how == "span" and isinstance(value, list | tuple) and len(value) == 2:
            return f"{_time(value[0], self.tz)} 至 {_time(value[1], self.tz)}"
        if how == "role":  # a staff role, or a participant's role in the room
            return label_of("role", label_of("participant_role", str(value)))
        if how == "state":
            return label_of("visit_state", str(value))
        if how == "visit_kind":
            return label_of("visit_kind", str(value))
        if how == "level":
            return label_of("court_level", str(value))
        if how == "login_reason":
            return _LOGIN_REASONS.get(str(value), str(value))
        if how == "court_day":
            return label_of("court_day_kind", str(value))
        if how == "ordinal" and isinstance(value, int):  # stored from 0, read from 1
            return str(value + 1)
        if how == "minutes":
            return f"{max(1, -(-int(value) // 60))} 分钟"
        if how == "weekday" and isinstance(value, int) and 0 <= value < 7:
            return WEEKDAY_NAMES[value]
        if how == "court_day_mark":
            return f"（{label_of('court_day_kind', str(value))}）"
        if how == "stranded" and isinstance(value, int):
            return f"，{value} 个已预约的接访需改期" if value else ""
        if how == "as_weekday" and isinstance(value, int) and 0 <= value < 7:
            return f"（按{WEEKDAY_NAMES[value]}的时间安排接访）"
        if how == "minute" and isinstance(value, int):
            return f"{value // 60:02d}:{value % 60:02d}"
        if how == "changes" and isinstance(value, dict):
            return "；".join(self._change(k, v) for k, v in value.items())
        if how == "query" and isinstance(value, dict):
            shown = [
                f"{_FIELDS.get(k, k)}：{self.shown(v, 'state' if k == 'state' else '')}"
                for k, v in value.items()
                if k not in _SEARCH_IGNORED
            ]
            return "；".join(shown) or "无条件"
        return _plain(value)

    def _change(self, field: str, change: Any) -> str:
        name = _FIELDS.get(field, field)
        if field == "password":
            return f"{name}已重置"
        if not (isinstance(change, list) and len(change) == 2):
            return f"{name}：{_plain(change)}"
        old, new = change
        if field == "active":
            old, new = ("启用" if old else "停用"), ("启用" if new else "停用")
        elif field == "role":
            old, new = self.shown(old, "role"), self.shown(new, "role")
        return f"{name}由“{_plain(old)}”改为“{_plain(new)}”"


# actions whose ``reason`` is a word of a vocabulary rather than free text
_REASON_VOCABULARY = {"visit.ended": "end_reason", "visit.watch_stopped": "close_reason"}


def actor_of(event: AuditEvent) -> str:
    """Who acted, as the sentence names them."""
    if event.actor_type == "system":
        return "系统"
    name = event.actor_name or event.actor_id or "未知用户"
    if event.actor_type == "anonymous":
        return f"用户名“{name}”"
    if event.actor_type == "guest":
        return f"来访人 {name}"
    return name


def action_label(action: str) -> str:
    """The short name of an action (for lists and filters)."""
    known = ACTIONS.get(action)
    return known[0] if known else "其他操作"


def sentence(event: AuditEvent, tz: tzinfo) -> str:
    """The event as one Chinese sentence; times in the court's zone ``tz``."""
    detail = dict(event.detail or {})
    known = ACTIONS.get(event.action)
    template = known[1] if known else "{actor}执行了其他操作"
    text = _Formatter(tz).format(template, actor=actor_of(event), **detail)
    reason = detail.get("reason")
    if reason and "{reason" not in template:
        kind = _REASON_VOCABULARY.get(event.action)
        text += f"（原因：{label_of(kind, str(reason)) if kind else _plain(reason)}）"
    return text + "。"


def target_label(event: AuditEvent) -> str:
    """The object acted on, e.g. ``账户 #3``."""
    if not event.target_type:
        return ""
    name = _TARGETS.get(event.target_type, "记录")
    return f"{name} #{event.target_id}" if event.target_id else name

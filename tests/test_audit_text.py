"""The audit trail reads as Chinese sentences: every action written anywhere in the code has
one, the API serves it with each event, and the times in it and in the details are the
court's local time (+08:00)."""

from __future__ import annotations

import ast
import enum
import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from aiohttp.test_utils import TestClient

from config.audit import AuditEvent
from scheduler.cases.words import EventKind
from scheduler.models import ExceptionKind, VisitState
from tests.conftest import MakeClient
from tests.helpers import Booking, local_time, login, next_weekday
from web.audit_text import ACTIONS, sentence

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("config", "scheduler", "web", "recorder", "signaling", "media")
AUDIT_CALLS = {
    "record_audit",
    "audit_values",
    "_audit",
    "audit_now",
    "audit_visit",
    "audit_visit_values",
    "audit",
}
ACTION = re.compile(r"^[a-z_]+\.[a-z_]+$")
# actions built from an enum's value: f"visit.{to.value}", f"availability.{kind.value}"
DYNAMIC: dict[str, type[enum.StrEnum]] = {
    "visit.": VisitState,
    "availability.": ExceptionKind,
    "case.": EventKind,
}
SHANGHAI = ZoneInfo("Asia/Shanghai")
LATIN_WORD = re.compile(r"[A-Za-z_]{3,}")


def _callee(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else ""


def _actions_in(expr: ast.expr, where: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(expr):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if ACTION.match(node.value):
                found.add(node.value)
        elif isinstance(node, ast.JoinedStr):
            head = node.values[0]
            prefix = head.value if isinstance(head, ast.Constant) else ""
            assert prefix in DYNAMIC, f"{where}: an audit action built at run time: {prefix!r}"
            found |= {prefix + member.value for member in DYNAMIC[prefix]}
    return found


def actions_in_code() -> set[str]:
    """Every audit action string the code base writes (read from its syntax tree)."""
    found: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and _callee(node) in AUDIT_CALLS):
                    continue
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                for arg in node.args:
                    found |= _actions_in(arg, where)
                for kw in node.keywords:
                    if kw.arg == "action":
                        found |= _actions_in(kw.value, where)
    return found


def test_every_audit_action_in_the_code_has_a_chinese_sentence() -> None:
    in_code = actions_in_code()
    # the scan itself works: it sees literal, conditional and enum-built actions
    assert {"visit.book", "visit.walk_in", "visit.cancelled", "recording.hold_lifted"} <= in_code
    assert {"auth.login_failed", "user.unlock", "user.password_reset"} <= in_code
    missing = sorted(in_code - ACTIONS.keys())
    assert not missing, f"audit actions without a sentence in web/audit_text.py: {missing}"
    for action, (label, template) in ACTIONS.items():
        assert not LATIN_WORD.search(label), (action, label)
        assert not LATIN_WORD.search(re.sub(r"\{[^}]*\}", "", template)), (action, template)


def _event(action: str, **detail: object) -> AuditEvent:
    return AuditEvent(
        at=datetime(2026, 3, 2, 1, 0, tzinfo=UTC),
        actor_type="user",
        actor_name="op_a",
        action=action,
        detail=detail,
    )


def test_sentences_show_local_times_and_chinese_labels() -> None:
    booked = _event(
        "visit.book",
        petition="（2026）京0108信1号",
        judge_id=3,
        room_id=2,
        starts_at="2026-03-02T01:00:00+00:00",  # an event written before times were local
    )
    assert sentence(booked, SHANGHAI) == (
        "op_a预约了接访：信访件 （2026）京0108信1号，2026-03-02 09:00 开始，法官 #3，接访室 #2。"
    )
    cancelled = _event("visit.cancelled", from_state="scheduled", reason="信访人撤回")
    assert sentence(cancelled, SHANGHAI) == "op_a取消了接访（原为已预约）（原因：信访人撤回）。"
    moved = _event(
        "visit.reschedule",
        **{"from": ["2026-03-02T09:00:00+08:00", "2026-03-02T09:30:00+08:00"]},
        to=["2026-03-02T07:00:00+00:00", "2026-03-02T07:30:00+00:00"],
        reason="法官出差",
    )
    assert sentence(moved, SHANGHAI) == (
        "op_a将接访从 2026-03-02 09:00 至 2026-03-02 09:30 改至 "
        "2026-03-02 15:00 至 2026-03-02 15:30（原因：法官出差）。"
    )
    ended = _event("visit.ended", from_state="in_progress", reason="abandoned")
    assert sentence(ended, SHANGHAI) == (
        "op_a结束了接访（原为接访中）（原因：法官离开超时，系统自动结束）。"
    )
    changed = _event("user.update", changes={"active": [True, False], "role": ["judge", "admin"]})
    assert sentence(changed, SHANGHAI) == (
        "op_a修改了账户：状态由“启用”改为“停用”；角色由“接访法官”改为“系统管理员”。"
    )
    failed = AuditEvent(
        actor_type="anonymous",
        actor_name="op_b",
        action="auth.login_failed",
        detail={"reason": "bad_credentials"},
    )
    assert sentence(failed, SHANGHAI) == "用户名“op_b”登录失败：用户名或密码错误。"
    blocked = _event("auth.login_blocked", retry_after=61)
    assert "约 2 分钟后可再试" in sentence(blocked, SHANGHAI)


async def test_audit_api_serves_sentences_and_book_detail_in_local_time(
    make_client: MakeClient, booking: Booking
) -> None:
    op: TestClient = await make_client()
    h = {"X-CSRF-Token": await login(op, "op_a")}
    w = booking.world
    monday = next_weekday(0)
    body = {
        "petition_id": booking.petitions["a0"],
        "receiving_court_id": w.courts["mid_a"],
        "judge_id": w.users["judge_a"],
        "room_id": w.rooms["basic_a"],
        "starts_at": local_time(monday, 9).isoformat(),
    }
    r = await op.post("/api/v1/visits", json=body, headers=h)
    assert r.status == 201, await r.text()
    vid = (await r.json())["id"]
    admin: TestClient = await make_client()
    await login(admin, "admin")
    page = await (
        await admin.get("/api/v1/audit", params={"target_id": vid, "action": "visit.book"})
    ).json()
    (event,) = page["items"]
    assert event["detail"]["starts_at"] == f"{monday.isoformat()}T09:00:00+08:00"
    assert event["sentence"] == (
        "op_a预约了接访：信访件 A-0，"
        f"{monday.isoformat()} 09:00 开始，法官 #{w.users['judge_a']}，"
        f"接访室 #{w.rooms['basic_a']}。"
    )
    assert event["action_label"] == "预约接访" and event["target_label"] == f"接访 #{vid}"
    actions = await (await admin.get("/api/v1/audit/actions")).json()
    assert {"action": "visit.book", "label": "预约接访"} in actions
    assert len(actions) == len(ACTIONS)

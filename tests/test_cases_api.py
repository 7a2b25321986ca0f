"""The petition case API (docs/protocol.md, "Petition cases"): registration, access by the
court tree, masking, every bad input of issue 16 refused with a clear 4xx, materials stored
whole or not at all, and the overdue scan of the housekeeping job."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from config.audit import AuditEvent
from config.db import create_engine, create_sessionmaker, utcnow
from config.errors import ConflictError
from config.settings import Settings
from scheduler.cases import service as cases
from scheduler.cases.models import CaseEvent, Material
from scheduler.cases.words import CaseCategory, CaseTrack, Channel, HandlingMode
from scheduler.housekeeping import housekeeping
from scheduler.models import IdType, Notification, Petition, Role, User
from scheduler.notify import take_outbox
from scheduler.scope import Actor
from tests.conftest import MakeClient
from tests.helpers import World, add_staff, login, seed_world, wait_for
from web.cli import migrate

ID_A = "110101199003071233"
PHONE_A = "13800138000"
NUMBER = "（2024）甲0101执123号"
PDF = b"%PDF-1.4\n" + b"1 0 obj <<>> endobj\n" * 200 + b"%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 512


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # a 1 MB limit keeps the oversized upload small
    return Settings(data_dir=tmp_path / "var", case_material_max_mb=1)


class Staff:
    """A logged-in client per staff member of the test court tree."""

    def __init__(self, world: World, make_client: MakeClient) -> None:
        self.world = world
        self.make_client = make_client
        self.sessions: dict[str, tuple[TestClient, str]] = {}

    async def __call__(self, username: str) -> tuple[TestClient, str]:
        if username not in self.sessions:
            c = await self.make_client()
            self.sessions[username] = (c, await login(c, username))
        return self.sessions[username]

    async def call(
        self, username: str, method: str, path: str, body: Any = None
    ) -> tuple[int, Any]:
        c, csrf = await self(username)
        resp = await c.request(method, "/api/v1" + path, json=body, headers={"X-CSRF-Token": csrf})
        return resp.status, await resp.json()


@pytest.fixture
async def staff(migrated: Settings, world: World, make_client: MakeClient) -> Staff:
    engine = create_engine(migrated)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            # the world has po_a, po_high and leader_high already
            for name, role, court in (
                ("po_a2", Role.petition_officer, "basic_a"),
                ("po_b", Role.petition_officer, "basic_b"),
                ("po_mid", Role.petition_officer, "mid_a"),
            ):
                await add_staff(db, world, name, role, court)
    finally:
        await engine.dispose()
    return Staff(world, make_client)


@pytest.fixture
async def db(migrated: Settings) -> AsyncIterator[Any]:
    engine = create_engine(migrated)
    yield create_sessionmaker(engine)
    await engine.dispose()


def letter(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "channel": "letter",
        "petitioners": [
            {"name": "张三", "id_type": "resident_id", "id_number": ID_A, "phone": PHONE_A}
        ],
        "people_count": 1,
        "category": "enforcement",
        "summary": f"判决生效两年仍未执行到位，联系电话 {PHONE_A}",
        "original_numbers": [NUMBER],
        "original_court": "甲市某区人民法院",
    }
    body.update(over)
    return body


COURT_TZ = ZoneInfo("Asia/Shanghai")  # the settings' default time zone


def day_end_in_court(instant: datetime) -> datetime:
    """23:59:59 court time on ``instant``'s court day."""
    return datetime.combine(instant.astimezone(COURT_TZ).date(), time(23, 59, 59), COURT_TZ)


async def register(staff: Staff, username: str = "op_a", **over: Any) -> dict[str, Any]:
    status, body = await staff.call(username, "POST", "/cases", letter(**over))
    assert status == 201, body
    return dict(body["case"])


async def petition_matter(staff: Staff, case_id: int) -> None:
    """The basic court triages the case as a petition matter with po_a responsible."""
    status, body = await staff.call(
        "po_a",
        "POST",
        f"/cases/{case_id}/actions/triage",
        {"track": "petition", "mode": "careful", "responsible_id": staff.world.users["po_a"]},
    )
    assert status == 200, body


# ---------------------------------------------------------------- registration and masking


async def test_the_timeline_names_who_acted_by_their_name_not_their_account(
    staff: Staff, db: Any
) -> None:
    async with db() as session, session.begin():
        await session.execute(
            update(User).where(User.username == "op_a").values(display_name="王书记员")
        )
    case = await register(staff)
    status, detail = await staff.call("op_a", "GET", f"/cases/{case['id']}")
    assert status == 200
    first = detail["events"][0]
    assert (first["actor"], first["actor_name"]) == ("王书记员", "op_a")


async def test_registration_lists_and_shows_the_case_with_id_and_phone_masked(
    staff: Staff,
) -> None:
    case = await register(staff)
    assert case["petitioner_name"] == "张三" and case["state"] == "registered"
    assert case["handler_court"]["name"] == "甲市某区人民法院"
    assert case["original_numbers"] == ["(2024)甲0101执123号"]
    status, page = await staff.call("op_a", "GET", "/cases")
    assert status == 200 and page["total"] == 1 and page["items"][0]["id"] == case["id"]
    c, _ = await staff("op_a")
    resp = await c.get(f"/api/v1/cases/{case['id']}")
    raw = await resp.text()
    assert resp.status == 200
    detail = await resp.json()
    (person,) = detail["case"]["petitioners"]
    assert person["id_number"] == "1101**********1233"
    assert person["phone"] == "138****8000"
    assert "138****8000" in detail["case"]["summary"]
    assert ID_A not in raw and PHONE_A not in raw
    assert [e["kind"] for e in detail["events"]] == ["registered", "contact"]
    assert "triage_petition" in detail["actions"] and "terminate" not in detail["actions"]
    # the list carries no ID or phone number at all
    assert ID_A not in await (await c.get("/api/v1/cases")).text()


async def test_an_incomplete_registration_names_the_missing_fields(staff: Staff) -> None:
    status, body = await staff.call(
        "op_a", "POST", "/cases", letter(channel=None, original_numbers=[], original_court="")
    )
    assert status == 422
    assert body["error"]["code"] == "incomplete_record"
    assert body["error"]["details"]["fields"] == ["来源渠道", "原案号", "原审法院"]
    assert "来源渠道" in body["error"]["message"]


async def test_a_second_contact_about_the_same_matter_is_linked_with_200(staff: Staff) -> None:
    first = await register(staff)
    assert first["contact_count"] == 1  # the answer shows the case as stored
    status, body = await staff.call(
        "op_a",
        "POST",
        "/cases",
        letter(channel="walk_in", original_numbers=[" (2024)甲0101执123号"]),
    )
    assert status == 200, body
    assert body["linked"] is True and body["case"]["id"] == first["id"]
    assert body["case"]["contact_count"] == 2
    status, found = await staff.call(
        "op_a", "GET", f"/cases/duplicates?id_number={ID_A}&numbers=x,{NUMBER}"
    )
    assert status == 200 and found["case"]["id"] == first["id"]


async def test_two_clerks_registering_the_same_matter_at_once_make_one_case(
    staff: Staff, db: Any
) -> None:
    await staff("op_a")
    await staff("po_a")
    results = await asyncio.gather(
        staff.call("op_a", "POST", "/cases", letter()),
        staff.call("po_a", "POST", "/cases", letter(channel="walk_in")),
    )
    statuses = sorted(s for s, _ in results)
    assert statuses in ([200, 201], [201, 409]), results
    async with db() as session:
        assert await session.scalar(select(func.count()).select_from(Petition)) == 1


async def test_a_phone_number_that_is_not_one_is_refused_at_registration(staff: Staff) -> None:
    person = {"name": "张三", "id_type": "resident_id", "id_number": ID_A, "phone": "abc"}
    status, body = await staff.call("op_a", "POST", "/cases", letter(petitioners=[person]))
    assert status == 422 and body["error"]["code"] == "validation_failed", body
    [problem] = body["error"]["details"]
    assert problem["field"] == "petitioners.0.phone" and problem["message"] == "电话号码格式无效"


async def test_a_petitioner_on_file_under_another_name_or_phone_is_not_silently_replaced(
    staff: Staff, db: Any
) -> None:
    await register(staff)  # 张三, ID_A, PHONE_A
    other_matter = ["（2024）甲0101民9号"]
    wang = {"name": "王五", "id_type": "resident_id", "id_number": ID_A, "phone": PHONE_A}
    status, body = await staff.call(
        "op_a", "POST", "/cases", letter(petitioners=[wang], original_numbers=other_matter)
    )
    assert status == 422 and body["error"]["code"] == "name_mismatch", body
    assert "已登记为信访人「张三」" in body["error"]["message"]
    assert ID_A not in body["error"]["message"]  # masked
    zhang = {**wang, "name": "张三", "phone": "13700002222"}
    status, body = await staff.call(
        "op_a", "POST", "/cases", letter(petitioners=[zhang], original_numbers=other_matter)
    )
    assert status == 422 and body["error"]["code"] == "phone_mismatch", body
    assert "138****8000" in body["error"]["message"]
    async with db() as session:  # nothing changed, no second case
        assert await session.scalar(select(func.count()).select_from(Petition)) == 1
    status, body = await staff.call(
        "op_a",
        "POST",
        "/cases",
        letter(petitioners=[{**zhang, "phone": ""}], original_numbers=other_matter),
    )
    assert status == 201, body
    status, detail = await staff.call("op_a", "GET", f"/cases/{body['case']['id']}")
    assert [p["phone"] for p in detail["case"]["petitioners"]] == ["138****8000"]


async def test_a_registration_whose_duplicate_check_was_overtaken_is_refused_by_the_key(
    staff: Staff, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other clerk's case committed after this one looked for it (on PostgreSQL two
    writers overlap): the unique key of (identity, original number) refuses the second."""
    first = await register(staff)

    async def overtaken(*args: Any, **kwargs: Any) -> None:
        return None

    monkeypatch.setattr(cases, "find_duplicate", overtaken)
    status, body = await staff.call("po_a", "POST", "/cases", letter(channel="walk_in"))
    assert status == 409 and body["error"]["code"] == "duplicate_case", body
    assert "重复访" in body["error"]["message"]
    async with db() as session:
        assert await session.scalar(select(func.count()).select_from(Petition)) == 1
    monkeypatch.undo()  # submitted again, as the message says: linked to the first case
    status, body = await staff.call("po_a", "POST", "/cases", letter(channel="walk_in"))
    assert status == 200 and body["case"]["id"] == first["id"], body


# ---------------------------------------------------------------- access by the court tree


async def test_a_court_sees_its_own_supervised_and_assigned_cases_and_another_branch_gets_404(
    staff: Staff,
) -> None:
    case = await register(staff)
    path = f"/cases/{case['id']}"
    for who in ("op_a", "po_mid", "po_high"):  # its own court, and the courts above it
        status, body = await staff.call(who, "GET", path)
        assert status == 200, (who, body)
        status, page = await staff.call(who, "GET", "/cases")
        assert [r["id"] for r in page["items"]] == [case["id"]], who
    status, body = await staff.call("po_b", "GET", path)
    assert status == 404 and body["error"]["code"] == "not_found"
    status, page = await staff.call("po_b", "GET", "/cases")
    assert page["total"] == 0
    status, body = await staff.call("po_b", "POST", f"{path}/actions/progress", {"text": "x"})
    assert status == 404
    status, found = await staff.call(
        "po_b", "GET", f"/cases/duplicates?id_number={ID_A}&numbers={NUMBER}"
    )
    assert status == 200 and found["case"] is None
    # another branch's staff are not offered either
    status, _ = await staff.call(
        "po_high", "GET", f"/cases/staff?court_id={staff.world.courts['basic_b']}"
    )
    assert status == 200
    status, _ = await staff.call(
        "po_a", "GET", f"/cases/staff?court_id={staff.world.courts['basic_b']}"
    )
    assert status == 404


async def test_a_case_registered_above_and_assigned_down_is_seen_by_the_assigning_court(
    staff: Staff,
) -> None:
    case = await register(staff, "po_mid")
    await staff.call(
        "po_mid",
        "POST",
        f"/cases/{case['id']}/actions/triage",
        {"track": "petition", "mode": "joint", "responsible_id": staff.world.users["po_mid"]},
    )
    status, below = await staff.call("po_mid", "GET", "/cases/courts-below")
    assert [c["id"] for c in below] == [staff.world.courts["basic_a"]]
    status, detail = await staff.call(
        "po_mid",
        "POST",
        f"/cases/{case['id']}/actions/assign",
        {"to_court_id": staff.world.courts["basic_a"], "instructions": "请限期化解"},
    )
    assert status == 200, detail
    assert detail["case"]["state"] == "assigned"
    assert detail["case"]["handler_court"]["id"] == staff.world.courts["basic_a"]
    assert detail["case"]["supervising_court"]["id"] == staff.world.courts["mid_a"]
    assert "report" not in detail["actions"] and "flag" in detail["actions"]
    status, queue = await staff.call("po_a", "GET", "/cases?node=feedback")
    assert [r["id"] for r in queue["items"]] == [case["id"]]
    status, mine = await staff.call("po_a", "GET", f"/cases/{case['id']}")
    assert "report" in mine["actions"] and "accept" not in mine["actions"]
    status, board = await staff.call("po_mid", "GET", "/cases/board")
    ((court,),) = [[g for g in board["courts"]]]
    assert court["court"]["name"] == "甲市某区人民法院"
    assert [r["id"] for r in court["cases"]] == [case["id"]]
    assert (await staff.call("po_b", "GET", f"/cases/{case['id']}"))[0] == 404


async def test_the_board_counts_every_court_lists_the_cases_due_first_and_a_court_in_full(
    staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The board's first view lists only the cases due first (BOARD_PAGE), but every court's
    totals count all of them; asked for one court below, it lists that court's cases in full;
    a court not below is not shown."""
    basic = staff.world.courts["basic_a"]
    ids = []
    for number in ("(2024)甲0101执123号", "(2024)甲0101执124号"):
        case = await register(staff, "po_mid", original_numbers=[number])
        await staff.call(
            "po_mid",
            "POST",
            f"/cases/{case['id']}/actions/triage",
            {"track": "petition", "mode": "joint", "responsible_id": staff.world.users["po_mid"]},
        )
        status, detail = await staff.call(
            "po_mid", "POST", f"/cases/{case['id']}/actions/assign", {"to_court_id": basic}
        )
        assert status == 200, detail
        ids.append(case["id"])
    monkeypatch.setattr(cases, "BOARD_PAGE", 1)
    status, board = await staff.call("po_mid", "GET", "/cases/board")
    assert status == 200, board
    ((court,),) = [board["courts"]]
    assert (court["court"]["id"], court["total"], court["overdue"]) == (basic, 2, 0)
    assert (board["total"], board["overdue"]) == (2, 0)
    assert [r["id"] for r in court["cases"]] == [ids[0]]  # the deadline due first
    status, full = await staff.call("po_mid", "GET", f"/cases/board?court_id={basic}")
    assert status == 200, full
    ((court,),) = [full["courts"]]
    assert sorted(r["id"] for r in court["cases"]) == sorted(ids) and court["total"] == 2
    other = staff.world.courts["basic_b"]
    status, refused = await staff.call("po_mid", "GET", f"/cases/board?court_id={other}")
    assert status == 404 and "督办范围" in refused["error"]["message"], refused


async def test_every_action_route_runs_its_action_and_answers_the_case(staff: Staff) -> None:
    case = await register(staff)
    cid = case["id"]
    basic = staff.world.courts["basic_a"]

    async def act(who: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
        status, detail = await staff.call(who, "POST", f"/cases/{cid}/actions/{action}", body)
        assert status == 200, (action, detail)
        return dict(detail)

    status, contact = await staff.call(
        "op_a", "POST", f"/cases/{cid}/contacts", {"channel": "phone", "summary": "来电催办"}
    )
    assert status == 201 and contact["channel"] == "phone" and contact["repeat"] is True
    await petition_matter(staff, cid)
    deadline = (utcnow() + timedelta(days=10)).isoformat()
    await act("po_high", "assign", {"to_court_id": basic, "deadline": deadline})
    assert (await act("po_high", "flag", {"remark": "重点督办"}))["case"]["flagged"] is True
    led = await act("leader_high", "take_lead", {})
    assert led["case"]["leader"]["name"] == "leader_high"
    # the entry says what happened; who (their name, not their account) is the entry's actor
    assert [e["text"] for e in led["events"] if e["kind"] == "leader"] == ["院领导包案"]
    status, mine = await staff.call("leader_high", "GET", "/cases?mine=1&flagged=1")
    assert [r["id"] for r in mine["items"]] == [cid]
    await act("po_a", "progress", {"text": "已约谈被执行人"})
    await act("po_a", "report", {"result": "已执行到位一半"})
    returned = await act("po_high", "return", {"remark": "未全部执行到位"})
    assert returned["case"]["state"] == "assigned"
    await act("po_a", "report", {"result": "已全部执行到位"})
    accepted = await act("po_high", "accept", {"remark": "同意"})
    assert accepted["case"]["state"] == "handling"
    assert [a["state"] for a in accepted["assignments"]] == ["accepted"]
    await act("po_a", "judicial_aid", {"stage": "granted", "amount_yuan": 5000})
    await act("po_high", "unflag", {})
    resolved = await act("po_a", "resolve", {"ground": "enforced", "remark": "执行款已发放"})
    assert resolved["case"]["state"] == "resolved" and resolved["case"]["node"] == "followup"
    assert len(resolved["followups"]) == 1
    assert "schedule_followup" not in resolved["actions"]  # the 回访 of 化解 is pending
    unsettled = await act("po_a", "record_followup", {"result": "unsatisfied"})
    assert unsettled["followups"][0]["result"] == "unsatisfied"
    assert "schedule_followup" in unsettled["actions"]
    # a further 回访 (安排回访): its own timeline entry, its due time in court local time
    again = (utcnow() + timedelta(days=7)).replace(hour=1, minute=0, second=0, microsecond=0)
    scheduled = await act("po_a", "schedule_followup", {"due_at": again.isoformat()})
    assert scheduled["case"]["node"] == "followup" and len(scheduled["followups"]) == 2
    entry = scheduled["events"][-1]
    assert entry["kind"] == "followup_scheduled"
    assert entry["text"] == f"安排回访，{again:%Y-%m-%d} 09:00 前完成"
    status, pending = await staff.call(
        "po_a", "POST", f"/cases/{cid}/actions/schedule_followup", {}
    )
    assert status == 409 and pending["error"]["code"] == "followup_pending", pending
    assert "请先记录回访结果" in pending["error"]["message"]
    followed = await act("po_a", "record_followup", {"result": "satisfied"})
    assert [f["result"] for f in followed["followups"]] == ["unsatisfied", "satisfied"]
    await act("po_high", "review", {"findings": "程序规范", "rating": "good"})
    reopened = await act("po_high", "reopen", {"reason": "信访人再次来访"})
    assert reopened["case"]["state"] == "handling"
    first = reopened["events"][0]["id"]
    corrected = await act("po_a", "correct", {"event_id": first, "text": "来信日期应为昨日"})
    kinds = [e["kind"] for e in corrected["events"]]
    assert kinds == [
        "registered",
        "contact",
        "contact",
        "triaged",
        "assigned",
        "flagged",
        "leader",
        "progress",
        "reported",
        "returned",
        "reported",
        "accepted",
        "judicial_aid",
        "unflagged",
        "resolved",
        "followup",
        "followup_scheduled",
        "followup",
        "review",
        "reopened",
        "correction",
    ]
    assert corrected["events"][-1]["detail"]["corrects"] == first
    # deadline rules: everyone reads them, only an admin changes one
    status, rules = await staff.call("po_a", "GET", "/case-rules")
    assert status == 200 and "feedback" in {r["node"] for r in rules}
    body = {"days": 20, "remind_days_before": 3}
    assert (await staff.call("po_high", "PUT", "/case-rules/feedback", body))[0] == 403
    status, rule = await staff.call("admin", "PUT", "/case-rules/feedback", body)
    assert status == 200 and rule == {"node": "feedback", **body}
    assert (await staff.call("admin", "PUT", "/case-rules/nonsense", body))[0] == 404
    status, bad = await staff.call(
        "admin", "PUT", "/case-rules/feedback", {"days": 3, "remind_days_before": 3}
    )
    assert status == 422 and bad["error"]["code"] == "invalid_rule"


# ---------------------------------------------------------------- bad input and races


async def test_a_deadline_in_the_past_and_a_court_not_below_are_refused(staff: Staff) -> None:
    case = await register(staff)
    await petition_matter(staff, case["id"])
    assign = f"/cases/{case['id']}/actions/assign"
    past = (utcnow() - timedelta(hours=1)).isoformat()
    status, body = await staff.call(
        "po_high", "POST", assign, {"to_court_id": staff.world.courts["basic_a"], "deadline": past}
    )
    assert status == 422 and body["error"]["code"] == "past_deadline"
    assert "反馈期限" in body["error"]["message"]
    # the middle court of one branch may not hand a case to the other branch's court
    status, body = await staff.call(
        "po_mid", "POST", assign, {"to_court_id": staff.world.courts["basic_b"]}
    )
    assert status == 422 and body["error"]["code"] == "not_below"
    # nor to a court above it
    status, body = await staff.call(
        "po_mid", "POST", assign, {"to_court_id": staff.world.courts["high"]}
    )
    assert status == 422 and body["error"]["code"] == "not_below"
    # a deadline without a time zone is refused as malformed
    status, body = await staff.call(
        "po_high",
        "POST",
        assign,
        {"to_court_id": staff.world.courts["basic_a"], "deadline": "2099-01-01T10:00:00"},
    )
    assert status == 422 and body["error"]["code"] == "validation_failed"
    status, detail = await staff.call("po_a", "GET", f"/cases/{case['id']}")
    assert detail["case"]["state"] == "handling" and detail["assignments"] == []


async def test_closing_without_grounds_and_termination_below_high_level_are_refused(
    staff: Staff,
) -> None:
    case = await register(staff)
    await petition_matter(staff, case["id"])
    resolve = f"/cases/{case['id']}/actions/resolve"
    status, body = await staff.call("po_a", "POST", resolve, {"remark": "已履行完毕"})
    assert status == 422 and body["error"]["code"] == "missing_grounds"
    assert "化解依据" in body["error"]["message"]
    terminate = f"/cases/{case['id']}/actions/terminate"
    ending = {"ground": "reviewed_upheld", "approval": "院长审批（2025）甲信终1号"}
    status, body = await staff.call("po_mid", "POST", terminate, ending)
    assert status == 403
    assert body["error"]["message"] == "信访终结只能由高级人民法院或最高人民法院决定"
    status, body = await staff.call("po_high", "POST", terminate, {"approval": "x"})
    assert status == 422 and body["error"]["code"] == "missing_grounds"
    status, detail = await staff.call("po_high", "POST", terminate, ending)
    assert status == 200 and detail["case"]["state"] == "terminated"
    # a closed case is not closed again
    status, body = await staff.call("po_a", "POST", resolve, {"ground": "enforced", "remark": "x"})
    assert status == 409 and body["error"]["code"] == "case_state"


async def test_a_terminated_case_is_reopened_only_by_a_high_court(staff: Staff) -> None:
    case = await register(staff)
    await petition_matter(staff, case["id"])
    ending = {"ground": "reviewed_upheld", "approval": "院长审批（2025）甲信终1号"}
    terminate = f"/cases/{case['id']}/actions/terminate"
    status, _ = await staff.call("po_high", "POST", terminate, ending)
    assert status == 200
    reopen = f"/cases/{case['id']}/actions/reopen"
    status, detail = await staff.call("po_a", "GET", f"/cases/{case['id']}")
    assert "reopen" not in detail["actions"]  # the handling court below is not offered it
    for who in ("po_a", "po_mid"):
        status, body = await staff.call(who, "POST", reopen, {"reason": "信访人提出新证据"})
        assert status == 403, (who, body)
        assert body["error"]["message"] == "已终结的信访件只能由高级人民法院或最高人民法院重新启动"
    status, detail = await staff.call("po_high", "GET", f"/cases/{case['id']}")
    assert "reopen" in detail["actions"]
    status, detail = await staff.call("po_high", "POST", reopen, {"reason": "信访人提出新证据"})
    assert status == 200 and detail["case"]["state"] == "handling"


async def test_resolution_grounds_are_those_of_the_case_category(staff: Staff) -> None:
    case = await register(staff, category="civil_retrial")
    await petition_matter(staff, case["id"])
    status, detail = await staff.call("po_a", "GET", f"/cases/{case['id']}")
    grounds = detail["resolution_grounds"]
    assert "explained_accepted" in grounds and "retrial_filed" in grounds
    assert "enforced" not in grounds and "compensation_decided" not in grounds
    resolve = f"/cases/{case['id']}/actions/resolve"
    status, body = await staff.call("po_a", "POST", resolve, {"ground": "enforced", "remark": "x"})
    assert status == 422 and body["error"]["code"] == "ground_not_for_category"
    assert body["error"]["message"] == "「执行到位」不是民事再审申请类信访件的化解依据"
    status, detail = await staff.call(
        "po_a",
        "POST",
        resolve,
        {"ground": "explained_accepted", "remark": "经释法明理，服判息诉。"},
    )
    assert status == 200 and detail["case"]["state"] == "resolved"
    [entry] = [e["text"] for e in detail["events"] if e["kind"] == "resolved"]
    assert "服判息诉；安排回访" in entry, entry  # the remark's own 。 does not end the sentence
    enforcement = await register(staff, original_numbers=["（2024）甲0102执1号"])
    status, detail = await staff.call("po_a", "GET", f"/cases/{enforcement['id']}")
    assert detail["resolution_grounds"][:3] == [
        "enforced",
        "settled_performing",
        "written_undertaking",
    ]


async def test_a_basic_court_is_not_offered_an_assignment_it_could_not_make(staff: Staff) -> None:
    case = await register(staff)
    await petition_matter(staff, case["id"])
    status, detail = await staff.call("po_a", "GET", f"/cases/{case['id']}")
    assert status == 200 and "progress" in detail["actions"]
    assert "assign" not in detail["actions"]  # no court is below a basic court
    status, detail = await staff.call("po_mid", "GET", f"/cases/{case['id']}")
    assert "assign" in detail["actions"]


async def test_handing_a_case_to_another_court_withdraws_the_first_and_says_so(
    staff: Staff,
) -> None:
    case = await register(staff)
    await petition_matter(staff, case["id"])  # po_a responsible
    assign = f"/cases/{case['id']}/actions/assign"
    deadline = (utcnow() + timedelta(days=10)).isoformat()
    world = staff.world
    body = {"to_court_id": world.courts["basic_a"], "deadline": deadline}
    status, _ = await staff.call("po_high", "POST", assign, body)
    assert status == 200
    body = {"to_court_id": world.courts["mid_a"], "deadline": deadline}
    status, detail = await staff.call("po_high", "POST", assign, body)
    assert status == 200, detail
    assert [a["state"] for a in detail["assignments"]] == ["withdrawn", "open"]
    first, last = [e["text"] for e in detail["events"] if e["kind"] == "assigned"]
    assert first.startswith("交办 甲市某区人民法院") and first.endswith(
        "首办责任人由承办法院重新确定"  # po_a, named at triage, is no longer responsible
    ), first
    assert last.startswith("改派（原承办：甲市某区人民法院）：交办 甲市中级人民法院"), last


async def test_a_case_is_found_by_its_original_number_typed_without_year_or_brackets(
    staff: Staff,
) -> None:
    case = await register(staff)  # （2024）甲0101执123号
    for typed in ("（2024）甲0101执123号", "(2024)甲0101执123", "甲0101执123号", "甲0101执123"):
        status, page = await staff.call("op_a", "GET", "/cases?q=" + quote(typed))
        assert status == 200 and [r["id"] for r in page["items"]] == [case["id"]], typed
    for typed in ("0101执123", "甲0101执12", "(2023)甲0101执123"):  # not this number
        status, page = await staff.call("op_a", "GET", "/cases?q=" + quote(typed))
        assert status == 200 and page["items"] == [], typed


async def test_a_letter_registered_late_is_due_from_when_it_came(staff: Staff) -> None:
    came = utcnow().replace(microsecond=0) - timedelta(days=2)
    case = await register(staff, occurred_at=came.isoformat())
    status, detail = await staff.call("op_a", "GET", f"/cases/{case['id']}")
    assert status == 200
    due = datetime.fromisoformat(detail["case"]["due_at"])
    # the triage rule's 3 days, from the letter, to the end of that day in court time
    assert due == day_end_in_court(came + timedelta(days=3))


async def test_a_changed_deadline_rule_sets_the_next_cases_deadline(staff: Staff) -> None:
    status, body = await staff.call(
        "admin", "PUT", "/case-rules/triage", {"days": 5, "remind_days_before": 2}
    )
    assert status == 200 and (body["days"], body["remind_days_before"]) == (5, 2)
    status, body = await staff.call(
        "admin", "PUT", "/case-rules/triage", {"days": 5, "remind_days_before": 5}
    )
    assert status == 422 and body["error"]["code"] == "invalid_rule"
    status, _ = await staff.call("po_high", "PUT", "/case-rules/triage", {"days": 9})
    assert status == 403
    came = utcnow().replace(microsecond=0) - timedelta(hours=1)
    case = await register(staff, occurred_at=came.isoformat())
    assert datetime.fromisoformat(case["due_at"]) == day_end_in_court(came + timedelta(days=5))


async def test_a_deadline_from_the_rules_ends_with_the_court_day_as_a_typed_one_does(
    staff: Staff,
) -> None:
    """Registered at 09:05 court time: triage is due 3 days later at 23:59:59, not at 09:05;
    the handling node entered at triage is due at the end of its 60th day too."""
    day = utcnow().astimezone(COURT_TZ).date() - timedelta(days=2)
    came = datetime.combine(day, time(9, 5), COURT_TZ)
    case = await register(staff, occurred_at=came.isoformat())
    due = datetime.fromisoformat(case["due_at"]).astimezone(COURT_TZ)
    assert due == datetime.combine(day + timedelta(days=3), time(23, 59, 59), COURT_TZ)
    await petition_matter(staff, case["id"])
    status, detail = await staff.call("op_a", "GET", f"/cases/{case['id']}")
    assert status == 200 and detail["case"]["node"] == "handling"
    handling = datetime.fromisoformat(detail["case"]["due_at"]).astimezone(COURT_TZ)
    assert handling.time() == time(23, 59, 59), handling
    assert handling.date() == (utcnow() + timedelta(days=60)).astimezone(COURT_TZ).date()


async def test_a_litigation_matter_is_guided_to_its_procedure_and_the_guidance_kept(
    staff: Staff,
) -> None:
    case = await register(staff, category="civil_retrial")
    triage = f"/cases/{case['id']}/actions/triage"
    status, body = await staff.call("po_a", "POST", triage, {"track": "litigation"})
    assert status == 422 and body["error"]["message"] == "请选择导入的诉讼程序"
    status, body = await staff.call(
        "po_a", "POST", triage, {"track": "litigation", "procedure": "retrial"}
    )
    assert status == 422 and body["error"]["message"] == "请填写释明引导内容"
    guidance = "告知其可在判决生效后六个月内向上一级法院申请再审，并说明所需材料。"
    status, detail = await staff.call(
        "po_a",
        "POST",
        triage,
        {"track": "litigation", "procedure": "retrial", "guidance": guidance},
    )
    assert status == 200, detail
    got = detail["case"]
    assert (got["state"], got["track"], got["procedure"]) == ("guided", "litigation", "retrial")
    [entry] = [e for e in detail["events"] if e["kind"] == "triaged"]
    assert entry["text"].startswith("分流为诉讼事项，引导至「申请再审」：告知其可在")
    assert entry["detail"]["guidance"] == guidance  # kept whole, not only the sentence's part


async def test_a_second_owner_needs_a_reason(staff: Staff) -> None:
    case = await register(staff)
    await petition_matter(staff, case["id"])
    owner = f"/cases/{case['id']}/actions/set_owner"
    status, body = await staff.call(
        "po_a", "POST", owner, {"responsible_id": staff.world.users["po_a2"]}
    )
    assert status == 409 and body["error"]["code"] == "second_owner"
    status, body = await staff.call(
        "po_a", "POST", owner, {"responsible_id": staff.world.users["po_b"], "reason": "调岗"}
    )
    assert status == 422 and body["error"]["code"] == "invalid_owner"
    status, detail = await staff.call(
        "po_a", "POST", owner, {"responsible_id": staff.world.users["po_a2"], "reason": "调岗"}
    )
    assert status == 200 and detail["case"]["responsible"]["name"] == "po_a2"


async def test_unknown_fields_and_actions_are_refused(staff: Staff) -> None:
    case = await register(staff)
    status, body = await staff.call(
        "po_a", "POST", f"/cases/{case['id']}/actions/progress", {"text": "x", "state": "resolved"}
    )
    assert status == 422 and body["error"]["code"] == "validation_failed"
    status, _ = await staff.call("po_a", "POST", f"/cases/{case['id']}/actions/delete", {})
    assert status in (404, 405)
    status, body = await staff.call("arch_a", "POST", f"/cases/{case['id']}/actions/progress", {})
    assert status == 403


# ---------------------------------------------------------------- materials


async def upload(
    staff: Staff, username: str, case_id: int, data: bytes, filename: str = "scan.pdf"
) -> tuple[int, Any]:
    c, csrf = await staff(username)
    form = FormData()
    form.add_field("file", data, filename=filename, content_type="application/octet-stream")
    resp = await c.post(
        f"/api/v1/cases/{case_id}/materials", data=form, headers={"X-CSRF-Token": csrf}
    )
    return resp.status, await resp.json()


async def stored(settings: Settings, db: Any) -> tuple[list[str], int]:
    folder = settings.data_dir / "materials"
    files = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    async with db() as session:
        rows = await session.scalar(select(func.count()).select_from(Material))
    return files, int(rows or 0)


async def test_a_material_is_stored_under_its_hash_and_every_view_is_audited(
    staff: Staff, migrated: Settings, db: Any
) -> None:
    case = await register(staff)
    status, material = await upload(staff, "op_a", case["id"], PDF, "判决书扫描件.pdf")
    assert status == 201, material
    digest = hashlib.sha256(PDF).hexdigest()
    assert material["sha256"] == digest and material["size"] == len(PDF)
    assert material["content_type"] == "application/pdf"
    assert material["filename"] == "判决书扫描件.pdf"
    assert await stored(migrated, db) == ([f"{digest}.pdf"], 1)
    c, _ = await staff("po_high")
    resp = await c.get(material["url"])
    assert resp.status == 200 and await resp.read() == PDF
    assert resp.headers["Content-Type"] == "application/pdf"
    assert resp.headers["Content-Disposition"].startswith("inline")
    async with db() as session:
        views = (
            await session.scalars(
                select(AuditEvent).where(AuditEvent.action == "case.material_view")
            )
        ).all()
    assert [(v.actor_name, v.target_id) for v in views] == [("po_high", str(case["id"]))]
    status, detail = await staff.call("op_a", "GET", f"/cases/{case['id']}")
    assert [m["id"] for m in detail["materials"]] == [material["id"]]
    assert detail["events"][-1]["kind"] == "material"
    # another branch neither sees nor reads it
    c, _ = await staff("po_b")
    assert (await c.get(material["url"])).status == 404
    # a scan named after an ID number is listed masked
    status, named = await upload(staff, "op_a", case["id"], PDF, "身份证110101199003071233.pdf")
    assert status == 201 and named["filename"] == "身份证1101**********1233.pdf", named


async def test_an_upload_that_is_not_pdf_jpeg_or_png_leaves_nothing_behind(
    staff: Staff, migrated: Settings, db: Any
) -> None:
    case = await register(staff)
    for data, name in (
        (b"MZ\x90\x00 an executable named as a pdf" * 10, "scan.pdf"),
        (b"<html><script>alert(1)</script></html>", "scan.png"),
        (b"%PD", "short.pdf"),
    ):
        status, body = await upload(staff, "op_a", case["id"], data, name)
        assert status == 415, body
        assert body["error"]["code"] == "unsupported_material"
        assert "PDF、JPEG 或 PNG" in body["error"]["message"]
    status, body = await upload(staff, "op_a", case["id"], b"", "empty.pdf")
    assert status == 422 and body["error"]["code"] == "empty_file"
    assert await stored(migrated, db) == ([], 0)


async def test_an_upload_over_the_size_limit_is_refused_and_leaves_nothing_behind(
    staff: Staff, migrated: Settings, db: Any
) -> None:
    case = await register(staff)
    big = PNG + b"\x00" * (1024 * 1024)  # over the 1 MB limit of these tests
    status, body = await upload(staff, "op_a", case["id"], big, "big.png")
    assert status == 413, body
    assert body["error"]["code"] == "material_too_large"
    assert body["error"]["message"] == "材料文件过大，单个文件不能超过 1 MB"
    assert await stored(migrated, db) == ([], 0)
    # a chunked upload (no Content-Length) is cut off while streaming
    c, csrf = await staff("op_a")

    async def chunks() -> AsyncIterator[bytes]:
        yield PNG
        for _ in range(20):
            yield b"\x00" * (64 * 1024)

    form = FormData()
    form.add_field("file", chunks(), filename="big.png", content_type="image/png")
    resp = await c.post(
        f"/api/v1/cases/{case['id']}/materials", data=form, headers={"X-CSRF-Token": csrf}
    )
    assert resp.status == 413, await resp.text()
    assert await stored(migrated, db) == ([], 0)


async def test_an_upload_refused_by_the_case_rules_leaves_nothing_behind(
    staff: Staff, migrated: Settings, db: Any
) -> None:
    case = await register(staff)
    other = await register(staff, "op_b", original_numbers=["（2024）乙0101民1号"])
    status, body = await staff.call(
        "op_a", "POST", "/cases", letter(original_numbers=["（2023）甲1号"])
    )
    assert status == 201
    # a contact of another case: refused once the file has been received
    c, csrf = await staff("op_b")
    form = FormData()
    form.add_field("contact_id", str(body["contact_id"]))
    form.add_field("file", PDF, filename="scan.pdf")
    resp = await c.post(
        f"/api/v1/cases/{other['id']}/materials", data=form, headers={"X-CSRF-Token": csrf}
    )
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "invalid_contact"
    # another branch's case
    status, body = await upload(staff, "op_b", case["id"], PDF)
    assert status == 404
    assert await stored(migrated, db) == ([], 0)


async def test_a_repeat_linked_to_another_branchs_case_shows_nothing_of_it_but_takes_its_scans(
    staff: Staff, migrated: Settings, db: Any
) -> None:
    """Another branch registers the same matter: the contact is linked (重复访) to the case,
    but the answer names nothing of a case the court may not see (as /cases/duplicates),
    and the scans of the court's own contact are still stored."""
    case = await register(staff)  # basic_a
    status, body = await staff.call("po_b", "POST", "/cases", letter(summary="再次来信"))
    assert status == 200, body
    assert body["case"] is None and body["linked"] is True and body["other_court"] is True
    assert set(body) == {"case", "contact_id", "linked", "other_court"}
    assert "张三" not in str(body) and case["number"] not in str(body)
    assert (await staff.call("po_b", "GET", f"/cases/{case['id']}"))[0] == 404
    # the contact's scans go to the contact's own route
    c, csrf = await staff("po_b")
    form = FormData()
    form.add_field("file", PDF, filename="来信扫描件.pdf", content_type="application/pdf")
    resp = await c.post(
        f"/api/v1/case-contacts/{body['contact_id']}/materials",
        data=form,
        headers={"X-CSRF-Token": csrf},
    )
    material = await resp.json()
    assert resp.status == 201, material
    assert material["sha256"] == hashlib.sha256(PDF).hexdigest()
    assert await stored(migrated, db) == ([f"{material['sha256']}.pdf"], 1)
    status, detail = await staff.call("op_a", "GET", f"/cases/{case['id']}")
    assert [(m["id"], m["contact_id"]) for m in detail["materials"]] == [
        (material["id"], body["contact_id"])
    ]
    # the case's own route stays closed to another branch; so are the case's other
    # contacts (not registered by that court), and a contact that does not exist
    status, refused = await upload(staff, "po_b", case["id"], PDF)
    assert status == 404, refused
    first_contact = detail["contacts"][0]["id"]
    for contact_id in (first_contact, 999999):
        form = FormData()
        form.add_field("file", PDF, filename="x.pdf", content_type="application/pdf")
        resp = await c.post(
            f"/api/v1/case-contacts/{contact_id}/materials",
            data=form,
            headers={"X-CSRF-Token": csrf},
        )
        assert resp.status == 404, await resp.text()
    # the registering court uploads to its own contact by the same route
    c, csrf = await staff("op_a")
    form = FormData()
    form.add_field("file", PNG, filename="信封.png", content_type="image/png")
    resp = await c.post(
        f"/api/v1/case-contacts/{first_contact}/materials",
        data=form,
        headers={"X-CSRF-Token": csrf},
    )
    assert resp.status == 201, await resp.text()
    # the registering court's own repeat still answers the whole case
    status, again = await staff.call("op_a", "POST", "/cases", letter(channel="walk_in"))
    assert status == 200 and again["case"]["id"] == case["id"] and again["other_court"] is False


async def test_the_feedback_notice_masks_id_and_phone_numbers(staff: Staff) -> None:
    case = await register(staff, "po_mid")
    status, _ = await staff.call(
        "po_mid",
        "POST",
        f"/cases/{case['id']}/actions/triage",
        {"track": "petition", "mode": "joint", "responsible_id": staff.world.users["po_mid"]},
    )
    assert status == 200
    status, body = await staff.call(
        "po_mid",
        "POST",
        f"/cases/{case['id']}/actions/assign",
        {"to_court_id": staff.world.courts["basic_a"]},
    )
    assert status == 200, body
    status, body = await staff.call(
        "po_a",
        "POST",
        f"/cases/{case['id']}/actions/report",
        {"result": f"已约谈信访人，身份证 {ID_A}，电话 {PHONE_A}"},
    )
    assert status == 200, body
    status, notes = await staff.call("po_mid", "GET", "/notifications")
    (note,) = [n for n in notes["items"] if n["kind"] == "case_reported"]
    assert ID_A not in note["body"] and PHONE_A not in note["body"], note
    assert "1101**********1233" in note["body"] and "138****8000" in note["body"]


async def test_a_contact_time_before_1990_or_off_the_calendar_is_refused_not_a_500(
    staff: Staff,
) -> None:
    case = await register(staff)
    for when in ("0001-01-01T00:00:00+14:00", "1900-01-01T00:00:00+08:00"):
        numbers = ["（2024）甲0101执999号"]
        status, body = await staff.call(
            "op_a", "POST", "/cases", letter(original_numbers=numbers, occurred_at=when)
        )
        assert status == 422, (when, body)
        (problem,) = body["error"]["details"]
        assert problem["field"] == "occurred_at"
        assert problem["message"] == "来访来信时间不能早于 1990 年 1 月 1 日"
        status, body = await staff.call(
            "op_a",
            "POST",
            f"/cases/{case['id']}/contacts",
            {"channel": "letter", "summary": "x", "occurred_at": when},
        )
        assert status == 422, (when, body)
    # the far end of the calendar: refused as a time, or as one in the future
    status, body = await staff.call(
        "op_a",
        "POST",
        f"/cases/{case['id']}/contacts",
        {"channel": "letter", "summary": "x", "occurred_at": "9999-12-31T23:59:00-14:00"},
    )
    assert status == 422, body
    status, body = await staff.call(
        "po_high",
        "POST",
        f"/cases/{case['id']}/actions/assign",
        {"to_court_id": staff.world.courts["basic_a"], "deadline": "0001-01-01T00:00:00+14:00"},
    )
    assert status == 422 and body["error"]["details"][0]["message"] == "时间超出有效范围", body
    # 1990 itself is a time a letter may have come
    status, body = await staff.call(
        "op_a",
        "POST",
        f"/cases/{case['id']}/contacts",
        {"channel": "letter", "summary": "旧信", "occurred_at": "1990-01-02T09:00:00+08:00"},
    )
    assert status == 201, body


# ---------------------------------------------------------------- the overdue scan


async def test_housekeeping_alerts_the_supervising_court_once_a_deadline_passes(
    staff: Staff, migrated: Settings, db: Any
) -> None:
    case = await register(staff)
    await petition_matter(staff, case["id"])
    # a deadline seconds away: the scan runs on an injected clock, the board on the real one
    deadline = utcnow() + timedelta(seconds=3)
    status, detail = await staff.call(
        "po_high",
        "POST",
        f"/cases/{case['id']}/actions/assign",
        {"to_court_id": staff.world.courts["basic_a"], "deadline": deadline.isoformat()},
    )
    assert status == 200, detail
    assert not detail["case"]["overdue"]
    async with db() as session, session.begin():
        done = await housekeeping(session, migrated, now=deadline - timedelta(days=4))
        assert done["case_overdue"] == 0
    later = deadline + timedelta(hours=1)
    async with db() as session:
        async with session.begin():
            done = await housekeeping(session, migrated, now=later)
        queued = take_outbox(session)
    assert done["case_overdue"] == 1
    # queued for pushing after commit, to the supervising (high) court among others
    assert {n.kind for n in queued} >= {"case_overdue"}
    high_ids = {staff.world.users["po_high"], staff.world.users["leader_high"]}
    assert high_ids <= {n.user_id for n in queued if n.kind == "case_overdue"}
    async with db() as session, session.begin():
        again = await housekeeping(session, migrated, now=later + timedelta(minutes=1))
    assert again["case_overdue"] == 0  # alerted once per node
    status, notes = await staff.call("po_high", "GET", "/notifications")
    assert [n["kind"] for n in notes["items"]] == ["case_overdue"]
    assert case["number"] in notes["items"][0]["title"]

    async def past_deadline() -> bool:
        return utcnow() > deadline

    await wait_for(past_deadline, within=10)
    status, board = await staff.call("po_high", "GET", "/cases/board")
    (row,) = [r for g in board["courts"] for r in g["cases"]]
    assert row["overdue"] is True and row["days_overdue"] == 1
    status, page = await staff.call("po_high", "GET", "/cases?overdue=1")
    assert [r["id"] for r in page["items"]] == [case["id"]]
    status, detail = await staff.call("po_high", "GET", f"/cases/{case['id']}")
    overdue = [e for e in detail["events"] if e["kind"] == "overdue"]
    assert len(overdue) == 1 and overdue[0]["actor_name"] == "系统"
    # the time in the sentence is the court's local time
    local = deadline.astimezone(migrated.tz).strftime("%Y-%m-%d %H:%M")
    assert local in overdue[0]["text"] and "+00:00" not in overdue[0]["text"]
    # and the audit trail reads it as sentences, times in the court's zone
    status, audit = await staff.call(
        "admin", "GET", f"/audit?target_type=case&target_id={case['id']}&limit=200"
    )
    sentences = {e["action"]: e["sentence"] for e in audit["items"]}
    assert sentences["case.assigned"] == (
        f"po_high将信访件交办 甲市某区人民法院，限 {local} 前反馈；首办责任人由承办法院重新确定。"
    )
    assert sentences["case.overdue"] == (f"系统预警：信访件的「限期反馈」已超期（期限 {local}）。")
    assert {e["target_label"] for e in audit["items"]} == {f"信访件 #{case['id']}"}
    labels = {e["action"]: e["action_label"] for e in audit["items"]}
    assert labels["case.overdue"] == "超期预警" and labels["case.triaged"] == "分流"


async def _postgres(
    request: pytest.FixtureRequest, tmp_path: Path, name: str
) -> tuple[Settings, AsyncEngine, async_sessionmaker[AsyncSession]]:
    """A migrated PostgreSQL database of its own: settings, engine and sessions."""
    pg = request.getfixturevalue("postgres_server")
    settings = Settings(data_dir=tmp_path, database_url=pg.create_database(name))
    await asyncio.to_thread(migrate, settings)
    engine = create_engine(settings)
    return settings, engine, create_sessionmaker(engine)


async def _until_one_waits_for_a_lock(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Until a PostgreSQL session waits for a row lock another holds."""

    async def waiting() -> bool:
        async with sessions() as watch:
            count = await watch.scalar(
                text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            )
        return bool(count)

    await wait_for(waiting, within=20)


async def _triaged_at_basic_a(
    s: AsyncSession, world: World, settings: Settings
) -> tuple[int, Actor]:
    """A letter registered at basic_a and triaged there as a petition matter, po_a
    responsible: the case's id, and po_a acting."""
    clerk = Actor(world.users["op_a"], "op_a", Role.operator, world.courts["basic_a"])
    registered = await cases.register(
        s,
        clerk,
        cases.Registration(
            channel=Channel.letter,
            petitioners=[cases.PersonIn("张三", IdType.resident_id, ID_A)],
            category=CaseCategory.enforcement,
            summary="未执行到位",
            original_numbers=[NUMBER],
            original_court="甲市某区人民法院",
        ),
        settings=settings,
    )
    officer = Actor(world.users["po_a"], "po_a", Role.petition_officer, world.courts["basic_a"])
    await cases.triage(
        s,
        officer,
        registered.case.id,
        track=CaseTrack.petition,
        mode=HandlingMode.careful,
        responsible_id=world.users["po_a"],
        settings=settings,
    )
    return registered.case.id, officer


@pytest.mark.postgres
async def test_two_nodes_scanning_at_once_alert_an_overdue_case_once(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """PostgreSQL runs the two scans truly in parallel: the second one finds the case
    claimed by the first once that commits, and sends nothing."""
    settings, engine, sessions = await _postgres(request, tmp_path, "vr_scan")
    try:
        async with sessions() as s, s.begin():
            world = await seed_world(s)
            high = Actor(
                world.users["po_high"], "po_high", Role.petition_officer, world.courts["high"]
            )
            case_id, _ = await _triaged_at_basic_a(s, world, settings)
            deadline = utcnow() + timedelta(days=1)
            await cases.assign(
                s,
                high,
                case_id,
                to_court_id=world.courts["mid_a"],
                deadline=deadline,
                settings=settings,
            )
        later = deadline + timedelta(hours=1)
        first, second = sessions(), sessions()
        await first.begin()
        done_first = await cases.scan_deadlines(first, settings, later)
        assert done_first.overdue == 1  # claimed, not yet committed

        async def scan_second() -> cases.ScanResult:
            async with second.begin():
                return await cases.scan_deadlines(second, settings, later)

        racing = asyncio.create_task(scan_second())

        await _until_one_waits_for_a_lock(sessions)
        await first.commit()
        assert (await racing).overdue == 0
        await first.close()
        await second.close()
        async with sessions() as s:
            per_user = (
                await s.execute(
                    select(Notification.user_id, func.count())
                    .where(Notification.kind == "case_overdue")
                    .group_by(Notification.user_id)
                )
            ).all()
            entries = await s.scalar(
                select(func.count()).select_from(CaseEvent).where(CaseEvent.kind == "overdue")
            )
        assert entries == 1
        assert dict(per_user) == {world.users["po_high"]: 1, world.users["leader_high"]: 1}
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_two_officers_naming_an_owner_at_once_on_postgresql_one_wins(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """PostgreSQL runs both at once: the second UPDATE waits for the first row lock, then
    finds the owner it read changed and answers 409 instead of overwriting it."""
    settings, engine, sessions = await _postgres(request, tmp_path, "vr_owner")
    try:
        async with sessions() as s, s.begin():
            world = await seed_world(s)
            for name in ("po_x", "po_y"):
                await add_staff(s, world, name, Role.petition_officer, "basic_a")
            case_id, officer = await _triaged_at_basic_a(s, world, settings)
        first, second = sessions(), sessions()
        await first.begin()
        await cases.set_owner(
            first, officer, case_id, responsible_id=world.users["po_x"], reason="调岗"
        )  # row locked, not yet committed

        async def name_second() -> None:
            async with second.begin():
                await cases.set_owner(
                    second, officer, case_id, responsible_id=world.users["po_y"], reason="休假"
                )

        racing = asyncio.create_task(name_second())

        await _until_one_waits_for_a_lock(sessions)
        await first.commit()
        with pytest.raises(ConflictError) as refused:
            await racing
        assert refused.value.code == "case_changed"
        await first.close()
        await second.close()
        async with sessions() as s:
            case = await s.get(Petition, case_id)
            assert case is not None and case.responsible_id == world.users["po_x"]
            owners = await s.scalar(
                select(func.count()).select_from(CaseEvent).where(CaseEvent.kind == "owner")
            )
        assert owners == 1  # the refused one left no entry
    finally:
        await engine.dispose()

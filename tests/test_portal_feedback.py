"""Petitioners' questions (有信必复), mediation requests, ratings and complaints on the portal,
and the staff side of each (the 网上咨询与投诉 inbox)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from config.db import utcnow
from config.settings import Settings
from scheduler.cases.models import CaseEvent
from scheduler.housekeeping import housekeeping
from scheduler.models import DutyLawyer, DutyPeriod, Notification, Role, Visit, VisitState
from scheduler.portal.feedback_models import MessageThread, Rating
from tests.conftest import MakeClient
from tests.helpers import World, add_staff, login
from tests.test_portal import (
    PHONE,
    PHOTOS,
    database,
    petition_form,
    resident_id,
    sign_in,
    staff_client,
    submit,
)


async def petitioner_with_case(
    make_client: MakeClient, world: World, **who: str
) -> tuple[TestClient, str, int]:
    """A signed-in petitioner with one online petition at basic_a: (client, csrf, case id)."""
    client = await make_client()
    staff = await staff_client(make_client)
    csrf = await sign_in(client, staff, **who)
    status, body = await submit(client, csrf, petition_form(world, PHOTOS[:1]))
    assert status == 201, body
    return client, csrf, int(body["case_id"])


async def post(client: TestClient, url: str, csrf: str, body: Any) -> tuple[int, Any]:
    header = "X-Portal-CSRF" if url.startswith("/api/v1/portal") else "X-CSRF-Token"
    resp = await client.post(url, json=body, headers={header: csrf})
    return resp.status, await resp.json()


async def timeline(settings: Settings, case_id: int) -> list[tuple[str, str]]:
    async with database(settings) as db:
        rows = await db.scalars(
            select(CaseEvent).where(CaseEvent.petition_id == case_id).order_by(CaseEvent.id)
        )
        return [(r.kind, r.text) for r in rows]


async def notified(settings: Settings, user_id: int, kind: str) -> list[str]:
    async with database(settings) as db:
        rows = await db.scalars(
            select(Notification.title).where(
                Notification.user_id == user_id, Notification.kind == kind
            )
        )
        return list(rows)


ASK = {"subject": "再审申请期限", "text": "请问申请再审的期限是多久？"}


async def test_a_question_is_answered_on_the_staff_inbox_and_the_petitioner_is_told_by_sms(
    make_client: MakeClient, world: World, migrated: Settings
) -> None:
    client, csrf, case_id = await petitioner_with_case(make_client, world)
    status, thread = await post(client, "/api/v1/portal/threads", csrf, ASK | {"case_id": case_id})
    assert status == 201, thread
    assert thread["state"] == "waiting" and thread["court_id"] == world.courts["basic_a"]
    due = datetime.fromisoformat(thread["due_at"]) - datetime.fromisoformat(thread["created_at"])
    assert due == timedelta(days=migrated.message_reply_days) == timedelta(days=5)
    # the court's petition officer sees it; another court's operator does not
    officer = await make_client()
    officer_csrf = await login(officer, "po_a")
    inbox = await (await officer.get("/api/v1/inbox")).json()
    assert [(t["id"], t["overdue"]) for t in inbox["threads"]] == [(thread["id"], False)]
    other = await staff_client(make_client, "op_b")
    assert (await (await other.get("/api/v1/inbox")).json())["threads"] == []
    refused, _ = await post(
        other,
        f"/api/v1/inbox/threads/{thread['id']}/answer",
        await login(other, "op_b"),
        {"text": "x"},
    )
    assert refused == 404
    # a judge has no inbox
    judge = await make_client()
    await login(judge, "judge_a")
    assert (await judge.get("/api/v1/inbox")).status == 403
    status, answered = await post(
        officer,
        f"/api/v1/inbox/threads/{thread['id']}/answer",
        officer_csrf,
        {"text": "一般为判决生效后六个月内。"},
    )
    assert status == 200, answered
    assert answered["state"] == "answered" and answered["due_at"] is None
    mine = await (await client.get("/api/v1/portal/threads")).json()
    assert [(m["from_staff"], m["text"]) for m in mine[0]["messages"]] == [
        (False, ASK["text"]),
        (True, "一般为判决生效后六个月内。"),
    ]
    # the court answers the public, not a staff account by name; staff still see who did
    assert [m["staff_name"] for m in mine[0]["messages"]] == ["", ""]
    assert answered["messages"][-1]["staff_name"] == "po_a"
    outbox = await (await staff_client(make_client)).get("/api/v1/sms-outbox")
    assert any(
        m["phone"] == PHONE and "再审申请期限" in m["text"] and "已有答复" in m["text"]
        for m in await outbox.json()
    )
    kinds = [k for k, _ in await timeline(migrated, case_id)]
    assert kinds[-2:] == ["question", "answer"]
    # a further message waits for an answer again
    status, again = await post(
        client, f"/api/v1/portal/threads/{thread['id']}/messages", csrf, {"text": "谢谢，还想问"}
    )
    assert status == 201 and again["state"] == "waiting" and again["due_at"] is not None


async def test_an_unanswered_question_becomes_overdue_after_the_reply_days_and_staff_are_told(
    make_client: MakeClient, world: World, migrated: Settings
) -> None:
    client, csrf, case_id = await petitioner_with_case(make_client, world)
    _, thread = await post(client, "/api/v1/portal/threads", csrf, ASK | {"case_id": case_id})
    due = datetime.fromisoformat(thread["due_at"])
    async with database(migrated) as db:
        done = await housekeeping(db, migrated, now=due - timedelta(minutes=1))
    assert done["questions_overdue"] == 0
    async with database(migrated) as db:
        done = await housekeeping(db, migrated, now=due + timedelta(minutes=1))
    assert done["questions_overdue"] == 1
    async with database(migrated) as db:  # stamped once
        assert (await housekeeping(db, migrated, now=due + timedelta(hours=1)))[
            "questions_overdue"
        ] == 0
    assert await notified(migrated, world.users["po_a"], "portal_question_overdue") == [
        "网上咨询超期未答复：再审申请期限"
    ]
    assert ("overdue", "网上咨询「再审申请期限」超期未答复") in await timeline(migrated, case_id)
    officer = await make_client()
    officer_csrf = await login(officer, "po_a")
    inbox = await (await officer.get("/api/v1/inbox")).json()
    assert inbox["threads"][0]["overdue"] is True
    await post(
        officer, f"/api/v1/inbox/threads/{thread['id']}/answer", officer_csrf, {"text": "答"}
    )
    inbox = await (await officer.get("/api/v1/inbox")).json()
    assert inbox["threads"][0]["overdue"] is False


async def test_a_petitioner_sees_and_touches_only_their_own_threads_cases_and_visits(
    make_client: MakeClient, world: World, migrated: Settings
) -> None:
    client, csrf, case_id = await petitioner_with_case(make_client, world)
    _, thread = await post(client, "/api/v1/portal/threads", csrf, ASK | {"case_id": case_id})
    other = await make_client()
    other_csrf = await sign_in(
        other,
        await staff_client(make_client),
        id_number=resident_id("11010119850101001"),
        phone="13700000000",
        name="李四",
    )
    assert await (await other.get("/api/v1/portal/threads")).json() == []
    status, _ = await post(
        other, f"/api/v1/portal/threads/{thread['id']}/messages", other_csrf, {"text": "看看"}
    )
    assert status == 404
    for url, body in [
        ("/api/v1/portal/threads", ASK | {"case_id": case_id}),
        ("/api/v1/portal/mediation", {"case_id": case_id}),
        (f"/api/v1/portal/cases/{case_id}/rating", {"score": 5}),
        ("/api/v1/portal/complaints", {"kind": "complaint", "case_id": case_id, "text": "x"}),
    ]:
        status, _ = await post(other, url, other_csrf, body)
        assert status == 404, url
    assert (await other.get(f"/api/v1/portal/cases/{case_id}/ratings")).status == 404
    # without a portal session nothing is shown
    anonymous = await make_client()
    assert (await anonymous.get("/api/v1/portal/threads")).status == 401


async def test_somebody_with_the_id_number_and_their_own_phone_gets_none_of_the_threads(
    make_client: MakeClient, world: World, migrated: Settings
) -> None:
    """The SMS code proves a phone, not an ID number: the victim's ID number with another
    phone is another identity, and the victim stays signed in."""
    client, csrf, case_id = await petitioner_with_case(make_client, world)
    _, thread = await post(client, "/api/v1/portal/threads", csrf, ASK | {"case_id": case_id})
    status, _ = await post(
        client,
        "/api/v1/portal/complaints",
        csrf,
        {"kind": "complaint", "case_id": case_id, "text": "接待态度生硬"},
    )
    assert status == 201
    other = await make_client()
    other_csrf = await sign_in(
        other, await staff_client(make_client), phone="13700000000", name="王五"
    )
    assert await (await other.get("/api/v1/portal/threads")).json() == []
    assert await (await other.get("/api/v1/portal/complaints")).json() == []
    assert await (await other.get("/api/v1/portal/cases")).json() == []
    status, _ = await post(
        other, f"/api/v1/portal/threads/{thread['id']}/messages", other_csrf, {"text": "看看"}
    )
    assert status == 404
    me = await client.get("/api/v1/portal/me")
    assert me.status == 200 and (await me.json())["phone"] != "13700000000"
    assert len(await (await client.get("/api/v1/portal/threads")).json()) == 1


async def test_scripts_are_kept_as_text_and_huge_or_empty_messages_are_refused(
    make_client: MakeClient, world: World, migrated: Settings
) -> None:
    client, csrf, _ = await petitioner_with_case(make_client, world)
    court = world.courts["basic_a"]
    script = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    status, thread = await post(
        client, "/api/v1/portal/threads", csrf, {"court_id": court, "subject": "问", "text": script}
    )
    assert status == 201 and thread["messages"][0]["text"] == script
    status, body = await post(
        client,
        "/api/v1/portal/threads",
        csrf,
        {"court_id": court, "subject": "问", "text": "长" * 2001},
    )
    assert status == 422 and body["error"]["code"] == "text_too_long"
    assert "最多 2000 个字" in body["error"]["message"]
    status, body = await post(
        client, "/api/v1/portal/threads", csrf, {"court_id": court, "subject": "", "text": "x"}
    )
    assert status == 422 and "咨询主题" in body["error"]["message"]
    status, body = await post(
        client,
        "/api/v1/portal/threads",
        csrf,
        {"court_id": court, "subject": "x", "text": "长" * 30000},
    )
    assert status == 422
    async with database(migrated) as db:
        assert len((await db.scalars(select(MessageThread))).all()) == 1


async def _finished_visit(settings: Settings, world: World, case_id: int, **changes: Any) -> str:
    async with database(settings) as db:
        start = utcnow() - timedelta(hours=2)
        fields: dict[str, Any] = {
            "petition_id": case_id,
            "court_id": world.courts["basic_a"],
            "receiving_court_id": world.courts["mid_a"],
            "judge_id": world.users["judge_a"],
            "room_id": world.rooms["basic_a"],
            "state": VisitState.ended,
            "starts_at": start,
            "ends_at": start + timedelta(minutes=30),
        } | changes
        visit = Visit(**fields)
        db.add(visit)
        await db.flush()
        return visit.id


async def test_a_visit_and_the_case_are_rated_once_each_linked_to_case_visit_and_judge(
    make_client: MakeClient, world: World, migrated: Settings
) -> None:
    client, csrf, case_id = await petitioner_with_case(make_client, world)
    visit_id = await _finished_visit(migrated, world, case_id)
    upcoming = await _finished_visit(migrated, world, case_id, state=VisitState.scheduled)
    url = f"/api/v1/portal/visits/{visit_id}/rating"
    for score in (0, 6):
        status, body = await post(client, url, csrf, {"score": score})
        assert status == 422 and body["error"]["message"] == "评分应为 1 到 5 分"
    status, body = await post(client, url, csrf, {"score": 4, "reasons": ["不存在"]})
    assert status == 422
    status, body = await post(
        client, f"/api/v1/portal/visits/{upcoming}/rating", csrf, {"score": 5}
    )
    assert status == 409 and body["error"]["code"] == "visit_not_finished"
    rating = {"score": 4, "reasons": ["attitude_good", "explained_clearly"], "text": "耐心"}
    status, body = await post(client, url, csrf, rating)
    assert status == 201, body
    status, again = await post(client, url, csrf, rating | {"score": 1})
    assert status == 409 and again["error"]["message"] == "您已经评价过这次接访，每次只能评价一次"
    status, body = await post(client, f"/api/v1/portal/cases/{case_id}/rating", csrf, {"score": 2})
    assert status == 201
    status, again = await post(client, f"/api/v1/portal/cases/{case_id}/rating", csrf, {"score": 5})
    assert status == 409 and "这件信访件" in again["error"]["message"]
    async with database(migrated) as db:
        rows = (await db.scalars(select(Rating).order_by(Rating.id))).all()
        assert [(r.subject, r.petition_id, r.visit_id, r.judge_id, r.score) for r in rows] == [
            ("visit", case_id, visit_id, world.users["judge_a"], 4),
            ("case", case_id, None, None, 2),
        ]
        assert rows[0].reasons == ["attitude_good", "explained_clearly"]
        assert rows[0].court_id == world.courts["mid_a"]
    events = await timeline(migrated, case_id)
    assert ("rated", "接访评价：4 分（态度热情、释法清楚）") in events
    listing = await (await client.get(f"/api/v1/portal/cases/{case_id}/ratings")).json()
    assert [(v["id"], v["rated"]) for v in listing["visits"]] == [(visit_id, True)]


async def test_mediation_goes_to_the_roster_member_on_duty_and_is_refused_with_an_empty_roster(
    make_client: MakeClient, world: World, migrated: Settings
) -> None:
    client, csrf, case_id = await petitioner_with_case(make_client, world)
    status, body = await post(client, "/api/v1/portal/mediation", csrf, {"case_id": case_id})
    assert status == 409 and body["error"]["code"] == "no_mediator"
    assert "暂无可安排的律师或调解员" in body["error"]["message"]
    now = utcnow()
    async with database(migrated) as db:
        past = DutyLawyer(court_id=world.courts["basic_a"], name="赵律师", firm="甲律所")
        later = DutyLawyer(court_id=world.courts["basic_a"], name="钱调解员", firm="")
        db.add_all([past, later])
        await db.flush()
        db.add_all(
            [
                DutyPeriod(
                    lawyer_id=past.id,
                    starts_at=now - timedelta(days=2),
                    ends_at=now - timedelta(days=1),
                ),
                DutyPeriod(
                    lawyer_id=later.id,
                    starts_at=now + timedelta(hours=3),
                    ends_at=now + timedelta(hours=6),
                ),
            ]
        )
    status, body = await post(
        client, "/api/v1/portal/mediation", csrf, {"case_id": case_id, "note": "希望调解"}
    )
    assert status == 201, body
    assert body["mediator"] == "钱调解员"
    assert any(k == "mediation" and "钱调解员" in t for k, t in await timeline(migrated, case_id))
    assert await notified(migrated, world.users["po_a"], "portal_mediation")
    # the court's staff see it on their inbox; another court's do not
    officer = await make_client()
    await login(officer, "po_a")
    rows = (await (await officer.get("/api/v1/inbox")).json())["mediations"]
    assert [(r["case_id"], r["mediator"], r["note"]) for r in rows] == [
        (case_id, "钱调解员", "希望调解")
    ]
    other = await staff_client(make_client, "op_b")
    assert (await (await other.get("/api/v1/inbox")).json())["mediations"] == []


async def test_complaints_are_routed_to_the_court_above_and_handled_there(
    make_client: MakeClient, world: World, migrated: Settings
) -> None:
    async with database(migrated) as db:
        await add_staff(db, world, "leader_mid_a", Role.leader, "mid_a")
    client, csrf, case_id = await petitioner_with_case(make_client, world)
    status, row = await post(
        client,
        "/api/v1/portal/complaints",
        csrf,
        {"kind": "complaint", "case_id": case_id, "text": "接待人员态度生硬"},
    )
    assert status == 201, row
    assert row["court_id"] == world.courts["basic_a"]
    assert row["routed_court_id"] == world.courts["mid_a"] and row["state"] == "open"
    # the court complained about does not see it; its supervisor does
    officer = await make_client()
    await login(officer, "po_a")
    assert (await (await officer.get("/api/v1/inbox")).json())["complaints"] == []
    leader = await make_client()
    leader_csrf = await login(leader, "leader_mid_a")
    inbox = await (await leader.get("/api/v1/inbox")).json()
    assert [c["id"] for c in inbox["complaints"]] == [row["id"]]
    assert await notified(migrated, world.users["leader_mid_a"], "portal_complaint")
    url = f"/api/v1/inbox/complaints/{row['id']}/handled"
    status, done = await post(leader, url, leader_csrf, {"text": "已约谈当事人员并整改"})
    assert status == 200 and done["state"] == "handled"
    status, _ = await post(leader, url, leader_csrf, {"text": "再处理"})
    assert status == 409
    mine = await (await client.get("/api/v1/portal/complaints")).json()
    assert mine[0]["reply"] == "已约谈当事人员并整改"
    # on the case's timeline, which the court complained about reads: that there was one,
    # never what it says nor the reply
    assert (await timeline(migrated, case_id))[-2:] == [
        ("complaint", "信访人提出投诉（由上级法院处理）"),
        ("complaint", "投诉已由上级法院处理"),
    ]
    seen = await (await officer.get(f"/api/v1/cases/{case_id}")).json()
    assert "态度生硬" not in json.dumps(seen, ensure_ascii=False)
    assert "整改" not in json.dumps(seen, ensure_ascii=False)
    # a suggestion about the supreme court stays there
    status, row = await post(
        client,
        "/api/v1/portal/complaints",
        csrf,
        {"kind": "suggestion", "court_id": world.courts["supreme"], "text": "建议增加夜间接访"},
    )
    assert status == 201 and row["routed_court_id"] == world.courts["supreme"]


async def test_the_inbox_page_is_for_the_staff_who_answer_and_the_feedback_page_is_served(
    make_client: MakeClient, world: World
) -> None:
    officer, judge, anonymous = await make_client(), await make_client(), await make_client()
    await login(officer, "po_a")
    await login(judge, "judge_a")
    page = await officer.get("/inbox")
    assert page.status == 200 and "网上咨询与投诉" in await page.text()
    assert (await judge.get("/inbox")).status == 403
    redirected = await anonymous.get("/inbox", allow_redirects=False)
    assert redirected.status == 302 and redirected.headers["Location"] == "/login?next=/inbox"
    portal_page = await anonymous.get("/p/feedback")
    assert portal_page.status == 200 and "/static/portal_feedback.js" in await portal_page.text()

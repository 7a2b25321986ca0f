"""Headless Chromium as a phone (Pixel 7 profile): a petitioner asks a legal question, the
court's operator answers it on the 网上咨询与投诉 page, the petitioner reads the reply and
rates the finished visit of their case."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from playwright.sync_api import expect
from sqlalchemy import select

from config.db import create_engine, create_sessionmaker, utcnow
from config.settings import Settings
from scheduler.cases import service as cases
from scheduler.cases.words import CaseCategory, Channel
from scheduler.models import Court, IdType, ReceptionRoom, User, Visit, VisitState
from scheduler.portal.feedback_models import Rating
from scheduler.scope import Actor
from tests.conftest import LiveServer
from tests.live import beside_playwright
from tests.test_browser_portal import _login, phone_browser
from tests.test_portal import resident_id

__all__ = ["phone_browser"]  # the module-scoped fixture, shared

NAME, PHONE = "孙七", "13912340000"
ID_NUMBER = resident_id("11010819800202123")


async def _case_with_finished_visit(data_dir: Path) -> tuple[int, str]:
    """A case registered at the counter for the petitioner, and a visit of it that ended."""
    settings = Settings(data_dir=data_dir)
    engine = create_engine(settings, immediate=True)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            op = await db.scalar(select(User).where(User.username == "operator"))
            judge = await db.scalar(select(User).where(User.username == "judge"))
            assert op is not None and judge is not None and op.court_id is not None
            room = await db.scalar(
                select(ReceptionRoom).where(ReceptionRoom.court_id == op.court_id)
            )
            court = await db.get(Court, op.court_id)
            assert room is not None and court is not None
            done = await cases.register(
                db,
                Actor(op.id, op.username, op.role, op.court_id),
                cases.Registration(
                    channel=Channel.walk_in,
                    petitioners=[cases.PersonIn(NAME, IdType.resident_id, ID_NUMBER, PHONE)],
                    category=CaseCategory.enforcement,
                    summary="请求执行（2024）京0108民初7号判决",
                    original_numbers=["（2024）京0108民初7号"],
                    original_court=court.name,
                ),
                settings=settings,
            )
            start = utcnow() - timedelta(hours=3)
            visit = Visit(
                petition_id=done.case.id,
                court_id=op.court_id,
                receiving_court_id=judge.court_id,
                judge_id=judge.id,
                room_id=room.id,
                state=VisitState.ended,
                starts_at=start,
                ends_at=start + timedelta(minutes=30),
            )
            db.add(visit)
            await db.flush()
            return done.case.id, visit.id
    finally:
        await engine.dispose()


async def _ratings(data_dir: Path) -> list[tuple[str | None, int | None, int, list[str]]]:
    engine = create_engine(Settings(data_dir=data_dir))
    try:
        async with create_sessionmaker(engine)() as db:
            rows = (await db.scalars(select(Rating))).all()
            return [(r.visit_id, r.judge_id, r.score, r.reasons) for r in rows]
    finally:
        await engine.dispose()


def test_phone_petitioner_asks_staff_answer_on_the_inbox_and_the_petitioner_rates_the_visit(
    live_server: LiveServer, phone_browser: tuple[Any, dict[str, Any]], artifacts: Path
) -> None:
    browser, pixel7 = phone_browser
    case_id, visit_id = beside_playwright(_case_with_finished_visit(live_server.data_dir))
    phone_ctx = browser.new_context(**pixel7, locale="zh-CN")
    phone = phone_ctx.new_page()
    op_ctx = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    op = op_ctx.new_page()
    _login(op, live_server, "operator", "/operator")

    # identify on the portal with the code the operators' outbox shows
    phone.goto(live_server.url + "/p/")
    phone.wait_for_selector("body[data-ready='1']")
    phone.fill("#id-name", NAME)
    phone.fill("#id-number", ID_NUMBER)
    phone.fill("#id-phone", PHONE)
    phone.tap("#send-code")
    expect(phone.locator("#identify-msg")).to_contain_text("验证码已发送")
    op.click("button[data-tab=tab-online]")
    sms_row = op.locator("#sms-rows tr", has_text=PHONE).first
    expect(sms_row).to_contain_text("验证码", timeout=15_000)
    code = re.search(r"验证码为 (\d{6})", sms_row.inner_text())
    assert code
    phone.fill("#id-code", code.group(1))
    phone.tap("#sign-in")
    expect(phone.locator("#who")).to_contain_text(NAME)

    # from the portal home to the questions page; ask about the case
    phone.locator("#feedback-link").tap()
    phone.wait_for_url(live_server.url + "/p/feedback")
    phone.wait_for_selector("body[data-ready='1']")
    assert phone.evaluate("window.innerWidth") < 500
    phone.select_option("#ask-case", value=str(case_id))
    phone.fill("#ask-subject", "执行进度")
    phone.fill("#ask-text", "<script>alert(1)</script>请问执行到哪一步了？")
    phone.tap("#ask-submit")
    expect(phone.locator("#ask-msg")).to_contain_text("咨询已提交")
    thread = phone.locator("#thread-list li.thread").first
    expect(thread).to_contain_text("<script>alert(1)</script>请问执行到哪一步了？")
    expect(thread).to_contain_text("答复期限")

    # the operator answers on the inbox page
    op.goto(live_server.url + "/inbox")
    op.wait_for_selector("body[data-ready='1']")
    item = op.locator("#thread-list article", has_text="执行进度")
    expect(item).to_contain_text("答复期限")
    expect(item).to_contain_text("<script>alert(1)</script>")
    item.locator("textarea").fill("已立案执行，正在查控财产。")
    item.locator("button[type=submit]").click()
    expect(op.locator("#threads-msg")).to_contain_text("已短信通知信访人")
    expect(op.locator("#thread-list article", has_text="执行进度")).to_contain_text("已答复")

    # the petitioner sees the reply
    phone.reload()
    phone.wait_for_selector("body[data-ready='1']")
    expect(phone.locator("#thread-list li.thread").first).to_contain_text(
        "已立案执行，正在查控财产。"
    )

    # and rates the visit: 5 points with two reasons
    phone.tap("button[data-view=rate]")
    phone.select_option("#rate-case", value=str(case_id))
    target = phone.locator(".rate-target", has_text="视频接访").first
    target.locator("input[name=score][value='5']").check()
    target.locator("input[value=attitude_good]").check()
    target.locator("input[value=explained_clearly]").check()
    target.locator("button[type=submit]").tap()
    expect(phone.locator("#rate-msg")).to_contain_text("感谢您的评价")
    expect(phone.locator("#rate-targets")).to_contain_text("5 分")
    expect(phone.locator(".rate-target", has_text="视频接访")).to_have_count(0)
    judge_id = beside_playwright(_judge_id(live_server.data_dir))
    assert beside_playwright(_ratings(live_server.data_dir)) == [
        (visit_id, judge_id, 5, ["attitude_good", "explained_clearly"])
    ]
    phone.screenshot(path=str(artifacts / "portal-feedback-phone.png"), full_page=True)
    phone_ctx.close()
    op_ctx.close()


async def _judge_id(data_dir: Path) -> int:
    engine = create_engine(Settings(data_dir=data_dir))
    try:
        async with create_sessionmaker(engine)() as db:
            judge = await db.scalar(select(User.id).where(User.username == "judge"))
            assert judge is not None
            return int(judge)
    finally:
        await engine.dispose()

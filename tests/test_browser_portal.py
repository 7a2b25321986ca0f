"""Headless Chromium as a phone (Playwright's Pixel 7 profile: touch, mobile viewport): a
petitioner identifies with the SMS code the operator's outbox shows, submits a petition
with two photos, follows it after staff triage it, asks for a video visit, and sees the time
the operator confirmed through the booking flow."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from PIL import Image
from playwright.sync_api import expect
from sqlalchemy import select

from config.db import create_engine, create_sessionmaker
from config.settings import Settings
from scheduler.cases import service as cases
from scheduler.cases.models import Material
from scheduler.cases.words import CaseTrack, Channel, HandlingMode
from scheduler.models import Petition, User
from tests.conftest import CHROMIUM, CHROMIUM_ARGS, LiveServer
from tests.live import beside_playwright
from tests.test_portal import resident_id

pytestmark = pytest.mark.browser

ID_NUMBER = resident_id("11010820000101123")


@pytest.fixture(scope="module")
def phone_browser() -> Iterator[tuple[Any, dict[str, Any]]]:
    """Debian's Chromium and Playwright's own Pixel 7 descriptor (is_mobile, has_touch)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser, dict(pw.devices["Pixel 7"])
        browser.close()


def _jpeg(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 240), colour).save(out, "JPEG")
    return out.getvalue()


def _soon_weekday() -> date:
    """A Monday–Friday 1 to 3 days ahead: inside the demo judge's hours."""
    day = datetime.now(ZoneInfo("Asia/Shanghai")).date() + timedelta(days=1)
    while day.weekday() > 4:
        day += timedelta(days=1)
    return day


async def _case_facts(data_dir: Path, number: str) -> tuple[Petition, list[Material]]:
    engine = create_engine(Settings(data_dir=data_dir))
    try:
        async with create_sessionmaker(engine)() as db:
            case = await db.scalar(select(Petition).where(Petition.number == number))
            assert case is not None
            rows = (await db.scalars(select(Material).where(Material.petition_id == case.id))).all()
            return case, list(rows)
    finally:
        await engine.dispose()


async def _triage(data_dir: Path, case_id: int) -> None:
    """Staff triage the case through the service (the case pages are another part)."""
    engine = create_engine(Settings(data_dir=data_dir), immediate=True)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            op = await db.scalar(select(User).where(User.username == "operator"))
            assert op is not None
            from scheduler.scope import Actor

            actor = Actor(op.id, op.username, op.role, op.court_id)
            await cases.triage(
                db,
                actor,
                case_id,
                track=CaseTrack.petition,
                mode=HandlingMode.careful,
                responsible_id=op.id,
            )
    finally:
        await engine.dispose()


def _login(page: Any, server: LiveServer, username: str, path: str) -> None:
    page.goto(server.url + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", server.passwords[username])
    page.click("#login-submit")
    page.wait_for_url(server.url + path)
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)


def test_phone_petitioner_submits_follows_and_books_a_visit(
    live_server: LiveServer, phone_browser: tuple[Any, dict[str, Any]], artifacts: Path
) -> None:
    browser, pixel7 = phone_browser
    assert pixel7["is_mobile"] and pixel7["has_touch"]
    phone_ctx = browser.new_context(**pixel7, locale="zh-CN")
    phone = phone_ctx.new_page()
    op_ctx = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    op = op_ctx.new_page()
    _login(op, live_server, "operator", "/operator")

    # identify: a wrong checksum is refused in plain words; then the code from the outbox
    phone.goto(live_server.url + "/p/")
    phone.wait_for_selector("body[data-ready='1']")
    assert phone.evaluate("window.innerWidth") < 500
    assert phone.evaluate("'ontouchstart' in window")
    phone.fill("#id-name", "赵六")
    phone.fill("#id-number", ID_NUMBER[:-1] + ("1" if ID_NUMBER[-1] == "0" else "0"))
    phone.fill("#id-phone", "13912345678")
    phone.tap("#send-code")
    expect(phone.locator("#identify-msg")).to_contain_text("校验位")
    phone.fill("#id-number", ID_NUMBER)
    phone.tap("#send-code")
    expect(phone.locator("#identify-msg")).to_contain_text("验证码已发送至 139****5678")
    op.click("button[data-tab=tab-online]")
    sms_row = op.locator("#sms-rows tr", has_text="13912345678").first
    expect(sms_row).to_contain_text("待发送", timeout=15_000)
    code = re.search(r"验证码为 (\d{6})", sms_row.inner_text())
    assert code
    phone.fill("#id-code", code.group(1))
    phone.tap("#sign-in")
    expect(phone.locator("#who")).to_contain_text("赵六（139****5678）")
    expect(phone.locator("#case-list")).to_contain_text("暂无信访件")

    # submit with two photos from the camera input
    phone.tap("button[data-view=submit]")
    assert phone.get_attribute("#submit-photos", "capture") == "environment"
    phone.select_option("#submit-court", label="北京市海淀区人民法院")
    phone.select_option("#submit-category", label="执行")
    phone.fill("#submit-summary", "<b>请求</b>执行（2024）京0108民初9号判决")
    phone.fill("#submit-numbers", "（2024）京0108民初9号")
    phone.fill("#submit-original-court", "北京市海淀区人民法院")
    photos = [("第1页.jpg", _jpeg((250, 0, 0))), ("第2页.jpg", _jpeg((0, 0, 250)))]
    phone.set_input_files(
        "#submit-photos",
        [{"name": n, "mimeType": "image/jpeg", "buffer": b} for n, b in photos],
    )
    phone.tap("#submit-button")
    expect(phone.locator("#case-msg")).to_contain_text("申诉已提交", timeout=30_000)
    title = phone.locator("#case-title").inner_text()
    number = title.removeprefix("信访件 ").strip()
    expect(phone.locator("#case-facts")).to_contain_text("<b>请求</b>执行")  # shown as text
    expect(phone.locator("#case-steps")).to_contain_text("网上申诉")
    expect(phone.locator("#case-materials li")).to_have_count(2)
    case, materials = beside_playwright(_case_facts(live_server.data_dir, number))
    assert case.channel is Channel.online and len(materials) == 2
    assert {m.filename for m in materials} == {"第1页.jpg", "第2页.jpg"}

    # staff triage it; the petitioner follows in plain words
    beside_playwright(_triage(live_server.data_dir, case.id))
    phone.tap("#case-back")
    phone.locator(f"button[data-case-id='{case.id}']").tap()
    expect(phone.locator("#case-facts")).to_contain_text("办理中")
    expect(phone.locator("#case-steps")).to_contain_text("作为信访事项办理（精细办）")
    expect(phone.locator("#case-steps")).not_to_contain_text("operator")

    # ask for a video visit; the operator confirms it by booking a slot
    phone.fill("#visit-form input[name=preferred]", "工作日上午")
    phone.tap("#visit-submit")
    expect(phone.locator("#case-msg")).to_contain_text("预约申请已提交")
    op.reload()
    op.wait_for_selector("body[data-ready='1']")
    op.click("button[data-tab=tab-online]")
    row = op.locator("#request-rows tr", has_text=number)
    expect(row).to_contain_text("工作日上午")
    row.locator("button", has_text="确认").click()
    expect(op.locator("#book-request")).to_contain_text(number)
    day = _soon_weekday()
    op.fill("#book-first", day.isoformat())
    op.click("#book-form button[type=submit]")
    expect(op.locator("#book-msg")).to_contain_text("找到", timeout=30_000)
    slot = op.locator("#slot-rows tr").first
    slot_text = slot.inner_text()
    slot.locator("button").click()
    expect(op.locator("#book-msg")).to_contain_text("已预约", timeout=30_000)
    start = re.search(r"\d{2}:\d{2}", slot_text)
    assert start
    op.click("button[data-tab=tab-online]")
    expect(op.locator("#request-rows")).to_contain_text("暂无待确认的网上预约申请")
    expect(op.locator("#sms-rows")).to_contain_text("视频接访已确认")

    phone.tap("button[data-view=visits]")
    item = phone.locator("#visit-list li").first
    expect(item).to_contain_text("已确认")
    expect(item.locator(".visit-time")).to_contain_text(f"{day.isoformat()} {start.group(0)}")
    phone.screenshot(path=str(artifacts / "portal-phone.png"), full_page=True)
    phone_ctx.close()
    op_ctx.close()

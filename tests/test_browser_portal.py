"""Headless Chromium as a phone (Playwright's Pixel 7 profile: touch, mobile viewport), the
whole journey of a petitioner who never comes to court: identifies with the SMS code the
operator's outbox shows, submits a petition with two photos, follows it after staff triage
it, asks a question and reads the reply, asks for a video visit and sees the time the
operator confirmed through the booking flow, joins the visit from the phone on the day,
rates it; the petition office's dashboard then counts the petition, the visit and the rating,
and so does the monthly report (月度通报) as PDF."""

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
from pypdf import PdfReader
from sqlalchemy import select

from config.db import create_engine, create_sessionmaker, utcnow
from config.settings import Settings
from config.vocabulary import label
from scheduler.cases import service as cases
from scheduler.cases.models import Material
from scheduler.cases.words import CaseTrack, Channel, HandlingMode
from scheduler.models import Petition, User, Visit
from tests.conftest import LiveServer, launch_chromium
from tests.live import beside_playwright
from tests.test_browser_live import _judge_page
from tests.test_browser_mobile import _frames_grow
from tests.test_portal import resident_id

pytestmark = pytest.mark.browser

ID_NUMBER = resident_id("11010820000101123")


@pytest.fixture(scope="module")
def phone_browser() -> Iterator[tuple[Any, dict[str, Any]]]:
    """Debian's Chromium and Playwright's own Pixel 7 descriptor (is_mobile, has_touch)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch_chromium(pw)
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
                settings=Settings(data_dir=data_dir),
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


def test_a_phone_petitioner_goes_from_petition_to_rating_and_the_dashboard_counts_it(
    live_server: LiveServer, phone_browser: tuple[Any, dict[str, Any]], artifacts: Path
) -> None:
    browser, pixel7 = phone_browser
    assert pixel7["is_mobile"] and pixel7["has_touch"]
    phone_ctx = browser.new_context(**pixel7, locale="zh-CN")
    phone = phone_ctx.new_page()
    op_ctx = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    op = op_ctx.new_page()
    _login(op, live_server, "operator", "/operator")
    # the petition office of the high court above: its figures before the journey
    office_ctx = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    office = office_ctx.new_page()
    _login(office, live_server, "officer", "/cases")
    before = _this_month(office, live_server)

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

    # a legal question, answered on the inbox page; the reply reaches the phone
    phone.locator("#feedback-link").tap()
    phone.wait_for_url(live_server.url + "/p/feedback")
    phone.wait_for_selector("body[data-ready='1']")
    phone.select_option("#ask-case", value=str(case.id))
    phone.fill("#ask-subject", "执行期限")
    phone.fill("#ask-text", "请问执行需要多长时间？")
    phone.tap("#ask-submit")
    expect(phone.locator("#ask-msg")).to_contain_text("咨询已提交")
    op.goto(live_server.url + "/inbox")
    op.wait_for_selector("body[data-ready='1']")
    question = op.locator("#thread-list article", has_text="执行期限")
    question.locator("textarea").fill("一般六个月内办结，详见接访时说明。")
    question.locator("button[type=submit]").click()
    expect(op.locator("#threads-msg")).to_contain_text("已短信通知信访人")
    phone.reload()
    phone.wait_for_selector("body[data-ready='1']")
    expect(phone.locator("#thread-list li.thread").first).to_contain_text("一般六个月内办结")

    # the day comes (the booked visit is moved to now), the operator checks the
    # petitioner's identity, and the phone fetches its code and joins
    visit_id = beside_playwright(_move_visit_to_now(live_server.data_dir, case.id))
    op.goto(live_server.url + "/operator")
    op.wait_for_selector("body[data-ready='1']")
    op.click("button[data-tab=tab-day]")
    today = op.locator("#visit-rows tr", has_text=number)
    today.locator("button", has_text="签到").click()
    op.select_option("#action-fields select[name=document_type]", "resident_id")
    op.fill("#action-fields input[name=document_number]", ID_NUMBER)
    op.click("#action-ok")
    expect(op.locator("#visit-rows tr", has_text=number)).to_contain_text("已签到")
    judge = _judge_page(browser, live_server, visit_id)
    phone.goto(live_server.url + "/p/")
    phone.wait_for_selector("body[data-ready='1']")
    phone.tap("button[data-view=visits]")
    mine = phone.locator("#visit-list li").first
    mine.locator("button", has_text="获取接访码").tap()
    expect(mine.locator(".visit-code")).to_be_visible()
    mine.locator("a", has_text="进入视频接访").tap()
    phone.wait_for_url(re.compile(r"/join"))
    phone.wait_for_selector("body[data-ready='1']", timeout=30_000)
    if phone.locator("#code-step").is_visible():  # the short link filled the code in
        phone.locator("#code-submit").tap()
    expect(phone.locator("#lobby-step")).to_be_visible(timeout=30_000)
    judge.locator("#lobby-rows button", has_text="准许进入").click()
    expect(phone.locator("#call-step")).to_be_visible(timeout=30_000)
    _frames_grow(phone, "the judge's video on the phone")
    _frames_grow(judge, "the phone's video on the judge's page")
    judge.click("#end")
    expect(phone.locator("#ended-step")).to_be_visible(timeout=30_000)
    judge.context.close()

    # the petitioner rates the visit: 4 points
    phone.goto(live_server.url + "/p/feedback")
    phone.wait_for_selector("body[data-ready='1']")
    phone.tap("button[data-view=rate]")
    phone.select_option("#rate-case", value=str(case.id))
    target = phone.locator(".rate-target", has_text="视频接访").first
    target.locator("input[name=score][value='4']").check()
    target.locator("input[value=explained_clearly]").check()
    target.locator("button[type=submit]").tap()
    expect(phone.locator("#rate-msg")).to_contain_text("感谢您的评价")
    phone_ctx.close()

    # the petition office's dashboard counts the online petition, the video visit, the rating
    after = _this_month(office, live_server)

    def grew(key: str, what: str) -> float:
        return float(after[key]["total"][what] or 0) - float(before[key]["total"][what] or 0)

    assert grew("volume_channel", "num") == 2  # the online petition and the video visit
    channel = {d: _by_key(f["volume_channel"]) for d, f in (("before", before), ("after", after))}
    for key in (Channel.online, Channel.video):
        assert channel["after"][key]["num"] - channel["before"].get(key, {"num": 0})["num"] == 1
    assert (grew("satisfaction", "num"), grew("satisfaction", "den")) == (4, 1)
    office.goto(live_server.url + "/stats")
    office.wait_for_selector("body[data-ready='1']")
    expect(office.locator(".figure[data-figure=satisfaction] h3")).to_have_text(
        f"满意度：{after['satisfaction']['total']['text']} 分（1–5）", timeout=30_000
    )
    table = office.locator(".figure[data-figure=volume_channel] .figure-table")
    online_row = table.locator("tr", has_text=label(Channel.online)).locator("td").last
    expect(online_row).to_have_text(channel["after"][Channel.online]["text"])
    office.screenshot(path=str(artifacts / "portal-journey-stats.png"), full_page=True)

    # and the month's report (月度通报) carries the same figures
    month = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    pdf = office.request.get(live_server.url + f"/api/v1/stats/report?month={month}")
    assert pdf.ok, pdf.text()
    key_figures = PdfReader(io.BytesIO(pdf.body())).pages[1].extract_text().splitlines()
    for figure in ("volume_court", "satisfaction", "video_share"):
        row = f"{after[figure]['label']} {after[figure]['total']['text']} "
        assert any(line.startswith(row) for line in key_figures), (row, key_figures)
    office_ctx.close()
    op_ctx.close()


def _by_key(figure: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["key"]: item for item in figure["by_key"]}


def _this_month(page: Any, server: LiveServer) -> dict[str, Any]:
    """The figures of this month for the page's staff member, by figure key."""
    month = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    resp = page.request.get(server.url + f"/api/v1/stats?from={month}&to={month}")
    assert resp.ok, resp.text()
    return {f["key"]: f for f in resp.json()["figures"]}


async def _move_visit_to_now(data_dir: Path, case_id: int) -> str:
    """Time passes until the visit's day: the booked visit of the case starts a minute ago."""
    engine = create_engine(Settings(data_dir=data_dir), immediate=True)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            visit = await db.scalar(select(Visit).where(Visit.petition_id == case_id))
            assert visit is not None and visit.starts_at and visit.ends_at
            length = visit.ends_at - visit.starts_at
            visit.starts_at = utcnow() - timedelta(minutes=1)
            visit.ends_at = visit.starts_at + length
            return visit.id
    finally:
        await engine.dispose()

"""Headless Chromium through the case pages: a clerk registers a letter and then a walk-in
about the same matter (linked as 重复访), uploads materials and triages the case; the high
court's petition officer assigns it to the basic court with a deadline; the deadline passes
and the board shows the case overdue in red; the high court holds a video supervision
meeting (视频约谈) about it with staff of two lower courts, whose minutes join the case; the
basic court closes it as 化解 and records the 回访; the case's timeline shows all of it in
order, in court local time (the issue's "Done when", in one test)."""

from __future__ import annotations

import base64
import hashlib
import re
import struct
import zlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from playwright.sync_api import expect
from sqlalchemy import update

from config.db import Database, utcnow
from config.settings import Settings
from scheduler.cases.models import Assignment
from scheduler.cases.service import REQUIRED_FIELDS, normalize_case_number, scan_deadlines
from scheduler.models import Petition
from tests.conftest import LiveServer
from tests.helpers import browser_login
from tests.live import first_login, http_login
from tests.test_browser_archive import _in_thread
from tests.test_meetings import WAIT_MS, invitees_join, open_a_meeting_now

pytestmark = pytest.mark.browser

LOCAL = ZoneInfo("Asia/Shanghai")
ID_NUMBER = "110108198003124518"  # a valid resident ID (checksum digit 8)
WRONG_ID = "110108198003124510"  # the same with a wrong checksum digit
ORIGINAL = "（2025）京0108执123号"
EARLIER = "（2024）京0108民初45号"  # the judgment being enforced: a second original number
OTHER_ID = "11010819751105382X"  # a second petitioner of the group visit
RED = "rgb(180, 35, 24)"  # --err of app.css
MINUTES = "海淀法院十日内书面反馈执行进展，逾期由中院挂牌督办"


def _png() -> bytes:
    """A 4×4 red PNG, as a scanner might give a (very small) page."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\xcc\x22\x22" * 4 for _ in range(4))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _pdf() -> bytes:
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return out


async def _deadline_passes(settings: Settings, case_id: int) -> None:
    """Two days go by: the case's feedback deadline (and its assignment's) now lies in the
    past, and the housekeeping job's deadline scan runs."""
    past = utcnow() - timedelta(days=2)
    database = Database(settings)
    try:
        async with database.writer() as db:
            await db.execute(update(Petition).where(Petition.id == case_id).values(due_at=past))
            await db.execute(
                update(Assignment).where(Assignment.petition_id == case_id).values(deadline=past)
            )
            result = await scan_deadlines(db, settings, utcnow())
            assert result.overdue >= 1
    finally:
        await database.dispose()


def _login(page: Any, server: LiveServer, username: str, home: str) -> None:
    browser_login(page, server.url, username, server.passwords[username], home)


def _shot(page: Any, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"cases-{name}.png"), full_page=True)


def _fill_registration(
    page: Any, channel: str, name: str, id_number: str, numbers: str = ORIGINAL
) -> None:
    page.select_option("#reg-channel", channel)
    person = page.locator("#people .person").first
    person.locator("input[name=name]").fill(name)
    person.locator("select[name=id_type]").select_option("resident_id")
    person.locator("input[name=id_number]").fill(id_number)
    page.select_option("#reg-category", "enforcement")
    page.fill("#reg-numbers", numbers)
    page.fill("#reg-summary", "请求法院执行到位，支付拖欠工程款。")
    page.fill("#reg-court", "北京市海淀区人民法院")


def test_case_from_letter_to_followup_through_the_pages(
    live_server: LiveServer, chromium: Any, artifacts: Path
) -> None:
    csp_errors: list[str] = []

    def page_of(username: str, home: str) -> Any:
        ctx = chromium.new_context(locale="zh-CN", viewport={"width": 1400, "height": 900})
        page = ctx.new_page()
        page.on(
            "console",
            lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None,
        )
        _login(page, live_server, username, home)
        return page

    # ---- the clerk of the basic court registers a letter
    clerk = page_of("operator", "/operator")
    expect(clerk.locator("header nav.top-links a", has_text="信访件")).to_be_visible()
    clerk.click("header nav.top-links a[href='/cases']")
    clerk.wait_for_selector("body[data-ready='1']")
    clerk.click("#new-case")
    clerk.wait_for_url(live_server.url + "/cases/new")
    clerk.wait_for_selector("body[data-ready='1']")
    assert clerk.evaluate("document.activeElement.id") == "reg-channel"

    # Enter on an empty form: 有录必全 names every missing field, next to it
    clerk.locator("#reg-court").press("Enter")
    expect(clerk.locator("#reg-msg")).to_contain_text("登记信息不完整，请填写：来源渠道")
    for field in REQUIRED_FIELDS:
        expect(clerk.locator(f"label[data-field='{field}']").first).to_have_class(
            re.compile("invalid")
        )
        assert field in clerk.locator("#reg-msg").inner_text()
    assert clerk.evaluate("document.activeElement.id") == "reg-channel"

    _shot(clerk, artifacts, "incomplete")

    # a wrong check digit is named at the ID field as the clerk types
    _fill_registration(clerk, "letter", "李某某", WRONG_ID, f"{ORIGINAL}、{EARLIER}")
    id_label = clerk.locator("#people .person label[data-field='证件号码']").first
    expect(id_label.locator(".field-error")).to_contain_text("校验位", timeout=10_000)
    id_label.locator("input").fill(ID_NUMBER)
    expect(id_label.locator(".field-error")).to_have_text("", timeout=10_000)
    expect(clerk.locator("#dup")).to_be_hidden()
    clerk.locator("#reg-court").press("Enter")
    expect(clerk.locator("#saved-title")).to_contain_text("已登记信访件", timeout=15_000)
    number = clerk.locator("#saved-title a.case-link").inner_text()
    case_id = int(clerk.locator("#saved-open").get_attribute("href").rsplit("/", 1)[1])

    # materials from the scanner: several files at once, each shown with its SHA-256
    png, pdf = _png(), _pdf()
    # the file field speaks Chinese whatever the browser's language (files.js)
    picker = clerk.locator("label.file-picker:has(#upload-files)")
    expect(picker.locator(".file-button")).to_have_text("选择文件…")
    expect(picker.locator(".file-chosen")).to_have_text("未选择文件")
    assert clerk.eval_on_selector("#upload-files", "e => getComputedStyle(e).opacity") == "0"
    clerk.set_input_files(
        "#upload-files",
        [
            {"name": "来信.png", "mimeType": "image/png", "buffer": png},
            {"name": "判决书.pdf", "mimeType": "application/pdf", "buffer": pdf},
        ],
    )
    expect(picker.locator(".file-chosen")).to_have_text("已选择 2 个文件")
    clerk.click("#upload-submit")
    expect(clerk.locator("#upload-msg")).to_contain_text("已上传 2 个文件", timeout=15_000)
    expect(picker.locator(".file-chosen")).to_have_text("未选择文件")  # emptied for the next
    rows = clerk.locator("#upload-rows")
    expect(rows).to_contain_text(hashlib.sha256(png).hexdigest())
    expect(rows).to_contain_text(hashlib.sha256(pdf).hexdigest())
    # ... or dropped on the form from the scanner's folder
    dropped = _pdf() + b"% page 2\n"
    clerk.evaluate(
        """([name, b64]) => {
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          const dt = new DataTransfer();
          dt.items.add(new File([bytes], name, { type: "application/pdf" }));
          document.getElementById("upload-form").dispatchEvent(
            new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
        }""",
        ["扫描件第2页.pdf", base64.b64encode(dropped).decode()],
    )
    expect(clerk.locator("#upload-msg")).to_contain_text("已上传 1 个文件", timeout=15_000)
    expect(rows).to_contain_text(hashlib.sha256(dropped).hexdigest())
    _shot(clerk, artifacts, "registered")

    # ---- the same petitioner walks in about the same matter: found as 重复访 while typing
    clerk.click("#next-case")
    assert clerk.evaluate("document.activeElement.id") == "reg-channel"
    _fill_registration(clerk, "walk_in", "李某某", ID_NUMBER)
    # ... with a neighbour this time (群体访): the head count follows the petitioners
    clerk.click("#add-person")
    second = clerk.locator("#people .person").nth(1)
    expect(second.locator("input[name=name]")).to_be_focused()
    second.locator("input[name=name]").fill("赵某某")
    second.locator("input[name=id_number]").fill(OTHER_ID)
    expect(clerk.locator("#reg-count")).to_have_value("2")
    expect(clerk.locator("#dup")).to_contain_text(
        f"该事项已登记为信访件 {number}，将作为重复访关联", timeout=10_000
    )
    _shot(clerk, artifacts, "duplicate")
    clerk.locator("#reg-court").press("Enter")
    expect(clerk.locator("#saved-title")).to_contain_text(
        f"已作为重复访关联到信访件 {number}", timeout=15_000
    )
    expect(clerk.locator("#saved-title")).to_contain_text("第 2 次来访来信")

    # ---- triage on the case's page (诉访分离): a petition matter, 马上办, the clerk owns it
    clerk.click("#saved-open")
    clerk.wait_for_url(f"{live_server.url}/cases/{case_id}")
    clerk.wait_for_selector("body[data-ready='1']")
    walk_in = clerk.locator("#contact-rows tr", has_text="（重复访）")
    expect(walk_in.locator("td").nth(2)).to_have_text("2")
    stored = "、".join(normalize_case_number(n) for n in (ORIGINAL, EARLIER))  # as compared
    expect(clerk.locator("#case-facts")).to_contain_text(stored)
    clerk.locator("#material-rows tr", has_text="来信.png").locator("button").click()
    image = clerk.locator("#viewer img")
    expect(image).to_be_visible()
    expect(image).to_have_js_property("naturalWidth", 4)  # loaded and decoded
    clerk.locator("#material-rows tr", has_text="判决书.pdf").locator("button").click()
    expect(clerk.locator("#viewer iframe")).to_have_attribute("title", "判决书.pdf")
    clerk.click("#action-buttons button[data-action=triage_petition]")
    clerk.select_option("#act-fields select[name=mode]", "immediate")
    clerk.select_option("#act-fields select[name=responsible_id]", label="海淀法院操作员（操作员）")
    _shot(clerk, artifacts, "triage-form")
    clerk.click("#act-submit")
    expect(clerk.locator("#case-facts")).to_contain_text("办理中", timeout=15_000)
    expect(clerk.locator("#case-facts")).to_contain_text("马上办")

    # ---- the high court's petition officer assigns it to the basic court with a deadline
    officer = page_of("officer", "/cases")
    officer.fill("#filter-form input[name=q]", ORIGINAL)
    officer.click("#filter-submit")
    expect(officer.locator("#case-rows tr")).to_have_count(1, timeout=15_000)
    assert officer.url.endswith("/cases?q=" + quote(ORIGINAL))  # the filter is in the address
    _shot(officer, artifacts, "list")
    officer.locator("#case-rows a.case-link", has_text=number).click()
    officer.wait_for_url(f"{live_server.url}/cases/{case_id}")
    officer.wait_for_selector("body[data-ready='1']")
    deadline = (datetime.now(LOCAL) + timedelta(days=5)).date().isoformat()
    officer.click("#action-buttons button[data-action=assign]")
    officer.select_option("#act-fields select[name=to_court_id]", label="北京市海淀区人民法院")
    officer.fill("#act-fields input[name=deadline]", deadline)
    officer.fill("#act-fields textarea[name=instructions]", "请于期限内化解并反馈。")
    officer.click("#act-submit")
    expect(officer.locator("#case-facts")).to_contain_text("已交办", timeout=15_000)
    expect(officer.locator("#assignment-rows")).to_contain_text("北京市海淀区人民法院")
    officer.click("#action-buttons button[data-action=flag]")
    officer.click("#act-submit")
    expect(officer.locator("#case-badges")).to_contain_text("挂牌督办", timeout=15_000)
    expect(officer.locator("#action-buttons button[data-action=flag]")).to_have_count(0)
    expect(officer.locator("#action-buttons button[data-action=unflag]")).to_have_count(1)

    # ---- the deadline passes: the board shows the case overdue, in red
    _in_thread(_deadline_passes(Settings(data_dir=live_server.data_dir), case_id))
    officer.click("header nav.top-links a[href='/cases/board']")
    officer.wait_for_url(live_server.url + "/cases/board")
    officer.wait_for_selector("body[data-ready='1']")
    row = officer.locator(f"#board tr[data-case-id='{case_id}']")
    expect(row).to_have_class(re.compile("overdue"))
    expect(row).to_contain_text(re.compile(r"超期 \d+ 天"))
    expect(row).to_contain_text("挂牌督办")
    assert row.locator("td").nth(6).evaluate("td => getComputedStyle(td).color") == RED
    block = officer.locator(
        "#board .court-block", has=officer.locator(f"tr[data-case-id='{case_id}']")
    )
    expect(block.locator(".court-name")).to_have_text("北京市海淀区人民法院")
    _shot(officer, artifacts, "board")

    # ---- the high court holds a video supervision meeting (视频约谈) about the case with
    #      staff of two lower courts: scheduled on the meetings page, joined by each from
    #      their own session (real WebRTC through the relay), minutes kept by the host;
    #      the case's page leads there with the case already added
    officer.goto(f"{live_server.url}/cases/{case_id}")
    officer.wait_for_selector("body[data-ready='1']")
    officer.click("#meet-case")
    officer.wait_for_url(re.compile(r"/meetings\?case="))
    officer.wait_for_selector("body[data-ready='1']")
    expect(officer.locator("#case-list li")).to_have_count(1)
    expect(officer.locator("#case-list")).to_contain_text(number)
    visit_id = open_a_meeting_now(officer, live_server.url, [number])
    judge = page_of("judge", "/judge")
    window = chromium.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    invitees_join(
        officer, judge, window.new_page(), live_server.url, live_server.passwords, visit_id
    )
    _shot(officer, artifacts, "meeting")
    officer.fill("#note-text", MINUTES)
    officer.click("#note-form button[type=submit]")
    expect(officer.locator("#note-list")).to_contain_text(MINUTES, timeout=WAIT_MS)
    officer.click("#end")
    expect(judge.locator("#ended-text")).to_have_text("约谈已结束", timeout=WAIT_MS)
    window.close()
    judge.context.close()

    # ---- the basic court resolves it (化解, with its ground) and records the 回访
    clerk.reload()
    clerk.wait_for_selector("body[data-ready='1']")
    expect(clerk.locator("#case-badges")).to_contain_text(re.compile(r"超期 \d+ 天"))
    clerk.click("#action-buttons button[data-action=resolve]")
    clerk.select_option("#act-fields select[name=ground]", label="执行到位")
    clerk.fill("#act-fields textarea[name=remark]", "被执行人已全额支付，信访人签字确认。")
    clerk.click("#act-submit")
    expect(clerk.locator("#case-facts")).to_contain_text("已化解", timeout=15_000)
    expect(clerk.locator("#followup-rows")).to_contain_text("待回访")
    clerk.click("#action-buttons button[data-action=record_followup]")
    clerk.select_option("#act-fields select[name=result]", label="满意")
    clerk.fill("#act-fields textarea[name=remark]", "电话回访，信访人表示满意。")
    clerk.click("#act-submit")
    expect(clerk.locator("#followup-rows")).to_contain_text("满意", timeout=15_000)
    # a closed case is not met about, and the meetings page says why
    officer.goto(live_server.url + "/meetings")
    officer.wait_for_selector("body[data-ready='1']")
    officer.fill("#case-number", number)
    officer.click("#case-add")
    expect(officer.locator("#schedule-msg")).to_contain_text(
        f"信访件 {number} 已化解，不能约谈", timeout=15_000
    )

    # ---- the timeline: every step in order, who did it, in court local time
    kinds = clerk.locator("#timeline li").evaluate_all("lis => lis.map(li => li.dataset.kind)")
    expected = [
        "registered",
        "contact",
        "material",
        "material",
        "contact",
        "triaged",
        "assigned",
        "flagged",
        "overdue",
        "meeting",
        "resolved",  # names the follow-up's due date too
        "followup",
    ]
    it = iter(kinds)
    assert all(k in it for k in expected), kinds
    timeline = clerk.locator("#timeline")
    expect(timeline).to_contain_text("重复访：来访")
    expect(timeline).to_contain_text("交办 北京市海淀区人民法院")
    meeting = timeline.locator("li[data-kind=meeting]")
    expect(meeting).to_contain_text(MINUTES)
    expect(meeting).to_contain_text("主持人：北京高院信访专员")
    expect(meeting.locator(f"a[href='/archive/visits/{visit_id}']")).to_have_count(1)
    expect(timeline).to_contain_text("化解（执行到位）")
    expect(timeline).to_contain_text("回访：满意")
    expect(timeline.locator("li[data-kind=assigned]")).to_contain_text(  # a name, not an account
        "（北京高院信访专员，北京市高级人民法院）"
    )
    today = datetime.now(LOCAL)
    expect(timeline.locator("li[data-kind=registered] .at")).to_have_text(
        re.compile(rf"^{today.date().isoformat()} \d\d:\d\d$")
    )
    _shot(clerk, artifacts, "timeline")
    assert not csp_errors, csp_errors
    assert ID_NUMBER not in clerk.content() + officer.content()
    clerk.context.close()
    officer.context.close()


async def _registered(
    server: LiveServer,
    *,
    channel: str,
    category: str,
    name: str,
    id_number: str,
    number: str,
    summary: str,
    original_court: str = "北京市海淀区人民法院",
) -> tuple[int, str]:
    """The clerk registers a case over the API; returns its id and number."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        csrf = await http_login(http, server, "operator", server.passwords["operator"])
        body = {
            "channel": channel,
            "petitioners": [{"name": name, "id_type": "resident_id", "id_number": id_number}],
            "category": category,
            "summary": summary,
            "original_numbers": [number],
            "original_court": original_court,
        }
        async with http.post(
            server.url + "/api/v1/cases", json=body, headers={"X-CSRF-Token": csrf}
        ) as r:
            assert r.status == 201, await r.text()
            case = (await r.json())["case"]
            return int(case["id"]), str(case["number"])


async def _phoned_in(server: LiveServer) -> tuple[int, str]:
    """A 12368 call about a civil judgment; returns the case's id and number."""
    return await _registered(
        server,
        channel="phone",
        category="civil_retrial",
        name="钱某某",
        id_number=OTHER_ID,
        number="（2025）京01民终88号",
        summary="对二审判决不服，询问如何申请再审。",
        original_court="北京市第一中级人民法院",
    )


def test_leader_takes_a_case_and_finds_it_as_theirs_while_the_archivist_only_reads(
    live_server: LiveServer, chromium: Any, artifacts: Path
) -> None:
    case_id, number = _in_thread(_phoned_in(live_server))
    ctx = chromium.new_context(locale="zh-CN", viewport={"width": 1400, "height": 900})
    leader = ctx.new_page()
    _login(leader, live_server, "leader", "/cases")
    leader.goto(f"{live_server.url}/cases/{case_id}")
    leader.wait_for_selector("body[data-ready='1']")
    leader.click("#action-buttons button[data-action=take_lead]")
    leader.click("#act-submit")
    expect(leader.locator("#case-badges")).to_contain_text(
        "包案领导：海淀法院院领导", timeout=15_000
    )
    expect(leader.locator("#action-buttons button[data-action=take_lead]")).to_have_count(0)
    # a wrong entry is corrected by a new one naming it; the old one stays as it was
    first = leader.locator("#timeline li").first
    original, first_id = first.locator(".text").inner_text(), first.get_attribute("data-event-id")
    first_at = first.locator(".at").inner_text()
    leader.click("#action-buttons button[data-action=correct]")
    leader.select_option("#act-fields select[name=event_id]", first_id)
    leader.fill("#act-fields textarea[name=text]", "来电人为钱某某之子，代为反映。")
    leader.click("#act-submit")
    correction = leader.locator("#timeline li[data-kind=correction]")
    expect(correction).to_contain_text(  # named as the page shows it: its time and kind
        f"更正 {first_at}「登记」记录：来电人为钱某某之子", timeout=15_000
    )
    assert leader.locator("#timeline li").first.locator(".text").inner_text() == original
    expect(leader.locator("#timeline li").first).to_contain_text("已更正")
    leader.goto(live_server.url + "/cases?category=xyz")  # a stale or mistyped link
    leader.wait_for_selector("body[data-ready='1']")
    expect(leader.locator("#list-msg")).to_have_text(
        "链接中的筛选条件无效，已忽略：案件类别「xyz」"
    )
    leader.check("#mine-box input")
    leader.click("#filter-submit")
    expect(leader.locator("#case-rows tr")).to_have_count(1, timeout=15_000)
    expect(leader.locator("#case-rows")).to_contain_text(number)
    expect(leader.locator("#case-rows")).to_contain_text("包案：海淀法院院领导")
    _shot(leader, artifacts, "leader-mine")
    ctx.close()

    ctx = chromium.new_context(locale="zh-CN", viewport={"width": 1400, "height": 900})
    archivist = ctx.new_page()
    _login(archivist, live_server, "archivist", "/archive")
    archivist.click("header nav.top-links a[href='/cases']")
    archivist.wait_for_selector("body[data-ready='1']")
    expect(archivist.locator("#new-case")).to_be_hidden()  # archivists never register
    expect(archivist.locator("#mine-box")).to_be_hidden()
    archivist.locator("#case-rows a.case-link", has_text=number).click()
    archivist.wait_for_selector("body[data-ready='1']")
    expect(archivist.locator("#timeline li[data-kind=leader]")).to_contain_text("包案")
    expect(archivist.locator("#actions-card")).to_be_hidden()  # reads, never acts
    ctx.close()


def _page(chromium: Any, server: LiveServer, username: str, home: str) -> Any:
    ctx = chromium.new_context(locale="zh-CN", viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    _login(page, server, username, home)
    return page


def _open(page: Any, server: LiveServer, case_id: int) -> None:
    """The case's page, fresh: the actions offered are those of the case as it is now."""
    page.goto(f"{server.url}/cases/{case_id}")
    page.wait_for_selector("body[data-ready='1']")


def _action(page: Any, action: str) -> None:
    page.click(f"#action-buttons button[data-action={action}]")
    expect(page.locator("#act-form")).to_be_visible()


def _submit(page: Any, title: str) -> None:
    """Submit the open action form; the page says the action is done, by the form's title."""
    page.click("#act-submit")
    expect(page.locator("#page-msg")).to_have_text(f"已完成：{title}", timeout=15_000)
    expect(page.locator("#act-form")).to_be_hidden()


def _do(page: Any, action: str, title: str, **fields: str) -> None:
    """Take an action through its form: each field by name, a choice by the text shown."""
    _action(page, action)
    for name, value in fields.items():
        field = page.locator(f"#act-fields [name={name}]")
        if field.evaluate("e => e.tagName") == "SELECT":
            field.select_option(label=value)
        else:
            field.fill(value)
    _submit(page, title)


def _local_day(days: int) -> str:
    return (datetime.now(LOCAL) + timedelta(days=days)).date().isoformat()


def test_a_case_is_reported_returned_terminated_reviewed_and_reopened_through_its_page(
    live_server: LiveServer, chromium: Any, artifacts: Path
) -> None:
    case_id, number = _in_thread(
        _registered(
            live_server,
            channel="phone",
            category="admin_retrial",
            name="孙某某",
            id_number="110108199003071238",
            number="（2025）京0108行初17号",
            summary="对征收补偿的行政判决不服，要求重新处理。",
        )
    )
    clerk = _page(chromium, live_server, "operator", "/operator")
    _open(clerk, live_server, case_id)
    expect(clerk.locator("#case-title")).to_have_text(f"信访件 {number}")
    facts, timeline = clerk.locator("#case-facts"), clerk.locator("#timeline")

    # ---- a letter about the same matter, added on the case's page
    _do(
        clerk,
        "add_contact",
        "登记来访来信（重复访）",
        channel="来信",
        summary="来信补充征收补偿的计算依据。",
    )
    expect(clerk.locator("#contact-rows tr")).to_have_count(2)
    expect(clerk.locator("#contact-rows tr", has_text="来信")).to_contain_text("征收补偿的计算依据")

    # ---- materials on the case's page: a text file is refused by its content and named;
    #      the scan chosen with it is stored and listed at once
    png = _png()
    _action(clerk, "upload")
    clerk.set_input_files(
        "#act-fields input[name=file]",
        [
            {"name": "说明.txt", "mimeType": "text/plain", "buffer": "补充说明".encode()},
            {"name": "补偿决定.png", "mimeType": "image/png", "buffer": png},
        ],
    )
    clerk.click("#act-submit")
    expect(clerk.locator("#act-msg")).to_contain_text(
        "未上传：《说明.txt》：只能上传 PDF、JPEG 或 PNG 格式的材料", timeout=15_000
    )
    expect(clerk.locator("#material-rows")).to_contain_text(hashlib.sha256(png).hexdigest())
    expect(clerk.locator("#material-rows tr")).to_have_count(1)
    clerk.click("#act-cancel")

    # ---- triage: a petition matter, 精细办, the clerk first responsible; a second owner
    #      only with a reason
    _do(
        clerk,
        "triage_petition",
        "分流：信访事项（首办责任）",
        mode="精细办",
        responsible_id="海淀法院操作员（操作员）",
    )
    expect(facts).to_contain_text("信访事项，精细办")
    _action(clerk, "set_owner")
    clerk.select_option("#act-fields select[name=responsible_id]", label="海淀法院院领导（院领导）")
    clerk.click("#act-submit")
    expect(clerk.locator("#act-msg")).to_have_text(
        "本件已有首办责任人；更换责任人须说明理由", timeout=15_000
    )
    clerk.fill("#act-fields input[name=reason]", "涉及征收补偿，由院领导牵头办理。")
    _submit(clerk, "指定或更换首办责任人")
    expect(facts.locator("div", has_text="首办责任人")).to_contain_text("海淀法院院领导")
    expect(timeline.locator("li[data-kind=owner]").last).to_contain_text("更换理由：涉及征收补偿")
    _do(clerk, "progress", "报告办理进展", text="已调取征收档案，正在核算补偿款。")
    expect(timeline.locator("li[data-kind=progress]")).to_contain_text("正在核算补偿款")

    # ---- the high court hands it down (交办); the basic court reports its result
    officer = _page(chromium, live_server, "officer", "/cases")
    _open(officer, live_server, case_id)
    _do(
        officer,
        "assign",
        "交办下级法院（限期反馈）",
        to_court_id="北京市海淀区人民法院",
        deadline=_local_day(5),
        instructions="请核实补偿标准后反馈。",
    )
    expect(officer.locator("#case-facts")).to_contain_text("已交办")
    _open(clerk, live_server, case_id)
    expect(clerk.locator("#action-buttons button[data-action=accept]")).to_have_count(0)
    _do(clerk, "report", "反馈办理结果", result="已与信访人沟通补偿方案，信访人基本认可。")
    expect(clerk.locator("#case-badges")).to_have_text("已反馈待审核")

    # ---- the high court returns it (退回重办): a deadline already past is refused
    _open(officer, live_server, case_id)
    _action(officer, "return")
    officer.fill("#act-fields textarea[name=remark]", "补偿方案未附计算明细，请补充后重新反馈。")
    officer.fill("#act-fields input[name=deadline]", _local_day(-1))
    officer.click("#act-submit")
    expect(officer.locator("#act-msg")).to_have_text("反馈期限必须晚于现在", timeout=15_000)
    officer.fill("#act-fields input[name=deadline]", _local_day(7))
    _submit(officer, "退回重办")
    expect(officer.locator("#case-facts")).to_contain_text("已交办")
    expect(officer.locator("#timeline li[data-kind=returned]")).to_contain_text(
        f"退回重办，限 {_local_day(7)} 23:59 前反馈：补偿方案未附计算明细"
    )

    # ---- reported again, and accepted
    _open(clerk, live_server, case_id)
    _do(clerk, "report", "反馈办理结果", result="已补充补偿款计算明细，信访人签字确认。")
    _open(officer, live_server, case_id)
    _do(officer, "accept", "审核通过反馈", remark="反馈属实，同意。")
    expect(officer.locator("#case-facts")).to_contain_text("办理中")
    expect(officer.locator("#assignment-rows")).to_contain_text("已审核通过")

    # ---- 司法救助: granted only with an amount
    _open(clerk, live_server, case_id)
    _action(clerk, "judicial_aid")
    clerk.select_option("#act-fields select[name=stage]", label="司法救助已批准")
    clerk.click("#act-submit")
    expect(clerk.locator("#act-msg")).to_have_text("请填写救助金额", timeout=15_000)
    clerk.fill("#act-fields input[name=amount_yuan]", "20000")
    _submit(clerk, "司法救助")
    expect(timeline.locator("li[data-kind=judicial_aid]")).to_contain_text(
        "司法救助已批准，金额 20000 元"
    )
    # 信访终结 is a high court's decision: the basic court is not offered it
    expect(clerk.locator("#action-buttons button[data-action=terminate]")).to_have_count(0)

    # ---- the high court ends it (信访终结) with its grounds and approval
    _open(officer, live_server, case_id)
    _do(
        officer,
        "terminate",
        "信访终结（高级人民法院、最高人民法院）",
        ground="经复查原处理正确",
        approval="院长审批，京高法信终〔2026〕12号",
    )
    expect(officer.locator("#case-badges")).to_have_text("已终结")
    expect(officer.locator("#timeline li[data-kind=terminated]")).to_contain_text(
        "京高法信终〔2026〕12号"
    )

    # ---- the basic court may not undo a termination; it arranges the 回访
    _open(clerk, live_server, case_id)
    expect(clerk.locator("#action-buttons button[data-action=reopen]")).to_have_count(0)
    _do(clerk, "schedule_followup", "安排回访", remark="终结后一个月内电话回访。")
    expect(clerk.locator("#followup-rows")).to_contain_text("待回访")

    # ---- the high court reviews the closed case (评查), then reopens it with a reason
    _open(officer, live_server, case_id)
    _do(officer, "review", "评查", rating="合格", findings="程序完备，终结依据充分。")
    expect(officer.locator("#timeline li[data-kind=review]")).to_contain_text("程序完备")
    _do(officer, "reopen", "重新启动办理", reason="信访人提交新的证据材料。")
    expect(officer.locator("#case-badges")).to_have_text("办理中")
    _shot(officer, artifacts, "reopened")

    # ---- every step on the timeline, in order, nothing removed
    kinds = officer.locator("#timeline li").evaluate_all("lis => lis.map(li => li.dataset.kind)")
    expected = [
        "registered",
        "contact",
        "material",
        "triaged",
        "owner",
        "progress",
        "assigned",
        "reported",
        "returned",
        "reported",
        "accepted",
        "judicial_aid",
        "terminated",
        "followup_scheduled",
        "review",
        "reopened",
    ]
    it = iter(kinds)
    assert all(k in it for k in expected), kinds
    assert "110108199003071238" not in clerk.content() + officer.content()
    clerk.context.close()
    officer.context.close()


def test_a_litigation_matter_is_guided_and_the_list_filters_find_each_case(
    live_server: LiveServer, chromium: Any, artifacts: Path
) -> None:
    def online(name: str, id_number: str, original: str) -> int:
        case_id, _ = _in_thread(
            _registered(
                live_server,
                channel="online",
                category="criminal_appeal",
                name=name,
                id_number=id_number,
                number=original,
                summary="对刑事判决不服，要求申诉。",
            )
        )
        return case_id

    guided = online("周某某", "11010819900307456X", "（2024）京0108刑初5号")
    late = online("吴某某", "110108196605121235", "（2023）京0108刑初9号")
    owned = online("郑某某", "110108198811201235", "（2022）京0108刑初3号")
    clerk = _page(chromium, live_server, "operator", "/operator")

    # ---- 诉访分离: a litigation matter, guided to its procedure
    _open(clerk, live_server, guided)
    _do(
        clerk,
        "triage_litigation",
        "分流：诉讼事项（导入诉讼程序）",
        procedure="刑事申诉",
        guidance="已告知信访人向上一级法院提出刑事申诉及所需材料。",
    )
    expect(clerk.locator("#case-badges")).to_have_text("已导入诉讼程序")
    expect(clerk.locator("#case-facts")).to_contain_text("诉讼事项：刑事申诉")
    expect(clerk.locator("#timeline li[data-kind=triaged]")).to_contain_text("提出刑事申诉")
    _open(clerk, live_server, owned)
    _do(
        clerk,
        "triage_petition",
        "分流：信访事项（首办责任）",
        mode="联合办",
        responsible_id="海淀法院院领导（院领导）",
    )
    # the third is left untriaged past its deadline
    _in_thread(_deadline_passes(Settings(data_dir=live_server.data_dir), late))

    # ---- the list: channel and category give the three; node, overdue and owner one each
    clerk.goto(live_server.url + "/cases")
    clerk.wait_for_selector("body[data-ready='1']")
    rows = clerk.locator("#case-rows tr")

    def shown(expected: set[int]) -> None:
        clerk.click("#filter-submit")
        ids = {str(i) for i in expected}
        expect(rows).to_have_count(max(1, len(ids)), timeout=15_000)
        if ids:
            expect(rows.first).to_have_attribute("data-case-id", re.compile("|".join(ids)))
            got = set(rows.evaluate_all("trs => trs.map(tr => tr.dataset.caseId)"))
            assert got == ids, got
        else:
            expect(rows.first).to_have_text("没有符合条件的信访件")

    clerk.select_option("#filter-form select[name=channel]", "online")
    clerk.select_option("#filter-form select[name=category]", label="刑事申诉")
    shown({guided, late, owned})
    clerk.select_option("#filter-form select[name=node]", label="分流")
    shown({late})
    clerk.select_option("#filter-form select[name=node]", label="办结")
    shown({guided})
    clerk.select_option("#filter-form select[name=node]", "")
    clerk.check("#filter-form input[name=overdue]")
    shown({late})
    expect(rows.first).to_have_class(re.compile("overdue"))
    _shot(clerk, artifacts, "list-overdue")
    clerk.uncheck("#filter-form input[name=overdue]")
    clerk.select_option("#owner-select", label="海淀法院院领导")
    shown({owned})
    # the filters are in the address: reloading keeps them and the list
    assert "channel=online" in clerk.url and "responsible_id=" in clerk.url, clerk.url
    clerk.reload()
    clerk.wait_for_selector("body[data-ready='1']")
    expect(clerk.locator("#owner-select option:checked")).to_have_text("海淀法院院领导")
    shown({owned})
    clerk.select_option("#owner-select", "")
    clerk.select_option("#filter-form select[name=channel]", "letter")
    shown(set())
    clerk.context.close()


OTHER_BRANCH_ID = "110108198507014515"  # a valid resident ID (checksum digit 5)
OTHER_BRANCH_NUMBER = "（2025）京0108执777号"


async def _a_clerk_of_another_branch(server: LiveServer) -> str:
    """A second branch under the demo's high court (an intermediate and a basic court) with
    a clerk, and a matter the demo's 海淀 clerk registered; returns the clerk's password."""
    password = "another-branch-pw-1"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        csrf = await http_login(http, server, "admin", server.passwords["admin"])
        headers = {"X-CSRF-Token": csrf}
        async with http.get(server.url + "/api/v1/courts", headers=headers) as r:
            courts = await r.json()
            assert r.status == 200, courts
            high = next(c["id"] for c in courts if c["code"] == "BJGY")
        parent = high
        for code, name, level in (
            ("BJ3Z", "北京市第三中级人民法院", "intermediate"),
            ("BJCY", "北京市朝阳区人民法院", "basic"),
        ):
            body = {"code": code, "name": name, "level": level, "parent_id": parent}
            async with http.post(server.url + "/api/v1/courts", json=body, headers=headers) as r:
                assert r.status == 201, await r.text()
                parent = (await r.json())["id"]
        user = {
            "username": "op_chaoyang",
            "display_name": "朝阳法院操作员",
            "role": "operator",
            "court_id": parent,
            "password": password,
        }
        async with http.post(server.url + "/api/v1/users", json=user, headers=headers) as r:
            assert r.status == 201, await r.text()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        password = await first_login(http, server, "op_chaoyang", password)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        csrf = await http_login(http, server, "operator", server.passwords["operator"])
        letter = {
            "channel": "letter",
            "petitioners": [
                {"name": "赵某某", "id_type": "resident_id", "id_number": OTHER_BRANCH_ID}
            ],
            "category": "enforcement",
            "summary": "请求执行到位。",
            "original_numbers": [OTHER_BRANCH_NUMBER],
            "original_court": "北京市海淀区人民法院",
        }
        async with http.post(
            server.url + "/api/v1/cases", json=letter, headers={"X-CSRF-Token": csrf}
        ) as r:
            assert r.status == 201, await r.text()
    return password


def test_a_repeat_linked_to_another_branchs_case_is_saved_with_its_scans_and_shows_nothing(
    live_server: LiveServer, chromium: Any, artifacts: Path
) -> None:
    """Another branch's clerk registers the same matter: the page says it was linked to a
    case of another court without showing it, and the scans of the visit are uploaded."""
    password = _in_thread(_a_clerk_of_another_branch(live_server))
    ctx = chromium.new_context(locale="zh-CN", viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    browser_login(page, live_server.url, "op_chaoyang", password, "/operator")
    page.goto(live_server.url + "/cases/new")
    page.wait_for_selector("body[data-ready='1']")
    _fill_registration(page, "walk_in", "赵某某", OTHER_BRANCH_ID, OTHER_BRANCH_NUMBER)
    expect(page.locator("#dup")).to_be_hidden()  # nothing of it shown while typing either
    page.locator("#reg-court").press("Enter")
    title = page.locator("#saved-title")
    expect(title).to_contain_text("已作为重复访关联到其他法院登记的信访件", timeout=15_000)
    expect(title.locator("a")).to_have_count(0)
    expect(page.locator("#saved-open")).to_be_hidden()
    assert "赵某某" not in title.inner_text()
    pdf = _pdf()
    page.set_input_files(
        "#upload-files", [{"name": "来访材料.pdf", "mimeType": "application/pdf", "buffer": pdf}]
    )
    page.click("#upload-submit")
    expect(page.locator("#upload-msg")).to_contain_text("已上传 1 个文件", timeout=15_000)
    expect(page.locator("#upload-rows")).to_contain_text(hashlib.sha256(pdf).hexdigest())
    _shot(page, artifacts, "linked-other-court")
    ctx.close()

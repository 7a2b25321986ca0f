"""Headless Chromium: an operator books a visit from the free slots, checks the petitioner
in and sends them to the lobby; the judge's open page is told at once (socket.io)."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from tests.conftest import LiveServer
from tests.helpers import browser_login

pytestmark = pytest.mark.browser


def _soon_weekday() -> date:
    """A Monday–Friday 1 to 3 days ahead: inside the demo hours and the judge's week view."""
    day = datetime.now(ZoneInfo("Asia/Shanghai")).date() + timedelta(days=1)
    while day.weekday() > 4:
        day += timedelta(days=1)
    return day


def _login(page: Any, server: LiveServer, username: str, path: str) -> None:
    browser_login(page, server.url, username, server.passwords[username], path)


def test_book_check_in_lobby_and_judge_is_told(
    live_server: LiveServer, chromium: Any, artifacts: Path
) -> None:
    judge_ctx = chromium.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    judge = judge_ctx.new_page()
    _login(judge, live_server, "judge", "/judge")
    expect(judge.locator("#bell-count")).to_have_text("")

    op_ctx = chromium.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    op = op_ctx.new_page()
    _login(op, live_server, "operator", "/operator")
    op.click("button[data-tab=tab-book]")
    day = _soon_weekday()
    op.fill("#book-first", day.isoformat())
    op.click("#book-form button[type=submit]")
    expect(op.locator("#book-msg")).to_contain_text("找到", timeout=30_000)
    first_slot = op.locator("#slot-rows tr").first
    expect(first_slot).to_contain_text("09:00")
    first_slot.locator("button").click()
    expect(op.locator("#book-msg")).to_contain_text("已预约", timeout=30_000)

    # the judge's open page hears of it without reloading
    expect(judge.locator("#bell-count")).to_have_text("1", timeout=30_000)
    judge.click("button[data-tab=tab-week]")
    expect(judge.locator("#week-rows")).to_contain_text("（2026）京0108信1号", timeout=30_000)

    op.click("button[data-tab=tab-day]")
    row = op.locator("#visit-rows tr").first
    expect(row).to_contain_text("已预约", timeout=30_000)
    expect(op.locator("#day-grid")).to_contain_text("（2026）京0108信1号")
    row.locator("button", has_text="签到").click()
    op.select_option("#action-fields select[name=document_type]", "resident_id")
    op.fill("#action-fields input[name=document_number]", "11010519491231002X")
    op.click("#action-ok")
    expect(op.locator("#visit-rows tr").first).to_contain_text("已签到", timeout=30_000)
    op.locator("#visit-rows tr").first.locator("button", has_text="进入候场").click()
    expect(op.locator("#visit-rows tr").first).to_contain_text("候场中", timeout=30_000)
    op.screenshot(path=str(artifacts / "operator-day.png"), full_page=True)

    expect(judge.locator("#bell-count")).to_have_text(re.compile("^[3-9]$"), timeout=30_000)
    expect(judge.locator("#week-rows")).to_contain_text("候场中", timeout=30_000)
    judge.click("#bell")
    expect(judge.locator("#notify-panel")).to_contain_text("信访人正在候场")
    judge.screenshot(path=str(artifacts / "judge-week.png"), full_page=True)
    assert "11010519491231002X" not in judge.content() + op.content()
    judge_ctx.close()
    op_ctx.close()


def test_taken_slot_refreshes_the_free_slots_shown_without_seconds(
    live_server: LiveServer, chromium: Any, artifacts: Path
) -> None:
    """Two operators look at the same free slots; the second to book gets 409 and a fresh
    list without the slot just taken. Slot times read HH:MM."""
    pages = []
    for _ in range(2):
        ctx = chromium.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
        page = ctx.new_page()
        _login(page, live_server, "operator", "/operator")
        page.click("button[data-tab=tab-book]")
        page.fill("#book-first", _soon_weekday().isoformat())
        page.click("#book-form button[type=submit]")
        expect(page.locator("#book-msg")).to_contain_text("找到", timeout=30_000)
        pages.append(page)
    late, early = pages
    taken = late.locator("#slot-rows tr").first.inner_text()
    assert early.locator("#slot-rows tr").first.inner_text() == taken
    rows = late.locator("#slot-rows").inner_text()
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}–\d{2}:\d{2}", rows), rows
    assert not re.search(r"\d{1,2}:\d{2}:\d{2}", rows), rows  # no seconds anywhere
    early.locator("#slot-rows tr").first.locator("button").click()
    expect(early.locator("#book-msg")).to_contain_text("已预约", timeout=30_000)
    late.locator("#slot-rows tr").first.locator("button").click()
    expect(late.locator("#book-msg")).to_contain_text("空闲时段已刷新", timeout=30_000)
    expect(late.locator("#slot-rows tr").first).not_to_have_text(taken, timeout=30_000)
    assert taken not in late.locator("#slot-rows").inner_text()
    late.screenshot(path=str(artifacts / "operator-slot-taken.png"), full_page=True)
    for page in pages:
        page.context.close()


def test_a_weekend_workday_marked_by_both_courts_opens_monday_hours_for_booking(
    live_server: LiveServer, chromium: Any, artifacts: Path
) -> None:
    """调休上班日: the basic court's operator (its room) and the receiving court's judge
    each mark a Saturday to work as a Monday; the operator then finds Monday's 09:00 on that
    Saturday. The judge removes the mark; the page says so."""
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    saturday = today + timedelta(days=(5 - today.weekday()) % 7 + 21)  # clear of other tests
    ctx = chromium.new_context(locale="zh-CN", viewport={"width": 1280, "height": 1000})
    op = ctx.new_page()
    _login(op, live_server, "operator", "/operator")
    judge_ctx = chromium.new_context(locale="zh-CN", viewport={"width": 1280, "height": 1000})
    judge = judge_ctx.new_page()
    _login(judge, live_server, "judge", "/judge")

    def mark(page: Any) -> None:
        page.fill("#courtday-form input[name=day]", saturday.isoformat())
        page.select_option("#courtday-kind", "workday")
        expect(page.locator("#courtday-weekday")).to_be_visible()
        page.select_option("#courtday-as-weekday", "0")
        page.fill("#courtday-form input[name=note]", "元旦调休")
        page.click("#courtday-form button[type=submit]")
        expect(page.locator("#courtday-msg")).to_have_text("已保存")
        row = page.locator("#courtday-rows tr", has_text=saturday.isoformat())
        expect(row).to_contain_text("（星期六）")
        expect(row).to_contain_text("调休上班日（按星期一安排）")

    op.click("button[data-tab=tab-rooms]")
    mark(op)
    op.screenshot(path=str(artifacts / "operator-workday.png"), full_page=True)
    judge.click("button[data-tab=tab-hours]")
    mark(judge)

    op.click("button[data-tab=tab-book]")
    op.fill("#book-first", saturday.isoformat())
    op.click("#book-form button[type=submit]")
    expect(op.locator("#book-msg")).to_contain_text("找到", timeout=30_000)
    first_slot = op.locator("#slot-rows tr").first
    expect(first_slot).to_contain_text(saturday.strftime("%m-%d"))
    expect(first_slot).to_contain_text("09:00")
    op.screenshot(path=str(artifacts / "operator-workday-slots.png"), full_page=True)

    row = judge.locator("#courtday-rows tr", has_text=saturday.isoformat())
    row.locator("button", has_text="删除").click()
    expect(judge.locator("#courtday-msg")).to_have_text("已删除")
    expect(judge.locator("#courtday-rows")).not_to_contain_text(saturday.isoformat())
    judge.screenshot(path=str(artifacts / "judge-workday-removed.png"), full_page=True)
    ctx.close()
    judge_ctx.close()

"""Headless Chromium: each role logs in and sees its own page; the admin adds a court
and a user through the page; pages refuse the wrong role."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.conftest import LiveServer

pytestmark = pytest.mark.browser

HOMES = {
    "admin": ("/admin", "系统管理"),
    "operator": ("/operator", "登记与预约"),
    "judge": ("/judge", "接访工作台"),
    "archivist": ("/archive", "档案管理"),
}


def _login(page: Any, server: LiveServer, username: str, password: str | None = None) -> None:
    page.goto(server.url + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password or server.passwords[username])
    page.click("#login-submit")


def _ready(page: Any) -> None:
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)


@pytest.mark.parametrize("username", list(HOMES))
def test_each_role_lands_on_its_page(
    live_server: LiveServer, browser_context: Any, username: str, artifacts: Path
) -> None:
    page = browser_context.new_page()
    _login(page, live_server, username)
    path, title = HOMES[username]
    page.wait_for_url(live_server.url + path, timeout=30_000)
    _ready(page)
    assert title in page.text_content("header.top h1")
    who = page.text_content("#who")
    assert who and ("海淀" in who or "一中院" in who or "管理员" in who)
    if username == "archivist":
        rows = page.text_content("#court-rows")
        assert "北京市第一中级人民法院" in rows and "北京市海淀区人民法院" in rows
        assert "最高人民法院" not in rows
    if username == "operator":
        page.click("button[data-tab=tab-rooms]")
        assert page.locator("#room-rows").is_visible()
        assert "第一接访室" in page.text_content("#room-rows")
    page.screenshot(path=str(artifacts / f"home-{username}.png"), full_page=True)
    for other, (other_path, _) in HOMES.items():
        if other in (username, "admin") or username == "admin":
            continue
        resp = page.goto(live_server.url + other_path)
        if other_path == "/archive":  # every staff role searches the archive
            assert resp.status == 200
            continue
        assert resp.status == 403 and page.locator("#forbidden").is_visible()
    admin_resp = page.goto(live_server.url + "/admin")
    assert (admin_resp.status == 200) == (username == "admin")


def test_wrong_password_shows_error(live_server: LiveServer, browser_context: Any) -> None:
    page = browser_context.new_page()
    _login(page, live_server, "operator", "definitely-wrong")
    expect(page.locator("#login-msg")).to_contain_text("错误", timeout=30_000)
    assert page.url.endswith("/login")


def test_pages_need_login(live_server: LiveServer, browser_context: Any) -> None:
    page = browser_context.new_page()
    page.goto(live_server.url + "/operator")
    assert page.url.startswith(live_server.url + "/login?next=/operator")


def test_admin_adds_court_and_user_then_user_logs_in(
    live_server: LiveServer, chromium: Any, artifacts: Path
) -> None:
    ctx = chromium.new_context(locale="zh-CN")
    page = ctx.new_page()
    _login(page, live_server, "admin")
    page.wait_for_url(live_server.url + "/admin")
    _ready(page)
    page.fill("#court-form input[name=code]", "BJCY")
    page.fill("#court-form input[name=name]", "北京市朝阳区人民法院")
    page.select_option("#court-level", "basic")
    page.select_option("#court-parent", label="北京市第一中级人民法院（中级法院）")
    page.click("#court-form button[type=submit]")
    expect(page.locator("#court-msg")).to_contain_text("已添加", timeout=30_000)
    expect(page.locator("#court-rows")).to_contain_text("北京市朝阳区人民法院")

    page.click("button[data-tab=tab-users]")
    page.fill("#user-form input[name=username]", "chaoyang_op")
    page.fill("#user-form input[name=display_name]", "朝阳法院操作员")
    page.select_option("#user-form select[name=role]", "operator")
    page.select_option("#user-court", label="北京市朝阳区人民法院（基层法院）")
    page.fill("#user-form input[name=password]", "Chaoyang-2026!")
    page.click("#user-form button[type=submit]")
    expect(page.locator("#user-msg")).to_contain_text("已添加", timeout=30_000)
    expect(page.locator("#user-rows")).to_contain_text("chaoyang_op")

    # a rule broken in the form is shown in Chinese, and nothing is added
    page.fill("#user-form input[name=username]", "weakling")
    page.fill("#user-form input[name=display_name]", "弱密码")
    page.fill("#user-form input[name=password]", "short")
    page.click("#user-form button[type=submit]")
    expect(page.locator("#user-msg")).to_have_class(re.compile("error"), timeout=30_000)
    assert "weakling" not in page.text_content("#user-rows")
    page.screenshot(path=str(artifacts / "admin-users.png"), full_page=True)
    ctx.close()

    ctx = chromium.new_context(locale="zh-CN")
    page = ctx.new_page()
    _login(page, live_server, "chaoyang_op", "Chaoyang-2026!")
    # the password the admin chose is replaced first, then on to the operator's page
    page.wait_for_url(live_server.url + "/password?next=%2Foperator")
    page.fill("input[name=current_password]", "Chaoyang-2026!")
    page.fill("input[name=new_password]", "Chaoyang-own-7")
    page.fill("input[name=repeat_password]", "Chaoyang-own-7")
    page.click("#password-submit")
    page.wait_for_url(live_server.url + "/operator")
    _ready(page)
    assert "北京市朝阳区人民法院" in page.text_content("#who")
    ctx.close()


def test_operator_registers_petitioner_masked(
    live_server: LiveServer, browser_context: Any, artifacts: Path
) -> None:
    page = browser_context.new_page()
    _login(page, live_server, "operator")
    page.wait_for_url(live_server.url + "/operator")
    _ready(page)
    page.click("button[data-tab=tab-petitioners]")
    page.fill("#petitioner-form input[name=name]", "李四")
    page.fill("#petitioner-form input[name=id_number]", "110101199003074477")
    page.fill("#petitioner-form input[name=phone]", "13912345678")
    page.click("#petitioner-form button[type=submit]")
    expect(page.locator("#petitioner-msg")).to_have_class(re.compile("ok"), timeout=30_000)
    expect(page.locator("#petitioner-rows")).to_contain_text("李四")
    rows = page.text_content("#petitioner-rows")
    assert "1101**********4477" in rows and "139****5678" in rows
    assert "110101199003074477" not in page.content()
    page.screenshot(path=str(artifacts / "operator.png"), full_page=True)


@pytest.mark.parametrize(
    ("next_param", "lands_on"),
    [
        ("/%5Cevil.example", "/judge"),  # the browser reads /\ as //
        ("/%09/evil.example", "/judge"),  # a tab is dropped: //evil.example
        ("//evil.example", "/judge"),
        ("https%3A%2F%2Fevil.example%2F", "/judge"),
        ("javascript%3Aalert(1)", "/judge"),
        ("/archive%3Fq%3D1", "/archive?q=1"),  # a path on this site is followed
    ],
)
def test_login_follows_next_only_within_the_site(
    live_server: LiveServer, chromium: Any, next_param: str, lands_on: str
) -> None:
    ctx = chromium.new_context(locale="zh-CN")
    page = ctx.new_page()
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    page.goto(f"{live_server.url}/login?next={next_param}")
    page.fill("input[name=username]", "judge")
    page.fill("input[name=password]", live_server.passwords["judge"])
    page.click("#login-submit")
    page.wait_for_url(live_server.url + lands_on, timeout=30_000)
    assert all(urlsplit(url).hostname != "evil.example" for url in asked), asked
    ctx.close()

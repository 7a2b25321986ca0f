"""The guest's terminal keeps its rejoin token for the visit (issue 11 §4): in headless
Chromium, a new tab after the first was closed gets back in without a new code, and a
reconnection whose entry fails without a refusal is tried again."""

from __future__ import annotations

import asyncio
import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import LiveServer
from tests.live import checked_in_visit

pytestmark = pytest.mark.browser


def test_a_new_tab_of_the_guest_terminal_gets_back_in_without_a_new_code(
    live_server: LiveServer, browser_context: Any
) -> None:
    """The rejoin token is kept in the terminal's localStorage for the visit: after the tab
    is closed (a crashed browser), a new tab re-enters the lobby without the spent code."""
    with ThreadPoolExecutor(1) as pool:
        visit_id, code = pool.submit(
            asyncio.run, checked_in_visit(live_server, live_server.passwords)
        ).result()
    url = f"{live_server.url}/join?visit={visit_id}"
    first = browser_context.new_page()
    first.goto(url)
    first.fill("#code-input", code)
    first.click("#code-submit")
    expect(first.locator("#lobby-step")).to_be_visible(timeout=30_000)
    stored = first.evaluate(f"localStorage.getItem('vr-rejoin-{visit_id}')")
    assert stored and "王" not in stored
    first.close()

    again = browser_context.new_page()
    again.goto(url)
    again.wait_for_selector("body[data-joined='1']", timeout=30_000)
    expect(again.locator("#lobby-step")).to_be_visible()
    expect(again.locator("#code-step")).to_be_hidden()
    again.close()


SOCKET_URL = re.compile(r".*/socket\.io/.*")
BUSY = {"ok": False, "error": {"code": "internal_error", "message": "服务器内部错误"}}


class BusyOnce:
    """A page's socket.io connections passed through, except that the second one's ``join``
    never reaches the server and is answered as a failing server would."""

    def __init__(self) -> None:
        self.sockets: list[tuple[Any, Any]] = []

    def __call__(self, ws: Any) -> None:
        server = ws.connect_to_server()
        n = len(self.sockets)
        self.sockets.append((ws, server))

        def from_page(message: Any) -> None:
            found = re.match(r'^42/visit,(\d+)\["join"', str(message))
            if found and n == 1:
                ws.send(f"43/visit,{found.group(1)}[{json.dumps(BUSY)}]")
                return
            server.send(message)

        ws.on_message(from_page)
        server.on_message(ws.send)

    def cut_first(self) -> None:
        ws, server = self.sockets[0]
        ws.close()
        server.close()


def test_a_reconnection_the_server_fails_to_enter_is_tried_again_and_keeps_the_token(
    live_server: LiveServer, browser_context: Any
) -> None:
    """The guest's connection drops in the lobby; entering again on the new connection gets
    a server error, not a refusal. The page tries again on a fresh connection and is back in
    the lobby with its token (it stayed 连接中断 for good, and dropped the token, so the
    petitioner needed a new code)."""
    with ThreadPoolExecutor(1) as pool:
        visit_id, code = pool.submit(
            asyncio.run, checked_in_visit(live_server, live_server.passwords)
        ).result()
    sockets = BusyOnce()
    page = browser_context.new_page()
    page.route_web_socket(SOCKET_URL, sockets)
    page.goto(f"{live_server.url}/join?visit={visit_id}")
    page.fill("#code-input", code)
    page.click("#code-submit")
    expect(page.locator("#lobby-step")).to_be_visible(timeout=30_000)
    token = page.evaluate(f"localStorage.getItem('vr-rejoin-{visit_id}')")
    assert token

    sockets.cut_first()
    expect(page.locator("#conn-state")).to_be_visible(timeout=10_000)
    expect(page.locator("#conn-state")).to_be_hidden(timeout=30_000)
    assert len(sockets.sockets) >= 3  # the failed one, then a fresh connection
    expect(page.locator("#lobby-step")).to_be_visible()
    renewed = page.evaluate(f"localStorage.getItem('vr-rejoin-{visit_id}')")
    assert renewed and renewed != token  # kept, and renewed by the server as it let us in
    page.close()


def test_a_guest_who_taps_leave_by_mistake_gets_back_in_with_reenter(
    live_server: LiveServer, chromium: Any
) -> None:
    """The judge admits the petitioner from the lobby (the button waits for the answer);
    the petitioner taps 离开, is told the visit goes on, and 重新进入 brings them back
    without a new code (the spent code would be refused)."""
    from tests.live import page_login

    with ThreadPoolExecutor(1) as pool:
        visit_id, code = pool.submit(
            asyncio.run, checked_in_visit(live_server, live_server.passwords)
        ).result()
    judge_ctx = chromium.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    judge = judge_ctx.new_page()
    page_login(judge, live_server, "judge", live_server.passwords["judge"], "/judge")
    judge.goto(f"{live_server.url}/call/{visit_id}")
    judge.wait_for_selector("body[data-joined='1']", timeout=30_000)
    guest_ctx = chromium.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    guest = guest_ctx.new_page()
    guest.goto(f"{live_server.url}/join?visit={visit_id}")
    guest.fill("#code-input", code)
    guest.click("#code-submit")
    expect(guest.locator("#lobby-step")).to_be_visible(timeout=30_000)
    judge.locator("#lobby-rows button", has_text="准许进入").click()
    expect(guest.locator("#call-step")).to_be_visible(timeout=30_000)
    guest.click("#leave")
    expect(guest.locator("#ended-text")).to_contain_text("接访仍在进行")
    guest.click("#reenter")
    guest.wait_for_selector("body[data-joined='1']", timeout=30_000)
    expect(guest.locator("#code-step")).to_be_hidden()
    expect(guest.locator("#ended-step")).to_be_hidden()
    judge_ctx.close()
    guest_ctx.close()

"""The guest's terminal keeps its rejoin token for the visit (issue 11 §4): in headless
Chromium, a new tab after the first was closed gets back in without a new code."""

from __future__ import annotations

import asyncio
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

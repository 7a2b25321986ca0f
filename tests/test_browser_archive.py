"""Headless Chromium in the archive: an archivist searches the recordings, opens a real one
(ffmpeg originals, composite, PocketSphinx transcript, signed manifest, full-text index),
plays it with range requests, seeks from the transcript and the notes, switches to an
original track, checks its integrity and exports a certified copy; the audit trail holds
the search, the opening and the playback."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from config.db import Database
from config.settings import Settings
from scheduler.models import Court, User
from tests.archive_fixtures import SENTENCE, add_visit, grammar_settings, record_visit
from tests.conftest import LiveServer, start_live_server, stop_live_server
from tests.helpers import wait_until

pytestmark = pytest.mark.browser

NUMBER = "（2026）京0108信88号"
NOTE = "信访人出示了判决书"
T = TypeVar("T")


@dataclass
class Archived:
    """A live server with one really recorded, processed visit."""

    server: LiveServer
    visit_id: str


def _in_thread(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end on its own event loop, off the test's thread (sync
    Playwright may own this thread's loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


async def _record(settings: Settings) -> str:
    """A visit from the demo's 海淀 court received by the demo judge of 一中院, recorded."""
    database = Database(settings)
    async with database.reader() as db:
        courts = {c.code: c.id for c in await db.scalars(select(Court))}
        judge = await db.scalar(select(User.id).where(User.username == "judge"))
    await database.dispose()
    visit_id = await add_visit(
        settings,
        court_id=courts["BJHD"],
        receiving_court_id=courts["BJ1Z"],
        judge_id=judge,
        number=NUMBER,
        petitioner="赵六",
        id_number="110101198001011234",
    )
    await record_visit(
        settings,
        visit_id,
        {
            "court_name": "北京市海淀区人民法院",
            "receiving_court_name": "北京市第一中级人民法院",
            "petition_number": NUMBER,
            "notes": [{"offset": 5.0, "author": "judge_a", "text": NOTE}],
        },
        seconds=10,
    )
    return visit_id


@pytest.fixture(scope="module")
def archived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archived]:
    """The demo server, its transcripts held to the test grammar, with one recording made
    by the real post-visit pipeline in its data dir."""
    folder = tmp_path_factory.mktemp("archive")
    settings = grammar_settings(Settings(data_dir=folder / "var"), folder)
    server = start_live_server(
        folder / "var",
        {
            "VRECEPTION_TRANSCRIBE_ENGINE": "pocketsphinx",
            "VRECEPTION_TRANSCRIBE_GRAMMAR": str(settings.transcribe_grammar),
        },
    )
    try:
        yield Archived(server=server, visit_id=_in_thread(_record(settings)))
    finally:
        stop_live_server(server)


def _login(page: Any, server: LiveServer, username: str) -> None:
    page.goto(server.url + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", server.passwords[username])
    page.click("#login-submit")


def _ready(page: Any) -> None:
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)


def _player(page: Any) -> dict[str, Any]:
    return dict(
        page.evaluate("""() => {
        const v = document.getElementById("player");
        return { t: v.currentTime, ready: v.readyState, src: v.currentSrc, paused: v.paused,
                 error: v.error && v.error.code };
    }""")
    )


def test_archivist_finds_and_plays_a_recording(
    archived: Archived, chromium: Any, artifacts: Path
) -> None:
    server, visit_id = archived.server, archived.visit_id
    ctx = chromium.new_context(locale="zh-CN", viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    media: list[tuple[str, int, str | None]] = []

    def seen(response: Any) -> None:
        if f"/recordings/{visit_id}/files/" in response.url:
            media.append((response.url, response.status, response.headers.get("content-range")))

    page.on("response", seen)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on(
        "console",
        lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
    )
    _login(page, server, "archivist")
    page.wait_for_url(server.url + "/archive", timeout=30_000)
    _ready(page)
    expect(page.locator("#audit-card")).to_be_visible()
    expect(page.locator("#courts-card")).to_be_visible()

    # search by the petition number: one result, the petitioner masked
    page.fill("#search-form input[name=number]", NUMBER)
    page.click("#search-submit")
    link = page.locator(f"#results a[data-visit-id='{visit_id}']")
    expect(link).to_be_visible(timeout=30_000)
    expect(page.locator("#result-rows tr")).to_have_count(1)
    row = page.locator(f"#result-rows tr[data-visit-id='{visit_id}']")
    expect(row).to_contain_text("赵*")
    expect(row).to_contain_text("一中院接访法官")
    expect(row).to_contain_text("已归档")
    expect(row).to_contain_text("已签名")
    assert "赵六" not in row.inner_text()
    expect(page.locator("#page-info")).to_contain_text("共 1 条")

    # words said: the matched line is shown with its time
    page.fill("#search-form input[name=q]", "district court")
    page.click("#search-submit")
    expect(page.locator("#result-rows .hits")).to_contain_text(SENTENCE, timeout=30_000)
    expect(page.locator("#results th.hits-col")).to_be_visible()
    page.screenshot(path=str(artifacts / "archive-search.png"), full_page=True)

    link.click()
    page.wait_for_url(f"{server.url}/archive/visits/{visit_id}", timeout=30_000)
    _ready(page)
    expect(page.locator("#page-msg")).not_to_have_class(re.compile("error"))
    expect(page.locator("#title")).to_contain_text(NUMBER)
    wait_until(lambda: _player(page)["ready"] >= 1, what="the composite's metadata")
    assert _player(page)["src"].endswith("/files/composite.mp4")

    # seek from the transcript: the sentence recognised about 2 s in
    line = page.locator("#transcript li", has_text=SENTENCE).first
    expect(line).to_be_visible()
    start = float(line.get_attribute("data-start") or "nan")
    assert 1.0 <= start <= 3.5, start
    line.click()
    wait_until(lambda: abs(_player(page)["t"] - start) < 0.5, what=f"currentTime ≈ {start}")
    expect(line).to_have_class(re.compile(r"\bcurrent\b"), timeout=10_000)
    expect(line.locator(".speaker")).to_contain_text("信访人")

    # seek from the judge's note, 5 s in
    note = page.locator("#notes li", has_text=NOTE)
    assert abs(float(note.get_attribute("data-start") or "nan") - 5.0) < 0.1
    note.click()
    wait_until(lambda: abs(_player(page)["t"] - 5.0) < 0.5, what="currentTime ≈ 5")
    page.evaluate("document.getElementById('player').pause()")
    page.screenshot(path=str(artifacts / "archive-playback.png"), full_page=True)
    # side by side on a wide screen, stacked on a narrow one
    video, words = (
        page.locator("#player").bounding_box(),
        page.locator("#transcript").bounding_box(),
    )
    assert words["x"] > video["x"] + video["width"] - 1, (video, words)
    page.set_viewport_size({"width": 420, "height": 900})
    video, words = (
        page.locator("#player").bounding_box(),
        page.locator("#transcript").bounding_box(),
    )
    assert words["y"] > video["y"] + video["height"] - 1, (video, words)
    page.screenshot(path=str(artifacts / "archive-playback-narrow.png"), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 1000})

    # the composite was fetched in ranges
    wait_until(
        lambda: any(
            url.endswith("/composite.mp4") and status == 206 and rng for url, status, rng in media
        ),
        what=f"a 206 answer for composite.mp4 (seen {media})",
    )

    # an original track, picked from the list, plays in the same player
    webm = page.eval_on_selector(
        "#source", "(s) => [...s.options].map((o) => o.value).find((v) => v.endsWith('.webm'))"
    )
    assert webm and webm.startswith("tracks/"), webm
    page.select_option("#source", webm)
    wait_until(
        lambda: _player(page)["ready"] >= 1 and _player(page)["src"].endswith(".webm"),
        what="the original's metadata",
    )
    assert _player(page)["error"] is None

    # integrity check, and a certified export downloaded with its hash shown
    page.click("#verify")
    expect(page.locator("#integrity")).to_have_text("核验通过", timeout=30_000)
    with page.expect_download(timeout=60_000) as download:
        page.click("#export")
    assert download.value.suggested_filename == f"visit-{visit_id}.zip"
    expect(page.locator("#summary-msg")).to_contain_text("SHA-256")

    # the audit trail: the search, the opening and the playback of this visit
    audit = page.request.get(
        server.url + "/api/v1/audit", params={"target_id": visit_id, "limit": 200}
    )
    assert audit.ok, audit.text()
    events = audit.json()["items"]
    actions = {e["action"] for e in events}
    assert {"recording.open", "recording.view", "recording.export"} <= actions, actions
    views = [e["detail"] for e in events if e["action"] == "recording.view"]
    assert any(v["file"] == "composite.mp4" for v in views), views
    searches = page.request.get(
        server.url + "/api/v1/audit",
        params={"action": "recording.search", "actor": "archivist", "limit": 200},
    ).json()["items"]
    assert any(e["detail"]["query"].get("number") == NUMBER for e in searches), searches

    # the audit section of the archive page filters by record and action, in sentences
    page.goto(server.url + "/archive")
    _ready(page)
    page.fill("#audit-form input[name=target_id]", visit_id)
    page.click("#audit-form button[type=submit]")
    rows = page.locator("#audit-rows")
    expect(rows).to_contain_text("archivist播放了录像文件 composite.mp4", timeout=30_000)
    expect(rows).to_contain_text("archivist打开了录像。")
    expect(rows).not_to_contain_text("检索了录像档案")
    page.select_option("#audit-form select[name=action]", label="导出核证副本")
    page.click("#audit-form button[type=submit]")
    expect(rows).to_contain_text("archivist导出了录像的核证副本", timeout=30_000)
    expect(rows).not_to_contain_text("播放了录像文件")
    assert not re.search(r"recording\.|visit\.", rows.inner_text())
    page.screenshot(path=str(artifacts / "archive-audit.png"), full_page=True)
    assert not problems, problems
    ctx.close()


def test_a_judge_searches_without_the_audit_trail(archived: Archived, chromium: Any) -> None:
    """Every staff role may open the archive; only archivists and admins see the trail.
    The demo judge received the visit, so finds it."""
    server = archived.server
    ctx = chromium.new_context(locale="zh-CN")
    page = ctx.new_page()
    _login(page, server, "judge")
    page.wait_for_url(server.url + "/judge", timeout=30_000)
    page.goto(server.url + "/archive")
    _ready(page)
    expect(page.locator(f"#results a[data-visit-id='{archived.visit_id}']")).to_be_visible()
    expect(page.locator("#audit-card")).to_be_hidden()
    expect(page.locator("#courts-card")).to_be_hidden()
    expect(page.locator("#search-msg")).not_to_have_class(re.compile("error"))
    page.goto(f"{server.url}/archive/visits/{archived.visit_id}#t=5.0")  # a hit's link
    _ready(page)
    wait_until(lambda: _player(page)["ready"] >= 1 and abs(_player(page)["t"] - 5.0) < 0.5)
    expect(page.locator("#export")).to_be_hidden()
    expect(page.locator("#downloads")).to_be_hidden()
    expect(page.locator("#transcript li")).not_to_have_count(0)
    ctx.close()

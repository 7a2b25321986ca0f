"""Correcting a transcript line in playback: the visit's judge or an archivist may; the
correction is kept beside the machine text with who and when, in a new signed revision (the
signed original untouched, `vreception verify` still passes and checks the revision), the
search index follows and the audit trail records it."""

from __future__ import annotations

import asyncio
import json
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from config.audit import AuditEvent
from config.db import Database, utcnow
from config.settings import Settings
from recorder.export import build_export
from recorder.manifest import load_signing_key, verify
from scheduler.models import Court, User
from tests.archive_fixtures import add_visit, judged_yesterday, signed_recording
from tests.conftest import MakeClient, start_live_server, stop_live_server
from tests.helpers import World, login
from web.cli import main as cli

LINES = [
    {"start": 3.0, "end": 6.0, "role": "petitioner", "text": "我对拆迁不尝款的数额不服"},
    {"start": 8.0, "end": 10.0, "role": "judge", "text": "请出示评估报告"},
]


async def _recording(settings: Settings, world: World) -> tuple[str, Path]:
    return await judged_yesterday(settings, world, "（2026）甲信101号", LINES)


async def _correct(client: Any, csrf: str, visit_id: str, line: int, text: str) -> Any:
    return await client.post(
        f"/api/v1/recordings/{visit_id}/transcript/{line}/corrections",
        json={"text": text},
        headers={"X-CSRF-Token": csrf},
    )


async def test_a_correction_keeps_the_machine_text_and_the_signature_and_signs_a_revision(
    make_client: MakeClient, migrated: Settings, world: World, tmp_path: Path
) -> None:
    visit_id, folder = await _recording(migrated, world)
    original = (folder / "transcript.json").read_bytes()
    judge = await make_client()
    csrf = await login(judge, "judge_a")
    resp = await _correct(judge, csrf, visit_id, 0, "我对拆迁补偿款的数额不服")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["revision"] == 1
    line = body["line"]
    assert line["text"] == "我对拆迁补偿款的数额不服"
    assert line["machine_text"] == "我对拆迁不尝款的数额不服"
    assert line["corrected_by"] and line["corrected_at"]

    # the signed original is untouched; the recording and its revision verify
    assert (folder / "transcript.json").read_bytes() == original
    check = verify(folder)
    assert check.ok, check.failed
    assert {"revisions/transcript-rev1.json", "revisions/transcript-rev1.txt"} <= set(check.checked)
    assert cli(["verify", str(folder)]) == 0
    revision = json.loads((folder / "revisions" / "transcript-rev1.json").read_text())
    assert revision["lines"][0]["machine_text"] == "我对拆迁不尝款的数额不服"
    case_file = (folder / "revisions" / "transcript-rev1.txt").read_text()
    assert "我对拆迁补偿款的数额不服" in case_file and "机器识别原文：我对拆迁不尝款" in case_file

    # playback shows the corrected text beside the machine text
    detail = await (await judge.get(f"/api/v1/recordings/{visit_id}")).json()
    assert detail["transcript_revision"] == 1 and detail["can_correct"] is True
    assert detail["lines"][0]["text"] == "我对拆迁补偿款的数额不服"
    assert detail["lines"][0]["machine_text"] == "我对拆迁不尝款的数额不服"
    assert detail["lines"][1].get("machine_text") is None

    # search finds the corrected words
    found = await (await judge.get("/api/v1/recordings", params={"q": "补偿款"})).json()
    assert [i["visit_id"] for i in found["items"]] == [visit_id]

    # an archivist corrects again: a second revision; both verify
    archivist = await make_client()
    acsrf = await login(archivist, "arch_a")
    again = await _correct(archivist, acsrf, visit_id, 1, "请出示房屋评估报告")
    assert again.status == 200 and (await again.json())["revision"] == 2
    assert verify(folder).ok
    rev2 = json.loads((folder / "revisions" / "transcript-rev2.json").read_text())
    assert [ln["text"] for ln in rev2["lines"]] == [
        "我对拆迁补偿款的数额不服",
        "请出示房屋评估报告",
    ]

    # the certified export carries the corrected case file beside the machine's, and verifies
    out = tmp_path / "export.zip"
    key = load_signing_key(migrated.data_dir)
    build_export(folder, out, key=key, actor="arch_a", at=utcnow(), tz=migrated.tz)
    assert verify(out).ok
    with zipfile.ZipFile(out) as z:
        top = z.namelist()[0].split("/")[0]
        corrected = z.read(f"{top}/case-file-corrected.txt").decode()
        machine = z.read(f"{top}/case-file.txt").decode()
    assert "【核验副本】" in corrected and "请出示房屋评估报告" in corrected
    assert "请出示房屋评估报告" not in machine

    database = Database(migrated)
    async with database.reader() as db:
        events = (
            await db.scalars(
                select(AuditEvent).where(
                    AuditEvent.target_id == visit_id, AuditEvent.action == "transcript.correct"
                )
            )
        ).all()
    await database.dispose()
    assert [(e.detail["line"], e.detail["revision"]) for e in events] == [(0, 1), (1, 2)]
    assert events[0].detail["machine_text"] == "我对拆迁不尝款的数额不服"


async def test_a_changed_revision_fails_verification(
    make_client: MakeClient, migrated: Settings, world: World
) -> None:
    visit_id, folder = await _recording(migrated, world)
    judge = await make_client()
    csrf = await login(judge, "judge_a")
    assert (await _correct(judge, csrf, visit_id, 1, "请出示评估报告原件")).status == 200
    path = folder / "revisions" / "transcript-rev1.txt"
    path.write_text(path.read_text().replace("原件", "复印件"))
    check = verify(folder)
    assert not check.ok
    assert check.failed == {"revisions/transcript-rev1.txt": "内容已被改动 (hash mismatch)"}
    (folder / "revisions" / "extra.txt").write_text("x")
    assert "revisions/extra.txt" in verify(folder).failed


async def test_only_the_visits_judge_or_an_archivist_may_correct(
    make_client: MakeClient, migrated: Settings, world: World
) -> None:
    visit_id, folder = await _recording(migrated, world)
    for username in ("op_a", "admin"):
        client = await make_client()
        csrf = await login(client, username)
        resp = await _correct(client, csrf, visit_id, 0, "改动")
        assert resp.status == 403, username
        detail = await (await client.get(f"/api/v1/recordings/{visit_id}")).json()
        assert detail.get("can_correct") in (False, None), username
    judge = await make_client()
    csrf = await login(judge, "judge_a")
    assert (await _correct(judge, csrf, visit_id, 9, "没有这一句")).status == 404
    unchanged = await _correct(judge, csrf, visit_id, 1, str(LINES[1]["text"]))
    assert unchanged.status == 409
    assert not (folder / "revisions").exists()


async def _demo_recording(settings: Settings) -> tuple[str, Path]:
    """A signed recording of a demo visit received by the demo judge."""
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
        number="（2026）京0108信99号",
        petitioner="赵六",
        id_number="110101198001011234",
    )
    return visit_id, await signed_recording(settings, visit_id, lines=list(LINES))


@pytest.mark.browser
def test_the_judge_corrects_a_line_in_playback_and_sees_the_machine_text_beside_it(
    tmp_path: Path, chromium: Any
) -> None:
    data_dir = tmp_path / "var"
    server = start_live_server(data_dir)
    try:
        with ThreadPoolExecutor(1) as pool:
            visit_id, folder = pool.submit(
                asyncio.run, _demo_recording(Settings(data_dir=data_dir))
            ).result()
        page = chromium.new_context(locale="zh-CN").new_page()
        page.goto(server.url + "/login")
        page.fill("input[name=username]", "judge")
        page.fill("input[name=password]", server.passwords["judge"])
        page.click("#login-submit")
        page.wait_for_url(lambda url: "/login" not in url, timeout=30_000)
        page.goto(f"{server.url}/archive/visits/{visit_id}")
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        first = page.locator("#transcript li[data-index='0']")
        first.locator("button.correct").click()
        first.locator("textarea").fill("我对拆迁补偿款的数额不服")
        first.locator("button[type=submit]").click()
        expect(first.locator(".text")).to_have_text("我对拆迁补偿款的数额不服")
        expect(first.locator(".corrected")).to_contain_text("原识别：我对拆迁不尝款的数额不服")
        assert verify(folder).ok
        page.reload()
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        expect(first.locator(".text")).to_have_text("我对拆迁补偿款的数额不服")
        expect(first.locator(".corrected")).to_contain_text("原识别")
        page.context.close()
    finally:
        stop_live_server(server)

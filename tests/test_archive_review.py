"""Defects a review of the archive found, each pinned: whole-file reads that escaped the
audit, deletion of tampered or sealed recordings and its record, missing transcript
revisions, sealed recordings on the audit trail, corrections before signing, stray ``.tmp``
files, ID-number and name leaks in search, stale exports, the export's file name, and
dates and findings as the pages show them."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import update

from config.db import Database, utcnow
from config.settings import Settings
from recorder.manifest import load_signing_key, sign_folder, verify
from recorder.models import Integrity, Recording, RecordingState
from recorder.retention import delete_media
from tests.archive_fixtures import judged_yesterday
from tests.conftest import MakeClient, start_live_server, stop_live_server
from tests.helpers import World, login
from tests.test_archive import _actions
from tests.test_corrections import _correct, _demo_recording
from web.handlers.exports import EXPORT_TTL_SECONDS

LINES = [
    {"start": 3.0, "end": 6.0, "role": "petitioner", "name": "张三丰", "text": "拆迁补偿款不到位"},
    {"start": 8.0, "end": 10.0, "role": "judge", "name": "李法官", "text": "请出示补偿协议"},
]


async def _recording(settings: Settings, world: World) -> tuple[str, Path]:
    return await judged_yesterday(settings, world, "（2026）甲信201号", LINES)


async def _set(settings: Settings, visit_id: str, **values: Any) -> None:
    database = Database(settings)
    async with database.writer() as db:
        await db.execute(update(Recording).where(Recording.visit_id == visit_id).values(**values))
    await database.dispose()


async def _row(settings: Settings, visit_id: str) -> Recording:
    database = Database(settings)
    async with database.reader() as db:
        row = await db.get(Recording, visit_id)
    await database.dispose()
    assert row is not None
    return row


EXPIRED = utcnow() - timedelta(days=366 * 40)  # the retention of any category has run out


# ------------------------------------------------------------------ 1. reads of a whole file


async def test_a_suffix_range_or_an_if_range_read_of_a_whole_file_is_audited(
    make_client: MakeClient, migrated: Settings, world: World
) -> None:
    visit_id, folder = await _recording(migrated, world)
    client = await make_client()
    await login(client, "arch_a")
    url = f"/api/v1/recordings/{visit_id}/files/composite.mp4"
    whole = (folder / "composite.mp4").read_bytes()

    async def fetches() -> int:
        return (await _actions(migrated, visit_id)).count("recording.fetch")

    seek = await client.get(url, headers={"Range": "bytes=100-"})
    assert seek.status == 206 and await fetches() == 0  # a player's seek
    suffix = await client.get(url, headers={"Range": "bytes=-999999999"})
    assert suffix.status == 206 and await suffix.read() == whole
    assert await fetches() == 1
    stale = await client.get(
        url, headers={"Range": "bytes=5-", "If-Range": "Wed, 21 Oct 2015 07:28:00 GMT"}
    )
    assert stale.status == 200 and await stale.read() == whole  # the range was ignored
    assert await fetches() == 2


# ------------------------------------------------------------------ 2, 4, 12. deletion


def test_the_deletion_record_holds_the_hash_of_the_file_removed(tmp_path: Path) -> None:
    folder = tmp_path / "rec"
    folder.mkdir()
    (folder / "composite.mp4").write_bytes(b"c" * 2048)
    key = load_signing_key(tmp_path / "data")
    sign_folder(folder, key)
    (folder / "composite.mp4").write_bytes(b"x" * 2048)  # changed before it was deleted
    record = delete_media(folder, actor="admin", reason="期满", key=key)
    assert (
        record["removed"][0]["sha256"]
        != json.loads((folder / "manifest.json").read_text())["files"]["composite.mp4"]
    )
    result = verify(folder)
    assert not result.ok and "composite.mp4" in result.failed  # still says it was changed


async def test_a_tampered_or_sealed_recording_is_not_deleted(
    make_client: MakeClient, migrated: Settings, world: World
) -> None:
    visit_id, folder = await _recording(migrated, world)
    await _set(migrated, visit_id, ended_at=EXPIRED)
    admin = await make_client()
    headers = {"X-CSRF-Token": await login(admin, "admin")}
    path = f"/api/v1/visits/{visit_id}/recording/delete"

    (folder / "composite.mp4").write_bytes(b"changed")
    refused = await admin.post(path, json={"reason": "保存期满"}, headers=headers)
    error = (await refused.json())["error"]
    assert refused.status == 409 and error["code"] == "integrity_failed", error
    assert "不能删除" in error["message"]
    assert (folder / "composite.mp4").read_bytes() == b"changed"  # the evidence stays
    row = await _row(migrated, visit_id)
    assert row.state is RecordingState.ready and row.integrity == Integrity.tampered.value
    assert "composite.mp4: 内容已被改动" in row.integrity_detail
    assert "hash mismatch" not in row.integrity_detail
    assert (await _actions(migrated, visit_id))[-1] == "recording.tampered"

    # the file put back: still refused while the row says tampered (check it again first)
    (folder / "composite.mp4").write_bytes(bytes(range(256)) * 64)
    again = await admin.post(path, json={"reason": "保存期满"}, headers=headers)
    assert again.status == 409 and (await again.json())["error"]["code"] == "integrity_failed"
    checked = await admin.post(f"/api/v1/recordings/{visit_id}/verify", headers=headers)
    assert (await checked.json())["integrity"] == "verified"

    sealed = await admin.post(
        f"/api/v1/recordings/{visit_id}/seal",
        json={"sealed": True, "reason": "涉及国家秘密"},
        headers=headers,
    )
    assert sealed.status == 200
    blocked = await admin.post(path, json={"reason": "保存期满"}, headers=headers)
    error = (await blocked.json())["error"]
    assert blocked.status == 409 and error["code"] == "sealed"
    assert error["message"] == "录像已封存，不能删除"
    assert (folder / "composite.mp4").exists()

    await admin.post(
        f"/api/v1/recordings/{visit_id}/seal",
        json={"sealed": False, "reason": "解除"},
        headers=headers,
    )
    done = await admin.post(path, json={"reason": "保存期满"}, headers=headers)
    assert done.status == 200, await done.text()
    assert (await done.json())["state"] == "deleted" and verify(folder).ok


async def test_the_retention_date_is_the_courts_day(
    make_client: MakeClient, migrated: Settings, world: World
) -> None:
    visit_id, _ = await _recording(migrated, world)
    # 20:00 UTC is the next day in the court's zone (UTC+8)
    ended = datetime.combine(utcnow().date() - timedelta(days=1), clock(20, 0), UTC)
    await _set(migrated, visit_id, ended_at=ended)
    admin = await make_client()
    headers = {"X-CSRF-Token": await login(admin, "admin")}
    early = await admin.post(
        f"/api/v1/visits/{visit_id}/recording/delete", json={"reason": "清理"}, headers=headers
    )
    error = (await early.json())["error"]
    assert early.status == 409 and error["code"] == "retention_running"
    local = ended.astimezone(migrated.tz)
    until = local.replace(year=local.year + migrated.retention_years)
    assert local.date() != ended.date()
    assert error["message"] == f"保存期限至 {until:%Y-%m-%d}，期满前不能删除"


async def test_the_playback_page_shows_a_finding_in_chinese(
    make_client: MakeClient, migrated: Settings, world: World
) -> None:
    visit_id, folder = await _recording(migrated, world)
    (folder / "composite.mp4").write_bytes(b"changed")
    client = await make_client()
    csrf = await login(client, "arch_a")
    checked = await client.post(
        f"/api/v1/recordings/{visit_id}/verify", headers={"X-CSRF-Token": csrf}
    )
    assert (await checked.json())["integrity"] == "tampered"
    detail = await (await client.get(f"/api/v1/recordings/{visit_id}")).json()
    assert detail["integrity_detail"] == "composite.mp4: 内容已被改动"


# ------------------------------------------------------------------ 3. transcript revisions


async def test_a_missing_transcript_revision_fails_verification_and_the_export(
    make_client: MakeClient, migrated: Settings, world: World, tmp_path: Path
) -> None:
    visit_id, folder = await _recording(migrated, world)
    judge = await make_client()
    csrf = await login(judge, "judge_a")
    assert (await _correct(judge, csrf, visit_id, 0, "拆迁补偿款一直不到位")).status == 200
    assert (await _correct(judge, csrf, visit_id, 1, "请出示房屋补偿协议")).status == 200
    revisions = folder / "revisions"
    assert verify(folder).ok and verify(folder, revisions=2).ok
    saved = tmp_path / "revisions"
    shutil.copytree(revisions, saved)

    def restore() -> None:
        shutil.rmtree(revisions, ignore_errors=True)
        shutil.copytree(saved, revisions)

    # the newest revision removed: the signed pointer names it
    for path in revisions.glob("transcript-rev2.*"):
        path.unlink()
    result = verify(folder)
    assert result.failed == {"revisions/transcript-rev2.SHA256SUMS": "文件缺失 (missing)"}
    # and with the pointer: the revisions left say there is one
    (revisions / "transcript-latest.SHA256SUMS").unlink()
    (revisions / "transcript-latest.SHA256SUMS.sig").unlink()
    result = verify(folder)
    assert not result.ok and "revisions/transcript-latest.SHA256SUMS" in result.failed
    restore()
    # an older one removed
    for path in revisions.glob("transcript-rev1.*"):
        path.unlink()
    result = verify(folder)
    assert result.failed == {
        "revisions/transcript-rev1.SHA256SUMS": "更正版本缺失 (revision missing)"
    }
    # all of them removed: the folder cannot tell, the database can
    shutil.rmtree(revisions)
    assert verify(folder).ok
    assert "revisions/transcript-rev2.SHA256SUMS" in verify(folder, revisions=2).failed
    archivist = await make_client()
    acsrf = await login(archivist, "arch_a")
    refused = await archivist.post(
        f"/api/v1/recordings/{visit_id}/exports",
        json={"reason": "调卷"},
        headers={"X-CSRF-Token": acsrf},
    )
    assert refused.status == 409 and (await refused.json())["error"]["code"] == "integrity_failed"
    # 核验完整性 asks the database too, and says what it found in Chinese alone
    checked = await archivist.post(
        f"/api/v1/recordings/{visit_id}/verify", headers={"X-CSRF-Token": acsrf}
    )
    finding = await checked.json()
    assert checked.status == 200 and finding["integrity"] == "tampered", finding
    assert "revisions/transcript-rev2.SHA256SUMS" in finding["failed"]
    assert "(" not in finding["detail"] and "(" not in repr(finding["failed"])
    restore()
    made = await archivist.post(
        f"/api/v1/recordings/{visit_id}/exports",
        json={"reason": "调卷"},
        headers={"X-CSRF-Token": acsrf},
    )
    assert made.status == 201, await made.text()


# ------------------------------------------------------------------ 5. the audit trail


async def test_archivists_do_not_see_the_audit_events_of_a_sealed_recording(
    make_client: MakeClient, migrated: Settings, world: World
) -> None:
    visit_id, _ = await _recording(migrated, world)
    judge = await make_client()
    assert (await _correct(judge, await login(judge, "judge_a"), visit_id, 0, "改正")).status
    admin = await make_client()
    await admin.post(
        f"/api/v1/recordings/{visit_id}/seal",
        json={"sealed": True, "reason": "涉及国家秘密"},
        headers={"X-CSRF-Token": await login(admin, "admin")},
    )
    archivist = await make_client()
    await login(archivist, "arch_a")

    async def actions(client: Any) -> list[str]:
        page = await (await client.get("/api/v1/audit", params={"target_id": visit_id})).json()
        return [e["action"] for e in page["items"]]

    assert {"recording.sealed", "transcript.correct"} <= set(await actions(admin))
    seen = await actions(archivist)
    assert not [a for a in seen if a.startswith(("recording.", "transcript."))], seen
    everything = await (await archivist.get("/api/v1/audit")).json()
    assert "涉及国家秘密" not in json.dumps(everything, ensure_ascii=False)


# ------------------------------------------------------------------ 6. corrections


async def test_a_recording_not_yet_signed_for_good_cannot_be_corrected(
    make_client: MakeClient, migrated: Settings, world: World
) -> None:
    visit_id, folder = await _recording(migrated, world)
    await _set(migrated, visit_id, state=RecordingState.processing)
    judge = await make_client()
    csrf = await login(judge, "judge_a")
    refused = await _correct(judge, csrf, visit_id, 0, "拆迁补偿款一直不到位")
    error = (await refused.json())["error"]
    assert refused.status == 409 and error["code"] == "not_ready" and "签名" in error["message"]
    assert not (folder / "revisions").exists()
    detail = await (await judge.get(f"/api/v1/recordings/{visit_id}")).json()
    assert detail["can_correct"] is False
    await _set(migrated, visit_id, state=RecordingState.ready)
    assert (await _correct(judge, csrf, visit_id, 0, "拆迁补偿款一直不到位")).status == 200


# ------------------------------------------------------------------ 7. temporary files


def test_only_the_pipelines_own_temporary_files_are_ignored(tmp_path: Path) -> None:
    folder = tmp_path / "rec"
    folder.mkdir()
    (folder / "composite.mp4").write_bytes(b"c" * 100)
    (folder / "recording.json").write_text("{}")
    (folder / "recording.json.tmp").write_text("{")  # a save cut by a crash before signing
    sign_folder(folder, load_signing_key(tmp_path / "data"))
    assert not (folder / "recording.json.tmp").exists()
    (folder / "revisions").mkdir()
    (folder / "tracks").mkdir()
    for name in (
        "composite.mp4.tmp",
        "SHA256SUMS.tmp",
        "revisions/transcript-rev1.txt.tmp",
        "tracks/judge-video-1-repaired.webm.4242-0a1b2c3d.tmp",  # a repair cut by a crash
    ):
        (folder / name).write_bytes(b"half written")
    assert verify(folder).ok
    for name in ("hidden.tmp", "recording.json.tmp", "revisions/notes.tmp"):
        (folder / name).write_bytes(b"x")
        result = verify(folder)
        assert result.failed == {name: "不在清单中 (not in the manifest)"}, name
        (folder / name).unlink()


# ------------------------------------------------------------------ 8, 9. search


async def test_search_by_id_number_reveals_no_masked_digit_nor_the_petitioners_name(
    make_client: MakeClient, migrated: Settings, world: World
) -> None:
    visit_id, _ = await _recording(migrated, world)
    client = await make_client()
    await login(client, "arch_a")
    for tail, found in (("1234", True), ("071234", True), ("3071234", None), ("1101", False)):
        resp = await client.get("/api/v1/recordings", params={"id_tail": tail})
        if found is None:
            assert resp.status == 422, tail
            continue
        items = (await resp.json())["items"]
        assert [i["visit_id"] for i in items] == ([visit_id] if found else []), tail
    full = await client.get("/api/v1/recordings", params={"id_tail": "110101199003071234"})
    assert [i["visit_id"] for i in (await full.json())["items"]] == [visit_id]
    part = await client.get("/api/v1/recordings", params={"id_tail": "10101199003071234"})
    assert part.status == 422

    hits = (await (await client.get("/api/v1/recordings", params={"q": "补偿"})).json())["items"]
    speakers = {h["role"]: h["speaker"] for h in hits[0]["hits"]}
    assert speakers == {"petitioner": "张**", "judge": "李法官"}


# ------------------------------------------------------------------ 10, 11. exports


async def _export(client: Any, csrf: str, visit_id: str) -> dict[str, Any]:
    made = await client.post(
        f"/api/v1/recordings/{visit_id}/exports",
        json={"reason": "调卷"},
        headers={"X-CSRF-Token": csrf},
    )
    body: dict[str, Any] = await made.json()
    assert made.status == 201, body
    return body


async def test_an_export_has_one_name_and_does_not_outlive_its_day_or_its_recording(
    make_client: MakeClient, migrated: Settings, world: World, tmp_path: Path
) -> None:
    visit_id, _ = await _recording(migrated, world)
    client = await make_client()
    csrf = await login(client, "arch_a")
    exports = migrated.data_dir / "exports"

    body = await _export(client, csrf, visit_id)
    name = f"visit-{visit_id}.zip"
    assert body["file"] == name
    got = await client.get(body["url"])
    assert got.status == 200
    assert got.headers["Content-Disposition"] == f'attachment; filename="{name}"'
    zipped = tmp_path / name
    zipped.write_bytes(await got.read())
    with zipfile.ZipFile(zipped) as z:
        verify_txt = z.read(f"visit-{visit_id}/VERIFY.txt").decode()
    assert f"vreception verify {name}" in verify_txt

    # a day old: refused and removed
    token = body["url"].rsplit("/", 1)[1]
    old = time.time() - EXPORT_TTL_SECONDS - 60
    os.utime(exports / f"{token}.zip", (old, old))
    stale = await client.get(body["url"])
    assert stale.status == 404 and "过期" in (await stale.json())["error"]["message"]
    assert not (exports / f"{token}.zip").exists() and not (exports / f"{token}.json").exists()

    # its recording deleted: refused and removed
    body = await _export(client, csrf, visit_id)
    token = body["url"].rsplit("/", 1)[1]
    await _set(migrated, visit_id, state=RecordingState.deleted)
    gone = await client.get(body["url"])
    assert gone.status == 404
    assert not (exports / f"{token}.zip").exists() and not (exports / f"{token}.json").exists()


@pytest.mark.browser
def test_the_playback_page_says_why_a_check_failed_in_chinese_alone(
    tmp_path: Path, chromium: Any
) -> None:
    data_dir = tmp_path / "var"
    server = start_live_server(data_dir)
    try:
        with ThreadPoolExecutor(1) as pool:
            visit_id, folder = pool.submit(
                asyncio.run, _demo_recording(Settings(data_dir=data_dir))
            ).result()
        (folder / "composite.mp4").write_bytes(b"changed")
        page = chromium.new_context(locale="zh-CN").new_page()
        page.goto(server.url + "/login")
        page.fill("input[name=username]", "judge")
        page.fill("input[name=password]", server.passwords["judge"])
        page.click("#login-submit")
        page.wait_for_url(lambda url: "/login" not in url, timeout=30_000)
        page.goto(f"{server.url}/archive/visits/{visit_id}")
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        page.click("#verify")
        expect(page.locator("#summary-msg")).to_have_text(
            "发现不一致：composite.mp4（内容已被改动）"
        )
        expect(page.locator("#integrity")).to_have_attribute("title", "composite.mp4: 内容已被改动")
        page.context.close()
    finally:
        stop_live_server(server)

"""Retention: a legal hold blocks deletion; only admins delete, only after the category's
retention period; deletion removes the media, keeps the signed proof and a deletion record,
and is audited."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from config.audit import AuditEvent
from config.db import Database, utcnow
from config.settings import Settings
from recorder.manifest import load_signing_key, sign_folder, verify
from recorder.models import Recording
from tests.archive_fixtures import ready_row
from tests.conftest import MakeClient
from tests.helpers import login


async def _ready_recording(settings: Settings, visit_id: str) -> Path:
    folder = settings.resolved_recordings_dir / visit_id
    (folder / "tracks").mkdir(parents=True)
    (folder / "tracks" / "petitioner-camera-1.webm").write_bytes(b"v" * 4096)
    (folder / "composite.mp4").write_bytes(b"c" * 2048)
    (folder / "transcript.txt").write_text("信访人：……\n")
    sign_folder(folder, load_signing_key(settings.data_dir), {"visit_id": visit_id})
    async with Database(settings).writer() as db:
        db.add(ready_row(visit_id, folder, utcnow() - timedelta(hours=1)))
    return folder


async def test_hold_and_deletion_rules(
    make_client: MakeClient, visit: dict[str, Any], migrated: Settings
) -> None:
    folder = await _ready_recording(migrated, visit["id"])
    path = f"/api/v1/visits/{visit['id']}/recording"
    judge = await make_client()
    judge_csrf = await login(judge, "judge_a")
    seen = await (await judge.get(path)).json()
    assert seen["state"] == "ready" and seen["legal_hold"] is False
    assert seen["retain_until"][:4] == str(utcnow().year + migrated.retention_years)
    refused = await judge.post(
        path + "/delete", json={"reason": "过期"}, headers={"X-CSRF-Token": judge_csrf}
    )
    assert refused.status == 403

    admin = await make_client()
    headers = {"X-CSRF-Token": await login(admin, "admin")}
    early = await admin.post(path + "/delete", json={"reason": "清理"}, headers=headers)
    assert early.status == 409 and (await early.json())["error"]["code"] == "retention_running"

    async with Database(migrated).writer() as db:  # 31 years later
        await db.execute(
            update(Recording)
            .where(Recording.visit_id == visit["id"])
            .values(ended_at=utcnow() - timedelta(days=366 * (migrated.retention_years + 1)))
        )
    held = await admin.post(
        path + "/hold", json={"hold": True, "reason": "案件再审中"}, headers=headers
    )
    assert (await held.json())["legal_hold"] is True
    blocked = await admin.post(path + "/delete", json={"reason": "期满"}, headers=headers)
    assert blocked.status == 409 and (await blocked.json())["error"]["code"] == "legal_hold"
    assert (folder / "composite.mp4").exists()

    lifted = await admin.post(
        path + "/hold", json={"hold": False, "reason": "再审结束"}, headers=headers
    )
    assert (await lifted.json())["legal_hold"] is False
    done = await admin.post(path + "/delete", json={"reason": "保存期满"}, headers=headers)
    assert done.status == 200, await done.text()
    assert (await done.json())["state"] == "deleted"
    left = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert left == [
        "SHA256SUMS",
        "SHA256SUMS.sig",
        "deletion.json",
        "deletion.json.sig",
        "manifest.json",
        "public-key.pem",
    ]
    record = json.loads((folder / "deletion.json").read_text())
    assert record["deleted_by"] == "admin" and record["reason"] == "保存期满"
    assert {r["file"] for r in record["removed"]} == {
        "tracks/petitioner-camera-1.webm",
        "composite.mp4",
        "transcript.txt",
    }
    assert all(len(r["sha256"]) == 64 for r in record["removed"])
    # the proof still verifies: what was is signed, and what went is named as removed by
    # a deletion record signed with the same key (not reported as missing, or tampered)
    result = verify(folder)
    assert result.ok, result.failed
    assert set(result.removed) == {r["file"] for r in record["removed"]}
    # a deletion record changed afterwards counts for nothing: the files are missing again
    forged = (folder / "deletion.json").read_text().replace("保存期满", "误删")
    (folder / "deletion.json").write_text(forged)
    bad = verify(folder)
    assert not bad.ok and {"deletion.json", "composite.mp4"} <= set(bad.failed)
    (folder / "deletion.json").write_text(forged.replace("误删", "保存期满"))
    again = await admin.post(path + "/delete", json={"reason": "再删"}, headers=headers)
    assert again.status == 409

    async with Database(migrated).reader() as db:
        actions = (
            await db.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.target_id == visit["id"], AuditEvent.action.like("recording.%"))
                .order_by(AuditEvent.id)
            )
        ).all()
    assert actions == ["recording.hold", "recording.hold_lifted", "recording.deleted"]

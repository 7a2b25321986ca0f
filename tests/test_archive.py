"""The archive's API: search by every criterion (Chinese full text included), access rules
(table-driven), sealing, range requests, path traversal, certified export, and the audit
trail of every search, view, download and export."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from config.audit import AuditEvent
from config.db import Database, utcnow
from config.settings import Settings
from tests.archive_fixtures import add_visit, signed_recording
from tests.conftest import MakeClient
from tests.helpers import World, login


async def _actions(settings: Settings, visit_id: str | None = None) -> list[str]:
    database = Database(settings)
    async with database.reader() as db:
        stmt = select(AuditEvent.action).where(AuditEvent.action.like("recording.%"))
        if visit_id:
            stmt = stmt.where(AuditEvent.target_id == visit_id)
        rows = (await db.scalars(stmt.order_by(AuditEvent.id))).all()
    await database.dispose()
    return list(rows)


@pytest.fixture
async def archive(migrated: Settings, world: World) -> dict[str, Any]:
    """Three recorded visits: two from basic_a received by judge_a (mid_a), one from
    basic_b received by judge_b (mid_b), with transcripts and notes in Chinese."""
    c, u = world.courts, world.users
    now = utcnow()
    made: dict[str, Any] = {}
    specs = [
        ("a1", "basic_a", "mid_a", "judge_a", "（2026）甲信001号", "张三丰", "110101199003071234",
         [{"start": 3.0, "end": 6.0, "role": "petitioner",
           "text": "我对拆迁补偿款的数额不服，要求重新评估"},
          {"start": 8.0, "end": 10.0, "role": "judge", "text": "请出示评估报告 report 2026"}],
         [{"offset": 12.0, "author": "judge_a", "text": "信访人提交了补偿协议复印件"}], 3),
        ("a2", "basic_a", "mid_a", "judge_a", "（2026）甲信002号", "张小明", "110101198501015678",
         [{"start": 2.0, "end": 4.0, "role": "petitioner", "text": "工资拖欠问题一直没有解决"}],
         [], 30),
        ("b1", "basic_b", "mid_b", "judge_b", "（2026）乙信001号", "王五", "220202197707079999",
         [{"start": 1.0, "end": 2.0, "role": "petitioner", "text": "补偿款至今未到账"}],
         [], 400),
    ]  # fmt: skip
    for key, court, receiving, judge, number, name, id_no, lines, notes, days in specs:
        visit_id = await add_visit(
            migrated,
            court_id=c[court],
            receiving_court_id=c[receiving],
            judge_id=u[judge],
            number=number,
            petitioner=name,
            id_number=id_no,
            starts_at=now - timedelta(days=days),
        )
        folder = await signed_recording(
            migrated, visit_id, started_at=now - timedelta(days=days), lines=lines, notes=notes
        )
        made[key] = {"id": visit_id, "number": number, "folder": folder}
    return made


async def _search(client: Any, **params: Any) -> dict[str, Any]:
    resp = await client.get("/api/v1/recordings", params=params)
    body = await resp.json()
    assert resp.status == 200, body
    return dict(body)


async def test_search_by_every_criterion(
    make_client: MakeClient, archive: dict[str, Any], migrated: Settings, world: World
) -> None:
    admin = await make_client()
    await login(admin, "admin")
    ids = {k: v["id"] for k, v in archive.items()}

    async def found(**params: Any) -> list[str]:
        return [i["visit_id"] for i in (await _search(admin, **params))["items"]]

    everything = await _search(admin)
    assert everything["total"] == 3
    assert [i["visit_id"] for i in everything["items"]] == [ids["a1"], ids["a2"], ids["b1"]]
    first = everything["items"][0]
    assert first["petitioner"] == "张**" and first["petitioner_id"] == "1101**********1234"
    assert first["court_name"] == "甲市某区人民法院" and first["judge_name"] == "judge_a"
    assert first["integrity"] == "signed" and first["state"] == "ready"
    assert first["duration_seconds"] == 1200.0

    assert await found(number="（2026）甲信002号") == [ids["a2"]]
    assert await found(number="（2026）甲信") == []  # the number is matched exactly
    assert await found(petitioner="张") == [ids["a1"], ids["a2"]]
    assert await found(petitioner="张三丰") == [ids["a1"]]
    assert await found(id_tail="5678") == [ids["a2"]]
    assert await found(id_tail="9999") == [ids["b1"]]
    assert await found(court_id=world.courts["mid_a"]) == [ids["a1"], ids["a2"]]
    assert await found(court_id=world.courts["mid_a"], include_below="false") == [
        ids["a1"],
        ids["a2"],
    ]  # received there
    assert await found(court_id=world.courts["basic_b"]) == [ids["b1"]]
    assert await found(court_id=world.courts["high"]) == [ids["a1"], ids["a2"], ids["b1"]]
    assert await found(judge="judge_b") == [ids["b1"]]
    today = utcnow().date()
    assert await found(since=str(today - timedelta(days=10))) == [ids["a1"]]
    assert await found(
        since=str(today - timedelta(days=60)), until=str(today - timedelta(days=20))
    ) == [ids["a2"]]
    assert await found(state="ready", sort="started_at") == [ids["b1"], ids["a2"], ids["a1"]]
    assert await found(sort="number") == [ids["b1"], ids["a1"], ids["a2"]]  # 乙 < 甲
    page = await _search(admin, limit=1, offset=1)
    assert page["total"] == 3 and [i["visit_id"] for i in page["items"]] == [ids["a2"]]

    # words said: Chinese phrases, a pair, a single character, Latin words and numbers, notes
    assert await found(q="补偿款") == [ids["a1"], ids["b1"]]
    assert await found(q="拆迁补偿") == [ids["a1"]]
    assert await found(q="补偿 未到账") == [ids["b1"]]
    assert await found(q="评估报告") == [ids["a1"]]
    assert await found(q="工资") == [ids["a2"]]
    assert await found(q="欠") == [ids["a2"]]
    assert await found(q="REPORT") == [ids["a1"]]
    assert await found(q="2026") == [ids["a1"]]
    assert await found(q="复印件") == [ids["a1"]]  # a note
    assert await found(q="补款") == []  # not adjacent anywhere
    hits = (await _search(admin, q="补偿"))["items"][0]["hits"]
    assert [(h["kind"], h["start"]) for h in hits] == [("line", 3.0), ("note", 12.0)]

    assert everything["more"] is False

    # every plan a words search may take finds the same pages; the count stops at its cap
    import web.archive
    from web.archive import Plan

    plans = [
        Plan(),
        Plan(count_exists=True, page_exists=True),
        Plan(count_exists=True, page_exists=True, walk=True),
        Plan(count_exists=False, page_exists=True, walk=True),
        Plan(count_exists=True, page_exists=False),
    ]
    for chosen in plans:

        async def fixed(*_: Any, chosen: Plan = chosen) -> Plan:
            return chosen

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(web.archive, "plan", fixed)
            patch.setattr(web.archive, "COUNT_CAP", 1)
            walked = await _search(admin, q="补偿款")
            assert [i["visit_id"] for i in walked["items"]] == [ids["a1"], ids["b1"]], chosen
            assert walked["total"] == 1 and walked["more"] is True
            assert walked["items"][0]["hits"][0]["start"] == 3.0
            assert await found(q="补偿 未到账") == [ids["b1"]]
            assert await found(q="欠 工资") == [ids["a2"]]
            assert await found(q="补偿", sort="started_at") == [ids["b1"], ids["a1"]]
            archivist = await make_client()
            await login(archivist, "arch_a")
            mine = await _search(archivist, q="补偿")
            assert [i["visit_id"] for i in mine["items"]] == [ids["a1"]], chosen

    bad = await admin.get("/api/v1/recordings", params={"q": "，。！"})
    assert bad.status == 422
    assert "没有可检索的文字" in (await bad.json())["error"]["details"][0]["message"]
    bad = await admin.get("/api/v1/recordings", params={"id_tail": "12"})
    assert bad.status == 422
    bad = await admin.get("/api/v1/recordings", params={"sort": "password"})
    assert bad.status == 422
    searches = await _actions(migrated)
    assert searches.count("recording.search") >= 20


# ------------------------------------------------------------------ access, table-driven

Y, N = True, False
# role (user) × relation of the visit to them → may they: search, open, stream, download,
# export, seal. The visit: booked by basic_a, received at mid_a by judge_a.
ACCESS = [
    # user        relation                      search open stream download export seal
    ("admin", "everywhere", Y, Y, Y, Y, Y, Y),
    ("arch_a", "court below their own", Y, Y, Y, Y, Y, N),
    ("arch_high", "two courts below", Y, Y, Y, Y, Y, N),
    ("arch_b", "sibling branch", N, N, N, N, N, N),
    ("judge_a", "received it", Y, Y, Y, N, N, N),
    ("judge_a2", "same court, not theirs", N, N, N, N, N, N),
    ("judge_b", "other court", N, N, N, N, N, N),
    ("op_a", "booked by their court", Y, Y, Y, N, N, N),
    ("op_b", "other basic court", N, N, N, N, N, N),
]
ACTIONS = ("search", "open", "stream", "download", "export", "seal")


async def _extra_users(migrated: Settings, world: World) -> None:
    from scheduler.models import Role
    from tests.helpers import add_staff

    database = Database(migrated)
    async with database.writer() as db:
        await add_staff(db, world, "judge_a2", Role.judge, "mid_a")
        await add_staff(db, world, "arch_b", Role.archivist, "mid_b")
    await database.dispose()


async def _attempt(client: Any, csrf: str, action: str, visit: dict[str, Any]) -> bool:
    """Try ``action`` on the visit's recording: True if allowed (2xx), False if refused
    (403/404); any other answer fails the test."""
    base = f"/api/v1/recordings/{visit['id']}"
    headers = {"X-CSRF-Token": csrf}
    if action == "search":
        body = await _search(client, number=visit["number"])
        return bool([i for i in body["items"] if i["visit_id"] == visit["id"]])
    if action == "open":
        resp = await client.get(base)
    elif action == "stream":
        resp = await client.get(base + "/files/composite.mp4", headers={"Range": "bytes=0-9"})
    elif action == "download":
        resp = await client.get(base + "/files/composite.mp4", params={"download": "1"})
    elif action == "export":
        resp = await client.post(base + "/exports", json={"reason": "入卷"}, headers=headers)
    else:
        resp = await client.post(
            base + "/seal", json={"sealed": True, "reason": "依法封存"}, headers=headers
        )
        if resp.status == 200:  # undo, so the next rows see the same state
            undo = await client.post(
                base + "/seal", json={"sealed": False, "reason": "测试还原"}, headers=headers
            )
            assert undo.status == 200
    assert resp.status in (200, 201, 206, 403, 404), (action, resp.status, await resp.text())
    return resp.status < 300


async def test_access_rules(
    make_client: MakeClient, archive: dict[str, Any], migrated: Settings, world: World
) -> None:
    await _extra_users(migrated, world)
    visit = archive["a1"]
    for username, relation, *expected in ACCESS:
        client = await make_client()
        csrf = await login(client, username)
        got = [await _attempt(client, csrf, action, visit) for action in ACTIONS]
        assert got == expected, f"{username} ({relation}): {dict(zip(ACTIONS, got, strict=True))}"

    # sealed: admins alone see it, everywhere in the archive
    admin = await make_client()
    admin_csrf = await login(admin, "admin")
    sealed = await admin.post(
        f"/api/v1/recordings/{visit['id']}/seal",
        json={"sealed": True, "reason": "涉及国家秘密"},
        headers={"X-CSRF-Token": admin_csrf},
    )
    assert sealed.status == 200 and (await sealed.json())["sealed"] is True
    for username in ("arch_a", "arch_high", "judge_a", "op_a"):
        client = await make_client()
        csrf = await login(client, username)
        got = [await _attempt(client, csrf, a, visit) for a in ("search", "open", "stream")]
        assert got == [N, N, N], username
        hidden = await client.get(f"/api/v1/visits/{visit['id']}/recording")
        assert hidden.status == 404, username
    assert [await _attempt(admin, admin_csrf, a, visit) for a in ("search", "open")] == [Y, Y]
    detail = await (await admin.get(f"/api/v1/recordings/{visit['id']}")).json()
    assert detail["item"]["sealed"] is True and detail["seal_reason"] == "涉及国家秘密"
    twice = await admin.post(
        f"/api/v1/recordings/{visit['id']}/seal",
        json={"sealed": True, "reason": "再次封存"},
        headers={"X-CSRF-Token": admin_csrf},
    )
    assert twice.status == 409
    actions = await _actions(migrated, visit["id"])
    assert actions.count("recording.sealed") == 2  # the table's admin row, and this one
    assert actions.count("recording.unsealed") == 1


# ------------------------------------------------------------------ files


async def test_range_requests_and_path_traversal(
    make_client: MakeClient, archive: dict[str, Any], migrated: Settings
) -> None:
    from yarl import URL

    client = await make_client()
    await login(client, "arch_a")
    visit = archive["a1"]
    base = f"/api/v1/recordings/{visit['id']}/files/"
    whole = (visit["folder"] / "composite.mp4").read_bytes()
    full = await client.get(base + "composite.mp4")
    assert full.status == 200 and await full.read() == whole
    assert full.headers["Accept-Ranges"] == "bytes"
    assert full.headers["Content-Type"] == "video/mp4"
    part = await client.get(base + "composite.mp4", headers={"Range": "bytes=100-199"})
    assert part.status == 206
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(whole)}"
    assert await part.read() == whole[100:200]
    tail = await client.get(base + "composite.mp4", headers={"Range": "bytes=-10"})
    assert tail.status == 206 and await tail.read() == whole[-10:]
    beyond = await client.get(
        base + "composite.mp4", headers={"Range": f"bytes={len(whole) + 10}-"}
    )
    assert beyond.status == 416
    original = await client.get(base + "tracks/petitioner-camera-1.webm")
    assert original.status == 200 and original.headers["Content-Type"] == "video/webm"

    (migrated.data_dir / "outside.txt").write_text("SECRET-OUTSIDE")
    attempts = [
        "../outside.txt",
        "../../outside.txt",
        "tracks/../../outside.txt",
        "..%2F..%2Foutside.txt",
        "%2e%2e/%2e%2e/outside.txt",
        "..%252F..%252Foutside.txt",
        "tracks/..%2F..%2F..%2Fsecret.key",
        "/etc/passwd",
        "%2Fetc%2Fpasswd",
        "composite.mp4%00.txt",
        "composite.mp4/..",
        ".",
        "..",
        "tracks",
        "missing.mp4",
    ]
    for name in attempts:
        url = URL(f"{base}{name}", encoded=True)
        resp = await client.get(url)
        body = await resp.read()
        assert resp.status in (400, 404), (name, resp.status)
        assert b"SECRET-OUTSIDE" not in body and b"root:" not in body, name
    for raw in ("..%2F..%2Foutside.txt", "x" * 32, "../" + "0" * 32):
        resp = await client.get(URL(f"/api/v1/recordings/exports/{raw}", encoded=True))
        assert resp.status in (400, 404), raw
    other = await client.get(
        URL(f"/api/v1/recordings/{archive['b1']['id']}/files/composite.mp4", encoded=True)
    )
    assert other.status == 404  # out of this archivist's reach


async def test_audit_trail_of_reads_and_no_route_edits_it(
    make_client: MakeClient, archive: dict[str, Any], migrated: Settings
) -> None:
    from web.routes import api

    for route in api.routes:
        if "/audit" in route.path:
            assert route.method == "GET", route.path
    client = await make_client()
    csrf = await login(client, "arch_a")
    visit = archive["a1"]
    await _search(client, number=visit["number"])
    assert (await client.get(f"/api/v1/recordings/{visit['id']}")).status == 200
    played = await client.post(
        f"/api/v1/recordings/{visit['id']}/views",
        json={"file": "composite.mp4", "position": 0},
        headers={"X-CSRF-Token": csrf},
    )
    assert played.status == 200
    bad = await client.post(
        f"/api/v1/recordings/{visit['id']}/views",
        json={"file": "../outside.txt", "position": 0},
        headers={"X-CSRF-Token": csrf},
    )
    assert bad.status == 404
    download = await client.get(
        f"/api/v1/recordings/{visit['id']}/files/composite.mp4", params={"download": "1"}
    )
    assert download.status == 200
    assert "attachment" in download.headers["Content-Disposition"]
    assert await _actions(migrated, visit["id"]) == [
        "recording.open",
        "recording.view",
        "recording.download",
    ]
    page = await (
        await client.get("/api/v1/audit", params={"target_id": visit["id"], "actor": "arch_a"})
    ).json()
    assert [e["action"] for e in page["items"]] == [
        "recording.download",
        "recording.view",
        "recording.open",
    ]
    assert page["items"][1]["detail"] == {"file": "composite.mp4", "position": 0.0}
    # a player's seek is not audited; a read from the first byte is, whatever the page says
    # (a whole copy taken without download=1, or a page that never reports its playback)
    seek = await client.get(
        f"/api/v1/recordings/{visit['id']}/files/composite.mp4", headers={"Range": "bytes=100-"}
    )
    assert seek.status == 206
    assert (await _actions(migrated, visit["id"]))[-1] == "recording.download"
    for headers in ({}, {"Range": "bytes=0-"}):
        whole = await client.get(
            f"/api/v1/recordings/{visit['id']}/files/composite.mp4", headers=headers
        )
        assert whole.status in (200, 206)
        await whole.read()
        assert (await _actions(migrated, visit["id"]))[-1] == "recording.fetch"
    assert (await _actions(migrated, visit["id"])).count("recording.fetch") == 2
    searched = await (
        await client.get("/api/v1/audit", params={"action": "recording.search"})
    ).json()
    assert searched["items"][0]["detail"]["query"]["number"] == visit["number"]
    for method in ("PUT", "PATCH", "DELETE", "POST"):
        resp = await client.request(method, "/api/v1/audit", headers={"X-CSRF-Token": csrf})
        assert resp.status == 405, method
        resp = await client.request(method, "/api/v1/audit/1", headers={"X-CSRF-Token": csrf})
        assert resp.status in (404, 405), method


async def test_playback_detail_places_files_gaps_and_interruptions(
    make_client: MakeClient, archive: dict[str, Any], migrated: Settings
) -> None:
    """A write failure that never recovered (gap without an end) lasts to the track's end."""
    import json

    visit = archive["a1"]
    start = 1_700_000_000.0
    (visit["folder"] / "timeline.json").write_text(
        json.dumps(
            {
                "start": start,
                "end": start + 60,
                "tracks": [
                    {
                        "role": "petitioner",
                        "kind": "video",
                        "source": "camera",
                        "files": ["tracks/petitioner-camera-1.webm"],
                        "offset": 1.5,
                        "wall_end": start + 50,
                        "gaps": [{"start": start + 20, "end": None, "reason": "磁盘已满"}],
                    }
                ],
            }
        )
    )
    from datetime import UTC, datetime

    from recorder.models import Recording
    from scheduler.models import VisitEvent, VisitEventKind

    def at(seconds: float) -> datetime:
        return datetime.fromtimestamp(start + seconds, UTC)

    database = Database(migrated)
    async with database.writer() as db:
        db.add_all(
            [
                VisitEvent(visit_id=visit["id"], at=at(-60), kind=VisitEventKind.checked_in),
                VisitEvent(
                    visit_id=visit["id"],
                    at=at(0),
                    kind=VisitEventKind.state,
                    from_state="in_lobby",
                    to_state="in_progress",
                    actor_name="judge_a",
                ),
                VisitEvent(
                    visit_id=visit["id"],
                    at=at(10),
                    kind=VisitEventKind.room,
                    actor_name="张三丰",
                    detail={"event": "evidence_shown", "role": "petitioner"},
                ),
                VisitEvent(
                    visit_id=visit["id"],
                    at=at(30),
                    kind=VisitEventKind.room,
                    actor_name="judge_a",
                    detail={"event": "note", "role": "judge", "text": "不在时间线上"},
                ),
            ]
        )
        row = await db.get(Recording, visit["id"])
        assert row is not None
        row.interrupted_at = at(55)
    await database.dispose()
    client = await make_client()
    await login(client, "judge_a")
    detail = await (await client.get(f"/api/v1/recordings/{visit['id']}")).json()
    assert detail["visit_start"] == start
    assert [(e["at"], e["kind"], e["text"]) for e in detail["events"]] == [
        (None, "checked_in", "签到"),
        (0.0, "state", "法官准入，接访开始"),
        (10.0, "evidence_shown", "信访人 张三丰 出示证据"),
        (55.0, "interrupted", "录制中断（服务器异常），中断前的内容已修复保存"),
    ]
    assert detail["item"]["interrupted"] is True
    assert detail["gaps"] == [
        {"start": 20.0, "end": 50.0, "role": "petitioner", "reason": "磁盘已满"}
    ]
    files = {f["name"]: f for f in detail["files"]}
    assert files["tracks/petitioner-camera-1.webm"]["offset"] == 1.5
    assert files["tracks/petitioner-camera-1.webm"]["playable"] is True
    assert files["composite.mp4"]["kind"] == "composite" and files["composite.mp4"]["offset"] == 0
    assert files["SHA256SUMS"]["kind"] == "proof"
    assert [n["text"] for n in detail["notes"]] == ["信访人提交了补偿协议复印件"]
    assert detail["lines"][0]["text"].startswith("我对拆迁补偿款")
    assert detail["seal_reason"] == ""


async def test_an_export_or_a_check_holds_no_write_lock_while_it_hashes(
    make_client: MakeClient, archive: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hashing and zipping a recording of gigabytes takes minutes: while an export and an
    integrity check run, the rest of the server goes on writing (admitting, ending visits,
    the audit of a search), instead of waiting for them."""
    import threading

    from web.handlers import exports, sealing

    hashing = threading.Event()
    release = threading.Event()
    real_export = getattr(exports, "build_export")  # noqa: B009 (patched below)
    real_verify = getattr(sealing, "verify")  # noqa: B009

    def slow(real: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            hashing.set()
            release.wait(30)
            return real(*args, **kwargs)

        return run

    visit_id = archive["a1"]["id"]
    client = await make_client()
    csrf = await login(client, "arch_a")
    for patch, path, body in (
        ((exports, "build_export", slow(real_export)), "exports", {"reason": "调卷"}),
        ((sealing, "verify", slow(real_verify)), "verify", None),
    ):
        hashing.clear()
        release.clear()
        monkeypatch.setattr(*patch)
        slow_request = asyncio.ensure_future(
            client.post(
                f"/api/v1/recordings/{visit_id}/{path}",
                json=body,
                headers={"X-CSRF-Token": csrf},
            )
        )
        try:
            await asyncio.wait_for(asyncio.to_thread(hashing.wait, 30), 35)
            # an audited search writes while the hashing goes on
            await asyncio.wait_for(_search(client, number=archive["a1"]["number"]), 10)
        finally:
            release.set()
        answer = await slow_request
        assert answer.status in (200, 201), await answer.text()


async def test_a_deleted_recording_is_not_found_by_what_was_said_and_still_opens(
    make_client: MakeClient, archive: dict[str, Any], migrated: Settings
) -> None:
    """Retention deleted the media: what was said went with it, so a search by its words
    finds it no more (nor shows its lines), and its page, with the signed proof and the
    timeline, still opens although a line of its transcript had been corrected."""
    from sqlalchemy import update

    from recorder.models import Recording

    visit_id = archive["a1"]["id"]
    archivist = await make_client()
    fixed = await archivist.post(
        f"/api/v1/recordings/{visit_id}/transcript/0/corrections",
        json={"text": "我对拆迁补偿款的数额不服，要求重新评估。"},
        headers={"X-CSRF-Token": await login(archivist, "arch_a")},
    )
    client = await make_client()
    csrf = await login(client, "admin")
    assert fixed.status in (200, 201), await fixed.text()
    assert [i["visit_id"] for i in (await _search(client, q="拆迁补偿"))["items"]] == [visit_id]
    async with Database(migrated).writer() as db:  # its retention ran out long ago
        await db.execute(
            update(Recording)
            .where(Recording.visit_id == visit_id)
            .values(ended_at=utcnow() - timedelta(days=366 * (migrated.retention_years + 1)))
        )
    deleted = await client.post(
        f"/api/v1/visits/{visit_id}/recording/delete",
        json={"reason": "保存期满"},
        headers={"X-CSRF-Token": csrf},
    )
    assert deleted.status == 200, await deleted.text()
    assert (await _search(client, q="拆迁补偿"))["items"] == []
    opened = await client.get(f"/api/v1/recordings/{visit_id}")
    assert opened.status == 200, await opened.text()


async def test_a_number_said_aloud_is_masked_in_the_search_results(
    make_client: MakeClient, migrated: Settings, world: World
) -> None:
    """The petitioner said her mobile and ID numbers, and the transcript has them: the
    result list shows them masked, as it does the typed ones."""
    visit_id = await add_visit(
        migrated,
        court_id=world.courts["basic_a"],
        receiving_court_id=world.courts["mid_a"],
        judge_id=world.users["judge_a"],
        number="（2026）甲信009号",
        petitioner="孙八",
        id_number="110101199003079999",
    )
    said = "我的电话是13812345678，身份证号110101199003079999"
    await signed_recording(
        migrated, visit_id, lines=[{"start": 1.0, "end": 5.0, "role": "petitioner", "text": said}]
    )
    client = await make_client()
    await login(client, "admin")
    hits = (await _search(client, q="电话"))["items"][0]["hits"]
    assert hits and "13812345678" not in hits[0]["text"] and "5678" in hits[0]["text"]
    assert "110101199003079999" not in hits[0]["text"]


async def test_a_check_overlapping_a_new_signature_records_no_finding(
    make_client: MakeClient,
    archive: dict[str, Any],
    migrated: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pipeline signs a recording again (a retry of a failed step) while an integrity
    check hashes it: what the check found is about the old list, so it answers 409 and
    writes no finding (no false 'tampered', no audit event saying so)."""
    from recorder.manifest import load_signing_key, sign_folder
    from recorder.models import Recording
    from web.handlers import sealing

    real_verify = getattr(sealing, "verify")  # noqa: B009
    folder = archive["a1"]["folder"]
    visit_id = archive["a1"]["id"]

    def resigned_meanwhile(*args: Any, **kwargs: Any) -> Any:
        found = real_verify(*args, **kwargs)
        sign_folder(folder, load_signing_key(migrated.data_dir), {"visit_id": visit_id, "n": 2})
        return found

    monkeypatch.setattr(sealing, "verify", resigned_meanwhile)
    client = await make_client()
    csrf = await login(client, "arch_a")
    before = await _actions(migrated, visit_id)
    answer = await client.post(
        f"/api/v1/recordings/{visit_id}/verify", headers={"X-CSRF-Token": csrf}
    )
    assert answer.status == 409, await answer.text()
    assert (await answer.json())["error"]["code"] == "not_ready"
    assert await _actions(migrated, visit_id) == before
    async with Database(migrated).reader() as db:
        row = await db.get(Recording, visit_id)
        assert row is not None and row.integrity == "signed"

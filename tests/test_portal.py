"""The petitioner portal: identity by SMS code, the outbox and the webhook gateway, the
portal session, online petitions, following a case and asking for a video visit."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from PIL import Image
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from config.db import Database, create_engine, create_sessionmaker
from config.keys import load_secret_key
from config.privacy import RESIDENT_ID_CHECK, RESIDENT_ID_WEIGHTS, mask_id_number
from config.settings import Settings
from scheduler import lifecycle
from scheduler.cases import service as cases
from scheduler.cases.models import Contact, Material
from scheduler.cases.words import CaseTrack, Channel, HandlingMode, ResolutionGround
from scheduler.models import Petition, Petitioner, Role, Visit, VisitState
from scheduler.portal import identity
from scheduler.portal import service as portal
from scheduler.portal.identity import session_principal
from scheduler.portal.models import PortalCode, PortalIdentity
from scheduler.scope import Actor
from tests.conftest import MakeClient, PostgresServer
from tests.helpers import Booking, World, local_time, login, next_weekday
from tests.visits import Peer, _cookie
from web.cli import migrate

NAME = "张三"
PHONE = "13812345678"


def resident_id(first17: str) -> str:
    """A resident ID number with a correct check character."""
    total = sum(int(d) * w for d, w in zip(first17, RESIDENT_ID_WEIGHTS, strict=True))
    return first17 + RESIDENT_ID_CHECK[total % 11]


ID_NUMBER = resident_id("11010119900307123")


def who(**changes: str) -> dict[str, str]:
    return {"name": NAME, "id_number": ID_NUMBER, "phone": PHONE} | changes


async def outbox_code(staff: TestClient, phone: str = PHONE) -> str:
    """The newest login code sent to ``phone``, read from the operators' SMS outbox."""
    resp = await staff.get("/api/v1/sms-outbox")
    rows = await resp.json()
    assert resp.status == 200, rows
    text = next(r["text"] for r in rows if r["phone"] == phone)
    found = re.search(r"验证码为 (\d{6})", text)
    assert found, text
    return found.group(1)


async def sign_in(portal: TestClient, staff: TestClient, **changes: str) -> str:
    """Identify on the portal with the code from the outbox; returns the portal CSRF token."""
    sent = await portal.post("/api/v1/portal/code", json=who(**changes))
    assert sent.status == 201, await sent.text()
    code = await outbox_code(staff, changes.get("phone", PHONE))
    resp = await portal.post("/api/v1/portal/session", json=who(**changes) | {"code": code})
    body = await resp.json()
    assert resp.status == 200, body
    return str(body["csrf_token"])


async def staff_client(make_client: MakeClient, username: str = "op_a") -> TestClient:
    staff = await make_client()
    await login(staff, username)
    return staff


async def test_identify_with_the_code_from_the_outbox_opens_a_portal_session(
    make_client: MakeClient, world: World
) -> None:
    portal, staff = await make_client(), await staff_client(make_client)
    assert (await portal.get("/api/v1/portal/me")).status == 401
    sent = await portal.post("/api/v1/portal/code", json=who())
    assert sent.status == 201
    assert (await sent.json())["phone"] == "138****5678"
    rows = await (await staff.get("/api/v1/sms-outbox")).json()
    assert rows[0]["state"] == "queued" and rows[0]["phone"] == PHONE
    code = await outbox_code(staff)
    resp = await portal.post("/api/v1/portal/session", json=who() | {"code": code})
    assert resp.status == 200
    cookie = resp.cookies["vr_portal"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    me = await (await portal.get("/api/v1/portal/me")).json()
    assert me["name"] == NAME and me["id_number"] == "1101**********" + ID_NUMBER[-4:]
    # the code is single use
    again = await portal.post("/api/v1/portal/session", json=who() | {"code": code})
    assert again.status == 401 and (await again.json())["error"]["code"] == "code_used"
    # a staff session is no portal session, and the portal cookie is no staff session
    assert (await staff.get("/api/v1/portal/me")).status == 401
    assert (await portal.get("/api/v1/sms-outbox")).status == 401


async def test_wrong_id_checksum_and_non_mainland_phone_are_refused_and_send_nothing(
    make_client: MakeClient, world: World
) -> None:
    portal, staff = await make_client(), await staff_client(make_client)
    bad_id = ID_NUMBER[:-1] + ("0" if ID_NUMBER[-1] != "0" else "1")
    resp = await portal.post("/api/v1/portal/code", json=who(id_number=bad_id))
    body = (await resp.json())["error"]
    assert resp.status == 422 and body["code"] == "invalid_id_number"
    assert "校验位" in body["message"]
    for phone in ("12812345678", "+85291234567", "1381234567", "02012345678"):
        resp = await portal.post("/api/v1/portal/code", json=who(phone=phone))
        body = (await resp.json())["error"]
        assert resp.status == 422 and body["code"] == "invalid_phone", phone
        assert "中国大陆手机号码" in body["message"]
    assert await (await staff.get("/api/v1/sms-outbox")).json() == []


async def test_code_guessing_locks_the_code_after_five_wrong_tries(
    make_client: MakeClient, world: World
) -> None:
    portal, staff = await make_client(), await staff_client(make_client)
    await portal.post("/api/v1/portal/code", json=who())
    code = await outbox_code(staff)
    wrong = "000000" if code != "000000" else "111111"
    lefts = []
    for _ in range(4):
        resp = await portal.post("/api/v1/portal/session", json=who() | {"code": wrong})
        body = (await resp.json())["error"]
        assert resp.status == 401 and body["code"] == "wrong_code"
        lefts.append(body["details"]["left"])
    assert lefts == [4, 3, 2, 1]
    resp = await portal.post("/api/v1/portal/session", json=who() | {"code": wrong})
    body = (await resp.json())["error"]
    assert resp.status == 429 and body["code"] == "code_locked" and "锁定" in body["message"]
    # even the right code no longer opens a session
    resp = await portal.post("/api/v1/portal/session", json=who() | {"code": code})
    assert resp.status == 429 and (await resp.json())["error"]["code"] == "code_locked"
    assert (await portal.get("/api/v1/portal/me")).status == 401
    # a new code works
    await sign_in(portal, staff)
    assert (await portal.get("/api/v1/portal/me")).status == 200


async def test_codes_per_phone_are_limited_per_hour(make_client: MakeClient, world: World) -> None:
    portal = await make_client()
    for _ in range(5):
        assert (await portal.post("/api/v1/portal/code", json=who())).status == 201
    resp = await portal.post("/api/v1/portal/code", json=who())
    body = (await resp.json())["error"]
    assert resp.status == 429 and body["code"] == "sms_rate_limited"
    assert "该手机号" in body["message"] and int(resp.headers["Retry-After"]) > 0
    # another phone from the same address still gets one (the address limit is higher)
    assert (await portal.post("/api/v1/portal/code", json=who(phone="13900000000"))).status == 201


async def test_a_newer_code_replaces_the_older_one(make_client: MakeClient, world: World) -> None:
    portal, staff = await make_client(), await staff_client(make_client)
    await portal.post("/api/v1/portal/code", json=who())
    first = await outbox_code(staff)
    await portal.post("/api/v1/portal/code", json=who())
    second = await outbox_code(staff)
    if first != second:
        resp = await portal.post("/api/v1/portal/session", json=who() | {"code": first})
        assert resp.status == 401 and (await resp.json())["error"]["code"] in (
            "code_used",
            "wrong_code",
        )
    resp = await portal.post("/api/v1/portal/session", json=who() | {"code": second})
    assert resp.status == 200


async def test_portal_writes_need_the_portal_csrf_header_and_sign_out_ends_the_session(
    make_client: MakeClient, world: World
) -> None:
    portal, staff = await make_client(), await staff_client(make_client)
    csrf = await sign_in(portal, staff)
    assert (await portal.delete("/api/v1/portal/session")).status == 403
    resp = await portal.delete("/api/v1/portal/session", headers={"X-Portal-CSRF": csrf})
    assert resp.status == 200
    assert (await portal.get("/api/v1/portal/me")).status == 401


async def test_the_same_id_number_with_another_phone_is_another_identity(
    make_client: MakeClient, world: World, migrated: Settings
) -> None:
    """The code proves the phone only: a sign-in with another phone neither takes over nor
    ends the first phone's identity and sessions."""
    first, second, again = await make_client(), await make_client(), await make_client()
    staff = await staff_client(make_client)
    await sign_in(first, staff)
    await sign_in(second, staff, phone="13900000000")
    await sign_in(again, staff)
    mine, theirs, same = [
        await (await c.get("/api/v1/portal/me")).json() for c in (first, second, again)
    ]
    assert (await first.get("/api/v1/portal/me")).status == 200
    assert mine["phone"] != theirs["phone"]
    async with database(migrated) as db:
        rows = (await db.execute(select(PortalIdentity.id, PortalIdentity.phone))).all()
    assert sorted(phone for _, phone in rows) == sorted([PHONE, "13900000000"])
    assert (same["name"], same["phone"]) == (mine["name"], mine["phone"])


async def test_operators_mark_a_relayed_message_sent(make_client: MakeClient, world: World) -> None:
    portal, staff = await make_client(), await staff_client(make_client)
    await portal.post("/api/v1/portal/code", json=who())
    row = (await (await staff.get("/api/v1/sms-outbox")).json())[0]
    csrf = await login(staff, "op_a")
    resp = await staff.post(f"/api/v1/sms-outbox/{row['id']}/sent", headers={"X-CSRF-Token": csrf})
    body = await resp.json()
    assert resp.status == 200 and body["state"] == "sent" and body["sent_at"]
    again = await staff.post(f"/api/v1/sms-outbox/{row['id']}/sent", headers={"X-CSRF-Token": csrf})
    assert again.status == 409


# ---------------------------------------------------------------- online petitions


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[AsyncSession]:
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            yield db
    finally:
        await engine.dispose()


def jpeg(colour: tuple[int, int, int]) -> bytes:
    """A small real JPEG, as a phone camera would send (smaller)."""
    out = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(out, "JPEG")
    return out.getvalue()


def petition_form(world: World, files: list[tuple[str, bytes, str]], **changes: str) -> FormData:
    fields = {
        "court_id": str(world.courts["basic_a"]),
        "category": "civil_retrial",
        "summary": "请求依法再审（2023）甲01民终123号判决",
        "original_numbers": "（2023）甲01民终123号\n(2022)甲0101民初45号",
        "original_court": "甲市中级人民法院",
    } | changes
    form = FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    for filename, data, content_type in files:
        form.add_field("materials", data, filename=filename, content_type=content_type)
    return form


PHOTOS = [
    ("判决书第1页.jpg", jpeg((200, 10, 10)), "image/jpeg"),
    ("判决书第2页.jpg", jpeg((10, 200, 10)), "image/jpeg"),
]


async def submit(
    portal_client: TestClient, csrf: str, form: FormData
) -> tuple[int, dict[str, Any]]:
    resp = await portal_client.post(
        "/api/v1/portal/cases", data=form, headers={"X-Portal-CSRF": csrf}
    )
    return resp.status, await resp.json()


def materials_dir(settings: Settings) -> Any:
    return cases.materials_dir(settings)


async def test_online_petition_with_two_photos_becomes_an_online_contact_with_hashed_materials(
    make_client: MakeClient, world: World, migrated: Settings
) -> None:
    client, staff = await make_client(), await staff_client(make_client)
    csrf = await sign_in(client, staff)
    status, body = await submit(client, csrf, petition_form(world, PHOTOS))
    assert status == 201, body
    assert body["linked"] is False and len(body["materials"]) == 2
    async with database(migrated) as db:
        case = await db.get(Petition, body["case_id"])
        assert case is not None and case.channel is Channel.online
        assert (
            case.court_id == world.courts["basic_a"] and case.original_court == "甲市中级人民法院"
        )
        contacts = (await db.scalars(select(Contact).where(Contact.petition_id == case.id))).all()
        assert [c.channel for c in contacts] == [Channel.online]
        stored = (await db.scalars(select(Material).where(Material.petition_id == case.id))).all()
    assert sorted(m.sha256 for m in stored) == sorted(
        hashlib.sha256(d).hexdigest() for _, d, _ in PHOTOS
    )
    for m in stored:
        assert m.contact_id == contacts[0].id and m.content_type == "image/jpeg"
        data = (materials_dir(migrated) / m.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == m.sha256
    # the petitioner's list shows it
    mine = await (await client.get("/api/v1/portal/cases")).json()
    assert [c["id"] for c in mine] == [case.id]
    assert mine[0]["state_name"] == "待分流" and mine[0]["category"] == "民事再审申请"


async def test_the_petitioner_sees_what_they_sent_and_no_ones_numbers(
    make_client: MakeClient, world: World, migrated: Settings
) -> None:
    """The court's own scans of the case are not listed as 我提交的材料 (they are the
    court's), and numbers in the case's summary are masked in the petitioner's list."""
    client, staff = await make_client(), await staff_client(make_client)
    csrf = await sign_in(client, staff)
    form = petition_form(world, PHOTOS[:1], summary="请求再审，对方当事人电话13900001111")
    status, body = await submit(client, csrf, form)
    assert status == 201, body
    me = await (await staff.get("/api/v1/auth/me")).json()
    scan = FormData()
    scan.add_field("file", PHOTOS[1][1], filename="法院调查笔录.jpg", content_type="image/jpeg")
    r = await staff.post(
        f"/api/v1/cases/{body['case_id']}/materials",
        data=scan,
        headers={"X-CSRF-Token": me["csrf_token"]},
    )
    assert r.status == 201, await r.text()
    case = await (await client.get(f"/api/v1/portal/cases/{body['case_id']}")).json()
    assert [m["filename"] for m in case["materials"]] == [PHOTOS[0][0]]
    mine = await (await client.get("/api/v1/portal/cases")).json()
    assert "139****1111" in mine[0]["summary"] and "13900001111" not in mine[0]["summary"]


async def test_bad_uploads_and_texts_are_refused_and_nothing_is_stored(
    make_client: MakeClient, world: World, migrated: Settings
) -> None:
    client, staff = await make_client(), await staff_client(make_client)
    csrf = await sign_in(client, staff)
    fake = [("病毒.jpg", b"MZ\x90\x00 not an image at all", "image/jpeg")]
    status, body = await submit(client, csrf, petition_form(world, [PHOTOS[0], *fake]))
    assert status == 415 and "PDF、JPEG 或 PNG" in body["error"]["message"]
    status, body = await submit(client, csrf, petition_form(world, PHOTOS, summary="长" * 4001))
    assert status == 422 and body["error"]["code"] == "too_long"
    status, body = await submit(client, csrf, petition_form(world, PHOTOS, summary="长" * 70000))
    assert status == 422 and body["error"]["code"] == "too_long"
    status, body = await submit(client, csrf, petition_form(world, PHOTOS, original_numbers=""))
    assert status == 422 and "原案号" in body["error"]["message"]
    status, body = await submit(
        client, csrf, petition_form(world, PHOTOS, court_id=str(world.courts["mid_a"]))
    )
    assert status == 422 and body["error"]["code"] == "invalid_court"
    # without the portal CSRF header nothing is read
    resp = await client.post("/api/v1/portal/cases", data=petition_form(world, PHOTOS))
    assert resp.status == 403
    async with database(migrated) as db:
        assert (await db.scalars(select(Petition))).all() == []
        assert (await db.scalars(select(Material))).all() == []
    folder = materials_dir(migrated)
    assert not folder.exists() or list(folder.iterdir()) == []


async def test_materials_over_the_size_limit_are_refused(
    aiohttp_server: Any, migrated: Settings, world: World
) -> None:
    from web.app import create_app

    small = migrated.model_copy(update={"case_material_max_mb": 1})
    server = await aiohttp_server(create_app(small))
    client, staff = TestClient(server), TestClient(server)
    await client.start_server()
    await staff.start_server()
    try:
        await login(staff, "op_a")
        csrf = await sign_in(client, staff)
        big = jpeg((1, 2, 3)) + b"\0" * (1024 * 1024 + 10)
        status, body = await submit(
            client, csrf, petition_form(world, [("大.jpg", big, "image/jpeg")])
        )
        assert status == 413 and "1 MB" in body["error"]["message"]
        assert list(materials_dir(small).iterdir()) == []
    finally:
        await client.close()
        await staff.close()


async def test_scripts_in_text_are_stored_as_text(make_client: MakeClient, world: World) -> None:
    client, staff = await make_client(), await staff_client(make_client)
    csrf = await sign_in(client, staff)
    script = "<script>alert('x')</script>请求再审"
    status, body = await submit(client, csrf, petition_form(world, PHOTOS[:1], summary=script))
    assert status == 201
    case = await (await client.get(f"/api/v1/portal/cases/{body['case_id']}")).json()
    assert case["summary"] == script


async def _triage_as_petition(settings: Settings, world: World, case_id: int) -> None:
    async with database(settings) as db:
        actor = Actor(world.users["po_a"], "po_a", Role.petition_officer, world.courts["basic_a"])
        await cases.triage(
            db,
            actor,
            case_id,
            track=CaseTrack.petition,
            mode=HandlingMode.immediate,
            responsible_id=world.users["po_a"],
            settings=settings,
        )
        await cases.correct(
            db, actor, case_id, event_id=1, text="内部更正：登记时间有误", settings=settings
        )


async def test_progress_shows_public_steps_in_plain_words_and_the_result(
    make_client: MakeClient, world: World, migrated: Settings
) -> None:
    client, staff = await make_client(), await staff_client(make_client)
    csrf = await sign_in(client, staff)
    _, body = await submit(client, csrf, petition_form(world, PHOTOS))
    case_id = body["case_id"]
    await _triage_as_petition(migrated, world, case_id)
    case = await (await client.get(f"/api/v1/portal/cases/{case_id}")).json()
    assert case["state_name"] == "办理中" and case["node_name"] == "办理"
    titles = [s["title"] for s in case["steps"]]
    assert titles[:2] == ["登记", "来访来信"] and "分流" in titles
    assert "更正记录" not in titles  # staff-only corrections stay inside
    triaged = next(s for s in case["steps"] if s["title"] == "分流")
    assert triaged["text"] == "作为信访事项办理（马上办）"
    assert "po_a" not in str(case) and case["result"] is None
    assert len(case["materials"]) == 2
    async with database(migrated) as db:
        actor = Actor(world.users["po_a"], "po_a", Role.petition_officer, world.courts["basic_a"])
        await cases.resolve(
            db,
            actor,
            case_id,
            ground=ResolutionGround.explained_accepted,
            settings=migrated,
            remark="经释法明理，信访人表示服判息诉",
        )
    case = await (await client.get(f"/api/v1/portal/cases/{case_id}")).json()
    assert case["result"] == {
        "title": "已化解",
        "ground": "释法明理后服判息诉",
        "text": "经释法明理，信访人表示服判息诉",
    }


async def test_a_petitioner_sees_only_their_own_cases(
    make_client: MakeClient, world: World
) -> None:
    first, second = await make_client(), await make_client()
    staff = await staff_client(make_client)
    csrf = await sign_in(first, staff)
    _, body = await submit(first, csrf, petition_form(world, PHOTOS[:1]))
    other_id = resident_id("11010119850101001")
    other_csrf = await sign_in(second, staff, id_number=other_id, phone="13700000000", name="李四")
    assert await (await second.get("/api/v1/portal/cases")).json() == []
    assert (await second.get(f"/api/v1/portal/cases/{body['case_id']}")).status == 404
    resp = await second.post(
        f"/api/v1/portal/cases/{body['case_id']}/visit-requests",
        json={"preferred": "", "note": ""},
        headers={"X-Portal-CSRF": other_csrf},
    )
    assert resp.status == 404


async def test_an_online_petition_joins_only_the_petitioners_own_case_and_names_nobody(
    make_client: MakeClient, world: World, migrated: Settings
) -> None:
    """Knowing somebody's ID number (and their original case number) is not enough: online
    nobody checks a document, so a matter on file is joined only by the petitioner on file
    (name and proved phone) and a refusal names nobody."""
    client, staff = await make_client(), await staff_client(make_client)
    csrf = await sign_in(client, staff)
    status, first = await submit(client, csrf, petition_form(world, PHOTOS[:1]))
    assert status == 201, first
    stranger = await make_client()
    stranger_csrf = await sign_in(stranger, staff, name="某某", phone="13900000000")
    new_matter = "（2020）乙01民终1号"
    for form in (
        petition_form(world, PHOTOS[1:]),  # the same matter
        petition_form(world, PHOTOS[1:], original_numbers=new_matter),  # a new one
    ):
        status, body = await submit(stranger, stranger_csrf, form)
        assert status == 422 and body["error"]["code"] == "identity_mismatch", body
        assert NAME not in body["error"]["message"]
    # the right name but a phone neither on file nor of the identity that submitted it
    other = await make_client()
    other_csrf = await sign_in(other, staff, phone="13700000001")
    status, body = await submit(other, other_csrf, petition_form(world, PHOTOS[1:]))
    assert status == 422 and body["error"]["code"] == "identity_mismatch", body
    async with database(migrated) as db:
        assert [c.id for c in (await db.scalars(select(Contact))).all()] == [1]
        assert len((await db.scalars(select(Material))).all()) == 1
        assert len((await db.scalars(select(Petition))).all()) == 1
    # the petitioner's own further petition about it is linked (重复访)
    status, again = await submit(client, csrf, petition_form(world, PHOTOS[1:], summary="补充"))
    assert status == 201 and again["linked"] is True and again["case_id"] == first["case_id"]


async def test_a_petitioner_with_a_new_phone_sees_the_petition_just_submitted(
    make_client: MakeClient, world: World, migrated: Settings
) -> None:
    """The court keeps the phone it has on file, but the identity that submitted a case
    (the ID number with the phone just proved) sees it, and may add to it."""
    client, staff = await make_client(), await staff_client(make_client)
    csrf = await sign_in(client, staff)
    status, first = await submit(client, csrf, petition_form(world, PHOTOS[:1]))
    assert status == 201, first
    renewed = await make_client()
    renewed_csrf = await sign_in(renewed, staff, phone="13900000000")
    matter = "（2024）甲01民终9号"
    form = petition_form(world, PHOTOS[1:], original_numbers=matter)
    status, body = await submit(renewed, renewed_csrf, form)
    assert status == 201 and body["linked"] is False, body
    mine = await (await renewed.get("/api/v1/portal/cases")).json()
    assert [c["id"] for c in mine] == [body["case_id"]]  # not the first phone's case
    resp = await renewed.get(f"/api/v1/portal/cases/{body['case_id']}")
    assert resp.status == 200, await resp.text()
    async with database(migrated) as db:
        case = await db.get(Petition, body["case_id"])
        assert case is not None
        person = await db.get(Petitioner, case.petitioner_id)
        assert person is not None and person.phone == PHONE  # the number on file is kept
    form = petition_form(world, PHOTOS[:1], original_numbers=matter, summary="补充")
    status, again = await submit(renewed, renewed_csrf, form)
    assert status == 201 and again["linked"] is True and again["case_id"] == body["case_id"]


async def test_a_counter_phone_typed_with_dashes_finds_the_petitioners_cases(
    make_client: MakeClient, world: World, migrated: Settings
) -> None:
    staff = await staff_client(make_client)
    csrf = await login(staff, "op_a")
    person = {"name": NAME, "id_type": "resident_id", "id_number": ID_NUMBER}
    registration = {
        "channel": "walk_in",
        "petitioners": [person | {"phone": "138-1234-5678"}],
        "category": "enforcement",
        "summary": "判决生效两年仍未执行到位",
        "original_numbers": ["（2024）甲0101执5号"],
        "original_court": "甲市某区人民法院",
    }
    resp = await staff.post("/api/v1/cases", json=registration, headers={"X-CSRF-Token": csrf})
    body = await resp.json()
    assert resp.status == 201, body
    case_id = body["case"]["id"]
    async with database(migrated) as db:
        case = await db.get(Petition, case_id)
        assert case is not None
        stored = await db.get(Petitioner, case.petitioner_id)
        assert stored is not None and stored.phone == PHONE  # stored as the portal proves it
        stored.phone = "+86-138-1234-5678"  # as a clerk typed it before phones were normalized
    client = await make_client()
    await sign_in(client, staff)
    mine = await (await client.get("/api/v1/portal/cases")).json()
    assert [c["id"] for c in mine] == [case_id]


# ---------------------------------------------------------------- video visits


async def test_visit_request_is_confirmed_by_booking_and_the_petitioner_sees_the_time(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    world = booking.world
    client, staff = await make_client(), await make_client()
    staff_csrf = await login(staff, "op_a")
    csrf = await sign_in(client, staff)
    _, body = await submit(client, csrf, petition_form(world, PHOTOS[:1]))
    case_id = body["case_id"]
    await _triage_as_petition(migrated, world, case_id)
    resp = await client.post(
        f"/api/v1/portal/cases/{case_id}/visit-requests",
        json={"preferred": "工作日上午", "note": "需要手语翻译"},
        headers={"X-Portal-CSRF": csrf},
    )
    asked = await resp.json()
    assert resp.status == 201 and asked["state"] == "pending" and asked["starts_at"] is None
    again = await client.post(
        f"/api/v1/portal/cases/{case_id}/visit-requests", json={}, headers={"X-Portal-CSRF": csrf}
    )
    assert again.status == 409
    # the court's operator sees it (another court's does not) and books a slot for it
    pending = await (await staff.get("/api/v1/visit-requests")).json()
    assert [(p["id"], p["petition_id"], p["preferred"]) for p in pending] == [
        (asked["id"], case_id, "工作日上午")
    ]
    other = await staff_client(make_client, "op_b")
    assert await (await other.get("/api/v1/visit-requests")).json() == []
    start = local_time(next_weekday(2), 9)
    booking_body = {
        "petition_id": case_id,
        "receiving_court_id": world.courts["mid_a"],
        "room_id": world.rooms["basic_a"],
        "starts_at": start.isoformat(),
    }
    refused = await other.post(
        f"/api/v1/visit-requests/{asked['id']}/book",
        json=booking_body,
        headers={"X-CSRF-Token": await login(other, "op_b")},
    )
    assert refused.status == 404
    resp = await staff.post(
        f"/api/v1/visit-requests/{asked['id']}/book",
        json=booking_body,
        headers={"X-CSRF-Token": staff_csrf},
    )
    booked = await resp.json()
    assert resp.status == 200, booked
    assert booked["state"] == "booked"
    assert await (await staff.get("/api/v1/visit-requests")).json() == []
    mine = await (await client.get("/api/v1/portal/visit-requests")).json()
    assert mine[0]["state_name"] == "已确认" and mine[0]["room_name"] == "第一接访室"
    assert mine[0]["starts_at"] is not None
    assert (await client.get("/api/v1/portal/visit-requests")).status == 200
    from datetime import datetime

    assert datetime.fromisoformat(mine[0]["starts_at"]) == start
    # the petitioner is told by SMS
    sms = await (await staff.get("/api/v1/sms-outbox")).json()
    assert any("视频接访已确认" in m["text"] and start.strftime("%H:%M") in m["text"] for m in sms)
    # the code only on the day
    resp = await client.post(
        f"/api/v1/portal/visit-requests/{asked['id']}/code", headers={"X-Portal-CSRF": csrf}
    )
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "not_today"


async def test_on_the_day_the_petitioner_gets_a_visit_code_that_opens_the_visit(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    world = booking.world
    client, staff = await make_client(), await make_client()
    staff_csrf = await login(staff, "op_a")
    csrf = await sign_in(client, staff)
    _, body = await submit(client, csrf, petition_form(world, PHOTOS[:1]))
    await _triage_as_petition(migrated, world, body["case_id"])
    asked = await (
        await client.post(
            f"/api/v1/portal/cases/{body['case_id']}/visit-requests",
            json={},
            headers={"X-Portal-CSRF": csrf},
        )
    ).json()
    start = local_time(next_weekday(3), 10)
    resp = await staff.post(
        f"/api/v1/visit-requests/{asked['id']}/book",
        json={
            "petition_id": body["case_id"],
            "receiving_court_id": world.courts["mid_a"],
            "room_id": world.rooms["basic_a"],
            "starts_at": start.isoformat(),
        },
        headers={"X-CSRF-Token": staff_csrf},
    )
    assert resp.status == 200
    token = client.session.cookie_jar.filter_cookies(client.make_url("/"))["vr_portal"].value
    async with database(migrated) as db:
        me = await session_principal(db, token)
        assert me is not None
        issued, visit = await portal.visit_code(
            db, migrated, load_secret_key(migrated), me, asked["id"], now=start - timedelta(hours=2)
        )
    lookup = await client.post("/api/v1/visit-codes/lookup", json={"code": issued.code})
    assert lookup.status == 200 and (await lookup.json())["visit_id"] == visit.id
    # the code stands for the counter's check: the petitioner waits checked in, and the
    # judge admits them (before, a visit still "scheduled" refused the admission and was
    # marked a no-show while they waited)
    guest = await Peer().connect(client)
    joined = await guest.call("join", {"v": 1, "visit_id": visit.id, "code": issued.code})
    assert joined["ok"] and not joined["admitted"], joined
    async with database(migrated) as db:
        waiting = await db.get(Visit, visit.id)
        assert waiting is not None and waiting.state is VisitState.in_lobby
        assert waiting.checkin_document_type == lifecycle.ONLINE_CHECK
        assert waiting.checkin_document_masked == mask_id_number(ID_NUMBER)
    judge_client = await make_client()
    await login(judge_client, "judge_a")
    judge = await Peer().connect(judge_client, _cookie(judge_client))
    try:
        assert (await judge.call("join", {"v": 1, "visit_id": visit.id}))["ok"]
        admitted = await judge.call("admit", {"participant_id": joined["participant_id"]})
        assert admitted["ok"], admitted
    finally:
        await judge.close()
        await guest.close()
    async with database(migrated) as db:
        held = await db.get(Visit, visit.id)
        assert held is not None and held.state is VisitState.in_progress


async def test_the_portal_page_has_no_inline_script_or_style(client: TestClient) -> None:
    resp = await client.get("/p/")
    html = await resp.text()
    assert resp.status == 200 and "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert "<style" not in html and " style=" not in html
    assert all('src="/' in tag for tag in re.findall(r"<script[^>]*>", html))
    assert 'capture="environment"' in html and 'accept="image/*"' in html
    assert (await client.get("/p", allow_redirects=False)).headers["Location"] == "/p/"


# ---------------------------------------------------------------- the SMS webhook gateway


async def _webhook_app(
    aiohttp_server: Any, migrated: Settings, answers: list[int]
) -> tuple[TestClient, list[tuple[dict[str, Any], str]]]:
    """The portal on an app whose SMS goes to a fake court SMS platform answering
    ``answers`` in turn (then 200)."""
    from aiohttp import web

    from web.app import create_app

    received: list[tuple[dict[str, Any], str]] = []

    async def platform(request: web.Request) -> web.Response:
        received.append((await request.json(), request.headers.get("X-Signature", "")))
        status = answers.pop(0) if answers else 200
        return web.Response(status=status, text="ok")

    sms_app = web.Application()
    sms_app.router.add_post("/sms", platform)
    sms_server = await aiohttp_server(sms_app)
    settings = migrated.model_copy(
        update={
            "sms_webhook_url": str(sms_server.make_url("/sms")),
            "sms_webhook_secret": SecretStr("webhook-secret"),
        }
    )
    server = await aiohttp_server(create_app(settings))
    client = TestClient(server)
    await client.start_server()
    return client, received


async def test_webhook_gateway_posts_signed_json_and_retries(
    aiohttp_server: Any, migrated: Settings, world: World
) -> None:
    client, received = await _webhook_app(aiohttp_server, migrated, [503])
    try:
        assert (await client.post("/api/v1/portal/code", json=who())).status == 201
        assert len(received) == 2  # the first answer was 503: retried
        body, signature = received[-1]
        assert body["phone"] == PHONE and "验证码为" in body["text"]
        raw = json.dumps(body, ensure_ascii=False).encode()
        assert signature == "sha256=" + hmac.new(b"webhook-secret", raw, hashlib.sha256).hexdigest()
        await login(client, "op_a")
        rows = await (await client.get("/api/v1/sms-outbox")).json()
        assert rows[0]["state"] == "sent" and rows[0]["attempts"] == 2
    finally:
        await client.close()


async def test_webhook_failures_are_kept_with_the_error(
    aiohttp_server: Any, migrated: Settings, world: World
) -> None:
    client, received = await _webhook_app(aiohttp_server, migrated, [500, 500, 500])
    try:
        assert (await client.post("/api/v1/portal/code", json=who())).status == 201
        assert len(received) == 3
        await login(client, "op_a")
        row = (await (await client.get("/api/v1/sms-outbox")).json())[0]
        assert row["state"] == "failed" and "HTTP 500" in row["error"]
        assert "3 次均未接收" in row["error"]
    finally:
        await client.close()


async def test_purge_forgets_expired_portal_sessions_and_day_old_codes(
    make_client: MakeClient, world: World, migrated: Settings
) -> None:
    from scheduler.portal.identity import purge
    from scheduler.portal.models import PortalCode, PortalSession

    client, staff = await make_client(), await staff_client(make_client)
    await sign_in(client, staff)
    async with database(migrated) as db:
        session = (await db.scalars(select(PortalSession))).one()
        await purge(db, now=session.expires_at - timedelta(seconds=1))
        assert len((await db.scalars(select(PortalSession))).all()) == 1
        await purge(db, now=session.expires_at + timedelta(days=1, seconds=1))
        assert (await db.scalars(select(PortalSession))).all() == []
        assert (await db.scalars(select(PortalCode))).all() == []


@pytest.mark.postgres
async def test_wrong_codes_tried_at_once_each_take_one_of_the_five_tries(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """On PostgreSQL tries run side by side: ten wrong codes sent at once are compared five
    times at most (each took a try before it was compared; before, all read the same count
    and wrote 1, so guessing in parallel bypassed the lock)."""
    settings = Settings(
        data_dir=tmp_path / "var",
        database_url=postgres_server.create_database(f"vr_portal_{uuid.uuid4().hex[:8]}"),
    )
    await asyncio.to_thread(migrate, settings)
    database = Database(settings)
    secret = b"s" * 32
    claimed = identity.claim(NAME, ID_NUMBER, PHONE)
    try:
        async with database.writer() as db:
            await identity.request_code(db, settings, secret, claimed, "10.0.0.1")

        async def guess(code: str) -> str:
            async with database.writer() as db:
                try:
                    await identity.sign_in(db, settings, secret, claimed, code, "10.0.0.1")
                except identity.CodeRefused as exc:
                    return str(exc.code)  # committed: the try is counted
            return "signed_in"

        answers = await asyncio.gather(*(guess(f"{n:06d}") for n in range(10)))
        # four "wrong, n left", the fifth "wrong, now locked", five refused uncompared
        assert sorted(answers) == ["code_locked"] * 6 + ["wrong_code"] * 4, answers
        async with database.reader() as db:
            row = await db.scalar(select(PortalCode))
        assert row is not None and row.failures == 5
    finally:
        await database.dispose()

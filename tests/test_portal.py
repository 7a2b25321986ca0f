"""The petitioner portal: identity by SMS code, the outbox and the webhook gateway, the
portal session, online petitions, following a case and asking for a video visit."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient

from config.privacy import RESIDENT_ID_CHECK, RESIDENT_ID_WEIGHTS
from tests.conftest import MakeClient
from tests.helpers import World, login

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


async def test_signing_in_with_another_phone_ends_the_older_session(
    make_client: MakeClient, world: World
) -> None:
    first, second = await make_client(), await make_client()
    staff = await staff_client(make_client)
    await sign_in(first, staff)
    await sign_in(second, staff, phone="13900000000")
    assert (await first.get("/api/v1/portal/me")).status == 401
    assert (await second.get("/api/v1/portal/me")).status == 200


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

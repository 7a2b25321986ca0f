"""The petition case API (docs/protocol.md, "Petition cases"): registration, access by the
court tree, masking, every bad input of issue 16 refused with a clear 4xx, materials stored
whole or not at all, and the overdue scan of the housekeeping job."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from config.audit import AuditEvent
from config.db import create_engine, create_sessionmaker, utcnow
from config.settings import Settings
from scheduler.cases.models import CaseEvent, Material
from scheduler.housekeeping import housekeeping
from scheduler.models import Notification, Petition, Role
from tests.conftest import MakeClient
from tests.helpers import World, add_staff, login

ID_A = "110101199003071233"
PHONE_A = "13800138000"
NUMBER = "（2024）甲0101执123号"
PDF = b"%PDF-1.4\n" + b"1 0 obj <<>> endobj\n" * 200 + b"%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 512


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # a 1 MB limit keeps the oversized upload small
    return Settings(data_dir=tmp_path / "var", case_material_max_mb=1)


class Staff:
    """A logged-in client per staff member of the test court tree."""

    def __init__(self, world: World, make_client: MakeClient) -> None:
        self.world = world
        self.make_client = make_client
        self.sessions: dict[str, tuple[TestClient, str]] = {}

    async def __call__(self, username: str) -> tuple[TestClient, str]:
        if username not in self.sessions:
            c = await self.make_client()
            self.sessions[username] = (c, await login(c, username))
        return self.sessions[username]

    async def call(
        self, username: str, method: str, path: str, body: Any = None
    ) -> tuple[int, Any]:
        c, csrf = await self(username)
        resp = await c.request(method, "/api/v1" + path, json=body, headers={"X-CSRF-Token": csrf})
        return resp.status, await resp.json()


@pytest.fixture
async def staff(migrated: Settings, world: World, make_client: MakeClient) -> Staff:
    engine = create_engine(migrated)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            for name, role, court in (
                ("po_a", Role.petition_officer, "basic_a"),
                ("po_a2", Role.petition_officer, "basic_a"),
                ("po_b", Role.petition_officer, "basic_b"),
                ("po_mid", Role.petition_officer, "mid_a"),
                ("po_high", Role.petition_officer, "high"),
                ("leader_high", Role.leader, "high"),
            ):
                await add_staff(db, world, name, role, court)
    finally:
        await engine.dispose()
    return Staff(world, make_client)


@pytest.fixture
async def db(migrated: Settings) -> AsyncIterator[Any]:
    engine = create_engine(migrated)
    yield create_sessionmaker(engine)
    await engine.dispose()


def letter(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "channel": "letter",
        "petitioners": [
            {"name": "张三", "id_type": "resident_id", "id_number": ID_A, "phone": PHONE_A}
        ],
        "people_count": 1,
        "category": "enforcement",
        "summary": f"判决生效两年仍未执行到位，联系电话 {PHONE_A}",
        "original_numbers": [NUMBER],
        "original_court": "甲市某区人民法院",
    }
    body.update(over)
    return body


async def register(staff: Staff, username: str = "op_a", **over: Any) -> dict[str, Any]:
    status, body = await staff.call(username, "POST", "/cases", letter(**over))
    assert status == 201, body
    return dict(body["case"])


async def petition_matter(staff: Staff, case_id: int) -> None:
    """The basic court triages the case as a petition matter with po_a responsible."""
    status, body = await staff.call(
        "po_a",
        "POST",
        f"/cases/{case_id}/actions/triage",
        {"track": "petition", "mode": "careful", "responsible_id": staff.world.users["po_a"]},
    )
    assert status == 200, body


# ---------------------------------------------------------------- registration and masking


async def test_registration_lists_and_shows_the_case_with_id_and_phone_masked(
    staff: Staff,
) -> None:
    case = await register(staff)
    assert case["petitioner_name"] == "张三" and case["state"] == "registered"
    assert case["handler_court"]["name"] == "甲市某区人民法院"
    assert case["original_numbers"] == ["(2024)甲0101执123号"]
    status, page = await staff.call("op_a", "GET", "/cases")
    assert status == 200 and page["total"] == 1 and page["items"][0]["id"] == case["id"]
    c, _ = await staff("op_a")
    resp = await c.get(f"/api/v1/cases/{case['id']}")
    raw = await resp.text()
    assert resp.status == 200
    detail = await resp.json()
    (person,) = detail["case"]["petitioners"]
    assert person["id_number"] == "1101**********1233"
    assert person["phone"] == "138****8000"
    assert "138****8000" in detail["case"]["summary"]
    assert ID_A not in raw and PHONE_A not in raw
    assert [e["kind"] for e in detail["events"]] == ["registered", "contact"]
    assert "triage_petition" in detail["actions"] and "terminate" not in detail["actions"]
    # the list carries no ID or phone number at all
    assert ID_A not in await (await c.get("/api/v1/cases")).text()


async def test_an_incomplete_registration_names_the_missing_fields(staff: Staff) -> None:
    status, body = await staff.call(
        "op_a", "POST", "/cases", letter(channel=None, original_numbers=[], original_court="")
    )
    assert status == 422
    assert body["error"]["code"] == "incomplete_record"
    assert body["error"]["details"]["fields"] == ["来源渠道", "原案号", "原审法院"]
    assert "来源渠道" in body["error"]["message"]


async def test_a_second_contact_about_the_same_matter_is_linked_with_200(staff: Staff) -> None:
    first = await register(staff)
    status, body = await staff.call(
        "op_a",
        "POST",
        "/cases",
        letter(channel="walk_in", original_numbers=[" (2024)甲0101执123号"]),
    )
    assert status == 200, body
    assert body["linked"] is True and body["case"]["id"] == first["id"]
    assert body["case"]["contact_count"] == 2
    status, found = await staff.call(
        "op_a", "GET", f"/cases/duplicates?id_number={ID_A}&numbers=x,{NUMBER}"
    )
    assert status == 200 and found["case"]["id"] == first["id"]


async def test_two_clerks_registering_the_same_matter_at_once_make_one_case(
    staff: Staff, db: Any
) -> None:
    await staff("op_a")
    await staff("po_a")
    results = await asyncio.gather(
        staff.call("op_a", "POST", "/cases", letter()),
        staff.call("po_a", "POST", "/cases", letter(channel="walk_in")),
    )
    statuses = sorted(s for s, _ in results)
    assert statuses in ([200, 201], [201, 409]), results
    async with db() as session:
        assert await session.scalar(select(func.count()).select_from(Petition)) == 1

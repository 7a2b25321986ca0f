"""Login, cookie flags, CSRF, logout, session expiry, throttling of failed logins."""

from __future__ import annotations

from datetime import timedelta

from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from config.audit import AuditEvent
from config.db import create_engine, create_sessionmaker, utcnow
from config.settings import Settings
from tests.conftest import MakeClient
from tests.helpers import PASSWORD, World, login
from web.auth import StaffSession


async def _audit_actions(settings: Settings) -> list[str]:
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as db:
            return list((await db.scalars(select(AuditEvent.action).order_by(AuditEvent.id))).all())
    finally:
        await engine.dispose()


async def test_login_sets_strict_httponly_cookie_and_csrf(client: TestClient) -> None:
    resp = await client.post("/api/v1/auth/login", json={"username": "op_a", "password": PASSWORD})
    assert resp.status == 200
    body = await resp.json()
    assert body["role"] == "operator" and body["home"] == "/operator" and body["csrf_token"]
    header = resp.headers["Set-Cookie"]
    assert "vr_session=" in header and "HttpOnly" in header and "SameSite=Strict" in header
    me = await client.get("/api/v1/auth/me")
    assert (await me.json())["username"] == "op_a"


async def test_wrong_password_and_unknown_user(client: TestClient, migrated: Settings) -> None:
    for name, pw in (("op_a", "wrong-password"), ("nobody", PASSWORD)):
        resp = await client.post("/api/v1/auth/login", json={"username": name, "password": pw})
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "bad_credentials"
    assert (await client.get("/api/v1/auth/me")).status == 401
    assert (await _audit_actions(migrated)).count("auth.login_failed") == 2


async def test_csrf_required_on_state_changes(client: TestClient) -> None:
    csrf = await login(client, "admin")
    new = {"code": "X1", "name": "新法院", "level": "basic", "parent_id": 3}
    no_token = await client.post("/api/v1/courts", json=new)
    assert no_token.status == 403 and (await no_token.json())["error"]["code"] == "csrf_failed"
    wrong = await client.post("/api/v1/courts", json=new, headers={"X-CSRF-Token": "nope"})
    assert wrong.status == 403
    ok = await client.post("/api/v1/courts", json=new, headers={"X-CSRF-Token": csrf})
    assert ok.status == 201, await ok.text()


async def test_logout_ends_session(client: TestClient) -> None:
    csrf = await login(client, "judge_a")
    out = await client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    assert out.status == 200
    assert (await client.get("/api/v1/auth/me")).status == 401


async def test_expired_and_idle_sessions(client: TestClient, migrated: Settings) -> None:
    await login(client, "arch_a")
    engine = create_engine(migrated)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            await db.execute(
                update(StaffSession).values(expires_at=utcnow() - timedelta(seconds=1))
            )
        resp = await client.get("/api/v1/auth/me")
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "session_expired"
        await login(client, "arch_a")
        async with create_sessionmaker(engine)() as db, db.begin():
            idle = utcnow() - timedelta(minutes=migrated.session_idle_minutes + 1)
            await db.execute(update(StaffSession).values(last_seen_at=idle))
        assert (await client.get("/api/v1/auth/me")).status == 401
    finally:
        await engine.dispose()


async def test_deactivated_user_is_logged_out(make_client: MakeClient, world: World) -> None:
    admin, op = await make_client(), await make_client()
    csrf = await login(admin, "admin")
    await login(op, "op_a")
    resp = await admin.patch(
        f"/api/v1/users/{world.users['op_a']}",
        json={"active": False},
        headers={"X-CSRF-Token": csrf},
    )
    assert resp.status == 200 and (await resp.json())["active"] is False
    assert (await op.get("/api/v1/auth/me")).status == 401
    relog = await op.post("/api/v1/auth/login", json={"username": "op_a", "password": PASSWORD})
    assert relog.status == 401


async def test_failed_logins_are_limited_per_account(
    client: TestClient, migrated: Settings
) -> None:
    limit = migrated.login_max_failures_per_account
    for _ in range(limit):
        r = await client.post("/api/v1/auth/login", json={"username": "op_b", "password": "bad"})
        assert r.status == 401
    blocked = await client.post(
        "/api/v1/auth/login", json={"username": "op_b", "password": PASSWORD}
    )
    assert blocked.status == 429 and int(blocked.headers["Retry-After"]) > 0
    assert (await blocked.json())["error"]["code"] == "rate_limited"
    # another account from the same address is not blocked by op_b's failures
    assert (
        await client.post("/api/v1/auth/login", json={"username": "op_a", "password": PASSWORD})
    ).status == 200
    assert "auth.login_blocked" in await _audit_actions(migrated)


async def test_failed_logins_are_limited_per_address(
    client: TestClient, migrated: Settings
) -> None:
    limit = migrated.login_max_failures_per_address
    for i in range(limit):
        r = await client.post(
            "/api/v1/auth/login", json={"username": f"ghost{i}", "password": "bad"}
        )
        assert r.status == 401
    r = await client.post("/api/v1/auth/login", json={"username": "admin", "password": PASSWORD})
    assert r.status == 429


async def test_admin_cannot_lock_themselves_out(client: TestClient, world: World) -> None:
    csrf = await login(client, "admin")
    r = await client.patch(
        f"/api/v1/users/{world.users['admin']}",
        json={"active": False},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status == 422 and (await r.json())["error"]["code"] == "self_lockout"

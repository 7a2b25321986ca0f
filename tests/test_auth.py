"""Login, cookie flags, CSRF, logout, session expiry, throttling of failed logins, admins
unlocking accounts and resetting passwords (API and ``vreception set-password``)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from sqlalchemy import select, update

from config.audit import AuditEvent
from config.db import create_engine, create_sessionmaker, utcnow
from config.settings import Settings
from tests.conftest import MakeClient, RedisServer
from tests.helpers import PASSWORD, World, login
from web.auth import (
    LoginThrottle,
    StaffSession,
    account_key,
    account_lockout,
    create_login_throttle,
    unlock_account,
)
from web.cli import main as cli_main


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
    """Both refused alike; the trail names the account, and a name no account has (maybe a
    password typed in the wrong box) only by a fingerprint."""
    typed = "Secret-Pa55word!"
    for name, pw in (("op_a", "wrong-password"), (typed, PASSWORD)):
        resp = await client.post("/api/v1/auth/login", json={"username": name, "password": pw})
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "bad_credentials"
    assert (await client.get("/api/v1/auth/me")).status == 401
    assert (await _audit_actions(migrated)).count("auth.login_failed") == 2
    engine = create_engine(migrated)
    try:
        async with create_sessionmaker(engine)() as db:
            names = (
                await db.scalars(
                    select(AuditEvent.actor_name).where(AuditEvent.action == "auth.login_failed")
                )
            ).all()
    finally:
        await engine.dispose()
    assert names[0] == "op_a"
    unknown = names[1] or ""
    assert unknown.startswith("未知用户名#") and typed not in unknown


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


async def _attempt(client: TestClient, username: str, password: str) -> tuple[int, str]:
    r = await client.post("/api/v1/auth/login", json={"username": username, "password": password})
    return r.status, (await r.json()).get("error", {}).get("message", "")


async def test_failed_login_says_attempts_left_then_minutes_to_wait(
    client: TestClient, migrated: Settings
) -> None:
    limit = migrated.login_max_failures_per_account
    minutes = migrated.login_failure_window_seconds // 60
    for left in range(limit - 1, 0, -1):
        status, message = await _attempt(client, "op_b", "bad")
        assert status == 401 and message.endswith(f"还可尝试 {left} 次"), message
    status, message = await _attempt(client, "op_b", "bad")  # the last one locks
    assert status == 401 and f"已暂时锁定，请 {minutes} 分钟后再试" in message, message
    status, message = await _attempt(client, "op_b", PASSWORD)
    assert status == 429 and f"请 {minutes} 分钟后再试" in message, message
    assert "秒" not in message


async def test_admin_unlocks_a_locked_account_audited(
    make_client: MakeClient, world: World, migrated: Settings
) -> None:
    guest, admin, op = await make_client(), await make_client(), await make_client()
    for _ in range(migrated.login_max_failures_per_account):
        await _attempt(guest, "op_b", "bad")
    assert (await _attempt(guest, "op_b", PASSWORD))[0] == 429
    h = {"X-CSRF-Token": await login(admin, "admin")}
    users = {u["username"]: u for u in (await (await admin.get("/api/v1/users")).json())["items"]}
    assert users["op_b"]["locked_seconds"] > 0 and users["op_a"]["locked_seconds"] == 0
    op_id = world.users["op_b"]
    oh = {"X-CSRF-Token": await login(op, "op_a")}
    assert (await op.post(f"/api/v1/users/{op_id}/unlock", headers=oh)).status == 403
    r = await admin.post(f"/api/v1/users/{op_id}/unlock", headers=h)
    assert r.status == 200 and (await r.json())["locked_seconds"] == 0
    assert (await _attempt(guest, "op_b", PASSWORD))[0] == 200
    again = await admin.post(f"/api/v1/users/{op_id}/unlock", headers=h)
    assert again.status == 409 and (await again.json())["error"]["code"] == "not_locked"
    trail = await (await admin.get("/api/v1/audit", params={"action": "user.unlock"})).json()
    assert [a["sentence"] for a in trail["items"]] == ["admin解除了账户 op_b 的登录锁定。"]


async def test_admin_resets_a_password_audited_sessions_end_lock_lifted(
    make_client: MakeClient, world: World, migrated: Settings
) -> None:
    admin, op = await make_client(), await make_client()
    h = {"X-CSRF-Token": await login(admin, "admin")}
    await login(op, "op_b")
    for _ in range(migrated.login_max_failures_per_account):
        await _attempt(admin, "op_b", "bad")
    url = f"/api/v1/users/{world.users['op_b']}/password"
    weak = await admin.post(url, json={"password": "short"}, headers=h)
    assert weak.status == 422 and (await weak.json())["error"]["code"] == "weak_password"
    r = await admin.post(url, json={"password": "Brand-new-pw-7"}, headers=h)
    assert r.status == 200, await r.text()
    assert (await op.get("/api/v1/auth/me")).status == 401  # the old session ended
    assert (await _attempt(op, "op_b", PASSWORD))[0] == 401
    assert (await _attempt(op, "op_b", "Brand-new-pw-7"))[0] == 200  # and the lock is gone
    reset = {"action": "user.password_reset"}
    trail = await (await admin.get("/api/v1/audit", params=reset)).json()
    assert [a["sentence"] for a in trail["items"]] == ["admin重置了账户 op_b 的密码。"]
    assert "Brand-new-pw-7" not in repr(trail)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def throttle(request: pytest.FixtureRequest) -> AsyncIterator[LoginThrottle]:
    if request.param == "memory":
        yield create_login_throttle(None)
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    redis = Redis.from_url(server.url)
    await redis.flushdb()
    try:
        yield create_login_throttle(redis)
    finally:
        await redis.aclose()


async def test_throttle_locks_and_unlocks_an_account(
    throttle: LoginThrottle, settings: Settings
) -> None:
    limit = settings.login_max_failures_per_account
    for _ in range(limit):
        await throttle.hit(account_key("Op_B"), settings.login_failure_window_seconds)
    await throttle.hit(account_key("op_a"), settings.login_failure_window_seconds)
    locked = await account_lockout(throttle, settings, "op_b")
    assert 0 < locked <= settings.login_failure_window_seconds + 1
    await unlock_account(throttle, "OP_B")
    assert await account_lockout(throttle, settings, "op_b") == 0
    count, _ = await throttle.hit(account_key("op_a"), settings.login_failure_window_seconds)
    assert count == 2  # other accounts keep their count


async def test_cli_set_password_prompts_twice_and_refuses_weak(
    client: TestClient, migrated: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VRECEPTION_DATA_DIR", str(migrated.data_dir))
    typed: list[str] = []
    monkeypatch.setattr("web.cli.getpass.getpass", lambda prompt="": typed.pop(0))
    monkeypatch.setattr("sys.stdin", _Terminal())

    async def run(*args: str) -> int:
        return await asyncio.to_thread(cli_main, ["set-password", *args])

    typed[:] = ["Brand-new-pw-7", "Brand-new-pw-8"]
    assert await run("--username", "op_a") == 2  # the two entries differ
    typed[:] = ["short", "short"]
    assert await run("--username", "op_a") == 2  # the API's rule: too short
    assert await run("--username", "op_a", "--password", "onlyletters") == 2
    assert await run("--username", "nobody", "--password", "Brand-new-pw-7") == 2
    assert (await _attempt(client, "op_a", PASSWORD))[0] == 200  # nothing changed yet
    typed[:] = ["Brand-new-pw-7", "Brand-new-pw-7"]
    assert await run("--username", "op_a") == 0 and not typed
    assert (await _attempt(client, "op_a", PASSWORD))[0] == 401
    assert (await _attempt(client, "op_a", "Brand-new-pw-7"))[0] == 200
    assert (await _audit_actions(migrated)).count("user.password_reset") == 1


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_the_embedded_login_throttle_forgets_what_has_aged_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One address trying ever new user names: the attempts released and those past their
    window are forgotten, instead of one entry per name kept for the life of the process."""
    from web import auth

    clock = [1000.0]
    monkeypatch.setattr("web.auth.time.monotonic", lambda: clock[0])
    throttle = auth.MemoryLoginThrottle()
    for n in range(3000):
        _, token = await throttle.hit(f"user:someone{n}", 900)
        if n % 2:
            await throttle.release(f"user:someone{n}", token)  # a good password: released
    assert len(throttle._hits) <= 1500
    clock[0] += 901
    for _ in range(auth.MemoryLoginThrottle.SWEEP_EVERY):
        await throttle.hit("address:10.0.0.9", 900)
    assert list(throttle._hits) == ["address:10.0.0.9"]
    assert await throttle.retry_after("address:10.0.0.9", 5, 900) > 0
    assert await throttle.retry_after("user:someone0", 5, 900) == 0

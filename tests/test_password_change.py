"""Staff change their own password; a password an administrator chose (a new account's, a
reset) must be replaced before the account can do anything else, in the API, the pages and
the live sockets."""

from __future__ import annotations

import asyncio
import io
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import socketio
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from config.audit import AuditEvent
from config.db import create_engine, create_sessionmaker
from config.settings import Settings
from scheduler.models import Role, User
from tests.conftest import MakeClient
from tests.helpers import PASSWORD, Booking, World, login
from web.cli import main as cli_main

CHOSEN = "Chosen-by-admin-1"
OWN = "Only-I-know-it-2"


async def _change(client: TestClient, csrf: str, current: str, new: str) -> tuple[int, Any]:
    resp = await client.post(
        "/api/v1/auth/password",
        json={"current_password": current, "new_password": new},
        headers={"X-CSRF-Token": csrf},
    )
    return resp.status, await resp.json()


async def _new_judge(admin: TestClient, world: World) -> int:
    h = {"X-CSRF-Token": await login(admin, "admin")}
    resp = await admin.post(
        "/api/v1/users",
        json={
            "username": "judge_new",
            "display_name": "新任法官",
            "role": "judge",
            "court_id": world.courts["high"],
            "password": CHOSEN,
        },
        headers=h,
    )
    body = await resp.json()
    assert resp.status in (200, 201), body
    assert body["must_change_password"] is True
    return int(body["id"])


async def test_a_new_account_does_nothing_until_its_chosen_password_is_replaced(
    make_client: MakeClient, world: World, migrated: Settings
) -> None:
    admin, judge, other = await make_client(), await make_client(), await make_client()
    await _new_judge(admin, world)
    csrf = await login(judge, "judge_new", CHOSEN)
    await login(other, "judge_new", CHOSEN)  # a second browser of the same account
    me = await (await judge.get("/api/v1/auth/me")).json()
    assert me["must_change_password"] is True and "密码至少 10 个字符" in me["password_rule"]
    refused = await judge.get("/api/v1/visits")
    assert refused.status == 403
    assert (await refused.json())["error"]["code"] == "password_change_required"
    # the pages send it to the change-password page, which itself opens
    page = await judge.get("/judge", allow_redirects=False)
    where = urlsplit(page.headers["Location"])
    assert page.status == 302 and where.path == "/password"
    assert parse_qs(where.query) == {"next": ["/judge"]}
    assert (await judge.get("/password", allow_redirects=False)).status == 200

    status, body = await _change(judge, csrf, "Wrong-password-0", OWN)
    assert status == 422 and body["error"]["code"] == "wrong_password"
    assert body["error"]["details"]["attempts_left"] == migrated.login_max_failures_per_account - 1
    status, body = await _change(judge, csrf, CHOSEN, CHOSEN)
    assert status == 422 and body["error"]["code"] == "same_password"
    status, body = await _change(judge, csrf, CHOSEN, "weak")
    assert status == 422 and body["error"]["code"] == "weak_password"
    status, body = await _change(judge, csrf, CHOSEN, OWN)
    assert status == 200 and body["must_change_password"] is False, body

    assert (await judge.get("/api/v1/visits")).status == 200
    assert (await judge.get("/judge", allow_redirects=False)).status == 200
    assert (await other.get("/api/v1/auth/me")).status == 401  # the other session ended
    fresh = await make_client()
    bad = await fresh.post("/api/v1/auth/login", json={"username": "judge_new", "password": CHOSEN})
    assert bad.status == 401
    await login(fresh, "judge_new", OWN)
    assert (await (await fresh.get("/api/v1/auth/me")).json())["must_change_password"] is False

    engine = create_engine(migrated)
    try:
        async with create_sessionmaker(engine)() as db:
            actions = (
                await db.scalars(
                    select(AuditEvent.action).where(AuditEvent.action.like("auth.password%"))
                )
            ).all()
            user = await db.scalar(select(User).where(User.username == "judge_new"))
    finally:
        await engine.dispose()
    assert actions == ["auth.password_change_failed", "auth.password_changed"]
    assert user is not None and not user.must_change_password
    h = {"X-CSRF-Token": await login(admin, "admin")}
    trail = await (
        await admin.get("/api/v1/audit", params={"action": "auth.password_changed"}, headers=h)
    ).json()
    assert [a["sentence"] for a in trail["items"]] == ["judge_new修改了自己的登录密码。"]
    assert OWN not in repr(trail) and CHOSEN not in repr(trail)


async def test_an_admin_reset_makes_the_password_temporary_again(
    make_client: MakeClient, world: World
) -> None:
    admin, op = await make_client(), await make_client()
    h = {"X-CSRF-Token": await login(admin, "admin")}
    op_id = world.users["op_a"]
    assert (await (await admin.get(f"/api/v1/users/{op_id}")).json())[
        "must_change_password"
    ] is False
    r = await admin.post(f"/api/v1/users/{op_id}/password", json={"password": CHOSEN}, headers=h)
    assert r.status == 200 and (await r.json())["must_change_password"] is True
    csrf = await login(op, "op_a", CHOSEN)
    assert (await op.get("/api/v1/visits")).status == 403
    assert (await _change(op, csrf, CHOSEN, OWN))[0] == 200
    # a reset through 修改 (PATCH with a password) is an administrator's choice as well
    r = await admin.patch(f"/api/v1/users/{op_id}", json={"password": CHOSEN}, headers=h)
    assert r.status == 200 and (await r.json())["must_change_password"] is True


async def test_anyone_changes_their_own_password_and_guesses_count_toward_the_lock(
    make_client: MakeClient, world: World, migrated: Settings
) -> None:
    op = await make_client()
    csrf = await login(op, "op_b")
    assert (await _change(op, csrf, PASSWORD, OWN))[0] == 200
    assert (await _change(op, csrf, OWN, PASSWORD + "!"))[0] == 200  # and again
    for _ in range(migrated.login_max_failures_per_account):
        assert (await _change(op, csrf, "Not-my-password-1", OWN))[0] == 422
    status, body = await _change(op, csrf, PASSWORD + "!", OWN)  # even the right one waits
    assert status == 429 and "分钟后再试" in body["error"]["message"]
    guest = await make_client()
    locked = await guest.post(
        "/api/v1/auth/login", json={"username": "op_b", "password": PASSWORD + "!"}
    )
    assert locked.status == 429  # a session left open is not a way round the lock
    # no CSRF token: refused like any change
    resp = await op.post(
        "/api/v1/auth/password", json={"current_password": PASSWORD, "new_password": OWN}
    )
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "csrf_failed"


async def test_a_password_change_required_account_gets_no_live_socket(
    make_client: MakeClient, world: World
) -> None:
    """The notifications socket (and the call's, through the same check) is refused until
    the password is changed, then opens."""
    admin, judge = await make_client(), await make_client()
    await _new_judge(admin, world)
    csrf = await login(judge, "judge_new", CHOSEN)
    cookie = judge.session.cookie_jar.filter_cookies(judge.make_url("/"))["vr_session"].value

    async def connect() -> socketio.AsyncClient:
        socket = socketio.AsyncClient(reconnection=False)
        await socket.connect(
            str(judge.make_url("/")),
            namespaces=["/notify"],
            headers={"Cookie": f"vr_session={cookie}"},
            transports=["websocket"],
            wait_timeout=10,
        )
        return socket

    with pytest.raises(socketio.exceptions.ConnectionError):
        await connect()
    assert (await _change(judge, csrf, CHOSEN, OWN))[0] == 200
    socket = await connect()
    assert socket.connected
    await socket.disconnect()


@pytest.mark.parametrize("generated", [True, False])
async def test_cli_create_user_marks_a_generated_password_temporary(
    migrated: Settings, world: World, monkeypatch: pytest.MonkeyPatch, generated: bool
) -> None:
    monkeypatch.setenv("VRECEPTION_DATA_DIR", str(migrated.data_dir))
    args = ["create-user", "--username", "clerk9", "--role", "archivist", "--court", "BASIC_A"]
    if not generated:
        args += ["--password", OWN]
    monkeypatch.setattr("sys.stdin", io.StringIO())  # not a terminal: generated
    assert await asyncio.to_thread(cli_main, args) == 0
    engine = create_engine(migrated)
    try:
        async with create_sessionmaker(engine)() as db:
            user = await db.scalar(select(User).where(User.username == "clerk9"))
    finally:
        await engine.dispose()
    assert user is not None and user.role is Role.archivist
    assert user.must_change_password is generated


async def test_a_password_reset_revokes_the_accounts_calendar_feeds(
    make_client: MakeClient, booking: Booking
) -> None:
    """A reset may follow a leak: the secret calendar URLs leaked with it stop working."""
    from tests.test_account_changes import _feed

    feed = await _feed(make_client, booking)
    reader = await make_client()
    assert (await reader.get(feed)).status == 200
    admin = await make_client()
    h = {"X-CSRF-Token": await login(admin, "admin")}
    judge_id = booking.world.users["judge_a"]
    r = await admin.post(f"/api/v1/users/{judge_id}/password", json={"password": CHOSEN}, headers=h)
    assert r.status == 200
    assert (await reader.get(feed)).status == 404


async def test_a_change_forgives_earlier_typos_as_a_login_does(
    make_client: MakeClient, world: World, migrated: Settings
) -> None:
    op = await make_client()
    csrf = await login(op, "op_b")
    for _ in range(migrated.login_max_failures_per_account - 1):
        assert (await _change(op, csrf, "Not-my-password-1", OWN))[0] == 422
    assert (await _change(op, csrf, PASSWORD, OWN))[0] == 200
    guest = await make_client()
    typo = await guest.post("/api/v1/auth/login", json={"username": "op_b", "password": "typo"})
    assert typo.status == 401 and "还可尝试" in (await typo.json())["error"]["message"]
    await login(guest, "op_b", OWN)


async def test_a_reset_by_an_admin_during_a_change_stands(
    make_client: MakeClient, world: World, migrated: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The admin's reset lands between the proof of the old password and the write of the
    new one: the change is refused, the reset (temporary, sessions ended) stands."""
    import sqlite3

    from scheduler import accounts

    def reset_meanwhile(password: str, min_length: int) -> str:
        with sqlite3.connect(migrated.data_dir / "vreception.db") as db:
            db.execute(
                "UPDATE users SET password_hash = ?, must_change_password = 1 WHERE username = ?",
                (accounts.hash_password(CHOSEN), "op_b"),
            )
            db.execute(
                "DELETE FROM staff_sessions WHERE user_id = (SELECT id FROM users"
                " WHERE username = 'op_b')"
            )
        return accounts.new_password_hash(password, min_length)

    op = await make_client()
    csrf = await login(op, "op_b")
    monkeypatch.setattr("web.handlers.auth.new_password_hash", reset_meanwhile)
    status, body = await _change(op, csrf, PASSWORD, OWN)
    assert status == 409 and body["error"]["code"] == "password_reset", body
    fresh = await make_client()
    await login(fresh, "op_b", CHOSEN)
    assert (await (await fresh.get("/api/v1/auth/me")).json())["must_change_password"] is True

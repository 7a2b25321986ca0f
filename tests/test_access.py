"""Who may call what: 401 without a session, 403 for the wrong role, court scope."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from config.db import create_engine, create_sessionmaker
from config.settings import Settings
from scheduler.models import Role, Visit
from tests.conftest import MakeClient
from tests.helpers import World, login
from web.routes import PATH_PARAM, api

ROLE_USER = {
    Role.admin: "admin",
    Role.operator: "op_a",
    Role.judge: "judge_a",
    Role.archivist: "arch_a",
    Role.petition_officer: "po_a",
    Role.leader: "leader_high",
}
ID_A = "11010519491231002X"
ID_B = "110101199003074477"


def _concrete(path: str) -> str:
    """A path that matches the route: ids 1, visit ids 32 hex digits."""
    return PATH_PARAM.sub(lambda m: "0" * 32 if "[0-9a-f]{32}" in m.group(2) else "1", path)


# open to people without an account on purpose: staff log in; a guest's join page asks which
# visit a code opens (rate-limited per address, spends nothing)
PUBLIC = {
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/visit-codes/lookup"),
    ("POST", "/api/v1/portal/code"),
    ("POST", "/api/v1/portal/session"),
}
# the petitioner portal's routes need a portal session instead of a staff one
PORTAL = "/api/v1/portal/"


async def test_every_route_but_login_and_the_code_lookup_needs_a_session(
    client: TestClient,
) -> None:
    checked = 0
    public = {(r.method, r.path) for r in api.routes if r.roles is None}
    assert {(m, p) for m, p in public if not p.startswith(PORTAL)} | PUBLIC == PUBLIC
    for route in api.routes:
        if (route.method, route.path) in PUBLIC:
            continue
        resp = await client.request(route.method, _concrete(route.path), json={})
        assert resp.status == 401, (route.method, route.path, resp.status)
        expected = "portal_login" if route.roles is None else "unauthenticated"
        assert (await resp.json())["error"]["code"] == expected, route.path
        checked += 1
    assert checked >= 15


async def test_wrong_role_gets_403_on_every_route(make_client: MakeClient, world: World) -> None:
    sessions: dict[Role, tuple[TestClient, str]] = {}
    for role, username in ROLE_USER.items():
        c = await make_client()
        sessions[role] = (c, await login(c, username))
    refused = 0
    for route in api.routes:
        if route.roles is None:
            continue
        for role in set(Role) - route.roles:
            c, csrf = sessions[role]
            resp = await c.request(
                route.method, _concrete(route.path), json={}, headers={"X-CSRF-Token": csrf}
            )
            assert resp.status == 403, (role, route.method, route.path, resp.status)
            assert (await resp.json())["error"]["code"] == "forbidden_role"
            refused += 1
    assert refused >= 20


@pytest.fixture
async def people(make_client: MakeClient, world: World) -> dict[str, object]:
    """Petitioners and petitions registered by the operators of court A and court B."""
    out: dict[str, object] = {}
    for op, id_number, court in (("op_a", ID_A, "a"), ("op_b", ID_B, "b")):
        c = await make_client()
        csrf = await login(c, op)
        r = await c.post(
            "/api/v1/petitioners",
            json={"name": f"信访人{court}", "id_number": id_number, "phone": "13812345678"},
            headers={"X-CSRF-Token": csrf},
        )
        assert r.status == 201, await r.text()
        petitioner = await r.json()
        assert petitioner["id_number_masked"] == id_number[:4] + "*" * 10 + id_number[-4:]
        assert petitioner["phone_masked"] == "138****5678"
        assert id_number not in await r.text() and "13812345678" not in await r.text()
        r = await c.post(
            "/api/v1/cases",
            json={
                "channel": "walk_in",
                "petitioners": [{"name": f"信访人{court}", "id_number": id_number}],
                "category": "enforcement",
                "summary": "请求执行",
                "original_numbers": [f"（2025）京0108执{len(out)}号"],
                "original_court": "北京市海淀区人民法院",
            },
            headers={"X-CSRF-Token": csrf},
        )
        assert r.status == 201, await r.text()
        out[f"petitioner_{court}"] = petitioner["id"]
        out[f"petition_{court}"] = (await r.json())["case"]["id"]
    return out


async def _visible(c: TestClient) -> tuple[set[int], set[int]]:
    ps = await (await c.get("/api/v1/petitioners")).json()
    ts = await (await c.get("/api/v1/petitions")).json()
    return {p["id"] for p in ps["items"]}, {t["id"] for t in ts["items"]}


async def test_court_scope_of_each_role(
    make_client: MakeClient, world: World, people: dict[str, int], migrated: Settings
) -> None:
    pa, pb = people["petitioner_a"], people["petitioner_b"]
    ta, tb = people["petition_a"], people["petition_b"]
    expect = {
        "op_a": ({pa}, {ta}),
        "op_b": ({pb}, {tb}),
        "arch_a": ({pa}, {ta}),
        "arch_high": ({pa, pb}, {ta, tb}),
        "admin": ({pa, pb}, {ta, tb}),
        "judge_a": (set(), set()),
    }
    clients = {}
    for username, (petitioners, petitions) in expect.items():
        c = await make_client()
        await login(c, username)
        clients[username] = c
        assert await _visible(c) == (petitioners, petitions), username

    # an operator of court A cannot read court B's petitioner, nor register into court B
    op_a = clients["op_a"]
    assert (await op_a.get(f"/api/v1/petitioners/{pb}")).status == 404
    assert (await op_a.get(f"/api/v1/petitions/{tb}")).status == 404
    assert (await op_a.get(f"/api/v1/petitioners/{pa}")).status == 200
    csrf = (await (await op_a.get("/api/v1/auth/me")).json())["csrf_token"]
    r = await op_a.post(
        "/api/v1/petitioners",
        json={"name": "x", "id_number": "110101199003071234", "court_id": world.courts["basic_b"]},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status == 403
    # a case is registered at the caller's own court only; there is no second path
    r = await op_a.post(
        "/api/v1/petitions",
        json={"petitioner_id": pb, "number": "X", "category": "other", "summary": "s"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status == 405

    # a judge sees a petitioner once a visit is addressed to the judge's court
    engine = create_engine(migrated)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            db.add(
                Visit(
                    petition_id=ta,
                    court_id=world.courts["basic_a"],
                    receiving_court_id=world.courts["mid_a"],
                )
            )
    finally:
        await engine.dispose()
    assert await _visible(clients["judge_a"]) == ({pa}, {ta})
    j = await make_client()
    await login(j, "judge_b")
    assert await _visible(j) == (set(), set())
    assert (await j.get(f"/api/v1/petitioners/{pa}")).status == 404


async def test_archivist_audit_scope(
    make_client: MakeClient, world: World, people: dict[str, int]
) -> None:
    arch = await make_client()
    await login(arch, "arch_a")
    events = (await (await arch.get("/api/v1/audit?action=petitioner.create")).json())["items"]
    assert {e["court_id"] for e in events} == {world.courts["basic_a"]}
    admin = await make_client()
    await login(admin, "admin")
    events = (await (await admin.get("/api/v1/audit?action=petitioner.create")).json())["items"]
    assert {e["court_id"] for e in events} == {world.courts["basic_a"], world.courts["basic_b"]}
    assert all(ID_A not in str(e["detail"]) for e in events)


async def test_audit_trail_cannot_be_edited_through_any_route(client: TestClient) -> None:
    audit_routes = [r for r in api.routes if "/audit" in r.path]
    assert {r.method for r in audit_routes} == {"GET"}  # the trail and its action names
    csrf = await login(client, "admin")
    for method in ("PUT", "PATCH", "DELETE", "POST"):
        r = await client.request(method, "/api/v1/audit", json={}, headers={"X-CSRF-Token": csrf})
        assert r.status == 405
        r = await client.request(method, "/api/v1/audit/1", headers={"X-CSRF-Token": csrf})
        assert r.status in (404, 405)

"""What every page carries: the site icon, served by this server (no external fetch); refused
input explained in Chinese."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from aiohttp.test_utils import TestClient

from tests.conftest import MakeClient
from tests.helpers import World, login
from web.pages import TEMPLATES

ICON_LINK = '<link rel="icon" href="/favicon.svg" type="image/svg+xml">'


async def test_favicon_is_an_svg_served_at_favicon_ico(client: TestClient) -> None:
    for path in ("/favicon.ico", "/favicon.svg"):
        r = await client.get(path)
        assert r.status == 200 and r.content_type == "image/svg+xml"
        root = ET.fromstring(await r.read())  # noqa: S314 (our own file)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert "http" not in (await r.text()).replace("http://www.w3.org/2000/svg", "")


async def test_every_page_links_the_favicon(make_client: MakeClient, world: World) -> None:
    anonymous = await make_client()
    seen = set()
    for path, template in (
        ("/login", "login.html"),
        ("/join", "join.html"),
        ("/p/", "portal.html"),
    ):
        html = await (await anonymous.get(path)).text()
        assert ICON_LINK in html, path
        seen.add(template)
    admin = await make_client()
    await login(admin, "admin")
    for path, template in (("/admin", "admin.html"), ("/archive", "archive.html")):
        assert ICON_LINK in await (await admin.get(path)).text(), path
        seen.add(template)
    forbidden = await admin.get("/operator")
    assert forbidden.status == 403 and ICON_LINK in await forbidden.text()
    seen.add("forbidden.html")
    op = await make_client()
    await login(op, "op_a")
    for path, template in (("/operator", "operator.html"), ("/call/" + "0" * 32, "call.html")):
        assert ICON_LINK in await (await op.get(path)).text(), path
        seen.add(template)
    judge = await make_client()
    await login(judge, "judge_a")
    assert ICON_LINK in await (await judge.get("/judge")).text()
    seen.add("judge.html")
    playback = await admin.get("/archive/visits/" + "0" * 32)
    assert ICON_LINK in await playback.text()
    seen.add("playback.html")
    for path, template in (
        ("/cases", "cases.html"),
        ("/cases/new", "case_new.html"),
        ("/cases/board", "case_board.html"),
        ("/cases/1", "case.html"),
        ("/meetings", "meetings.html"),
        ("/inbox", "inbox.html"),
        ("/stats", "stats.html"),
        ("/monitor", "monitor.html"),
        ("/password", "password.html"),
    ):
        assert ICON_LINK in await (await admin.get(path)).text(), path
        seen.add(template)
    assert ICON_LINK in await (await anonymous.get("/p/feedback")).text()
    seen.add("portal_feedback.html")
    assert seen == {p.name for p in TEMPLATES.glob("*.html")}  # no page left out


async def test_refused_fields_are_explained_in_chinese(client: TestClient) -> None:
    h = {"X-CSRF-Token": await login(client, "admin")}
    bad = {"username": "", "display_name": "名" * 100, "role": "boss", "court_id": "x"}
    r = await client.post("/api/v1/users", json=bad, headers=h)
    assert r.status == 422
    details = {d["field"]: d["message"] for d in (await r.json())["error"]["details"]}
    assert details == {
        "username": "用户名须为 3–64 位字母、数字、点、下划线或连字符",
        "display_name": "不能超过 64 个字符",
        "role": "不是可选的值",
        "court_id": "须为整数",
        "password": "必填",
    }


async def test_case_pages_open_to_case_roles_and_new_roles_land_on_the_case_list(
    make_client: MakeClient, world: World
) -> None:
    for username in ("po_high", "leader_high"):
        staff = await make_client()
        await login(staff, username)
        me = await (await staff.get("/api/v1/auth/me")).json()
        assert me["home"] == "/cases"
        home = await staff.get("/", allow_redirects=False)
        assert home.status == 302 and home.headers["Location"] == "/cases"
        for path in ("/cases", "/cases/new", "/cases/board", "/cases/7"):
            assert (await staff.get(path)).status == 200, (username, path)
        assert (await staff.get("/operator")).status == 403
    archivist = await make_client()
    await login(archivist, "arch_a")
    for path in ("/cases", "/cases/board", "/cases/7"):
        assert (await archivist.get(path)).status == 200, path
    refused = await archivist.get("/cases/new")  # archivists read cases, never register
    assert refused.status == 403 and "无权访问" in await refused.text()
    anonymous = await make_client()
    away = await anonymous.get("/cases/7", allow_redirects=False)
    assert away.status == 302 and away.headers["Location"] == "/login?next=/cases/7"

"""Helpers for tests against a whole server process: log in over HTTP, book a visit."""

from __future__ import annotations

import ssl
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from tests.conftest import LiveServer


async def http_login(http: aiohttp.ClientSession, node: LiveServer, user: str, pw: str) -> str:
    async with http.post(
        node.url + "/api/v1/auth/login", json={"username": user, "password": pw}
    ) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["csrf_token"])


async def checked_in_visit(
    node: LiveServer, passwords: dict[str, str], tls: ssl.SSLContext | None = None
) -> tuple[str, str]:
    """The operator books tomorrow's first free slot, checks in and issues the code
    (``tls``: how to verify an HTTPS server)."""
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        connector=aiohttp.TCPConnector(ssl=tls if tls is not None else True),
    ) as http:
        csrf = await http_login(http, node, "operator", passwords["operator"])
        headers = {"X-CSRF-Token": csrf}

        async def get(path: str, **params: Any) -> Any:
            async with http.get(node.url + path, params=params) as r:
                assert r.status == 200, await r.text()
                return await r.json()

        async def post(path: str, body: dict[str, Any] | None = None) -> Any:
            async with http.post(node.url + path, json=body or {}, headers=headers) as r:
                assert r.status in (200, 201), await r.text()
                return await r.json()

        receiving = next(c["id"] for c in await get("/api/v1/courts") if c["code"] == "BJ1Z")
        room = (await get("/api/v1/rooms"))[0]["id"]
        petition = (await get("/api/v1/petitions"))["items"][0]["id"]
        day = datetime.now(ZoneInfo("Asia/Shanghai")).date() + timedelta(days=1)
        while day.weekday() > 4:
            day += timedelta(days=1)
        slot = (
            await get(
                "/api/v1/free-slots",
                room_id=room,
                receiving_court_id=receiving,
                first=day.isoformat(),
                limit=1,
            )
        )[0]
        visit = await post(
            "/api/v1/visits",
            {
                "petition_id": petition,
                "receiving_court_id": receiving,
                "room_id": room,
                "starts_at": slot["starts_at"],
            },
        )
        await post(
            f"/api/v1/visits/{visit['id']}/check-in",
            {"document_type": "resident_id", "document_number": "11010519491231002X"},
        )
        code = (await post(f"/api/v1/visits/{visit['id']}/code"))["code"]
        return str(visit["id"]), str(code)

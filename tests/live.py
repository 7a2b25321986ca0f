"""Helpers for tests against a whole server process: log in over HTTP, book a visit, take
part in it as a socket.io client (publishing and receiving media with aiortc)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

import aiohttp
import socketio
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack, VideoStreamTrack

from media.transport import create_peer_connection


class Node(Protocol):
    """A server as clients reach it (a LiveServer, or nginx in front of several)."""

    @property
    def url(self) -> str: ...


async def http_login(http: aiohttp.ClientSession, node: Node, user: str, pw: str) -> str:
    async with http.post(
        node.url + "/api/v1/auth/login", json={"username": user, "password": pw}
    ) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["csrf_token"])


async def first_login(http: aiohttp.ClientSession, node: Node, user: str, chosen: str) -> str:
    """Log in a new account with the password an administrator chose and replace it, as its
    holder must; returns the new one (``chosen`` + "-own")."""
    csrf = await http_login(http, node, user, chosen)
    own = chosen + "-own"
    async with http.post(
        node.url + "/api/v1/auth/password",
        json={"current_password": chosen, "new_password": own},
        headers={"X-CSRF-Token": csrf},
    ) as r:
        assert r.status == 200, await r.text()
    async with http.post(node.url + "/api/v1/auth/logout", headers={"X-CSRF-Token": csrf}) as r:
        assert r.status == 200, await r.text()
    return own


T = TypeVar("T")


def beside_playwright(coroutine: Coroutine[Any, Any, T]) -> T:
    """An async helper run to completion beside Playwright's own event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def page_login(page: Any, node: Node, user: str, password: str, then: str) -> None:
    """Log a browser page in through the login page and land on ``then`` (a path)."""
    page.goto(node.url + "/login?next=" + then)
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("#login-submit")
    page.wait_for_url(node.url + then)
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)


async def checked_in_visit(
    node: Node, passwords: dict[str, str], tls: ssl.SSLContext | None = None
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


async def staff_cookie(
    node: Node, user: str, password: str, tls: ssl.SSLContext | None = None
) -> str:
    """A logged-in session's cookie value (it is good on every node of the cluster)."""
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        connector=aiohttp.TCPConnector(ssl=tls if tls is not None else True),
    ) as http:
        await http_login(http, node, user, password)
        return next(c.value for c in http.cookie_jar if c.key == "vr_session")


class Client:
    """A socket.io client of /visit on one node (``tls``: how to verify an HTTPS server)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.http: aiohttp.ClientSession | None = None
        if tls is not None:
            self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls))
        self.sio = socketio.AsyncClient(reconnection=False, http_session=self.http)
        self.lobby: asyncio.Queue[Any] = asyncio.Queue()
        self.tracks_changed: asyncio.Queue[Any] = asyncio.Queue()
        self.sio.on("lobby", self.lobby.put_nowait, namespace="/visit")
        self.sio.on("tracks_changed", self.tracks_changed.put_nowait, namespace="/visit")
        self.pcs: list[RTCPeerConnection] = []

    async def connect(self, node: Node, cookie: str | None = None) -> Client:
        headers = {"Cookie": f"vr_session={cookie}"} if cookie else {}
        await self.sio.connect(
            node.url, namespaces=["/visit"], headers=headers, transports=["websocket"]
        )
        return self

    async def call(self, event: str, data: Any = None) -> dict[str, Any]:
        return await self.sio.call(event, data or {}, namespace="/visit", timeout=30)  # type: ignore[no-any-return]

    async def wait_in_lobby(self, participant_id: str) -> None:
        """Until this (staff) client's lobby lists the participant."""
        while not any(
            p["participant_id"] == participant_id
            for p in (await asyncio.wait_for(self.lobby.get(), timeout=30))["waiting"]
        ):
            pass

    async def publish(self) -> None:
        """Camera and microphone (aiortc's test tracks)."""
        pc = create_peer_connection()
        self.pcs.append(pc)
        pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
        pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        answer = await self.call("publish", {"type": "offer", "sdp": pc.localDescription.sdp})
        assert answer["ok"], answer
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    async def subscribe(self) -> asyncio.Queue[MediaStreamTrack]:
        """The others' tracks, as they arrive (waits for a publisher if nobody publishes)."""
        offer = await self.call("subscribe")
        while offer["ok"] and offer["sdp"] is None:
            await asyncio.wait_for(self.tracks_changed.get(), timeout=30)
            offer = await self.call("subscribe")
        assert offer["ok"], offer
        tracks: asyncio.Queue[MediaStreamTrack] = asyncio.Queue()
        pc = create_peer_connection()
        self.pcs.append(pc)
        pc.on("track", tracks.put_nowait)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        sdp = pc.localDescription.sdp
        assert (await self.call("subscribe_answer", {"type": "answer", "sdp": sdp}))["ok"]
        return tracks

    async def close(self) -> None:
        for pc in self.pcs:
            await pc.close()
        await self.sio.disconnect()
        if self.http is not None:
            await self.http.close()

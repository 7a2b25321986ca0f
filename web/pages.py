"""The HTML pages (zh-CN): login, and one home page per role, guarded on the server."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web

from config import vocabulary
from scheduler import lifecycle
from scheduler.cases.rules import HANDLERS
from scheduler.models import Role
from scheduler.portal.feedback import INBOX_ROLES
from scheduler.stats.figures import STATS_ROLES
from web.auth import (
    SESSION_COOKIE,
    Principal,
    SessionProblem,
    client_address,
    load_principal,
    touch_session,
)
from web.handlers.auth import HOME
from web.keys import DB, SETTINGS

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
# The official socket.io browser client, installed from npm by scripts/bootstrap.
SOCKET_IO_CLIENT = (
    Path(__file__).parent / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
)
# Apache ECharts, the charts of the statistics page, installed from npm the same way.
ECHARTS = Path(__file__).parent / "node_modules" / "echarts" / "dist" / "echarts.min.js"
# Browser packages served from node_modules: /static/vendor/<name>
VENDOR = {"socket.io.min.js": SOCKET_IO_CLIENT, "echarts.min.js": ECHARTS}

# Petition cases: staff who handle them, and archivists who only read them; which cases
# each sees and what they may do to one is decided by the API (scheduler/cases/rules.py).
CASE_READERS = HANDLERS | {Role.archivist}

PAGES: dict[str, tuple[str, frozenset[Role]]] = {
    "/admin": ("admin.html", frozenset({Role.admin})),
    "/operator": ("operator.html", frozenset({Role.operator})),
    "/judge": ("judge.html", frozenset({Role.judge, Role.leader})),
    "/archive": ("archive.html", frozenset(Role)),  # every staff role searches its own reach
    # petitioners' questions and complaints (roles: scheduler.portal.feedback.INBOX_ROLES)
    "/inbox": ("inbox.html", INBOX_ROLES),
    # 监看: what is live below the court (who may watch is scheduler/lifecycle.py's rule)
    "/monitor": ("monitor.html", lifecycle.WATCHERS),
    # 信访大数据: figures of the court and the courts below it (scheduler/stats/figures.py)
    "/stats": ("stats.html", STATS_ROLES),
    "/cases": ("cases.html", CASE_READERS),
    "/cases/new": ("case_new.html", HANDLERS),
    "/cases/board": ("case_board.html", CASE_READERS),
    # video supervision meetings: who holds them, and the lower courts' staff invited
    "/meetings": (
        "meetings.html",
        frozenset({Role.judge, Role.petition_officer, Role.leader, Role.admin, Role.operator}),
    ),
}
# Who may open the call view at all (scheduler/lifecycle.py decides who enters which room).
CALL_ROLES = frozenset({Role.judge, Role.operator, Role.petition_officer, Role.leader, Role.admin})
# One recording's playback; which recordings a role may open is decided by the API.
PLAYBACK = (r"/archive/visits/{visit_id:[0-9a-f]{32}}", "playback.html", frozenset(Role))
# One case's page: its timeline, materials and the action forms the API offers.
CASE_PAGE = (r"/cases/{case_id:[0-9]{1,18}}", "case.html", CASE_READERS)

_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
        "connect-src 'self' ws: wss:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


FAVICON = STATIC / "favicon.svg"
# every page names the icon (an SVG served by this server: no external fetch)
_ICON_LINK = '<link rel="icon" href="/favicon.svg" type="image/svg+xml">'


def _html(name: str, status: int = 200, timezone: str | None = None) -> web.Response:
    body = (
        (TEMPLATES / name).read_text(encoding="utf-8").replace("</head>", _ICON_LINK + "</head>", 1)
    )
    if timezone is not None:  # the court's zone, for times the page itself formats
        body = body.replace("<body ", f'<body data-timezone="{html.escape(timezone)}" ', 1)
    return web.Response(
        text=body,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers=_SECURITY_HEADERS,
    )


# Where an account goes first when an administrator chose its password (and anyone changes
# their own); every other page sends it there.
PASSWORD_PAGE = "/password"  # noqa: S105 (a page, not a secret)


async def _role(request: web.Request) -> Role | None:
    principal = await page_principal(request)
    if principal is None:
        return None
    if principal.must_change_password and request.path != PASSWORD_PAGE:
        raise web.HTTPFound(PASSWORD_PAGE + "?" + urlencode({"next": request.path_qs}))
    return principal.role


async def page_principal(request: web.Request) -> Principal | None:
    """The staff member behind a page or socket request (refreshing the idle timer)."""
    settings = request.app[SETTINGS]
    database = request.app[DB]
    async with database.reader() as db:
        try:
            principal = await load_principal(
                db, settings, request.cookies.get(SESSION_COOKIE), client_address(request, settings)
            )
        except SessionProblem:
            return None
    if principal.needs_touch:
        async with database.writer() as db:
            await touch_session(db, principal.session_id)
    return principal


async def index(request: web.Request) -> web.StreamResponse:
    role = await _role(request)
    raise web.HTTPFound(HOME[role] if role else "/login")


async def login_page(request: web.Request) -> web.StreamResponse:
    role = await _role(request)
    if role is not None:
        raise web.HTTPFound(HOME[role])
    return _html("login.html")


def _guarded(
    template: str, roles: frozenset[Role]
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def page(request: web.Request) -> web.StreamResponse:
        role = await _role(request)
        if role is None:
            raise web.HTTPFound("/login?next=" + request.path)
        if role not in roles:
            return _html("forbidden.html", status=403)
        return _html(template)

    return page


async def vendor_file(request: web.Request) -> web.StreamResponse:
    """A browser package from web/node_modules (see :data:`VENDOR`)."""
    path = VENDOR[request.match_info["name"]]
    if not path.exists():
        raise web.HTTPNotFound(text=f"{path.name} not installed: run scripts/bootstrap")
    return web.FileResponse(path, headers={"Cache-Control": "max-age=3600"})


async def favicon(request: web.Request) -> web.StreamResponse:
    """The site icon, also at /favicon.ico for browsers that ask there unprompted."""
    return web.Response(
        body=FAVICON.read_bytes(),
        content_type="image/svg+xml",
        headers={"Cache-Control": "max-age=86400"},
    )


async def vocabulary_js(request: web.Request) -> web.StreamResponse:
    """The domain's words and their zh-CN labels (config/vocabulary.py) for every page:
    ``window.VOCABULARY[kind][value]``; pages keep no label maps of their own."""
    # each kind's words in their definition order (the workflow's, 其他 last): the order of
    # the pages' lists
    words = json.dumps(vocabulary.as_json(), ensure_ascii=False)
    return web.Response(
        text=f"window.VOCABULARY = Object.freeze({words});\n",
        content_type="application/javascript",
        charset="utf-8",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


async def join_page(request: web.Request) -> web.StreamResponse:
    """The guests' page (petitioner, lawyer, mediator): no account, a one-time code."""
    return _html("join.html", timezone=request.app[SETTINGS].timezone)


async def short_link(request: web.Request) -> web.StreamResponse:
    """An invitation's short link: the join page with the code filled in (in the fragment,
    which browsers do not send on; the code is spent only when the guest joins)."""
    raise web.HTTPFound("/join#fill=" + request.match_info["code"])


async def portal_page(request: web.Request) -> web.StreamResponse:
    """The petitioner portal (no account: name, ID number and an SMS code; see docs/portal.md)."""
    return _html("portal.html", timezone=request.app[SETTINGS].timezone)


async def portal_redirect(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/p/")


async def portal_feedback_page(request: web.Request) -> web.StreamResponse:
    """The petitioner's questions, ratings, mediation requests and complaints (portal session;
    the page sends a petitioner without one to ``/p/``)."""
    return _html("portal_feedback.html", timezone=request.app[SETTINGS].timezone)


async def call_page(request: web.Request) -> web.StreamResponse:
    """The staff call view of one visit or meeting (``?watch=1``: observing it, 监看); who
    may enter is decided by the signaling (a meeting's host and invitees may hold any of
    :data:`CALL_ROLES`)."""
    role = await _role(request)
    if role is None:
        raise web.HTTPFound("/login?next=" + request.path)
    if role not in CALL_ROLES and role not in lifecycle.WATCHERS:
        return _html("forbidden.html", status=403)
    return _html("call.html", timezone=request.app[SETTINGS].timezone)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/join", join_page)
    app.router.add_get("/p/", portal_page)
    app.router.add_get("/p", portal_redirect)
    app.router.add_get("/p/feedback", portal_feedback_page)
    app.router.add_get(r"/j/{code:[A-Za-z0-9-]{8,40}}", short_link)
    app.router.add_get(r"/call/{visit_id:[0-9a-f]{32}}", call_page)
    names = "|".join(re.escape(name) for name in VENDOR)
    app.router.add_get(f"/static/vendor/{{name:(?:{names})}}", vendor_file)
    app.router.add_get("/vocabulary.js", vocabulary_js)
    app.router.add_get("/", index)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/favicon.svg", favicon)
    app.router.add_get("/login", login_page)
    for path, (template, roles) in PAGES.items():
        app.router.add_get(path, _guarded(template, roles))
    app.router.add_get(PASSWORD_PAGE, _guarded("password.html", frozenset(Role)))
    app.router.add_get(PLAYBACK[0], _guarded(PLAYBACK[1], PLAYBACK[2]))
    app.router.add_get(CASE_PAGE[0], _guarded(CASE_PAGE[1], CASE_PAGE[2]))
    app.router.add_static("/static/", STATIC, follow_symlinks=False, append_version=True)

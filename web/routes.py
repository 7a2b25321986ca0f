"""The API route registry: each route declares its roles, body, query and answer.

The same declarations build the aiohttp routes and the OpenAPI 3 document, so the
document describes every route. Dispatch does, in order: session (401), CSRF (403),
role (403), a password an administrator chose and not yet replaced (403), body and query
validation (400/415/422), then the handler inside one database transaction, so a refused
or failed request writes nothing.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.json_schema import models_json_schema
from sqlalchemy.ext.asyncio import AsyncSession

from config.audit import record_audit
from config.errors import AppError, AuthenticationError, NotFoundError, PermissionDeniedError
from config.settings import Settings
from scheduler.models import Role
from scheduler.notify import push_all, take_outbox
from web.auth import (
    CSRF_HEADER,
    SESSION_COOKIE,
    Principal,
    SessionProblem,
    client_address,
    csrf_ok,
    load_principal,
    touch_session,
)
from web.keys import DB, NOTIFIER, SETTINGS
from web.schemas import ErrorAnswer

API_PREFIX = "/api/v1"
# {name} or {name:regex}, where the regex may hold {m,n} quantifiers
PATH_PARAM = re.compile(r"\{(\w+)(?::((?:[^{}]|\{[^{}]*\})*))?\}")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ALL_STAFF = frozenset(Role)


class BodyError(AppError):
    """The request body is not JSON of the expected shape."""


class MediaTypeError(AppError):
    """The request body is not declared as JSON."""

    status = 415
    code = "unsupported_media_type"


@dataclass
class Context:
    """What a handler gets: the request, the caller, the parsed input and the transaction."""

    request: web.Request
    db: AsyncSession
    settings: Settings
    principal: Principal | None
    body: Any
    query: Any
    address: str | None
    writer: Callable[[], AbstractAsyncContextManager[AsyncSession]] | None = None
    outbox: list[Any] = field(default_factory=list)
    committed: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def after_commit(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` once this request's changes are committed (e.g. close the sockets of
        a session that no longer exists)."""
        self.committed.append(work)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """The write transaction. On ``split`` routes ``db`` only reads, and this opens a
        short transaction under the write lock; elsewhere it is ``db`` itself."""
        if self.writer is None:
            yield self.db
            return
        async with self.writer() as session:
            yield session
            self.outbox.extend(take_outbox(session))

    async def fresh(self) -> None:
        """Let ``db`` see what ``write`` committed (ends a split route's read snapshot)."""
        if self.writer is not None:
            await self.db.rollback()

    def audit_visit(
        self,
        action: str,
        visit_id: str,
        court_id: int | None,
        db: AsyncSession | None = None,
        **detail: Any,
    ) -> None:
        """An audit event of the caller acting on a visit (in ``db``, default this request's
        transaction)."""
        record_audit(
            self.db if db is None else db,
            action=action,
            actor_id=self.me.user_id,
            actor_name=self.me.username,
            target_type="visit",
            target_id=visit_id,
            address=self.address,
            court_id=court_id,
            detail=detail,
        )

    @property
    def me(self) -> Principal:
        if self.principal is None:
            raise AuthenticationError("请先登录")
        return self.principal

    def path_id(self, name: str) -> int:
        raw = self.request.match_info[name]
        value = int(raw)
        if value < 1 or value > 2**31 - 1:
            raise NotFoundError("记录不存在")
        return value


Handler = Callable[[Context], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    """One API operation and everything the OpenAPI document says about it."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    roles: frozenset[Role] | None  # None: public
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    answer: Any = None
    status: int = 200
    errors: tuple[int, ...] = ()
    description: str = ""
    split: bool = False  # validate outside the write lock, write through ctx.write()
    # who is asking, checked before the body is read (public routes with their own session,
    # such as the petitioner portal's: no session is a 401, not a complaint about the body)
    guard: Callable[[Context], Awaitable[Any]] | None = None
    # open to an account that must first replace the password an administrator chose
    # (who am I, log out, change the password); every other route refuses it
    before_password_change: bool = False


@dataclass
class Registry:
    """All declared API routes."""

    routes: list[Route] = field(default_factory=list)

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        tag: str,
        roles: Iterable[Role] | None,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        answer: Any = None,
        status: int = 200,
        errors: tuple[int, ...] = (),
        split: bool = False,
        guard: Callable[[Context], Awaitable[Any]] | None = None,
        before_password_change: bool = False,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.routes.append(
                Route(
                    method=method.upper(),
                    path=API_PREFIX + path,
                    handler=handler,
                    summary=summary,
                    tag=tag,
                    roles=None if roles is None else frozenset(roles),
                    body=body,
                    query=query,
                    answer=answer,
                    status=status,
                    errors=errors,
                    description=(handler.__doc__ or "").strip(),
                    split=split,
                    guard=guard,
                    before_password_change=before_password_change,
                )
            )
            return handler

        return register

    def add_to(self, app: web.Application) -> None:
        for route in self.routes:
            app.router.add_route(route.method, route.path, _make_view(route))


api = Registry()


# pydantic's error types in the words pages show; ``{…}`` are the error's context values
_VALIDATION_TEXT = {
    "missing": "必填",
    "string_too_short": "至少需要 {min_length} 个字符",
    "string_too_long": "不能超过 {max_length} 个字符",
    "string_pattern_mismatch": "格式不正确",
    "string_type": "须为文字",
    "too_short": "至少需要 {min_length} 项",
    "too_long": "不能超过 {max_length} 项",
    "int_parsing": "须为整数",
    "int_type": "须为整数",
    "int_from_float": "须为整数",
    "float_parsing": "须为数字",
    "float_type": "须为数字",
    "bool_parsing": "须为是或否",
    "bool_type": "须为是或否",
    "greater_than": "须大于 {gt}",
    "greater_than_equal": "不能小于 {ge}",
    "less_than": "须小于 {lt}",
    "less_than_equal": "不能大于 {le}",
    "enum": "不是可选的值",
    "literal_error": "不是可选的值",
    "date_parsing": "日期格式不正确（应为 YYYY-MM-DD）",
    "date_from_datetime_parsing": "日期格式不正确（应为 YYYY-MM-DD）",
    "datetime_parsing": "时间格式不正确（应含日期、时间和时区）",
    "datetime_from_date_parsing": "时间格式不正确（应含日期、时间和时区）",
    "timezone_aware": "时间须带时区（如 +08:00）",
    "extra_forbidden": "不允许的字段",
    "dict_type": "须为对象",
    "list_type": "须为列表",
    "model_type": "须为对象",
}


def _validation_message(err: Any) -> str:
    if err["type"] == "value_error":  # our own validators already speak Chinese
        return str(err["msg"]).removeprefix("Value error, ")
    text = _VALIDATION_TEXT.get(err["type"], "取值无效")
    try:
        return text.format(**err.get("ctx", {}))
    except (KeyError, IndexError):
        return "取值无效"


def _validation_details(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {
            "field": ".".join(str(p) for p in err["loc"]) or "(body)",
            "message": _validation_message(err),
            "type": err["type"],
        }
        for err in exc.errors(include_url=False, include_input=False)
    ]


def _validate_body(request: web.Request, raw: bytes | None, model: type[BaseModel]) -> BaseModel:
    raw = raw or b""
    if request.content_type != "application/json":
        raise MediaTypeError("请求体须为 JSON（Content-Type: application/json）")
    if not raw.strip():
        raise BodyError("缺少请求体", code="malformed_json")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        if any(err["type"] == "json_invalid" for err in exc.errors()):
            raise BodyError("请求体不是有效的 JSON", code="malformed_json") from None
        raise _invalid(exc) from None


def _invalid(exc: ValidationError) -> AppError:
    error = AppError("输入有误", code="validation_failed", details=_validation_details(exc))
    error.status = 422
    return error


def _make_view(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(
        request: web.Request,
        db: AsyncSession,
        raw: bytes | None,
        write: bool,
        writer: Callable[[], AbstractAsyncContextManager[AsyncSession]] | None = None,
    ) -> tuple[Any, Principal | None, Context]:
        settings = request.app[SETTINGS]
        address = client_address(request, settings)
        principal: Principal | None = None
        if route.roles is not None:
            try:
                principal = await load_principal(
                    db, settings, request.cookies.get(SESSION_COOKIE), address
                )
            except SessionProblem as problem:
                if problem.reason == "expired":
                    raise AuthenticationError(
                        "会话已过期，请重新登录", code="session_expired"
                    ) from None
                raise AuthenticationError("请先登录", code="unauthenticated") from None
            if write and not csrf_ok(principal, request.headers.get(CSRF_HEADER)):
                raise PermissionDeniedError("CSRF 校验失败，请刷新页面后重试", code="csrf_failed")
            if principal.role not in route.roles:
                raise PermissionDeniedError("您的角色无权执行此操作", code="forbidden_role")
            if principal.must_change_password and not route.before_password_change:
                raise PermissionDeniedError(
                    "请先修改管理员为您设置的初始密码", code="password_change_required"
                )
            if write and writer is None and principal.needs_touch:
                await touch_session(db, principal.session_id)
        if route.guard is not None:
            await route.guard(
                Context(
                    request=request,
                    db=db,
                    settings=settings,
                    principal=principal,
                    body=None,
                    query=None,
                    address=address,
                    writer=writer,
                )
            )
        body = _validate_body(request, raw, route.body) if route.body else None
        query = None
        if route.query is not None:
            try:
                query = route.query.model_validate(dict(request.query))
            except ValidationError as exc:
                raise _invalid(exc) from None
        ctx = Context(
            request=request,
            db=db,
            settings=settings,
            principal=principal,
            body=body,
            query=query,
            address=address,
            writer=writer,
        )
        return await route.handler(ctx), principal, ctx

    async def view(request: web.Request) -> web.StreamResponse:
        database = request.app[DB]
        write = request.method not in SAFE_METHODS
        # read the body before taking the write lock: a slow client must not hold it
        raw = await request.read() if route.body else None
        principal: Principal | None = None
        # Splitting pays off only where writers are serialized; elsewhere it would hold
        # two pooled connections per request.
        if write and not (route.split and database.serialized):
            async with database.writer() as db:
                result, _, ctx = await handle(request, db, raw, write=True)
                outbox = take_outbox(db)
        else:
            async with database.reader() as db:
                result, principal, ctx = await handle(
                    request, db, raw, write=write, writer=database.writer if write else None
                )
                outbox = ctx.outbox
        await push_all(request.app.get(NOTIFIER), outbox)
        for work in ctx.committed:
            await work()
        if principal is not None and principal.needs_touch:
            async with database.writer() as db:
                await touch_session(db, principal.session_id)
        if isinstance(result, web.StreamResponse):
            return result
        return json_response(result, status=route.status)

    view.__name__ = route.handler.__name__
    return view


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


def json_response(value: Any, status: int = 200) -> web.Response:
    """An answer (see :func:`json_body`) as a JSON response."""
    return web.Response(
        body=json_body(value), status=status, content_type="application/json", charset="utf-8"
    )


def json_body(value: Any) -> bytes:
    """An answer as UTF-8 JSON: a model, or a list of models of one class, written by
    pydantic; anything else through :func:`to_json`."""
    if isinstance(value, BaseModel):
        return value.__pydantic_serializer__.to_json(value)
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        cls = type(value[0])
        if all(type(v) is cls for v in value):
            return _list_of(cls).dump_json(value)
    return _dumps(to_json(value)).encode()


@functools.cache
def _list_of(cls: type[BaseModel]) -> TypeAdapter[Any]:
    """A list of ``cls`` written by pydantic itself: several times faster than turning the
    models into dicts first and those into text."""
    return TypeAdapter(list[cls])  # type: ignore[valid-type]


def to_json(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------- OpenAPI

_ERROR_TEXT = {
    400: "Malformed request (bad JSON, wrong content type)",
    401: "No valid session",
    403: "Role, court scope or CSRF token refused, or the password must be changed first",
    404: "No such record (or not visible to the caller)",
    409: "Conflicts with a stored record",
    413: "Body larger than the limit",
    415: "Body is not application/json",
    422: "Input breaks a validation rule",
    429: "Too many attempts",
}


def openapi_document(registry: Registry, title: str, version: str) -> dict[str, Any]:
    """An OpenAPI 3.1 document describing every registered route."""
    models: set[type[BaseModel]] = {ErrorAnswer}
    for route in registry.routes:
        for model in (route.body, route.query, _item_model(route.answer) or route.answer):
            if isinstance(model, type) and issubclass(model, BaseModel):
                models.add(model)
    ordered = sorted(models, key=lambda m: m.__name__)
    keyed: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (m, "validation" if _is_input(m, registry) else "serialization") for m in ordered
    ]
    refs, schema = models_json_schema(keyed, ref_template="#/components/schemas/{model}")
    components = schema.get("$defs", {})

    def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
        return dict(refs[(model, mode)])  # type: ignore[index]

    paths: dict[str, dict[str, Any]] = {}
    for route in registry.routes:
        oas_path = PATH_PARAM.sub(r"{\1}", route.path)
        op: dict[str, Any] = {
            "operationId": route.handler.__name__,
            "summary": route.summary,
            "tags": [route.tag],
            "responses": {},
        }
        if route.description:
            op["description"] = route.description
        params = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "integer"} if pattern == r"\d+" else {"type": "string"},
            }
            for name, pattern in PATH_PARAM.findall(route.path)
        ]
        if route.query is not None:
            qschema = route.query.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in qschema.get("$defs", {}).items():
                components.setdefault(name, sub)
            for name, prop in qschema.get("properties", {}).items():
                params.append(
                    {
                        "name": name,
                        "in": "query",
                        "required": name in qschema.get("required", []),
                        "schema": prop,
                    }
                )
        if params:
            op["parameters"] = params
        if route.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref(route.body, "validation")}},
            }
        item = _item_model(route.answer)
        if isinstance(route.answer, type) and issubclass(route.answer, BaseModel):
            content = {"application/json": {"schema": ref(route.answer, "serialization")}}
            op["responses"][str(route.status)] = {"description": "Success", "content": content}
        elif item is not None:
            schema = {"type": "array", "items": ref(item, "serialization")}
            content = {"application/json": {"schema": schema}}
            op["responses"][str(route.status)] = {"description": "Success", "content": content}
        else:
            op["responses"][str(route.status)] = {"description": "Success"}
        codes = set(route.errors)
        if route.roles is not None:
            op["security"] = [{"cookieSession": []}]
            op["x-roles"] = sorted(r.value for r in route.roles)
            codes |= {401, 403}
        else:
            op["security"] = []
        if route.body is not None:
            codes |= {400, 413, 415, 422}
        if route.query is not None:
            codes.add(422)
        if "{" in route.path:
            codes.add(404)
        err = {"application/json": {"schema": ref(ErrorAnswer, "serialization")}}
        for code in sorted(codes):
            op["responses"][str(code)] = {"description": _ERROR_TEXT[code], "content": err}
        paths.setdefault(oas_path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "cookieSession": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": SESSION_COOKIE,
                    "description": "Session cookie set by POST /api/v1/auth/login. "
                    "State-changing requests also need the X-CSRF-Token header.",
                }
            },
        },
    }


def _item_model(answer: Any) -> type[BaseModel] | None:
    """``X`` for an answer declared as ``list[X]``."""
    if get_origin(answer) is list:
        (item,) = get_args(answer)
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item
    return None


def _is_input(model: type[BaseModel], registry: Registry) -> bool:
    return any(model in (r.body, r.query) for r in registry.routes)

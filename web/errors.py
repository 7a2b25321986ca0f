"""Every error answer is ``{"error": {"code", "message"}}`` with the right status, never a trace."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from config.errors import AppError, RateLimitedError

log = logging.getLogger("vreception.web")

_HTTP_CODES = {
    400: ("bad_request", "请求无效"),
    401: ("unauthenticated", "请先登录"),
    403: ("forbidden", "无权访问"),
    404: ("not_found", "请求的资源不存在"),
    405: ("method_not_allowed", "不支持该请求方法"),
    409: ("conflict", "与已有记录冲突"),
    413: ("body_too_large", "请求体过大（上限 1 MiB）"),
    415: ("unsupported_media_type", "请求体须为 JSON"),
    422: ("validation_failed", "输入有误"),
    429: ("rate_limited", "请求过于频繁"),
}


def error_response(
    status: int, code: str, message: str, details: Any | None = None
) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return web.json_response(
        {"error": body}, status=status, dumps=lambda v: json.dumps(v, ensure_ascii=False)
    )


def app_error_response(exc: AppError) -> web.Response:
    response = error_response(exc.status, exc.code, exc.message, exc.details)
    if isinstance(exc, RateLimitedError):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _wants_html(request: web.Request) -> bool:
    return not request.path.startswith("/api/") and "text/html" in request.headers.get("Accept", "")


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turn every failure into a JSON error (or a plain page for browsers on page routes)."""
    try:
        return await handler(request)
    except AppError as exc:
        return app_error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if _wants_html(request):
            raise
        code, message = _HTTP_CODES.get(exc.status, ("http_error", exc.reason))
        response = error_response(exc.status, code, message)
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except IntegrityError:
        log.info("integrity error on %s %s", request.method, request.path)
        return error_response(409, "conflict", "与已有记录冲突，未作任何修改")
    except (OperationalError, InterfaceError, ConnectionError, TimeoutError):
        log.exception("database error on %s %s", request.method, request.path)
        return error_response(503, "database_unavailable", "数据库暂不可用，请稍后重试")
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "服务器内部错误，已记录")

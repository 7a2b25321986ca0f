"""Guests' one-time codes: which visit a code opens, so the join page needs the code alone."""

from __future__ import annotations

from pydantic import Field

from config.errors import RateLimitedError
from scheduler.codes import verify_visit_code
from web.keys import SECRET, THROTTLE
from web.routes import Context, api
from web.schemas import Answer, Body


class CodeLookup(Body):
    code: str = Field(min_length=8, max_length=40)


class CodeVisit(Answer):
    visit_id: str


@api.route(
    "POST",
    "/visit-codes/lookup",
    summary="The visit an unspent visit code belongs to",
    tag="visits",
    roles=None,
    body=CodeLookup,
    answer=CodeVisit,
    errors=(401, 429),
    split=True,
)
async def lookup_code(ctx: Context) -> CodeVisit:
    """Tells the join page which visit a code opens, without spending it (``join`` spends it).

    Wrong codes count as guesses per address, with the login's limits (429 with
    Retry-After beyond them); a code that is expired, used or revoked is refused as in
    ``join``.
    """
    body: CodeLookup = ctx.body
    throttle = ctx.request.app[THROTTLE]
    settings = ctx.settings
    key = "visit-code:" + (ctx.address or "unknown")
    limit, window = settings.login_max_failures_per_address, settings.login_failure_window_seconds
    count, token = await throttle.hit(key, window)
    if count > limit:
        await throttle.release(key, token)  # a refused attempt is not a guess
        wait = await throttle.retry_after(key, limit, window)
        raise RateLimitedError(f"尝试次数过多，请 {wait} 秒后再试", retry_after=wait)
    record = await verify_visit_code(
        ctx.db, secret=ctx.request.app[SECRET], code=body.code, consume=False
    )
    await throttle.release(key, token)  # a valid code is no guess
    return CodeVisit(visit_id=record.visit_id)

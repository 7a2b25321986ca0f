"""Petition statistics (信访大数据): the dashboard, its CSV and XLSX export, the monthly PDF
report (月度通报) and the import of cases decided per court and month. Figures are defined
in scheduler/stats/figures.py; every export and report is audited."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from config.db import utcnow
from config.errors import InvalidError
from scheduler.stats import counts, export, figures, report
from web.handlers.archive import audit_now
from web.keys import DB
from web.routes import Context, api
from web.schemas import Answer, Query


class StatsQuery(Query):
    court_id: int | None = Field(None, ge=1, le=2**31 - 1)
    from_: str | None = Field(None, alias="from", max_length=16)
    to: str | None = Field(None, max_length=16)


class ExportQuery(StatsQuery):
    format: Literal["csv", "xlsx"] = "xlsx"


class ReportQuery(Query):
    court_id: int | None = Field(None, ge=1, le=2**31 - 1)
    month: str | None = Field(None, max_length=16)


class CaseCountsOut(Answer):
    imported: int


async def _board(ctx: Context) -> figures.Dashboard:
    query: StatsQuery = ctx.query
    period = figures.parse_period(query.from_, query.to, ctx.settings.tz)
    scope = await figures.scope_for(ctx.db, ctx.me.actor(), query.court_id)
    return await figures.fresh_dashboard(
        ctx.request.app[DB],
        ctx.db,
        scope,
        period,
        _max_age(ctx),
    )


def _max_age(ctx: Context) -> timedelta:
    """How old a stored month of statistics may be (stats_refresh_seconds)."""
    return timedelta(seconds=ctx.settings.stats_refresh_seconds)


@api.route(
    "GET",
    "/stats",
    summary="Petition statistics of a court and the courts below it for a period",
    tag="stats",
    roles=figures.STATS_ROLES,
    query=StatsQuery,
    errors=(403, 404, 422),
)
async def get_stats(ctx: Context) -> dict[str, Any]:
    """Every figure of docs/statistics.md for ``court_id`` (default: the caller's court)
    from month ``from`` to month ``to`` (YYYY-MM), rolled up per child court, and the
    ranking of the child courts (通报)."""
    return (await _board(ctx)).as_dict()


@api.route(
    "GET",
    "/stats/export",
    summary="The statistics tables as CSV or XLSX",
    tag="stats",
    roles=figures.STATS_ROLES,
    query=ExportQuery,
    errors=(403, 404, 422),
)
async def export_stats(ctx: Context) -> web.Response:
    board = await _board(ctx)
    query: ExportQuery = ctx.query
    name = f"stats-{board.scope.root.id}-{board.period.first}-{board.period.last}"
    if query.format == "csv":
        body, kind = export.to_csv(board), "text/csv; charset=utf-8"
    else:
        body = export.to_xlsx(board)
        kind = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    await audit_now(
        ctx,
        "stats.exported",
        None,
        court=board.scope.root.name,
        first=board.period.first,
        last=board.period.last,
        format=query.format.upper(),
    )
    return _download(body, kind, f"{name}.{query.format}")


def _download(body: bytes, kind: str, name: str) -> web.Response:
    return web.Response(
        body=body,
        headers={"Content-Type": kind, "Content-Disposition": f'attachment; filename="{name}"'},
    )


@api.route(
    "GET",
    "/stats/report",
    summary="The monthly report (月度信访工作通报) of a court as PDF",
    tag="stats",
    roles=figures.STATS_ROLES,
    query=ReportQuery,
    errors=(403, 404, 422),
)
async def monthly_report(ctx: Context) -> web.Response:
    """The key figures of ``month`` (YYYY-MM) beside the month before, charts and the
    ranking of the courts below ``court_id`` (default: the caller's court), as an A4 PDF.
    Refused for a month after the current one or before the court's first record."""
    query: ReportQuery = ctx.query
    scope = await figures.scope_for(ctx.db, ctx.me.actor(), query.court_id)
    now = utcnow()
    period = await report.report_month(ctx.db, scope, query.month, ctx.settings.tz, now)
    built = await report.build(ctx.request.app[DB], ctx.db, scope, period, _max_age(ctx), now)
    body = await asyncio.to_thread(report.to_pdf, built)
    await audit_now(ctx, "stats.report", None, court=scope.root.name, month=period.first)
    return _download(body, "application/pdf", f"report-{scope.root.id}-{period.first}.pdf")


@api.route(
    "POST",
    "/stats/case-counts",
    summary="Import cases decided per court and month (CSV), all rows or none",
    tag="stats",
    roles=figures.STATS_ROLES,
    answer=CaseCountsOut,
    errors=(403, 413, 415, 422),
)
async def import_case_counts(ctx: Context) -> CaseCountsOut:
    """Body: ``text/csv``, header ``court_code,month,decided_count``. Every row is
    checked before any is stored; a row replaces the stored count of its court and month.
    Courts must be the caller's court or below it."""
    if ctx.request.content_type not in ("text/csv", "text/plain", "application/octet-stream"):
        raise InvalidError("请以 text/csv 上传结案数文件")
    # read(n) gives what has arrived so far, not the whole body: read to its end (or past
    # the limit, which the import refuses), or a file sent in pieces is cut short
    data = bytearray()
    while len(data) <= counts.MAX_BYTES:
        piece = await ctx.request.content.read(counts.MAX_BYTES + 1 - len(data))
        if not piece:
            break
        data += piece
    imported = await counts.import_case_counts(ctx.db, ctx.me.actor(), bytes(data))
    return CaseCountsOut(imported=imported)

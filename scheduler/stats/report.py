"""The monthly report (月度信访工作通报) of a court scope as a PDF.

Every number in it comes from :mod:`scheduler.stats.figures` (the month, the month before
and a twelve-month trend are three :func:`figures.fresh_dashboard` calls) and the ranking table is
the ranking table of the CSV/XLSX export (:func:`export.tables`). Charts are drawn with
matplotlib's SVG backend in the Noto CJK font (fonts-noto-cjk) and embedded in an HTML page
that WeasyPrint lays out on A4 with page numbers in the footer. Nothing is fetched from the
network: the only resources WeasyPrint may open are the ``data:`` URIs of the charts.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from config.db import Database
from config.errors import InvalidError
from scheduler.cases.models import Contact
from scheduler.models import Court
from scheduler.stats import export, figures
from scheduler.stats.figures import NO_DATA, Dashboard, Period, Scope, number_text

TITLE = "月度信访工作通报"
KEY_FIGURES = figures.REPORT  # each with the month before beside it
TREND_MONTHS = 12
RANKING_CHART_MAX = 40  # courts drawn in the ranking chart; the table lists all
CHART_CHANNEL = "信访量（按渠道）"
CHART_TREND = "信访量月度趋势（近 12 个月）"
CHART_RANKING = "下级法院化解率排名"
FONT = "Noto Sans CJK SC"
TITLE_FONT = "Noto Serif CJK SC"


# ------------------------------------------------------------------ the month


def month_text(month: str) -> str:
    """``2025-11`` → ``2025年11月``."""
    return f"{int(month[:4])}年{int(month[5:7])}月"


async def earliest_month(db: AsyncSession, scope: Scope, tz: ZoneInfo) -> str | None:
    """The local month of the scope's first contact (信访记录), or None without any: the
    earliest of each court's first contact, one seek per court on its (court, time) index
    rather than a scan of every contact."""
    per_court = (
        select(func.min(Contact.occurred_at))
        .where(Contact.court_id == Court.id)
        .correlate(Court)
        .scalar_subquery()
    )
    first = await db.scalar(select(func.min(per_court)).where(scope.where(Court.id)))
    if first is None:
        return None
    return str(first.astimezone(tz).strftime("%Y-%m"))


async def report_month(
    db: AsyncSession, scope: Scope, text: str | None, tz: ZoneInfo, now: datetime
) -> Period:
    """The month a report is asked for; refused (in Chinese) when malformed, after the
    current month, or before the scope's first record."""
    period = figures.parse_month(text, tz)
    current = now.astimezone(tz).strftime("%Y-%m")
    if period.first > current:
        raise InvalidError(
            f"通报月份 {period.first} 尚未到来，最晚可选本月（{current}）",
            code="month_in_future",
        )
    first = await earliest_month(db, scope, tz)
    if first is None:
        raise InvalidError(f"{scope.root.name}及下级法院尚无信访记录，无法生成通报")
    if period.first < first:
        raise InvalidError(
            f"通报月份 {period.first} 早于{scope.root.name}最早的信访记录（{first}），"
            "没有可通报的数据",
            code="month_before_data",
        )
    return period


# ------------------------------------------------------------------ the figures


@dataclass(frozen=True)
class MonthlyReport:
    board: Dashboard  # the month, every figure
    previous: Dashboard  # the month before, the key figures
    trend: Dashboard  # volume by month over the TREND_MONTHS months up to the month
    generated_at: datetime  # court local time

    @property
    def month(self) -> str:
        return self.board.period.first

    def key_rows(self) -> list[tuple[str, str, str, str, str]]:
        """(figure, this month, the month before, change, unit) for each key figure."""
        rows = []
        for key in KEY_FIGURES:
            now = self.board.result(key)
            before = self.previous.result(key)
            rows.append(
                (
                    now.figure.label,
                    _text(now.total),
                    _text(before.total),
                    _change(now.total, before.total),
                    now.figure.unit,
                )
            )
        return rows


def _text(cell: figures.Cell | None) -> str:
    return NO_DATA if cell is None or cell.value is None else number_text(cell.value)


def _change(now: figures.Cell | None, before: figures.Cell | None) -> str:
    if now is None or before is None or now.value is None or before.value is None:
        return "—"
    diff = round(now.value - before.value, 2)
    if not diff:
        return "持平"
    return ("+" if diff > 0 else "-") + number_text(abs(diff))


async def build(
    database: Database,
    db: AsyncSession,
    scope: Scope,
    period: Period,
    max_age: timedelta,
    generated_at: datetime,
) -> MonthlyReport:
    """The figures of the report of ``scope`` for the month ``period``, from the monthly
    store brought up to date as for the dashboard (``db`` is a reader)."""
    tz = period.tz
    before = figures.parse_month(figures.shift_month(period.first, -1), tz)
    trend = figures.parse_period(
        figures.shift_month(period.first, 1 - TREND_MONTHS), period.first, tz
    )

    async def board(of: Period, keys: tuple[str, ...] | None = None) -> Dashboard:
        return await figures.fresh_dashboard(database, db, scope, of, max_age, keys)

    return MonthlyReport(
        board=await board(period),
        previous=await board(before, KEY_FIGURES),
        trend=await board(trend, ("volume_month",)),
        generated_at=generated_at.astimezone(tz),
    )


# ------------------------------------------------------------------ charts


def _svg(draw: Any, height: float) -> str:
    """An SVG chart (6.4 in wide) drawn by ``draw(axes)``, text as outlines in Noto CJK."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(
        {
            "font.family": [FONT],
            "font.size": 9,
            "svg.fonttype": "path",  # glyphs as outlines: the PDF needs no chart fonts
            "svg.hashsalt": "vreception",
            "axes.unicode_minus": False,
        }
    ):
        fig = Figure(figsize=(6.4, height))
        axes = fig.add_subplot()
        draw(axes)
        axes.spines[["top", "right"]].set_visible(False)
        fig.tight_layout()
        out = io.StringIO()
        fig.savefig(out, format="svg", metadata={"Date": None})
    return out.getvalue()


def channel_chart(report: MonthlyReport) -> str:
    result = report.board.result("volume_channel")
    names = [result.figure.key_label(k) for k, _ in result.by_key]
    values = [c.num for _, c in result.by_key]

    def draw(axes: Any) -> None:
        bars = axes.bar(names, values, color="#1f5fa8")
        axes.bar_label(bars, labels=[number_text(v) for v in values])
        axes.set_ylabel(result.figure.unit)

    return _svg(draw, 3.0)


def trend_chart(report: MonthlyReport) -> str:
    result = report.trend.result("volume_month")
    counts = {k: c.num for k, c in result.by_key}
    months = report.trend.period.months
    values = [counts.get(m, 0.0) for m in months]

    def draw(axes: Any) -> None:
        axes.plot(list(months), values, marker="o", color="#c0392b")
        for x, y in enumerate(values):
            axes.annotate(
                number_text(y),
                (x, y),
                textcoords="offset points",
                xytext=(0, 5),
                ha="center",
                fontsize=7,
            )
        axes.set_ylabel(result.figure.unit)
        axes.set_ylim(bottom=0)
        axes.tick_params(axis="x", labelrotation=45)

    return _svg(draw, 3.0)


def ranking_chart(ranking: Sequence[dict[str, Any]]) -> str:
    shown = list(ranking[:RANKING_CHART_MAX])
    names = [f"{r['rank']}. {r['name']}" for r in shown][::-1]
    values = [r["resolution_rate"] or 0.0 for r in shown][::-1]
    labels = [
        NO_DATA if r["resolution_rate"] is None else f"{number_text(r['resolution_rate'])}%"
        for r in shown
    ][::-1]

    def draw(axes: Any) -> None:
        bars = axes.barh(names, values, color="#2e8b57")
        axes.bar_label(bars, labels=labels, padding=2, fontsize=7)
        axes.set_xlabel(figures.BY_KEY["resolution_rate"].unit)
        axes.set_xlim(0, 110)

    return _svg(draw, 1.0 + 0.24 * max(len(shown), 2))


# ------------------------------------------------------------------ the document

_KEY_NOTE = (
    f"各项指标的统计口径见《信访统计口径》（docs/statistics.md）；“{NO_DATA}”表示该期间没有"
    "可计算的数据。"
)
_CSS = f"""
@page {{
  size: A4; margin: 22mm 18mm 20mm 18mm;
  @bottom-center {{ content: "第 " counter(page) " 页，共 " counter(pages) " 页";
                    font-family: "{FONT}"; font-size: 9pt; color: #555; }}
}}
body {{ font-family: "{FONT}"; font-size: 10.5pt; color: #111; }}
h1, .cover .court {{ font-family: "{TITLE_FONT}"; }}
section {{ break-before: page; }}
section.cover {{ break-before: auto; text-align: center; padding-top: 55mm; }}
.cover h1 {{ font-size: 28pt; color: #b22222; margin: 10mm 0; letter-spacing: 2pt; }}
.cover .court {{ font-size: 18pt; }}
.cover .month {{ font-size: 16pt; margin-top: 8mm; }}
.cover .meta {{ font-size: 11pt; color: #333; margin-top: 4mm; }}
h2 {{ font-size: 15pt; border-bottom: 1.5pt solid #b22222; padding-bottom: 2mm; }}
h3 {{ font-size: 12pt; margin: 6mm 0 2mm; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border: 0.6pt solid #888; padding: 1.6mm 2mm; text-align: center; }}
th {{ background: #eef2f7; }}
thead {{ display: table-header-group; }}
tr {{ break-inside: avoid; }}
td.name {{ text-align: left; }}
table.ranking {{ font-size: 8.5pt; }}
table.ranking td.name {{ white-space: nowrap; }}
img.chart {{ width: 100%; }}
.note {{ font-size: 9pt; color: #555; }}
"""


def _e(value: Any) -> str:
    if isinstance(value, float):
        value = number_text(value)
    return html.escape(str(value))


def _table(
    header: Sequence[Any], rows: Sequence[Sequence[Any]], name_col: int, css: str = ""
) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="name">{_e(v)}</td>' if i == name_col else f"<td>{_e(v)}</td>"
            for i, v in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _chart(title: str, svg: str) -> str:
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return (
        f"<h3>{_e(title)}</h3>"
        f'<img class="chart" alt="{_e(title)}" src="data:image/svg+xml;base64,{data}">'
    )


def render_html(report: MonthlyReport) -> str:
    """The report as one self-contained HTML page (the charts inline as ``data:`` URIs)."""
    board = report.board
    court = board.scope.root.name
    month = month_text(report.month)
    before = month_text(report.previous.period.first)
    stamp = report.generated_at
    offset = stamp.strftime("%z")
    generated = (
        f"{stamp.year}年{stamp.month}月{stamp.day}日 {stamp:%H:%M}（UTC{offset[:3]}:{offset[3:]}）"
    )
    ranking = board.ranking()
    ranking_table = export.tables(board)[0]
    if ranking:
        ranking_part = _chart(CHART_RANKING, ranking_chart(ranking))
        if len(ranking) > RANKING_CHART_MAX:
            ranking_part += f'<p class="note">图中为前 {RANKING_CHART_MAX} 名，完整排名见下表。</p>'
        table_part = _table(ranking_table.header, ranking_table.rows, 1, "ranking")
    else:
        ranking_part = f"<h3>{_e(CHART_RANKING)}</h3><p>{_e(court)}无下级法院，不作排名。</p>"
        table_part = f"<p>{_e(court)}无下级法院，不作排名。</p>"
    key_table = _table(("指标", month, before, "较上月", "单位"), report.key_rows(), 0)
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>{_e(court)} {month} {TITLE}</title><style>{_CSS}</style></head>
<body>
<section class="cover">
  <p class="court">{_e(court)}</p>
  <h1>{TITLE}</h1>
  <p class="month">{month}</p>
  <p class="meta">统计范围：{_e(court)}{"及下级法院" if board.scope.children else ""}</p>
  <p class="meta">生成时间：{generated}</p>
</section>
<section>
  <h2>一、主要指标</h2>
  {key_table}
  <p class="note">{_KEY_NOTE}</p>
</section>
<section>
  <h2>二、信访量</h2>
  {_chart(CHART_CHANNEL, channel_chart(report))}
  {_chart(CHART_TREND, trend_chart(report))}
</section>
<section>
  <h2>三、{CHART_RANKING}</h2>
  {ranking_part}
</section>
<section>
  <h2>四、下级法院通报排名</h2>
  <p class="note">按化解率排序，化解率相同时按按期办结率排序；无数据者列后。</p>
  {table_part}
</section>
</body></html>"""


def to_pdf(report: MonthlyReport) -> bytes:
    """The report as PDF (CPU-bound: run it in a worker thread)."""
    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    offline = URLFetcher(allowed_protocols={"data"}, fail_on_errors=True)
    pdf: bytes = HTML(string=render_html(report), url_fetcher=offline).write_pdf()
    return pdf

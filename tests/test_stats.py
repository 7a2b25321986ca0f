"""Petition statistics: every figure recomputed with plain SQL on a generated dataset,
periods refused, scope by the court tree, docs/statistics.md kept equal to the code, and the
monthly PDF report read back page by page."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from playwright.sync_api import expect
from pypdf import PdfReader
from pypdf.generic import ContentStream

from config.db import Database, create_engine, create_sessionmaker
from config.errors import InvalidError, PermissionDeniedError
from config.settings import Settings
from config.vocabulary import label
from scheduler.cases.words import Channel
from scheduler.models import CourtLevel, Role
from scheduler.scope import Actor
from scheduler.stats import figures, report
from scheduler.stats.figures import FIGURES, Dashboard, parse_period, scope_for
from tests.conftest import LiveServer, MakeClient
from tests.helpers import World, add_staff, login
from tests.live import page_login
from tests.statsdata import generate

TZ = ZoneInfo("Asia/Shanghai")
ROOT = Path(__file__).resolve().parent.parent
# 2025-03 .. 2025-12 in Asia/Shanghai, as UTC text the way SQLite stores it
START, END = "2025-02-28 16:00:00.000000", "2025-12-31 16:00:00.000000"
ADMIN = Actor(user_id=None, username="admin", role=Role.admin, court_id=None)

# One plain SQL query per figure: rows (key, numerator, denominator) for the courts in
# :ids, over [:s, :e). Written from docs/statistics.md, not from the code.
EXPECTED_SQL: dict[str, str] = {
    "volume_channel": "SELECT channel, count(*), 0 FROM case_contacts"
    " WHERE occurred_at >= :s AND occurred_at < :e AND court_id IN ({ids}) GROUP BY channel",
    "volume_category": "SELECT p.category, count(*), 0 FROM case_contacts c"
    " JOIN petitions p ON p.id = c.petition_id WHERE c.occurred_at >= :s"
    " AND c.occurred_at < :e AND c.court_id IN ({ids}) GROUP BY p.category",
    "volume_court": "SELECT '', count(*), 0 FROM case_contacts"
    " WHERE occurred_at >= :s AND occurred_at < :e AND court_id IN ({ids})",
    "volume_level": "SELECT k.level, count(*), 0 FROM case_contacts c"
    " JOIN courts k ON k.id = c.court_id WHERE c.occurred_at >= :s AND c.occurred_at < :e"
    " AND c.court_id IN ({ids}) GROUP BY k.level",
    "volume_month": "SELECT strftime('%Y-%m', occurred_at, '+8 hours'), count(*), 0"
    " FROM case_contacts WHERE occurred_at >= :s AND occurred_at < :e"
    " AND court_id IN ({ids}) GROUP BY 1",
    "case_visit_ratio": "SELECT '', (SELECT count(*) FROM petitions WHERE created_at >= :s"
    " AND created_at < :e AND court_id IN ({ids})), (SELECT coalesce(sum(decided_count), 0)"
    " FROM court_case_counts WHERE month BETWEEN '2025-03' AND '2025-12'"
    " AND court_id IN ({ids}))",
    "resolution_rate": "SELECT '', sum(state = 'resolved'), count(*) FROM petitions"
    " WHERE closed_at >= :s AND closed_at < :e AND state IN ('guided','resolved','terminated')"
    " AND coalesce(handler_court_id, court_id) IN ({ids})",
    "on_time_rate": "SELECT '', sum(closed_due_at IS NULL OR closed_at <= closed_due_at),"
    " count(*)"
    " FROM petitions WHERE closed_at >= :s AND closed_at < :e"
    " AND state IN ('guided','resolved','terminated')"
    " AND coalesce(handler_court_id, court_id) IN ({ids})",
    "overdue": "SELECT '', count(*), 0 FROM petitions WHERE state IN"
    " ('registered','handling','assigned','reported') AND created_at < :e AND due_at < :e"
    " AND coalesce(handler_court_id, court_id) IN ({ids})",
    "repeat_rate": "SELECT '', sum(r), sum(n) FROM (SELECT"
    " strftime('%Y-%m', c.occurred_at, '+8 hours') AS m,"
    " count(DISTINCT CASE WHEN c.repeat THEN c.petition_id END) AS r,"
    " count(DISTINCT c.petition_id) AS n FROM case_contacts c JOIN petitions p"
    " ON p.id = c.petition_id WHERE c.occurred_at >= :s AND c.occurred_at < :e"
    " AND p.court_id IN ({ids}) GROUP BY m)",
    "video_share": "SELECT '', sum(channel = 'video'), count(*) FROM case_contacts"
    " WHERE occurred_at >= :s AND occurred_at < :e AND court_id IN ({ids})",
    "video_wait": "SELECT '', sum((julianday(starts_at) - julianday(created_at)) * 86400),"
    " count(*) FROM visits WHERE created_at >= :s AND created_at < :e"
    " AND starts_at IS NOT NULL AND kind IN ('reception','post_judgment','leader')"
    " AND state IN ('in_progress','ended','archived') AND court_id IN ({ids})",
}
EXPECTED_SQL["satisfaction"] = (
    "SELECT '', sum(score), count(*) FROM portal_ratings"
    " WHERE created_at >= :s AND created_at < :e AND court_id IN ({ids})"
)
SCALE = {"case_visit_ratio": 1000.0, "video_wait": 1 / 3600, "satisfaction": 1.0}


def expected(con: sqlite3.Connection, key: str, ids: list[int]) -> dict[str, tuple[float, float]]:
    sql = EXPECTED_SQL[key].format(ids=",".join(map(str, ids)))
    rows = con.execute(sql, {"s": START, "e": END}).fetchall()
    return {str(k): (float(n or 0), float(d or 0)) for k, n, d in rows}


def value_of(key: str, num: float, den: float) -> float | None:
    figure = figures.BY_KEY[key]
    if figure.kind == "count":
        return num
    if den == 0:
        return None
    return round(num / den * SCALE.get(key, 100.0), 2)


def below(con: sqlite3.Connection, court_id: int) -> list[int]:
    rows = con.execute(
        "WITH RECURSIVE t(id) AS (SELECT ? UNION ALL SELECT c.id FROM courts c JOIN t"
        " ON c.parent_id = t.id) SELECT id FROM t",
        (court_id,),
    ).fetchall()
    return sorted(r[0] for r in rows)


@pytest.fixture
async def dataset(migrated: Settings, world: World) -> sqlite3.Connection:
    con = sqlite3.connect(migrated.data_dir / "vreception.db")
    generate(
        con,
        sorted(world.courts.values()),
        cases=600,
        contacts=1500,
        visits=300,
        start=datetime(2024, 12, 1, tzinfo=UTC),
        days=420,
        seed=14,
    )
    # visits of every kind and state, not only held receptions and meetings: on-site
    # receptions, visits cancelled, missed or still to come are none of 视频接访平均等待's
    con.executescript(
        "UPDATE visits SET kind = 'onsite' WHERE rowid % 7 = 3;"
        " UPDATE visits SET kind = 'post_judgment' WHERE rowid % 7 = 4;"
        " UPDATE visits SET kind = 'leader' WHERE rowid % 7 = 5;"
        " UPDATE visits SET state = 'cancelled' WHERE rowid % 6 = 1;"
        " UPDATE visits SET state = 'no_show' WHERE rowid % 6 = 2;"
        " UPDATE visits SET state = 'scheduled' WHERE rowid % 6 = 3;"
        " UPDATE visits SET state = 'archived' WHERE rowid % 6 = 4;"
        " UPDATE visits SET state = 'in_progress' WHERE rowid % 12 = 5;"
    )
    return con


async def compute(
    settings: Settings,
    actor: Actor,
    court_id: int | None,
    period: tuple[str, str] = ("2025-03", "2025-12"),
    max_age: timedelta = timedelta(minutes=5),
) -> Dashboard:
    database = Database(settings)
    try:
        async with database.reader() as db:
            scope = await scope_for(db, actor, court_id)
            return await figures.fresh_dashboard(
                database, db, scope, parse_period(*period, TZ), max_age
            )
    finally:
        await database.dispose()


def assert_cell(key: str, cell: Any, want: tuple[float, float], where: str = "") -> None:
    assert cell.num == pytest.approx(want[0]), (key, where)
    assert cell.den == pytest.approx(want[1]), (key, where)
    assert cell.value == pytest.approx(value_of(key, *want)), (key, where)


@pytest.mark.parametrize("court", ["supreme", "high", "mid_a"])
async def test_every_figure_matches_plain_sql_for_the_scope_and_each_child_court(
    migrated: Settings, world: World, dataset: sqlite3.Connection, court: str
) -> None:
    board = await compute(migrated, ADMIN, world.courts[court])
    scope_ids = below(dataset, world.courts[court])
    assert set(EXPECTED_SQL) == {f.key for f in FIGURES}
    checked = 0
    for result in board.results:
        key = result.figure.key
        want = expected(dataset, key, scope_ids)
        total = (sum(n for n, _ in want.values()), sum(d for _, d in want.values()))
        assert result.total is not None
        assert_cell(key, result.total, total)
        if result.figure.breakdown:
            got = {k: c for k, c in result.by_key}
            assert set(got) == set(want), key
            for k, cell in got.items():
                assert_cell(key, cell, want[k], k)
        for node, cell in result.by_child[1:]:
            child = expected(dataset, key, below(dataset, node.id))
            sums = (sum(n for n, _ in child.values()), sum(d for _, d in child.values()))
            assert_cell(key, cell, sums, node.name)
        checked += 1
    assert checked == len(FIGURES)
    # the dataset is not empty where it matters
    volume = board.result("volume_court").total
    assert volume is not None
    assert volume.num > 0


async def test_satisfaction_reads_no_data_when_nobody_rated(
    migrated: Settings, world: World, dataset: sqlite3.Connection
) -> None:
    board = await compute(migrated, ADMIN, None)
    assert board.scope.root.id == world.courts["supreme"]
    satisfaction = board.result("satisfaction").as_dict()
    assert satisfaction["total"]["text"] == "无数据"
    assert satisfaction["total"]["value"] is None


async def test_ranking_lists_the_child_courts_by_resolution_rate(
    migrated: Settings, world: World, dataset: sqlite3.Connection
) -> None:
    board = await compute(migrated, ADMIN, world.courts["high"])
    ranking = board.ranking()
    assert [r["court_id"] for r in ranking] != []
    assert {r["court_id"] for r in ranking} == {world.courts["mid_a"], world.courts["mid_b"]}
    rates = []
    for row in ranking:
        num, den = expected(dataset, "resolution_rate", below(dataset, row["court_id"]))[""]
        assert row["resolution_rate"] == pytest.approx(value_of("resolution_rate", num, den))
        rates.append(row["resolution_rate"])
    assert rates == sorted(rates, reverse=True)
    assert [r["rank"] for r in ranking] == [1, 2]


@pytest.mark.parametrize(
    ("first", "last", "words"),
    [
        ("2025-06", "2025-01", "晚于截止月份"),
        (None, "2025-01", "请指定统计期间"),
        ("2025-01", "", "请指定统计期间"),
        ("2019-01", "2025-01", "最长 5 年"),
        ("2025-13", "2025-12", "格式应为 YYYY-MM"),
        ("2025/01", "2025-12", "格式应为 YYYY-MM"),
        # a year outside the calendar the statistics keep: refused, never a server error
        # (9999-12 ended in year 10000)
        ("2025-12", "9999-12", "截止月份的年份应在 2000 年至 2099 年之间"),
        ("2099-01", "2100-01", "截止月份的年份应在 2000 年至 2099 年之间"),
        ("1999-12", "2000-01", "起始月份的年份应在 2000 年至 2099 年之间"),
    ],
)
def test_bad_periods_are_refused_in_chinese(first: str | None, last: str, words: str) -> None:
    with pytest.raises(InvalidError) as caught:
        parse_period(first, last, TZ)
    assert words in caught.value.message


def test_a_period_is_whole_local_months_up_to_five_years() -> None:
    period = parse_period("2021-01", "2025-12", TZ)
    assert len(period.months) == 60
    assert period.start == datetime(2020, 12, 31, 16, tzinfo=UTC)
    assert period.end == datetime(2025, 12, 31, 16, tzinfo=UTC)


async def test_a_basic_courts_leader_sees_only_their_court_not_a_sibling(
    migrated: Settings, world: World
) -> None:
    engine = create_engine(migrated)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            uid = await add_staff(db, world, "leader_basic_a", Role.leader, "basic_a")
        leader = Actor(uid, "leader_basic_a", Role.leader, world.courts["basic_a"])
        async with create_sessionmaker(engine)() as db:
            own = await scope_for(db, leader, None)
            assert own.root.id == world.courts["basic_a"]
            assert own.court_ids == {world.courts["basic_a"]}
            for other in ("basic_b", "mid_a"):
                with pytest.raises(PermissionDeniedError, match="本院及下级法院"):
                    await scope_for(db, leader, world.courts[other])
            operator = Actor(None, "op", Role.operator, world.courts["basic_a"])
            with pytest.raises(PermissionDeniedError, match="院领导"):
                await scope_for(db, operator, None)
            high = Actor(None, "po_high", Role.petition_officer, world.courts["high"])
            drill = await scope_for(db, high, world.courts["mid_b"])
            assert drill.court_ids == {world.courts["mid_b"], world.courts["basic_b"]}
    finally:
        await engine.dispose()


async def test_the_monthly_store_serves_a_month_until_it_is_older_than_allowed(
    migrated: Settings, world: World
) -> None:
    """The dashboard sums stored months; the current month is recomputed once older than
    ``stats_refresh_seconds`` (here: served stored with a long allowance, fresh with 0)."""
    local = datetime.now(UTC).astimezone(TZ)
    month = local.strftime("%Y-%m")
    month_start = datetime(local.year, local.month, 1, tzinfo=TZ).astimezone(UTC)
    con = sqlite3.connect(migrated.data_dir / "vreception.db")

    def add_contacts(n: int, first_id: int) -> None:
        generate(
            con,
            sorted(world.courts.values()),
            cases=n,
            contacts=n,
            visits=0,
            start=month_start,
            days=1,
            seed=n,
            first_id=first_id,
        )

    async def volume(max_age: timedelta) -> float:
        board = await compute(migrated, ADMIN, None, (month, month), max_age)
        total = board.result("volume_court").total
        assert total is not None
        return total.num

    add_contacts(3, 1)
    first = await volume(timedelta(hours=1))
    assert first == con.execute("SELECT count(*) FROM case_contacts").fetchone()[0] > 0
    add_contacts(4, 100)
    assert await volume(timedelta(hours=1)) == first  # stored, not yet due
    assert await volume(timedelta(0)) > first  # due: recomputed before reading
    assert (
        await volume(timedelta(hours=1))
        == con.execute("SELECT count(*) FROM case_contacts").fetchone()[0]
    )


def test_only_recent_months_follow_the_short_allowance_earlier_ones_a_day() -> None:
    now = datetime(2026, 3, 10, 4, tzinfo=UTC)
    assert figures._recent(now, TZ) == ("2026-03", "2026-02")
    assert figures._recent(datetime(2026, 1, 5, tzinfo=UTC), TZ) == ("2026-01", "2025-12")


async def test_stale_months_are_the_missing_the_recent_past_their_age_and_old_ones_a_day_old(
    migrated: Settings,
) -> None:
    database = Database(migrated)
    now = datetime(2026, 3, 10, 4, tzinfo=UTC)
    try:
        async with database.writer() as db:
            for month, age in (
                ("2026-03", timedelta(minutes=10)),
                ("2026-02", timedelta(minutes=1)),
                ("2026-01", timedelta(hours=23)),
                ("2025-12", timedelta(hours=25)),
            ):
                await figures.store_month(db, month, [], now - age)
        async with database.reader() as db:
            stale = await figures.stale_months(
                db,
                ["2025-11", "2025-12", "2026-01", "2026-02", "2026-03"],
                now,
                timedelta(minutes=5),
                TZ,
            )
        assert stale == ["2025-11", "2025-12", "2026-03"]
    finally:
        await database.dispose()


def test_docs_statistics_md_is_generated_from_the_figures() -> None:
    assert (ROOT / "docs" / "statistics.md").read_text(encoding="utf-8") == (figures.render_docs())


# ------------------------------------------------------------------ API

PERIOD = {"from": "2025-03", "to": "2025-12"}


async def error_of(resp: Any) -> str:
    return str((await resp.json())["error"]["message"])


async def test_api_serves_the_leaders_court_and_refuses_others_and_bad_periods(
    make_client: MakeClient, world: World, dataset: sqlite3.Connection
) -> None:
    client = await make_client()
    await login(client, "leader_high")
    resp = await client.get("/api/v1/stats", params=PERIOD)
    assert resp.status == 200
    body = await resp.json()
    assert body["court"]["id"] == world.courts["high"]
    assert [c["name"] for c in body["children"]] == ["甲市中级人民法院", "乙市中级人民法院"]
    got = {f["key"]: f for f in body["figures"]}
    num, den = expected(dataset, "resolution_rate", below(dataset, world.courts["high"]))[""]
    assert got["resolution_rate"]["total"]["value"] == value_of("resolution_rate", num, den)
    assert got["satisfaction"]["total"]["text"] == "无数据"
    assert {r["court_id"] for r in body["ranking"]} == {
        world.courts["mid_a"],
        world.courts["mid_b"],
    }
    backwards = await client.get("/api/v1/stats", params={"from": "2025-12", "to": "2025-03"})
    assert backwards.status == 422
    assert "晚于截止月份" in await error_of(backwards)
    unbounded = await client.get("/api/v1/stats", params={"from": "2025-03"})
    assert unbounded.status == 422
    assert "请指定统计期间" in await error_of(unbounded)
    above = await client.get(
        "/api/v1/stats", params={**PERIOD, "court_id": str(world.courts["supreme"])}
    )
    assert above.status == 403
    operator = await make_client()
    await login(operator, "op_a")
    assert (await operator.get("/api/v1/stats", params=PERIOD)).status == 403


async def test_export_gives_the_same_tables_as_csv_and_xlsx(
    make_client: MakeClient, world: World, dataset: sqlite3.Connection
) -> None:
    client = await make_client()
    await login(client, "admin")
    params = {**PERIOD, "court_id": str(world.courts["high"])}
    xlsx = await client.get("/api/v1/stats/export", params={**params, "format": "xlsx"})
    assert xlsx.status == 200
    book = openpyxl.load_workbook(io.BytesIO(await xlsx.read()), read_only=True)
    first = list(book.worksheets[0].iter_rows(values_only=True))
    assert "通报排名" in str(first[0][0])
    assert first[1][:2] == ("名次", "法院")
    assert {row[1] for row in first[2:]} == {"甲市中级人民法院", "乙市中级人民法院"}
    csv_resp = await client.get("/api/v1/stats/export", params={**params, "format": "csv"})
    assert csv_resp.status == 200
    text = (await csv_resp.read()).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    titles = [r[0] for r in rows if len(r) == 1]
    sheet_titles = [next(ws.iter_rows(values_only=True))[0] for ws in book.worksheets]
    assert titles == sheet_titles
    assert len(titles) == len(FIGURES) + 1 + sum(1 for f in FIGURES if f.breakdown)


async def test_a_year_outside_the_calendar_is_refused_by_every_stats_route(
    make_client: MakeClient, world: World
) -> None:
    """9999-12 ended in year 10000, which no date holds: a 500 before, now 422 in Chinese."""
    client = await make_client()
    await login(client, "leader_high")
    for path, params in (
        ("/api/v1/stats", {"from": "9999-12", "to": "9999-12"}),
        ("/api/v1/stats/export", {"from": "9998-01", "to": "9999-12", "format": "csv"}),
        ("/api/v1/stats/report", {"month": "9999-12"}),
    ):
        resp = await client.get(path, params=params)
        assert resp.status == 422, (path, await resp.text())
        assert "年份应在 2000 年至 2099 年之间" in await error_of(resp)


def test_figures_read_as_numbers_with_separators_never_in_exponent_form() -> None:
    """3,000,000 contacts read 3,000,000 on the page and in the PDF (not 3e+06); ratios keep
    their decimals."""
    court = figures.CourtNode(1, "某省高级人民法院", CourtLevel.high, None)
    big = figures.Cell(3_000_000.0, 0.0, 3_000_000.0)
    counted = figures.FigureResult(figures.BY_KEY["volume_court"], big, (), ((court, big),))
    data = counted.as_dict()
    assert data["total"]["text"] == "3,000,000"
    assert data["by_court"][0]["text"] == "3,000,000"
    assert figures.number_text(1234567.0) == "1,234,567"
    assert figures.number_text(12.5) == "12.5"
    assert figures.number_text(1234.56) == "1,234.56"
    assert figures.number_text(0.0) == "0"
    assert report._text(big) == "3,000,000"
    before = figures.Cell(1_500_000.0, 0.0, 1_500_000.0)
    assert report._change(big, before) == "+1,500,000"
    assert report._change(before, big) == "-1,500,000"
    assert report._change(big, big) == "持平"
    assert report._e(3_000_000.0) == "3,000,000"


async def test_export_lists_the_courts_own_records_as_bencourt_and_escapes_formulas(
    make_client: MakeClient, world: World, dataset: sqlite3.Connection
) -> None:
    """The rows by court add up to 合计: the scope's own records (本院) come first, as on the
    page. A court named like a formula is written with a leading ' in CSV and XLSX, so
    opening the file runs nothing; the numbers stay numbers."""
    evil = '=HYPERLINK("http://evil.example","点击")'
    dataset.execute("UPDATE courts SET name = ? WHERE id = ?", (evil, world.courts["mid_a"]))
    dataset.execute("UPDATE courts SET name = ? WHERE id = ?", ("@SUM(1+1)", world.courts["mid_b"]))
    dataset.commit()
    client = await make_client()
    await login(client, "admin")
    params = {**PERIOD, "court_id": str(world.courts["high"])}
    resp = await client.get("/api/v1/stats/export", params={**params, "format": "csv"})
    assert resp.status == 200
    rows = list(csv.reader(io.StringIO((await resp.read()).decode("utf-8-sig"))))
    at = rows.index(next(r for r in rows if r and r[0].startswith("信访量（按法院） 按法院")))
    table = rows[at + 2 : at + 6]
    assert [r[0] for r in table] == ["合计", "本院", "'" + evil, "'@SUM(1+1)"]
    assert float(table[0][1]) == sum(float(r[1]) for r in table[1:]) > 0
    ranking = {r[1] for r in rows[2:4]}
    assert ranking == {"'" + evil, "'@SUM(1+1)"}
    xlsx = await client.get("/api/v1/stats/export", params={**params, "format": "xlsx"})
    book = openpyxl.load_workbook(io.BytesIO(await xlsx.read()))  # not read-only: formulas
    cells = [c for ws in book.worksheets for row in ws.iter_rows() for c in row]
    assert not [c.coordinate for c in cells if c.data_type == "f"]  # no formula anywhere
    names = {c.value for c in cells if isinstance(c.value, str) and "HYPERLINK" in c.value}
    assert names == {"'" + evil}
    own = [c for c in cells if c.value == "本院"]
    assert len(own) == len(FIGURES)
    numbers = [c.value for c in cells if c.column == 2 and c.row > 2]
    assert any(isinstance(v, (int, float)) for v in numbers)


def stored_counts(con: sqlite3.Connection) -> list[tuple[int, str, int]]:
    return con.execute(
        "SELECT court_id, month, decided_count FROM court_case_counts"
        " WHERE month >= '2030-01' ORDER BY 1, 2"
    ).fetchall()


async def test_case_counts_upload_stores_all_rows_or_none(
    make_client: MakeClient, world: World, migrated: Settings
) -> None:
    con = sqlite3.connect(migrated.data_dir / "vreception.db")
    client = await make_client()
    csrf = await login(client, "leader_high")
    headers = {"X-CSRF-Token": csrf, "Content-Type": "text/csv"}
    good = "court_code,month,decided_count\nMID_A,2030-01,120\nBASIC_B,2030-01,80\n"
    resp = await client.post("/api/v1/stats/case-counts", data=good.encode(), headers=headers)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["imported"] == 2
    before = stored_counts(con)
    assert before == [
        (world.courts["mid_a"], "2030-01", 120),
        (world.courts["basic_b"], "2030-01", 80),
    ]
    bad = (
        "court_code,month,decided_count\nMID_A,2030-01,999\nSUPREME,2030-02,5\n"
        "BASIC_A,2030-13,5\nBASIC_A,2030-03,-1\n"
    )
    refused = await client.post("/api/v1/stats/case-counts", data=bad.encode(), headers=headers)
    assert refused.status == 422
    message = await error_of(refused)
    assert "未导入任何数据" in message
    assert "第 3 行" in message and "第 4 行" in message and "第 5 行" in message
    assert stored_counts(con) == before
    header = await client.post(
        "/api/v1/stats/case-counts", data=b"court,month\nMID_A,2030-01\n", headers=headers
    )
    assert header.status == 422
    assert "表头" in await error_of(header)
    assert stored_counts(con) == before


async def test_case_counts_sent_in_pieces_are_all_read(
    make_client: MakeClient, world: World, migrated: Settings
) -> None:
    """A file that arrives in pieces (a slow link, a big file) is read to its end: before,
    the first piece was taken for the whole file and stored, the rest silently lost."""
    con = sqlite3.connect(migrated.data_dir / "vreception.db")
    client = await make_client()
    csrf = await login(client, "leader_high")
    lines = [f"MID_A,{year}-{month:02d},{year + month}\n" for year in range(2031, 2056)
             for month in range(1, 13)]  # fmt: skip

    async def pieces() -> AsyncIterator[bytes]:
        yield b"court_code,month,decided_count\n"
        for line in lines:
            await asyncio.sleep(0)  # the server takes what has arrived meanwhile
            yield line.encode()

    headers = {"X-CSRF-Token": csrf, "Content-Type": "text/csv"}
    resp = await client.post("/api/v1/stats/case-counts", data=pieces(), headers=headers)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["imported"] == len(lines) == 300
    stored = con.execute(
        "SELECT COUNT(*) FROM court_case_counts WHERE month >= '2031-01'"
    ).fetchone()
    assert stored == (300,)


async def test_imported_case_counts_show_at_once_in_a_month_already_computed(
    make_client: MakeClient, world: World, migrated: Settings
) -> None:
    """A month viewed before the import (its figures stored) shows the imported count on
    the next view, not a day later; digits that are not ASCII are refused."""
    client = await make_client()
    csrf = await login(client, "leader_high")
    month = {"from": "2026-09", "to": "2026-09"}

    async def ratio() -> dict[str, Any]:
        resp = await client.get("/api/v1/stats", params=month)
        assert resp.status == 200
        figures = {f["key"]: f for f in (await resp.json())["figures"]}
        return dict(figures["case_visit_ratio"]["total"])

    assert (await ratio())["text"] == "无数据"
    headers = {"X-CSRF-Token": csrf, "Content-Type": "text/csv"}
    body = b"court_code,month,decided_count\nMID_A,2026-09,120\n"
    resp = await client.post("/api/v1/stats/case-counts", data=body, headers=headers)
    assert resp.status == 200, await resp.text()
    assert (await ratio())["den"] == 120
    for row in ("MID_A,２０２６-10,5", "MID_A,2026-10,1²"):
        data = f"court_code,month,decided_count\n{row}\n".encode()
        resp = await client.post("/api/v1/stats/case-counts", data=data, headers=headers)
        assert resp.status == 422, row


# ------------------------------------------------------------------ monthly report (PDF)

REPORT_MONTH, MONTH_BEFORE = "2025-11", "2025-10"


def curves(page: Any) -> int:
    """Bézier curves drawn on a PDF page: the SVG charts (glyph outlines, markers) are
    vector paths; text and table rules draw none."""
    ops = ContentStream(page.get_contents(), page.pdf).operations
    return sum(1 for _, op in ops if op == b"c")


def audited(settings: Settings, action: str) -> list[tuple[str, dict[str, Any]]]:
    """(actor, detail) of each audit event ``action``, oldest first."""
    con = sqlite3.connect(settings.data_dir / "vreception.db")
    try:
        rows = con.execute(
            "SELECT actor_name, detail FROM audit_events WHERE action = ? ORDER BY id", (action,)
        ).fetchall()
    finally:
        con.close()
    return [(str(actor), json.loads(detail)) for actor, detail in rows]


async def month_board(settings: Settings, court_id: int, month: str) -> Dashboard:
    return await compute(settings, ADMIN, court_id, (month, month))


async def test_monthly_report_pdf_pages_show_the_figures_charts_and_ranking(
    make_client: MakeClient, world: World, migrated: Settings, dataset: sqlite3.Connection
) -> None:
    client = await make_client()
    await login(client, "leader_high")
    resp = await client.get("/api/v1/stats/report", params={"month": REPORT_MONTH})
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == "application/pdf"
    assert "attachment" in resp.headers["Content-Disposition"]
    pages = PdfReader(io.BytesIO(await resp.read())).pages
    assert len(pages) == 5
    texts = [page.extract_text() for page in pages]
    for number, text in enumerate(texts, 1):
        assert f"第 {number} 页，共 5 页" in text

    # 1: the title page
    assert "某省高级人民法院" in texts[0]
    assert "月度信访工作通报" in texts[0]
    assert "2025年11月" in texts[0]
    stamp = re.search(r"生成时间：(\d+)年(\d+)月(\d+)日 (\d\d):(\d\d)（UTC\+08:00）", texts[0])
    assert stamp is not None
    year, month, day, hour, minute = (int(g) for g in stamp.groups())
    made = datetime(year, month, day, hour, minute, tzinfo=TZ)
    assert abs(made - datetime.now(TZ)) < timedelta(minutes=5)

    # 2: each key figure of the month, then of the month before, as figures.py computes it
    now = await month_board(migrated, world.courts["high"], REPORT_MONTH)
    before = await month_board(migrated, world.courts["high"], MONTH_BEFORE)
    lines = texts[1].splitlines()
    assert "2025年11月 2025年10月" in texts[1]
    for key in report.KEY_FIGURES:
        this, last = now.result(key).as_dict(), before.result(key).as_dict()
        row = f"{this['label']} {this['total']['text']} {last['total']['text']} "
        assert any(line.startswith(row) for line in lines), (row, lines)
    assert now.result("resolution_rate").total is not None
    assert now.result("volume_court").as_dict()["total"]["value"] > 0
    assert curves(pages[1]) == 0

    # 3, 4: the charts, drawn as vectors under their titles
    assert report.CHART_CHANNEL in texts[2]
    assert report.CHART_TREND in texts[2]
    assert report.CHART_RANKING in texts[3]
    assert curves(pages[2]) > 100
    assert curves(pages[3]) > 20

    # 5: the ranking table (通报), courts in ranked order
    ranking = now.ranking()
    assert [r["name"] for r in ranking] != []
    rates = [r["resolution_rate"] for r in ranking if r["resolution_rate"] is not None]
    assert rates == sorted(rates, reverse=True)
    rows = [line for line in texts[4].splitlines() if re.match(r"^\d+ \S+人民法院 ", line)]
    assert [line.split()[:2] for line in rows] == [[str(r["rank"]), r["name"]] for r in ranking]
    assert audited(migrated, "stats.report") == [
        ("leader_high", {"court": "某省高级人民法院", "month": REPORT_MONTH})
    ]


@pytest.mark.parametrize(
    ("params", "status", "words"),
    [
        ({}, 422, "请选择通报月份"),
        ({"month": "2025/11"}, 422, "格式应为 YYYY-MM"),
        ({"month": "2025-13"}, 422, "格式应为 YYYY-MM"),
        ({"month": "2099-01"}, 422, "尚未到来"),
        ({"month": "9999-12"}, 422, "通报月份的年份应在 2000 年至 2099 年之间"),
        ({"month": "2024-11"}, 422, "早于某省高级人民法院最早的信访记录（2024-12）"),
        ({"month": REPORT_MONTH, "court": "supreme"}, 403, "本院及下级法院"),
    ],
)
async def test_monthly_report_refuses_bad_months_and_courts_outside_in_chinese(
    make_client: MakeClient,
    world: World,
    migrated: Settings,
    dataset: sqlite3.Connection,
    params: dict[str, str],
    status: int,
    words: str,
) -> None:
    client = await make_client()
    await login(client, "leader_high")
    query = {k: v for k, v in params.items() if k != "court"}
    if "court" in params:
        query["court_id"] = str(world.courts[params["court"]])
    resp = await client.get("/api/v1/stats/report", params=query)
    assert resp.status == status
    assert words in await error_of(resp)
    assert audited(migrated, "stats.report") == []


async def test_monthly_report_is_for_stats_roles_only_and_exports_are_audited(
    make_client: MakeClient, world: World, migrated: Settings, dataset: sqlite3.Connection
) -> None:
    operator = await make_client()
    await login(operator, "op_a")
    refused = await operator.get("/api/v1/stats/report", params={"month": REPORT_MONTH})
    assert refused.status == 403
    client = await make_client()
    await login(client, "leader_high")
    resp = await client.get("/api/v1/stats/export", params={**PERIOD, "format": "csv"})
    assert resp.status == 200
    assert audited(migrated, "stats.exported") == [
        (
            "leader_high",
            {"court": "某省高级人民法院", "first": "2025-03", "last": "2025-12", "format": "CSV"},
        )
    ]


# ------------------------------------------------------------------ page


@pytest.fixture(scope="module")
def live_courts(live_server: LiveServer) -> dict[str, int]:
    """Court ids by code of the live demo server, with a generated dataset of the last
    200 days stored once for the page tests."""
    con = sqlite3.connect(live_server.data_dir / "vreception.db")
    courts = dict(con.execute("SELECT code, id FROM courts").fetchall())
    generate(
        con,
        sorted(courts.values()),
        cases=300,
        contacts=700,
        visits=100,
        start=datetime.now(UTC) - timedelta(days=200),
        days=180,
        seed=7,
        first_id=1_000_000,
    )
    con.close()
    return courts


def test_the_stats_page_draws_charts_with_tables_and_drills_down_in_chromium(
    live_server: LiveServer, live_courts: dict[str, int], chromium: Any, artifacts: Path
) -> None:
    courts = live_courts
    context = chromium.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page_login(page, live_server, "admin", live_server.passwords["admin"], "/stats")
        expect(page.locator("#stats-title")).to_contain_text("最高人民法院")
        volume = page.locator(".figure[data-figure=volume_court]")
        expect(volume.locator(".chart[data-ready='1'] canvas").first).to_be_visible()
        # 合计, the court's own records (本院), the high court
        rows = volume.locator(".figure-table tbody tr")
        expect(rows).to_have_count(3)
        expect(rows.nth(1).locator("td").first).to_have_text("本院")
        channel = page.locator(".figure[data-figure=volume_channel]")
        expect(channel.locator(".chart canvas").first).to_be_visible()
        expect(channel.locator(".figure-table")).to_contain_text(label(Channel.video))
        page.screenshot(path=str(artifacts / "stats-country.png"))
        page.locator("#ranking-rows a.drill", has_text="北京市高级人民法院").click()
        expect(page.locator("#stats-title")).to_contain_text("北京市高级人民法院")
        expect(page.locator("#ranking-rows")).to_contain_text("北京市第一中级人民法院")
        expect(page.locator("#up")).to_be_visible()
        expect(page.locator("#export-xlsx")).to_have_attribute(
            "href", re.compile(rf"court_id={courts['BJGY']}.*format=xlsx|format=xlsx.*court_id")
        )
        page.click("#up")
        expect(page.locator("#stats-title")).to_contain_text("最高人民法院")
    finally:
        context.close()


def test_the_leader_downloads_the_monthly_report_pdf_from_the_stats_page(
    live_server: LiveServer, live_courts: dict[str, int], chromium: Any, artifacts: Path
) -> None:
    context = chromium.new_context(
        locale="zh-CN", viewport={"width": 1280, "height": 900}, accept_downloads=True
    )
    try:
        page = context.new_page()
        page_login(page, live_server, "leader", live_server.passwords["leader"], "/stats")
        expect(page.locator("#stats-title")).to_contain_text("海淀")
        last = datetime.now(TZ).replace(day=1) - timedelta(days=1)
        expect(page.locator("#report-month")).to_have_value(f"{last:%Y-%m}")
        with page.expect_download() as caught:
            page.click("#report-pdf")
        download = caught.value
        assert download.suggested_filename.endswith(f"-{last:%Y-%m}.pdf")
        pdf = Path(download.path()).read_bytes()
        (artifacts / "monthly-report.pdf").write_bytes(pdf)
        title = PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
        assert "海淀" in title and f"{last.year}年{last.month}月" in title
        expect(page.locator("#stats-msg")).to_have_text("月度通报已生成")
        page.fill("#report-month", "2099-01")
        page.click("#report-pdf")
        expect(page.locator("#stats-msg")).to_contain_text("尚未到来")
    finally:
        context.close()

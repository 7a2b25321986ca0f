"""Import of cases decided per court and month (案访比's denominator) from the
case-management system: a CSV file ``court_code,month,decided_count``, validated whole
before anything is stored, then stored whole (a row replaces the same court and month)."""

from __future__ import annotations

import csv
import io
import re

from sqlalchemy import delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from config.audit import record_audit
from config.errors import InvalidError
from scheduler.models import Court
from scheduler.scope import Actor
from scheduler.stats.figures import scope_for
from scheduler.stats.models import CourtCaseCount, MonthlyRefresh

HEADER = ("court_code", "month", "decided_count")
MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 200_000
MAX_COUNT = 10_000_000
_MONTH = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")  # ASCII digits ("２０２６" never matches)


async def import_case_counts(db: AsyncSession, actor: Actor, data: bytes) -> int:
    """Store every row of ``data`` or none; returns how many rows were stored. Each court
    must be the actor's court or below it (an admin: any court)."""
    if len(data) > MAX_BYTES:
        raise InvalidError("文件过大：结案数文件最大 5 MB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidError("文件不是 UTF-8 编码的 CSV") from None
    reader = csv.reader(io.StringIO(text))
    header = tuple(h.strip() for h in next(reader, []))
    if header != HEADER:
        raise InvalidError("第 1 行应为表头：court_code,month,decided_count")
    scope = await scope_for(db, actor, None)
    codes = {
        code: court_id
        for code, court_id in (await db.execute(select(Court.code, Court.id))).all()
        if actor.is_admin or court_id in scope.bucket
    }
    problems: list[str] = []
    rows: dict[tuple[int, str], int] = {}
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(rows) >= MAX_ROWS:
            raise InvalidError(f"行数过多：一次最多导入 {MAX_ROWS} 行")
        if len(row) != 3:
            problems.append(f"第 {line} 行：应有 3 列，实有 {len(row)} 列")
            continue
        code, month, count = (cell.strip() for cell in row)
        before = len(problems)
        court_id = codes.get(code)
        if court_id is None:
            problems.append(f"第 {line} 行：法院代码 {code!r} 不存在或不在本院及下级法院范围内")
        if not _MONTH.match(month):
            problems.append(f"第 {line} 行：月份 {month!r} 格式应为 YYYY-MM")
        if not (count.isascii() and count.isdigit()) or int(count) > MAX_COUNT:
            problems.append(f"第 {line} 行：结案数 {count!r} 应为 0 到 {MAX_COUNT} 之间的整数")
        if court_id is None or len(problems) > before:
            continue
        if (court_id, month) in rows:
            problems.append(f"第 {line} 行：法院 {code} 的 {month} 在文件中重复")
            continue
        rows[(court_id, month)] = int(count)
    if problems:
        shown = "；".join(problems[:20])
        more = f"（另有 {len(problems) - 20} 处错误）" if len(problems) > 20 else ""
        raise InvalidError(f"结案数文件有误，未导入任何数据：{shown}{more}", details=problems)
    if not rows:
        raise InvalidError("文件中没有数据行")
    keys = list(rows)
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        await db.execute(
            delete(CourtCaseCount).where(
                tuple_(CourtCaseCount.court_id, CourtCaseCount.month).in_(chunk)
            )
        )
    db.add_all(CourtCaseCount(court_id=c, month=m, decided_count=n) for (c, m), n in rows.items())
    # the months' stored figures are computed again when next read, not up to a day later
    months = sorted({m for _, m in rows})
    for start in range(0, len(months), 500):
        await db.execute(
            delete(MonthlyRefresh).where(MonthlyRefresh.month.in_(months[start : start + 500]))
        )
    record_audit(
        db,
        action="stats.case_counts_imported",
        actor_id=actor.user_id,
        actor_name=actor.username,
        target_type="court_case_counts",
        address=actor.address,
        court_id=actor.court_id,
        detail={"rows": len(rows)},
    )
    return len(rows)

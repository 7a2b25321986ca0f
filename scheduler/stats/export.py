"""The dashboard's tables, and their CSV and XLSX files (one home for both formats)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from scheduler.stats.figures import NO_DATA, Dashboard


@dataclass(frozen=True)
class Table:
    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


def _cell(item: dict[str, Any]) -> Any:
    return NO_DATA if item["value"] is None else item["value"]


def tables(board: Dashboard) -> list[Table]:
    """Every table of the dashboard: the ranking, then per figure its breakdown and the
    roll-up by court (the asked court's own records first)."""
    data = board.as_dict()
    court, period = data["court"]["name"], data["period"]
    span = f"{period['from']}至{period['to']}"
    ranking_cols = data["ranking_columns"]
    out = [
        Table(
            f"{court} 下级法院通报排名（{span}）",
            ("名次", "法院", *(f"{c['label']}（{c['unit']}）" for c in ranking_cols)),
            tuple(
                (
                    r["rank"],
                    r["name"],
                    *(NO_DATA if r[c["key"]] is None else r[c["key"]] for c in ranking_cols),
                )
                for r in data["ranking"]
            ),
        )
    ]
    for fig in data["figures"]:
        unit = f"{fig['label']}（{fig['unit']}）"
        if fig["by_key"]:
            out.append(
                Table(
                    f"{fig['label']}（{span}）",
                    ("分类", unit),
                    tuple((k["label"], _cell(k)) for k in fig["by_key"]),
                )
            )
        out.append(
            Table(
                f"{fig['label']} 按法院（{span}）",
                ("法院", unit),
                (
                    ("合计", _cell(fig["total"])),
                    *((c["name"], _cell(c)) for c in fig["by_court"]),
                ),
            )
        )
    return out


def to_csv(board: Dashboard) -> bytes:
    """All tables one after another, each under its title; UTF-8 with BOM for Excel."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for table in tables(board):
        writer.writerow([table.title])
        writer.writerow(table.header)
        writer.writerows(table.rows)
        writer.writerow([])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def to_xlsx(board: Dashboard) -> bytes:
    """One worksheet per table."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    for i, table in enumerate(tables(board), 1):
        name = _sheet_name(table.title, i)
        sheet = book.create_sheet(name)
        sheet.append([table.title])
        sheet.append(list(table.header))
        for row in table.rows:
            sheet.append(list(row))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _sheet_name(title: str, index: int) -> str:
    """A worksheet name: unique by its number, at most 31 characters, none of []:*?/\\."""
    base = title.split("（")[0]
    for bad in "[]:*?/\\":
        base = base.replace(bad, "")
    return f"{index}.{base}"[:31]

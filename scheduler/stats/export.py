"""The dashboard's tables, and their CSV and XLSX files (one home for both formats).

A text cell a spreadsheet would take for a formula (a court's name starting with ``=``, say)
is written with a leading ``'`` in both files, so that opening the export runs nothing."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from scheduler.stats.figures import NO_DATA, Dashboard

# The scope's court's own records in a table by court (what it received or handles itself,
# beside each child court's subtree): named so, not by the court's name, which would read as
# its total. The page (web/static/stats.js) names the row the same way.
OWN = "本院"
# What starts a formula in Excel, LibreOffice or Google Sheets (CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Table:
    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


def _cell(item: dict[str, Any]) -> Any:
    return NO_DATA if item["value"] is None else item["value"]


def tables(board: Dashboard) -> list[Table]:
    """Every table of the dashboard: the ranking, then per figure its breakdown and the
    roll-up by court (the asked court's own records first, as 本院). The cells are as
    computed: the files escape them (:func:`safe`)."""
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
                    *(
                        (OWN if i == 0 else c["name"], _cell(c))
                        for i, c in enumerate(fig["by_court"])
                    ),
                ),
            )
        )
    return out


def to_csv(board: Dashboard) -> bytes:
    """All tables one after another, each under its title; UTF-8 with BOM for Excel."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for table in tables(board):
        writer.writerow([safe(table.title)])
        writer.writerow([safe(h) for h in table.header])
        writer.writerows([safe(v) for v in row] for row in table.rows)
        writer.writerow([])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def to_xlsx(board: Dashboard) -> bytes:
    """One worksheet per table."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    for i, table in enumerate(tables(board), 1):
        name = _sheet_name(table.title, i)
        sheet = book.create_sheet(name)
        sheet.append([safe(table.title)])
        sheet.append([safe(h) for h in table.header])
        for row in table.rows:
            sheet.append([safe(v) for v in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def safe(value: Any) -> Any:
    """``value`` for a spreadsheet cell: a text a spreadsheet would run as a formula
    (starting with = + - @, a tab or a carriage return) prefixed with ``'``; anything else,
    numbers too, as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _sheet_name(title: str, index: int) -> str:
    """A worksheet name: unique by its number, at most 31 characters, none of []:*?/\\."""
    base = title.split("（")[0]
    for bad in "[]:*?/\\":
        base = base.replace(bad, "")
    return f"{index}.{base}"[:31]

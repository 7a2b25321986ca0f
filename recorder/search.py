"""Full-text search over transcripts and notes, for Chinese as well as Latin text.

Neither SQLite's nor PostgreSQL's built-in parsers split Chinese into words, so text is
indexed as overlapping character pairs (bigrams) of each run of Han characters, plus whole
Latin words and numbers: "拆迁补偿款" → 拆迁 迁补 补偿 偿款. A query term becomes the phrase
of its pairs, so "补偿款" matches exactly where those three characters stand together.

- SQLite: an FTS5 table over ``recording_texts.tokens`` (``unicode61``: the tokens are
  separated by spaces), kept in step by triggers (migration 0004).
- PostgreSQL: a ``tsvector`` column written as a literal (``'拆迁':1 '迁补':2``), so no
  parser or locale decides what a word is; queries are ``tsquery`` literals with ``<->``.

A query term of a single Han character has no pair to look up; it is matched with LIKE
(correct, but a scan: slower on large archives).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    and_,
    bindparam,
    column,
    literal,
    literal_column,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession

from recorder.models import RecordingText

HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_RUNS = re.compile(f"[{HAN}]+|[0-9a-z]+")
_IS_HAN = re.compile(f"[{HAN}]")
MAX_TERMS = 8


def _normal(value: str) -> str:
    return unicodedata.normalize("NFKC", value).lower()


def tokens(value: str) -> list[str]:
    """The index tokens of ``value``: Han bigrams (a lone Han character as itself) and
    lower-case Latin words and numbers, in text order."""
    out: list[str] = []
    for match in _RUNS.finditer(_normal(value)):
        run = match.group()
        if _IS_HAN.match(run) and len(run) > 1:
            out.extend(run[i : i + 2] for i in range(len(run) - 1))
        else:
            out.append(run)
    return out


@dataclass(frozen=True)
class Term:
    """One query term: its tokens (a phrase), or a single Han character matched by LIKE."""

    phrase: tuple[str, ...]
    like: str = ""


class QueryError(ValueError):
    """The words to search for cannot be searched (nothing searchable, or too many)."""


def parse_query(value: str) -> list[Term]:
    """Split the words to search for into terms (all must match)."""
    terms: list[Term] = []
    for word in _normal(value).split():
        for match in _RUNS.finditer(word):
            run = match.group()
            if _IS_HAN.match(run) and len(run) == 1:
                terms.append(Term((), like=run))
            else:
                terms.append(Term(tuple(tokens(run))))
    if not terms:
        raise QueryError("检索词中没有可检索的文字（汉字、字母或数字）")
    if len(terms) > MAX_TERMS:
        raise QueryError(f"检索词过多（最多 {MAX_TERMS} 个）")
    return terms


def dialect_of(db: AsyncSession) -> str:
    """The database's dialect name ("sqlite", "postgresql")."""
    return db.get_bind().dialect.name


def tsvector_literal(toks: Sequence[str]) -> str:
    """A PostgreSQL tsvector literal with positions (1-based, capped at 16383)."""
    return " ".join(f"'{t}':{min(i, 16383)}" for i, t in enumerate(toks, 1))


def _fts5(terms: Iterable[Term]) -> str:
    return " AND ".join('"' + " ".join(t.phrase) + '"' for t in terms if t.phrase)


def _tsquery(terms: Iterable[Term]) -> str:
    return " & ".join(
        "(" + " <-> ".join(f"'{tok}'" for tok in t.phrase) + ")" for t in terms if t.phrase
    )


def line_matches(
    dialect: str, terms: Sequence[Term], *, narrowed: bool = False
) -> ColumnElement[bool]:
    """The condition on ``recording_texts`` rows for ``terms``.

    ``narrowed``: the query reaches the lines another way (the lines of one recording, or
    of one page of recordings), so each line is tested on its own: a phrase of pairs is a
    run of whole tokens in ``tokens``, found by LIKE on `` tokens `` padded with spaces.
    This gives the same answer as the index without building the index's set of matching
    lines, which for a common word is most of the archive (90 ms each time at 10^6 lines).
    """
    conditions: list[ColumnElement[bool]] = []
    if narrowed:
        padded = literal(" ").concat(RecordingText.tokens).concat(" ")
        for t in terms:
            if t.phrase:
                conditions.append(padded.contains(" " + " ".join(t.phrase) + " ", autoescape=True))
    elif any(t.phrase for t in terms):
        if dialect == "postgresql":
            conditions.append(
                literal_column("recording_texts.tsv").op("@@")(
                    text("CAST(:tsq AS tsquery)").bindparams(bindparam("tsq", _tsquery(terms)))
                )
            )
        else:
            conditions.append(RecordingText.id.in_(_fts5_rowids(terms)))
    for t in terms:
        if t.like:
            conditions.append(RecordingText.text.contains(t.like, autoescape=True))
    return and_(*conditions)


def _fts5_rowids(terms: Sequence[Term]) -> Any:
    return (
        text("SELECT rowid FROM recording_texts_fts WHERE recording_texts_fts MATCH :fts")
        .bindparams(bindparam("fts", _fts5(terms)))
        .columns(column("rowid", Integer))
    )


def some_lines(dialect: str, terms: Sequence[Term], at_most: int) -> Any:
    """A SELECT of at most ``at_most`` matching line ids, read straight off the index (to
    tell a common word from a rare one cheaply)."""
    if dialect != "postgresql" and any(t.phrase for t in terms):
        phrases = [t for t in terms if t.phrase]
        if len(phrases) == len(terms):
            return (
                text(
                    "SELECT rowid FROM recording_texts_fts WHERE recording_texts_fts MATCH :fts "
                    "LIMIT :n"
                )
                .bindparams(bindparam("fts", _fts5(phrases)), bindparam("n", at_most))
                .columns(column("rowid", Integer))
            )
    return select(RecordingText.id).where(line_matches(dialect, terms)).limit(at_most)


async def index_texts(
    db: AsyncSession, visit_id: str, transcript: dict[str, Any], notes: Sequence[dict[str, Any]]
) -> int:
    """(Re)index a recording's transcript lines and notes; returns the number of rows."""
    from sqlalchemy import delete

    await db.execute(delete(RecordingText).where(RecordingText.visit_id == visit_id))
    start = float(transcript.get("visit_start") or 0.0)
    rows: list[RecordingText] = []
    for line in transcript.get("lines", []):
        rows.append(
            RecordingText(
                visit_id=visit_id,
                kind="line",
                start=float(line["start"]),
                end=float(line["end"]),
                role=str(line.get("role", ""))[:16],
                speaker=str(line.get("name", ""))[:64],
                text=str(line["text"]),
                tokens=" ".join(tokens(str(line["text"]))),
            )
        )
    for note in notes:
        at = float(note.get("at", start)) - start if start else 0.0
        rows.append(
            RecordingText(
                visit_id=visit_id,
                kind="note",
                start=max(0.0, at),
                end=max(0.0, at),
                role="judge",
                speaker=str(note.get("author", ""))[:64],
                text=str(note.get("text", "")),
                tokens=" ".join(tokens(str(note.get("text", "")))),
            )
        )
    db.add_all(rows)
    await db.flush()
    if dialect_of(db) == "postgresql" and rows:
        await db.execute(
            text("UPDATE recording_texts SET tsv = CAST(:lit AS tsvector) WHERE id = :id"),
            [{"lit": tsvector_literal(r.tokens.split()), "id": r.id} for r in rows],
        )
    return len(rows)


# The index objects the migration makes outside the SQLAlchemy metadata (compared away when
# checking that the models match the migrations).
INDEX_OBJECTS = frozenset({"tsv", "ix_recording_texts_tsv"})


def in_metadata(name: str | None) -> bool:
    """False for the search index's own tables, column and index (see INDEX_OBJECTS)."""
    return not (name and (name in INDEX_OBJECTS or name.startswith("recording_texts_fts")))

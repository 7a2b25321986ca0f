"""The archive: who may see which recording, and the search over recordings.

Access (issue: archive): an archivist sees the visits of their court and the courts below
(booked there or received there); a judge the visits they received; an operator the visits
booked by their court; an admin every visit. A sealed recording is seen by admins only.
Anything out of reach answers 404, as if it did not exist.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from time import monotonic as time_now
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, false, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from config.errors import ConflictError, NotFoundError
from config.privacy import mask_id_number
from config.vocabulary import label_of
from recorder.models import Recording, RecordingState, RecordingText, TranscriptCorrection
from recorder.search import Term, dialect_of, line_matches, some_lines
from recorder.state import SUMS
from scheduler.models import Court, Petition, Petitioner, Role, User, Visit
from scheduler.scope import Actor, descendant_court_ids

HITS_PER_VISIT = 3
COUNT_CAP = 200  # results are counted up to this; beyond it the answer says "more"
LINES_CAP = 100_000  # matching lines are counted up to this to choose a plan
_TOTALS: dict[str, tuple[float, int]] = {}  # database url → (when, number of recordings)


async def access_condition(
    db: AsyncSession, actor: Actor, *, unindexed: bool = False
) -> ColumnElement[bool]:
    """The condition on (Recording, Visit) rows that ``actor`` may see. ``unindexed``: the
    court terms are written so that SQLite does not start from them (``court_id + 0``),
    for a walk of recordings in date order."""
    if actor.role is Role.admin:
        return true()
    unsealed = Recording.sealed.is_(False)
    if actor.role is Role.archivist:
        if actor.court_id is None:
            return false()
        scope = await descendant_court_ids(db, actor.court_id)
        court: Any = Visit.court_id + 0 if unindexed else Visit.court_id
        receiving: Any = Visit.receiving_court_id + 0 if unindexed else Visit.receiving_court_id
        return and_(unsealed, or_(court.in_(scope), receiving.in_(scope)))
    if actor.role is Role.judge:
        if actor.user_id is None:
            return false()
        return and_(unsealed, Visit.judge_id == actor.user_id)
    if actor.role is Role.operator and actor.court_id is not None:
        return and_(unsealed, Visit.court_id == actor.court_id)
    return false()


async def accessible(db: AsyncSession, actor: Actor, visit_id: str) -> tuple[Recording, Visit]:
    """The recording of ``visit_id`` and its visit, if ``actor`` may see them; else 404."""
    row = (
        await db.execute(
            select(Recording, Visit)
            .join(Visit, Visit.id == Recording.visit_id)
            .where(Recording.visit_id == visit_id, await access_condition(db, actor))
        )
    ).first()
    if row is None:
        raise NotFoundError("录像不存在或您无权查看")
    return row[0], row[1]


async def recording_row(db: AsyncSession, visit_id: str) -> Recording:
    """The recording's row in a write transaction of a route that checked access with
    :func:`accessible` in its read session first (split routes: slow work between)."""
    row = await db.get(Recording, visit_id)
    if row is None:
        raise NotFoundError("录像不存在或您无权查看")
    return row


def signed_list(folder: Path) -> bytes | None:
    """The recording's ``SHA256SUMS`` as it is now (None: it has none)."""
    try:
        return (folder / SUMS).read_bytes()
    except OSError:
        return None


async def as_checked(
    db: AsyncSession, visit_id: str, folder: Path, before: bytes | None
) -> Recording:
    """The recording's row once a check that read ``before`` as its signed list is over:
    409 if the pipeline signed it again meanwhile (a retry of a failed step) or took it up
    again, so what the check found is not written as a finding about the recording."""
    row = await recording_row(db, visit_id)
    if not row.verifiable or signed_list(folder) != before:
        raise ConflictError("录像正在重新处理或签名，请稍后再试", code="not_ready")
    return row


def mask_name(name: str) -> str:
    """张三 → 张*, 欧阳娜娜 → 欧***: the family name's first character stays."""
    return name[:1] + "*" * max(1, len(name) - 1) if name else ""


class Sort(enum.StrEnum):
    """Orders a search can be sorted by (``-`` first: descending)."""

    newest = "-started_at"
    oldest = "started_at"
    number = "number"
    number_desc = "-number"
    longest = "-duration"
    shortest = "duration"
    court = "court"


@dataclass
class Criteria:
    """A search of the archive; every given criterion must hold."""

    number: str | None = None
    petitioner: str | None = None
    id_tail: str | None = None
    court_id: int | None = None
    include_below: bool = True
    judge: str | None = None
    since: date | None = None
    until: date | None = None
    state: RecordingState | None = None
    terms: list[Term] | None = None
    sort: Sort = Sort.newest


@dataclass
class Hit:
    """A transcript line or note that matched the words searched for."""

    kind: str
    start: float
    role: str
    speaker: str
    text: str


@dataclass
class Found:
    """One search result: the recording, its visit and what the list shows of them."""

    recording: Recording
    visit: Visit
    number: str
    category: str  # the label (case_category vocabulary)
    court_name: str
    receiving_court_name: str
    judge_name: str
    petitioner_name: str
    petitioner_id_number: str
    hits: list[Hit]


def _local_bounds(day: date, tz: Any) -> datetime:
    return datetime.combine(day, time(0), tz)


async def _filters(
    db: AsyncSession, actor: Actor, c: Criteria, tz: Any
) -> tuple[list[ColumnElement[bool]], bool]:
    """The WHERE conditions, and whether they need the petition and petitioner joined."""
    where: list[ColumnElement[bool]] = [await access_condition(db, actor)]
    people = False
    if c.number:
        where.append(Petition.number == c.number)
        people = True
    if c.petitioner:
        # a prefix, as a range, so the name index serves it
        where.append(
            and_(Petitioner.name >= c.petitioner, Petitioner.name < c.petitioner + "\U0010ffff")
        )
        people = True
    if c.id_tail:
        where.append(Petitioner.id_number.endswith(c.id_tail.upper(), autoescape=True))
        people = True
    if c.court_id is not None:
        courts = await descendant_court_ids(db, c.court_id) if c.include_below else {c.court_id}
        where.append(or_(Visit.court_id.in_(courts), Visit.receiving_court_id.in_(courts)))
    if c.judge:
        judges = select(User.id).where(
            User.role == Role.judge, or_(User.username == c.judge, User.display_name == c.judge)
        )
        where.append(Visit.judge_id.in_(judges))
    if c.since:
        where.append(Recording.started_at >= _local_bounds(c.since, tz))
    if c.until:
        where.append(Recording.started_at < _local_bounds(c.until + timedelta(days=1), tz))
    if c.state:
        where.append(Recording.state == c.state)
    return where, people


def _texts_match(dialect: str, terms: list[Term], many: bool) -> ColumnElement[bool]:
    """Recordings with a line matching ``terms``. With few matching lines the matches
    drive the query (``IN``); with many, each recording walked in the requested order is
    tested through its own lines (``EXISTS``), so a page of a common word's results does
    not first collect and sort every recording that says it."""
    if not many:
        return Recording.visit_id.in_(
            select(RecordingText.visit_id).where(line_matches(dialect, terms))
        )
    return exists(
        select(RecordingText.id).where(
            RecordingText.visit_id == Recording.visit_id,
            line_matches(dialect, terms, narrowed=True),
        )
    )


async def _recordings_total(db: AsyncSession) -> int:
    """How many recordings there are (kept a minute: it only steers plans)."""
    key = str(db.get_bind().engine.url)
    now = time_now()
    cached = _TOTALS.get(key)
    if cached is None or now - cached[0] > 60:
        cached = (now, int(await db.scalar(select(func.count()).select_from(Recording)) or 0))
        _TOTALS[key] = cached
    return max(1, cached[1])


async def _in_scope(db: AsyncSession, actor: Actor, total: int) -> int:
    """About how many recordings ``actor`` may see (to choose a plan, not to show)."""
    if actor.role is Role.admin:
        return total
    if actor.role is Role.judge:
        return int(
            await db.scalar(select(func.count()).where(Visit.judge_id == actor.user_id)) or 0
        )
    if actor.role is Role.operator:
        return int(
            await db.scalar(select(func.count()).where(Visit.court_id == actor.court_id)) or 0
        )
    if actor.court_id is None:
        return 0
    courts = int(await db.scalar(select(func.count()).select_from(Court)) or 1)
    scope = await descendant_court_ids(db, actor.court_id)
    return total * len(scope) // max(1, courts)


@dataclass
class Plan:
    """How a words search runs (see ``plan``): for the count and for the page, whether
    each recording is tested through its own lines (``EXISTS``) rather than found from the
    index's matching lines (``IN``); and whether the page walks recordings in date order."""

    count_exists: bool = False
    page_exists: bool = False
    walk: bool = False


async def plan(db: AsyncSession, actor: Actor, c: Criteria, dialect: str) -> Plan:
    """Choose how to search for words said, from a few cheap counts.

    From the index (``IN``) the cost follows the number M of matching lines (each is read
    to find its recording). Tested per recording (``EXISTS``) it follows how many
    recordings are read: for the count, until the cap is reached (about cap / p of the S
    recordings in scope, p being the share of recordings that say the words); for a page
    in date order, about 50 / (p · S/N) of all N recordings; for a page in any other
    order, all S. The costs per row below were measured at 10^6 recordings."""
    assert c.terms
    first = some_lines(dialect, c.terms, LINES_CAP + 1).subquery()
    lines = int(await db.scalar(select(func.count()).select_from(first)) or 0)
    if c.number or c.petitioner or c.id_tail or c.judge or c.court_id:
        # the planner starts from the narrow criterion: test its few recordings
        return Plan(count_exists=lines > 2000, page_exists=lines > 2000)
    total = await _recordings_total(db)
    scope = max(1, await _in_scope(db, actor, total))
    share = max(min(1.0, lines / (2.5 * total)), 1e-9)  # a recording says it on ~2.5 lines
    from_index = lines * 5.0
    count_exists = min(scope, (COUNT_CAP + 1) / share) * 1.5 < lines * 4.0
    in_order = c.sort in (Sort.newest, Sort.oldest)
    walk_cost = min(total, 50 / (share * scope / total)) * 3.0
    walkable = in_order and dialect == "sqlite" and actor.role in (Role.admin, Role.archivist)
    if walkable and walk_cost < min(from_index, scope * 13.0):
        return Plan(count_exists=count_exists, page_exists=True, walk=True)
    return Plan(count_exists=count_exists, page_exists=scope * 13.0 < from_index)


def named(*head: Any) -> tuple[Select[Any], Any, Any]:
    """SELECT ``head`` plus the names a list shows of a visit — petition number and
    category, the two courts, the judge, the petitioner's name and ID number — from
    ``Visit`` joined to them; returns the statement and the two court aliases."""
    court, receiving = aliased(Court), aliased(Court)
    stmt = (
        select(
            *head,
            Petition.number,
            Petition.category,
            court.name,
            receiving.name,
            User.display_name,
            Petitioner.name,
            Petitioner.id_number,
        )
        .select_from(Visit)
        .join(Petition, Petition.id == Visit.petition_id)
        .join(Petitioner, Petitioner.id == Petition.petitioner_id)
        .join(court, court.id == Visit.court_id)
        .join(receiving, receiving.id == Visit.receiving_court_id)
        .outerjoin(User, User.id == Visit.judge_id)
    )
    return stmt, court, receiving


async def search(
    db: AsyncSession, actor: Actor, c: Criteria, *, limit: int, offset: int, tz: Any
) -> tuple[list[Found], int, bool]:
    """One page of the recordings ``actor`` may see that meet ``c``; how many match,
    counted up to COUNT_CAP; and whether there are more than that."""
    where, people = await _filters(db, actor, c, tz)
    dialect = dialect_of(db)
    chosen = await plan(db, actor, c, dialect) if c.terms else Plan()
    page_where = list(where)
    if chosen.walk:  # the access terms must not lead SQLite away from the date order
        page_where[0] = await access_condition(db, actor, unindexed=True)
    if c.terms:
        where.append(_texts_match(dialect, c.terms, chosen.count_exists))
        page_where.append(_texts_match(dialect, c.terms, chosen.page_exists))
    matching: Select[Any] = select(Recording.visit_id).join(Visit, Visit.id == Recording.visit_id)
    if people or c.sort in (Sort.number, Sort.number_desc):
        matching = matching.join(Petition, Petition.id == Visit.petition_id)
    if people:
        matching = matching.join(Petitioner, Petitioner.id == Petition.petitioner_id)
    capped = matching.where(*where).limit(COUNT_CAP + 1).subquery()
    total = int(await db.scalar(select(func.count()).select_from(capped)) or 0)
    more = total > COUNT_CAP
    total = min(total, COUNT_CAP)
    if total == 0 or (offset >= total and not more):
        return [], total, more
    court = aliased(Court)
    if c.sort is Sort.court:
        matching = matching.join(court, court.id == Visit.court_id)
    order: tuple[Any, ...] = {
        Sort.newest: (Recording.started_at.desc(), Recording.visit_id.desc()),
        Sort.oldest: (Recording.started_at.asc(), Recording.visit_id.asc()),
        Sort.number: (Petition.number.asc(), Recording.started_at.desc()),
        Sort.number_desc: (Petition.number.desc(), Recording.started_at.desc()),
        Sort.longest: (Recording.duration_seconds.desc(), Recording.started_at.desc()),
        Sort.shortest: (Recording.duration_seconds.asc(), Recording.started_at.desc()),
        Sort.court: (court.name.asc(), Recording.started_at.desc()),
    }[c.sort]
    # the page's ids first (only the joins the filters and the order need), then its names
    page = (
        await db.scalars(matching.where(*page_where).order_by(*order).limit(limit).offset(offset))
    ).all()
    stmt, _, _ = named(Recording, Visit)
    by_id = {
        r[0].visit_id: r
        for r in (
            await db.execute(
                stmt.join(Recording, Recording.visit_id == Visit.id).where(
                    Recording.visit_id.in_(page)
                )
            )
        ).all()
    }
    rows = [by_id[i] for i in page if i in by_id]
    hits: dict[str, list[Hit]] = {}
    if c.terms and rows:
        ids = [r[0].visit_id for r in rows]
        lines = await db.scalars(
            select(RecordingText)
            .where(RecordingText.visit_id.in_(ids), line_matches(dialect, c.terms, narrowed=True))
            .order_by(RecordingText.visit_id, RecordingText.start)
            .limit(HITS_PER_VISIT * len(ids) * 4)
        )
        for line in lines:
            found = hits.setdefault(line.visit_id, [])
            if len(found) < HITS_PER_VISIT:
                found.append(Hit(line.kind, line.start, line.role, line.speaker, line.text))
    return (
        [
            Found(
                recording=r[0],
                visit=r[1],
                number=r[2],
                category=category_name(r[3]),
                court_name=r[4],
                receiving_court_name=r[5],
                judge_name=r[6] or "",
                petitioner_name=r[7],
                petitioner_id_number=r[8],
                hits=hits.get(r[0].visit_id, []),
            )
            for r in rows
        ],
        total,
        more,
    )


def category_name(code: str) -> str:
    """A case category as people read it (民事再审申请, not civil_retrial)."""
    return label_of("case_category", code)


async def describe(db: AsyncSession, visit_id: str) -> dict[str, Any] | None:
    """The names the pages, the composite's overlay and the case file show of a visit."""
    stmt, _, _ = named(Petition.summary)
    row = (await db.execute(stmt.where(Visit.id == visit_id))).first()
    if row is None:
        return None
    return {
        "petition_summary": row[0],
        "petition_number": row[1],
        "petition_category": category_name(row[2]),
        "court_name": row[3],
        "receiving_court_name": row[4],
        "judge_name": row[5] or "",
        "petitioner_name": row[6],
        "petitioner_id_masked": mask_id_number(row[7]),
    }


async def revision_count(db: AsyncSession, visit_id: str) -> int:
    """The newest transcript revision the database knows of (0: none), each of which must
    be in the recording's folder (``recorder.manifest.verify``'s ``revisions``)."""
    newest = await db.scalar(
        select(func.max(TranscriptCorrection.revision)).where(
            TranscriptCorrection.visit_id == visit_id
        )
    )
    return int(newest or 0)

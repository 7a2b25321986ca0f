"""Who is acting, and which courts' records they may see.

An operator acts for their own court; a judge for visits addressed to their court; an
archivist for their court and the courts below; an admin everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, bindparam, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from config.db import prepared
from scheduler.models import Court, Role


@dataclass(frozen=True)
class Actor:
    """A staff member acting through the API or the CLI."""

    user_id: int | None
    username: str
    role: Role
    court_id: int | None
    address: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.admin


SYSTEM_ACTOR = Actor(user_id=None, username="system", role=Role.admin, court_id=None)


def _descendants_statement() -> Select[Any]:
    courts = Court.__table__
    tree = (
        select(courts.c.id).where(courts.c.id == bindparam("court_id")).cte("tree", recursive=True)
    )
    tree = tree.union_all(select(courts.c.id).where(courts.c.parent_id == tree.c.id))
    return select(tree.c.id)


# Built once, of table columns (every scope check and the board read it).
_DESCENDANTS = prepared(_descendants_statement())


async def descendant_court_ids(session: AsyncSession, court_id: int) -> set[int]:
    """The court and every court below it (one recursive query)."""
    rows = await session.execute(_DESCENDANTS, {"court_id": court_id})
    return {int(r[0]) for r in rows}


def _ancestors_statement() -> Select[Any]:
    courts = Court.__table__
    up = (
        select(courts.c.parent_id.label("id"), literal(1).label("depth"))
        .where(courts.c.id == bindparam("court_id"))
        .cte("up", recursive=True)
    )
    up = up.union_all(select(courts.c.parent_id, up.c.depth + 1).where(courts.c.id == up.c.id))
    return select(up.c.id).where(up.c.id.is_not(None)).order_by(up.c.depth)


# Built once, of table columns: no statement building or ORM layer per call (booking path).
_ANCESTORS = prepared(_ancestors_statement())


async def ancestor_court_ids(session: AsyncSession, court_id: int) -> list[int]:
    """The courts above ``court_id``, nearest first (not including it); one query."""
    rows = await session.execute(_ANCESTORS, {"court_id": court_id})
    return [int(r[0]) for r in rows]


async def court_scope(session: AsyncSession, actor: Actor) -> set[int] | None:
    """Court ids whose own records ``actor`` may read; ``None`` means every court."""
    if actor.role is Role.admin:
        return None
    if actor.court_id is None:
        return set()
    if actor.role is Role.archivist:
        return await descendant_court_ids(session, actor.court_id)
    return {actor.court_id}

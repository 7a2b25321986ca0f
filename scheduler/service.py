"""Rules for courts, accounts, reception rooms, petitioners and petitions.

Every function takes the acting :class:`~scheduler.scope.Actor`, checks the court scope,
writes an audit event in the same transaction and raises :mod:`config.errors` on refusal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, false, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from config.audit import record_audit
from config.db import utcnow
from config.errors import ConflictError, InvalidError, NotFoundError, PermissionDeniedError
from config.privacy import mask_id_number, resident_id_valid
from scheduler.accounts import set_password
from scheduler.cases.models import MeetingInvitee
from scheduler.models import (
    CalendarFeed,
    Court,
    CourtLevel,
    IdType,
    Petition,
    Petitioner,
    ReceptionRoom,
    Role,
    User,
    Visit,
)
from scheduler.scope import Actor, court_scope, descendant_court_ids

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list and the total count."""

    items: Sequence[T]
    total: int


async def _page(session: AsyncSession, stmt: Select[Any], limit: int, offset: int) -> Page[Any]:
    total = await session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    items = (await session.scalars(stmt.limit(limit).offset(offset))).all()
    return Page(items=items, total=int(total or 0))


def _audit(session: AsyncSession, actor: Actor, action: str, target: Any, **detail: Any) -> None:
    record_audit(
        session,
        action=action,
        actor_type="user" if actor.user_id is not None else "system",
        actor_id=actor.user_id,
        actor_name=actor.username,
        target_type=type(target).__tablename__ if target is not None else None,
        target_id=getattr(target, "id", None),
        address=actor.address,
        court_id=getattr(target, "court_id", None) if not isinstance(target, Court) else target.id,
        detail=detail,
    )


def _require_admin(actor: Actor) -> None:
    if not actor.is_admin:
        raise PermissionDeniedError("仅系统管理员可执行此操作")


# ---------------------------------------------------------------- courts


async def list_courts(session: AsyncSession) -> Sequence[Court]:
    return (await session.scalars(select(Court).order_by(Court.id))).all()


async def get_court(session: AsyncSession, court_id: int) -> Court:
    court = await session.get(Court, court_id)
    if court is None:
        raise NotFoundError(f"法院 {court_id} 不存在")
    return court


async def create_court(
    session: AsyncSession,
    actor: Actor,
    *,
    code: str,
    name: str,
    level: CourtLevel,
    parent_id: int | None,
) -> Court:
    _require_admin(actor)
    if level is CourtLevel.supreme:
        if parent_id is not None:
            raise InvalidError("最高人民法院没有上级法院", code="invalid_parent")
        if await session.scalar(select(Court.id).where(Court.level == CourtLevel.supreme)):
            raise ConflictError("最高人民法院已存在", code="supreme_exists")
    else:
        if parent_id is None:
            raise InvalidError("请指定上级法院", code="invalid_parent")
        parent = await session.get(Court, parent_id)
        if parent is None:
            raise InvalidError(f"上级法院 {parent_id} 不存在", code="invalid_parent")
        if parent.level is not level.parent_level:
            raise InvalidError(
                f"{_LEVEL_NAMES[level]}的上级必须是{_LEVEL_NAMES[level.parent_level or level]}",
                code="invalid_parent",
            )
    await _unique(session, Court, Court.code == code, f"法院代码 {code} 已被使用")
    await _unique(session, Court, Court.name == name, f"法院名称 {name} 已被使用")
    court = Court(code=code, name=name, level=level, parent_id=parent_id)
    session.add(court)
    await session.flush()
    _audit(session, actor, "court.create", court, code=code, name=name, level=level.value)
    return court


async def update_court(
    session: AsyncSession, actor: Actor, court_id: int, *, code: str | None, name: str | None
) -> Court:
    _require_admin(actor)
    court = await get_court(session, court_id)
    changes: dict[str, Any] = {}
    if code is not None and code != court.code:
        await _unique(session, Court, Court.code == code, f"法院代码 {code} 已被使用")
        changes["code"] = [court.code, code]
        court.code = code
    if name is not None and name != court.name:
        await _unique(session, Court, Court.name == name, f"法院名称 {name} 已被使用")
        changes["name"] = [court.name, name]
        court.name = name
    if changes:
        _audit(session, actor, "court.update", court, changes=changes)
    return court


_LEVEL_NAMES = {
    CourtLevel.supreme: "最高人民法院",
    CourtLevel.high: "高级人民法院",
    CourtLevel.intermediate: "中级人民法院",
    CourtLevel.basic: "基层人民法院",
}


async def _unique(session: AsyncSession, model: Any, condition: Any, message: str) -> None:
    if await session.scalar(select(func.count()).select_from(model).where(condition)):
        raise ConflictError(message, code="duplicate")


# ---------------------------------------------------------------- users


async def _check_role_court(session: AsyncSession, role: Role, court_id: int | None) -> None:
    if role is Role.admin:
        if court_id is not None:
            await get_court(session, court_id)
        return
    if court_id is None:
        raise InvalidError("该角色必须属于某一法院", code="court_required")
    court = await session.get(Court, court_id)
    if court is None:
        raise InvalidError(f"法院 {court_id} 不存在", code="invalid_court")
    if role is Role.operator and court.level is not CourtLevel.basic:
        raise InvalidError("操作员只能属于基层人民法院", code="invalid_court")


async def list_users(
    session: AsyncSession, *, court_id: int | None, limit: int, offset: int
) -> Page[User]:
    stmt = select(User).order_by(User.id)
    if court_id is not None:
        stmt = stmt.where(User.court_id == court_id)
    return await _page(session, stmt, limit, offset)


async def get_user(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"用户 {user_id} 不存在")
    return user


async def create_user(
    session: AsyncSession,
    actor: Actor,
    *,
    username: str,
    display_name: str,
    role: Role,
    court_id: int | None,
    password: str,
    password_min_length: int,
    temporary: bool = True,
) -> User:
    """``temporary``: the holder must change the password at first login (an admin chose
    it); ``vreception create-user`` is run by the holder themself unless told otherwise."""
    _require_admin(actor)
    user = User(username=username, display_name=display_name, role=role, court_id=court_id)
    user.active = True
    set_password(user, password, password_min_length, temporary=temporary)
    await _check_role_court(session, role, court_id)
    await _unique(session, User, User.username == username, f"用户名 {username} 已被使用")
    session.add(user)
    await session.flush()
    _audit(session, actor, "user.create", user, username=username, role=role.value)
    return user


async def update_user(
    session: AsyncSession,
    actor: Actor,
    user_id: int,
    *,
    display_name: str | None = None,
    role: Role | None = None,
    court_id: int | None = None,
    active: bool | None = None,
    password: str | None = None,
    password_min_length: int = 10,
) -> tuple[User, bool]:
    """Apply the changes; the flag says whether the user's sessions must end."""
    _require_admin(actor)
    # locked (PostgreSQL) until this change commits: two admins changing one account at once
    # would each check the rule against what they read and break it together
    user = await session.get(User, user_id, with_for_update=True)
    if user is None:
        raise NotFoundError(f"用户 {user_id} 不存在")
    changes: dict[str, Any] = {}
    end_sessions = False
    new_role = role or user.role
    new_court = court_id if court_id is not None else user.court_id
    if role is not None or court_id is not None:
        await _check_role_court(session, new_role, new_court)
    moved = new_role is not user.role or new_court != user.court_id
    if moved:
        held = await _open_duties(session, user.id)
        if held:
            # a visit's judge is its judge by account: moved, they would keep it (and the
            # judges of the court it is booked with could not receive it)
            raise ConflictError(
                f"该用户尚有 {held} 个未结束的接访或约谈（承办、主持或受邀），"
                "请先改期改派或取消后再调整其角色或所属法院",
                code="open_visits",
                details={"open_visits": held},
            )
    if user.id == actor.user_id and (active is False or (role and role is not Role.admin)):
        raise InvalidError("不能停用自己的账户或取消自己的管理员角色", code="self_lockout")
    if display_name is not None and display_name != user.display_name:
        changes["display_name"] = [user.display_name, display_name]
        user.display_name = display_name
    if new_role is not user.role:
        changes["role"] = [user.role.value, new_role.value]
        user.role = new_role
        end_sessions = True
    if new_court != user.court_id:
        changes["court_id"] = [user.court_id, new_court]
        user.court_id = new_court
        end_sessions = True
    if active is not None and active != user.active:
        changes["active"] = [user.active, active]
        user.active = active
        end_sessions = end_sessions or not active
        if not active:  # at once (a lost laptop): their visits' bookers are told instead
            await _tell_judge_gone(session, actor, user)
    if moved or active is False or password is not None:
        await _revoke_feeds(session, user)
    if password is not None:
        set_password(user, password, password_min_length, temporary=True)
        changes["password"] = "reset"  # noqa: S105 (an audit note, not a secret)
        end_sessions = True
    if changes:
        _audit(session, actor, "user.update", user, changes=changes)
    return user, end_sessions


async def _revoke_feeds(session: AsyncSession, user: User) -> None:
    """The secret calendar URLs made for or by ``user`` stop working: moved, stopped, or
    their password reset (perhaps it leaked, and the URLs with it)."""
    await session.execute(
        update(CalendarFeed)
        .where(
            CalendarFeed.revoked_at.is_(None),
            (CalendarFeed.created_by == user.id)
            | ((CalendarFeed.owner_kind == "judge") & (CalendarFeed.owner_id == user.id)),
        )
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )


async def _open_duties(session: AsyncSession, user_id: int) -> int:
    """The visits and meetings not over that ``user_id`` receives, hosts or is invited to."""
    from scheduler.lifecycle import OPEN  # (lifecycle reaches this module through cases)

    received = await session.scalar(
        select(func.count())
        .select_from(Visit)
        .where(Visit.judge_id == user_id, Visit.state.in_(OPEN))
    )
    invited = await session.scalar(
        select(func.count())
        .select_from(MeetingInvitee)
        .join(Visit, Visit.id == MeetingInvitee.visit_id)
        .where(MeetingInvitee.user_id == user_id, Visit.state.in_(OPEN))
    )
    return int(received or 0) + int(invited or 0)


async def _tell_judge_gone(session: AsyncSession, actor: Actor, user: User) -> None:
    """A judge's account stopped: each open visit they receive needs another judge."""
    from scheduler.lifecycle import OPEN
    from scheduler.notify import notify, visit_recipients

    visits = (
        await session.scalars(select(Visit).where(Visit.judge_id == user.id, Visit.state.in_(OPEN)))
    ).all()
    for visit in visits:
        petition = await session.get(Petition, visit.petition_id)
        await notify(
            session,
            [r for r in await visit_recipients(session, visit, actor.user_id) if r != user.id],
            kind="visit_needs_reschedule",
            title=f"接访需改派：{petition.number if petition else ''}",
            body=f"承办法官 {user.display_name or user.username} 的账户已停用，请改派或改期",
            visit_id=visit.id,
        )


async def reset_password(
    session: AsyncSession,
    actor: Actor,
    user: User,
    *,
    password: str,
    password_min_length: int,
    temporary: bool = True,
) -> None:
    """Give ``user`` a new password chosen by an admin (the API) or by whoever runs the
    server (``vreception set-password``); the same strength rule as for new accounts.
    ``temporary``: the holder must change it at their next login."""
    _require_admin(actor)
    set_password(user, password, password_min_length, temporary=temporary)
    await _revoke_feeds(session, user)
    _audit(session, actor, "user.password_reset", user, username=user.username)


# ---------------------------------------------------------------- reception rooms


async def list_rooms(
    session: AsyncSession, actor: Actor, *, court_id: int | None = None
) -> Sequence[ReceptionRoom]:
    stmt = select(ReceptionRoom).order_by(ReceptionRoom.court_id, ReceptionRoom.name)
    scope = await court_scope(session, actor)
    if actor.role is Role.judge:
        scope = None  # judges see the rooms visits come from (names only)
    if scope is not None:
        stmt = stmt.where(ReceptionRoom.court_id.in_(scope))
    if court_id is not None:
        stmt = stmt.where(ReceptionRoom.court_id == court_id)
    return (await session.scalars(stmt)).all()


async def create_room(
    session: AsyncSession, actor: Actor, *, court_id: int, name: str, location: str
) -> ReceptionRoom:
    """A room of a court: at a basic court the petitioners' video reception room (visits
    are booked in it); at a court above, where its staff hold video supervision meetings
    (视频约谈, booked like a visit: never two at once)."""
    _require_admin(actor)
    court = await session.get(Court, court_id)
    if court is None:
        raise InvalidError(f"法院 {court_id} 不存在", code="invalid_court")
    await _unique(
        session,
        ReceptionRoom,
        (ReceptionRoom.court_id == court_id) & (ReceptionRoom.name == name),
        f"本院已有名为 {name} 的接访室",
    )
    room = ReceptionRoom(court_id=court_id, name=name, location=location)
    session.add(room)
    await session.flush()
    _audit(session, actor, "room.create", room, name=name)
    return room


async def update_room(
    session: AsyncSession,
    actor: Actor,
    room_id: int,
    *,
    name: str | None,
    location: str | None,
    active: bool | None,
) -> ReceptionRoom:
    _require_admin(actor)
    room = await session.get(ReceptionRoom, room_id)
    if room is None:
        raise NotFoundError(f"接访室 {room_id} 不存在")
    changes: dict[str, Any] = {}
    if name is not None and name != room.name:
        await _unique(
            session,
            ReceptionRoom,
            (ReceptionRoom.court_id == room.court_id) & (ReceptionRoom.name == name),
            f"本院已有名为 {name} 的接访室",
        )
        changes["name"] = [room.name, name]
        room.name = name
    if location is not None and location != room.location:
        changes["location"] = [room.location, location]
        room.location = location
    if active is not None and active != room.active:
        changes["active"] = [room.active, active]
        room.active = active
    if changes:
        _audit(session, actor, "room.update", room, changes=changes)
    return room


# ---------------------------------------------------------------- petitioners


async def _petitioner_filter(session: AsyncSession, actor: Actor) -> Any | None:
    """A WHERE clause limiting petitioners to what ``actor`` may read (None: all)."""
    if actor.role is Role.judge:
        received = (
            select(Petition.petitioner_id)
            .join(Visit, Visit.petition_id == Petition.id)
            .where(Visit.receiving_court_id == actor.court_id)
        )
        return Petitioner.id.in_(received)
    scope = await court_scope(session, actor)
    return None if scope is None else Petitioner.court_id.in_(scope)


def check_id_number(id_type: IdType, id_number: str) -> str:
    value = id_number.strip().upper()
    if id_type is IdType.resident_id and not resident_id_valid(value):
        raise InvalidError("居民身份证号码无效（应为 18 位且校验位正确）", code="invalid_id_number")
    if not value or len(value) > 32:
        raise InvalidError("证件号码长度无效", code="invalid_id_number")
    return value


async def _own_basic_court(session: AsyncSession, actor: Actor, court_id: int | None) -> int:
    """The court a new petitioner or petition belongs to: the operator's own court."""
    if actor.role is Role.operator:
        if court_id is not None and court_id != actor.court_id:
            raise PermissionDeniedError("操作员只能为本院登记")
        assert actor.court_id is not None
        return actor.court_id
    if not actor.is_admin:
        raise PermissionDeniedError("仅操作员或管理员可以登记")
    if court_id is None:
        raise InvalidError("请指定所属法院", code="court_required")
    court = await session.get(Court, court_id)
    if court is None or court.level is not CourtLevel.basic:
        raise InvalidError("信访人须登记在基层人民法院", code="invalid_court")
    return court_id


async def list_petitioners(
    session: AsyncSession, actor: Actor, *, query: str | None, limit: int, offset: int
) -> Page[Petitioner]:
    stmt = select(Petitioner).order_by(Petitioner.id.desc())
    condition = await _petitioner_filter(session, actor)
    if condition is not None:
        stmt = stmt.where(condition)
    if query:
        like = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(
            or_(
                Petitioner.name.like(like, escape="\\"),
                Petitioner.id_number.like("%" + query[-4:], escape="\\")
                if query.isalnum() and len(query) >= 4
                else false(),
            )
        )
    return await _page(session, stmt, limit, offset)


async def get_petitioner(session: AsyncSession, actor: Actor, petitioner_id: int) -> Petitioner:
    stmt = select(Petitioner).where(Petitioner.id == petitioner_id)
    condition = await _petitioner_filter(session, actor)
    if condition is not None:
        stmt = stmt.where(condition)
    petitioner = await session.scalar(stmt)
    if petitioner is None:
        raise NotFoundError(f"信访人 {petitioner_id} 不存在")
    return petitioner


async def create_petitioner(
    session: AsyncSession,
    actor: Actor,
    *,
    court_id: int | None,
    name: str,
    id_type: IdType,
    id_number: str,
    phone: str,
) -> Petitioner:
    court = await _own_basic_court(session, actor, court_id)
    number = check_id_number(id_type, id_number)
    await _unique(
        session,
        Petitioner,
        (Petitioner.court_id == court)
        & (Petitioner.id_type == id_type)
        & (Petitioner.id_number == number),
        f"证件号 {mask_id_number(number)} 的信访人已登记",
    )
    petitioner = Petitioner(
        court_id=court,
        name=name,
        id_type=id_type,
        id_number=number,
        phone=phone,
        created_by=actor.user_id,
    )
    session.add(petitioner)
    await session.flush()
    _audit(session, actor, "petitioner.create", petitioner, id_number=mask_id_number(number))
    return petitioner


# ---------------------------------------------------------------- petitions


async def _petition_filter(session: AsyncSession, actor: Actor) -> Any | None:
    if actor.role is Role.judge:
        received = select(Visit.petition_id).where(Visit.receiving_court_id == actor.court_id)
        return Petition.id.in_(received)
    scope = await court_scope(session, actor)
    if scope is None:
        return None
    # the cases a court registered, and those handed down to it (交办): it books their visits
    return or_(Petition.court_id.in_(scope), Petition.handler_court_id.in_(scope))


async def list_petitions(
    session: AsyncSession,
    actor: Actor,
    *,
    petitioner_id: int | None,
    number: str | None,
    limit: int,
    offset: int,
) -> Page[Petition]:
    stmt = select(Petition).order_by(Petition.id.desc())
    condition = await _petition_filter(session, actor)
    if condition is not None:
        stmt = stmt.where(condition)
    if petitioner_id is not None:
        stmt = stmt.where(Petition.petitioner_id == petitioner_id)
    if number:
        stmt = stmt.where(Petition.number == number)
    return await _page(session, stmt, limit, offset)


async def get_petition(session: AsyncSession, actor: Actor, petition_id: int) -> Petition:
    stmt = select(Petition).where(Petition.id == petition_id)
    condition = await _petition_filter(session, actor)
    if condition is not None:
        stmt = stmt.where(condition)
    petition = await session.scalar(stmt)
    if petition is None:
        raise NotFoundError(f"信访事项 {petition_id} 不存在")
    return petition


async def court_ids_below(session: AsyncSession, court_id: int) -> set[int]:
    return await descendant_court_ids(session, court_id)

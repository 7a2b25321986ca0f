"""The JSON shapes of the API: request bodies (strict, unknown fields refused) and answers."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from config.privacy import mask_id_number, mask_phone
from scheduler.cases.words import CaseState
from scheduler.models import (
    Court,
    CourtLevel,
    IdType,
    Petition,
    Petitioner,
    ReceptionRoom,
    Role,
    User,
)


def _printable(value: str) -> str:
    for ch in value:
        if ch in "\n\t":
            continue
        if unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn"):
            raise ValueError("不能包含控制字符或无效字符")
    return value


def _single_line(value: str) -> str:
    if "\n" in value or "\t" in value:
        raise ValueError("不能包含换行或制表符")
    return value


# Trimmed single-line text without control characters, by maximum length.
Text32 = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=32),
    AfterValidator(_printable),
    AfterValidator(_single_line),
]
Text64 = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
    AfterValidator(_printable),
    AfterValidator(_single_line),
]
Text128 = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=128),
    AfterValidator(_printable),
    AfterValidator(_single_line),
]
OptionalText128 = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=0, max_length=128),
    AfterValidator(_printable),
    AfterValidator(_single_line),
]
LongText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=4000),
    AfterValidator(_printable),
]
OptionalText2000 = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=0, max_length=2000),
    AfterValidator(_printable),
]


_USERNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{3,64}$")
_CODE_RE = re.compile(r"^[A-Za-z0-9_-]{2,32}$")
_PHONE_RE = re.compile(r"^\+?[0-9-]{5,20}$")


def _username(value: str) -> str:
    if not _USERNAME_RE.match(value):
        raise ValueError("用户名须为 3–64 位字母、数字、点、下划线或连字符")
    return value


def _court_code(value: str) -> str:
    if not _CODE_RE.match(value):
        raise ValueError("法院代码须为 2–32 位字母、数字、下划线或连字符")
    return value


def _phone(value: str) -> str:
    if value and not _PHONE_RE.match(value):
        raise ValueError("电话号码格式无效")
    return value


Username = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_username)]
CourtCode = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_court_code)]
Phone = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=20), AfterValidator(_phone)
]
Password = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Id = Annotated[int, Field(ge=1, le=2**31 - 1)]


def _instant(value: datetime) -> datetime:
    """A time with its zone that is a real instant: 0001-01-01T00:00+14:00 or
    9999-12-31T23:59-14:00 lie outside the calendar in UTC (compared, they answered 500)."""
    try:
        value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("时间超出有效范围") from None
    return value


# A time with its zone (a time without one is refused: which court's clock would it be?)
Instant = Annotated[AwareDatetime, AfterValidator(_instant)]
# A calendar day people ask about or set: within the years the court's calendar can hold
# (9999-12-31 plus a day or a week overflowed into a 500)
Day = Annotated[date, Field(ge=date(2000, 1, 1), le=date(2099, 12, 31))]


class Body(BaseModel):
    """Base of request bodies: strict JSON types, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Answer(BaseModel):
    """Base of answers."""

    model_config = ConfigDict(from_attributes=True)


class Query(BaseModel):
    """Base of query strings (values arrive as text; unknown parameters are ignored)."""

    model_config = ConfigDict(extra="ignore")


class PageQuery(Query):
    limit: Annotated[int, Field(ge=1, le=200)] = 50
    offset: Annotated[int, Field(ge=0, le=10_000_000)] = 0


T = TypeVar("T")


class Page(Answer, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


def page_of(
    answer: type[Page[T]],
    items: Iterable[Any],
    total: int,
    query: PageQuery,
    convert: Callable[[Any], T],
) -> Page[T]:
    """Wrap one page of records, converted to their answer model."""
    return answer(
        items=[convert(i) for i in items], total=total, limit=query.limit, offset=query.offset
    )


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any | None = None


class ErrorAnswer(BaseModel):
    """Every refusal has this shape."""

    error: ErrorDetail


class Ok(Answer):
    ok: bool = True


# ---------------------------------------------------------------- auth


class LoginBody(Body):
    username: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    password: Password


class Me(Answer):
    id: int
    username: str
    display_name: str
    role: Role
    court_id: int | None
    court_name: str | None
    csrf_token: str
    home: str
    # an administrator chose the password: /password first, nothing else until then
    must_change_password: bool = False
    password_rule: str = ""  # the strength rule a new password must follow, in words


class PasswordChange(Body):
    current_password: Password
    new_password: Password


# ---------------------------------------------------------------- courts


class CourtIn(Body):
    code: CourtCode
    name: Text128
    level: CourtLevel
    parent_id: Id | None = None


class CourtPatch(Body):
    code: CourtCode | None = None
    name: Text128 | None = None


class CourtOut(Answer):
    id: int
    code: str
    name: str
    level: CourtLevel
    parent_id: int | None
    created_at: datetime

    @classmethod
    def of(cls, court: Court) -> CourtOut:
        return cls.model_validate(court)


# ---------------------------------------------------------------- users


class UserIn(Body):
    username: Username
    display_name: Text64
    role: Role
    court_id: Id | None = None
    password: Password


class UserPatch(Body):
    display_name: Text64 | None = None
    role: Role | None = None
    court_id: Id | None = None
    active: bool | None = None
    password: Password | None = None


class UserOut(Answer):
    id: int
    username: str
    display_name: str
    role: Role
    court_id: int | None
    active: bool
    created_at: datetime
    must_change_password: bool  # an administrator chose the password; not yet replaced
    locked_seconds: int = 0  # failed logins: seconds until the account may try again

    @classmethod
    def of(cls, user: User, locked_seconds: int = 0) -> UserOut:
        return cls.model_validate(user).model_copy(update={"locked_seconds": locked_seconds})


class PasswordIn(Body):
    password: Password


class UserQuery(PageQuery):
    court_id: Id | None = None


# ---------------------------------------------------------------- rooms


class RoomIn(Body):
    court_id: Id
    name: Text64
    location: OptionalText128 = ""


class RoomPatch(Body):
    name: Text64 | None = None
    location: OptionalText128 | None = None
    active: bool | None = None


class RoomOut(Answer):
    id: int
    court_id: int
    name: str
    location: str
    active: bool

    @classmethod
    def of(cls, room: ReceptionRoom) -> RoomOut:
        return cls.model_validate(room)


class RoomQuery(Query):
    court_id: Id | None = None


# ---------------------------------------------------------------- petitioners


class PetitionerIn(Body):
    court_id: Id | None = Field(None, description="Admins only; an operator's own court is used.")
    name: Text64
    id_type: IdType = IdType.resident_id
    id_number: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
    phone: Phone = ""


class PetitionerOut(Answer):
    """A petitioner as lists and pages show it: ID and phone numbers masked."""

    id: int
    court_id: int
    name: str
    id_type: IdType
    id_number_masked: str
    phone_masked: str
    created_at: datetime

    @classmethod
    def of(cls, p: Petitioner) -> PetitionerOut:
        return cls(
            id=p.id,
            court_id=p.court_id,
            name=p.name,
            id_type=p.id_type,
            id_number_masked=mask_id_number(p.id_number),
            phone_masked=mask_phone(p.phone),
            created_at=p.created_at,
        )


class PetitionerQuery(PageQuery):
    q: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = None


# ---------------------------------------------------------------- petitions


class PetitionOut(Answer):
    """A case (信访件) as the lists show it: its category and state are codes of the
    ``case_category`` and ``case_state`` vocabularies (labels in /vocabulary.js)."""

    id: int
    court_id: int
    petitioner_id: int
    number: str
    category: str
    summary: str
    judgment_ref: str
    created_at: datetime
    state: CaseState

    @classmethod
    def of(cls, p: Petition) -> PetitionOut:
        return cls.model_validate(p)


class PetitionQuery(PageQuery):
    petitioner_id: Id | None = None
    number: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = None


# ---------------------------------------------------------------- audit


class AuditOut(Answer):
    id: int
    at: datetime
    actor_type: str
    actor_id: str | None
    actor_name: str | None
    action: str
    target_type: str | None
    target_id: str | None
    address: str | None
    court_id: int | None
    detail: dict[str, Any]
    sentence: str = ""  # the event in one Chinese sentence, times in the court's zone
    action_label: str = ""
    target_label: str = ""


class AuditActionOut(Answer):
    action: str
    label: str


class AuditQuery(PageQuery):
    actor: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = None
    action: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = None
    target_type: Annotated[str, StringConstraints(max_length=32)] | None = None
    target_id: Annotated[str, StringConstraints(max_length=64)] | None = None
    since: Instant | None = None
    until: Instant | None = None

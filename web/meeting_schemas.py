"""JSON shapes of the video supervision meeting API (视频约谈)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, Field

from scheduler.cases.meetings import MAX_CASES, MAX_INVITEES, MAX_MINUTES, MIN_MINUTES
from scheduler.models import VisitState
from web.schemas import Answer, Body, Id, Query, Text64


class MeetingIn(Body):
    case_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_CASES)]
    invitee_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_INVITEES)]
    starts_at: AwareDatetime
    minutes: Annotated[int, Field(ge=MIN_MINUTES, le=MAX_MINUTES)] = 60
    room_id: Id | None = None


class MeetingCancelIn(Body):
    reason: Text64


class MeetingCaseOut(Answer):
    id: int
    number: str


class MeetingPersonOut(Answer):
    id: int
    name: str
    court_name: str


class MeetingOut(Answer):
    """A meeting as the meetings page lists it."""

    id: str
    state: VisitState
    state_name: str
    starts_at: datetime | None
    ends_at: datetime | None
    host_id: int | None
    host_name: str
    host_court_name: str
    cases: list[MeetingCaseOut]
    invitees: list[MeetingPersonOut]
    my_role: str  # "host", "attendee", or "" (an admin looking)
    can_enter: bool
    can_cancel: bool
    call_url: str
    recording_url: str


class CaseLookupQuery(Query):
    number: Annotated[str, Field(max_length=64)] = ""


class ReachableCaseOut(Answer):
    id: int
    number: str
    handler_court_name: str


class CourtChoiceOut(Answer):
    id: int
    name: str


class PeopleQuery(Query):
    court_id: Id


class PersonChoiceOut(Answer):
    id: int
    name: str
    role: str
    role_name: str

"""The words of the domain that people read: every enum whose values reach a page or a
document is registered here once with its zh-CN labels, and the pages get them all as JSON
(``/vocabulary.js``), so no label is written twice and JS keeps no label maps.

Enums stay in the package that owns them (``scheduler.models.VisitState``…) and register
their labels beside their definition with :func:`define`; the words several packages share
(the roles in a visit's room, why someone left it, why a visit ended) are defined here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TypeVar

E = TypeVar("E", bound=enum.Enum)

_REGISTRY: dict[str, tuple[type[enum.Enum], dict[str, str]]] = {}


def define(kind: str, cls: type[E], labels: Mapping[E, str]) -> type[E]:
    """Register ``cls``'s zh-CN labels under ``kind``; every member must have one."""
    missing = [m.name for m in cls if m not in labels]
    if missing:
        raise ValueError(f"{cls.__name__}: no label for {', '.join(missing)}")
    if kind in _REGISTRY and _REGISTRY[kind][0] is not cls:
        raise ValueError(f"vocabulary {kind!r} is already defined by another enum")
    _REGISTRY[kind] = (cls, {str(m.value): labels[m] for m in cls})
    return cls


def label(member: enum.Enum) -> str:
    """The zh-CN label of ``member`` (its value when its enum registered none)."""
    for cls, labels in _REGISTRY.values():
        if isinstance(member, cls):
            return labels[str(member.value)]
    return str(member.value)


def label_of(kind: str, value: str) -> str:
    """The label of a stored ``value`` of vocabulary ``kind`` (the value itself if unknown)."""
    entry = _REGISTRY.get(kind)
    return entry[1].get(value, value) if entry else value


def as_json() -> dict[str, dict[str, str]]:
    """Every registered vocabulary: ``{kind: {value: label}}``, as the pages receive it."""
    return {kind: dict(labels) for kind, (_, labels) in sorted(_REGISTRY.items())}


class ParticipantRole(enum.StrEnum):
    """Who a participant is in a visit's room."""

    judge = "judge"
    operator = "operator"
    petitioner = "petitioner"
    lawyer = "lawyer"
    mediator = "mediator"
    observer = "observer"  # 监看: staff of a supervising court, receiving only


define(
    "participant_role",
    ParticipantRole,
    {
        ParticipantRole.judge: "接访法官",
        ParticipantRole.operator: "操作员",
        ParticipantRole.petitioner: "信访人",
        ParticipantRole.lawyer: "律师",
        ParticipantRole.mediator: "调解员",
        ParticipantRole.observer: "监看",
    },
)

GUEST_ROLES = frozenset(
    {ParticipantRole.petitioner, ParticipantRole.lawyer, ParticipantRole.mediator}
)


class CloseReason(enum.StrEnum):
    """Why a participant left a visit's room (logged, sent to the others, on the timeline)."""

    left = "left"
    disconnected = "disconnected"
    refused = "refused"
    replaced = "replaced"  # the same identity joined again elsewhere (a new tab, a rejoin)
    ended = "ended"
    identity_revoked = "identity_revoked"  # logged out, disabled, or the role changed
    server_stopped = "server_stopped"  # the node shut down; the pages rejoin by themselves


define(
    "close_reason",
    CloseReason,
    {
        CloseReason.left: "主动离开",
        CloseReason.disconnected: "连接中断",
        CloseReason.refused: "未获准入",
        CloseReason.replaced: "已在其他页面重新加入",
        CloseReason.ended: "接访结束",
        CloseReason.identity_revoked: "登录身份已失效",
        CloseReason.server_stopped: "服务器停止运行",
    },
)


class EndReason(enum.StrEnum):
    """Why a visit ended."""

    ended = "ended"  # the judge (or staff) ended it
    abandoned = "abandoned"  # no judge in the room for ``visit_abandon_minutes``
    not_admitted = "not_admitted"  # ended while the petitioner was still in the lobby


define(
    "end_reason",
    EndReason,
    {
        EndReason.ended: "接访结束",
        EndReason.abandoned: "法官离开超时，系统自动结束",
        EndReason.not_admitted: "信访人未获准入，接访结束",
    },
)

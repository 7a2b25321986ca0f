"""API handlers: parse → service → JSON. Importing this package registers every route."""

from web.handlers import (
    archive,
    audit,
    auth,
    codes,
    courts,
    exports,
    meta,
    notifications,
    people,
    playback,
    recordings,
    rooms,
    scheduling,
    sealing,
    users,
    visits,
)

__all__ = [
    "archive",
    "audit",
    "auth",
    "codes",
    "courts",
    "exports",
    "meta",
    "notifications",
    "people",
    "playback",
    "recordings",
    "rooms",
    "scheduling",
    "sealing",
    "users",
    "visits",
]

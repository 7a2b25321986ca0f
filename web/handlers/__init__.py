"""API handlers: parse → service → JSON. Importing this package registers every route."""

from web.handlers import (
    archive,
    audit,
    auth,
    codes,
    courts,
    meta,
    notifications,
    people,
    recordings,
    rooms,
    scheduling,
    users,
    visits,
)

__all__ = [
    "archive",
    "audit",
    "auth",
    "codes",
    "courts",
    "meta",
    "notifications",
    "people",
    "recordings",
    "rooms",
    "scheduling",
    "users",
    "visits",
]

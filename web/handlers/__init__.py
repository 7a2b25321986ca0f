"""API handlers: parse → service → JSON. Importing this package registers every route."""

from web.handlers import (
    audit,
    auth,
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
    "audit",
    "auth",
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

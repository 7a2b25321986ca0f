"""API handlers: parse → service → JSON. Importing this package registers every route."""

from web.handlers import audit, auth, courts, meta, people, rooms, users

__all__ = ["audit", "auth", "courts", "meta", "people", "rooms", "users"]

"""Alembic migrations of the vreception database."""

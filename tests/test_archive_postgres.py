"""The archive's search (Chinese full text included) and access rules on PostgreSQL: the
same tests as on SQLite, with the tsvector index instead of FTS5."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from config.settings import Settings
from tests.conftest import PostgresServer
from tests.test_archive import (  # noqa: F401  (the fixture and the tests, run again here)
    archive,
    test_access_rules,
    test_search_by_every_criterion,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def settings(tmp_path: Path, postgres_server: PostgresServer) -> Settings:
    return Settings(
        data_dir=tmp_path / "var",
        database_url=postgres_server.create_database(f"vr_archive_{uuid.uuid4().hex[:8]}"),
    )

"""Shared fixtures: a fresh, migrated database per test, on SQLite and on PostgreSQL.

PostgreSQL tests run when ``AFTERSHOCK_TEST_POSTGRES_URL`` names a server (``make test`` and
``.ci/run`` set it); each test session (and xdist worker) gets its own database, dropped at
the end. With ``AFTERSHOCK_REQUIRE_POSTGRES=1`` (CI) an unreachable server fails the run
instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from analytics.db import ensure_schema, get_engine
from analytics.settings import normalise_database_url

POSTGRES_URL = os.environ.get("AFTERSHOCK_TEST_POSTGRES_URL", "")
REQUIRE_POSTGRES = os.environ.get("AFTERSHOCK_REQUIRE_POSTGRES") == "1"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _admin_engine() -> sa.Engine:
    return sa.create_engine(normalise_database_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def postgres_database_url() -> Iterator[str]:
    """A throwaway PostgreSQL database for this test session."""
    if not POSTGRES_URL:
        if REQUIRE_POSTGRES:
            pytest.fail("AFTERSHOCK_REQUIRE_POSTGRES=1 but AFTERSHOCK_TEST_POSTGRES_URL is unset")
        pytest.skip("set AFTERSHOCK_TEST_POSTGRES_URL to run the PostgreSQL tests")
    admin = _admin_engine()
    name = f"aftershock_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    url = sa.make_url(normalise_database_url(POSTGRES_URL)).set(database=name)
    yield url.render_as_string(hide_password=False)
    get_engine(url.render_as_string(hide_password=False)).dispose()
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate_all(engine: sa.Engine) -> None:
    from sqlmodel import SQLModel

    names = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: a new SQLite file, or the session's PostgreSQL emptied."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'aftershock.db'}"
        ensure_schema(get_engine(url))
        return url
    url = request.getfixturevalue("postgres_database_url")
    engine = get_engine(url)
    ensure_schema(engine)
    _truncate_all(engine)
    return str(url)


@pytest.fixture
def engine(database_url: str) -> sa.Engine:
    return get_engine(database_url)


from tests.fake_growthbook import fake_growthbook_fixture  # noqa: E402, F401

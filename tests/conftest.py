"""Shared fixtures: a fresh, migrated database per test, on SQLite and on PostgreSQL; the demo
databases several tests start from, built once per session; and the order tests run in.

PostgreSQL tests run when ``AFTERSHOCK_TEST_POSTGRES_URL`` names a server (``make test`` and
``.ci/run`` set it). A test session's databases are named ``aftershock_test_<session>_...``:
one per xdist worker (emptied before each test) and one template per demo recipe in use; all
are dropped at the end. With ``AFTERSHOCK_REQUIRE_POSTGRES=1`` (CI) an unreachable server fails
the run instead of skipping.

Tests marked ``slow`` run first, and xdist hands tests out two at a time (``--maxschedchunk
2`` unless given): the workers share the long tests out instead of one finishing them alone.
Hypothesis draws the same examples on every run (``HYPOTHESIS_PROFILE=explore`` draws new
ones) and has no deadline: a busy machine neither changes what is tested nor fails a test for
being slow.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import typer
from hypothesis import settings as hypothesis_settings

from analytics.db import ensure_schema, get_engine
from analytics.settings import get_settings
from tests.databases import DemoDatabases, PostgresServer
from tests.session_cache import SessionCache

POSTGRES_URL = os.environ.get("AFTERSHOCK_TEST_POSTGRES_URL", "")
REQUIRE_POSTGRES = os.environ.get("AFTERSHOCK_REQUIRE_POSTGRES") == "1"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]

hypothesis_settings.register_profile("aftershock", derandomize=True, deadline=None)
hypothesis_settings.register_profile("explore", derandomize=False, deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "aftershock"))

_SESSION = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        config.stash[_SESSION] = uuid.uuid4().hex[:8]
    # Otherwise xdist (--dist load) starts each worker on a long run of consecutive tests:
    # one worker would get every slow test. Two at a time shares them out.
    if getattr(config.option, "maxschedchunk", "absent") is None:
        config.option.maxschedchunk = 2


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: object) -> None:
    """xdist: every worker of the session gets the controller's session id."""
    node.workerinput["aftershock_session"] = node.config.stash[_SESSION]  # type: ignore[attr-defined]


def _session_id(config: pytest.Config) -> str:
    workerinput = getattr(config, "workerinput", None)
    return str(workerinput["aftershock_session"]) if workerinput else config.stash[_SESSION]


def _worker(config: pytest.Config) -> str:
    workerinput = getattr(config, "workerinput", None)
    return str(workerinput["workerid"]) if workerinput else "main"


def _database_prefix(config: pytest.Config) -> str:
    return f"aftershock_test_{_session_id(config)}"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first (otherwise in collection order): started early, they end early."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Drop what the session left on PostgreSQL (the demo templates; anything a crashed worker
    left), once every worker has finished."""
    if hasattr(session.config, "workerinput") or not POSTGRES_URL:
        return
    try:
        server = PostgresServer(POSTGRES_URL, _database_prefix(session.config))
        try:
            server.drop_all()
        finally:
            server.close()
    except sa.exc.OperationalError:
        pass  # no server: nothing was created


@pytest.fixture(scope="session")
def session_cache(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> SessionCache:
    """A folder for work done once per session, shared by its xdist workers."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if hasattr(request.config, "workerinput") else base
    return SessionCache(root / "session-cache")


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> Iterator[PostgresServer]:
    """The test server (skips, or fails under ``AFTERSHOCK_REQUIRE_POSTGRES=1``, without one)."""
    if not POSTGRES_URL:
        if REQUIRE_POSTGRES:
            pytest.fail("AFTERSHOCK_REQUIRE_POSTGRES=1 but AFTERSHOCK_TEST_POSTGRES_URL is unset")
        pytest.skip("set AFTERSHOCK_TEST_POSTGRES_URL to run the PostgreSQL tests")
    server = PostgresServer(POSTGRES_URL, _database_prefix(request.config))
    try:
        server.execute("SELECT 1")
    except sa.exc.OperationalError as exc:
        server.close()
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    yield server
    server.close()


@pytest.fixture(scope="session")
def postgres_database_url(
    postgres_server: PostgresServer, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A throwaway PostgreSQL database for this test session (and xdist worker)."""
    name = f"{postgres_server.prefix}_{_worker(request.config)}"
    url = postgres_server.create(name)
    yield url
    postgres_server.drop(name)


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


@pytest.fixture
def cli_env(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """CLI runs in the test use its database and rejects directory (settings cached before it
    are dropped)."""
    monkeypatch.setenv("AFTERSHOCK_DATABASE_URL", database_url)
    monkeypatch.setenv("AFTERSHOCK_REJECTS_DIR", str(tmp_path / "rejects"))
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()


@pytest.fixture
def report_cli(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[typer.Typer]:
    """A Typer app with the ``report`` command alone, on the test database."""
    from rollout.cli.report import report

    monkeypatch.setenv("AFTERSHOCK_DATABASE_URL", database_url)
    get_settings.cache_clear()
    app = typer.Typer()
    app.command("report")(report)
    app.command("noop")(lambda: None)  # two commands: ``report`` stays a subcommand
    yield app
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def demo_databases(
    session_cache: SessionCache, request: pytest.FixtureRequest
) -> Iterator[DemoDatabases]:
    """The demo recipes of ``tests/demo_data.py``: ``demo_databases.restore(RECIPE, engine)``
    fills the test's database with a fresh copy of one, built once per session and backend."""
    servers: list[PostgresServer] = []

    def postgres() -> PostgresServer:
        # Only a test on PostgreSQL restores there: the server is known to answer.
        if not servers:
            servers.append(PostgresServer(POSTGRES_URL, _database_prefix(request.config)))
        return servers[0]

    yield DemoDatabases(session_cache, postgres)
    for server in servers:
        server.close()


from tests.fake_growthbook import fake_growthbook_fixture  # noqa: E402, F401

"""Test databases: the session's PostgreSQL databases, and the demo recipes
(``tests/demo_data.py``) built once per session and backend, then copied into a test's database.

A recipe's template is built the first time a test asks for it (by whichever xdist worker asks
first; the others wait, see ``tests/session_cache.py``): on SQLite a database file in the
session cache, on PostgreSQL a database of the session that nobody connects to. ``restore``
then replaces the content of a test's own database with a copy of the template: the SQLite
file is copied over the test's file, the PostgreSQL database is dropped and re-created from
the template (``CREATE DATABASE ... TEMPLATE``) under the same name. A test may change its copy
freely; the next test gets a fresh one.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from analytics.db import ensure_schema, get_engine
from analytics.settings import normalise_database_url
from tests.session_cache import SessionCache

if TYPE_CHECKING:
    import pandas as pd

    from tests.demo_data import DemoRecipe


class PostgresServer:
    """The test server's databases whose names start with ``prefix`` (one prefix per test
    session, shared by its xdist workers)."""

    def __init__(self, url: str, prefix: str) -> None:
        self.base = sa.make_url(normalise_database_url(url))
        self.prefix = prefix
        self.admin = sa.create_engine(self.base, isolation_level="AUTOCOMMIT")

    def url(self, name: str) -> str:
        return self.base.set(database=name).render_as_string(hide_password=False)

    def execute(self, statement: str) -> None:
        with self.admin.connect() as connection:
            connection.execute(sa.text(statement))

    def create(self, name: str, template: str | None = None) -> str:
        """Create the database ``name`` (a copy of ``template``); its URL."""
        assert name.startswith(self.prefix), name
        sql = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
        for attempt in range(20):
            try:
                self.execute(sql)
                break
            except sa.exc.OperationalError as exc:
                # A template must have no connections while it is copied; one that is closing
                # may linger a moment.
                if "is being accessed by other users" not in str(exc) or attempt == 19:
                    raise
                time.sleep(0.25)
        return self.url(name)

    def drop(self, name: str) -> None:
        get_engine(self.url(name)).dispose()
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def drop_all(self) -> None:
        """Drop every database of this session."""
        with self.admin.connect() as connection:
            names = (
                connection.execute(
                    sa.text("SELECT datname FROM pg_database WHERE starts_with(datname, :prefix)"),
                    {"prefix": self.prefix},
                )
                .scalars()
                .all()
            )
        for name in names:
            self.drop(name)

    def close(self) -> None:
        self.admin.dispose()


@dataclass(frozen=True)
class DemoDatabase:
    """What a recipe's build left: its folder (the demo's files, ``truth.csv`` among them)."""

    folder: Path

    @property
    def truth(self) -> pd.DataFrame:
        """The demo's ground truth, as ``load_demo`` returns it."""
        import pandas as pd

        return pd.read_csv(self.folder / "truth.csv")

    @cached_property
    def facts(self) -> dict[str, Any]:
        return dict(json.loads((self.folder / "facts.json").read_text()))


class DemoDatabases:
    """Templates of the demo recipes, per backend, built once per session."""

    def __init__(self, cache: SessionCache, postgres: Callable[[], PostgresServer]) -> None:
        self.cache = cache
        self._postgres = postgres

    def restore(self, recipe: DemoRecipe, engine: sa.Engine) -> DemoDatabase:
        """Replace what ``engine``'s database holds with a fresh copy of ``recipe``."""
        if engine.url.get_backend_name() == "sqlite":
            folder = self.cache.once(
                f"demo/{recipe.name}/sqlite", lambda f: self._build_sqlite(recipe, f)
            )
            assert engine.url.database
            target = Path(engine.url.database)
            engine.dispose()
            for suffix in ("", "-wal", "-shm", "-journal"):
                target.with_name(target.name + suffix).unlink(missing_ok=True)
            shutil.copyfile(folder / "demo.db", target)
        else:
            server = self._postgres()
            folder = self.cache.once(
                f"demo/{recipe.name}/postgres", lambda f: self._build_postgres(recipe, f, server)
            )
            name = engine.url.database
            assert name and name.startswith(server.prefix), name
            server.drop(name)
            server.create(name, template=self._template(recipe, server))
            engine.dispose()
        return DemoDatabase(folder)

    def _template(self, recipe: DemoRecipe, server: PostgresServer) -> str:
        return f"{server.prefix}_tpl_{recipe.name}"

    def _build_sqlite(self, recipe: DemoRecipe, folder: Path) -> None:
        engine = get_engine(f"sqlite:///{folder / 'demo.db'}")
        ensure_schema(engine)
        facts = recipe.build(engine, folder)
        with engine.connect() as connection:  # everything into the database file itself
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        engine.dispose()
        (folder / "facts.json").write_text(json.dumps(facts))

    def _build_postgres(self, recipe: DemoRecipe, folder: Path, server: PostgresServer) -> None:
        name = self._template(recipe, server)
        server.drop(name)  # what a failed build may have left
        engine = get_engine(server.create(name))
        ensure_schema(engine)
        facts = recipe.build(engine, folder)
        engine.dispose()
        # Nobody connects to a template (a connection would block copying it).
        server.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        (folder / "facts.json").write_text(json.dumps(facts))

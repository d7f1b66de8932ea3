"""``aftershock db upgrade|current``: the database's schema (Alembic migrations)."""

from __future__ import annotations

from rollout.cli.console import out


def upgrade() -> None:
    """Apply pending schema migrations (safe to run at any time)."""
    from analytics.db import get_engine, schema_revision, upgrade_schema

    engine = get_engine()
    before = schema_revision(engine)
    upgrade_schema(engine)
    out.print(f"schema: {before or 'empty'} -> {schema_revision(engine)}", highlight=False)


def current() -> None:
    """Print the database's schema revision and the newest one."""
    from analytics.db import get_engine, head_revision, schema_revision

    engine = get_engine()
    out.print(f"current: {schema_revision(engine)}  head: {head_revision(engine)}", highlight=False)

"""``aftershock db upgrade|current|check``: the database's schema (Alembic migrations) and
stored rows no command could read."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

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


def check(
    remove: Annotated[
        bool,
        typer.Option("--remove", help="Move the rows found to a CSV file and delete them."),
    ] = False,
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="Where --remove writes the rows (default: the rejects dir)."),
    ] = None,
) -> None:
    """Find stored rows whose timestamps are outside the range ingest accepts (stored by an
    earlier version); --remove moves them to a file, so every command can read the rest."""
    from analytics.db import get_engine
    from analytics.settings import get_settings
    from analytics.timestamps import accepted_range, find_out_of_range, remove_out_of_range

    engine = get_engine()
    span = accepted_range()
    found = find_out_of_range(engine, span)
    if not found:
        out.print(f"every stored timestamp is within {span.describe()}", highlight=False)
        return
    for f in found:
        out.print(f"outside {span.describe()}: {f.describe()}", highlight=False, soft_wrap=True)
    if not remove:
        out.print("run `aftershock db check --remove` to move them to a file", highlight=False)
        raise typer.Exit(code=1)
    stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    path = out_file or get_settings().resolved_rejects_dir() / f"out-of-range-{stamp}.csv"
    removed = remove_out_of_range(engine, span, path)
    counts = ", ".join(f"{n:,} {kind}" for kind, n in removed.items() if n)
    out.print(f"moved {counts} to {path}", highlight=False, soft_wrap=True)

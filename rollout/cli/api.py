"""``aftershock serve`` and ``aftershock tokens create|revoke|list``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from rollout.cli.console import err, out, reports_errors

# rollout.tokens.SCOPES, restated so that --help does not import the database layer;
# tests/test_cli_startup.py checks that the two agree.
SCOPES = ("read", "ramp", "admin")


@reports_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
) -> None:
    """Serve the flag-ramp API (OpenAPI docs at /docs)."""
    import uvicorn

    from rollout.api.app import create_app

    create_app()  # fail here, with one clear line, if the database is unusable
    err.print(f"Aftershock API on http://{host}:{port} (docs: /docs)", highlight=False)
    uvicorn.run(
        "rollout.api.app:create_served_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
    )


@reports_errors
def tokens_create(
    name: Annotated[str, typer.Option(help="Who or what uses it, e.g. ci-rollbacks.")],
    scope: Annotated[
        list[str],
        typer.Option(help=f"Repeatable: {', '.join(SCOPES)} (each includes the ones before)."),
    ],
    replace: Annotated[
        bool,
        typer.Option("--replace", help="Revoke the tokens of the same name still in use."),
    ] = False,
) -> None:
    """Create a token and print it once: it is stored only as a hash."""
    from analytics.db import get_engine
    from rollout.tokens import create_token, list_tokens, revoke_token

    engine = get_engine()
    row, secret = create_token(engine, name, scope)
    if replace:
        for old in list_tokens(engine):
            if old.name == row.name and old.id != row.id and old.revoked_at is None:
                revoke_token(engine, old.id or 0)
                err.print(f"token {old.id} ({old.name}) revoked", highlight=False)
    err.print(
        f"token {row.id} ({row.name}, scopes {row.scopes}); store it now, it is not shown again:",
        highlight=False,
    )
    out.print(secret, highlight=False, soft_wrap=True)


@reports_errors
def tokens_list() -> None:
    """The tokens (never their secrets)."""
    from analytics.db import get_engine
    from rollout.tokens import list_tokens

    table = Table("id", "name", "scopes", "starts with", "created", "revoked")
    for row in list_tokens(get_engine()):
        table.add_row(
            str(row.id),
            row.name,
            row.scopes,
            row.prefix + "...",
            row.created_at.strftime("%Y-%m-%d %H:%M"),
            row.revoked_at.strftime("%Y-%m-%d %H:%M") if row.revoked_at else "",
        )
    out.print(table)


@reports_errors
def tokens_revoke(token_id: Annotated[int, typer.Argument(help="The token's id.")]) -> None:
    """Revoke a token: it stops working at once."""
    from analytics.db import get_engine
    from rollout.tokens import revoke_token

    row = revoke_token(get_engine(), token_id)
    out.print(f"token {row.id} ({row.name}) revoked", highlight=False)

"""The CLI's consoles and its one way of failing (one red line on stderr, exit code 1)."""

from __future__ import annotations

import typer
from rich.console import Console

err = Console(stderr=True)
out = Console()


def fail(message: str) -> typer.Exit:
    err.print(f"error: {message}", style="red", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)

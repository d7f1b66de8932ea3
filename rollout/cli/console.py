"""The CLI's consoles and its one way of failing (one red line on stderr, exit code 1)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from analytics.errors import AftershockError

F = TypeVar("F", bound=Callable[..., Any])

err = Console(stderr=True)
out = Console()


def fail(message: str) -> typer.Exit:
    err.print(f"error: {message}", style="red", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


def reports_errors(command: F) -> F:
    """A command whose Aftershock errors end it the CLI's way (also under a test runner,
    which bypasses ``rollout.cli.main``)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except AftershockError as exc:
            raise fail(str(exc)) from exc

    return wrapper  # type: ignore[return-value]

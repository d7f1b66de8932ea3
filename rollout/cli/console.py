"""The CLI's consoles and its one way of failing (one red line on stderr, exit code 1)."""

from __future__ import annotations

import functools
import os
import tempfile
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from analytics.errors import AftershockError

F = TypeVar("F", bound=Callable[..., Any])

err = Console(stderr=True)
out = Console()


def fail(message: str) -> typer.Exit:
    err.print(f"error: {message}", style="red", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


def unexpected(exc: BaseException) -> str:
    """One line for an error Aftershock did not expect (a bug, not bad input): its type and
    first line, and the file its traceback was written to for the bug report."""
    stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}"
    path = Path(tempfile.gettempdir()) / f"aftershock-error-{stamp}.txt"
    try:
        path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
        where = f"its traceback is in {path}"
    except OSError:
        where = "its traceback could not be written"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (
        f"unexpected {type(exc).__name__}{': ' if first else ''}{first} "
        f"(a bug in Aftershock: {where}; please report it)"
    )


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

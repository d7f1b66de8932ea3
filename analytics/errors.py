"""The error hierarchy. Each surface (CLI, API, dashboard) translates these once."""

from __future__ import annotations

from pathlib import Path


class AftershockError(Exception):
    """Base class of every error Aftershock reports to a user."""


class ConfigError(AftershockError):
    """A setting is missing or malformed."""


class NotFoundError(AftershockError):
    """What was asked for does not exist (an experiment without exposures, say)."""


class IngestError(AftershockError):
    """An input file was refused; nothing from it was written.

    The message names the file and, where known, the line (or Parquet row), the column
    and the byte offset, in the ``file:line:column: message`` shape editors understand.
    """

    def __init__(
        self,
        path: Path | str,
        message: str,
        *,
        line: int | None = None,
        column: str | int | None = None,
        byte: int | None = None,
    ) -> None:
        self.path = str(path)
        self.message = message
        self.line = line
        self.column = column
        self.byte = byte
        super().__init__(str(self))

    def __str__(self) -> str:
        where = [self.path]
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            where.append(f"column {self.column}")
        if self.byte is not None:
            where.append(f"byte {self.byte}")
        return f"{', '.join(where)}: {self.message}"

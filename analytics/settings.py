"""Settings from the environment (prefix ``AFTERSHOCK_``) or a ``.env`` file."""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from analytics.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///data/aftershock.db"


def normalise_database_url(url: str) -> str:
    """Map ``postgres://`` and ``postgresql://`` URLs to SQLAlchemy's psycopg 3 driver."""
    url = url.strip()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if url.startswith(("postgresql+psycopg://", "sqlite://")):
        return url
    scheme = url.split("://", 1)[0] if "://" in url else url
    raise ConfigError(
        f"AFTERSHOCK_DATABASE_URL: unsupported scheme {scheme!r}; use sqlite:///PATH or "
        "postgresql://USER@HOST:PORT/DB"
    )


class Settings(BaseSettings):
    """Aftershock's configuration. Secrets are ``SecretStr``: never printed or logged."""

    model_config = SettingsConfigDict(env_prefix="AFTERSHOCK_", env_file=".env", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    growthbook_url: str | None = Field(
        default=None,
        description="GrowthBook REST API base URL, e.g. https://api.growthbook.io/api",
    )
    growthbook_api_key: SecretStr | None = None  # a secret key with write access
    growthbook_environments: str = Field(
        default="production", description="Comma-separated environments rollbacks write to"
    )
    rejects_dir: Path | None = Field(
        default=None,
        description="Where rejected rows are written; default: beside the SQLite database, "
        "or data/rejects for PostgreSQL",
    )
    ingest_chunk_rows: int = Field(default=50_000, ge=1_000)
    timestamp_min: date = Field(
        default=date(2000, 1, 1), description="Ingest rejects rows with an earlier timestamp"
    )
    timestamp_max_days_ahead: int = Field(
        default=100, ge=0, description="Ingest rejects rows more than this many days from now"
    )
    store_text: Literal["all", "sample", "none"] = Field(
        default="sample",
        description="Which interactions keep their prompt and response text: all, those of a "
        "fixed hash sample of users (text_sample_share), or none; features are always kept",
    )
    text_sample_share: float = Field(
        default=0.1, gt=0, le=1, description="The share of users whose text 'sample' keeps"
    )
    api_max_body_bytes: int = Field(
        default=1_048_576,
        ge=1_024,
        description="The largest request body the API reads (413 above it)",
    )

    @field_validator("database_url")
    @classmethod
    def _normalise_url(cls, value: str) -> str:
        return normalise_database_url(value)

    @field_validator("growthbook_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    def environments(self) -> list[str]:
        return [e.strip() for e in self.growthbook_environments.split(",") if e.strip()]

    def resolved_rejects_dir(self) -> Path:
        """The rejects folder: next to the database file when it is SQLite."""
        if self.rejects_dir is not None:
            return self.rejects_dir
        sqlite_path = sqlite_file(self.database_url)
        if sqlite_path is not None:
            return sqlite_path.parent / "rejects"
        return Path("data") / "rejects"


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL, or None (PostgreSQL, in-memory SQLite)."""
    if not url.startswith("sqlite://"):
        return None
    path = url.split("sqlite://", 1)[1]
    if path in ("", "/", "/:memory:"):
        return None
    return Path(path[1:]) if path.startswith("/") else Path(path)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()

"""Settings: URL normalisation, defaults, and secrets that never show."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from analytics.errors import ConfigError
from analytics.settings import Settings, get_settings, normalise_database_url, sqlite_file
from rollout.cli.app import app


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db:5432/x", "postgresql+psycopg://u:p@db:5432/x"),
        ("postgresql://u@db/x", "postgresql+psycopg://u@db/x"),
        ("postgresql+psycopg://u@db/x", "postgresql+psycopg://u@db/x"),
        ("sqlite:///data/aftershock.db", "sqlite:///data/aftershock.db"),
    ],
)
def test_database_urls_are_normalised(given: str, expected: str) -> None:
    assert normalise_database_url(given) == expected


def test_unsupported_database_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="mysql"):
        normalise_database_url("mysql://root@localhost/db")


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AFTERSHOCK_DATABASE_URL", raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url == "sqlite:///data/aftershock.db"
    assert settings.resolved_rejects_dir() == Path("data/rejects")
    assert sqlite_file("sqlite:////abs/x.db") == Path("/abs/x.db")
    assert sqlite_file("postgresql+psycopg://h/x") is None


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AFTERSHOCK_DATABASE_URL", "postgres://a@b/c")
    monkeypatch.setenv("AFTERSHOCK_GROWTHBOOK_URL", "https://gb.example.test/")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url == "postgresql+psycopg://a@b/c"
    assert settings.growthbook_url == "https://gb.example.test"
    assert settings.resolved_rejects_dir() == Path("data/rejects")


def test_api_key_is_never_shown(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = "secret_abc123_do_not_print"
    monkeypatch.setenv("AFTERSHOCK_GROWTHBOOK_API_KEY", secret)
    monkeypatch.setenv("AFTERSHOCK_DATABASE_URL", f"sqlite:///{tmp_path / 'a.db'}")
    get_settings.cache_clear()
    try:
        settings = get_settings()
        assert settings.growthbook_api_key is not None
        assert settings.growthbook_api_key.get_secret_value() == secret
        assert secret not in repr(settings)
        assert secret not in str(settings.model_dump())
        result = CliRunner().invoke(app, ["config"])
        assert result.exit_code == 0
        assert secret not in result.output
        assert "AFTERSHOCK_GROWTHBOOK_API_KEY=<set>" in result.output
    finally:
        get_settings.cache_clear()

"""``aftershock config``: the settings in force."""

from __future__ import annotations

from rollout.cli.console import out


def show_config() -> None:
    """Print the configuration in force (secrets are never shown)."""
    import sqlalchemy as sa

    from analytics.settings import get_settings

    settings = get_settings()
    out.print(
        f"AFTERSHOCK_DATABASE_URL={sa.make_url(settings.database_url).render_as_string(hide_password=True)}",
        highlight=False,
    )
    out.print(f"AFTERSHOCK_GROWTHBOOK_URL={settings.growthbook_url or ''}", highlight=False)
    key_state = "set" if settings.growthbook_api_key else "not set"
    out.print(f"AFTERSHOCK_GROWTHBOOK_API_KEY=<{key_state}>", highlight=False)
    out.print(f"rejects folder: {settings.resolved_rejects_dir()}", highlight=False)

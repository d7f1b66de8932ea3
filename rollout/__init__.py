"""Aftershock rollout: what to do about it, and every surface (CLI, API, dashboard, report)."""

"""The flag-ramp HTTP API (FastAPI): ``create_app``."""

from rollout.api.app import create_app

__all__ = ["create_app"]

"""The flag-ramp HTTP API (FastAPI): ``rollout.api.app.create_app``.

Nothing is imported here, so that importing a light submodule stays light.
"""

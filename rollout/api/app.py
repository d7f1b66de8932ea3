"""The flag-ramp API application: ``create_app()``; ``aftershock serve`` runs it."""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException

from analytics.db import ensure_schema, get_engine
from analytics.errors import AftershockError, ConfigError, NotFoundError
from analytics.settings import Settings, get_settings
from rollout.api.deps import ApiState
from rollout.api.limits import RequestLimits
from rollout.api.problems import ProblemError
from rollout.api.routes import router
from rollout.errors import (
    FlagValuesError,
    GrowthBookNotConfiguredError,
    PlanInProgressError,
    PlanNotFoundError,
    PlanRefusedError,
    VersionConflictError,
)
from rollout.growthbook.client import GrowthBookError
from rollout.ramp import missing_growthbook_settings

log = logging.getLogger("aftershock.api")

DESCRIPTION = """\
Drive an adaptation-aware rollback from CI jobs, bots and scripts: plans, stage advances,
guardrail decisions and the audit trail. Every endpoint but `/v1/health` needs a bearer token
(`aftershock tokens create`) with scope `read`, `ramp` or `admin` (each includes the ones
before it). Mutations need an `Idempotency-Key`; plan changes also `If-Match` with the plan's
version (its `ETag`). Errors are RFC 9457 problem details.
"""


def growthbook_factory(settings: Settings) -> Callable[[], Any | None]:
    """A function giving a fresh GrowthBook client per write, or None when not configured."""

    def make() -> Any | None:
        if not settings.growthbook_url or settings.growthbook_api_key is None:
            return None
        from rollout.growthbook.client import GrowthBookClient

        return GrowthBookClient.from_settings(settings)

    return make


def _problem_for(exc: AftershockError) -> ProblemError:
    if isinstance(exc, PlanNotFoundError | NotFoundError):
        return ProblemError(404, "Not found", str(exc))
    if isinstance(exc, VersionConflictError):
        return ProblemError(409, "Version conflict", str(exc))
    if isinstance(exc, PlanInProgressError):
        return ProblemError(
            409, "Plan in progress", str(exc), in_progress_plan_id=exc.in_progress_plan_id
        )
    if isinstance(exc, GrowthBookNotConfiguredError):
        return ProblemError(
            409, "GrowthBook not configured", str(exc), missing_settings=exc.missing_settings
        )
    if isinstance(exc, FlagValuesError):
        errors = [
            {"field": f"body.{name}", "message": str(exc), "type": "missing"}
            for name in exc.missing
        ]
        return ProblemError(422, "Flag values required", str(exc), errors=errors)
    if isinstance(exc, PlanRefusedError):
        extra = {} if exc.decision is None else {"guardrails": exc.decision.to_dict()}
        return ProblemError(409, "Refused", str(exc), **extra)
    if isinstance(exc, GrowthBookError):
        return ProblemError(502, "GrowthBook failed", str(exc), rerun=exc.rerun)
    if isinstance(exc, ConfigError):
        return ProblemError(422, "Invalid request", str(exc))
    return ProblemError(409, "Cannot do that now", str(exc))


def create_served_app() -> FastAPI:
    """The app as ``aftershock serve`` runs it, in each worker process: the configured
    database, and a garbage collector tuned for latency (a request allocates little that
    survives it, and the default thresholds collect every few requests under load, which
    showed in the 99th percentile)."""
    app = create_app()
    gc.set_threshold(50_000, 20, 20)
    gc.freeze()
    return app


def create_app(
    *,
    engine: sa.Engine | None = None,
    settings: Settings | None = None,
    client_factory: Callable[[], Any | None] | None = None,
) -> FastAPI:
    """The API over ``engine`` (default: the configured database), writing to GrowthBook
    through ``client_factory`` (default: from the settings, when configured)."""
    settings = settings or get_settings()
    engine = engine or get_engine(settings.database_url)
    ensure_schema(engine)
    # /docs and /redoc load Swagger UI and ReDoc from the fastapi-offline package, not a CDN,
    # so they work on a machine without internet.
    app = FastAPIOffline(
        title="Aftershock flag-ramp API",
        version="1",
        description=DESCRIPTION,
        docs_url="/docs",
        openapi_url="/openapi.json",
        static_url="/docs/assets",
    )
    app.state.aftershock = ApiState(
        engine=engine,
        client_factory=client_factory or growthbook_factory(settings),
        environments=settings.environments(),
        growthbook_missing=missing_growthbook_settings(settings),
    )
    app.include_router(router)
    app.add_middleware(RequestLimits, max_body_bytes=settings.api_max_body_bytes)

    @app.exception_handler(ProblemError)
    def on_problem(request: Request, exc: ProblemError) -> JSONResponse:
        return exc.response(request.scope["path"])

    @app.exception_handler(AftershockError)
    def on_aftershock(request: Request, exc: AftershockError) -> JSONResponse:
        return _problem_for(exc).response(request.scope["path"])

    @app.exception_handler(RequestValidationError)
    def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        fields = ", ".join(e["field"] for e in errors)
        return ProblemError(
            422, "Invalid request", f"invalid or missing: {fields}", errors=errors
        ).response(request.scope["path"])

    @app.exception_handler(HTTPException)
    def on_http(request: Request, exc: HTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Error")
        return ProblemError(exc.status_code, title, str(exc.detail)).response(request.scope["path"])

    @app.exception_handler(Exception)
    def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.scope["path"])
        return ProblemError(
            500, "Internal error", "an unexpected error; see the server log"
        ).response(request.scope["path"])

    return app

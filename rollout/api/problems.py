"""Errors as RFC 9457 problem details (``application/problem+json``)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

PROBLEM_JSON = "application/problem+json"


class ProblemError(Exception):
    """An error response: ``status``, a short ``title``, a ``detail`` for this occurrence and
    any extension members (``errors``, ``guardrails``, ``rerun``...)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions

    def body(self, instance: str) -> dict[str, Any]:
        slug = self.title.lower().replace(" ", "-")
        return {
            "type": f"urn:aftershock:problem:{slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
            **self.extensions,
        }

    def response(self, instance: str) -> JSONResponse:
        return JSONResponse(
            self.body(instance),
            status_code=self.status,
            media_type=PROBLEM_JSON,
            headers=self.headers,
        )

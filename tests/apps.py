"""The aftershock CLI and API as the tests drive them: the CLI through Typer's runner, the API
served by uvicorn on a free loopback port with a token per scope."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from typer.testing import CliRunner

from analytics.settings import Settings
from rollout.cli.app import app as cli_app
from rollout.tokens import create_token

SETTINGS = Settings(_env_file=None)  # GrowthBook not configured unless a test says so


def run(*args: str) -> tuple[int, str, str]:
    """``aftershock ARGS...`` in this process: exit code, stdout, stderr."""
    result = CliRunner().invoke(cli_app, list(args))
    return result.exit_code, result.stdout, result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Api:
    """The app served by uvicorn on a free loopback port, a token per scope, and helpers
    that send them with httpx."""

    def __init__(self, app: FastAPI, engine: sa.Engine) -> None:
        self.app = app
        self.engine = engine
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        self.http = httpx.Client(base_url=self.url, timeout=60)
        self.tokens = {
            s: create_token(engine, f"{s}-bot", [s])[1] for s in ("read", "ramp", "admin")
        }

    def headers(self, scope: str | None, **extra: str) -> dict[str, str]:
        headers = dict(extra)
        if scope is not None:
            headers["Authorization"] = f"Bearer {self.tokens[scope]}"
        return headers

    def get(self, path: str, scope: str | None = "read", **params: Any) -> httpx.Response:
        return self.http.get(path, headers=self.headers(scope), params=params)

    def post(
        self,
        path: str,
        body: Any = None,
        *,
        scope: str = "ramp",
        key: str | None = "auto",
        version: int | None = None,
    ) -> httpx.Response:
        extra = {}
        if key is not None:
            extra["Idempotency-Key"] = uuid.uuid4().hex if key == "auto" else key
        if version is not None:
            extra["If-Match"] = f'"{version}"'
        return self.http.post(path, json=body or {}, headers=self.headers(scope, **extra))

    def close(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(10)


@dataclass(frozen=True)
class AsgiAnswer:
    status: int  # 0: the app never started a response
    headers: dict[bytes, bytes]
    body: bytes
    pulled: int  # how many request body chunks the app read


def asgi_request(
    app: Any,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    chunks: list[bytes],
    query: bytes = b"",
) -> AsgiAnswer:
    """Drive an ASGI app directly, bytes as a client could put them on the wire (headers no
    HTTP client library would send included): the app's answer and how much body it read."""
    pulled = 0
    status = 0
    answer_headers: dict[bytes, bytes] = {}
    body = bytearray()

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled < len(chunks):
            pulled += 1
            return {
                "type": "http.request",
                "body": chunks[pulled - 1],
                "more_body": pulled < len(chunks),
            }
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            answer_headers.update(message.get("headers", []))
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))
    return AsgiAnswer(status, answer_headers, bytes(body), pulled)

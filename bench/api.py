"""``python -m bench.api URL [WORKERS]``: latency of ``GET /v1/plans/{id}/ramp`` under load.

Loads the `make run` demo (3,000 users) into the empty database at URL, analyses it, plans
its rollback and applies two stages (so the ramp carries a guardrail decision), creates a
read token, starts the API as an operator would (``aftershock serve --workers N``: uvicorn)
on a free loopback port, warms it up, then keeps 50 concurrent clients requesting the ramp
for 20 seconds. Prints one JSON line: requests, errors, throughput, p50 and p99 latency.

The load comes from ``wrk`` (Debian package ``wrk``: a C client in its own process, so the
figures are the server's, not a Python client's); without it, from asyncio + httpx here.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from analytics.db import get_engine
from analytics.demo import DemoConfig, generate_demo, write_demo
from bench.data import load_planned_rollback
from rollout.tokens import create_token

CLIENTS = 50
SECONDS = 20.0


def prepare(url: str, folder: Path) -> tuple[int, str]:
    """The `make run` demo, analysed and planned two stages in, and a read token."""
    paths = write_demo(generate_demo(DemoConfig(n_users=3000, seed=7)), folder)
    plan_id = load_planned_rollback(url, paths["interactions"], paths["exposures"])
    _, token = create_token(get_engine(url), "bench", ["read"])
    return plan_id, token


async def load(base: str, path: str, token: str, seconds: float) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, limits=limits, timeout=30
    ) as http:

        async def client() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                start = time.perf_counter()
                response = await http.get(path)
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    errors += 1

        await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return latencies, errors


def main() -> None:
    url, workers = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "1"
    with tempfile.TemporaryDirectory() as scratch:
        plan_id, token = prepare(url, Path(scratch))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "aftershock"),
                "serve",
                "--port",
                str(port),
                "--workers",
                workers,
            ],
            env={**os.environ, "AFTERSHOCK_DATABASE_URL": url},
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/v1/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the API did not start"
                time.sleep(0.1)
            path = f"/v1/plans/{plan_id}/ramp"
            asyncio.run(load(base, path, token, 2.0))  # warm-up: caches, connections
            if shutil.which("wrk"):
                result = run_wrk(base + path, token)
            else:
                latencies, errors = asyncio.run(load(base, path, token, SECONDS))
                ms = np.array(latencies) * 1000
                result = {
                    "rows": len(ms),
                    "seconds": SECONDS,
                    "errors": errors,
                    "p50_ms": float(np.percentile(ms, 50)),
                    "p99_ms": float(np.percentile(ms, 99)),
                    "client": "httpx",
                }
        finally:
            server.terminate()
            server.wait(10)
    print(json.dumps(result))


def _ms(text: str) -> float:
    value = float(re.sub(r"[a-z]+$", "", text))
    unit = re.sub(r"^[0-9.]+", "", text)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, token: str) -> dict[str, float | str]:
    """``wrk -t2 -c50 -d20s --latency``: requests, non-2xx responses and socket errors,
    p50 and p99."""
    output = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{CLIENTS}",
            f"-d{int(SECONDS)}s",
            "--latency",
            "-H",
            f"Authorization: Bearer {token}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    errors = int(bad.group(1)) if bad else 0
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
    return {
        "rows": requests,
        "seconds": SECONDS,
        "errors": errors,
        "p50_ms": _ms(re.search(r"^\s+50%\s+(\S+)\s*$", output, re.M).group(1)),  # type: ignore[union-attr]
        "p99_ms": _ms(re.search(r"^\s+99%\s+(\S+)\s*$", output, re.M).group(1)),  # type: ignore[union-attr]
        "client": "wrk",
    }


if __name__ == "__main__":
    main()

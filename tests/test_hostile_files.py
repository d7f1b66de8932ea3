"""Careless and hostile log files, at random (issue 12): whatever bytes arrive, `aftershock
ingest` exits 0 or 1 with a clear message (never a traceback), leaves no run `running`, and
the database can still be analysed afterwards.

The files are mutations of valid demo exports in each format (bytes flipped, inserted, cut
out or repeated; lines duplicated or truncated), and plain random bytes.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from analytics.analysis.params import AnalysisParams
from analytics.analysis.pipeline import run_analysis
from analytics.db import ensure_schema, get_engine
from analytics.demo import DemoConfig, generate_demo
from analytics.ingest.runner import ingest_file
from analytics.models import IngestKind
from analytics.settings import get_settings
from rollout.cli.app import app

pytestmark = pytest.mark.slow
EXPERIMENT = "chat-model-upgrade"


class Target:
    """A SQLite database holding a small valid demo, and the demo's files as bytes."""

    def __init__(self, folder: Path) -> None:
        demo = generate_demo(DemoConfig(n_users=80, seed=3))
        self.folder = folder
        self.url = f"sqlite:///{folder / 'hostile.db'}"
        self.engine = get_engine(self.url)
        ensure_schema(self.engine)
        sink = io.BytesIO()
        pa_csv.write_csv(demo.interactions, sink)
        self.files = {".csv": sink.getvalue()}
        self.files[".jsonl"] = (
            demo.interactions.to_pandas()
            .to_json(orient="records", lines=True, date_format="iso")
            .encode()
        )
        sink = io.BytesIO()
        pq.write_table(demo.interactions, sink)
        self.files[".parquet"] = sink.getvalue()
        exposures = folder / "exposures.csv"
        pa_csv.write_csv(demo.exposures, exposures)
        ingest_file(exposures, IngestKind.exposures, engine=self.engine, rejects_dir=folder)
        valid = folder / "valid.csv"
        valid.write_bytes(self.files[".csv"])
        ingest_file(valid, IngestKind.interactions, engine=self.engine, rejects_dir=folder)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    yield Target(tmp_path_factory.mktemp("hostile"))


def mutate(data: bytes, edits: list[tuple[str, float, bytes]]) -> bytes:
    out = bytearray(data)
    for op, where, payload in edits:
        at = int(where * len(out))
        if op == "flip" and out:
            out[min(at, len(out) - 1)] ^= payload[0] if payload else 0xFF
        elif op == "insert":
            out[at:at] = payload
        elif op == "cut":
            del out[at : at + 1 + len(payload) * 50]
        elif op == "repeat":
            out[at:at] = out[at : at + 200]
        elif op == "truncate":
            del out[at:]
    return bytes(out)


edits = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "cut", "repeat", "truncate"]),
        st.floats(0, 1),
        st.binary(min_size=0, max_size=12),
    ),
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    suffix=st.sampled_from([".csv", ".jsonl", ".parquet"]),
    changes=edits,
    noise=st.none() | st.binary(max_size=2000),
)
def test_whatever_bytes_arrive_ingest_exits_cleanly_and_leaves_a_usable_database(
    target: Target,
    monkeypatch: pytest.MonkeyPatch,
    suffix: str,
    changes: list[tuple[str, float, bytes]],
    noise: bytes | None,
) -> None:
    data = noise if noise is not None else mutate(target.files[suffix], changes)
    path = target.folder / f"mangled{suffix}"
    path.write_bytes(data)
    monkeypatch.setenv("AFTERSHOCK_DATABASE_URL", target.url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["ingest", "interactions", str(path)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code in (0, 1), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    with target.engine.connect() as connection:
        running = connection.execute(
            sa.text("SELECT count(*) FROM ingest_runs WHERE status = 'running'")
        ).scalar()
    assert running == 0
    run_analysis(target.engine, AnalysisParams(EXPERIMENT))

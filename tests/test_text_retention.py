"""Text retention (analytics.ingest.retention): which interactions keep their prompt and
response, on SQLite and PostgreSQL; features and conflict detection whatever the mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa
from scipy import stats

from analytics.db import get_engine
from analytics.ingest.retention import TextRetention, in_text_sample
from analytics.settings import Settings
from tests.factories import INTERACTION_COLUMNS, interaction, write_rows
from tests.test_cli import run
from tests.test_ingest_hostile import ingest, reasons

IDS = pa.array([f"user-{i}" for i in range(20_000)])


def test_the_sample_is_uniform_deterministic_and_the_same_in_any_batch() -> None:
    kept = in_text_sample(IDS, 0.1)
    # 20,000 draws at 10%: the count is within 4 standard deviations of 2,000.
    assert abs(kept.sum() - 2_000) < 4 * np.sqrt(20_000 * 0.1 * 0.9)
    assert stats.binomtest(int(kept.sum()), 20_000, 0.1).pvalue > 1e-4
    assert np.array_equal(kept, in_text_sample(IDS, 0.1))
    pieces = pa.chunked_array([IDS.slice(0, 7), IDS.slice(7)])
    assert np.array_equal(kept, in_text_sample(pieces, 0.1))
    # A larger share keeps everyone a smaller one kept.
    assert not (kept & ~in_text_sample(IDS, 0.3)).any()
    assert in_text_sample(IDS, 1.0).all()


def stored_text(engine: sa.Engine) -> dict[str, tuple[str | None, int | None]]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT user_id, prompt, prompt_length FROM interactions")
        ).all()
    return {user: (prompt, length) for user, prompt, length in rows}


@pytest.mark.parametrize("mode", ["all", "sample", "none"])
def test_each_mode_keeps_the_text_it_says_and_every_feature(
    engine: sa.Engine, tmp_path: Path, mode: str
) -> None:
    rows = [interaction(i, user_id=f"user-{i}") for i in range(200)]
    path = write_rows(tmp_path / "i.csv", rows, INTERACTION_COLUMNS)

    ingest(engine, path, retention=TextRetention(mode, 0.25))  # type: ignore[arg-type]

    stored = stored_text(engine)
    expected = {
        "all": np.ones(200, dtype=bool),
        "sample": in_text_sample(pa.array([r["user_id"] for r in rows]), 0.25),
        "none": np.zeros(200, dtype=bool),
    }[mode]
    for row, keeps in zip(rows, expected, strict=True):
        prompt, length = stored[row["user_id"]]
        assert prompt == (row["prompt"] if keeps else None)
        assert length == len(row["prompt"].split())  # features from the full text, always
    if mode == "sample":
        assert 20 < expected.sum() < 80


def test_conflicts_are_found_when_the_text_was_not_kept(engine: sa.Engine, tmp_path: Path) -> None:
    rows = [interaction(i) for i in range(3)]
    ingest(
        engine,
        write_rows(tmp_path / "a.csv", rows, INTERACTION_COLUMNS),
        retention=TextRetention("none"),
    )
    later = [interaction(i) for i in range(3)]
    later[0]["prompt"] = "rewritten"
    later[1]["feedback"] = None
    summary = ingest(
        engine,
        write_rows(tmp_path / "b.csv", later, INTERACTION_COLUMNS),
        retention=TextRetention("none"),
    )
    assert (summary.rows_duplicate, summary.rows_rejected) == (1, 2)
    said = sorted(reasons(summary).values())
    assert "different prompt or response (its text is not stored)" in said[0]
    assert "different feedback" in said[1]


def test_the_default_is_a_ten_percent_sample_and_a_bad_mode_is_refused() -> None:
    settings = Settings(_env_file=None)
    assert (settings.store_text, settings.text_sample_share) == ("sample", 0.1)
    with pytest.raises(ValueError, match="store_text"):
        Settings(_env_file=None, store_text="some")  # type: ignore[arg-type]


def test_the_cli_option_overrides_the_setting(cli_env: str, tmp_path: Path) -> None:
    path = write_rows(tmp_path / "i.csv", [interaction(1)], INTERACTION_COLUMNS)
    code, _, _ = run("ingest", "interactions", "--store-text", "none", str(path))
    assert code == 0
    # The session's engine for this database (a new one would leave its connection open to
    # be closed by the garbage collector, with a ResourceWarning, in some later test).
    engine = get_engine(cli_env)
    assert [p for p, _ in stored_text(engine).values()] == [None]
    code, _, err = run("ingest", "interactions", "--store-text", "some", str(path))
    assert code == 2 and "some" in err

"""An analysis that cannot mean anything is refused with a sentence that says why (issue 12):
a control variation nobody saw, an experiment whose every user saw several variations, an
expected split that is not positive; a skipped sample-ratio check is not shown as passed."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from analytics.analysis.params import AnalysisParams
from analytics.analysis.pipeline import run_analysis
from analytics.errors import ConfigError, NotFoundError
from analytics.ingest.runner import ingest_file
from analytics.models import IngestKind
from analytics.settings import get_settings
from tests.apps import run
from tests.factories import exposure, interaction, write_rows


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """CLI runs read the test's database (settings cached before it are dropped)."""
    monkeypatch.setenv("AFTERSHOCK_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def load(engine: sa.Engine, folder: Path, exposures: list[dict]) -> None:
    path = write_rows(folder / "exposures.csv", exposures)
    ingest_file(path, IngestKind.exposures, engine=engine, rejects_dir=folder / "rejects")
    logs = write_rows(folder / "interactions.csv", [interaction(i) for i in range(60)])
    ingest_file(logs, IngestKind.interactions, engine=engine, rejects_dir=folder / "rejects")


def test_a_control_nobody_saw_is_refused_naming_the_variations_seen(
    engine: sa.Engine, tmp_path: Path
) -> None:
    load(engine, tmp_path, [exposure(i) for i in range(7)])
    with pytest.raises(ConfigError, match=r"control variation '7' has no users.*0 \(4 users\)"):
        run_analysis(engine, AnalysisParams("chat-model-upgrade", control="7"))


def test_an_experiment_whose_users_all_saw_two_variations_says_so(
    engine: sa.Engine, tmp_path: Path
) -> None:
    both = [exposure(i, variation_id="0") for i in range(5)]
    both += [exposure(i, variation_id="1", timestamp="2026-10-20T10:00:00Z") for i in range(5)]
    load(engine, tmp_path, both)
    with pytest.raises(NotFoundError, match=r"all 5 exposed users .* saw two variations or more"):
        run_analysis(engine, AnalysisParams("chat-model-upgrade"))


@pytest.mark.parametrize("weights", [(1.0, 0.0), (0.0, 0.0), (math.nan, math.nan), (-1.0, 2.0)])
def test_an_expected_split_must_be_positive(weights: tuple[float, ...]) -> None:
    with pytest.raises(ConfigError, match=r"weights .* must be a positive number"):
        AnalysisParams("chat-model-upgrade", weights=weights)


@pytest.mark.parametrize("weights", ["1,0", "0,0", "nan,nan", "-1,2"])
def test_the_cli_refuses_a_bad_split_in_one_line(weights: str, cli: None) -> None:
    code, _, stderr = run("analyze", "--experiment", "chat-model-upgrade", "--weights", weights)
    assert code == 1 and "Traceback" not in stderr
    assert "must be a positive number" in stderr


def test_a_skipped_sample_ratio_check_is_not_shown_as_passed(
    engine: sa.Engine, tmp_path: Path, cli: None
) -> None:
    load(engine, tmp_path, [exposure(i, variation_id="0") for i in range(7)])  # control only
    code, stdout, stderr = run("analyze", "--experiment", "chat-model-upgrade")
    assert code == 0, stderr
    assert "SRM not tested" in stdout and "SRM p=1" not in stdout


def test_a_plan_needs_a_feature_key(cli: None) -> None:
    code, _, stderr = run(
        "plan",
        "--experiment",
        "chat-model-upgrade",
        "--feature",
        "  ",
        "--rollback-value",
        "a",
        "--current-value",
        "b",
    )
    assert code == 1 and "feature key is empty" in stderr


def test_the_dashboard_listens_on_this_machine_only() -> None:
    import tomllib

    config = Path(__file__).parents[1] / ".streamlit" / "config.toml"
    assert tomllib.loads(config.read_text())["server"]["address"] == "127.0.0.1"

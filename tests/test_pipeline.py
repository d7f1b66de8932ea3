"""End to end on the demo data: ingest -> analyze finds the planted story, and only it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from scipy.stats import mannwhitneyu

from analytics.analysis.params import AnalysisParams
from analytics.analysis.pipeline import AnalysisResult, analysis_document, run_analysis, users_table
from analytics.analysis.user_periods import PeriodParams
from analytics.demo import DemoConfig
from analytics.documents import USERS_CSV_COLUMNS
from analytics.models import Interaction
from analytics.store import load_analysis_users, load_latest_analysis, save_analysis
from tests.demo_data import load_demo

DRIFTING = {"response_length", "agreement_rate"}
NULL_BEHAVIOUR = {"latency_ms", "refusal_rate", "complaint_rate", "retry_rate"}
SHIFTING = {"prompt_length", "hedge_rate", "pushback_rate", "constraint_rate"}
NULL_STYLE = {"politeness_rate", "question_rate", "code_block_rate"}


def auc(positive: pd.Series, negative: pd.Series) -> float:
    return float(mannwhitneyu(positive, negative).statistic / (len(positive) * len(negative)))


def check_story(result: AnalysisResult, truth: pd.DataFrame) -> None:
    drift = {r.metric: r for r in result.behavior_drift}
    for metric in DRIFTING:
        assert drift[metric].q_value is not None and drift[metric].q_value < 0.01, metric
        assert drift[metric].effect is not None and drift[metric].effect > 0, metric
    # "Found" means q < 0.01; a null metric must not be (at q < 0.05 one in twenty data sets
    # would flag some null metric by design, which the A/A calibration test measures).
    for metric in NULL_BEHAVIOUR:
        assert drift[metric].q_value is None or drift[metric].q_value >= 0.01, metric
    assert drift["agreement_rate"].drift_began == "2026-10-19"
    shift = {r.metric: r for r in result.style_shift}
    for metric in SHIFTING:
        assert shift[metric].q_value is not None and shift[metric].q_value < 0.01, metric
        assert shift[metric].did is not None and shift[metric].did > 0, metric
    for metric in NULL_STYLE:
        assert shift[metric].q_value is None or shift[metric].q_value >= 0.01, metric

    users = result.users.merge(truth[["user_id", "adaptive"]], on="user_id")
    scored = users[(users["variation"] == "1") & users["adaptation_score"].notna()]
    adaptive = scored["adaptive"].astype(bool)
    assert (
        auc(scored.loc[adaptive, "adaptation_score"], scored.loc[~adaptive, "adaptation_score"])
        >= 0.90
    )
    controls = users[(users["variation"] == "0") & users["adaptation_score"].notna()]
    assert (controls["adaptation_label"] == "adapted").mean() <= 0.05
    assert result.half_life is not None and result.half_life.half_life_days is not None
    assert 1.0 < result.half_life.half_life_days < 6.0  # true: 4 ln 2 = 2.8 days


@pytest.mark.parametrize("seed", [3, pytest.param(4, marks=pytest.mark.slow)])  # 4: make test
def test_the_planted_story_is_found_on_sqlite(tmp_path: Path, seed: int) -> None:
    from analytics.db import get_engine

    engine = get_engine(f"sqlite:///{tmp_path / 'a.db'}")
    truth = load_demo(engine, tmp_path, DemoConfig(n_users=2500, seed=seed))
    result = run_analysis(engine, AnalysisParams("chat-model-upgrade"))
    check_story(result, truth)
    assert result.srm.ok
    assert result.cohorts.multiple_exposures > 0


def test_outputs_follow_the_contract_and_are_stored(engine: sa.Engine, tmp_path: Path) -> None:
    truth = load_demo(engine, tmp_path, DemoConfig(n_users=2500, seed=5))
    result = run_analysis(engine, AnalysisParams("chat-model-upgrade"))
    check_story(result, truth)
    document = json.loads(json.dumps(analysis_document(result).to_json()))
    assert set(document) >= {
        "experiment_id",
        "control",
        "variations",
        "analysed_at",
        "users",
        "multiple_exposures",
        "srm",
        "behavior_drift",
        "style_shift",
        "adaptation",
    }
    assert document["variations"] == ["0", "1"]
    assert set(document["srm"]) == {"p_value", "ok"}
    assert set(document["behavior_drift"][0]) >= {
        "metric",
        "variation",
        "control_mean",
        "variation_mean",
        "effect",
        "ci_low",
        "ci_high",
        "p_value",
        "q_value",
        "significant",
    }
    assert set(document["style_shift"][0]) >= {
        "metric",
        "variation",
        "did",
        "ci_low",
        "ci_high",
        "p_value",
        "q_value",
        "significant",
    }
    assert set(document["adaptation"]["labels"]) == {
        "adapted",
        "partial",
        "unadapted",
        "new",
        "insufficient_data",
    }
    table = users_table(result)
    assert list(table.columns) == list(USERS_CSV_COLUMNS)
    assert len(table) == sum(document["users"].values())

    run_id = save_analysis(engine, result)
    stored = load_latest_analysis(engine, "chat-model-upgrade")
    assert stored is not None and stored.id == run_id
    assert stored.document.to_json()["style_shift"] == document["style_shift"]
    users = load_analysis_users(engine, run_id)
    assert len(users) == len(table)
    assert set(users["adaptation_label"]) <= {
        "adapted",
        "partial",
        "unadapted",
        "new",
        "insufficient_data",
    }


def test_welch_and_clustered_ols_agree_on_the_did(engine: sa.Engine, tmp_path: Path) -> None:
    load_demo(engine, tmp_path, DemoConfig(n_users=1200, seed=6))
    result = run_analysis(engine, AnalysisParams("chat-model-upgrade"))
    for row in result.style_shift:
        assert row.did is not None and row.ols_did is not None and row.ols_se is not None
        assert row.ols_did == pytest.approx(row.did, abs=1e-9)
        welch_se = (row.did_ci_high - row.did) / 1.96  # type: ignore[operator]
        assert row.ols_se == pytest.approx(welch_se, rel=0.03)


def test_three_variations_each_against_control(tmp_path: Path) -> None:
    from analytics.db import get_engine

    engine = get_engine(f"sqlite:///{tmp_path / 'a.db'}")
    load_demo(engine, tmp_path, DemoConfig(n_users=2400, seed=8, variations=3))
    result = run_analysis(engine, AnalysisParams("chat-model-upgrade"))
    assert result.cohorts.variations == ["0", "1", "2"]
    drift = {(r.metric, r.variation): r for r in result.behavior_drift}
    assert drift[("agreement_rate", "1")].significant
    assert not drift[("agreement_rate", "2")].significant  # variation 2 behaves like control
    assert {r.variation for r in result.style_shift} == {"1", "2"}
    labelled = result.users.groupby("variation")["adaptation_label"].count()
    assert set(labelled.index) == {"0", "1", "2"}
    document = analysis_document(result).to_json()
    assert set(document["adaptation"]["labels_by_variation"]) == {"0", "1", "2"}


def test_rows_without_features_are_backfilled_once(engine: sa.Engine, tmp_path: Path) -> None:
    from analytics.features.backfill import backfill_features, missing_features

    load_demo(engine, tmp_path, DemoConfig(n_users=120, seed=9))
    columns = [
        "prompt_length",
        "response_length",
        "has_agreement",
        "has_hedge",
        "has_constraint",
        "has_code_block",
    ]
    with engine.connect() as connection:
        before = connection.execute(
            sa.text(f"SELECT event_id, {', '.join(columns)} FROM interactions ORDER BY event_id")
        ).all()
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE interactions SET prompt_length = NULL, response_length = NULL, "
                "has_agreement = NULL, has_hedge = NULL, has_constraint = NULL, "
                # Rows from before the feature columns, which all kept their text.
                "has_code_block = NULL WHERE event_id < 'm' AND prompt IS NOT NULL"
            )
        )
    assert missing_features(engine)
    assert backfill_features(engine, batch_rows=50) > 0
    assert not missing_features(engine)
    assert backfill_features(engine) == 0
    with engine.connect() as connection:
        after = connection.execute(
            sa.text(f"SELECT event_id, {', '.join(columns)} FROM interactions ORDER BY event_id")
        ).all()
    assert [tuple(r) for r in after] == [tuple(r) for r in before]


def test_an_analysis_as_of_a_past_moment_sees_only_what_happened_before_it(
    engine: sa.Engine, tmp_path: Path
) -> None:
    load_demo(engine, tmp_path, DemoConfig(n_users=600, seed=10))
    cutoff = datetime(2026, 10, 26, tzinfo=UTC)  # a week into the experiment
    full = run_analysis(engine, AnalysisParams("chat-model-upgrade"))
    early = run_analysis(
        engine, AnalysisParams("chat-model-upgrade", periods=PeriodParams(until=cutoff))
    )
    assert (early.users["first_exposure"] < cutoff).all()
    assert 0 < len(early.users) < len(full.users)
    with engine.connect() as connection:
        before = connection.execute(
            sa.select(sa.func.count())
            .select_from(Interaction)
            .where(
                Interaction.user_id.in_(early.users["user_id"].tolist()),  # type: ignore[attr-defined]
                Interaction.timestamp < cutoff,  # type: ignore[arg-type]
            )
        ).scalar_one()
    assert early.users["n_pre"].sum() + early.users["n_post"].sum() <= before
    # (A user seen in one variation before the cut-off may be a multiple exposure after it.)
    both = early.users.merge(full.users, on="user_id", suffixes=("_early", "_full"))
    assert (both["n_post_early"] <= both["n_post_full"]).all()
    assert both["n_post_early"].sum() < both["n_post_full"].sum()
    save_analysis(engine, early)  # the cut-off is stored with the parameters
    assert load_latest_analysis(engine, "chat-model-upgrade").parameters["periods"]["until"] == (
        cutoff.isoformat()
    )


@pytest.mark.slow
def test_an_in_memory_database_is_analysed_on_one_connection(tmp_path: Path) -> None:
    """The scans of the logs run in parallel on their own connections, except on an in-memory
    SQLite database, which only the connection that made it can see."""
    from sqlalchemy.pool import SingletonThreadPool

    engine = sa.create_engine("sqlite://", poolclass=SingletonThreadPool)
    load_demo(engine, tmp_path, DemoConfig(n_users=600, seed=3))
    result = run_analysis(engine, AnalysisParams("chat-model-upgrade"))
    assert len(result.users) > 500 and not result.daily.empty
    engine.dispose()

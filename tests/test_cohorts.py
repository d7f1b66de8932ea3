"""Cohorts from exposures, and per-user sufficient statistics aggregated in SQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from analytics.analysis.cohorts import load_cohorts
from analytics.analysis.user_periods import (
    METRIC_COLUMNS,
    STYLE_COLUMNS,
    STYLE_PAIRS,
    PeriodParams,
    load_user_bins,
    load_within_user,
    roll_up_buckets,
    roll_up_periods,
)
from analytics.models import ANALYSED_COLUMNS, Exposure, Interaction

T0 = datetime(2026, 10, 19, 12, 0, tzinfo=UTC)


def add_exposures(engine: sa.Engine, rows: list[tuple[str, datetime, str]]) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.insert(Exposure),
            [
                {"user_id": u, "timestamp": t, "experiment_id": "exp", "variation_id": v}
                for u, t, v in rows
            ],
        )


def random_interactions(rng: np.random.Generator, users: list[str], n: int) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "user_id": rng.choice(users, n),
            "timestamp": [
                T0 + timedelta(minutes=float(m)) for m in rng.uniform(-20 * 1440, 25 * 1440, n)
            ],
            "prompt": "p",
            "prompt_length": rng.integers(1, 60, n),
            "response_length": rng.integers(1, 300, n),
            "latency_ms": np.where(rng.random(n) < 0.1, np.nan, rng.lognormal(6.8, 0.4, n)),
            "feedback": rng.choice([-1, 0, 1], n),
        }
    )
    for column in ANALYSED_COLUMNS:
        if column.startswith("has_"):
            frame[column] = rng.random(n) < 0.3
    frame["complaint"] = rng.random(n) < 0.05
    frame["retry"] = rng.random(n) < 0.1
    return frame


def store(engine: sa.Engine, frame: pd.DataFrame) -> None:
    records = frame.replace({np.nan: None}).to_dict("records")
    with engine.begin() as connection:
        connection.execute(sa.insert(Interaction), records)


def test_cohorts_follow_first_exposure_and_drop_multiple_exposures(engine: sa.Engine) -> None:
    add_exposures(
        engine,
        [
            ("a", T0, "0"),
            ("a", T0 + timedelta(days=2), "0"),
            ("b", T0 + timedelta(hours=1), "1"),
            ("c", T0, "1"),
            ("c", T0 + timedelta(days=1), "0"),  # seen in two variations
            ("d", T0 + timedelta(days=3), "2"),
        ],
    )
    cohorts = load_cohorts(engine, "exp")
    assert cohorts.variations == ["0", "1", "2"]
    assert cohorts.multiple_exposures == 1
    assert cohorts.counts == {"0": 1, "1": 1, "2": 1}
    users = cohorts.users.set_index("user_id")
    assert users.loc["a", "first_exposure"] == pd.Timestamp(T0)
    assert users.loc["b", "variation"] == "1"
    assert "c" not in users.index
    assert load_cohorts(engine, "other").counts == {"0": 0}


def expected_bins(frame: pd.DataFrame, first: dict[str, datetime], pre_days: float) -> pd.DataFrame:
    """The same sums, computed row by row in pandas: the independent check of the SQL."""
    start = frame["user_id"].map(first)
    scoped = frame[frame["timestamp"] >= start - timedelta(days=pre_days)].copy()
    since = (scoped["timestamp"] - scoped["user_id"].map(first)) / timedelta(days=1)
    day = np.floor(since).astype(int)
    edges = [0, 1, 2, 3, 4, 5, 6, 7, 10, 14, 21]
    scoped["bin"] = [-1 if d < 0 else max(e for e in edges if e <= d) for d in day]
    out = {}
    for metric, column in METRIC_COLUMNS.items():
        values = scoped[column].astype("float64")
        scoped[f"{metric}__n"] = values.notna().astype(float)
        scoped[f"{metric}__sum"] = values.fillna(0)
        scoped[f"{metric}__sumsq"] = values.fillna(0) ** 2
    for a, b in STYLE_PAIRS:
        scoped[f"{a}__x__{b}"] = scoped[STYLE_COLUMNS[a]].astype(float) * scoped[
            STYLE_COLUMNS[b]
        ].astype(float)
    scoped["n"] = 1.0
    value_columns = [c for c in scoped.columns if "__" in c or c == "n"]
    out = scoped.groupby(["user_id", "bin"])[value_columns].sum().reset_index()
    return out


@pytest.mark.parametrize("pre_days", [28.0, 7.0])
def test_user_bins_match_a_row_by_row_computation(engine: sa.Engine, pre_days: float) -> None:
    rng = np.random.default_rng(5)
    users = [f"u{i}" for i in range(30)]
    first = {
        u: T0 + timedelta(hours=float(h))
        for u, h in zip(users, rng.uniform(0, 72, 30), strict=True)
    }
    add_exposures(engine, [(u, t, str(i % 2)) for i, (u, t) in enumerate(first.items())])
    frame = random_interactions(rng, [*users, "never_exposed"], 3000)
    store(engine, frame)

    got = load_user_bins(engine, "exp", PeriodParams(pre_days=pre_days))
    want = expected_bins(frame[frame["user_id"] != "never_exposed"], first, pre_days)

    key = ["user_id", "bin"]
    pairs = [c for c in want.columns if "__x__" in c]
    sample = sorted(first)[:10]
    moments = load_within_user(engine, "exp", sample, PeriodParams(pre_days=pre_days))
    in_sample = want[want["user_id"].isin(sample)].assign(post=lambda f: (f["bin"] >= 0) * 1)
    expected = in_sample.groupby(["user_id", "post"])[[*pairs, "n"]].sum().reset_index()
    moments = moments.sort_values(["user_id", "post"]).reset_index(drop=True)
    for column in [*pairs, "n"]:
        np.testing.assert_allclose(moments[column], expected[column], err_msg=column)
    want = want.drop(columns=pairs)
    got = got.sort_values(key).reset_index(drop=True)
    want = want.sort_values(key).reset_index(drop=True)
    assert got[key].equals(want[key])
    for column in want.columns.drop(key):
        np.testing.assert_allclose(got[column], want[column], rtol=1e-9, err_msg=column)

    periods = roll_up_periods(got)
    assert set(periods["post"]) == {0, 1}
    assert periods["n"].sum() == want["n"].sum()
    buckets = roll_up_buckets(got)
    assert set(buckets["bucket"]) <= {"0-2", "3-6", "7-13", "14+"}
    assert buckets["n"].sum() == want.loc[want["bin"] >= 0, "n"].sum()


def test_pre_and_post_split_at_the_exact_first_exposure(engine: sa.Engine) -> None:
    add_exposures(engine, [("u", T0, "1")])
    base = random_interactions(np.random.default_rng(1), ["u"], 4)
    base["timestamp"] = [
        T0 - timedelta(microseconds=1),
        T0,
        T0 + timedelta(days=1),
        T0 + timedelta(days=1) - timedelta(microseconds=1),
    ]
    store(engine, base)
    bins = load_user_bins(engine, "exp").set_index("bin")["n"].to_dict()
    assert bins == {-1: 1.0, 0: 2.0, 1: 1.0}

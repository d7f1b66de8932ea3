"""Per-user guardrail outcomes from SQL, on SQLite and PostgreSQL, against pandas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

import analytics.analysis.outcomes
from analytics.analysis.outcomes import (
    GUARDRAIL_METRICS,
    OUTCOME_COLUMNS,
    compute_user_metrics,
    load_user_outcomes,
)
from analytics.models import Interaction

SINCE = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
UNTIL = datetime(2026, 11, 9, 0, 0, tzinfo=UTC)


def store(engine: sa.Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as connection:
        connection.execute(sa.insert(Interaction), rows)


def row(i: int, user: str, timestamp: datetime, **values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": f"e{i}",
        "user_id": user,
        "timestamp": timestamp,
        "prompt": "p",
        "complaint": None,
        "retry": None,
        "feedback": None,
        "has_pushback": None,
    }
    return base | values


def random_rows(seed: int, users: list[str], n: int) -> pd.DataFrame:
    """Interactions around the window, with NULLs in every outcome column."""
    rng = np.random.default_rng(seed)

    def maybe_null(values: np.ndarray, share: float) -> pd.Series:
        # object dtype: pandas would turn None among integers into a float NaN.
        return pd.Series([None if rng.random() < share else v.item() for v in values], dtype=object)

    minutes = rng.uniform(-3 * 1440, 10 * 1440, n)
    return pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "user_id": rng.choice(users, n),
            "timestamp": [SINCE + timedelta(minutes=float(m)) for m in minutes],
            "prompt": "p",
            "complaint": maybe_null(rng.random(n) < 0.1, 0.2),
            "retry": maybe_null(rng.random(n) < 0.2, 0.1),
            "feedback": maybe_null(rng.choice(np.array([-1, 0, 1]), n), 0.3),
            "has_pushback": maybe_null(rng.random(n) < 0.3, 0.05),
        }
    )


def expected_outcomes(rows: pd.DataFrame, users: list[str]) -> pd.DataFrame:
    """The same sums computed by pandas on the inserted rows."""
    inside = rows[(rows["timestamp"] >= SINCE) & (rows["timestamp"] < UNTIL)].copy()
    for column in ("complaint", "retry", "feedback", "has_pushback"):
        inside[column] = pd.to_numeric(inside[column].astype(object), errors="coerce")
    inside["day"] = [t.astimezone(UTC).date() for t in inside["timestamp"]]
    grouped = inside.groupby("user_id")
    summary = pd.DataFrame(
        {
            "n": grouped.size(),
            "active_days": grouped["day"].nunique(),
            "complaint_n": grouped["complaint"].count(),
            "complaint_sum": grouped["complaint"].sum(),
            "retry_n": grouped["retry"].count(),
            "retry_sum": grouped["retry"].sum(),
            "feedback_n": grouped["feedback"].count(),
            "feedback_sum": grouped["feedback"].sum(),
            "pushback_sum": grouped["has_pushback"].sum(),
        }
    )
    out = summary.reindex(pd.Index(users, name="user_id")).fillna(0).astype("int64")
    return out.reset_index()[list(OUTCOME_COLUMNS)]


def test_sums_match_pandas_on_the_inserted_rows(engine: sa.Engine) -> None:
    users = [f"u{i:02d}" for i in range(40)]
    rows = random_rows(1, users[:30], 2000)  # u30..u39 never interact
    store(engine, rows.to_dict("records"))
    asked = [*reversed(users), "nobody"]
    outcomes = load_user_outcomes(engine, asked, SINCE, UNTIL)
    expected = expected_outcomes(rows, asked)
    assert list(outcomes.columns) == list(OUTCOME_COLUMNS)
    pd.testing.assert_frame_equal(outcomes, expected, check_dtype=False)
    assert (outcomes.drop(columns="user_id").dtypes == "int64").all()


def test_window_is_half_open(engine: sa.Engine) -> None:
    microsecond = timedelta(microseconds=1)
    store(
        engine,
        [
            row(1, "a", SINCE - microsecond, complaint=True),  # before: out
            row(2, "a", SINCE, complaint=True),  # the first instant: in
            row(3, "a", UNTIL - microsecond, complaint=False),  # the last instant: in
            row(4, "a", UNTIL, complaint=True),  # the end: out
            # The same instant as SINCE written in another zone is still SINCE.
            row(5, "a", SINCE.astimezone(timezone(timedelta(hours=-5))), retry=True),
        ],
    )
    outcomes = load_user_outcomes(engine, ["a"], SINCE, UNTIL).iloc[0]
    assert outcomes["n"] == 3
    assert (outcomes["complaint_n"], outcomes["complaint_sum"]) == (2, 1)
    assert (outcomes["retry_n"], outcomes["retry_sum"]) == (1, 1)
    # Naive datetimes are UTC.
    naive = load_user_outcomes(
        engine, ["a"], SINCE.replace(tzinfo=None), UNTIL.replace(tzinfo=None)
    )
    assert naive.iloc[0]["n"] == 3


def test_users_without_interactions_keep_their_row_with_zeros(engine: sa.Engine) -> None:
    store(engine, [row(1, "a", SINCE + timedelta(days=1)), row(2, "b", UNTIL + timedelta(days=1))])
    outcomes = load_user_outcomes(engine, ["c", "b", "a", "c", "b"], SINCE, UNTIL)
    assert outcomes["user_id"].tolist() == ["c", "b", "a"]  # given order, repeats dropped
    assert outcomes["n"].tolist() == [0, 0, 1]
    assert outcomes.drop(columns=["user_id", "n", "active_days"]).eq(0).all().all()
    empty = load_user_outcomes(engine, [], SINCE, UNTIL)
    assert empty.empty and list(empty.columns) == list(OUTCOME_COLUMNS)


def test_booleans_nulls_and_days(engine: sa.Engine) -> None:
    day = SINCE + timedelta(days=2)
    store(
        engine,
        [
            row(1, "a", day + timedelta(hours=23, minutes=59), complaint=True, feedback=-1),
            row(2, "a", day + timedelta(days=1, minutes=1), complaint=False, has_pushback=True),
            row(3, "a", day + timedelta(days=1, hours=2), retry=False, feedback=1),
            row(4, "a", day + timedelta(days=1, hours=3), feedback=1, has_pushback=False),
            row(5, "b", day, retry=True, has_pushback=True),
        ],
    )
    outcomes = load_user_outcomes(engine, ["a", "b"], SINCE, UNTIL).set_index("user_id")
    a, b = outcomes.loc["a"], outcomes.loc["b"]
    assert (a["n"], a["active_days"]) == (4, 2)  # 23:59 and 00:01 are two UTC days
    assert (a["complaint_n"], a["complaint_sum"]) == (2, 1)
    assert (a["retry_n"], a["retry_sum"]) == (1, 0)
    assert (a["feedback_n"], a["feedback_sum"]) == (3, 1)
    assert a["pushback_sum"] == 1
    assert (b["complaint_n"], b["complaint_sum"], b["feedback_n"]) == (0, 0, 0)  # all NULL
    assert (b["retry_n"], b["retry_sum"], b["pushback_sum"]) == (1, 1, 1)


def test_many_users_are_read_in_chunks(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(analytics.analysis.outcomes, "_CHUNK_USERS", 7)
    users = [f"u{i:02d}" for i in range(40)]
    rows = random_rows(2, users[::2], 400)
    store(engine, rows.to_dict("records"))
    outcomes = load_user_outcomes(engine, users, SINCE, UNTIL)
    pd.testing.assert_frame_equal(outcomes, expected_outcomes(rows, users), check_dtype=False)


def test_window_must_not_end_before_it_starts(engine: sa.Engine) -> None:
    with pytest.raises(ValueError, match="before it starts"):
        load_user_outcomes(engine, ["a"], UNTIL, SINCE)


def test_user_metrics_are_user_means_and_nan_without_values() -> None:
    outcomes = pd.DataFrame(
        {
            "user_id": ["a", "b", "c"],
            "n": [4, 2, 0],
            "active_days": [2, 1, 0],
            "complaint_n": [2, 0, 0],
            "complaint_sum": [1, 0, 0],
            "retry_n": [4, 2, 0],
            "retry_sum": [1, 2, 0],
            "feedback_n": [3, 1, 0],
            "feedback_sum": [1, -1, 0],
            "pushback_sum": [1, 0, 0],
        }
    )
    metrics = compute_user_metrics(outcomes).set_index("user_id")
    assert list(metrics.columns) == list(GUARDRAIL_METRICS)
    assert metrics.loc["a"].tolist() == [0.5, 0.25, pytest.approx(1 / 3), 0.25]
    assert np.isnan(metrics.loc["b", "complaint_rate"])
    assert metrics.loc["b", ["retry_rate", "feedback_score", "pushback_rate"]].tolist() == [
        1.0,
        -1.0,
        0.0,
    ]
    assert metrics.loc["c"].isna().all()


def test_guardrail_signs_say_which_direction_is_worse() -> None:
    assert GUARDRAIL_METRICS == {
        "complaint_rate": 1,
        "retry_rate": 1,
        "feedback_score": -1,
        "pushback_rate": 1,
    }

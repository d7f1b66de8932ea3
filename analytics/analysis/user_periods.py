"""Sufficient statistics per user and period, aggregated in the database.

The analysis never reads interactions row by row: SQL groups them per user and period
(pre-exposure, post-exposure) into counts, sums, sums of squares and the cross-products of
the style metrics, and per user and day since exposure for the adaptation curve. Python's
memory therefore grows with users, not with interactions; the statistics run on these sums.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import combinations, pairwise
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from analytics.db import rows_frame
from analytics.features.metrics import BEHAVIOR_METRICS, BUCKETS, DAY_BINS, METRICS, STYLE_METRICS

# Contract metric -> the stored per-interaction column it averages, as analytics.features
# defines them.
BEHAVIOR_COLUMNS: dict[str, str] = {m: METRICS[m].stored_column for m in BEHAVIOR_METRICS}
STYLE_COLUMNS: dict[str, str] = {m: METRICS[m].stored_column for m in STYLE_METRICS}
METRIC_COLUMNS = {**BEHAVIOR_COLUMNS, **STYLE_COLUMNS}
STYLE_PAIRS = list(combinations(STYLE_COLUMNS, 2))
_MICROS_PER_DAY = 86_400_000_000


@dataclass(frozen=True)
class PeriodParams:
    """Which interactions count: ``pre_days`` before first exposure (None: all of them), and
    only what happened before ``until`` (None: everything stored), exposures included, so an
    analysis can be rerun as of the end of a past week."""

    pre_days: float | None = 28.0
    until: datetime | None = None

    def query_values(self, dialect: str, split: datetime | None = None) -> dict[str, Any]:
        """The ``:until`` (and ``:split``) bound values as the timestamp columns store them."""
        moments = {"until": self.until, "split": split}
        return {name: _stored(dialect, at) for name, at in moments.items() if at is not None}


def _stored(dialect: str, at: datetime) -> Any:
    """An instant as the timestamp columns store it (SQLite: microseconds since the epoch)."""
    return round(at.timestamp() * 1_000_000) if dialect == "sqlite" else at


# With a ``split`` instant, the scans below keep apart what happened before it: a column
# ``before_split`` (1 for the interactions before it), so that one scan serves the analysis as
# of the split and the one as of ``until`` (analytics.analysis.split_scan).
_BEFORE_SPLIT = "CASE WHEN i.timestamp < :split THEN 1 ELSE 0 END AS before_split"


def _split_columns(split: datetime | None, *extra: str) -> tuple[str, str]:
    """The inner select's and the grouping's extra columns when scanning with a split."""
    if split is None:
        return "", ""
    names = ["before_split", *(e.rsplit(" AS ", 1)[1] for e in extra)]
    return ", " + ", ".join([_BEFORE_SPLIT, *extra]), ", " + ", ".join(names)


# Columns never NULL once features are computed (their count is the row count).
_ALWAYS_PRESENT = {"prompt_length", *(c for c in STYLE_COLUMNS.values() if c.startswith("has_"))}
# 0/1 columns: their sum of squares is their sum.
_INDICATORS = {c for c in METRIC_COLUMNS.values() if c.startswith("has_")} | {"complaint", "retry"}


def _numeric(column: str, dialect: str) -> str:
    """The stored column as a number: PostgreSQL sums booleans only after a cast (NULL stays
    NULL); SQLite stores them as integers already."""
    if dialect == "sqlite" or column in ("latency_ms", "prompt_length", "response_length"):
        return f"i.{column}"
    return f"CAST(i.{column} AS INTEGER)"


def _cohort_cte(params: PeriodParams, split: datetime | None = None) -> str:
    """The cohort's users, their first exposure and variation. With ``split``, the users of
    the cohort as of the split or as of ``until``: a user who saw a second variation between
    the two is in the first only (``in_later`` 0), in the variation seen before the split."""
    until = " AND timestamp < :until" if params.until is not None else ""
    if split is None:
        columns, having = "min(variation_id) AS variation", "count(DISTINCT variation_id) = 1"
    else:
        early = "CASE WHEN timestamp < :split THEN variation_id END"
        columns = (
            f"coalesce(min({early}), min(variation_id)) AS variation, "
            "CASE WHEN count(DISTINCT variation_id) = 1 THEN 1 ELSE 0 END AS in_later"
        )
        having = f"count(DISTINCT variation_id) = 1 OR count(DISTINCT {early}) = 1"
    return (
        f"WITH cohort AS (SELECT user_id, min(timestamp) AS first_exposure, {columns} "
        f"FROM exposures WHERE experiment_id = :experiment_id{until} GROUP BY user_id "
        f"HAVING {having})"
    )


def _window(dialect: str, params: PeriodParams) -> str:
    until = " AND i.timestamp < :until" if params.until is not None else ""
    if params.pre_days is None:
        return "1 = 1" + until
    if dialect == "sqlite":
        days = int(params.pre_days * _MICROS_PER_DAY)
        return f"i.timestamp >= c.first_exposure - {days}{until}"
    seconds = params.pre_days * 86400.0
    return f"i.timestamp >= c.first_exposure - make_interval(secs => {seconds}){until}"


def _day_index(dialect: str) -> str:
    """Whole days since first exposure: 0, 1, ... after it; -1, -2, ... before it."""
    if dialect == "sqlite":
        return (
            "CASE WHEN i.timestamp >= c.first_exposure "
            f"THEN (i.timestamp - c.first_exposure) / {_MICROS_PER_DAY} "
            f"ELSE -1 - (c.first_exposure - i.timestamp - 1) / {_MICROS_PER_DAY} END"
        )
    # The days field of a timestamptz difference is the whole days elapsed (it has no months);
    # exact for the post-period, and any negative value means the pre-period. Much cheaper
    # than extract(epoch ...), which computes in numeric.
    return (
        "CASE WHEN i.timestamp < c.first_exposure THEN -1 "
        "ELSE CAST(date_part('day', i.timestamp - c.first_exposure) AS INTEGER) END"
    )


def _no_flattening(dialect: str) -> str:
    # The planners would merge the subquery into the aggregate and evaluate the day
    # expression once per reference in the bin CASE; these keep it a subquery, run once.
    return " LIMIT -1" if dialect == "sqlite" else " OFFSET 0"


def _bin_of(day: str) -> str:
    cases = " ".join(f"WHEN {day} < {nxt} THEN {start}" for start, nxt in pairwise(DAY_BINS))
    return f"CASE WHEN {day} < 0 THEN -1 {cases} ELSE {DAY_BINS[-1]} END"


def user_bin_sql(dialect: str, params: PeriodParams, *, split: datetime | None = None) -> str:
    """One row per (user, bin of days since first exposure): n, and per metric its count
    (where it can be missing), sum and sum of squares (where it is not 0/1).

    Bins, not days: each group costs SQLite a sort entry and an aggregate state per sum, and
    bins cut the groups by half at no loss for the statistics that use them.
    """
    sums = []
    for metric, column in METRIC_COLUMNS.items():
        value = column
        if column not in _ALWAYS_PRESENT:
            sums.append(f"count({value}) AS {metric}__n")
        sums.append(f"sum({value}) AS {metric}__sum")
        if column not in _INDICATORS:
            sums.append(f"sum({value} * {value}) AS {metric}__sumsq")
    columns = ", ".join(f"{_numeric(c, dialect)} AS {c}" for c in METRIC_COLUMNS.values())
    inner, outer = _split_columns(split)
    return (
        f"{_cohort_cte(params, split)} "
        f"SELECT user_id, {_bin_of('day')} AS bin{outer}, count(*) AS n, {', '.join(sums)} FROM ("
        f"SELECT i.user_id, {_day_index(dialect)} AS day{inner}, {columns} "
        "FROM cohort c JOIN interactions i ON i.user_id = c.user_id "
        f"WHERE {_window(dialect, params)}{_no_flattening(dialect)}) AS scoped "
        f"GROUP BY user_id, bin{outer}"
    )


def load_user_bins(
    engine: sa.Engine,
    experiment_id: str,
    params: PeriodParams = PeriodParams(),
    *,
    split: datetime | None = None,
) -> pd.DataFrame:
    """Per user and bin of days since first exposure (-1: before it), the sufficient
    statistics of every metric; ``__n``, ``__sumsq`` filled in where SQL left them implied.
    With ``split``, per user, bin and ``before_split``."""
    dialect = engine.dialect.name
    with engine.connect() as connection:
        frame = pd.read_sql_query(
            sa.text(user_bin_sql(dialect, params, split=split)),
            connection,
            params={"experiment_id": experiment_id, **params.query_values(dialect, split)},
        )
    keys = ["user_id", "bin", "before_split"]
    value_columns = [c for c in frame.columns if c not in keys]
    frame[value_columns] = frame[value_columns].astype("float64").fillna(0.0)
    frame["bin"] = frame["bin"].astype("int64")
    for metric, column in METRIC_COLUMNS.items():
        if column in _ALWAYS_PRESENT:
            frame[f"{metric}__n"] = frame["n"]
        if column in _INDICATORS:
            frame[f"{metric}__sumsq"] = frame[f"{metric}__sum"]
    return frame


def roll_up(bins: pd.DataFrame, key: pd.Series, name: str) -> pd.DataFrame:
    """Per user and ``key`` (a label per bin row): the bin rows' sums added up."""
    keyed = bins.drop(columns="bin").assign(**{name: key.to_numpy()})
    return keyed.groupby(["user_id", name], sort=False, as_index=False).sum()


def roll_up_periods(bins: pd.DataFrame) -> pd.DataFrame:
    """Per user and period: ``post`` 0 (before first exposure) or 1."""
    return roll_up(bins, (bins["bin"] >= 0).astype("int64"), "post")


def roll_up_buckets(bins: pd.DataFrame) -> pd.DataFrame:
    """Per user and bucket of days since exposure (``BUCKETS``), post-period rows only."""
    post = bins[bins["bin"] >= 0]
    labels = pd.Series(pd.NA, index=post.index, dtype="object")
    for label, (start, stop) in BUCKETS.items():
        labels[(post["bin"] >= start) & (post["bin"] < stop)] = label
    return roll_up(post, labels, "bucket")


def roll_up_curves(
    bins: pd.DataFrame, weights: Mapping[int, float], *, include_pre: bool, early_days: int
) -> pd.DataFrame:
    r"""Per user, the sums a regression of the style metrics on an adaptation curve needs.

    With :math:`g_b` = ``weights[bin]`` the curve's value in each bin (0 before exposure)
    and the bin rows of the user (the pre-period's only with ``include_pre``):
    ``n`` (:math:`\sum_b n_b`), ``g_sum`` (:math:`\sum_b g_b n_b`), ``gg_sum``
    (:math:`\sum_b g_b^2 n_b`), and per style metric ``{metric}__sum`` (:math:`\sum_b S_b`)
    and ``{metric}__gsum`` (:math:`\sum_b g_b S_b`); ``n_early`` and ``n_late``, the
    interactions before and from day ``early_days`` since first exposure. Style metrics are
    never NULL, so their counts are ``n``. Indexed by ``user_id``; a user without any row is
    absent.
    """
    rows = bins if include_pre else bins[bins["bin"] >= 0]
    g = rows["bin"].map(weights).to_numpy(dtype=float)
    n = rows["n"].to_numpy(dtype=float)
    day = rows["bin"].to_numpy()
    columns: dict[str, Any] = {
        "user_id": rows["user_id"].to_numpy(),
        "n": n,
        "n_early": np.where((day >= 0) & (day < early_days), n, 0.0),
        "n_late": np.where(day >= early_days, n, 0.0),
        "g_sum": g * n,
        "gg_sum": g * g * n,
    }
    for metric in STYLE_COLUMNS:
        total = rows[f"{metric}__sum"].to_numpy(dtype=float)
        columns[f"{metric}__sum"] = total
        columns[f"{metric}__gsum"] = g * total
    return pd.DataFrame(columns).groupby("user_id", sort=False).sum()


def user_means(periods: pd.DataFrame) -> pd.DataFrame:
    """One row per user: ``n_pre``, ``n_post`` and each metric's mean per period
    (``<metric>__pre``, ``<metric>__post``; NaN where the user has no value in that period)."""
    wide = periods.pivot(index="user_id", columns="post")
    out = pd.DataFrame(index=wide.index)
    for post, label in ((0, "pre"), (1, "post")):
        n = wide[("n", post)] if ("n", post) in wide.columns else pd.Series(0.0, index=wide.index)
        out[f"n_{label}"] = n.fillna(0).astype("int64")
        for metric in METRIC_COLUMNS:
            if (f"{metric}__n", post) not in wide.columns:
                out[f"{metric}__{label}"] = float("nan")
                continue
            count = wide[(f"{metric}__n", post)]
            total = wide[(f"{metric}__sum", post)]
            out[f"{metric}__{label}"] = (total / count).where(count > 0)
    return out.reset_index()


def _epoch_day(dialect: str) -> str:
    if dialect == "sqlite":
        return f"(i.timestamp / {_MICROS_PER_DAY})"
    return "((i.timestamp AT TIME ZONE 'UTC')::date - DATE '1970-01-01')"


def daily_sql(dialect: str, params: PeriodParams, *, split: datetime | None = None) -> str:
    """Per variation and UTC calendar day: interactions and the behaviour metrics' sums.
    With ``split``, also per ``before_split``, ``exposed_before_split`` (whether the users are
    in the cohort as of the split) and ``in_later`` (in the cohort as of ``until``)."""
    sums = ", ".join(
        f"count({c}) AS {m}__n, sum({c}) AS {m}__sum" for m, c in BEHAVIOR_COLUMNS.items()
    )
    columns = ", ".join(f"{_numeric(c, dialect)} AS {c}" for c in BEHAVIOR_COLUMNS.values())
    exposed = "CASE WHEN c.first_exposure < :split THEN 1 ELSE 0 END AS exposed_before_split"
    inner, outer = _split_columns(split, exposed, "c.in_later AS in_later")
    return (
        f"{_cohort_cte(params, split)} SELECT variation, day{outer}, count(*) AS n, {sums} FROM ("
        f"SELECT c.variation, {_epoch_day(dialect)} AS day{inner}, {columns} "
        "FROM cohort c JOIN interactions i ON i.user_id = c.user_id "
        f"WHERE {_window(dialect, params)}{_no_flattening(dialect)}) AS scoped "
        f"GROUP BY variation, day{outer}"
    )


def load_daily(
    engine: sa.Engine, experiment_id: str, params: PeriodParams = PeriodParams()
) -> pd.DataFrame:
    """Per variation and calendar day (``date``), each behaviour metric's daily mean."""
    return daily_means(load_daily_sums(engine, experiment_id, params))


def load_daily_sums(
    engine: sa.Engine,
    experiment_id: str,
    params: PeriodParams = PeriodParams(),
    *,
    split: datetime | None = None,
) -> pd.DataFrame:
    """The rows of :func:`daily_sql`: per variation and epoch day, the counts and sums."""
    dialect = engine.dialect.name
    with engine.connect() as connection:
        return pd.read_sql_query(
            sa.text(daily_sql(dialect, params, split=split)),
            connection,
            params={"experiment_id": experiment_id, **params.query_values(dialect, split)},
        )


def daily_means(sums: pd.DataFrame) -> pd.DataFrame:
    """Per variation and epoch ``day``, the counts and sums of :func:`daily_sql` (or the Spark
    path's) as each behaviour metric's daily mean, by ``date``."""
    out = pd.DataFrame(
        {
            "variation": sums["variation"].astype(str),
            "date": pd.to_datetime(sums["day"].astype("int64"), unit="D", utc=True),
            "n": sums["n"].astype("int64"),
        }
    )
    for metric in BEHAVIOR_COLUMNS:
        count = sums[f"{metric}__n"].astype("float64")
        out[metric] = (sums[f"{metric}__sum"].astype("float64") / count).where(count > 0)
    return out.sort_values(["variation", "date"]).reset_index(drop=True)


def within_user_sql(dialect: str, params: PeriodParams, *, split: datetime | None = None) -> str:
    """For the users in ``:users``, per user and period: n, and the style metrics' sums, sums
    of squares and pairwise cross-products (the within-user covariance). With ``split``, also
    per ``before_split``."""
    sums = []
    for metric, column in STYLE_COLUMNS.items():
        sums += [f"sum({column}) AS {metric}__sum", f"sum({column} * {column}) AS {metric}__sumsq"]
    for a, b in STYLE_PAIRS:
        sums.append(f"sum({STYLE_COLUMNS[a]} * {STYLE_COLUMNS[b]}) AS {a}__x__{b}")
    columns = ", ".join(f"{_numeric(c, dialect)} AS {c}" for c in STYLE_COLUMNS.values())
    inner, outer = _split_columns(split)
    return (
        f"{_cohort_cte(params, split)} "
        f"SELECT user_id, post{outer}, count(*) AS n, {', '.join(sums)} FROM (SELECT i.user_id, "
        f"CASE WHEN i.timestamp >= c.first_exposure THEN 1 ELSE 0 END AS post{inner}, "
        f"{columns} FROM cohort c JOIN interactions i ON i.user_id = c.user_id "
        f"WHERE i.user_id IN :users AND {_window(dialect, params)}"
        f"{_no_flattening(dialect)}) AS scoped GROUP BY user_id, post{outer}"
    )


def load_within_user(
    engine: sa.Engine,
    experiment_id: str,
    user_ids: list[str],
    params: PeriodParams = PeriodParams(),
    *,
    split: datetime | None = None,
) -> pd.DataFrame:
    """Per user (of ``user_ids``) and period, the style metrics' second moments.

    The pooled within-user covariance is a population quantity: a sample of a few thousand
    users estimates it well, at a fraction of the cost of 21 more sums over every row.
    """
    dialect = engine.dialect.name
    statement = sa.text(within_user_sql(dialect, params, split=split)).bindparams(
        sa.bindparam("users", expanding=True)
    )
    with engine.connect() as connection:
        rows = connection.execute(
            statement,
            {
                "experiment_id": experiment_id,
                "users": user_ids or [""],
                **params.query_values(dialect, split),
            },
        )
        frame = rows_frame(rows.all(), list(rows.keys()))
    value_columns = [c for c in frame.columns if c not in ("user_id", "post", "before_split")]
    frame[value_columns] = frame[value_columns].astype("float64").fillna(0.0)
    return frame


def sample_users(user_ids: pd.Series, size: int = 3000) -> list[str]:
    """A deterministic sample of ``size`` users (by a hash of their id)."""
    hashed = pd.util.hash_pandas_object(user_ids, index=False).to_numpy()
    return [str(u) for u in user_ids.to_numpy()[hashed.argsort()[:size]]]

"""The cohorts and the per-user sufficient statistics, reduced in Spark as the SQL loaders
reduce them in the database, and collected as the same pandas frames.

Each function here mirrors one SQL builder, window for window and sum for sum:

- :func:`build_exposed_users` / :func:`collect_cohorts`:
  :func:`analytics.analysis.cohorts.cohort_query` / ``load_cohorts`` (first exposure, the
  variation, users seen in several variations counted and excluded);
- :func:`build_user_days`: one pass over the interactions, joined with the cohort, in the
  analysed window (``_window``: ``pre_days`` before first exposure, before ``until``), grouped
  per user, UTC calendar day and bin of days since first exposure (``_day_index``, ``_bin_of``),
  with every count, sum and sum of squares of ``user_bin_sql``, and the style metrics'
  cross-products of ``within_user_sql`` for the sampled users;
- :func:`collect_user_bins`, :func:`collect_daily`, :func:`collect_within_user`: that one
  reduction rolled up to ``load_user_bins``, ``load_daily`` and ``load_within_user``.

Counts and integer sums are exact, as in SQL; sums of a floating-point column
(``latency_ms``) are added in another order, so they agree to the last bits only. Rows are
sorted by their keys. What is collected grows with users (and days), never with interactions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING

import pandas as pd

from analytics.analysis.cohorts import Cohorts
from analytics.analysis.user_periods import (
    _ALWAYS_PRESENT,  # the SQL builders' own choices, so that both paths make the same sums
    _INDICATORS,
    _MICROS_PER_DAY,
    BEHAVIOR_COLUMNS,
    METRIC_COLUMNS,
    STYLE_COLUMNS,
    STYLE_PAIRS,
    PeriodParams,
    daily_means,
)
from analytics.features.metrics import DAY_BINS

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession


def until_micros(periods: PeriodParams) -> int | None:
    """``until`` as epoch microseconds, rounded as the SQLite bound is."""
    return None if periods.until is None else round(periods.until.timestamp() * 1_000_000)


def build_exposed_users(
    exposures: DataFrame, experiment_id: str, periods: PeriodParams
) -> DataFrame:
    """One row per exposed user of ``experiment_id`` (exposures before ``until``):
    ``user_id``, ``first_us`` (first exposure, epoch microseconds), ``variation`` (the least
    variation seen) and ``n_variations`` (how many seen), as ``cohort_query``."""
    from pyspark.sql import functions as sf

    rows = exposures.where(sf.col("experiment_id") == experiment_id)
    until = until_micros(periods)
    if until is not None:
        rows = rows.where(sf.col("timestamp_us") < until)
    return rows.groupBy("user_id").agg(
        sf.min("timestamp_us").alias("first_us"),
        sf.min("variation_id").alias("variation"),
        sf.countDistinct("variation_id").alias("n_variations"),
    )


def collect_cohorts(exposed: DataFrame, experiment_id: str, control: str) -> Cohorts:
    """The :class:`Cohorts` ``load_cohorts`` returns, from :func:`build_exposed_users`."""
    frame = collect(exposed.select("user_id", "first_us", "variation", "n_variations"))
    frame = frame.sort_values("user_id", kind="stable").reset_index(drop=True)
    single = frame[frame["n_variations"] == 1]
    users = pd.DataFrame(
        {
            "user_id": single["user_id"].to_numpy(),
            "variation": single["variation"].to_numpy(),
            "first_exposure": _utc(single["first_us"]),
        }
    )
    users["user_id"] = users["user_id"].astype("str")
    users["variation"] = users["variation"].astype("str")
    seen = sorted(set(frame["variation"]) | {control}, key=lambda v: (v != control, v))
    return Cohorts(
        experiment_id=experiment_id,
        control=control,
        variations=seen if len(frame) else [control],
        users=users,
        multiple_exposures=int((frame["n_variations"] > 1).sum()),
    )


def build_cohort_frame(
    spark: SparkSession, exposed: DataFrame, sampled_users: list[str]
) -> DataFrame:
    """The analysed users for the join with the interactions: ``user_id``, ``first_us``,
    ``variation`` and ``sampled`` (one of ``sampled_users``, whose within-user moments are
    summed)."""
    from pyspark.sql import functions as sf

    sample = spark.createDataFrame([(u,) for u in sampled_users], "user_id string").withColumn(
        "sampled", sf.lit(True)
    )
    single = exposed.where(sf.col("n_variations") == 1).select("user_id", "first_us", "variation")
    return single.join(sf.broadcast(sample), "user_id", "left").select(
        "user_id", "first_us", "variation", sf.coalesce("sampled", sf.lit(False)).alias("sampled")
    )


def deduplicate(rows: DataFrame) -> DataFrame:
    """One row per ``(user_id, event_id)``: ingest stores an interaction once. Of rows that share
    the key but differ (a conflicting duplicate), ingest keeps the first in file order, which a
    lake does not have: one of them is kept, whole (Spark's ``dropDuplicates``; a deterministic
    choice, the least row, costs a sort of every row: a quarter more time on a million)."""
    return rows.dropDuplicates(["user_id", "event_id"])


def _day_bin(day: Column) -> Column:
    """``_bin_of``: -1 before exposure, else the start of the day's bin in ``DAY_BINS``."""
    from pyspark.sql import functions as sf

    bins = sf.when(day < 0, sf.lit(-1))
    for start, following in pairwise(DAY_BINS):
        bins = bins.when(day < following, sf.lit(start))
    return bins.otherwise(sf.lit(DAY_BINS[-1]))


def _value(column: str) -> Column:
    """The stored column as a number, as ``_numeric`` casts it (integers 64-bit, so that no
    product overflows)."""
    from pyspark.sql import functions as sf

    return sf.col(column).cast("double" if column == "latency_ms" else "bigint")


def build_user_days(
    rows: DataFrame,
    cohort: DataFrame,
    periods: PeriodParams,
    *,
    observe: Callable[[DataFrame, str], DataFrame] | None = None,
) -> DataFrame:
    """Per user, UTC calendar day (``epoch_day``) and bin of days since first exposure
    (``bin``): ``n`` and every metric's ``__n``, ``__sum`` and ``__sumsq`` as ``user_bin_sql``
    makes them, and, for sampled users, the style metrics' ``a__x__b`` cross-products.

    ``rows`` are the checked interactions (:func:`analytics.spark.rows.checked_rows`); they are
    deduplicated here, after the join, so that only the cohort's interactions are shuffled, and
    partitioned by user once (the deduplication and the reduction need no other shuffle).
    ``observe(frame, name)``, when given, wraps the joined rows (``in_joined``) and the
    deduplicated ones (``in_unique``), to count them.
    """
    from pyspark.sql import functions as sf

    def observed(frame: DataFrame, name: str) -> DataFrame:
        return frame if observe is None else observe(frame, name)

    joined = observed(rows.join(cohort, "user_id").repartition("user_id"), "in_joined")
    unique = observed(deduplicate(joined), "in_unique")
    ts, first = sf.col("timestamp_us"), sf.col("first_us")
    window = sf.lit(True)
    if periods.pre_days is not None:
        window = window & (ts >= first - sf.lit(int(periods.pre_days * _MICROS_PER_DAY)))
    until = until_micros(periods)
    if until is not None:
        window = window & (ts < sf.lit(until))
    # ``_day_index``: whole days since first exposure; -1, -2, ... before it. Integer
    # division (``div``) on operands never negative, as SQLite's.
    day = sf.expr(
        f"CASE WHEN timestamp_us >= first_us THEN (timestamp_us - first_us) div {_MICROS_PER_DAY} "
        f"ELSE -1 - (first_us - timestamp_us - 1) div {_MICROS_PER_DAY} END"
    )
    scoped = unique.where(window).select(
        "user_id",
        "variation",
        "sampled",
        sf.expr(f"timestamp_us div {_MICROS_PER_DAY}").alias("epoch_day"),
        _day_bin(day).alias("bin"),
        *(_value(c).alias(c) for c in METRIC_COLUMNS.values()),
    )
    sums = [sf.count(sf.lit(1)).alias("n")]
    for metric, column in METRIC_COLUMNS.items():
        value = sf.col(column)
        if column not in _ALWAYS_PRESENT:
            sums.append(sf.count(value).alias(f"{metric}__n"))
        sums.append(sf.sum(value).alias(f"{metric}__sum"))
        if column not in _INDICATORS:
            sums.append(sf.sum(value * value).alias(f"{metric}__sumsq"))
    for a, b in STYLE_PAIRS:
        product = sf.col(STYLE_COLUMNS[a]) * sf.col(STYLE_COLUMNS[b])
        sums.append(sf.sum(sf.when(sf.col("sampled"), product)).alias(f"{a}__x__{b}"))
    return scoped.groupBy("user_id", "variation", "sampled", "epoch_day", "bin").agg(*sums)


def _bin_sums() -> list[str]:
    """``user_bin_sql``'s value columns, in its order."""
    names = ["n"]
    for metric, column in METRIC_COLUMNS.items():
        if column not in _ALWAYS_PRESENT:
            names.append(f"{metric}__n")
        names.append(f"{metric}__sum")
        if column not in _INDICATORS:
            names.append(f"{metric}__sumsq")
    return names


def collect_user_bins(user_days: DataFrame) -> pd.DataFrame:
    """``load_user_bins``: per user and bin, the sums; ``__n`` and ``__sumsq`` filled in where
    they are implied (never-null columns, 0/1 columns)."""
    from pyspark.sql import functions as sf

    names = _bin_sums()
    frame = collect(
        user_days.groupBy("user_id", "bin").agg(*(sf.sum(c).alias(c) for c in names))
    ).sort_values(["user_id", "bin"], kind="stable")
    frame = frame.reset_index(drop=True)
    frame["user_id"] = frame["user_id"].astype("str")
    frame[names] = frame[names].astype("float64").fillna(0.0)
    frame["bin"] = frame["bin"].astype("int64")
    for metric, column in METRIC_COLUMNS.items():
        if column in _ALWAYS_PRESENT:
            frame[f"{metric}__n"] = frame["n"]
        if column in _INDICATORS:
            frame[f"{metric}__sumsq"] = frame[f"{metric}__sum"]
    return frame


def collect_daily(user_days: DataFrame) -> pd.DataFrame:
    """``load_daily``: per variation and UTC calendar day, each behaviour metric's mean."""
    from pyspark.sql import functions as sf

    sums = [sf.sum("n").alias("n")]
    for metric in BEHAVIOR_COLUMNS:
        sums += [sf.sum(f"{metric}__n").alias(f"{metric}__n")]
        sums += [sf.sum(f"{metric}__sum").alias(f"{metric}__sum")]
    return daily_means(
        collect(user_days.groupBy("variation", sf.col("epoch_day").alias("day")).agg(*sums))
    )


def collect_within_user(user_days: DataFrame) -> pd.DataFrame:
    """``load_within_user`` of the sampled users: per user and period (``post``), n and the
    style metrics' sums, sums of squares and cross-products."""
    from pyspark.sql import functions as sf

    sums = [sf.sum("n").alias("n")]
    for metric, column in STYLE_COLUMNS.items():
        sums.append(sf.sum(f"{metric}__sum").alias(f"{metric}__sum"))
        # A 0/1 column's square is itself; user_bin_sql sums squares only of the others.
        square = f"{metric}__sum" if column in _INDICATORS else f"{metric}__sumsq"
        sums.append(sf.sum(square).alias(f"{metric}__sumsq"))
    sums += [sf.sum(f"{a}__x__{b}").alias(f"{a}__x__{b}") for a, b in STYLE_PAIRS]
    post = (sf.col("bin") >= 0).cast("bigint").alias("post")
    frame = collect(user_days.where(sf.col("sampled")).groupBy("user_id", post).agg(*sums))
    frame = frame.sort_values(["user_id", "post"], kind="stable").reset_index(drop=True)
    frame["user_id"] = frame["user_id"].astype("str")
    frame["post"] = frame["post"].astype("int64")
    values = [c for c in frame.columns if c not in ("user_id", "post")]
    frame[values] = frame[values].astype("float64").fillna(0.0)
    return frame


def collect(frame: DataFrame) -> pd.DataFrame:
    """``frame`` on the driver, through Arrow."""
    collected: pd.DataFrame = frame.toArrow().to_pandas()
    return collected


def _utc(micros: pd.Series) -> pd.Series:
    """Epoch microseconds as UTC instants (``datetime64[us, UTC]``, as ``load_cohorts``)."""
    values = micros.to_numpy(dtype="int64").astype("datetime64[us]")
    return pd.Series(values).dt.tz_localize("UTC")


@dataclass(frozen=True)
class CollectedSizes:
    """What reached the driver: rows and bytes (pandas' deep memory) of each frame."""

    rows: dict[str, int]
    bytes: dict[str, int]

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())


def collected_sizes(frames: dict[str, pd.DataFrame]) -> CollectedSizes:
    return CollectedSizes(
        rows={name: len(frame) for name, frame in frames.items()},
        bytes={
            name: int(frame.memory_usage(deep=True, index=True).sum())
            for name, frame in frames.items()
        },
    )

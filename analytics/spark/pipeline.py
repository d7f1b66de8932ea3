"""The analysis on Spark, wired top to bottom: sources -> checked rows and features (executors)
-> cohorts and per-user sums (Spark) -> the frames the SQL loaders return (driver) -> the
embedded path's inference (:func:`analytics.analysis.pipeline.analyse_frames`).

What is collected: the exposed users (one row each), the per-user, per-bin sums, the daily
means per variation and the within-user moments of a sample of at most 3,000 users; none of
them grows with interactions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa

from analytics.analysis.adaptation import AdaptationParams
from analytics.analysis.params import AnalysisParams, build_analysis_params
from analytics.analysis.pipeline import AnalysisFrames, AnalysisResult, analyse_frames
from analytics.analysis.user_periods import PeriodParams, sample_users
from analytics.documents import AnalysisDocument
from analytics.errors import ConfigError, NotFoundError
from analytics.ingest.contract import EXPOSURES, INTERACTIONS
from analytics.ingest.validate import TimestampRange
from analytics.spark.rows import INTERACTION_ROWS, checked_rows
from analytics.spark.session import quiet_pandas_warning
from analytics.spark.sources import Source, read_source
from analytics.spark.statistics import (
    CollectedSizes,
    build_cohort_frame,
    build_exposed_users,
    build_user_days,
    collect_cohorts,
    collect_daily,
    collect_user_bins,
    collect_within_user,
    collected_sizes,
)
from analytics.store import closest_experiment

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Observation, SparkSession


@dataclass(frozen=True)
class RowCounts:
    """Rows read from each source, those ingest would have rejected (dropped here), and the
    experiment's users' repeated interactions (same user and ``event_id``: counted once)."""

    exposures_read: int
    exposures_rejected: int
    interactions_read: int
    interactions_rejected: int
    interactions_duplicate: int


@dataclass(frozen=True)
class SparkAnalysis:
    """An analysis run on Spark: the pipeline's result, where the data came from, the rows
    seen and what was collected to the driver. Stored like any run (``save_analysis``), with
    its sources beside the parameters."""

    result: AnalysisResult
    source: dict[str, str]
    counts: RowCounts
    collected: CollectedSizes
    frames: AnalysisFrames = field(repr=False)

    @property
    def users(self) -> pd.DataFrame:
        return self.result.users

    def document(self) -> AnalysisDocument:
        return self.result.document()

    def parameters(self) -> dict[str, Any]:
        return {**self.result.parameters(), "source": dict(self.source)}


def build_spark_params(
    engine: sa.Engine,
    experiment_id: str,
    *,
    control: str = "0",
    weights: tuple[float, ...] | None = None,
    periods: PeriodParams | None = None,
    adaptation: AdaptationParams | None = None,
) -> AnalysisParams:
    """:func:`analytics.analysis.params.build_analysis_params` without the stored rows'
    timestamp check (the rows read are the lake's, checked one by one)."""
    return build_analysis_params(
        engine,
        experiment_id,
        control=control,
        weights=weights,
        periods=periods,
        adaptation=adaptation,
        check_stored_rows=False,
    )


def run_spark_analysis(
    spark: SparkSession,
    params: AnalysisParams,
    exposures: Source,
    interactions: Source,
    *,
    span: TimestampRange,
    features_out: str | None = None,
) -> SparkAnalysis:
    """Analyse ``params.experiment_id`` from ``exposures`` and ``interactions`` on ``spark``.

    Rows are checked by ingest's validation (timestamps outside ``span`` are rejected, as
    ingest's accepted range) and featured by ingest's feature code on the executors; with
    ``features_out``, the featured rows (every valid row of the source) are written there as
    Parquet first and the analysis reads them back. Refuses what ``run_analysis`` refuses,
    naming the sources.
    """
    from pyspark.sql import Observation
    from pyspark.sql import functions as sf

    experiment = params.experiment_id
    periods = params.periods
    when = "" if periods.until is None else f" before {periods.until}"
    observed: dict[str, Observation] = {}

    def observe(frame: DataFrame, name: str) -> DataFrame:
        observed[name] = Observation(name)
        return frame.observe(observed[name], sf.count(sf.lit(1)).alias("rows"))

    def count(name: str) -> int:
        return int(observed[name].get["rows"])

    with quiet_pandas_warning():
        exposure_rows = observe(
            checked_rows(
                observe(read_source(spark, exposures, EXPOSURES), "ex_read"), EXPOSURES, span
            ),
            "ex_valid",
        )
        interaction_source = read_source(spark, interactions, INTERACTIONS)
        exposed = build_exposed_users(exposure_rows, experiment, periods).persist()
        user_days: DataFrame | None = None
        try:
            cohorts = collect_cohorts(exposed, experiment, params.control)
            if cohorts.users.empty and not cohorts.multiple_exposures:
                raise NotFoundError(
                    f"experiment {experiment!r} has no exposures in {exposures.describe()}"
                    f"{when}; {_experiment_hint(exposure_rows, experiment)}"
                )
            cohort = build_cohort_frame(spark, exposed, sample_users(cohorts.users["user_id"]))
            rows = observe(
                checked_rows(observe(interaction_source, "in_read"), INTERACTIONS, span),
                "in_valid",
            )
            if features_out is not None:
                rows = _write_features(spark, rows, features_out)
            user_days = build_user_days(rows, cohort, periods, observe=observe).persist()
            bins = collect_user_bins(user_days)
            if bins.empty:
                raise NotFoundError(
                    f"the users exposed in {experiment!r} have no interactions in "
                    f"{interactions.describe()} in the analysed window{when}"
                )
            frames = AnalysisFrames(
                cohorts=cohorts,
                bins=bins,
                daily=collect_daily(user_days),
                moments=collect_within_user(user_days),
            )
        finally:
            exposed.unpersist()
            if user_days is not None:
                user_days.unpersist()
    counts = RowCounts(
        exposures_read=count("ex_read"),
        exposures_rejected=count("ex_read") - count("ex_valid"),
        interactions_read=count("in_read"),
        interactions_rejected=count("in_read") - count("in_valid"),
        interactions_duplicate=count("in_joined") - count("in_unique"),
    )
    collected = collected_sizes(
        {
            "cohorts": frames.cohorts.users,
            "bins": frames.bins,
            "daily": frames.daily,
            "moments": frames.moments,
        }
    )
    result = analyse_frames(frames, params)
    source = {
        "engine": "spark",
        "exposures": exposures.describe(),
        "interactions": interactions.describe(),
        "spark_version": spark.version,
    }
    return SparkAnalysis(result, source, counts, collected, frames)


def _experiment_hint(exposure_rows: DataFrame, experiment_id: str) -> str:
    """The closest experiment of the source when it looks like a typo, else its experiments."""
    known = sorted(
        str(row["experiment_id"])
        for row in exposure_rows.select("experiment_id").distinct().limit(1000).collect()
    )
    return closest_experiment(
        experiment_id,
        known,
        listed_as="experiments there",
        when_none="it holds no exposure ingest would accept",
    )


def _write_features(spark: SparkSession, rows: DataFrame, location: str) -> DataFrame:
    """Write the featured rows to ``location`` (Parquet, ``timestamp`` a UTC timestamp) and
    return them as read back, so that the features are computed once."""
    from pyspark.errors import PySparkException
    from pyspark.sql import functions as sf

    if "://" not in location and Path(location).exists():
        raise ConfigError(f"--features-out {location}: it exists; name a new folder")
    columns = [
        sf.timestamp_micros("timestamp_us").alias("timestamp") if c == "timestamp_us" else sf.col(c)
        for c in INTERACTION_ROWS.names
    ]
    try:
        rows.select(*columns).write.parquet(location)
    except PySparkException as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"--features-out {location}: {first}") from exc
    back = spark.read.parquet(location)
    return back.select(
        *(
            sf.unix_micros("timestamp").alias("timestamp_us") if c == "timestamp_us" else sf.col(c)
            for c in INTERACTION_ROWS.names
        )
    )

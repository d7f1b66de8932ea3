"""The one place the analysis stages are wired, top to bottom.

cohorts -> per-user sufficient statistics (SQL) -> behaviour drift -> style shift (DiD) ->
adaptation scores -> half-life. Parameters come in as a frozen object; nothing here reads
the environment.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from threadpoolctl import threadpool_limits

import analytics
from analytics.analysis.adaptation import (
    STYLE,
    label_counts,
    method_counts,
    score_adaptation,
    unscored_counts,
)
from analytics.analysis.cohorts import Cohorts, load_cohorts
from analytics.analysis.params import AnalysisParams
from analytics.analysis.user_periods import (
    STYLE_COLUMNS,
    PeriodParams,
    daily_means,
    load_daily_sums,
    load_user_bins,
    load_within_user,
    roll_up_buckets,
    roll_up_periods,
    sample_users,
    user_means,
)
from analytics.documents import USERS_CSV_COLUMNS, AdaptationSummary, AnalysisDocument, Srm
from analytics.errors import ConfigError, NotFoundError
from analytics.features.backfill import backfill_features
from analytics.inference.drift import compute_behavior_drift
from analytics.inference.results import (
    BucketShift,
    DriftRow,
    HalfLifeResult,
    SrmResult,
    StyleShiftRow,
)
from analytics.inference.srm import srm_test
from analytics.inference.style_shift import (
    compute_bucket_shifts,
    compute_style_shift,
    estimate_half_life,
)
from analytics.store import data_version, experiment_hint


@dataclass(frozen=True)
class AnalysisResult:
    params: AnalysisParams
    analysed_at: datetime
    code_version: str
    cohorts: Cohorts
    srm: SrmResult
    behavior_drift: list[DriftRow]
    style_shift: list[StyleShiftRow]
    bucket_shifts: list[BucketShift]
    half_life: HalfLifeResult | None
    users: pd.DataFrame  # one row per analysed user, with the adaptation columns
    daily: pd.DataFrame
    data_version: str | None = None  # of the stored data read (analytics.store.data_version)

    def document(self) -> AnalysisDocument:
        """``analysis.json`` of this result."""
        return analysis_document(self)

    def parameters(self) -> dict[str, Any]:
        """The parameters it ran with, as stored."""
        return self.params.to_json()


@dataclass(frozen=True)
class AnalysisFrames:
    """What the inference reads, as the SQL loaders return it (each grows with users, not
    interactions): the cohorts (``load_cohorts``), the per-user, per-bin sums
    (``load_user_bins``), the daily means per variation (``load_daily``) and the within-user
    moments of ``sample_users`` of the cohort (``load_within_user``). The Spark path
    (``analytics.spark``) builds the same frames from a lake."""

    cohorts: Cohorts
    bins: pd.DataFrame
    daily: pd.DataFrame
    moments: pd.DataFrame
    data_version: str | None = None  # of the stored data read (analytics.store.data_version)


def run_analysis(engine: sa.Engine, params: AnalysisParams) -> AnalysisResult:
    """Run every stage on the stored data of ``params.experiment_id``."""
    return analyse_frames(load_analysis_frames(engine, params), params)


def load_analysis_frames(engine: sa.Engine, params: AnalysisParams) -> AnalysisFrames:
    """The loading half of :func:`run_analysis`: the frames, read with SQL. Refuses (before
    reading the interactions) what :func:`analyse_frames` would refuse, with the remedy."""
    backfill_features(engine)  # rows stored before the feature columns existed, if any
    version = data_version(engine)  # before reading: an ingest meanwhile makes it older
    cohorts = load_cohorts(engine, params.experiment_id, params.control, params.periods.until)
    if cohorts.users.empty and not cohorts.multiple_exposures:
        raise NotFoundError(
            f"experiment {params.experiment_id!r} has no exposures{_when(params)}; "
            f"{experiment_hint(engine, params.experiment_id)}"
        )
    check_cohorts(cohorts, params)
    experiment, periods = params.experiment_id, params.periods
    sample = sample_users(cohorts.users["user_id"])
    bins, daily_sums, moments = scan_logs(engine, experiment, lambda: sample, periods)
    if bins.empty:
        raise NotFoundError(
            f"the users exposed in {experiment!r} have no interaction logs in the "
            "analysed window: ingest them first (aftershock ingest interactions FILE)"
        )
    return AnalysisFrames(
        cohorts=cohorts,
        bins=bins,
        daily=daily_means(daily_sums),
        moments=moments,
        data_version=version,
    )


def scan_logs(
    engine: sa.Engine,
    experiment: str,
    sample: Callable[[], list[str]],
    periods: PeriodParams,
    *,
    split: datetime | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The three scans of the logs (``load_user_bins``, ``load_daily_sums``, and
    ``load_within_user`` of the users ``sample()`` gives; with ``split``, each keeping apart
    what came before it). The first two run at once, each on its own connection, while
    ``sample`` runs on this thread, then the third: the database works on them in parallel
    (SQLite's driver lets go of the GIL while a query runs). An in-memory SQLite database
    belongs to one connection, so there they run one after the other on this thread."""
    scans = (
        partial(load_user_bins, engine, experiment, periods, split=split),
        partial(load_daily_sums, engine, experiment, periods, split=split),
    )

    def moments() -> pd.DataFrame:
        return load_within_user(engine, experiment, sample(), periods, split=split)

    if engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:"):
        bins, daily = (scan() for scan in scans)
        return bins, daily, moments()
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(scan) for scan in scans]
        within = moments()
        return futures[0].result(), futures[1].result(), within


def _when(params: AnalysisParams) -> str:
    return "" if params.periods.until is None else f" before {params.periods.until}"


def check_cohorts(cohorts: Cohorts, params: AnalysisParams) -> None:
    """Refuse cohorts no analysis can run on: nobody left, no control user, or an expected
    split of another length than the variations seen."""
    when = _when(params)
    if cohorts.users.empty and cohorts.multiple_exposures:
        raise NotFoundError(
            f"all {cohorts.multiple_exposures:,} exposed users of {params.experiment_id!r}"
            f"{when} saw two variations or more: users exposed to several variations are "
            "excluded, so none is left to analyse (check the experiment's hash attribute and "
            "the exposure events' variation_id)"
        )
    if cohorts.users.empty:
        raise NotFoundError(f"experiment {params.experiment_id!r} has no exposures{when}")
    if cohorts.counts.get(params.control, 0) == 0:
        seen = ", ".join(f"{v} ({n:,} users)" for v, n in cohorts.counts.items() if n)
        raise ConfigError(
            f"the control variation {params.control!r} has no users in the exposures of "
            f"{params.experiment_id!r}{when} (variations seen: {seen}): pass --control with "
            "the control's variation"
        )
    weights = params.weights or tuple(1.0 for _ in cohorts.variations)
    if len(weights) != len(cohorts.variations):
        raise ConfigError(
            f"{len(weights)} expected weights for the {len(cohorts.variations)} variations seen "
            f"in the exposures of {params.experiment_id!r} ({', '.join(cohorts.variations)})"
        )


def analyse_frames(frames: AnalysisFrames, params: AnalysisParams) -> AnalysisResult:
    """The inference half of :func:`run_analysis`: every statistic, from the frames (read with
    SQL, or built by Spark) and the parameters.

    On one BLAS thread: its matrices are a few columns wide, so BLAS's threads cost more to
    wake than they save, and their spinning takes the cores a busy machine (or the database
    scans of the next analysis) needs: on 1,000,000 interactions, 2.1 s of CPU instead of
    3.1."""
    with threadpool_limits(limits=1, user_api="blas"):
        return _analyse_frames(frames, params)


def _analyse_frames(frames: AnalysisFrames, params: AnalysisParams) -> AnalysisResult:
    cohorts, bins, daily = frames.cohorts, frames.bins, frames.daily
    check_cohorts(cohorts, params)
    if bins.empty:
        raise NotFoundError(
            f"the users exposed in {params.experiment_id!r} have no interactions in the "
            f"analysed window{_when(params)}"
        )
    counts = list(cohorts.counts.values())
    srm = srm_test(counts, params.weights or tuple(1.0 for _ in counts))
    periods = roll_up_periods(bins)
    users = _analysed_users(cohorts, periods)
    treatments = cohorts.treatments
    post_sums = periods[periods["post"] == 1].merge(
        cohorts.users[["user_id", "variation"]], on="user_id"
    )
    drift = compute_behavior_drift(
        users, params.control, treatments, daily, post_sums, alpha=params.alpha
    )
    style = compute_style_shift(
        users,
        params.control,
        treatments,
        alpha=params.alpha,
        min_pre=params.did_min_interactions,
        min_post=params.did_min_interactions,
    )
    bucket_means = _bucket_means(roll_up_buckets(bins))
    buckets = compute_bucket_shifts(
        users, bucket_means, params.control, treatments, alpha=params.alpha
    )
    directions = {v: np.array([_did(style, m, v) for m in STYLE], dtype=float) for v in treatments}
    moments = frames.moments
    half_life = None
    if treatments:
        composite = _composite_by_bin(bins, users, params.control, directions[treatments[0]])
        half_life = estimate_half_life(composite, params.control, treatments[0], alpha=params.alpha)
    # The fitted half-life shapes the adaptation curve each user's change is measured along.
    scored = score_adaptation(
        users,
        moments,
        bins,
        params.control,
        treatments,
        params.adaptation,
        half_life_days=None if half_life is None else half_life.half_life_days,
    )
    return AnalysisResult(
        params=params,
        analysed_at=datetime.now(UTC),
        code_version=analytics.code_version(),
        cohorts=cohorts,
        srm=srm,
        behavior_drift=drift,
        style_shift=style,
        bucket_shifts=buckets,
        half_life=half_life,
        users=scored,
        daily=daily,
        data_version=frames.data_version,
    )


def _analysed_users(cohorts: Cohorts, periods: pd.DataFrame) -> pd.DataFrame:
    """Every cohort user, with per-period means (users without interactions have n = 0)."""
    means = user_means(periods) if len(periods) else pd.DataFrame({"user_id": []})
    users = cohorts.users.merge(means, on="user_id", how="left")
    for column in ("n_pre", "n_post"):
        users[column] = users[column].fillna(0).astype("int64") if column in users else 0
    return users


def _bucket_means(buckets: pd.DataFrame) -> pd.DataFrame:
    out = buckets[["user_id", "bucket"]].copy()
    for metric in STYLE_COLUMNS:
        count = buckets[f"{metric}__n"]
        out[f"{metric}__bucket"] = (buckets[f"{metric}__sum"] / count).where(count > 0)
    return out


def _did(rows: list[StyleShiftRow], metric: str, variation: str) -> float:
    """The metric's difference in differences, not the between-arms ``effect``: the
    adaptation direction and the half-life composite score users' pre-to-post change."""
    for row in rows:
        if row.metric == metric and row.variation == variation and row.did is not None:
            return row.did
    return 0.0


def _composite_by_bin(
    bins: pd.DataFrame, users: pd.DataFrame, control: str, delta: np.ndarray
) -> pd.DataFrame:
    """Each user's change per bin along the variation's direction, each metric in units of
    control users' spread of change: :math:`\\sum_m \\delta_m (x_{ub,m} - x_{u,m}^{pre}) /
    \\sigma_m^2`."""
    post = bins[bins["bin"] >= 0]
    pre = users.set_index("user_id")
    controls = users["variation"] == control
    score = np.zeros(len(post))
    for weight, metric in zip(delta, STYLE, strict=True):
        spread = float(
            (users.loc[controls, f"{metric}__post"] - users.loc[controls, f"{metric}__pre"]).var()
        )
        if not np.isfinite(spread) or spread <= 0:
            continue
        mean = (post[f"{metric}__sum"] / post[f"{metric}__n"]).to_numpy()
        baseline = pre.loc[post["user_id"], f"{metric}__pre"].to_numpy()
        score = score + weight * (mean - baseline) / spread
    return pd.DataFrame(
        {
            "user_id": post["user_id"].to_numpy(),
            "variation": pre.loc[post["user_id"], "variation"].to_numpy(),
            "bin": post["bin"].to_numpy(),
            "score": score,
        }
    )


# --- outputs (docs/DATA_CONTRACT.md) --------------------------------------------------------


def analysis_document(result: AnalysisResult) -> AnalysisDocument:
    """``analysis.json`` of a result, with the values JSON gives back (NaN as None, plain
    Python numbers), so a fresh document and a stored one read the same."""
    cohorts = result.cohorts
    treated = result.users[result.users["variation"] != cohorts.control]
    half_life = result.half_life
    document = AnalysisDocument(
        experiment_id=cohorts.experiment_id,
        control=cohorts.control,
        variations=list(cohorts.variations),
        analysed_at=result.analysed_at.isoformat(),
        users=cohorts.counts,
        multiple_exposures=cohorts.multiple_exposures,
        srm=Srm(
            p_value=result.srm.p_value,
            ok=result.srm.ok,
            error=None if result.srm.error is None else str(result.srm.error),
        ),
        behavior_drift=list(result.behavior_drift),
        style_shift=list(result.style_shift),
        adaptation=AdaptationSummary(
            half_life_days=None if half_life is None else half_life.half_life_days,
            labels=label_counts(treated),
            half_life=half_life,
            labels_by_variation={v: label_counts(result.users, v) for v in cohorts.variations},
            methods=method_counts(treated),
            unscored=unscored_counts(treated),
            unscored_by_variation={v: unscored_counts(result.users, v) for v in cohorts.variations},
        ),
        style_shift_by_days=list(result.bucket_shifts),
        variation_names=dict(result.params.variation_names),
        code_version=result.code_version,
    )
    return AnalysisDocument.from_json(document.to_json())


def users_table(result: AnalysisResult) -> pd.DataFrame:
    """``users.csv``: one row per analysed user."""
    users = result.users.copy()
    users["first_exposure"] = users["first_exposure"].map(lambda t: t.isoformat())
    return users[list(USERS_CSV_COLUMNS)]

"""The two analyses a weekly report reads: the data as of the week's start and as of its end.

Each is computed once per version of the data: a stored snapshot of the same moment,
parameters, data and code is reused, and so is the stored full analysis when nothing stored
is as late as the moment (the snapshot would read the same rows). What is left is computed
and kept as a report snapshot (:func:`analytics.store.save_report_snapshot`); when both
moments are, one scan of the logs serves the two (:mod:`analytics.analysis.split_scan`).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from threadpoolctl import threadpool_limits

import analytics
from analytics.analysis.params import AnalysisParams
from analytics.documents import AnalysisDocument
from analytics.store import find_reusable_analysis, save_report_snapshot
from rollout.report.cohorts import CohortCounts, count_cohorts
from rollout.report.model import IsoWeek

if TYPE_CHECKING:
    from analytics.analysis.pipeline import AnalysisResult


@dataclass(frozen=True)
class Snapshot:
    """The data as it stood at one moment: its cohorts' counts and its analysis (None when
    nobody was exposed)."""

    counts: CohortCounts
    document: AnalysisDocument | None


@dataclass(frozen=True)
class _Moment:
    counts: CohortCounts
    params: AnalysisParams  # analysing the data before the moment
    stored: AnalysisDocument | None  # a stored analysis that can stand for it

    @property
    def to_compute(self) -> bool:
        return self.stored is None and not self.counts.empty


def week_snapshots(
    engine: sa.Engine, params: AnalysisParams, week: IsoWeek, version: str, end: datetime
) -> tuple[Snapshot, Snapshot]:
    """The snapshots as of ``week``'s start and as of its end (users first exposed during the
    week counted as new), for the data of ``version``, whose last interaction is at ``end``."""
    moments = (
        _moment(engine, params, week.start, version, end),
        _moment(engine, params, week.end, version, end, new_since=week.start),
    )
    pending = [m.params for m in moments if m.to_compute]
    results = iter(analyse(engine, pending) if pending else [])
    start, finish = (
        Snapshot(m.counts, _kept(engine, m, next(results), version) if m.to_compute else m.stored)
        for m in moments
    )
    return start, finish


def _moment(
    engine: sa.Engine,
    params: AnalysisParams,
    until: datetime,
    version: str,
    end: datetime,
    *,
    new_since: datetime | None = None,
) -> _Moment:
    counts = count_cohorts(engine, params.experiment_id, params.control, until, new_since)
    weights = params.weights
    if weights is not None and len(weights) != len(counts.variations):
        weights = None  # a variation had no users yet: check the split of those seen
    moment = replace(params, weights=weights, periods=replace(params.periods, until=until))
    if counts.empty:
        return _Moment(counts, moment, None)
    candidates = [moment]
    if until > end:  # nothing stored is as late: the snapshot would read all the data
        candidates.append(replace(moment, periods=replace(moment.periods, until=None)))
    for candidate in candidates:
        document = find_reusable_analysis(
            engine, params.experiment_id, candidate.to_json(), version, analytics.code_version()
        )
        if document is not None:
            return _Moment(counts, moment, document)
    return _Moment(counts, moment, None)


def _kept(
    engine: sa.Engine, moment: _Moment, result: AnalysisResult, version: str
) -> AnalysisDocument:
    document = result.document()
    save_report_snapshot(engine, moment.params.to_json(), document, result.data_version or version)
    return document


def analyse(engine: sa.Engine, moments: Sequence[AnalysisParams]) -> list[AnalysisResult]:
    """The analyses of ``moments`` (at most two, the earlier first), one scan of the logs
    serving both when it can. The analysis pipeline is imported when a report first needs it
    (its statistics libraries take a second or two to import, which a report built from
    stored snapshots never pays)."""
    from analytics.analysis.pipeline import analyse_frames, run_analysis
    from analytics.analysis.split_scan import load_split_frames

    if len(moments) == 2:
        frames = load_split_frames(engine, *moments)
        if frames is not None:
            # The two inferences at once, on two threads (their numpy and pandas kernels let
            # go of the GIL): 0.8 s less on 1M interactions. BLAS is held to one thread
            # around both, as analyse_frames holds it, so that neither restores it under
            # the other.
            with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(2) as pool:
                return list(pool.map(analyse_frames, frames, moments))
    return [run_analysis(engine, p) for p in moments]

"""One scan of the logs for two moments (the weekly report's week start and end) gives what two
separate analyses give: the same frames, the same results."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from analytics.analysis.params import AnalysisParams
from analytics.analysis.pipeline import (
    AnalysisFrames,
    analyse_frames,
    load_analysis_frames,
    run_analysis,
)
from analytics.analysis.split_scan import load_split_frames
from analytics.analysis.user_periods import PeriodParams
from analytics.demo import DemoConfig
from analytics.store import load_exposure_span
from tests.demo_data import EXPERIMENT, load_demo
from tests.equivalence import assert_results_match

FLOATS = 1e-12  # sums added in another order


def at(params: AnalysisParams, until: datetime) -> AnalysisParams:
    return replace(params, periods=replace(params.periods, until=until))


def assert_frames_equal(ours: AnalysisFrames, theirs: AnalysisFrames) -> None:
    pd.testing.assert_frame_equal(ours.cohorts.users, theirs.cohorts.users)
    assert ours.cohorts.multiple_exposures == theirs.cohorts.multiple_exposures
    for name, keys in (("bins", ["user_id", "bin"]), ("moments", ["user_id", "post"])):
        mine, sql = (
            getattr(f, name).sort_values(keys).reset_index(drop=True) for f in (ours, theirs)
        )
        pd.testing.assert_frame_equal(mine, sql, check_exact=False, rtol=FLOATS, obj=name)
    pd.testing.assert_frame_equal(ours.daily, theirs.daily, check_exact=False, rtol=FLOATS)


@pytest.fixture
def demo(engine: sa.Engine, tmp_path: Path) -> tuple[AnalysisParams, datetime]:
    """A demo where 5% of users see a second variation later, and a Monday in its middle."""
    load_demo(engine, tmp_path, DemoConfig(n_users=500, seed=13, multiple_exposure_share=0.05))
    span = load_exposure_span(engine, EXPERIMENT)
    assert span is not None
    middle = span[0] + (span[1] - span[0]) / 2
    monday = (middle - timedelta(days=middle.weekday())).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    return AnalysisParams(EXPERIMENT, periods=PeriodParams(pre_days=14.0)), monday


def test_one_scan_gives_both_moments_frames_and_results(
    engine: sa.Engine, demo: tuple[AnalysisParams, datetime]
) -> None:
    params, monday = demo
    earlier, later = at(params, monday), at(params, monday + timedelta(days=7))
    split = load_split_frames(engine, earlier, later)
    assert split is not None
    before, after = split
    # The case that makes one scan subtle is there: users in the first cohort only (they saw
    # a second variation during the week), and users first exposed during the week.
    first, second = (set(f.cohorts.users["user_id"]) for f in split)
    assert first - second and second - first

    for ours, moment in ((before, earlier), (after, later)):
        assert_frames_equal(ours, load_analysis_frames(engine, moment))
        assert_results_match(analyse_frames(ours, moment), run_analysis(engine, moment))

    # The later moment may be all the data.
    split = load_split_frames(engine, earlier, params)
    assert split is not None
    assert_frames_equal(split[1], load_analysis_frames(engine, params))

    # A moment the analysis would refuse is left to it: nobody was exposed before the first
    # exposure, and the separate analysis says so, not the scan.
    span = load_exposure_span(engine, EXPERIMENT)
    assert span is not None
    assert load_split_frames(engine, at(params, span[0]), later) is None
    with pytest.raises(ValueError, match="before"):
        load_split_frames(engine, earlier, earlier)

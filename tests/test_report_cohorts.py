"""The report's cohort counts, read as one aggregate query, equal what loading the cohorts
(``analytics.analysis.cohorts.load_cohorts``) and counting them in pandas gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.analysis.cohorts import load_cohorts
from analytics.db import ensure_schema, get_engine
from analytics.models import Exposure
from rollout.report.cohorts import CohortCounts, count_cohorts
from tests.databases import DemoDatabases
from tests.demo_data import WEEKLY_REPORT_DEMO
from tests.reference.make_weekly_report import EXPERIMENT

T0 = datetime(2026, 10, 19, tzinfo=UTC)


def counted_in_pandas(
    engine: sa.Engine, experiment_id: str, control: str, until: datetime, since: datetime
) -> CohortCounts:
    """The counts as the report computed them before: from the loaded cohorts."""
    cohorts = load_cohorts(engine, experiment_id, control, until)
    users = cohorts.users
    fresh = users[users["first_exposure"] >= pd.Timestamp(since)]["variation"].value_counts()
    return CohortCounts(
        control=control,
        variations=tuple(cohorts.variations),
        users=cohorts.counts,
        new_users={v: int(fresh.get(v, 0)) for v in cohorts.variations},
        multiple_exposures=cohorts.multiple_exposures,
    )


def test_the_demo_counts_equal_the_loaded_cohorts(
    engine: sa.Engine, demo_databases: DemoDatabases
) -> None:
    demo_databases.restore(WEEKLY_REPORT_DEMO, engine)
    for days in (-1, 0, 3, 10, 20, 40):  # before the first exposure, on it, and after
        until = T0 + timedelta(days=days)
        since = until - timedelta(days=7)
        counts = count_cohorts(engine, EXPERIMENT, "0", until, since)
        assert counts == counted_in_pandas(engine, EXPERIMENT, "0", until, since), days
    assert count_cohorts(engine, EXPERIMENT, "0", T0 - timedelta(days=1)).empty
    late = count_cohorts(engine, EXPERIMENT, "0", T0 + timedelta(days=40))
    assert not late.empty and late.new_users == late.users  # no `since`: everyone is new


# (user, hours after T0, variation): a few users, variations and moments, so that users seen
# in several variations, a variation seen only by them, and a control without users occur.
EXPOSURES = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2", "u3", "u4", "u5", "u6"]),
        st.integers(0, 9),
        st.sampled_from(["0", "1", "2"]),
    ),
    max_size=14,
    unique=True,
)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> sa.Engine:
    engine = get_engine(f"sqlite:///{tmp_path_factory.mktemp('cohorts') / 'cohorts.db'}")
    ensure_schema(engine)
    return engine


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=EXPOSURES,
    until=st.integers(0, 10),
    since=st.integers(0, 10),
    control=st.sampled_from(["0", "1"]),
)
def test_counts_equal_the_loaded_cohorts_for_any_exposures(
    scratch: sa.Engine, rows: list[tuple[str, int, str]], until: int, since: int, control: str
) -> None:
    with scratch.begin() as connection:
        connection.execute(sa.delete(Exposure))
        if rows:
            connection.execute(
                sa.insert(Exposure),
                [
                    {
                        "experiment_id": "exp",
                        "user_id": user,
                        "timestamp": T0 + timedelta(hours=hours),
                        "variation_id": variation,
                    }
                    for user, hours, variation in rows
                ],
            )
    moment, start = T0 + timedelta(hours=until), T0 + timedelta(hours=since)
    assert count_cohorts(scratch, "exp", control, moment, start) == counted_in_pandas(
        scratch, "exp", control, moment, start
    )

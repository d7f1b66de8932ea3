"""Cohorts: who saw which variation of an experiment, and when first (GrowthBook convention).

A user's cohort is the variation of their first exposure, and their first exposure splits
their interactions into a pre-period (before) and a post-period (from it on). A user seen in
more than one variation is a *multiple exposure*: excluded from the analysis and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import sqlalchemy as sa

from analytics.db import rows_frame
from analytics.models import Exposure


@dataclass(frozen=True)
class Cohorts:
    """The analysable users of one experiment.

    ``users`` has one row per user: ``user_id``, ``variation``, ``first_exposure`` (UTC).
    ``variations`` lists every variation seen, the control first.
    """

    experiment_id: str
    control: str
    variations: list[str]
    users: pd.DataFrame
    multiple_exposures: int

    @property
    def counts(self) -> dict[str, int]:
        """Users per variation, in ``variations`` order (zero where a variation has none)."""
        counted = self.users["variation"].value_counts()
        return {v: int(counted.get(v, 0)) for v in self.variations}

    @property
    def treatments(self) -> list[str]:
        return [v for v in self.variations if v != self.control]


def cohort_query(
    experiment_id: str, until: datetime | None = None
) -> sa.Select[tuple[str, object, str, int]]:
    """One row per exposed user: first exposure, the variation, how many variations seen
    (among exposures before ``until``, when given)."""
    exposures = Exposure.__table__  # type: ignore[attr-defined]
    query = (
        sa.select(
            exposures.c.user_id,
            sa.func.min(exposures.c.timestamp).label("first_exposure"),
            sa.func.min(exposures.c.variation_id).label("variation"),
            sa.func.count(sa.distinct(exposures.c.variation_id)).label("n_variations"),
        )
        .where(exposures.c.experiment_id == experiment_id)
        .group_by(exposures.c.user_id)
    )
    return query if until is None else query.where(exposures.c.timestamp < until)


def load_cohorts(
    engine: sa.Engine, experiment_id: str, control: str = "0", until: datetime | None = None
) -> Cohorts:
    """Read the cohorts of ``experiment_id`` from the exposures table (before ``until``)."""
    with engine.connect() as connection:
        rows = connection.execute(cohort_query(experiment_id, until)).all()
    frame = rows_frame(rows, ["user_id", "first_exposure", "variation", "n_variations"])
    single = frame[frame["n_variations"] == 1]
    users = single[["user_id", "variation", "first_exposure"]].reset_index(drop=True)
    users["first_exposure"] = pd.to_datetime(users["first_exposure"], utc=True)
    seen = sorted(set(frame["variation"]) | {control}, key=lambda v: (v != control, v))
    if frame.empty:
        seen = [control]
    return Cohorts(
        experiment_id=experiment_id,
        control=control,
        variations=seen,
        users=users,
        multiple_exposures=int((frame["n_variations"] > 1).sum()),
    )

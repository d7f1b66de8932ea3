"""How many users each variation had at a moment: the cohorts' counts, read as one aggregate
query, for the figures of a report that needs the counts and not the users."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from analytics.analysis.cohorts import cohort_query


@dataclass(frozen=True)
class CohortCounts:
    """The counts of :func:`analytics.analysis.cohorts.load_cohorts` as of a moment, without
    its frame of users: the variations seen (the control first), the users of each (users
    seen in several variations are excluded and counted apart) and, of those, the ones first
    exposed from a given moment on (``new_users``)."""

    control: str
    variations: tuple[str, ...]
    users: dict[str, int]
    new_users: dict[str, int]
    multiple_exposures: int

    @property
    def empty(self) -> bool:
        """Nobody to analyse (``load_cohorts(...).users.empty``)."""
        return not any(self.users.values())


def count_cohorts(
    engine: sa.Engine,
    experiment_id: str,
    control: str,
    until: datetime,
    since: datetime | None = None,
) -> CohortCounts:
    """The cohorts of ``experiment_id`` among exposures before ``until``, counted in the
    database (:func:`~analytics.analysis.cohorts.cohort_query` grouped by variation), as
    no user is sent back: 0.1 s against 0.6 to 0.9 s to load them (51,000 users).
    ``since``: the users first exposed from then on are new (all of them, when not given)."""
    users = cohort_query(experiment_id, until).subquery()
    single = users.c.n_variations == 1
    fresh = single if since is None else sa.and_(single, users.c.first_exposure >= since)
    query = sa.select(
        users.c.variation,
        _count(single),
        _count(fresh),
        _count(users.c.n_variations > 1),
    ).group_by(users.c.variation)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    # As load_cohorts orders them: the control first, then by key (a variation seen only by
    # users excluded for seeing several still counts as seen).
    variations = sorted({str(row[0]) for row in rows} | {control}, key=lambda v: (v != control, v))
    counted = {str(row[0]): (int(row[1]), int(row[2])) for row in rows}
    return CohortCounts(
        control=control,
        variations=tuple(variations),
        users={v: counted.get(v, (0, 0))[0] for v in variations},
        new_users={v: counted.get(v, (0, 0))[1] for v in variations},
        multiple_exposures=sum(int(row[3]) for row in rows),
    )


def _count(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)

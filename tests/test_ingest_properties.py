"""Property: any interleaving of (re-)ingests, killed or not, keeps exactly one row per event."""

from __future__ import annotations

import tempfile
from pathlib import Path

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import SQLModel

from analytics.ingest.retention import TextRetention
from analytics.ingest.runner import ingest_file
from analytics.models import IngestKind
from tests.factories import INTERACTION_COLUMNS, interaction, write_rows


class Killed(BaseException):
    pass


def clear(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        for table in reversed(SQLModel.metadata.sorted_tables):
            connection.execute(table.delete())


plans = (
    st.integers(min_value=1, max_value=30)
    .flatmap(
        lambda n_events: st.tuples(
            st.just(n_events),
            # Each file: a list of event indices, repeats allowed (in-file duplicates).
            st.lists(
                st.lists(st.integers(0, n_events - 1), min_size=1, max_size=12),
                min_size=1,
                max_size=4,
            ),
            st.sampled_from(["csv", "jsonl", "parquet"]),
        )
    )
    .flatmap(
        lambda plan: st.tuples(
            st.just(plan),
            # The order of ingests (files may repeat), each maybe killed after its first chunk.
            st.lists(
                st.tuples(st.integers(0, len(plan[1]) - 1), st.booleans()), min_size=1, max_size=6
            ),
        )
    )
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan_and_order=plans)
def test_any_interleaving_keeps_one_row_per_event(engine: sa.Engine, plan_and_order) -> None:  # type: ignore[no-untyped-def]
    (_, files, fmt), order = plan_and_order
    clear(engine)
    with tempfile.TemporaryDirectory() as scratch:
        paths = [
            write_rows(
                Path(scratch) / f"f{i}.{fmt}", [interaction(e) for e in events], INTERACTION_COLUMNS
            )
            for i, events in enumerate(files)
        ]

        def run(index: int, kill_it: bool) -> None:
            def kill(rows_done: int) -> None:
                raise Killed

            ingest_file(
                paths[index],
                IngestKind.interactions,
                engine=engine,
                rejects_dir=Path(scratch),
                chunk_rows=2,
                after_chunk=kill if kill_it else None,
                retention=TextRetention("all"),  # the text is compared below
            )

        killed: set[int] = set()
        for index, kill_it in order:
            try:
                run(index, kill_it)
                killed.discard(index)
            except Killed:
                killed.add(index)
        for index in sorted(killed):  # an operator re-runs what was killed
            run(index, False)

    expected = {f"evt-{e:06d}" for i in {i for i, _ in order} for e in files[i]}
    with engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT event_id, prompt FROM interactions")).all()
        unfinished = connection.execute(
            sa.text("SELECT count(*) FROM ingest_runs WHERE status = 'running'")
        ).scalar_one()
    assert sorted(e for e, _ in stored) == sorted(expected)
    assert all(prompt == interaction(int(e[4:]))["prompt"] for e, prompt in stored)
    assert unfinished == 0

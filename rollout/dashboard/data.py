"""Every dashboard loader, cached: results come from analytics.store, as for every surface."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import streamlit as st
from sqlmodel import Session, col, select

from analytics.db import ensure_schema, get_engine
from analytics.models import AnalysisRun
from analytics.store import load_latest_analysis


@st.cache_resource
def engine() -> sa.Engine:
    database = get_engine()
    ensure_schema(database)
    return database


@st.cache_data(ttl=60)
def analysed_experiments() -> list[str]:
    """Experiments with at least one stored analysis, most recent first."""
    with Session(engine()) as session:
        runs = session.exec(select(AnalysisRun.experiment_id).order_by(col(AnalysisRun.id).desc()))
        return list(dict.fromkeys(runs.all()))


@st.cache_data(ttl=60)
def latest_analysis(experiment_id: str) -> dict[str, Any] | None:
    """The stored analysis.json document of the experiment's latest run."""
    run = load_latest_analysis(engine(), experiment_id)
    return None if run is None else {"id": run.id, **run.results}

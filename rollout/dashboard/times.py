"""Instants as the reader reads them: in their browser's time zone, to the minute."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import streamlit as st
from streamlit.elements.lib.column_types import ColumnConfig


def reader_zone() -> str:
    """The reader's IANA time zone as the browser reports it (UTC when it does not)."""
    zone = st.context.timezone
    if not zone:
        return "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return "UTC"
    return zone


def when(value: object) -> str:
    """``2026-12-08 04:31 CET``: an instant in the reader's zone, to the minute."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "-"
    return f"{instant(value).tz_convert(reader_zone()):%Y-%m-%d %H:%M %Z}"


def column(label: str) -> ColumnConfig:
    """A table column of instants shown like :func:`when` (the zone named in its header)."""
    zone = reader_zone()
    return st.column_config.DatetimeColumn(
        f"{label} ({zone})", format="YYYY-MM-DD HH:mm", timezone=zone
    )


def instant(value: object) -> pd.Timestamp:
    """A table cell for :func:`column`: the instant as a UTC timestamp, NaT (shown empty) for
    none."""
    if value is None:
        return pd.NaT  # type: ignore[return-value]
    moment = pd.Timestamp(value)  # type: ignore[arg-type]
    return moment.tz_convert("UTC") if moment.tzinfo else moment.tz_localize("UTC")

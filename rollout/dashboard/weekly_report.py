"""Weekly report: one ISO week of an experiment in plain words and tables (rollout.report),
the latest week shown at once, downloaded as HTML, Markdown or CSV."""

import functools
import importlib

import streamlit as st

from rollout.dashboard import data, ui

FORMATS = {"html": "HTML", "md": "Markdown", "csv": "CSV (zip)"}
EXTENSIONS = {"html": "html", "md": "md", "csv": "zip"}

st.title("Weekly report")
try:
    media_types = importlib.import_module("rollout.report.model").MEDIA_TYPES
except ImportError as error:
    st.info(f"The weekly report is not available in this installation: {error}.")
    st.stop()


def file_content(experiment: str, week: str, fmt: str) -> bytes:
    """The report of ``week`` as a file in ``fmt``: html, md, or csv (a zip of CSV files)."""
    content, _ = data.weekly_report_file(experiment, week, fmt)
    return content


experiment, _ = ui.analysed_experiment()
span = data.exposure_span(experiment)
if span is None:
    st.info(f"No exposures of `{experiment}` are stored: `aftershock ingest exposures FILE`.")
    st.stop()
weeks = data.iso_weeks(span)
week = st.selectbox("ISO week (UTC, Monday to Sunday)", weeks, key="report_week")
st.caption(
    "The report analyses the data as it stood at the end of the week (and at its start, to "
    "show what changed), with the parameters of the latest stored analysis. Each analysis is "
    "kept until new data arrives, so only the first report of a week takes a few seconds."
)
with st.spinner(f"Building the report of {week}..."):
    data.weekly_report(experiment, week)

markdown = data.weekly_report_markdown(experiment, week)
downloads = st.columns(len(FORMATS))
for column, (fmt, label) in zip(downloads, FORMATS.items(), strict=True):
    column.download_button(
        f"Download {label}",
        # Rendered when clicked, not before the page shows: the HTML's charts alone take
        # about a second.
        data=functools.partial(file_content, experiment, week, fmt),
        file_name=f"{experiment}-{week}.{EXTENSIONS[fmt]}",
        mime=media_types[fmt].split(";")[0],
        on_click="ignore",
        key=f"download_{fmt}",
    )
with st.container(border=True):
    st.markdown(markdown)

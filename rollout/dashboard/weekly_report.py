"""Weekly report: one ISO week of an experiment in plain words and tables (rollout.report),
the latest week shown at once, downloaded as HTML, Markdown or CSV."""

import importlib

import streamlit as st

from rollout.dashboard import data, ui

FORMATS = {"html": "HTML", "md": "Markdown", "csv": "CSV (zip)"}
EXTENSIONS = {"html": "html", "md": "md", "csv": "zip"}

st.title("Weekly report")
try:
    importlib.import_module("rollout.report")
except ImportError as error:
    st.info(f"The weekly report is not available in this installation: {error}.")
    st.stop()

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
    content, media_type = data.weekly_report_file(experiment, week, fmt)
    column.download_button(
        f"Download {label}",
        data=content,
        file_name=f"{experiment}-{week}.{EXTENSIONS[fmt]}",
        mime=media_type.split(";")[0],
        on_click="ignore",
        key=f"download_{fmt}",
    )
with st.container(border=True):
    st.markdown(markdown)

"""Overview: what happened in an experiment, in the numbers of its latest stored analysis."""

import pandas as pd
import streamlit as st

from rollout.dashboard import data

st.title("Aftershock")
experiments = data.analysed_experiments()
if not experiments:
    st.info(
        "No analysis yet. Load data and analyse it:\n\n"
        "`aftershock ingest exposures FILE` · `aftershock ingest interactions FILE` · "
        "`aftershock analyze --experiment ID`"
    )
    st.stop()

experiment = st.selectbox("Experiment", experiments)
document = data.latest_analysis(experiment)
if document is None:
    st.stop()

drift = pd.DataFrame(document["behavior_drift"])
style = pd.DataFrame(document["style_shift"])
adaptation = document["adaptation"]
labels = adaptation["labels"]
scored = sum(labels[k] for k in ("adapted", "partial", "unadapted"))
half_life = adaptation["half_life_days"]

left, middle, right, last = st.columns(4)
left.metric("Behaviour drift", f"{int(drift['significant'].sum())} metrics")
middle.metric("Treated users adapted", f"{labels['adapted'] / scored:.0%}" if scored else "n/a")
right.metric("Adaptation half-life", "n/a" if half_life is None else f"{half_life:.1f} days")
last.metric("Sample ratio", "ok" if document["srm"]["ok"] else "MISMATCH")

st.caption(
    f"Analysis {document['id']} of {document['analysed_at']}: "
    + ", ".join(f"variation {v}: {n:,} users" for v, n in document["users"].items())
    + f"; {document['multiple_exposures']} multiple exposures excluded."
)
columns = ["metric", "variation", "effect", "ci_low", "ci_high", "q_value", "significant"]
st.subheader("Behaviour drift")
st.dataframe(drift[columns], hide_index=True)
st.subheader("Prompt-style shift (difference in differences)")
st.dataframe(
    style[["metric", "variation", "did", "ci_low", "ci_high", "q_value", "significant"]],
    hide_index=True,
)
st.subheader("Adaptation of treated users")
st.dataframe(pd.DataFrame([labels]), hide_index=True)

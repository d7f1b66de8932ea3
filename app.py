"""Aftershock's dashboard: `streamlit run app.py`. Builds the navigation, nothing else."""

import streamlit as st

pages = [st.Page("rollout/dashboard/overview.py", title="Overview", default=True)]
st.navigation(pages).run()

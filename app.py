"""Aftershock's dashboard: `streamlit run app.py`. Builds the navigation, nothing else (and
shows an Aftershock error once, as the CLI and the API do, instead of a traceback)."""

import streamlit as st

from analytics.errors import AftershockError

PAGES = "rollout/dashboard"
pages = [
    st.Page(f"{PAGES}/overview.py", title="Overview", icon=":material/home:", default=True),
    st.Page(
        f"{PAGES}/drift.py", title="Behaviour drift", icon=":material/show_chart:", url_path="drift"
    ),
    st.Page(
        f"{PAGES}/style.py",
        title="Prompt style and adaptation",
        icon=":material/edit_note:",
        url_path="style",
    ),
    st.Page(
        f"{PAGES}/planner.py",
        title="Rollback planner",
        icon=":material/alt_route:",
        url_path="planner",
    ),
    st.Page(f"{PAGES}/ramp.py", title="Ramp status", icon=":material/traffic:", url_path="ramp"),
    st.Page(
        f"{PAGES}/weekly_report.py",
        title="Weekly report",
        icon=":material/summarize:",
        url_path="report",
    ),
]
st.set_page_config(page_title="Aftershock", page_icon=":material/earthquake:", layout="wide")
try:
    st.navigation(pages).run()
except AftershockError as error:
    st.error(str(error))

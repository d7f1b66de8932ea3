"""Streamlit pages (thin) and the one module that loads their data (data.py)."""

"""Aftershock analytics: what happened, from exposures and interaction logs."""

__version__ = "0.1.0"

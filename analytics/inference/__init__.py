"""Inference: the statistics behind every comparison of a treated and a control cohort.

Pure functions over sufficient statistics and numpy arrays; results are frozen dataclasses
from :mod:`analytics.inference.results`. :mod:`analytics.inference.stats` gathers the
public procedures in one place.
"""

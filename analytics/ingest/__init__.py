"""Ingest of GrowthBook exposures and interaction logs (see docs/DATA_CONTRACT.md)."""

from analytics.ingest.runner import IngestSummary, Progress, ingest_file

__all__ = ["IngestSummary", "Progress", "ingest_file"]

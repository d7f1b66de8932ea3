"""Ingest of GrowthBook exposures and interaction logs (see docs/DATA_CONTRACT.md).

contract -> readers -> validate -> writers, wired by ``analytics.ingest.runner.ingest_file``.
Nothing is imported here (the readers need pyarrow and pandas), so that importing a light
submodule stays light.
"""

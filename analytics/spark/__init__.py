"""The analysis on Apache Spark, for interaction logs that live in a lake.

The embedded path ingests every interaction into Aftershock's database and lets SQL reduce
them to per-user sums. Here Spark reads the logs where they are (Parquet, JSON Lines, CSV, a
table), checks each row with ingest's own validation and computes its features with ingest's
own feature code (:mod:`analytics.spark.rows`, on Arrow batches), then reduces them to the same
per-user, per-bin sufficient statistics the SQL loaders return (:mod:`analytics.spark.statistics`).
Only those reach the driver (they grow with users, not interactions), and the inference is the
embedded path's, unchanged (:func:`analytics.analysis.pipeline.analyse_frames`).

``session`` starts Spark, ``sources`` resolves and reads a source, ``rows`` validates rows and
computes features, ``statistics`` reduces them, ``pipeline`` wires it all. PySpark is an
optional dependency (``aftershock[spark]``): nothing outside this package imports it.
"""

"""Starting Spark: a local session (``local[*]``), a cluster master, or Spark Connect.

Every session runs in UTC (``spark.sql.session.timeZone``): timestamps cross into Arrow as UTC
instants, as ingest reads them. A local session's Python workers run this interpreter, so they
import the same Aftershock and pyarrow as the driver; on a cluster, the executors need
Aftershock installed in their Python environment (README, "Spark").
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from analytics.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# Spark's own logging at ERROR on stderr: its start-up WARN lines say nothing a user can act on.
_LOG4J2 = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.gateway.name = org.apache.spark.api.python.PythonGatewayServer
logger.gateway.level = error
"""


@dataclass(frozen=True)
class SparkTarget:
    """Where to run: a master URL (``local[*]``, ``spark://...``, ``yarn``, ``k8s://...``; None:
    spark-submit's when run by it, else ``local[*]``) or a Spark Connect URL
    (``sc://host:15002``), with extra Spark settings."""

    master: str | None = None
    remote: str | None = None
    conf: tuple[tuple[str, str], ...] = ()
    progress: bool = False  # Spark's console progress bar

    @property
    def resolved_master(self) -> str | None:
        """The master to set: the one given, else none under spark-submit (its ``--master``
        holds), else ``local[*]``."""
        if self.master is not None or self.remote is not None:
            return self.master
        return None if under_spark_submit() else "local[*]"

    @property
    def is_local(self) -> bool:
        """This process starts Spark on this machine: a local master, or Spark Connect's
        ``local`` (a server started in this process, for tests)."""
        return (self.remote or self.resolved_master or "").startswith("local")

    def describe(self) -> str:
        return self.remote or self.resolved_master or "spark-submit's master"


def under_spark_submit() -> bool:
    """Run by ``spark-submit``: it started the JVM and passes its gateway to this process."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def parse_conf(items: list[str]) -> tuple[tuple[str, str], ...]:
    """``KEY=VALUE`` settings (``--conf``); refuses (:class:`ConfigError`) anything else."""
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--conf {item!r}: expected KEY=VALUE, e.g. spark.driver.memory=4g")
        pairs.append((key.strip(), value))
    return tuple(pairs)


@contextmanager
def quiet_pandas_warning() -> Iterator[None]:
    """Without PySpark's warning that it does not yet fully support pandas 3: Aftershock hands
    it no pandas object (batches cross as Arrow, results come back as Arrow), and the warning
    would be a test failure under ``-W error``."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
        )
        yield


def build_session(target: SparkTarget, app_name: str = "aftershock") -> SparkSession:
    """A Spark session for ``target`` (an active one in this process is reused, as Spark's
    ``getOrCreate`` does); a missing PySpark or Java is one :class:`ConfigError`."""
    try:
        from pyspark.errors import PySparkException
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise ConfigError(
            "PySpark is not installed: install Aftershock with the spark extra "
            "(pip install 'aftershock[spark]')"
        ) from exc
    # A Spark Connect session takes runtime settings only; a new local JVM takes them all.
    conf: dict[str, str] = {"spark.sql.session.timeZone": "UTC"}
    builder = SparkSession.builder.appName(app_name)
    if target.remote is not None:
        builder = builder.remote(target.remote)
    elif not under_spark_submit():  # else spark-submit has set the JVM up already
        builder = builder.master(target.resolved_master or "local[*]")
        conf["spark.ui.showConsoleProgress"] = "true" if target.progress else "false"
        # What is collected grows with users (about 400 bytes per user and bin of days): past
        # a few million users it passes Spark's default 1 GiB cap on collected results.
        conf["spark.driver.maxResultSize"] = "0"
    elif target.master is not None:
        builder = builder.master(target.master)
    if target.is_local and not under_spark_submit():
        if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
            raise ConfigError(
                "Spark needs a Java runtime (17 or later) and none was found: install one "
                "(Debian: apt-get install default-jre-headless) or set JAVA_HOME"
            )
        # The Python workers of a local session are this interpreter (Spark's default is
        # whatever `python3` is on PATH, which may lack Aftershock and pyarrow).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        if target.remote is None:
            conf["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile={_log_config()}"
    conf.update(dict(target.conf))
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        with quiet_pandas_warning():
            return builder.getOrCreate()
    except PySparkException as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"Spark could not start on {target.describe()}: {first}") from exc


def _log_config() -> Path:
    path = Path(tempfile.gettempdir()) / "aftershock-spark-log4j2.properties"
    if not path.exists() or path.read_text() != _LOG4J2:
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as scratch:
            scratch.write(_LOG4J2)
        os.replace(scratch.name, path)  # whole or not at all, for concurrent starts
    return path

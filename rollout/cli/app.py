"""The ``aftershock`` command line: the Typer app, where every command and group is registered,
and ``main``.

The commands live in one module per group (``ingest``, ``analysis``, ``plans``, ``api``,
``report``, ``demo``, ``db``, ``config``) and import the heavy libraries they need (scipy,
pandas, FastAPI, the database layer) when they run, so that ``aftershock --help`` and
``aftershock status`` start in well under a second (``tests/test_cli_startup.py``).
"""

from __future__ import annotations

import sys

import typer

from analytics.errors import AftershockError
from rollout.cli import analysis, api, config, db, demo, ingest, plans, report, spark
from rollout.cli.console import err, unexpected

app = typer.Typer(
    help="Aftershock: adaptation-aware rollbacks of LLM features.", no_args_is_help=True
)

# Commands, then groups, each in the order --help lists them.
app.command("guardrails")(plans.guardrails)
app.command("serve")(api.serve)
app.command("report")(report.report)
app.command("analyze")(analysis.analyze)
app.command("status")(analysis.status)
app.command("config")(config.show_config)

plan_app = typer.Typer(
    help="Plan a rollback (options below), or re-plan one (replan).",
    invoke_without_command=True,
)
plan_app.callback()(plans.plan)
plan_app.command("replan")(plans.replan)
app.add_typer(plan_app, name="plan")

ingest_app = typer.Typer(
    help="Load GrowthBook exposures and interaction logs.", no_args_is_help=True
)
ingest_app.command("exposures")(ingest.exposures)
ingest_app.command("interactions")(ingest.interactions)
app.add_typer(ingest_app, name="ingest")

demo_app = typer.Typer(help="The seeded demo data set.", no_args_is_help=True)
demo_app.command("generate")(demo.generate)
app.add_typer(demo_app, name="demo")

db_app = typer.Typer(help="Database schema and stored rows.", no_args_is_help=True)
db_app.command("upgrade")(db.upgrade)
db_app.command("current")(db.current)
db_app.command("check")(db.check)
app.add_typer(db_app, name="db")

growthbook_app = typer.Typer(help="Read from and write to GrowthBook.", no_args_is_help=True)
growthbook_app.command("pull")(plans.growthbook_pull)
growthbook_app.command("apply")(plans.growthbook_apply)
app.add_typer(growthbook_app, name="growthbook")

tokens_app = typer.Typer(help="API tokens of the flag-ramp API.", no_args_is_help=True)
tokens_app.command("create")(api.tokens_create)
tokens_app.command("list")(api.tokens_list)
tokens_app.command("revoke")(api.tokens_revoke)
app.add_typer(tokens_app, name="tokens")

spark_app = typer.Typer(
    help="The analysis on Apache Spark, over logs in a lake (needs aftershock[spark]).",
    no_args_is_help=True,
)
spark_app.command("analyze")(spark.analyze)
app.add_typer(spark_app, name="spark")


def main() -> None:
    """Entry point: every error becomes one line on stderr and exit code 1 (an unexpected one
    also leaves its traceback in a file, :func:`rollout.cli.console.unexpected`)."""
    try:
        app()
    except AftershockError as exc:
        err.print(f"error: {exc}", style="red", highlight=False, soft_wrap=True)
        sys.exit(1)
    except Exception as exc:  # a bug: one line here, the traceback in a file
        err.print(f"error: {unexpected(exc)}", style="red", highlight=False, soft_wrap=True)
        sys.exit(1)

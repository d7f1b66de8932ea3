"""``aftershock plan``, ``aftershock growthbook pull|apply`` and ``aftershock guardrails``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from rollout.cli.console import err, fail, out, reports_errors
from rollout.documents import PlanDocument
from rollout.policy import POLICY_LIMITS, STRATEGIES, policy_default

if TYPE_CHECKING:
    from analytics.settings import Settings
    from rollout.guardrails import Guardrail


def _guardrails(specs: list[str] | None) -> tuple[Guardrail, ...]:
    from rollout.guardrails import Guardrail
    from rollout.planner import DEFAULT_GUARDRAILS

    if not specs:
        return DEFAULT_GUARDRAILS
    guardrails = []
    for spec in specs:
        metric, _, value = spec.partition("=")
        try:
            guardrails.append(Guardrail(metric.strip(), float(value)))
        except ValueError as exc:
            raise typer.BadParameter(
                f"{spec!r}: expected METRIC=MAX_REGRESSION, e.g. complaint_rate=0.02 ({exc})",
                param_hint="--guardrail",
            ) from exc
    return tuple(guardrails)


def _parse_value(text: str | None) -> Any:
    """A flag value as given: JSON when it parses (true, 3, {...}), else the plain string."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _policy_option(name: str) -> Any:
    """A ``--name`` option bounded as :data:`rollout.policy.POLICY_LIMITS` says."""
    limit = POLICY_LIMITS[name]
    return typer.Option(min=limit.low, max=limit.high, help=limit.help)


@reports_errors
def plan(
    experiment: Annotated[str, typer.Option("--experiment", help="GrowthBook experiment key.")],
    feature: Annotated[str, typer.Option("--feature", help="The GrowthBook feature to roll back.")],
    rollback_value: Annotated[
        str, typer.Option(help="The value users are rolled back to (the control's).")
    ] = "control",
    current_value: Annotated[
        str, typer.Option(help="The value served now (the treatment's).")
    ] = "treatment",
    bridge_value: Annotated[
        str | None,
        typer.Option(help="A value to move adapted users to first (e.g. a prompt shim)."),
    ] = None,
    out_path: Annotated[Path | None, typer.Option("--out", help="Write plan.json here.")] = None,
    strategy: Annotated[
        str | None,
        typer.Option(help=f"Use this strategy ({', '.join(STRATEGIES)}) instead of the best."),
    ] = None,
    guardrail: Annotated[
        list[str] | None,
        typer.Option(help="METRIC=MAX_REGRESSION, repeatable (default: the four guardrails)."),
    ] = None,
    alpha: Annotated[float, _policy_option("alpha")] = policy_default("alpha"),
    power: Annotated[float, _policy_option("power")] = policy_default("power"),
    max_step_share: Annotated[float, _policy_option("max_step_share")] = policy_default(
        "max_step_share"
    ),
    deadline_days: Annotated[float | None, _policy_option("deadline_days")] = policy_default(
        "deadline_days"
    ),
    analysis: Annotated[
        int | None,
        typer.Option(
            "--analysis",
            min=1,
            help="Plan from this analysis run (default: the latest of all the data, not an "
            "--as-of snapshot).",
        ),
    ] = None,
) -> None:
    """Plan a staged, adaptation-aware rollback from the latest analysis of all the data."""
    from analytics.db import ensure_schema, get_engine
    from analytics.settings import get_settings
    from rollout.planner import Policy
    from rollout.plans import create_plan

    if strategy is not None and strategy not in STRATEGIES:
        raise typer.BadParameter(f"one of {', '.join(STRATEGIES)}", param_hint="--strategy")
    try:
        policy = Policy(
            guardrails=_guardrails(guardrail),
            alpha=alpha,
            power=power,
            max_step_share=max_step_share,
            deadline_days=deadline_days,
            bridge_value=_parse_value(bridge_value),
        )
    except ValueError as exc:
        raise fail(str(exc)) from exc
    engine = get_engine()
    ensure_schema(engine)
    plan_id, document, _ = create_plan(
        engine,
        experiment_id=experiment,
        feature_key=feature,
        policy=policy,
        rollback_value=_parse_value(rollback_value),
        current_value=_parse_value(current_value),
        strategy=strategy,
        environments=tuple(get_settings().environments()),
        analysis_run_id=analysis,
    )
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(document, indent=1) + "\n")
    print_plan(plan_id, PlanDocument.from_json(document))
    if out_path is not None:
        out.print(f"wrote {out_path}", highlight=False)


def print_plan(plan_id: int, document: PlanDocument) -> None:
    options = Table(
        "strategy", "stages", "days", "expected disrupted users", title="Strategies compared"
    )
    for option in document.options:
        chosen = " (chosen)" if option.strategy == document.strategy else ""
        options.add_row(
            option.strategy + chosen,
            str(option.stages),
            f"{option.duration_days:.1f}",
            f"{option.expected_disrupted_users:,.1f}",
        )
    out.print(options)
    stages = Table(
        "stage", "cohort", "move", "coverage", "users", "hold h", "power", title="Stages"
    )
    for stage in document.stages:
        stages.add_row(
            str(stage.index),
            stage.cohort,
            stage.kind,
            f"{stage.coverage:.0%}",
            f"{stage.users:,}",
            f"{stage.min_hold_hours:.0f}",
            "-" if stage.power is None else f"{stage.power:.2f}",
        )
    out.print(stages)
    for option in document.options:
        for warning in option.warnings:
            err.print(f"warning ({option.strategy}): {warning}", style="yellow")
    out.print(f"plan {plan_id}: {document.reason}", highlight=False, soft_wrap=True)


def _client(settings: Settings, *, dry_run: bool) -> Any:
    from rollout.growthbook.client import GrowthBookClient

    return GrowthBookClient.from_settings(
        settings,
        dry_run=dry_run,
        echo=lambda line: err.print(line, highlight=False, markup=False, soft_wrap=True),
    )


@reports_errors
def growthbook_pull() -> None:
    """Fetch GrowthBook's features and experiments into the database."""
    from analytics.db import get_engine
    from analytics.settings import get_settings
    from analytics.store import save_growthbook_snapshots

    settings = get_settings()
    engine = get_engine()
    with _client(settings, dry_run=False) as client:
        features = client.list_features()
        experiments = client.list_experiments()
    new_features, new_experiments = save_growthbook_snapshots(engine, features, experiments)
    out.print(
        f"features: {len(features):,} fetched, {new_features:,} changed; experiments: "
        f"{len(experiments):,} fetched, {new_experiments:,} changed",
        highlight=False,
    )


@reports_errors
def growthbook_apply(
    plan_id: Annotated[int, typer.Option("--plan", help="The plan's id.")],
    stage: Annotated[int, typer.Option("--stage", min=0, help="The stage to apply.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the requests instead of sending writes.")
    ] = False,
    record_only: Annotated[
        bool,
        typer.Option("--record-only", help="Record the stage as applied without GrowthBook."),
    ] = False,
) -> None:
    """Write a plan's stage to GrowthBook: saved groups, then its rules in one revision."""
    from analytics.db import get_engine
    from analytics.settings import get_settings
    from rollout.plans import apply_stage, require_plan, write_stage

    settings = get_settings()
    engine = get_engine()
    configured = bool(settings.growthbook_url and settings.growthbook_api_key)
    if dry_run and not configured:
        document = require_plan(engine, plan_id).document
        if not 0 <= stage < len(document["stages"]):
            raise fail(f"plan {plan_id} has stages 0..{len(document['stages']) - 1}")
        out.print_json(json.dumps(document["stages"][stage]["rest"]))
        err.print("GrowthBook is not configured: these are the request bodies, unsent.")
        return
    if record_only:
        applied = apply_stage(
            engine, plan_id, stage, client=None, environments=settings.environments()
        )
    else:
        with _client(settings, dry_run=dry_run) as client:
            if dry_run:
                write_stage(
                    engine, require_plan(engine, plan_id), stage, client, settings.environments()
                )
                return
            applied = apply_stage(
                engine, plan_id, stage, client=client, environments=settings.environments()
            )
    how = "recorded (GrowthBook untouched)" if applied.recorded_only else "applied to GrowthBook"
    out.print(f"plan {plan_id} stage {stage} {how}", highlight=False)


@reports_errors
def guardrails(
    plan_id: Annotated[int, typer.Option("--plan", help="The plan's id.")],
    now: Annotated[
        str | None, typer.Option(help="Judge as of this ISO-8601 time (default: now).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")] = False,
) -> None:
    """The guardrail decision for a plan's current stage: advance, hold or pause."""
    from analytics.db import get_engine
    from rollout.plans import evaluate_plan
    from rollout.store import load_plan

    engine = get_engine()
    when = datetime.fromisoformat(now) if now else datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    decision = evaluate_plan(engine, plan_id, now=when)
    if as_json:
        out.print_json(json.dumps(decision.to_dict()))
        return
    plan_row = load_plan(engine, plan_id)
    assert plan_row is not None
    out.print(
        f"plan {plan_id}, stage {plan_row.current_stage}: {decision.action.upper()}",
        highlight=False,
    )
    for reason in decision.reasons:
        out.print(f"  {reason}", highlight=False, soft_wrap=True)

"""``aftershock plan``, ``aftershock growthbook pull|apply`` and ``aftershock guardrails``."""

from __future__ import annotations

import json
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from rollout.cli.console import err, fail, out, reports_errors
from rollout.documents import PLAN_MODES, PlanDocument
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
    ctx: typer.Context,
    experiment: Annotated[
        str | None, typer.Option("--experiment", help="GrowthBook experiment key (required).")
    ] = None,
    feature: Annotated[
        str | None,
        typer.Option("--feature", help="The GrowthBook feature to roll back (required)."),
    ] = None,
    rollback_value: Annotated[
        str | None,
        typer.Option(
            help="The value users are rolled back to (the control's). Default: the control "
            "variation's value in the feature's experiment rule, as `aftershock growthbook "
            "pull` stored it; without it, required.",
        ),
    ] = None,
    current_value: Annotated[
        str | None,
        typer.Option(
            help="The value served now (the treatment's). Default: the treated variation's "
            "value in the pulled experiment rule; without it, required.",
        ),
    ] = None,
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
    deadline_days: Annotated[float, _policy_option("deadline_days")] = policy_default(
        "deadline_days"
    ),
    exposure_day_cost: Annotated[float, _policy_option("exposure_day_cost")] = policy_default(
        "exposure_day_cost"
    ),
    record_only: Annotated[
        bool,
        typer.Option(
            "--record-only",
            help="Make a record-only plan: its stages are recorded, never written to "
            "GrowthBook (default: live, each stage written to GrowthBook).",
        ),
    ] = False,
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
    """Plan a staged, adaptation-aware rollback from the latest analysis of all the data
    (`aftershock plan replan PLAN_ID` plans a started one's remaining stages again)."""
    # Options given on the command line (Typer bundles its own Click: compare by name).
    given = [
        name
        for name in ctx.params
        if getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"
    ]
    if ctx.invoked_subcommand is not None:
        if given:
            raise fail(
                f"`aftershock plan {ctx.invoked_subcommand}` takes its own options, not "
                + ", ".join(f"--{name.replace('_', '-')}" for name in sorted(given))
            )
        return
    if experiment is None or feature is None:
        raise fail(
            "give --experiment and --feature to plan a rollback (or a command: "
            "`aftershock plan replan PLAN_ID`)"
        )
    from analytics.db import ensure_schema, get_engine
    from analytics.settings import get_settings
    from rollout.models import PlanMode
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
            exposure_day_cost=exposure_day_cost,
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
        mode=PlanMode.record_only if record_only else PlanMode.live,
        value_options=("--rollback-value", "--current-value"),
    )
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(document, indent=1) + "\n")
    print_plan(plan_id, PlanDocument.from_json(document))
    if out_path is not None:
        out.print(f"wrote {out_path}", highlight=False)


def print_plan(plan_id: int, document: PlanDocument) -> None:
    from rich import box
    from rich.text import Text

    shown = sorted(
        (o for o in document.options if o.pareto or o.recommended or o.name == document.option),
        key=lambda o: o.combined_cost,
    )
    beaten = len(document.options) - len(shown)
    options = Table(
        box=box.SIMPLE_HEAD,
        title="Rollbacks compared (expected harms)",
        caption=f"{beaten} more options are beaten on both harms by one of these "
        "(plan.json lists every option)"
        if beaten
        else None,
    )
    options.add_column("option", ratio=1)
    for header in ("stages", "days", "second\ndisruptions", "exposed\nuser-days", "combined\ncost"):
        options.add_column(header, justify="right", no_wrap=True)
    for option in shown:
        marks = [
            mark
            for mark, on in (
                ("recommended", option.recommended),
                ("chosen", option.name == document.option),
                ("misses the deadline", not option.fits_deadline),
            )
            if on
        ]
        cell = Text(option.name)
        if marks:
            cell.append(f"\n({', '.join(marks)})", style="bold")
        options.add_row(
            cell,
            str(option.stages),
            f"{option.duration_days:.1f}",
            f"{option.expected_second_disruptions:,.0f}",
            f"{option.exposed_user_days:,.0f}",
            f"{option.combined_cost:,.0f}",
        )
    out.print(options)
    stages = Table(box=box.SIMPLE_HEAD, title="Stages")
    stages.add_column("stage", justify="right")
    stages.add_column("day", justify="right")
    stages.add_column("cohort", ratio=1)
    for header in ("coverage", "users", "cohort\noff", "users\noff", "hold\nh", "power"):
        stages.add_column(header, justify="right", no_wrap=True)
    for stage in document.stages:
        cohort = Text(stage.cohort)
        if stage.kind != "rollback":
            cohort.append(f" ({stage.kind})")
        stages.add_row(
            str(stage.index),
            f"{stage.start_day:.1f}",
            cohort,
            f"{stage.coverage:.0%}",
            f"{stage.users:,}",
            f"{stage.cumulative_coverage:.0%}",
            f"{stage.cumulative_users:,}",
            f"{stage.min_hold_hours:.0f}",
            "-" if stage.power is None else f"{stage.power:.2f}",
        )
    out.print(stages)
    chosen = document.chosen
    for warning in [] if chosen is None else chosen.warnings:
        err.print(f"warning: {warning}", style="yellow")
    title, meaning = PLAN_MODES.get(document.mode, (document.mode, ""))
    out.print(f"mode: {title}: {meaning}", highlight=False)
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
        typer.Option(
            "--record-only",
            help="Record the stage as applied without writing GrowthBook (a record-only "
            "plan never writes it anyway).",
        ),
    ] = False,
    supersede: Annotated[
        bool,
        typer.Option(
            "--supersede",
            help="When this stage starts the plan while another plan of the feature is in "
            "progress, abort that plan (audited on both) instead of refusing.",
        ),
    ] = False,
) -> None:
    """Write a plan's stage to GrowthBook: saved groups, then its rules in one revision.

    A live plan is refused while GrowthBook is not configured (never recorded silently); a
    record-only plan's stage is recorded without GrowthBook."""
    from analytics.db import get_engine
    from analytics.settings import get_settings
    from rollout.models import PlanMode
    from rollout.ramp import (
        apply_stage,
        missing_growthbook_settings,
        open_writer,
        require_plan,
        write_stage,
    )

    settings = get_settings()
    engine = get_engine()
    plan_row = require_plan(engine, plan_id)
    missing = missing_growthbook_settings(settings)
    unsent = missing or plan_row.mode == PlanMode.record_only
    if dry_run and unsent:
        document = plan_row.document
        if not 0 <= stage < len(document["stages"]):
            raise fail(f"plan {plan_id} has stages 0..{len(document['stages']) - 1}")
        out.print_json(json.dumps(document["stages"][stage]["rest"]))
        why = (
            f"plan {plan_id} is record-only: it never writes GrowthBook"
            if plan_row.mode == PlanMode.record_only
            else "GrowthBook is not configured"
        )
        err.print(f"{why}: these are the request bodies, unsent.")
        return
    if dry_run:
        with _client(settings, dry_run=True) as client:
            write_stage(engine, plan_row, stage, client, settings.environments())
        return
    client = open_writer(
        engine,
        plan_row,
        lambda: None if missing else _client(settings, dry_run=False),
        missing_settings=missing,
        actor="cli",
        action="apply",
        record=record_only,
    )
    with client if client is not None else nullcontext() as gb:
        applied = apply_stage(
            engine,
            plan_id,
            stage,
            client=gb,
            environments=settings.environments(),
            supersede=supersede,
        )
    for superseded in applied.superseded:
        out.print(f"plan {superseded} aborted: superseded by plan {plan_id}", highlight=False)
    if not applied.recorded_only:
        how = "applied to GrowthBook"
    elif plan_row.mode == PlanMode.record_only:
        how = "recorded (record-only plan: GrowthBook untouched)"
    else:
        how = "recorded (GrowthBook untouched)"
    out.print(f"plan {plan_id} stage {stage} {how}", highlight=False)


@reports_errors
def replan(
    plan_id: Annotated[int, typer.Argument(min=1, help="The plan's id.")],
    expected_version: Annotated[
        int | None,
        typer.Option(
            "--expected-version",
            min=1,
            help="Re-plan only if the plan is still at this version (default: as read now).",
        ),
    ] = None,
) -> None:
    """Plan a started plan's remaining stages again from what its current stage saw."""
    from analytics.db import get_engine
    from analytics.settings import get_settings
    from rollout.ramp import require_plan
    from rollout.replans import replan_plan

    engine = get_engine()
    version = expected_version or require_plan(engine, plan_id).version
    replanned = replan_plan(
        engine,
        plan_id,
        expected_version=version,
        actor="cli",
        environments=get_settings().environments(),
    )
    print_plan(plan_id, PlanDocument.from_json(replanned.document))
    out.print(
        f"plan {plan_id}: revision {replanned.revision} (version {replanned.version})",
        highlight=False,
    )


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
    from rollout.ramp import evaluate_plan
    from rollout.store import list_forced_advances, load_plan

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
    mode = str(plan_row.mode).replace("_", "-")
    out.print(
        f"plan {plan_id} ({mode}), stage {plan_row.current_stage}: {decision.action.upper()}",
        highlight=False,
    )
    for reason in decision.reasons:
        out.print(f"  {reason}", highlight=False, soft_wrap=True)
    for forced in list_forced_advances(engine, plan_id, limit=3):
        said = f" over {forced.guardrails_action}" if forced.guardrails_action else ""
        out.print(
            f"  forced{said}: stage {forced.stage} by {forced.actor} at "
            f"{forced.at:%Y-%m-%d %H:%M} UTC: {forced.reason}",
            highlight=False,
            soft_wrap=True,
        )

"""The policy's limits are declared once (rollout.policy) and every surface enforces the same
ones: the planner's Policy, the API's request schema, the CLI's options."""

from __future__ import annotations

import pytest
import typer.main

from rollout.api.schemas import PlanRequest
from rollout.cli.app import app
from rollout.planner import Policy
from rollout.policy import POLICY_LIMITS, check_policy_value

# Policy fields the API request and the CLI expose (the others are the planner's own).
API_FIELDS = (
    "alpha",
    "power",
    "max_step_share",
    "deadline_days",
    "exposure_day_cost",
    "min_hold_hours",
    "max_hold_hours",
)
CLI_OPTIONS = {
    "alpha": "alpha",
    "power": "power",
    "max_step_share": "max_step_share",
    "deadline_days": "deadline_days",
    "exposure_day_cost": "exposure_day_cost",
}


@pytest.mark.parametrize("name", list(POLICY_LIMITS))
def test_policy_accepts_the_bounds_and_refuses_beyond_them(name: str) -> None:
    limit = POLICY_LIMITS[name]
    base = {"min_hold_hours": 0.0} if name == "max_hold_hours" else {}
    for inside in (limit.low, limit.high):
        if name == "min_hold_hours":
            base = {"max_hold_hours": POLICY_LIMITS["max_hold_hours"].high}
        Policy(**{**base, name: inside})
    for outside in (limit.low - abs(limit.low) * 0.5 - 1e-6, limit.high * 1.5 + 1):
        with pytest.raises(ValueError, match=name):
            Policy(**{**base, name: outside})
        assert check_policy_value(name, outside) is not None


def test_policy_defaults_are_the_declared_ones() -> None:
    policy = Policy()
    for name, limit in POLICY_LIMITS.items():
        assert getattr(policy, name) == limit.default, name


@pytest.mark.parametrize("name", API_FIELDS)
def test_the_api_bounds_each_field_as_declared(name: str) -> None:
    limit = POLICY_LIMITS[name]
    field = PlanRequest.model_fields[name]
    bounds = {type(m).__name__: m for m in field.metadata}
    assert bounds["Ge"].ge == limit.low and bounds["Le"].le == limit.high
    assert field.default == limit.default


@pytest.mark.parametrize(("name", "option"), CLI_OPTIONS.items())
def test_the_cli_bounds_each_option_as_declared(name: str, option: str) -> None:
    limit = POLICY_LIMITS[name]
    command = typer.main.get_command(app).commands["plan"]  # type: ignore[attr-defined]
    [param] = [p for p in command.params if p.name == option]
    assert (param.min, param.max) == (limit.low, limit.high)
    assert param.default == limit.default


def test_the_api_and_the_cli_expose_every_policy_field_but_the_planners_own() -> None:
    planners_own = {"long_tenure_days"}
    assert set(API_FIELDS) == set(POLICY_LIMITS) - planners_own
    assert set(CLI_OPTIONS) <= set(API_FIELDS)
    command = typer.main.get_command(app).commands["plan"]  # type: ignore[attr-defined]
    [cost] = [p for p in command.params if p.name == "exposure_day_cost"]
    assert "--exposure-day-cost" in cost.opts

"""The rollback policy's limits and strategies, declared once.

Every surface that takes a policy derives its bounds from :data:`POLICY_LIMITS`: the CLI's
options (``typer.Option(min=..., max=...)``), the API's request fields (``ge``/``le``), the
dashboard's inputs (``min_value``/``max_value``), and :class:`rollout.planner.Policy`, which
checks them. Bounds are inclusive. Importing this module loads nothing heavy, so the CLI can
read it when it registers its options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Limit:
    """An inclusive range of one policy field, its default and what it means."""

    low: float
    high: float
    default: float | None
    help: str

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def describe(self) -> str:
        return f"{self.low:g} to {self.high:g}"


STRATEGIES = ("immediate", "uniform_ramp", "adaptation_aware")
"""The rollback strategies the planner compares (rollout.planner builds each)."""

POLICY_LIMITS: dict[str, Limit] = {
    "alpha": Limit(
        0.0001, 0.5, 0.05, "Significance level of each stage's guardrail test (all metrics)."
    ),
    "power": Limit(0.5, 0.99, 0.8, "Power each stage's hold is sized for."),
    "max_step_share": Limit(0.01, 1.0, 1.0, "Largest share of a cohort moved in one step."),
    "deadline_days": Limit(
        1.0,
        365.0,
        28.0,
        "Every treated user must be off the current value within this many days (whole hours "
        "count); a paused rollback leaves the users it has not moved on it until then.",
    ),
    "exposure_day_cost": Limit(
        1.0,
        1000.0,
        25.0,
        "How many active user-days on the current (misbehaving) value weigh as much as one "
        "second disruption.",
    ),
    "min_hold_hours": Limit(0.0, 24.0 * 30, 24.0, "Shortest hold of a stage, in hours."),
    "max_hold_hours": Limit(1.0, 24.0 * 90, 7 * 24.0, "Longest hold of a stage, in hours."),
    "long_tenure_days": Limit(
        0.0, 365.0, None, "Days of exposure after which a new user counts as long-tenure."
    ),
}


def policy_default(name: str) -> Any:
    """The default of a policy field (None where the field is optional)."""
    return POLICY_LIMITS[name].default


def check_policy_value(name: str, value: float | None) -> str | None:
    """Why ``value`` is out of range for the policy field ``name``, or None when it is in
    range (None is in range for the optional fields, whose default is None)."""
    limit = POLICY_LIMITS[name]
    if value is None:
        return None if limit.default is None else f"{name}: a value is required"
    if not limit.contains(value):
        return f"{name}: {value!r} is out of range ({limit.describe()})"
    return None

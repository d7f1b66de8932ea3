"""A plan's flag values: as given, or read from the pulled GrowthBook feature; never guessed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from analytics.store import (
    StoredAnalysis,
    load_growthbook_experiment,
)
from rollout.store import (
    load_growthbook_feature,
)

if TYPE_CHECKING:
    pass

from rollout.errors import FlagValuesError
from rollout.growthbook.values import growthbook_variation_values


def resolve_flag_values(
    engine: sa.Engine,
    run: StoredAnalysis,
    *,
    feature_key: str,
    rollback_value: Any,
    current_value: Any,
    environments: Sequence[str] = ("production",),
    options: tuple[str, str] = ("rollback_value", "current_value"),
) -> tuple[Any, Any]:
    """The plan's (rollback value, current value): each as given, or, when None, read from
    the feature as ``aftershock growthbook pull`` stored it: the value its experiment rule
    serves the analysis' control variation (rollback) and its treated variations (current,
    which they must share). Refuses (:class:`FlagValuesError`, naming ``options``) when a value
    is neither given nor readable: a plan never writes a guessed value to GrowthBook."""
    if rollback_value is not None and current_value is not None:
        return rollback_value, current_value
    experiment_id = run.document.experiment_id
    control = run.document.control
    treated = sorted(v for v in run.document.users if v != control)
    missing = [
        name
        for name, value in zip(options, (rollback_value, current_value), strict=True)
        if value is None
    ]

    def refuse_values(why: str) -> FlagValuesError:
        return FlagValuesError(
            f"give {' and '.join(missing)} ({options[0]}: the value users are rolled back to, "
            f"the control's; {options[1]}: the value served now, the treatment's), or run "
            f"`aftershock growthbook pull` so they can be read from the feature's experiment "
            f"rule: {why}",
            missing,
        )

    feature = load_growthbook_feature(engine, feature_key)
    if feature is None:
        raise refuse_values(f"feature {feature_key!r} has not been pulled from GrowthBook")
    experiment = load_growthbook_experiment(engine, experiment_id)
    values = growthbook_variation_values(feature, experiment, experiment_id, environments)
    if not values:
        raise refuse_values(
            f"the pulled feature {feature_key!r} has no experiment rule for {experiment_id!r}"
            + ("" if experiment is not None else " (and the experiment was not pulled)")
        )

    def one(keys: Sequence[str], what: str) -> Any:
        served = [value for key in keys for value in values.get(key, [])]
        distinct = [v for i, v in enumerate(served) if v not in served[:i]]
        absent = [k for k in keys if k not in values]
        if absent:
            raise refuse_values(
                f"its experiment rule serves no value to variation(s) {', '.join(absent)} ({what})"
            )
        if len(distinct) != 1:
            shown = ", ".join(json.dumps(v) for v in distinct)
            raise refuse_values(f"{what} are served different values ({shown})")
        return distinct[0]

    if rollback_value is None:
        rollback_value = one([control], f"the control variation {control!r}")
    if current_value is None:
        if not treated:
            raise refuse_values(f"the analysis of {experiment_id!r} has no treated variation")
        current_value = one(treated, f"the treated variation(s) {', '.join(treated)}")
    return rollback_value, current_value

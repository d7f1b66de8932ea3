"""The parameters of an analysis: one frozen object, built in one place for every surface.

``build_analysis_params`` is what the CLI, the API and the weekly report call: it takes the
expected split and the variation names from the experiment as pulled from GrowthBook
(``aftershock growthbook pull``) when there is one, so every surface checks the sample ratio
against the same split. ``AnalysisParams.to_json``/``from_json`` store them with a run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from analytics.analysis.user_periods import PeriodParams
from analytics.errors import ConfigError
from analytics.features.metrics import DAY_BINS
from analytics.store import load_growthbook_experiment
from analytics.timestamps import accepted_range, require_in_range


@dataclass(frozen=True)
class AdaptationParams:
    """Thresholds of :func:`score_adaptation`.

    Attributes
    ----------
    min_pre, min_post : int
        Interactions a user needs before and after first exposure to be scored by
        ``pre_post``; a user with fewer before is routed to ``learning_curve``, one with enough
        before but fewer after is not scored (``too_few_post``).
    min_early, min_late : int
        Interactions a ``learning_curve`` user needs in their first ``early_days`` days since
        first exposure and from then on (``too_few_early``, ``too_few_late``).
    early_days : int
        Where a user's first days on the feature end: a bin start of
        :data:`analytics.features.metrics.DAY_BINS` after 0.
    fallback_half_life_days : float
        Half-life of the adaptation curve when the analysis could not fit one (the curve
        weighs each day since exposure by how far adaptation has got by then).
    alpha : float
        False discovery rate of ``adapted``, across the users of each variation (two-stage
        adaptive Benjamini-Hochberg).
    partial_p : float
        Unadjusted p-value at or below which a user who is not ``adapted`` is ``partial``.
    stratum_days : float
        Width of the calendar strata of first exposure within which changes are centred on
        control users' mean change.
    min_stratum_controls : int
        Eligible control users a stratum needs to be centred on its own mean; a stratum with
        fewer is centred on the mean of all eligible control users.

    A method scores nobody unless at least ``MIN_CONTROLS_PER_FOLD * FOLDS`` (10 x 5 = 50)
    of its control users are eligible and there is a treatment: each fold's direction and
    null covariance come from the eligible control users of the other folds, and the
    empirical p-values from all of them. Below that, its users are not scored
    (``too_few_controls``; ``no_treatment`` without a treatment).
    """

    min_pre: int = 3
    min_post: int = 3
    min_early: int = 2
    min_late: int = 3
    early_days: int = 3  # days 0-2 since first exposure are a new user's first days
    fallback_half_life_days: float = 3.0  # as rollout.risk's DEFAULT_HALF_LIFE_DAYS
    alpha: float = 0.05  # FDR of ``adapted`` (two-stage BH)
    partial_p: float = 0.10  # unadjusted p below which a user not ``adapted`` is ``partial``
    stratum_days: float = 7.0  # calendar strata of first exposure for the control null
    min_stratum_controls: int = 30

    def __post_init__(self) -> None:
        """``early_days`` must end a bin of days since exposure (a ``ValueError`` says so)."""
        if self.early_days not in DAY_BINS[1:]:
            raise ValueError(
                f"early_days must be one of {', '.join(map(str, DAY_BINS[1:]))}, "
                f"not {self.early_days!r}"
            )


@dataclass(frozen=True)
class AnalysisParams:
    experiment_id: str
    control: str = "0"
    weights: tuple[float, ...] | None = None  # the expected split, for the SRM check
    variation_names: tuple[tuple[str, str], ...] = ()  # (key, name), e.g. from GrowthBook
    alpha: float = 0.05
    # Users in the style DiD need this many interactions before and after first exposure
    # (see analytics.inference.style_shift.compute_style_shift for why).
    did_min_interactions: int = 2
    periods: PeriodParams = field(default_factory=PeriodParams)
    adaptation: AdaptationParams = field(default_factory=AdaptationParams)

    def __post_init__(self) -> None:
        """The expected split, when given, is finite and positive for every variation (a
        zero, negative or NaN weight would make the SRM check meaningless, not skipped)."""
        if self.weights is not None:
            check_weights(self.weights)

    def to_json(self) -> dict[str, Any]:
        """JSON-safe: tuples as lists, ``until`` as ISO 8601."""
        data = asdict(self)
        data["weights"] = None if self.weights is None else list(self.weights)
        data["variation_names"] = [list(pair) for pair in self.variation_names]
        until = self.periods.until
        data["periods"]["until"] = None if until is None else until.isoformat()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AnalysisParams:
        """The parameters as :meth:`to_json` stored them; fields a version of Aftershock did
        not store take their defaults."""
        periods = dict(data.get("periods") or {})
        until = periods.get("until")
        known = {f.name for f in fields(AdaptationParams)}
        adaptation = {k: v for k, v in (data.get("adaptation") or {}).items() if k in known}
        weights = data.get("weights")
        return cls(
            experiment_id=str(data["experiment_id"]),
            control=str(data.get("control", "0")),
            weights=None if weights is None else tuple(float(w) for w in weights),
            variation_names=tuple((str(k), str(n)) for k, n in data.get("variation_names", [])),
            alpha=float(data.get("alpha", 0.05)),
            did_min_interactions=int(data.get("did_min_interactions", 2)),
            periods=PeriodParams(
                pre_days=periods.get("pre_days", 28.0),
                until=None if until is None else datetime.fromisoformat(until),
            ),
            adaptation=AdaptationParams(**adaptation),
        )


def check_weights(weights: Sequence[float]) -> None:
    """Refuse (:class:`ConfigError`, naming ``weights``) an expected split that is not a
    positive, finite number per variation."""
    bad = [w for w in weights if not (math.isfinite(w) and w > 0)]
    if not weights or bad:
        shown = ",".join(f"{w:g}" for w in weights)
        raise ConfigError(
            f"weights {shown or '(none)'}: each variation's expected share must be a positive "
            "number (e.g. 0.5,0.5)"
        )


def growthbook_split(
    definition: Mapping[str, Any], control: str
) -> tuple[tuple[float, ...] | None, tuple[tuple[str, str], ...]]:
    """The expected split (the latest phase's traffic split, control first then by key, as
    the analysis orders variations) and the variation names of a GrowthBook experiment
    (a REST ``Experiment``); no split when its phases give none."""
    variations = definition.get("variations", [])
    key_of = {v["variationId"]: str(v["key"]) for v in variations}
    names = tuple((str(v["key"]), str(v.get("name", v["key"]))) for v in variations)
    phases = definition.get("phases") or []
    split = phases[-1].get("trafficSplit") if phases else None
    if not split:
        return None, names
    weight = {key_of[s["variationId"]]: float(s["weight"]) for s in split}
    order = sorted(weight, key=lambda k: (k != control, k))
    return tuple(weight[k] for k in order), names


def build_analysis_params(
    engine: sa.Engine,
    experiment_id: str,
    *,
    control: str = "0",
    weights: tuple[float, ...] | None = None,
    periods: PeriodParams | None = None,
    adaptation: AdaptationParams | None = None,
    check_stored_rows: bool = True,
) -> AnalysisParams:
    """The parameters to analyse ``experiment_id`` with: ``weights`` when given, else the
    split of the experiment as pulled from GrowthBook, else equal weights (None); the
    variation names from GrowthBook when pulled.

    Refuses (:class:`analytics.timestamps.OutOfRangeError`) when the experiment's stored rows
    have timestamps outside the range ingest accepts, which an earlier version stored (unless
    ``check_stored_rows`` is false: the Spark path reads a lake's rows, checked one by one)."""
    if check_stored_rows:
        require_in_range(engine, experiment_id, accepted_range())
    pulled: tuple[float, ...] | None = None
    names: tuple[tuple[str, str], ...] = ()
    definition = load_growthbook_experiment(engine, experiment_id)
    if definition:
        pulled, names = growthbook_split(definition, control)
    return AnalysisParams(
        experiment_id=experiment_id,
        control=control,
        weights=weights or pulled,
        variation_names=names,
        periods=periods or PeriodParams(),
        adaptation=adaptation or AdaptationParams(),
    )

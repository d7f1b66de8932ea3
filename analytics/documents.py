"""``analysis.json`` as a typed document: what the pipeline writes and every surface reads.

The JSON shape is the data contract's (docs/DATA_CONTRACT.md): :meth:`AnalysisDocument.to_json`
writes it and :meth:`AnalysisDocument.from_json` reads it back, so no surface reads the stored
document by string keys. Rows are the inference procedures' own result types.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from analytics.inference.results import BucketShift, DriftRow, HalfLifeResult, StyleShiftRow

USERS_CSV_COLUMNS = (
    "user_id",
    "variation",
    "first_exposure",
    "n_pre",
    "n_post",
    "adaptation_score",
    "adaptation_p",
    "adaptation_label",
    "adaptation_method",
    "unscored_reason",
)
"""The columns of ``users.csv`` (and of a stored run's per-user rows), in order."""

ADAPTATION_METHODS = ("pre_post", "learning_curve")
"""How a user was scored (``users.csv``'s ``adaptation_method``; empty when not scored):
their change from before first exposure to after it, or from their first days on the feature
to their later ones."""

UNSCORED_REASONS: dict[str, str] = {
    "too_few_pre": "too few interactions before first exposure, and too few since for their "
    "first days to be compared with their later ones",
    "too_few_post": "too few interactions since first exposure",
    "too_few_early": "no pre-period, and too few interactions in their first days on the feature",
    "too_few_late": "no pre-period, and too few interactions after their first days on the feature",
    "no_interactions": "no interaction logged",
    "too_few_controls": "fewer than 50 eligible control users for their method (10 per "
    "cross-fitting fold)",
    "no_treatment": "no treatment variation to compare with",
    "no_style_variation": "their style metrics did not vary, so there was nothing to score",
}
"""Why a user was not scored (``users.csv``'s ``unscored_reason``; empty when scored), each
in plain words."""

LABELS = ("adapted", "partial", "unadapted", "new", "insufficient_data")
"""Every adaptation label, most adapted first (``users.csv``'s ``adaptation_label``)."""
SCORED_LABELS = LABELS[:3]
"""The labels of users who could be scored (``new`` and ``insufficient_data`` could not)."""

Row = TypeVar("Row")


def _counts(data: Mapping[str, Any] | None) -> dict[str, int]:
    """Counts by name from JSON (none in an older document: empty)."""
    return {str(k): int(v) for k, v in (data or {}).items()}


def clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null, numpy scalars plain Python."""
    if hasattr(value, "item") and not isinstance(value, list | dict | str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _row_json(row: Any) -> dict[str, Any]:
    return {k: clean(v) for k, v in asdict(row).items()}


def _row(cls: type[Row], data: Mapping[str, Any]) -> Row:
    """A result row from its JSON; a field an older document lacks is None (or its default)."""
    values = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            values[f.name] = data[f.name]
        elif f.default is f.default_factory:  # no default (both MISSING)
            values[f.name] = None
    return cls(**values)


# Before the style shift compared all randomised users, its rows held only the difference in
# differences, under the names the between-arms estimate has now.
_DID_NAMES = {
    "ci_low": "did_ci_low",
    "ci_high": "did_ci_high",
    "p_value": "did_p_value",
    "n_control": "did_n_control",
    "n_variation": "did_n_variation",
    "error": "did_error",
}


def _style_row(cls: type[Row], data: Mapping[str, Any]) -> Row:
    """A style shift row (or one of its buckets); an older, DiD-only row keeps its figures
    as the ``did_*`` ones, and its between-arms figures (and q-value) are None."""
    if "effect" in data or "did" not in data:
        return _row(cls, data)
    moved = {
        _DID_NAMES.get(k, k): v for k, v in data.items() if k not in ("q_value", "significant")
    }
    return _row(cls, moved)


@dataclass(frozen=True)
class Srm:
    """The sample-ratio-mismatch check of the exposures (``error``: why it was not tested,
    e.g. fewer than two variations with users; then ``p_value`` is 1 and ``ok``)."""

    p_value: float
    ok: bool
    error: str | None = None


@dataclass(frozen=True)
class AdaptationSummary:
    """How many users carry each adaptation label, and how fast the style shift builds up."""

    half_life_days: float | None
    labels: dict[str, int]  # of the treated users
    half_life: HalfLifeResult | None
    labels_by_variation: dict[str, dict[str, int]]
    # Treated users scored by each method, and not scored by reason (empty in documents
    # written before they were counted).
    methods: dict[str, int] = field(default_factory=dict)
    unscored: dict[str, int] = field(default_factory=dict)
    unscored_by_variation: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def scored_users(self) -> int:
        """Treated users who could be scored (the denominator of the adapted share)."""
        return sum(self.labels.get(label, 0) for label in SCORED_LABELS)

    @property
    def unscored_users(self) -> int:
        """Treated users who could not be scored."""
        return sum(self.labels.get(label, 0) for label in LABELS if label not in SCORED_LABELS)


@dataclass(frozen=True)
class AnalysisDocument:
    """One analysis of one experiment (``analysis.json``)."""

    experiment_id: str
    control: str
    variations: list[str]
    analysed_at: str  # ISO 8601, UTC
    users: dict[str, int]  # analysed users per variation
    multiple_exposures: int
    srm: Srm
    behavior_drift: list[DriftRow]
    style_shift: list[StyleShiftRow]
    adaptation: AdaptationSummary
    style_shift_by_days: list[BucketShift]
    variation_names: dict[str, str]
    code_version: str

    @property
    def treatments(self) -> list[str]:
        return [v for v in self.variations if v != self.control]

    def to_json(self) -> dict[str, Any]:
        """The contract's keys, then Aftershock's additions."""
        adaptation = self.adaptation
        return {
            "experiment_id": self.experiment_id,
            "control": self.control,
            "variations": list(self.variations),
            "analysed_at": self.analysed_at,
            "users": dict(self.users),
            "multiple_exposures": self.multiple_exposures,
            "srm": {
                "p_value": self.srm.p_value,
                "ok": self.srm.ok,
                **({} if self.srm.error is None else {"error": self.srm.error}),
            },
            "behavior_drift": [_row_json(r) for r in self.behavior_drift],
            "style_shift": [_row_json(r) for r in self.style_shift],
            "adaptation": {
                "half_life_days": clean(adaptation.half_life_days),
                "labels": dict(adaptation.labels),
                "half_life": None
                if adaptation.half_life is None
                else _row_json(adaptation.half_life),
                "labels_by_variation": {
                    v: dict(counts) for v, counts in adaptation.labels_by_variation.items()
                },
                "methods": dict(adaptation.methods),
                "unscored": dict(adaptation.unscored),
                "unscored_by_variation": {
                    v: dict(counts) for v, counts in adaptation.unscored_by_variation.items()
                },
            },
            "style_shift_by_days": [_row_json(r) for r in self.style_shift_by_days],
            "variation_names": dict(self.variation_names),
            "code_version": self.code_version,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AnalysisDocument:
        """A document as :meth:`to_json` wrote it (or an older version of it)."""
        adaptation = data.get("adaptation") or {}
        half_life = adaptation.get("half_life")
        by_variation = adaptation.get("labels_by_variation") or {}
        names = data.get("variation_names") or {}
        srm = data.get("srm") or {}
        return cls(
            experiment_id=str(data["experiment_id"]),
            control=str(data["control"]),
            variations=[str(v) for v in data.get("variations", [])],
            analysed_at=str(data.get("analysed_at", "")),
            users={str(k): int(v) for k, v in (data.get("users") or {}).items()},
            multiple_exposures=int(data.get("multiple_exposures", 0)),
            srm=Srm(
                p_value=float(srm.get("p_value", 1.0)),
                ok=bool(srm.get("ok", True)),
                error=None if srm.get("error") is None else str(srm["error"]),
            ),
            behavior_drift=[_row(DriftRow, r) for r in data.get("behavior_drift", [])],
            style_shift=[_style_row(StyleShiftRow, r) for r in data.get("style_shift", [])],
            adaptation=AdaptationSummary(
                half_life_days=adaptation.get("half_life_days"),
                labels=dict(adaptation.get("labels") or {}),
                half_life=None if half_life is None else _row(HalfLifeResult, half_life),
                labels_by_variation={str(v): dict(c) for v, c in by_variation.items()},
                methods=_counts(adaptation.get("methods")),
                unscored=_counts(adaptation.get("unscored")),
                unscored_by_variation={
                    str(v): _counts(c)
                    for v, c in (adaptation.get("unscored_by_variation") or {}).items()
                },
            ),
            style_shift_by_days=[
                _style_row(BucketShift, r) for r in data.get("style_shift_by_days", [])
            ],
            variation_names={str(k): str(v) for k, v in names.items()},
            code_version=str(data.get("code_version", "")),
        )

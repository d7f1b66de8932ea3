"""The input columns of docs/DATA_CONTRACT.md, per kind of file."""

from __future__ import annotations

from dataclasses import dataclass

from analytics.models import IngestKind


@dataclass(frozen=True)
class InputContract:
    kind: IngestKind
    required: tuple[str, ...]
    optional: tuple[str, ...]
    # The columns whose values together identify a row; a second row with the same key is a
    # duplicate and is stored once.
    key: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional


EXPOSURES = InputContract(
    kind=IngestKind.exposures,
    required=("user_id", "timestamp", "experiment_id", "variation_id"),
    optional=("feature_key", "attributes"),
    key=("experiment_id", "user_id", "timestamp", "variation_id"),
)

INTERACTIONS = InputContract(
    kind=IngestKind.interactions,
    required=("event_id", "user_id", "timestamp", "prompt"),
    optional=(
        "response",
        "model_version",
        "session_id",
        "latency_ms",
        "feedback",
        "complaint",
        "retry",
    ),
    key=("event_id",),
)

CONTRACTS = {contract.kind: contract for contract in (EXPOSURES, INTERACTIONS)}

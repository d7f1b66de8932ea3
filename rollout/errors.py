"""What can go wrong with a rollback plan, as the CLI, the API and the dashboard tell it:
one class per kind, so each surface maps it to its answer (an exit message, a problem type
and status, an error box)."""

from __future__ import annotations

from collections.abc import Sequence

from analytics.errors import AftershockError, NotFoundError
from rollout.guardrails import GuardrailDecision


class PlanError(AftershockError):
    """A plan cannot be made, found or moved as asked."""


class AnalysisNotFoundError(PlanError, NotFoundError):
    """The analysis a plan was asked to be made from does not exist."""


class FlagValuesError(PlanError):
    """A plan's flag values were neither given nor readable from the pulled GrowthBook
    feature; ``missing`` names the inputs that would give them."""

    def __init__(self, message: str, missing: Sequence[str]) -> None:
        super().__init__(message)
        self.missing = list(missing)


class PlanNotFoundError(PlanError):
    """No plan with that id."""


class VersionConflictError(PlanError):
    """The plan changed since the caller read it (or another writer is changing it)."""


class PlanRefusedError(PlanError):
    """The plan's state or its guardrails do not allow what was asked."""

    def __init__(self, message: str, decision: GuardrailDecision | None = None) -> None:
        super().__init__(message)
        self.decision = decision


class PlanInProgressError(PlanRefusedError):
    """Another plan of the feature is in progress: one feature, one plan at a time (unless
    the new one supersedes it)."""

    def __init__(self, message: str, in_progress_plan_id: int | None) -> None:
        super().__init__(message)
        self.in_progress_plan_id = in_progress_plan_id


class GrowthBookNotConfiguredError(PlanRefusedError):
    """A live plan's stage must be written to GrowthBook, which is not configured."""

    def __init__(self, message: str, missing_settings: Sequence[str]) -> None:
        super().__init__(message)
        self.missing_settings = list(missing_settings)

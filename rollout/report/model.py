"""The weekly report's shape: the ISO week, the report and its lines, and its errors."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from analytics.errors import AftershockError, NotFoundError
from analytics.inference.results import BucketShift, DriftRow, StyleShiftRow
from rollout.documents import PlanOption, PlanStage
from rollout.store import ForcedAdvance

REPORT_FORMATS = ("html", "md", "csv", "pdf")
MEDIA_TYPES = {
    "html": "text/html; charset=utf-8",
    "md": "text/markdown; charset=utf-8",
    "csv": "application/zip",
    "pdf": "application/pdf",
}
# Plan events that are steps of a rollout (``create`` is reported with the recommendation).
STAGE_ACTIONS = ("apply", "advance", "guardrails", "pause", "resume", "abort", "replan")
CHART_STYLE_METRICS = 4  # style metrics in the days-since-exposure chart, at most


class ReportError(AftershockError):
    """A report cannot be built or rendered as asked."""


class ExperimentNotFoundError(ReportError, NotFoundError):
    """The experiment has no stored exposures."""


class WeekError(ReportError, ValueError):
    """The ``week`` given is not an ISO week such as ``2026-W44``."""


# --- the week -------------------------------------------------------------------------------

_WEEK = re.compile(r"(\d{4})-W(\d{2})")


@dataclass(frozen=True)
class IsoWeek:
    """An ISO 8601 week: Monday 00:00 UTC up to (not including) the next Monday."""

    year: int
    week: int

    @classmethod
    def containing(cls, moment: datetime) -> IsoWeek:
        """The ISO week ``moment`` falls in, in UTC (a naive ``moment`` is taken as UTC)."""
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC)
        year, week, _ = moment.isocalendar()
        return cls(year, week)

    @property
    def label(self) -> str:
        return f"{self.year}-W{self.week:02d}"

    @property
    def start(self) -> datetime:
        monday = date.fromisocalendar(self.year, self.week, 1)
        return datetime(monday.year, monday.month, monday.day, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=7)

    @property
    def span(self) -> str:
        """The week's days in words: "Monday 2026-10-26 to Sunday 2026-11-01" (UTC)."""
        sunday = (self.end - timedelta(days=1)).date()
        return f"Monday {self.start.date().isoformat()} to Sunday {sunday.isoformat()}"

    def previous(self) -> IsoWeek:
        year, week, _ = (self.start - timedelta(days=1)).isocalendar()
        return IsoWeek(year, week)


def parse_iso_week(text: str) -> IsoWeek:
    """``"2026-W44"`` as an :class:`IsoWeek`; a :class:`WeekError` naming ``week`` otherwise."""
    match = _WEEK.fullmatch(text.strip())
    if match is None:
        raise WeekError(f"week: {text!r} is not an ISO week; expected YYYY-Www, e.g. 2026-W44")
    year, week = int(match.group(1)), int(match.group(2))
    if not 1 <= year <= 9998:
        raise WeekError(f"week: {text!r} is out of range (years 0001 to 9998)")
    weeks = date(year, 12, 28).isocalendar().week  # the week of 28 December is the last
    if not 1 <= week <= weeks:
        raise WeekError(f"week: {text!r} does not exist; {year} has ISO weeks 01 to {weeks}")
    return IsoWeek(year, week)


# --- the report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelLine:
    """Treated users carrying an adaptation label at the end of the week and the week before."""

    label: str
    this_week: int
    previous_week: int

    @property
    def change(self) -> int:
        return self.this_week - self.previous_week


@dataclass(frozen=True)
class NewUsersLine:
    """Users of a variation first exposed during the week, and in it by the week's end."""

    variation: str
    new_users: int
    total_users: int


@dataclass(frozen=True)
class StageLine:
    """A rollout step recorded during the week: a stage applied, a guardrail decision, ..."""

    at: datetime
    plan_id: int
    action: str
    stage: int | None
    move: str  # the stage's kind, cohort and coverage, e.g. "rollback least_adapted 50%"
    outcome: str
    decision: str | None  # advance | hold | pause, for guardrail decisions
    note: str
    actor: str  # who: an API token's name, "cli", "dashboard"
    forced: bool  # a stage applied past the guardrails

    @property
    def what(self) -> str:
        """The action as the report names it ("forced advance" for a forced apply)."""
        return "forced advance" if self.forced else self.action


@dataclass(frozen=True)
class PlanView:
    """The plan standing at the end of the week (the newest made before it ended): the
    choice it made and its stages, as its document (plan.json) says."""

    plan_id: int
    mode: str  # live | record_only
    revision: int
    option: str  # the chosen option's name
    exposure_day_cost: float | None  # exposed user-days worth one second disruption
    options: tuple[PlanOption, ...]
    stages: tuple[PlanStage, ...]  # without their GrowthBook payloads
    forced: tuple[ForcedAdvance, ...]  # forced advances recorded by the end of the week

    @property
    def chosen(self) -> PlanOption | None:
        return next((o for o in self.options if o.name == self.option), None)


@dataclass(frozen=True)
class WeeklyReport:
    """Everything the weekly report shows; the renderers only format it."""

    experiment_id: str
    feature_key: str | None
    week: IsoWeek
    control: str
    first_exposure: datetime | None  # the experiment's first ever
    multiple_exposures: int
    srm_p_value: float | None
    srm_ok: bool | None
    half_life_days: float | None
    behavior_drift: tuple[DriftRow, ...]  # the analysis document's rows, as every surface's
    style_shift: tuple[StyleShiftRow, ...]
    style_by_days: tuple[BucketShift, ...]
    labels: tuple[LabelLine, ...]
    new_users: tuple[NewUsersLine, ...]
    stages: tuple[StageLine, ...]
    headline: str
    recommendation: str  # for anyone: no commands in it
    plan: PlanView | None = None
    # For engineers (the report's last section): the commands behind the recommendation.
    engineer_notes: tuple[str, ...] = ()

    @property
    def has_users(self) -> bool:
        return any(line.total_users for line in self.new_users)

    @property
    def title(self) -> str:
        return f"Weekly adaptation report: {self.experiment_id}, {self.week.label}"

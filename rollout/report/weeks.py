"""Which week a report is of: the last complete week with data when none is named, and, for
the command line, never a week that has not ended."""

from __future__ import annotations

from datetime import datetime

from rollout.report.model import IsoWeek, ReportError, WeekError, parse_iso_week


def last_complete_week(
    experiment_id: str, first_exposure: datetime, data_end: datetime, now: datetime
) -> IsoWeek:
    """The week to report when none is named: the last ISO week (UTC) that has ended by
    ``now`` and holds data, that is the week of the data's last moment (``data_end``, as
    :func:`analytics.store.data_end` reads it) or, when the data runs into the week in
    progress, the week before that one.

    The weeks are calendar weeks, not weeks the data covers to their last second: logs
    loaded once a day end late on Sunday, and their week is the one a reader asks for on
    Monday. Refuses (:class:`ReportError`) when no week has ended since the first exposure.
    """
    ended = IsoWeek.containing(now).previous()
    week = min(IsoWeek.containing(data_end), ended, key=lambda w: w.start)
    if week.end <= first_exposure:
        first = IsoWeek.containing(first_exposure)
        raise ReportError(
            f"experiment {experiment_id!r} has no complete week yet: its first exposure came on "
            f"{first_exposure.date().isoformat()}, in {first.label}, which ends "
            f"{_moment(first.end)}"
        )
    return week


def ended_week(week: str | None, now: datetime) -> IsoWeek | None:
    """The ISO week a reader asked for (None when they did not), refused
    (:class:`WeekError`) when it is not an ISO week or has not ended by ``now``: what the
    command line and the API accept."""
    if week is None:
        return None
    asked = parse_iso_week(week)
    require_ended(asked, now)
    return asked


def require_ended(week: IsoWeek, now: datetime) -> None:
    """Refuse (:class:`WeekError`) a week that has not ended by ``now``: its report would
    change as the rest of its data arrives."""
    if week.end <= now:
        return
    current = IsoWeek.containing(now)
    if week.start > now:
        raise WeekError(f"week: {week.label} has not started yet (this is {current.label})")
    raise WeekError(
        f"week: {week.label} has not ended yet (it ends {_moment(week.end)}), so its report "
        f"would change as data arrives: ask for {current.previous().label} or earlier, or "
        "leave --week out for the last complete week with data"
    )


def _moment(moment: datetime) -> str:
    """A moment in UTC as the messages say it: Monday 2026-12-14 00:00 UTC."""
    return f"{moment:%A %Y-%m-%d %H:%M} UTC"

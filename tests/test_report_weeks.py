"""The week a report is of: by default the last complete ISO week with data; on the command
line, never a week that has not ended."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
import typer
from typer.testing import CliRunner

import rollout.cli.report as report_command
from rollout.report import (
    IsoWeek,
    ReportError,
    WeekError,
    WeeklyReport,
    build_weekly_report,
    parse_iso_week,
    report_bytes,
)
from rollout.report.weeks import last_complete_week, require_ended
from tests.databases import DemoDatabases
from tests.demo_data import WEEKLY_REPORT_DEMO
from tests.reference.make_weekly_report import EXPERIMENT, WEEK

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
FIRST = datetime(2026, 10, 19, 0, 0, 10, tzinfo=UTC)  # the demo's first exposure (2026-W43)


def at(day: int, month: int = 12, hour: int = 0, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("data_end", "now", "expected"),
    [
        # The data ended weeks ago (the demo's, read in December): its last week.
        (datetime(2026, 11, 15, 23, 59, 53, tzinfo=UTC), at(7, hour=13), "2026-W46"),
        # Logs loaded once a day, read on Monday morning: they end late on Sunday, and that
        # week is complete although the data stops seconds before its end.
        (at(6, hour=23, minute=59), at(7, hour=8), "2026-W49"),
        # The data runs into the week in progress: the week before it.
        (at(9, hour=10), at(9, hour=12), "2026-W49"),
        (at(7), at(7, minute=1), "2026-W49"),  # Monday 00:00 belongs to the new week
        # Around the new year: 2026 has 53 ISO weeks.
        (at(2, month=1, year=2027), at(5, month=1, year=2027), "2026-W53"),
    ],
)
def test_the_default_week_is_the_last_complete_one_with_data(
    data_end: datetime, now: datetime, expected: str
) -> None:
    assert last_complete_week(EXPERIMENT, FIRST, data_end, now).label == expected


def test_no_complete_week_since_the_first_exposure_is_refused() -> None:
    first = at(8, hour=9)  # a Tuesday of the week in progress
    with pytest.raises(ReportError, match="has no complete week yet") as raised:
        last_complete_week(EXPERIMENT, first, at(9), at(10))
    said = str(raised.value)
    assert "first exposure came on 2026-12-08, in 2026-W50" in said
    assert "which ends Monday 2026-12-14 00:00 UTC" in said


def test_a_week_that_has_not_ended_is_refused() -> None:
    now = at(9, hour=12)  # Wednesday of 2026-W50
    with pytest.raises(WeekError, match="week: 2026-W50 has not ended yet") as raised:
        require_ended(parse_iso_week("2026-W50"), now)
    assert "it ends Monday 2026-12-14 00:00 UTC" in str(raised.value)
    assert "ask for 2026-W49 or earlier, or leave --week out" in str(raised.value)
    with pytest.raises(WeekError, match=r"week: 2026-W51 has not started yet \(this is 2026-W50\)"):
        require_ended(parse_iso_week("2026-W51"), now)
    require_ended(parse_iso_week("2026-W49"), now)
    require_ended(parse_iso_week("2026-W49"), at(7))  # ended at this very instant


def test_the_week_containing_a_moment_is_read_in_utc() -> None:
    assert IsoWeek.containing(at(6, hour=23, minute=59)).label == "2026-W49"
    assert IsoWeek.containing(at(7)).label == "2026-W50"
    # 00:30 on Monday in UTC+2 is still Sunday in UTC; a naive moment is UTC.
    plus_two = datetime(2026, 12, 7, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    assert IsoWeek.containing(plus_two).label == "2026-W49"
    assert IsoWeek.containing(datetime(2026, 12, 7, 0, 30)).label == "2026-W50"


# --- the report and the command ------------------------------------------------------------


@pytest.fixture
def reference(engine: sa.Engine, demo_databases: DemoDatabases) -> sa.Engine:
    """The golden report's data (tests/reference/make_weekly_report.py): the demo's data runs
    to Sunday 2026-11-15 (2026-W46)."""
    demo_databases.restore(WEEKLY_REPORT_DEMO, engine)
    return engine


@SQLITE_ONLY
def test_a_report_without_a_week_is_of_the_last_complete_one(reference: sa.Engine) -> None:
    december = build_weekly_report(reference, EXPERIMENT, now=at(7, hour=13))
    assert december.week.label == "2026-W46"
    assert _markdown(december) == _markdown(build_weekly_report(reference, EXPERIMENT, "2026-W46"))
    # Read in the middle of the data's last week: the week before it.
    assert build_weekly_report(reference, EXPERIMENT, now=at(11, month=11)).week.label == (
        "2026-W45"
    )
    with pytest.raises(ReportError, match="has no complete week yet"):
        build_weekly_report(reference, EXPERIMENT, now=at(20, month=10))


def _markdown(report: WeeklyReport) -> bytes:
    return report_bytes(report, "md")[0]


@SQLITE_ONLY
def test_the_command_defaults_to_the_last_complete_week_and_refuses_unfinished_ones(
    reference: sa.Engine, report_cli: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    monkeypatch.setattr(report_command, "utc_now", lambda: at(12, month=11, hour=9))
    target = tmp_path / "report.md"
    result = runner.invoke(report_cli, ["report", "--experiment", EXPERIMENT, "--out", str(target)])
    assert result.exit_code == 0, result.output
    # Thursday of 2026-W46: the data's last complete week is 2026-W45, and the output says so.
    assert result.stdout.strip() == (f"wrote {target} (2026-W45, the last complete week with data)")
    expected = build_weekly_report(reference, EXPERIMENT, "2026-W45")
    assert target.read_bytes() == _markdown(expected)

    args = ["report", "--experiment", EXPERIMENT, "--out", str(tmp_path / "w.md"), "--week"]
    result = runner.invoke(report_cli, [*args, "2026-W46"])
    shown = " ".join(result.output.replace("│", " ").split())  # Typer draws a box
    assert result.exit_code == 2, result.output
    assert "--week: 2026-W46 has not ended yet" in shown and "ask for 2026-W45 or earlier" in shown
    assert not (tmp_path / "w.md").exists()
    result = runner.invoke(report_cli, [*args, WEEK])  # a week that has ended, named: as asked
    assert result.exit_code == 0 and result.stdout.strip() == f"wrote {tmp_path / 'w.md'}"

    # Before any week of the experiment has ended: one line, exit code 1.
    monkeypatch.setattr(report_command, "utc_now", lambda: at(21, month=10))
    result = runner.invoke(report_cli, ["report", "--experiment", EXPERIMENT, "--out", str(target)])
    assert result.exit_code == 1 and "has no complete week yet" in result.stderr


def test_the_help_says_what_the_default_week_is() -> None:
    app = typer.Typer()
    app.command("report")(report_command.report)
    app.command("noop")(lambda: None)
    result = CliRunner().invoke(app, ["report", "--help"], terminal_width=200)
    shown = " ".join(result.output.replace("│", " ").split())
    assert "Default: the last complete week with data" in shown
    assert "a week that has not ended is refused" in shown

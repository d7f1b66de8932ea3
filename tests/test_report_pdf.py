"""PDF reports with Chromium launched while the report is built: the launch overlaps the
build, and a browser that fails, or a build that fails while the browser starts, ends as one
clean error with nothing written and no browser left behind."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import typer
from typer.testing import CliRunner

import rollout.report as report_package
from rollout import browser
from rollout.report import ReportError, WeeklyReport, build_weekly_report, render_pdf
from tests.databases import DemoDatabases
from tests.demo_data import WEEKLY_REPORT_DEMO
from tests.reference.make_weekly_report import EXPERIMENT, WEEK

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def printer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "chromium-pdf" and t.is_alive()]


@pytest.fixture
def playwright_installed() -> None:
    pytest.importorskip("playwright.sync_api", reason="PDF needs the playwright package")


@pytest.fixture
def real_chromium(playwright_installed: None) -> str:
    executable = browser.find_chromium()
    if executable is None:
        pytest.skip("PDF needs Chromium: apt-get install chromium")
    return executable


@pytest.fixture
def broken_chromium(
    playwright_installed: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A "Chromium" that exits at once with an error, as a broken installation would."""
    script = tmp_path / "chromium"
    script.write_text("#!/bin/sh\necho 'cannot open display' >&2\nexit 1\n")
    script.chmod(0o755)
    monkeypatch.setattr(browser, "find_chromium", lambda: str(script))
    return script


@pytest.fixture
def reference(engine: sa.Engine, demo_databases: DemoDatabases) -> WeeklyReport:
    demo_databases.restore(WEEKLY_REPORT_DEMO, engine)
    return build_weekly_report(engine, EXPERIMENT, WEEK)


def pdf_text(path: Path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("reading the PDF needs pdftotext: apt-get install poppler-utils")
    done = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    )
    return " ".join(done.stdout.split())


@pytest.mark.browser
@SQLITE_ONLY
def test_the_command_launches_chromium_while_it_builds_the_report(
    reference: WeeklyReport,
    report_cli: typer.Typer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    real_chromium: str,
) -> None:
    seen: list[str] = []
    build = report_package.build_weekly_report

    def watched(*args: Any, **kwargs: Any) -> WeeklyReport:
        seen.append("launching" if printer_threads() else "not launching")
        return build(*args, **kwargs)

    monkeypatch.setattr(report_package, "build_weekly_report", watched)
    target = tmp_path / "report.pdf"
    args = ["report", "--experiment", EXPERIMENT, "--week", WEEK, "--out", str(target)]
    result = CliRunner().invoke(report_cli, args)
    assert result.exit_code == 0, result.output
    assert seen == ["launching"]  # the browser was on its way while the report was built
    assert target.read_bytes().startswith(b"%PDF")
    assert " ".join(reference.headline.split()[:6]) in pdf_text(target)
    assert not printer_threads()


@SQLITE_ONLY
def test_a_browser_that_fails_to_start_is_one_clean_error(
    reference: WeeklyReport, report_cli: typer.Typer, tmp_path: Path, broken_chromium: Path
) -> None:
    target = tmp_path / "report.pdf"
    with pytest.raises(ReportError, match="Chromium could not print the report"):
        render_pdf(reference, target)
    assert not target.exists() and not printer_threads()

    args = ["report", "--experiment", EXPERIMENT, "--week", WEEK, "--out", str(target)]
    result = CliRunner().invoke(report_cli, args)
    assert result.exit_code == 1, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: Chromium could not print the report: ")
    assert line.endswith("(Chromium said: cannot open display)")
    assert not target.exists() and not printer_threads()


@pytest.mark.browser
@SQLITE_ONLY
def test_a_build_that_fails_while_chromium_starts_closes_it(
    reference: WeeklyReport, report_cli: typer.Typer, tmp_path: Path, real_chromium: str
) -> None:
    target = tmp_path / "report.pdf"
    args = ["report", "--experiment", "no-such-experiment", "--week", WEEK, "--out"]
    result = CliRunner().invoke(report_cli, [*args, str(target)])
    assert result.exit_code == 1, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: experiment 'no-such-experiment' has no stored exposures")
    assert not target.exists() and not printer_threads()


@pytest.mark.browser
def test_a_printer_prints_one_page(tmp_path: Path, real_chromium: str) -> None:
    with browser.PdfPrinter(real_chromium) as printer:
        printer.print_pdf("<p>one</p>", tmp_path / "one.pdf")
        with pytest.raises(RuntimeError, match="prints one page"):
            printer.print_pdf("<p>two</p>", tmp_path / "two.pdf")
    assert (tmp_path / "one.pdf").read_bytes().startswith(b"%PDF")
    assert not (tmp_path / "two.pdf").exists() and not printer_threads()


def test_a_missing_chromium_is_refused_before_the_report_is_built(
    report_cli: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(browser, "find_chromium", lambda: None)

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("built a report that cannot be printed")

    monkeypatch.setattr(report_package, "build_weekly_report", refuse)
    args = ["report", "--experiment", EXPERIMENT, "--week", WEEK, "--out"]
    result = CliRunner().invoke(report_cli, [*args, str(tmp_path / "report.pdf")])
    assert result.exit_code == 1 and "PDF needs Chromium" in result.stderr

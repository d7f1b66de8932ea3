"""Headless Chromium for PDF reports and dashboard screenshots: Debian's `chromium` package,
driven by Playwright (no browser download)."""

from __future__ import annotations

import queue
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from analytics.errors import AftershockError

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "/usr/bin/chromium")
# No sandbox (we run as root in CI), and none of the background calls this closed network
# would refuse at every start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
INSTALL_HINT = "install Debian's chromium package (`apt-get install chromium`)"
NO_CHROMIUM = (
    f"PDF needs Chromium, which is not installed: {INSTALL_HINT}, or use --format html and "
    "print it from a browser"
)


class BrowserError(AftershockError):
    """Headless Chromium is missing, or Playwright to drive it."""


def find_chromium() -> str | None:
    """The Chromium executable to drive, or None when none is installed."""
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found and Path(found).is_file():
            return found
    return None


def start_pdf_printer() -> PdfPrinter:
    """A :class:`PdfPrinter`, launching; refuses at once (:class:`BrowserError`, saying what
    to install) when Chromium or Playwright is missing. Light to import, so that a command
    can start the browser before it loads the libraries it builds the page with."""
    executable = find_chromium()
    if executable is None:
        raise BrowserError(NO_CHROMIUM)
    try:
        import playwright.sync_api  # noqa: F401  (checked here, used on the printer's thread)
    except ImportError as exc:
        raise BrowserError("PDF needs the playwright package (`pip install playwright`)") from exc
    return PdfPrinter(executable)


@dataclass(frozen=True)
class _Job:
    """One page to print: its HTML, where the PDF goes, and ``page.pdf``'s options."""

    html: str
    path: Path
    options: dict[str, Any]


class PdfPrinter:
    """Headless Chromium that starts launching, on a thread of its own, as soon as it is
    made, so that the browser starts while the caller builds the page; :meth:`print_pdf`
    hands it the HTML and waits for the PDF. One page per printer.

    Launching Chromium (Playwright's driver, then the browser) takes about a second, as long
    as building and rendering a report: run one after the other, they add up. Playwright's
    sync API belongs to the thread that started it, so the browser's whole life (launch,
    the page, close) runs on the worker and the caller talks to it through a queue. Whatever
    the worker raises (a browser that would not start, a page that would not print) is
    raised again on the caller's thread by :meth:`print_pdf`; :meth:`close` (or leaving the
    ``with`` block) ends the browser whether or not a page was printed.
    """

    def __init__(self, executable: str, args: list[str] | None = None) -> None:
        self._executable = executable
        self._args = list(CHROMIUM_ARGS if args is None else args)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._asked = False
        self._thread = threading.Thread(target=self._run, name="chromium-pdf", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=self._executable, args=self._args
                )
                try:
                    # The page is opened before the HTML comes (a third of a second).
                    page = browser.new_page()
                    # Loaded from a string, every request aborted: the page fetches nothing,
                    # and this keeps it so.
                    page.route("**/*", lambda route: route.abort())
                    job = self._jobs.get()
                    if job is not None:
                        page.set_content(job.html, wait_until="load")
                        page.pdf(path=str(job.path), **job.options)
                finally:
                    browser.close()
        except BaseException as exc:  # raised again on the caller's thread
            self._error = exc

    def print_pdf(self, html: str, path: Path | str, **options: Any) -> None:
        """Print ``html`` to a PDF file at ``path`` (``options``: Playwright's ``page.pdf``
        ones, such as ``format`` and ``margin``), waiting for the browser if it is still
        starting; raise what the browser raised."""
        if self._asked:
            raise RuntimeError("a PdfPrinter prints one page: start another for the next")
        self._asked = True
        self._jobs.put(_Job(html, Path(path), options))
        self._thread.join()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """End the browser (once it has started) and its thread; nothing is printed."""
        self._jobs.put(None)  # unread when the worker already finished: harmless
        self._thread.join()

    def __enter__(self) -> PdfPrinter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

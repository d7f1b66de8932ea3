"""One PNG per dashboard page, taken in a real browser.

``python -m tools.screenshots OUT_DIR`` starts ``streamlit run app.py`` on a free
port against the current ``AFTERSHOCK_DATABASE_URL``, opens each page in headless Chromium
(Playwright, with Debian's ``chromium``: ``apt-get install chromium``) and saves
``overview.png``, ``drift.png``, ``style.png``, ``planner.png``, ``ramp.png`` and
``report.png`` (the weekly report built for the newest week). The browser test uses the
same helpers.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rollout import browser as headless
from rollout.browser import find_chromium

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

APP = Path(__file__).resolve().parents[1] / "app.py"
# Page file -> URL path (as app.py's st.navigation names them).
PAGES = {
    "overview": "",
    "drift": "drift",
    "style": "style",
    "planner": "planner",
    "ramp": "ramp",
    "report": "report",
}
VIEWPORT = {"width": 1280, "height": 900}
# Pages whose screenshot starts at a heading further down (their charts), not at the top.
FOCUS = {
    "drift": "Daily series",
    "style": "Shift by days since exposure",
    "planner": "The choice",
}
INSTALL_HINT = f"no Chromium found: {headless.INSTALL_HINT}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def serve(
    env: Mapping[str, str] | None = None, *, log: Path | None = None, timeout: float = 90.0
) -> Iterator[str]:
    """Run ``streamlit run app.py`` headless on a free local port until the block ends; yield
    its base URL once its health check answers."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
        "--global.developmentMode",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]
    output = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        command,
        cwd=APP.parent,
        env={**os.environ, **(env or {})},
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {process.returncode}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not answer on {url} within {timeout:.0f} s")
            time.sleep(0.25)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log is not None and hasattr(output, "close"):
            output.close()


@contextmanager
def chromium(executable: str) -> Iterator[Browser]:
    """Headless Chromium driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=headless.CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


# True once the script has finished: a title is shown and Streamlit's status widget no longer
# says it is running.
_SETTLED = """() => {
  const main = document.querySelector('[data-testid="stMain"]');
  if (!main || !main.querySelector('h1')) return false;
  const status = document.querySelector('[data-testid="stStatusWidget"]');
  if (status && /running/i.test(status.innerText)) return false;
  if (main.querySelector('[data-testid="stSkeleton"]')) return false;
  const charts = [...main.querySelectorAll('[data-testid="stVegaLiteChart"]')];
  return charts.every((c) => c.querySelector('canvas, svg'));
}"""


def wait_until_settled(page: Page, timeout: float = 60.0) -> None:
    """Wait until the page's script has run and its charts are drawn (twice in a row, a
    moment apart, so a rerun that starts right after the first render is waited for too)."""
    for _ in range(2):
        page.wait_for_function(_SETTLED, timeout=timeout * 1000, polling=200)
        page.wait_for_timeout(600)


def open_page(browser: Browser, url: str, viewport: Mapping[str, int] = VIEWPORT) -> Page:
    """A new tab on ``url``, once the page has settled."""
    page = browser.new_page(viewport=dict(viewport))  # type: ignore[arg-type]
    page.goto(url, wait_until="domcontentloaded")
    wait_until_settled(page)
    return page


def metric_value(page: Page, label: str) -> Locator:
    """The value of the st.metric card labelled ``label``: wait on it with Playwright's
    ``expect(metric_value(page, label)).to_have_text(...)``, which retries until the card
    shows that text (a card is drawn before its value is filled in)."""
    exact = re.compile(rf"^\s*{re.escape(label)}\s*$")
    label_element = page.locator('[data-testid="stMetricLabel"]', has_text=exact)
    card = page.locator('[data-testid="stMetric"]', has=label_element)
    return card.locator('[data-testid="stMetricValue"]')


def metrics(page: Page, timeout: float = 60.0) -> dict[str, str]:
    """The page's st.metric cards: label -> value, as the browser shows them, once there is at
    least one card and every card shows a label and a value."""
    from playwright.sync_api import expect

    cards = page.locator('[data-testid="stMetric"]')
    expect(cards.first).to_be_visible(timeout=timeout * 1000)
    found: dict[str, str] = {}
    for card in cards.all():
        label = card.locator('[data-testid="stMetricLabel"]')
        value = card.locator('[data-testid="stMetricValue"]')
        for part in (label, value):
            expect(part).to_have_text(re.compile(r"\S"), timeout=timeout * 1000)
        found[label.inner_text().strip()] = value.inner_text().strip()
    return found


def wait_for_report(page: Page) -> None:
    """Wait until the weekly report page has built its report (it does so on opening)."""
    page.wait_for_selector("text=Download HTML", timeout=120_000)
    wait_until_settled(page)


def capture_all(url: str, out_dir: Path, executable: str) -> list[Path]:
    """Screenshot every page of the dashboard at ``url`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    saved = []
    with chromium(executable) as browser:
        for name, path in PAGES.items():
            page = open_page(browser, f"{url}/{path}")
            if name == "report":
                wait_for_report(page)
            if name in FOCUS:
                heading = page.get_by_role("heading", name=FOCUS[name])
                heading.evaluate("element => element.scrollIntoView({block: 'start'})")
                page.wait_for_timeout(300)
            target = out_dir / f"{name}.png"
            page.screenshot(path=str(target))
            page.close()
            saved.append(target)
    return saved


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tools.screenshots OUT_DIR", file=sys.stderr)
        return 2
    executable = find_chromium()
    if executable is None:
        print(INSTALL_HINT, file=sys.stderr)
        return 1
    out_dir = Path(args[0])
    with serve() as url:
        for path in capture_all(url, out_dir, executable):
            print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

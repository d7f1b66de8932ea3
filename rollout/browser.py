"""Headless Chromium for PDF reports and dashboard screenshots: Debian's `chromium` package,
driven by Playwright (no browser download)."""

from __future__ import annotations

import shutil
from pathlib import Path

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


def find_chromium() -> str | None:
    """The Chromium executable to drive, or None when none is installed."""
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found and Path(found).is_file():
            return found
    return None

"""Debian's Chromium for the browser tests.

Playwright drives it through `executable_path`: `playwright install` downloads its own browser
builds, which an offline machine cannot do. The `chromium` package is installed with apt-get when
missing, as root or through passwordless sudo (CI runners); once present, nothing is run.

    python -m devtools.chromium     install when missing; print the executable's path
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devtools import apt

CANDIDATES = ("chromium", "chromium-browser")


def executable() -> Path | None:
    """The installed Chromium, or None."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def install() -> Path:
    """apt-get install chromium when it is missing; return its executable."""
    found = executable()
    if found:
        return found
    apt.install(["chromium"])
    found = executable()
    if not found:
        raise RuntimeError("apt-get installed chromium but no `chromium` executable is on PATH")
    return found


@contextmanager
def headless(executable_path: Path) -> Iterator:
    """A headless Chromium driven by Playwright (its sync API: an event loop in this thread)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium's sandbox refuses to run as root
        browser = pw.chromium.launch(executable_path=str(executable_path), headless=True, args=args)
        try:
            yield browser
        finally:
            browser.close()


if __name__ == "__main__":
    print(install())

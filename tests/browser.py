"""Debian's Chromium for the browser tests, launched one way everywhere.

Never ``playwright install``: the tests drive ``/usr/bin/chromium`` (Debian's package, which ``.ci/run``
installs) with flags that keep it from reaching the network or needing a display. Without it a browser test
is skipped with the reason on a newcomer's machine and fails under CI.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import in_ci

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
"""Screenshots the browser tests leave for a person to look at."""


def require_chromium() -> None:
    """Skip (fail under CI) when Debian's Chromium is not installed."""
    if not CHROMIUM.exists():
        if in_ci():
            pytest.fail(f"{CHROMIUM} is missing under CI: .ci/run must install Debian's chromium package")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium); required under CI")


@contextmanager
def chromium_browser() -> Iterator[Any]:
    """A launched headless Chromium (Playwright's sync API), closed at the end."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()

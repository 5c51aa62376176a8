"""Fixtures of the admin UI tests: the real gateway (SQLite, mock upstream, admin
token), a real headless Chromium driven by Playwright, and screenshots under
`test-artifacts/ui/`.

Without Chromium (Debian's `chromium` package) or Playwright the tests are skipped,
except when CI is set: there a missing browser is a failure, not a skip.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.support import ADMIN_TOKEN, MockThread, gateway_config
from tests.support.gateway import RunningGateway, start_gateway
from tests.support.templates import SqliteTemplate

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
LAPTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
# Pages that answer 4xx on purpose (a bad form value) make Chromium log this.
_ERROR_STATUS = "Failed to load resource: the server responded with a status of 4"


def _missing_browser() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "Playwright for Python is not installed (pip install -e '.[test]')"
    if not CHROMIUM.exists():
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    return None


# Module scope, not session: while Playwright's sync API runs, the main thread has a
# running event loop, which the asyncio tests of later modules cannot share.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = _missing_browser()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the admin UI tests need a browser on CI: {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[MockThread]:
    mock = MockThread().start()
    yield mock
    mock.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: MockThread,
            sqlite_template: SqliteTemplate) -> Iterator[RunningGateway]:
    database = sqlite_template.copy_to(tmp_path_factory.mktemp("ui") / "tollway.db")  # migrated once per session
    running = start_gateway(gateway_config(database, upstream.url))
    yield running
    running.stop()


@pytest.fixture
def page(browser: Any, gateway: RunningGateway) -> Iterator[Any]:
    """A fresh browser context (no cookies) on a laptop-sized screen."""
    context = browser.new_context(viewport=LAPTOP, base_url=gateway.url)
    # How long an action waits for the page (not a speed requirement): with the suite on
    # 4 processes on 2 cores, a login's navigation took over 3 s.
    context.set_default_timeout(15_000)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gateway.url)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda message: errors.append(message.text)
           if message.type == "error" and not message.text.startswith(_ERROR_STATUS) else None)
    yield tab
    context.close()
    assert not errors, f"the page logged errors: {errors}"


def log_in(page: Any, token: str = ADMIN_TOKEN) -> None:
    page.goto("/ui/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/")


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    target = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(target), full_page=True)
    return target

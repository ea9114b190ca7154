"""The one headless Chromium of the test session (Debian's, driven by Playwright), for every
browser test: the Dagster UI (e2e/) and the UI behind the job API (api/).

One session fixture for all of them, registered from the root conftest: Playwright's sync API
runs once per thread, so a second copy of the fixture could not start.
Screenshots go to `test-artifacts/` at the project root (git-ignored).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from etl_assets_tests.dagster_services import ROOT

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("ETL_TEST_CHROMIUM", "/usr/bin/chromium")
# Generous: two cores run the webserver, the daemon, a run and the browser at once.
expect.set_options(timeout=120_000)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    # Generous: the UI renders slowly on a loaded machine, and a wait ends as soon as it holds.
    context.set_default_timeout(120_000)
    context.set_default_navigation_timeout(180_000)
    pg = context.new_page()
    # Dagster's one-time "Join the Dagster community" prompt, on a fresh instance. Its Skip button
    # gets the click event itself: a loading overlay drawn over the page (the launch dialog's, on
    # a loaded machine) would intercept a pointer click for as long as it stays.
    pg.add_locator_handler(
        pg.get_by_text("Join the Dagster community"),
        lambda: pg.get_by_role("button", name="Skip").dispatch_event("click"),
    )
    yield pg
    failed = getattr(request.node, "rep_call", None)
    try:
        if failed is not None and failed.failed:
            shoot(pg, f"{request.node.name}-FAILED")
    finally:  # a page too broken to photograph must not keep its context open for the next test
        context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


def open_page(page, url: str):
    page.goto(url, wait_until="domcontentloaded")
    return page


def shoot(page, name: str) -> Path:
    """A full-page screenshot under test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
    page.screenshot(path=str(path), full_page=True)
    return path

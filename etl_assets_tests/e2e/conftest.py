"""Fixtures for the browser tests: a real Dagster webserver and daemon serving the seeded
demo, and a headless Chromium (Debian's, driven by Playwright) looking at it.

Screenshots go to `test-artifacts/` at the project root (git-ignored).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
from playwright.sync_api import expect

from etl_assets import demo
from etl_assets.spec import load_pipelines
from etl_assets_tests.conftest import Databases
from etl_assets_tests.dagster_services import ROOT, DagsterServices

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("ETL_TEST_CHROMIUM", "/usr/bin/chromium")
# Generous: two cores run the webserver, the daemon, a run and the browser at once.
expect.set_options(timeout=30_000)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


def demo_spec():
    """The shipped demo pipeline, as the code location loads it."""
    [spec] = [s for s in load_pipelines(ROOT / "pipelines") if s.name == "demo_sales"]
    return spec


@contextmanager
def start_demo_services(tmp: Path) -> Iterator[DagsterServices]:
    """dagster-webserver + dagster-daemon on a free port of 127.0.0.1, over fresh instance,
    warehouse and source databases, with the demo seeded; all of it removed afterwards."""
    dbs = Databases()
    try:
        home = tmp / "etl_home"
        source_url = dbs.new("etl_e2e_src")
        demo.seed(source_url, home / "demo")
        env = {
            "ETL_HOME": str(home),
            "ETL_STORAGE_DIR": str(tmp / "storage"),
            "ETL_WAREHOUSE_URL": dbs.new("etl_e2e_wh"),
            "ETL_DEMO_SOURCE_URL": source_url,
            "ETL_INSTANCE_URL": dbs.new("etl_e2e_instance").replace("postgresql://", "postgresql+psycopg2://"),
            "ETL_PIPELINES_DIR": str(ROOT / "pipelines"),
        }
        with DagsterServices(tmp, env) as services:
            yield services
    finally:
        dbs.drop_all()


@contextmanager
def instance_of(services: DagsterServices) -> Iterator[dg.DagsterInstance]:
    """The services' Dagster instance, opened from the same DAGSTER_HOME."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ETL_INSTANCE_URL", services.env["ETL_INSTANCE_URL"])
        with dg.DagsterInstance.from_config(services.env["DAGSTER_HOME"]) as instance:
            yield instance


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(30_000)
    pg = context.new_page()
    # Dagster's one-time "Join the Dagster community" prompt, on a fresh instance.
    pg.add_locator_handler(
        pg.get_by_text("Join the Dagster community"), lambda: pg.get_by_role("button", name="Skip").click()
    )
    yield pg
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        shoot(pg, f"{request.node.name}-FAILED")
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

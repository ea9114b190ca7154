"""Fixtures for the browser tests of the Dagster UI: a real webserver and daemon serving the
seeded demo. The browser itself is the session's one Chromium (etl_assets_tests/browser.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest

from etl_assets.dev import demo
from etl_assets.spec import load_pipelines
from etl_assets_tests.browser import expect, open_page, shoot  # noqa: F401  (for the tests here)
from etl_assets_tests.dagster_services import ROOT, DagsterServices
from etl_assets_tests.helpers import Databases


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

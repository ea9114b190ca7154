"""Job control from the CLI against a real dagster-webserver and daemon."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from etl_assets_tests.dagster_services import ROOT, DagsterServices
from etl_assets_tests.helpers import SCHEDULED_SHOP as PIPELINE
from etl_assets_tests.helpers import create_orders, ny, orders_rows, query


def etl(services: DagsterServices, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "etl_assets.cli", "jobs", "--url", services.url, *args],
        cwd=ROOT, env=services.env, capture_output=True, text=True, timeout=120,
    )


@pytest.fixture
def services(tmp_path: Path, etl_env, databases):
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "shop.yaml").write_text(yaml.safe_dump(PIPELINE))
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(30, ny(2025, 3, 9, 1), dt.timedelta(hours=3)))
    env = {
        **etl_env,
        "ETL_PIPELINES_DIR": str(pipelines),
        "ETL_INSTANCE_URL": databases.new("etl_instance").replace("postgresql://", "postgresql+psycopg2://"),
    }
    with DagsterServices(tmp_path, env) as s:
        yield s


@pytest.mark.slow
def test_jobs_commands_drive_a_real_webserver(services: DagsterServices, etl_env) -> None:
    listed = etl(services, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [job] = json.loads(listed.stdout)
    assert (job["pipeline"], job["schedule"], job["timezone"], job["state"]) == (
        "shop", "shop_schedule", "America/New_York", "RUNNING"
    )
    assert job["cron"] == "0 6 * * 1"
    assert job["next_tick"] is not None and job["last_run"] is None

    off = etl(services, "disable", "shop")
    assert off.returncode == 0, off.stderr
    assert off.stdout.strip() == "shop_schedule: STOPPED"
    assert json.loads(etl(services, "list", "--json").stdout)[0]["state"] == "STOPPED"
    on = etl(services, "enable", "shop")
    assert on.stdout.strip() == "shop_schedule: RUNNING"
    assert query(etl_env["ETL_WAREHOUSE_URL"], "SELECT status, reason FROM etl_meta.pipeline_state") == [
        ("active", "resumed with etl-assets jobs enable")
    ]

    launched = etl(services, "run", "shop", "--partition", "2025-03-09")
    assert launched.returncode == 0, launched.stderr
    run_id = launched.stdout.split()[1]
    assert services.wait_run(run_id) == "SUCCESS", services.log_tail()
    assert query(etl_env["ETL_WAREHOUSE_URL"], "SELECT count(*) FROM mart.orders") == [(30,)]

    logs = json.loads(etl(services, "logs", "shop", "--json").stdout)
    assert [(r["run_id"], r["status"], r["partition"], r["trigger"]) for r in logs] == [
        (run_id, "success", "2025-03-09", "manual")
    ]
    assert json.loads(etl(services, "logs", "shop", "--status", "failed", "--json").stdout) == []
    assert json.loads(etl(services, "logs", "shop", "--page", "2", "--page-size", "1", "--json").stdout) == []

    listed = json.loads(etl(services, "list", "--json").stdout)[0]
    assert (listed["last_run"], listed["last_status"], listed["success_rate"]) == (run_id, "success", 1.0)
    header, row = etl(services, "list").stdout.splitlines()
    assert row.index(" success ") + 1 == header.index("status")  # the columns line up
    assert row[header.index("last run"):].startswith(run_id[:8])

    # The daemon's run-status sensor recorded the run in history.
    deadline = time.monotonic() + 90
    rows: list = []
    while time.monotonic() < deadline and not rows:
        rows = query(
            etl_env["ETL_WAREHOUSE_URL"],
            "SELECT to_regclass('etl_meta.runs') IS NOT NULL",
        )[0][0] and query(etl_env["ETL_WAREHOUSE_URL"], "SELECT run_id, status, trigger FROM etl_meta.runs")
        time.sleep(1)
    assert rows == [(run_id, "success", "manual")], services.log_tail()

"""A run worker killed with SIGKILL: the daemon notices, history records it, Slack hears once."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from etl_assets.dagster_internal import run_worker_pid
from etl_assets.ops import jobcontrol as jobs
from etl_assets_tests.dagster_services import DagsterServices
from etl_assets_tests.helpers import create_orders, ny, orders_rows, query

POLL = 2


@pytest.mark.slow
def test_killed_worker_is_failed_recorded_and_alerted_once(tmp_path: Path, etl_env, databases, slack_stub, monkeypatch) -> None:
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "shop.yaml").write_text(yaml.safe_dump({
        "name": "shop",
        "timezone": "America/New_York",
        "partitions": {"start": "2025-01-05"},
        "retries": {"max": 0},
        "notify": {"slack": {"channel": "#data", "on": ["failure", "success"], "api_url": slack_stub.base_url}},
        "sources": [{
            "name": "orders", "kind": "postgres", "connection": {"url": "${TEST_SOURCE_URL}"},
            # A slow source keeps the worker busy long enough to be killed mid-run.
            "query": "SELECT o.* FROM src.orders o, pg_sleep(120) "
                     "WHERE updated_at >= :window_start AND updated_at < :window_end",
            "timestamp_column": "updated_at", "primary_key": ["order_id"], "load": {"target": "mart.orders"},
        }],
    }))
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(5, ny(2025, 3, 9, 1), dt_hours(1)))
    instance_url = databases.new("etl_instance").replace("postgresql://", "postgresql+psycopg2://")
    env = {**etl_env, "ETL_PIPELINES_DIR": str(pipelines), "ETL_INSTANCE_URL": instance_url,
           "SLACK_BOT_TOKEN": "xoxb-worker-lost"}
    settings = {
        "poll_interval_seconds: 30": f"poll_interval_seconds: {POLL}",
        "max_retries: 1": "max_retries: 0",
    }
    with DagsterServices(tmp_path, env, settings=settings) as services:
        monkeypatch.setenv("ETL_INSTANCE_URL", instance_url)
        run_id = jobs.run_job(services.url, "shop", "2025-03-09")
        with dg.DagsterInstance.from_config(services.env["DAGSTER_HOME"]) as instance:
            deadline = time.monotonic() + 120
            pid = None
            while time.monotonic() < deadline and pid is None:
                pid = run_worker_pid(instance, run_id)
                time.sleep(0.5)
            assert pid, services.log_tail()
            time.sleep(2)  # inside the slow extract now
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            assert services.wait_run(run_id, timeout=120) == "FAILURE"
            # Noticed within a few monitoring intervals (the daemon's loop adds its own pauses).
            assert time.monotonic() - killed < 10 * POLL + 30
            deadline = time.monotonic() + 90
            rows: list = []
            while time.monotonic() < deadline and not rows:
                if query(etl_env["ETL_WAREHOUSE_URL"], "SELECT to_regclass('etl_meta.runs') IS NOT NULL")[0][0]:
                    rows = query(etl_env["ETL_WAREHOUSE_URL"], "SELECT run_id, status, error_type, error_summary FROM etl_meta.runs")
                time.sleep(1)
            assert len(rows) == 1, services.log_tail()
            assert rows[0][:3] == (run_id, "failed", "worker_lost"), rows[0]
            # Run monitoring says which process died, unless the code server noticed first.
            assert "run worker" in rows[0][3], rows[0][3]
            time.sleep(3 * POLL)  # a second sensor tick must not alert again
        assert len(slack_stub.posts) == 1
        assert "FAILED" in slack_stub.posts[0]["text"]
        assert query(etl_env["ETL_WAREHOUSE_URL"], "SELECT count(*) FROM etl_meta.runs") == [(1,)]


def dt_hours(n: int):
    import datetime as dt

    return dt.timedelta(hours=n)

"""The instance start-up path: the schema exists before the webserver and the daemon spawn."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import yaml

from etl_assets_tests.dagster_services import DagsterServices
from etl_assets_tests.helpers import Databases, create_orders, ny, orders_rows

SCHEMA = {"runs", "event_logs", "jobs", "job_ticks", "instance_info", "alembic_version"}
PIPELINE = {
    "name": "shop",
    "timezone": "America/New_York",
    "partitions": {"start": "2025-01-05"},
    "schedule": {"enabled": False},
    "sources": [{
        "name": "orders", "kind": "postgres", "connection": {"url": "${TEST_SOURCE_URL}"},
        "table": "src.orders", "timestamp_column": "updated_at", "primary_key": ["order_id"],
        "load": {"target": "mart.orders"},
    }],
}


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


class RecordingServices(DagsterServices):
    """Notes, as each service process is spawned, which instance tables already exist."""

    def __init__(self, home: Path, env: dict[str, str], instance_db: str) -> None:
        super().__init__(home, env)
        self.instance_db = instance_db
        self.tables_at_spawn: dict[str, set[str]] = {}

    def _start(self, name: str, cmd: list[str]) -> None:
        self.tables_at_spawn[name] = tables(self.instance_db)
        super()._start(name, cmd)


def test_services_start_on_an_instance_migrated_before_they_spawn(
    tmp_path: Path, etl_env: dict[str, str], databases: Databases
) -> None:
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "shop.yaml").write_text(yaml.safe_dump(PIPELINE))
    instance_db = databases.new("etl_instance")
    assert tables(instance_db) == set()
    env = {
        **etl_env,
        "ETL_PIPELINES_DIR": str(pipelines),
        "ETL_INSTANCE_URL": instance_db.replace("postgresql://", "postgresql+psycopg2://"),
    }
    with RecordingServices(tmp_path, env, instance_db) as services:
        assert set(services.tables_at_spawn) == {"webserver", "daemon"}
        for name, present in services.tables_at_spawn.items():
            assert present >= SCHEMA, f"{name} spawned before the schema existed: {sorted(present)}"
        logs = services.log_tail(lines=10_000)
    assert not re.search(r"Traceback|DuplicateObject|already exists|ERROR", logs), logs


def test_a_plain_postgresql_instance_url_runs_and_records_the_run(
    tmp_path: Path, etl_env: dict[str, str], databases: Databases
) -> None:
    """`postgresql://` as most tools write it: dagster-postgres needs psycopg2, and gets it."""
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "shop.yaml").write_text(yaml.safe_dump(PIPELINE))
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(3, ny(2025, 1, 6), dt.timedelta(hours=1)))
    instance_db = databases.new("etl_instance")
    assert instance_db.startswith("postgresql://")
    env = {**os.environ, **etl_env, "ETL_PIPELINES_DIR": str(pipelines), "ETL_INSTANCE_URL": instance_db}
    done = subprocess.run(
        [sys.executable, "-m", "etl_assets.cli", "run", "shop", "--partition", "2025-01-05", "--json"],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "success"
    with psycopg.connect(instance_db) as conn:
        assert conn.execute("SELECT count(*) FROM runs WHERE status = 'SUCCESS'").fetchone() == (1,)

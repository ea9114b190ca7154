"""Helpers the tests share: databases, the test pipeline, its orders table and in-process runs."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import signal
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Iterator, Mapping
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import psycopg
import yaml
from click.testing import CliRunner
from psycopg import sql

from etl_assets.cli import main as cli_main
from etl_assets.io.storage import ParquetIOManagerResource
from etl_assets.orchestration.assets import build_pipeline_assets
from etl_assets.spec import PipelineSpec, parse_pipeline
from etl_assets.warehouses.postgres import WarehouseResource

NY = ZoneInfo("America/New_York")

PG_HOST = os.environ.get("ETL_TEST_PG_HOST", "127.0.0.1")
PG_PORT = os.environ.get("ETL_TEST_PG_PORT", "5432")
ADMIN_URL = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"


def db_url(name: str) -> str:
    return f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{name}"


class Databases:
    """Creates uniquely named databases and drops them when the test ends."""

    def __init__(self) -> None:
        self.created: list[str] = []

    def new(self, prefix: str = "etl_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        return db_url(name)

    def drop_all(self) -> None:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            for name in self.created:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def make_spec(**overrides: Any) -> PipelineSpec:
    """A small weekly pipeline with one PostgreSQL source; tests override what they vary."""
    data: dict[str, Any] = {
        "name": "shop",
        "owners": ["team:data"],
        "timezone": "America/New_York",
        "partitions": {"cadence": "weekly", "start": "2025-01-05"},
        "sources": [
            {
                "name": "orders",
                "kind": "postgres",
                "connection": {"url": "${TEST_SOURCE_URL}"},
                "table": "src.orders",
                "timestamp_column": "updated_at",
                "primary_key": ["order_id"],
                "columns": [
                    {"name": "order_id", "type": "integer", "nullable": False},
                    {"name": "customer", "type": "string"},
                    {"name": "amount", "type": "float"},
                    {"name": "updated_at", "type": "timestamp"},
                ],
                "load": {"target": "mart.orders", "strategy": "upsert"},
                "checks": [{"type": "unique", "severity": "error"}],
            }
        ],
        "report": {
            "kpis": [
                {
                    "name": "revenue",
                    "sql": "SELECT count(*) AS orders, sum(amount) AS revenue FROM mart.orders "
                    "WHERE updated_at >= :window_start AND updated_at < :window_end",
                }
            ]
        },
    }
    data.update(overrides)
    return parse_pipeline(data, "test.yaml")


def spec_yaml(spec_dict: dict[str, Any]) -> str:
    return yaml.safe_dump(spec_dict, sort_keys=False)


ORDERS_DDL = """
CREATE SCHEMA IF NOT EXISTS src;
CREATE TABLE src.orders (
    order_id bigint PRIMARY KEY,
    customer text,
    amount numeric(10,2),
    updated_at timestamptz NOT NULL
);
"""


def create_orders(url: str, rows: list[tuple]) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(ORDERS_DDL)
        with conn.cursor().copy("COPY src.orders FROM STDIN") as copy:
            for r in rows:
                copy.write_row(r)


def query(url: str, text: str, params: Any = None) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(text, params).fetchall()


def ny(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=NY)


def materialize(spec, etl_env: dict[str, str], instance, **kwargs: Any) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        build_pipeline_assets(spec),
        instance=instance,
        resources={
            "parquet_io": ParquetIOManagerResource(base_path=etl_env["ETL_STORAGE_DIR"]),
            "warehouse": WarehouseResource(url=etl_env["ETL_WAREHOUSE_URL"]),
        },
        raise_on_error=False,
        **kwargs,
    )


def meta(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict[str, Any]:
    mats = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    assert mats, f"{key.to_user_string()} was not materialized"
    md = mats[-1].step_materialization_data.materialization.metadata
    return {k: getattr(v, "value", v) for k, v in md.items()}


def orders_rows(n: int, start: dt.datetime, step: dt.timedelta) -> list[tuple]:
    return [(i, f"cust{i % 7}", f"{i}.50", start + i * step) for i in range(1, n + 1)]


def run_assets(spec: PipelineSpec, etl_env: dict[str, str], instance: dg.DagsterInstance, partition: str) -> dg.ExecuteInProcessResult:
    """Materialize every asset of `spec` for one partition, in process."""
    return materialize(spec, etl_env, instance, partition_key=partition)


# The test pipeline as a spec file holds it, with a Monday-morning schedule: for tests that run
# it through a webserver, the daemon or the job API.
SCHEDULED_SHOP: dict[str, Any] = {
    "name": "shop",
    "owners": ["team:data"],
    "timezone": "America/New_York",
    "partitions": {"cadence": "weekly", "start": "2025-01-05"},
    "schedule": {"at": "06:00", "day_of_week": "monday"},
    "sources": [
        {
            "name": "orders",
            "kind": "postgres",
            "connection": {"url": "${TEST_SOURCE_URL}"},
            "table": "src.orders",
            "timestamp_column": "updated_at",
            "primary_key": ["order_id"],
            "load": {"target": "mart.orders"},
        }
    ],
}


@contextlib.contextmanager
def _process_state(env: Mapping[str, str], cwd: str | os.PathLike[str] | None) -> Iterator[None]:
    """This process's environment is exactly `env` (and its directory `cwd`) until the block
    ends, as a child process would see them; whatever a command exported is undone after."""
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.clear()
    os.environ.update(env)
    if cwd is not None:
        os.chdir(cwd)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)


def run_cli(env: Mapping[str, str], *args: str, cwd: str | os.PathLike[str] | None = None) -> subprocess.CompletedProcess:
    """`etl-assets ARGS` in this process: the same command, exit code, stdout and stderr as a
    subprocess gives, without paying for Python, Dagster and great-expectations to start again.

    An exception the command lets escape is printed to stderr with exit code 1, as the
    interpreter would, so a test asserting "no traceback" still sees one. Tests of the process
    itself (start-up, signals, terminals, `--version`) start a real one.
    """
    with _process_state(env, cwd):
        result = CliRunner().invoke(cli_main, list(args), prog_name="etl-assets", catch_exceptions=True)
    stderr = result.stderr
    if result.exc_info is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return subprocess.CompletedProcess(["etl-assets", *args], result.exit_code, result.stdout, stderr)


@contextlib.contextmanager
def writes_to_table_wait(url: str, table: str) -> Iterator[None]:
    """Hold `table` in EXCLUSIVE mode: reads pass, a load's first write into it waits. A load can
    then be killed at a known point, inside its transaction with its rows staged, without
    racing its commit."""
    with psycopg.connect(url) as conn:
        conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(*table.split("."))))
        yield
        conn.rollback()


def kill_when_it_waits_to_write(url: str, proc: subprocess.Popen, application_name: str) -> None:
    """SIGKILL `proc` once its session (named `application_name`, in `url`'s database: parallel
    tests load into their own) waits for a table lock."""
    deadline = time.monotonic() + 120
    waiting = 0
    while time.monotonic() < deadline and proc.poll() is None and not waiting:
        waiting = query(
            url, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = %s AND state = 'active' AND wait_event_type = 'Lock'", (application_name,),
        )[0][0]
        if not waiting:
            time.sleep(0.01)  # a poll interval, not synchronization
    assert waiting, "the load never reached its first write into the target"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def wait_session_gone(url: str, application_name: str) -> None:
    """Wait until the server has noticed the dead client and rolled its transaction back."""
    deadline = time.monotonic() + 60
    count = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
             "AND application_name = %s")
    while time.monotonic() < deadline:
        if not query(url, count, (application_name,))[0][0]:
            return
        time.sleep(0.02)  # a poll interval, not synchronization
    raise AssertionError("the killed load's session never ended")


def run_script_here(script: str, *argv: str) -> list[str]:
    """Run a `python -c` script in this process (its `sys.argv[1:]` = `argv`) and return its
    stdout lines: the loads around a killed one need no process start of their own."""
    saved = sys.argv
    out = io.StringIO()
    sys.argv = ["-c", *argv]
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(script, "<script>", "exec"), {"__name__": "__main__"})
    finally:
        sys.argv = saved
    return out.getvalue().splitlines()

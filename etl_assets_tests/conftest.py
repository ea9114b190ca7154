"""Shared fixtures: throwaway databases on the real PostgreSQL server, storage, specs."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql

from etl_assets.spec import PipelineSpec, parse_pipeline
from etl_assets_tests.stubs import slack_stub, smtp_stub  # noqa: F401  (shared fixtures)

# The session's one browser, for e2e/ and api/ alike.
pytest_plugins = ["etl_assets_tests.browser"]

PG_HOST = os.environ.get("ETL_TEST_PG_HOST", "127.0.0.1")
PG_PORT = os.environ.get("ETL_TEST_PG_PORT", "5432")
ADMIN_URL = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A skipped test is a failed test here: every service and extra the suite needs is installed by CI."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, which this suite does not allow: {reason}"


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


@pytest.fixture
def databases() -> Iterator[Databases]:
    dbs = Databases()
    yield dbs
    dbs.drop_all()


@pytest.fixture
def warehouse_url(databases: Databases) -> str:
    return databases.new("etl_wh")


@pytest.fixture
def source_url(databases: Databases) -> str:
    return databases.new("etl_src")


@pytest.fixture
def etl_env(tmp_path: Path, warehouse_url: str, source_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment a run sees: storage in tmp, a fresh warehouse and source database."""
    env = {
        "ETL_HOME": str(tmp_path / "home"),
        "ETL_STORAGE_DIR": str(tmp_path / "storage"),
        "ETL_WAREHOUSE_URL": warehouse_url,
        "TEST_SOURCE_URL": source_url,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


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


@pytest.fixture
def etl_cli(etl_env: dict[str, str], tmp_path: Path):
    """Run `etl-assets ARGS` as a user does, in a subprocess seeing the test's environment.

    Specs written with `write_spec` are the pipelines it knows (ETL_PIPELINES_DIR).
    """
    import subprocess
    import sys

    pipelines = tmp_path / "pipelines"
    pipelines.mkdir(exist_ok=True)
    env = {**os.environ, **etl_env, "ETL_PIPELINES_DIR": str(pipelines)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "etl_assets.cli", *args], env=env, capture_output=True, text=True, timeout=600
        )

    def write_spec(spec: PipelineSpec) -> None:
        data = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
        (pipelines / f"{spec.name}.yaml").write_text(spec_yaml(data))

    run.write_spec = write_spec  # type: ignore[attr-defined]
    return run

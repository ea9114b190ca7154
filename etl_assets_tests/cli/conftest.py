"""Fixtures for the operations commands: a weekly pipeline with one week of bad data, a real
webserver whose daemon starts when a test says so, and the CLI as a user runs it."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from etl_assets_tests.dagster_services import BIN, ROOT, DagsterServices
from etl_assets_tests.helpers import Databases, create_orders, run_cli

NY = ZoneInfo("America/New_York")
WEEKS = ["2025-03-02", "2025-03-09", "2025-03-16", "2025-03-23", "2025-03-30", "2025-04-06"]
# Its one order has an amount the blocking check refuses, so every run of this week fails.
BAD_WEEK = "2025-03-16"
BAD_ORDER = 300

PIPELINE = {
    "name": "shop",
    "owners": ["team:data"],
    "timezone": "America/New_York",
    "partitions": {"cadence": "weekly", "start": "2025-01-05"},
    "schedule": {"at": "06:00", "day_of_week": "monday", "enabled": False},
    "sources": [
        {
            "name": "orders",
            "kind": "postgres",
            "connection": {"url": "${TEST_SOURCE_URL}"},
            "table": "src.orders",
            "timestamp_column": "updated_at",
            "primary_key": ["order_id"],
            "load": {"target": "mart.orders"},
            "checks": [{"type": "between", "column": "amount", "min": 0, "max": 100, "severity": "error"}],
        }
    ],
}


def week_rows() -> list[tuple]:
    """Three orders in each week of WEEKS; the bad week's first order is out of range."""
    rows = []
    for w, key in enumerate(WEEKS):
        start = dt.datetime.fromisoformat(key).replace(tzinfo=NY) + dt.timedelta(days=1)
        for i in range(3):
            order_id = 100 * (w + 1) + i
            amount = "999.00" if order_id == BAD_ORDER else f"{10 + i}.50"
            rows.append((order_id, f"cust{i}", amount, start + dt.timedelta(hours=i)))
    return rows


@pytest.fixture
def shop_env(tmp_path: Path, etl_env: dict[str, str], databases: Databases) -> dict[str, str]:
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "shop.yaml").write_text(yaml.safe_dump(PIPELINE))
    create_orders(etl_env["TEST_SOURCE_URL"], week_rows())
    return {
        **etl_env,
        "ETL_PIPELINES_DIR": str(pipelines),
        "ETL_INSTANCE_URL": databases.new("etl_instance").replace("postgresql://", "postgresql+psycopg2://"),
    }


@pytest.fixture
def webserver(tmp_path: Path, shop_env: dict[str, str]) -> Iterator[DagsterServices]:
    """The webserver alone: launched runs stay QUEUED until `start_daemon` is called."""
    with DagsterServices(tmp_path, shop_env, daemon=False) as s:
        yield s


@pytest.fixture
def start_daemon() -> Callable[[DagsterServices], None]:
    """Start `dagster-daemon` next to services started without one; stopped with them."""

    def start(services: DagsterServices) -> None:
        out = open(services.logs / "daemon.log", "ab")  # noqa: SIM115 - closed with the process
        services.procs.append(
            subprocess.Popen(
                [str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
                cwd=ROOT, env=services.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        )

    return start


@pytest.fixture
def ops_cli() -> Callable[..., subprocess.CompletedProcess]:
    """`etl-assets ARGS` with environment `env`, in this process (`run_cli`)."""

    def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
        return run_cli({**os.environ, **env}, *args, cwd=ROOT)

    return run

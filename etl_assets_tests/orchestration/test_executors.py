"""Where a run's steps execute: the run's own process by default, a process each on request."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from etl_assets.core.keys import asset_key
from etl_assets.definitions import build_defs
from etl_assets.orchestration.executors import PRELOAD
from etl_assets.spec import PipelineSpec, parse_pipeline
from etl_assets_tests.helpers import SCHEDULED_SHOP, create_orders, ny, orders_rows, query

WEEK = "2025-01-05"
ROOT = Path(__file__).resolve().parents[2]


def shop(**extra: Any) -> dict[str, Any]:
    return {**SCHEDULED_SHOP, "schedule": {"enabled": False}, **extra}


def spec(**extra: Any) -> PipelineSpec:
    return parse_pipeline(shop(**extra), "shop.yaml")


def test_a_pipeline_names_its_executor_and_the_rest_use_the_default() -> None:
    default = build_defs([spec()])
    assert default.resolve_job_def("shop_job").executor_def.name == "in_process"
    # The UI's "Materialize" runs an implicit asset job: it gets the code location's default.
    assert default.resolve_implicit_global_asset_job_def().executor_def.name == "in_process"
    multi = build_defs([spec(executor="multiprocess")]).resolve_job_def("shop_job")
    assert multi.executor_def.name == "multiprocess"
    assert {"etl_assets.definitions", "great_expectations"} <= set(PRELOAD)


@pytest.mark.parametrize("executor", [None, "multiprocess"])
def test_steps_run_in_the_run_process_unless_the_pipeline_asks_for_processes(
    executor: str | None, tmp_path: Path, etl_env: dict[str, str]
) -> None:
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(5, ny(2025, 1, 6), dt.timedelta(hours=1)))
    (tmp_path / "shop.yaml").write_text(yaml.safe_dump(shop(**({"executor": executor} if executor else {}))))
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, **etl_env, "ETL_PIPELINES_DIR": str(tmp_path), "DAGSTER_HOME": str(home),
           "PYTHONPATH": str(ROOT)}
    # A fresh interpreter, as a run worker is: step processes fork from its forkserver.
    done = subprocess.run([sys.executable, "-c", RUN_PY, WEEK], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["success"] and asset_key("shop", "loaded", "orders").to_user_string() in out["materialized"]
    assert query(etl_env["ETL_WAREHOUSE_URL"], "SELECT count(*) FROM mart.orders") == [(5,)]
    if executor is None:
        assert out["step_pids"] == [out["pid"]] * 5, "every step runs in the run's own process"
    else:
        assert out["pid"] not in out["step_pids"] and len(set(out["step_pids"])) == 5, "a process per step"


# One run of shop_job rebuilt from its code (so step processes can rebuild it too); prints
# what the test checks as one JSON line.
RUN_PY = """
import json, os, sys
import dagster as dg

job = dg.build_reconstructable_job("etl_assets_tests.orchestration.executor_jobs", "shop_job")
with dg.DagsterInstance.get() as instance:
    result = dg.execute_job(job, instance=instance, tags={"dagster/partition": sys.argv[1]})
    starts = instance.get_records_for_run(result.run_id, of_type=dg.DagsterEventType.STEP_START).records
    print(json.dumps({
        "success": result.success, "pid": os.getpid(),
        "step_pids": [r.event_log_entry.dagster_event.pid for r in starts],
        "materialized": sorted(e.asset_key.to_user_string() for e in result.get_asset_materialization_events()),
    }))
"""

"""Memory limits per step process: a step past `resources.memory_mb` (or ETL_MEMORY_MB) fails
with one sentence, is recorded as `memory_limit`, is not retried and alerts once."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import psutil
import pytest
import yaml

from etl_assets.io.storage import ParquetIOManagerResource
from etl_assets.ops.notify import SlackNotifier
from etl_assets.orchestration.assets import asset_key, build_pipeline_assets
from etl_assets.orchestration.memory import bounded
from etl_assets.orchestration.sensors import handle_run_finished
from etl_assets.spec import PipelineSpec, SpecError, load_pipeline_file, parse_pipeline
from etl_assets.warehouses.postgres import WarehouseResource
from etl_assets_tests.dagster_services import ROOT
from etl_assets_tests.helpers import query

WEEK = "2025-03-09"
# Rows of 32 kB each: 20,000 of them are about 640 MB of text, far past any limit set below;
# 10 of them are a third of a megabyte.
BIG, SMALL = 20_000, 10
HEADROOM_MB = 300
GENEROUS_MB = 4096


def pipeline(rows: int, slack_url: str, memory_mb: int | None = None, executor: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "shop",
        **({"executor": executor} if executor else {}),
        "timezone": "America/New_York",
        "partitions": {"cadence": "weekly", "start": "2025-01-05"},
        # Retries are allowed, so a memory failure that was retried would show.
        "retries": {"max": 2, "delay_seconds": 1},
        "notify": {"slack": {"channel": "#data", "on": ["failure", "success"], "api_url": slack_url}},
        "sources": [{
            "name": "blobs", "kind": "postgres", "connection": {"url": "${TEST_SOURCE_URL}"},
            "query": f"SELECT g AS id, repeat(md5(g::text), 1000) AS payload FROM generate_series(1, {rows}) AS g",
            "mode": "full", "primary_key": ["id"], "load": {"target": "mart.blobs"},
        }],
    }
    if memory_mb is not None:
        data["resources"] = {"memory_mb": memory_mb}
    return data


def rss_mb() -> int:
    return psutil.Process().memory_info().rss >> 20


def materialize(spec: PipelineSpec, etl_env: dict[str, str], instance: dg.DagsterInstance) -> str:
    result = dg.materialize(
        build_pipeline_assets(spec),
        instance=instance,
        partition_key=WEEK,
        tags={"etl/pipeline": spec.name},
        resources={
            "parquet_io": ParquetIOManagerResource(base_path=etl_env["ETL_STORAGE_DIR"]),
            "warehouse": WarehouseResource(url=etl_env["ETL_WAREHOUSE_URL"]),
        },
        raise_on_error=False,
    )
    return result.run_id


def events(instance: dg.DagsterInstance, run_id: str, kind: dg.DagsterEventType) -> list[Any]:
    return [e for e in instance.all_logs(run_id) if e.dagster_event and e.dagster_event.event_type == kind]


def failure_text(instance: dg.DagsterInstance, run_id: str) -> str:
    failures = events(instance, run_id, dg.DagsterEventType.STEP_FAILURE)
    assert len(failures) == 1, [e.step_key for e in failures]
    data = failures[0].dagster_event.step_failure_data
    return data.user_failure_data.description if data.user_failure_data else data.error.message


def assert_memory_failure(record: dict[str, Any], text: str, instance, run_id: str, limit: int) -> None:
    assert f"shop/blobs partition {WEEK}: memory limit of {limit} MB exceeded in step shop__raw__blobs" in text
    assert "Traceback" not in text
    assert record["status"] == "failed" and record["error_type"] == "memory_limit", record
    assert f"memory limit of {limit} MB exceeded in step shop__raw__blobs" in record["error_summary"]
    assert events(instance, run_id, dg.DagsterEventType.STEP_UP_FOR_RETRY) == []  # never retried


def test_a_step_past_the_memory_limit_fails_in_process_and_one_under_it_succeeds(
    etl_env: dict[str, str], slack_stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ETL_MEMORY_MB", "1000000")  # the pipeline's own limit wins over the default
    wh = etl_env["ETL_WAREHOUSE_URL"]
    slack = SlackNotifier(token="xoxb-memory", base_url=slack_stub.base_url)
    limit = rss_mb() + HEADROOM_MB
    address_space = resource.getrlimit(resource.RLIMIT_AS)
    with dg.instance_for_test() as instance:
        small = parse_pipeline(pipeline(SMALL, slack_stub.base_url, limit), "shop.yaml")
        ok = handle_run_finished(instance, materialize(small, etl_env, instance), {"shop": small}, warehouse_url=wh, slack=slack)
        assert ok["status"] == "success", ok
        assert query(wh, "SELECT count(*) FROM mart.blobs") == [(SMALL,)]

        big = parse_pipeline(pipeline(BIG, slack_stub.base_url, limit), "shop.yaml")
        run_id = materialize(big, etl_env, instance)
        text = failure_text(instance, run_id)
        record = handle_run_finished(instance, run_id, {"shop": big}, warehouse_url=wh, slack=slack)
        assert_memory_failure(record, text, instance, run_id, limit)
    # What was loaded before is untouched, and the CLI process got its address space back.
    assert query(wh, "SELECT count(*) FROM mart.blobs") == [(SMALL,)]
    assert resource.getrlimit(resource.RLIMIT_AS) == address_space
    texts = [p["text"] for p in slack_stub.posts]
    assert len(texts) == 2 and "FAILED" not in texts[0], texts
    assert "FAILED" in texts[1] and f"memory limit of {limit} MB exceeded in step shop__raw__blobs" in texts[1]


def _bytes(n: int) -> Any:
    return bytearray(n)


def _numpy(n: int) -> Any:
    import numpy as np

    return np.ones(n, dtype=np.uint8)


def _arrow(n: int) -> Any:
    import pyarrow as pa

    return pa.allocate_buffer(n)


@pytest.mark.parametrize("allocate", [_bytes, _numpy, _arrow], ids=["bytearray", "numpy", "pyarrow"])
def test_one_allocation_past_the_headroom_is_refused_before_it_is_touched(etl_env: dict[str, str], allocate) -> None:
    """One C call asking for three times the limit: the watchdog could only see it once the
    memory was filled, so the address-space cap refuses it and it is told the same way."""
    limit = rss_mb() + HEADROOM_MB
    spec = parse_pipeline(pipeline(SMALL, "http://127.0.0.1:9", limit), "shop.yaml")

    @dg.asset(key=asset_key("shop", "hog"), partitions_def=dg.DailyPartitionsDefinition("2025-03-01"))
    @bounded(spec)
    def hog(context) -> None:  # a string annotation here is not one Dagster accepts
        allocate(3 * limit << 20)

    address_space = resource.getrlimit(resource.RLIMIT_AS)
    with dg.instance_for_test() as instance:
        result = dg.materialize([hog], instance=instance, partition_key="2025-03-09", raise_on_error=False)
        text = failure_text(instance, result.run_id)
    assert text.startswith(f"shop partition 2025-03-09: memory limit of {limit} MB exceeded in step shop__hog "), text
    peak = int(text.split("peak resident memory ")[1].split(" MB")[0])
    assert peak < limit, text  # refused, not filled
    assert resource.getrlimit(resource.RLIMIT_AS) == address_space


def test_a_limit_that_is_not_a_number_of_megabytes_is_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETL_MEMORY_MB", "2GB")
    spec = parse_pipeline(pipeline(SMALL, "http://127.0.0.1:9"), "shop.yaml")

    @dg.asset(key=asset_key("shop", "hog"), partitions_def=dg.DailyPartitionsDefinition("2025-03-01"))
    @bounded(spec, "blobs")
    def hog(context) -> None:
        pass

    with dg.instance_for_test() as instance:
        result = dg.materialize([hog], instance=instance, partition_key="2025-03-09", raise_on_error=False)
        assert failure_text(instance, result.run_id) == (
            "shop/blobs: ETL_MEMORY_MB must be a whole number of megabytes above 0, not '2GB'"
        )
    with pytest.raises(SpecError, match=r"resources\.memory_mb: .*greater than 0"):
        parse_pipeline(pipeline(SMALL, "http://127.0.0.1:9", 0), "shop.yaml")


DEFS_PY = """
from pathlib import Path
from etl_assets.definitions import build_defs
from etl_assets.spec import load_pipeline_file

defs = build_defs([load_pipeline_file(Path(__file__).with_name("pipeline.yaml"))])
"""

# One run of shop_job through its executor (the pipeline asks for multiprocess: forkserver), in
# a fresh interpreter so its step processes see this environment; prints the run id.
RUN_PY = """
import sys
import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository

job = ReconstructableRepository.for_file(sys.argv[1], "defs", working_directory=sys.argv[2]).get_reconstructable_job("shop_job")
with dg.DagsterInstance.get() as instance:
    result = dg.execute_job(job, instance=instance, tags={"dagster/partition": sys.argv[3], "etl/trigger": "manual"})
    print(result.run_id)
"""


@pytest.mark.slow
def test_the_instance_default_limits_each_step_process_of_the_multiprocess_executor(
    tmp_path: Path, etl_env: dict[str, str], databases, slack_stub
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    # Runs and events in PostgreSQL, as deployed: step processes write events concurrently.
    instance_url = databases.new("etl_instance").replace("postgresql://", "postgresql+psycopg2://")
    (home / "dagster.yaml").write_text(yaml.safe_dump({"storage": {"postgres": {"postgres_url": instance_url}}}))
    (tmp_path / "defs.py").write_text(DEFS_PY)
    env = {**os.environ, **etl_env, "DAGSTER_HOME": str(home), "SLACK_BOT_TOKEN": "xoxb-memory",
           "PYTHONPATH": str(ROOT), "GX_ANALYTICS_ENABLED": "false", "DAGSTER_DISABLE_TELEMETRY": "1"}
    env.pop("ETL_MEMORY_MB", None)

    def run(rows: int, memory_mb: int | None) -> str:
        (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(pipeline(rows, slack_stub.base_url, executor="multiprocess")))
        extra = {"ETL_MEMORY_MB": str(memory_mb)} if memory_mb else {}
        done = subprocess.run(
            [sys.executable, "-c", RUN_PY, str(tmp_path / "defs.py"), str(ROOT), WEEK],
            env={**env, **extra}, capture_output=True, text=True, timeout=600, check=False,
        )
        assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-4000:])
        return done.stdout.strip().splitlines()[-1]

    wh = etl_env["ETL_WAREHOUSE_URL"]
    slack = SlackNotifier(token="xoxb-memory", base_url=slack_stub.base_url)
    # A run under a (generous) limit succeeds, and measures what a step process holds reading a
    # few rows: the baseline for the limit the large run then exceeds.
    under = run(SMALL, GENEROUS_MB)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        mats = events(instance, under, dg.DagsterEventType.ASSET_MATERIALIZATION)
        peaks = [m.asset_materialization.metadata["etl/peak_rss_mb"].value for m in mats
                 if m.asset_materialization.asset_key == asset_key("shop", "raw", "blobs")]
        assert peaks and instance.get_run_by_id(under).status == dg.DagsterRunStatus.SUCCESS
    limit = int(max(peaks)) + HEADROOM_MB

    over = run(BIG, limit)
    spec = load_pipeline_file(tmp_path / "pipeline.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_run_by_id(over).status == dg.DagsterRunStatus.FAILURE
        text = failure_text(instance, over)
        record = handle_run_finished(instance, over, {"shop": spec}, warehouse_url=wh, slack=slack)
        assert_memory_failure(record, text, instance, over, limit)
    assert query(wh, "SELECT count(*) FROM mart.blobs") == [(SMALL,)]
    assert len(slack_stub.posts) == 1 and "FAILED" in slack_stub.posts[0]["text"]

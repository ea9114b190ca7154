"""The run-finished handler: auto-pause after repeated scheduled failures, no alert before a retry."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
import yaml

from etl_assets.dagster_internal import run_scheduler_iteration
from etl_assets.definitions import build_defs
from etl_assets.orchestration.sensors import handle_run_finished
from etl_assets.spec import load_pipeline_file
from etl_assets_tests.helpers import create_orders, make_spec, ny, orders_rows, query

DEFS_PY = """
from pathlib import Path
from etl_assets.definitions import build_defs
from etl_assets.spec import load_pipeline_file

defs = build_defs([load_pipeline_file(Path(__file__).with_name("pipeline.yaml"))])
"""


@pytest.fixture
def location(tmp_path: Path, etl_env, slack_stub):
    """A code location for the `shop` pipeline whose schedule has a stored (running) state."""
    data = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
    data["schedule"] = {"at": "06:00", "day_of_week": "monday"}
    data["retries"] = {"max": 0}
    data["failure_threshold"] = 3
    data["catchup"] = False
    data["notify"] = {"slack": {"channel": "#data", "on": ["failure", "paused", "success"], "api_url": slack_stub.base_url}}
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "defs.py").write_text(DEFS_PY)
    return tmp_path


def scheduled_run(instance: dg.DagsterInstance, spec: Any, partition: str, extra: dict[str, str] | None = None) -> str:
    job = build_defs([spec]).resolve_job_def("shop_job")
    result = job.execute_in_process(
        instance=instance,
        partition_key=partition,
        tags={"dagster/schedule_name": "shop_schedule", **(extra or {})},
        raise_on_error=False,
    )
    return result.run_id


def test_three_scheduled_failures_pause_and_a_success_resets(location: Path, etl_env, slack_stub, monkeypatch) -> None:
    from etl_assets.ops.notify import SlackNotifier

    spec = load_pipeline_file(location / "pipeline.yaml")
    slack = SlackNotifier(token="xoxb-pause-test", base_url=slack_stub.base_url)
    wh = etl_env["ETL_WAREHOUSE_URL"]
    with dg.instance_for_test() as instance:
        # One daemon tick stores the schedule's state (the source table does not exist yet,
        # so every run fails until it is created).
        run_scheduler_iteration(instance, location / "defs.py", dt.datetime(2025, 3, 17, 6, 30, tzinfo=ny(2025, 3, 17).tzinfo))
        def handle(run_id: str) -> dict:
            return handle_run_finished(instance, run_id, {"shop": spec}, warehouse_url=wh, slack=slack)

        for k in ("2025-03-02", "2025-03-09"):
            assert handle(scheduled_run(instance, spec, k))["status"] == "failed"
        create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(3, ny(2025, 3, 16, 1), dt.timedelta(hours=1)))
        assert handle(scheduled_run(instance, spec, "2025-03-16"))["status"] == "success"  # resets the count
        with psycopg.connect(etl_env["TEST_SOURCE_URL"]) as conn:
            conn.execute("ALTER TABLE src.orders RENAME TO gone")  # the source breaks again
        for k in ("2025-03-02", "2025-03-09"):
            record = handle(scheduled_run(instance, spec, k))
            assert record["status"] == "failed" and record["notes"] == []
        state = next(s for s in instance.all_instigator_state() if s.instigator_name == "shop_schedule")
        assert state.is_running  # two failures after a success: not yet

        record = handle(scheduled_run(instance, spec, "2025-03-23"))
        assert record["status"] == "failed"
        assert record["notes"] == [
            "shop is paused after 3 consecutive failed scheduled runs. Resume with the schedule "
            "toggle in the UI, `dagster schedule start shop_schedule` or `etl-assets jobs enable shop`."
        ]
        state = next(s for s in instance.all_instigator_state() if s.instigator_name == "shop_schedule")
        assert not state.is_running
        assert query(wh, "SELECT status FROM etl_meta.pipeline_state WHERE pipeline = 'shop'") == [("paused",)]
        texts = [p["text"] for p in slack_stub.posts]
        assert sum("PAUSED" in t for t in texts) == 1
        assert sum("FAILED" in t for t in texts) == 5


def test_a_run_that_will_be_retried_is_recorded_without_alert(location: Path, etl_env, slack_stub) -> None:
    from etl_assets.ops.notify import SlackNotifier

    spec = load_pipeline_file(location / "pipeline.yaml")
    slack = SlackNotifier(token="xoxb-retry-test", base_url=slack_stub.base_url)
    with dg.instance_for_test() as instance:
        run_id = scheduled_run(instance, spec, "2025-03-09")
        instance.add_run_tags(run_id, {"dagster/will_retry": "true"})
        record = handle_run_finished(instance, run_id, {"shop": spec}, warehouse_url=etl_env["ETL_WAREHOUSE_URL"], slack=slack)
    assert record["status"] == "failed" and record["will_retry"] is True
    assert slack_stub.posts == []
    assert query(etl_env["ETL_WAREHOUSE_URL"], "SELECT run_id, status FROM etl_meta.runs") == [(run_id, "failed")]


def test_catch_up_is_recorded_and_mentioned_in_the_next_alert_once(location: Path, etl_env, slack_stub) -> None:
    from etl_assets.ops.notify import SlackNotifier

    spec = load_pipeline_file(location / "pipeline.yaml")
    slack = SlackNotifier(token="xoxb-missed", base_url=slack_stub.base_url)
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(3, ny(2025, 3, 2, 1), dt.timedelta(hours=1)))
    tags = {
        "etl/tick": "2025-03-24T06:00:00-04:00",
        "etl/caught_up": "2025-03-02,2025-03-09",
        "etl/outside_window": "2025-02-16,2025-02-23",
    }
    wh = etl_env["ETL_WAREHOUSE_URL"]
    with dg.instance_for_test() as instance:
        notes = []
        for k in ("2025-03-02", "2025-03-09", "2025-03-16"):
            record = handle_run_finished(
                instance, scheduled_run(instance, spec, k, tags), {"shop": spec}, warehouse_url=wh, slack=slack
            )
            notes.append(record["notes"])
    expected = (
        "2 missed weeks were caught up after downtime; 2 older weeks are outside the catch-up "
        "window: run `etl-assets run shop --from 2025-02-16 --to 2025-02-23`"
    )
    assert notes == [[expected], [], []]
    assert query(wh, "SELECT pipeline, tick, caught_up, outside_window FROM etl_meta.missed_ticks") == [
        ("shop", "2025-03-24T06:00:00-04:00", ["2025-03-02", "2025-03-09"], ["2025-02-16", "2025-02-23"])
    ]
    texts = [json.dumps(p) for p in slack_stub.posts]
    assert sum("2 missed weeks were caught up" in t for t in texts) == 1

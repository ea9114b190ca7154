"""Run history: one handler, the same rows from the CLI path and the sensor path."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from etl_assets.definitions import build_defs
from etl_assets.orchestration.sensors import handle_run_finished
from etl_assets.warehouses.postgres import WarehouseResource
from etl_assets_tests.helpers import create_orders, make_spec, ny, orders_rows, query, run_assets


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def history_rows(url: str) -> tuple[list[tuple], list[tuple]]:
    with psycopg.connect(url) as conn:
        runs = conn.execute(
            "SELECT run_id, pipeline, partitions, trigger, started_at, finished_at, duration_s, status,"
            " error_type, error_summary, peak_rss_mb, cpu_s, retries, report_path, steps, notes"
            " FROM etl_meta.runs ORDER BY run_id"
        ).fetchall()
        sources = conn.execute("SELECT * FROM etl_meta.run_sources ORDER BY run_id, source").fetchall()
    return runs, sources


def finished_event(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterEvent:
    for entry in instance.all_logs(run_id):
        if entry.dagster_event and entry.dagster_event.event_type in (
            dg.DagsterEventType.RUN_SUCCESS,
            dg.DagsterEventType.RUN_FAILURE,
        ):
            return entry.dagster_event
    raise AssertionError("run did not finish")


def test_success_is_recorded_once_and_both_paths_agree(etl_env, instance) -> None:
    spec = make_spec()
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(40, ny(2025, 3, 9, 1), dt.timedelta(hours=3)))
    result = run_assets(spec, etl_env, instance, "2025-03-09")
    assert result.success
    wh = etl_env["ETL_WAREHOUSE_URL"]

    record = handle_run_finished(instance, result.run_id, {"shop": spec}, warehouse_url=wh)
    assert record["status"] == "success"
    runs, sources = history_rows(wh)
    assert len(runs) == 1 and len(sources) == 1
    run = runs[0]
    assert run[1:4] == ("shop", ["2025-03-09"], "manual")
    assert run[7] == "success" and run[8] is None
    assert run[6] > 0 and run[10] > 0  # duration and peak RSS were measured
    src = dict(zip(
        ["run_id", "source", "status", "rows_extracted", "rows_quarantined", "inserted", "updated",
         "unchanged", "deleted", "checks_passed", "checks_warned", "checks_failed", "checks", "inputs", "error"],
        sources[0],
    ))
    assert (src["status"], src["rows_extracted"], src["inserted"], src["updated"]) == ("success", 40, 40, 0)
    assert src["checks_passed"] == 1 and src["checks_failed"] == 0
    assert query(wh, "SELECT count(*) FROM mart.orders") == [(src["inserted"],)]
    assert "COPY" not in src["inputs"]["2025-03-09"]["query"]  # the bound SELECT, window included
    assert "2025-03-09 00:00:00-05:00" in src["inputs"]["2025-03-09"]["query"]
    assert src["inputs"]["2025-03-09"]["window_start"] == "2025-03-09T00:00:00-05:00"

    # The JSON run log holds the same record.
    log = Path(etl_env["ETL_STORAGE_DIR"]) / "shop" / "runs" / f"{result.run_id}.json"
    assert json.loads(log.read_text())["sources"]["orders"]["inserted"] == 40

    # The daemon path: the real success sensor, evaluated for the same run.
    defs = build_defs([spec])
    sensor = defs.get_sensor_def("etl_run_success_sensor")
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=finished_event(instance, result.run_id),
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(result.run_id),
        resources={"warehouse": WarehouseResource(url=wh)},
    )
    sensor(context)
    assert history_rows(wh) == (runs, sources)  # identical rows, still one per run and source


def test_failure_and_partial_are_explained(etl_env, instance, tmp_path: Path) -> None:
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "items.csv").write_text("sku,qty\nA,1\nB,two\n")
    base = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
    base["retries"] = {"max": 0}
    base["sources"].append(
        {
            "name": "items",
            "kind": "csv",
            "path": str(folder / "*.csv"),
            "mode": "full",
            "primary_key": ["sku"],
            "columns": [{"name": "sku"}, {"name": "qty", "type": "integer"}],
        }
    )
    spec = type(make_spec()).model_validate(base)
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(5, ny(2025, 3, 9, 1), dt.timedelta(hours=3)))
    result = run_assets(spec, etl_env, instance, "2025-03-09")
    assert not result.success
    wh = etl_env["ETL_WAREHOUSE_URL"]
    record = handle_run_finished(instance, result.run_id, {"shop": spec}, warehouse_url=wh)
    assert record["status"] == "partial"
    assert record["failing_source"] == "items"
    assert record["error_type"] == "CastError"
    assert record["error_summary"] == (
        "shop/items partition 2025-03-09: column 'qty': 1 row(s) cannot be read as integer, "
        "e.g. 'two' (first at row 2)"
    )
    assert record["sources"]["orders"]["status"] == "success"
    assert record["sources"]["orders"]["inserted"] == 5
    assert record["sources"]["items"]["status"] == "failed"
    # The report is rendered anyway, marked PARTIAL, and says what is missing.
    report = Path(record["report_path"]).with_suffix(".md").read_text()
    assert report.startswith("# shop report — PARTIAL")
    assert "> **PARTIAL**: items failed: shop/items partition 2025-03-09: column 'qty'" in report
    assert "| orders | success | 5 | 5 | 0 | 0 | 0 |" in report
    assert "| items | failed |" in report
    statuses = query(wh, "SELECT status, error_type FROM etl_meta.runs")
    assert statuses == [("partial", "CastError")]


def test_migrations_are_versioned_and_idempotent(warehouse_url) -> None:
    from etl_assets.ops import history

    with psycopg.connect(warehouse_url) as conn:
        assert history.migrate(conn) == len(history.MIGRATIONS)
        assert history.migrate(conn) == len(history.MIGRATIONS)
        versions = conn.execute("SELECT version FROM etl_meta.schema_version ORDER BY 1").fetchall()
    assert versions == [(v,) for v in range(1, len(history.MIGRATIONS) + 1)]


def test_both_paths_send_the_same_alert(etl_env, instance, slack_stub, monkeypatch) -> None:
    from etl_assets.ops.notify import SlackNotifier

    data = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
    data["notify"] = {"slack": {"channel": "#data", "on": ["success", "failure"], "api_url": slack_stub.base_url}}
    spec = type(make_spec()).model_validate(data)
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(12, ny(2025, 3, 9, 1), dt.timedelta(hours=3)))
    result = run_assets(spec, etl_env, instance, "2025-03-09")
    assert result.success
    wh = etl_env["ETL_WAREHOUSE_URL"]
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test-secret-token")
    slack = SlackNotifier(token="xoxb-test-secret-token", base_url=slack_stub.base_url)

    handle_run_finished(instance, result.run_id, {"shop": spec}, warehouse_url=wh,
                        webserver_url="http://127.0.0.1:3000", slack=slack)
    defs = build_defs([spec])
    sensor = defs.get_sensor_def("etl_run_success_sensor")
    monkeypatch.setenv("ETL_WEBSERVER_URL", "http://127.0.0.1:3000")
    sensor(
        dg.build_run_status_sensor_context(
            sensor_name=sensor.name,
            dagster_event=finished_event(instance, result.run_id),
            dagster_instance=instance,
            dagster_run=instance.get_run_by_id(result.run_id),
            resources={"warehouse": WarehouseResource(url=wh), "slack": slack},
        )
    )
    first, second = slack_stub.posts
    assert first["channel"] == "#data"
    assert first["text"] == second["text"] and first["blocks"] == second["blocks"]
    assert "SUCCESS" in first["text"] and "shop" in first["text"]
    assert f"http://127.0.0.1:3000/runs/{result.run_id}" in json.dumps(first["blocks"])
    assert "xoxb-test-secret-token" not in json.dumps(first)
    assert query(wh, "SELECT count(*) FROM etl_meta.runs") == [(1,)]


def recorded(url: str, run_id: str, status: str, started: str) -> None:
    """A run as the handler records it: its row and its source's row."""
    from etl_assets.ops import history

    with psycopg.connect(url) as conn:
        history.migrate(conn)
        conn.execute(
            "INSERT INTO etl_meta.runs (run_id, pipeline, partitions, trigger, started_at, status)"
            " VALUES (%s, 'shop', ARRAY['2025-03-09'], 'cli', %s, %s)", (run_id, started, status),
        )
        conn.execute(
            "INSERT INTO etl_meta.run_sources (run_id, source, status, inserted, updated) VALUES (%s, 'orders', %s, %s, 0)",
            (run_id, "failed" if status == "failed" else "success", 0 if status == "failed" else 2),
        )


def test_history_status_filters_say_what_they_match(etl_env, etl_cli) -> None:
    etl_cli.write_spec(make_spec())
    assert etl_cli("history", "shop").stdout.strip() == "no runs recorded for shop"
    wh = etl_env["ETL_WAREHOUSE_URL"]
    recorded(wh, "run-ok", "success", "2025-03-17T06:00:00+00:00")
    recorded(wh, "run-partial", "partial", "2025-03-18T06:00:00+00:00")
    recorded(wh, "run-failed", "failed", "2025-03-19T06:00:00+00:00")

    failed = etl_cli("history", "shop", "--status", "failed", "--json")
    assert failed.returncode == 0, failed.stderr
    assert [r["run_id"] for r in json.loads(failed.stdout)] == ["run-failed", "run-partial"]
    partial = etl_cli("history", "shop", "--status", "partial", "--json")
    assert [r["run_id"] for r in json.loads(partial.stdout)] == ["run-partial"]
    assert "partial" in etl_cli("history", "--help").stdout.split("--status", 1)[1].split("--since")[0]

    none = etl_cli("history", "shop", "--status", "canceled")
    assert (none.returncode, none.stdout.strip()) == (0, "no canceled runs for shop (3 runs recorded)")


def test_history_of_an_unknown_pipeline_is_an_error(etl_env, etl_cli) -> None:
    etl_cli.write_spec(make_spec())
    unknown = etl_cli("history", "nope")
    run = etl_cli("run", "nope", "--latest")
    assert run.returncode != 0
    assert unknown.returncode == run.returncode
    assert unknown.stderr.strip() == "Error: unknown pipeline 'nope' (pipelines: shop)"
    assert unknown.stdout == ""

"""Retention: the cut-off, the protected latest success, and a dry run that deletes nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from etl_assets.ops.retention import prune
from etl_assets.orchestration.sensors import handle_run_finished
from etl_assets_tests.helpers import create_orders, make_spec, ny, orders_rows, query, run_assets


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def files(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*") if p.is_file()}


def test_prune_keeps_latest_successes_and_honours_cutoff_and_dry_run(etl_env, instance) -> None:
    spec = make_spec()
    wh, storage = etl_env["ETL_WAREHOUSE_URL"], Path(etl_env["ETL_STORAGE_DIR"])
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(20, ny(2025, 3, 2, 1), dt.timedelta(hours=12)))
    specs = {"shop": spec}
    runs = {}
    for label, key in (("a1", "2025-03-02"), ("a2", "2025-03-02"), ("b", "2025-03-09")):
        result = run_assets(spec, etl_env, instance, key)
        assert result.success
        handle_run_finished(instance, result.run_id, specs, warehouse_url=wh)
        runs[label] = result.run_id
    broken = make_spec(sources=[{**spec.model_dump(by_alias=True, exclude_none=True, mode="json")["sources"][0], "table": "src.nope"}])
    failed = run_assets(broken, etl_env, instance, "2025-03-16")
    assert not failed.success
    handle_run_finished(instance, failed.run_id, specs, warehouse_url=wh)
    runs["failed"] = failed.run_id
    assert query(wh, "SELECT count(*) FROM etl_meta.runs") == [(4,)]
    before = files(storage)
    now = dt.datetime.now(dt.UTC)

    # Before the cut-off nothing is due.
    assert prune(instance, [spec], warehouse_url=wh, storage_dir=str(storage), now=now + dt.timedelta(days=10)) == []

    later = now + dt.timedelta(days=100)
    planned = prune(instance, [spec], warehouse_url=wh, storage_dir=str(storage), now=later, dry_run=True)
    dagster_runs = sorted(i.what for i in planned if i.kind == "dagster_run")
    assert dagster_runs == sorted([runs["a1"], runs["failed"]])
    assert sorted(i.what for i in planned if i.kind == "history") == sorted([runs["a1"], runs["failed"]])
    logs = {Path(i.what).name for i in planned if i.kind == "run_log"}
    assert logs == {f"{runs['a1']}.json", f"{runs['failed']}.json"}
    assert {i.kind for i in planned} == {"dagster_run", "history", "artifact", "run_log"}
    # A dry run deletes nothing.
    assert files(storage) == before
    assert query(wh, "SELECT count(*) FROM etl_meta.runs") == [(4,)]
    assert all(instance.get_run_by_id(r) is not None for r in runs.values())

    done = prune(instance, [spec], warehouse_url=wh, storage_dir=str(storage), now=later)
    assert [i.as_dict() for i in done] == [i.as_dict() for i in planned]
    assert instance.get_run_by_id(runs["a1"]) is None and instance.get_run_by_id(runs["failed"]) is None
    assert instance.get_run_by_id(runs["a2"]) is not None and instance.get_run_by_id(runs["b"]) is not None
    assert sorted(r[0] for r in query(wh, "SELECT run_id FROM etl_meta.runs")) == sorted([runs["a2"], runs["b"]])
    left = {Path(p).name for p in files(storage)}
    assert left == {f"{runs['a2']}.json", f"{runs['b']}.json"}
    # The warehouse's data is not retention's business.
    assert query(wh, "SELECT count(*) FROM mart.orders") == [(20,)]

"""The asset factory against real PostgreSQL: windows, idempotency, checks, report."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from etl_assets.core.partitions import partitions_def, window_for
from etl_assets.orchestration.assets import asset_key, build_pipeline_assets
from etl_assets.spec import parse_pipeline
from etl_assets_tests.helpers import (
    create_orders,
    make_spec,
    materialize,
    meta,
    ny,
    orders_rows,
    query,
)
from etl_assets_tests.stubs import JsonApi

NY = ZoneInfo("America/New_York")
UTC = dt.UTC


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


LOADED = asset_key("shop", "loaded", "orders")


def test_partition_load_is_idempotent(etl_env, instance) -> None:
    spec = make_spec()
    rows = orders_rows(100, ny(2025, 3, 9, 0, 30), dt.timedelta(minutes=90))  # all in week of 03-09
    create_orders(etl_env["TEST_SOURCE_URL"], rows)

    first = materialize(spec, etl_env, instance, partition_key="2025-03-09")
    assert first.success
    m = meta(first, LOADED)
    assert (m["inserted"], m["updated"], m["unchanged"]) == (100, 0, 0)
    wh = etl_env["ETL_WAREHOUSE_URL"]
    before = query(wh, "SELECT * FROM mart.orders ORDER BY order_id")
    assert len(before) == 100
    assert before[0][:3] == (1, "cust1", 1.5)

    second = materialize(spec, etl_env, instance, partition_key="2025-03-09")
    assert second.success
    m = meta(second, LOADED)
    assert (m["inserted"], m["updated"], m["unchanged"]) == (0, 0, 100)
    # Byte-identical: not even _loaded_at or _run_id moved on unchanged rows.
    assert query(wh, "SELECT * FROM mart.orders ORDER BY order_id") == before


def test_ten_percent_changed_rows_are_updated(etl_env, instance) -> None:
    spec = make_spec()
    src, wh = etl_env["TEST_SOURCE_URL"], etl_env["ETL_WAREHOUSE_URL"]
    create_orders(src, orders_rows(200, ny(2025, 3, 16, 1), dt.timedelta(minutes=45)))
    assert materialize(spec, etl_env, instance, partition_key="2025-03-16").success
    first_run = query(wh, "SELECT DISTINCT _run_id FROM mart.orders")[0][0]
    query(src, "UPDATE src.orders SET amount = amount + 1 WHERE order_id % 10 = 0 RETURNING 1")

    result = materialize(spec, etl_env, instance, partition_key="2025-03-16")
    m = meta(result, LOADED)
    assert (m["inserted"], m["updated"], m["unchanged"]) == (0, 20, 180)
    changed = query(wh, "SELECT order_id FROM mart.orders WHERE _run_id <> %s ORDER BY 1", (first_run,))
    assert [r[0] for r in changed] == list(range(10, 201, 10))
    assert query(wh, "SELECT amount FROM mart.orders WHERE order_id = 10")[0][0] == 11.5


def test_windows_have_no_gap_or_overlap_across_dst(etl_env, instance) -> None:
    spec = make_spec()
    pdef = partitions_def(spec)
    w = window_for(pdef, "2025-03-09")
    assert (w.start, w.end) == (ny(2025, 3, 9), ny(2025, 3, 16))
    assert w.end_utc - w.start_utc == dt.timedelta(hours=167)  # the week that loses an hour
    edges = [
        (1, ny(2025, 3, 2)),  # first instant of week 03-02
        (2, ny(2025, 3, 9) - dt.timedelta(microseconds=1)),  # last instant of week 03-02
        (3, ny(2025, 3, 9)),  # first instant of week 03-09
        (4, ny(2025, 3, 9, 3, 0)),  # just after the spring-forward jump
        (5, ny(2025, 3, 16) - dt.timedelta(seconds=1)),
        (6, ny(2025, 3, 16)),  # belongs to 03-16
        (7, ny(2025, 3, 23)),  # outside the range
    ]
    create_orders(etl_env["TEST_SOURCE_URL"], [(i, "c", "1", ts) for i, ts in edges])
    result = materialize(
        spec, etl_env, instance,
        tags={"dagster/asset_partition_range_start": "2025-03-02", "dagster/asset_partition_range_end": "2025-03-16"},
    )
    assert result.success
    assert result.dagster_run.tags["dagster/asset_partition_range_end"] == "2025-03-16"
    by_partition = query(
        etl_env["ETL_WAREHOUSE_URL"], "SELECT _partition, array_agg(order_id ORDER BY order_id) FROM mart.orders GROUP BY 1 ORDER BY 1"
    )
    assert by_partition == [("2025-03-02", [1, 2]), ("2025-03-09", [3, 4, 5]), ("2025-03-16", [6])]
    raw = meta(result, asset_key("shop", "raw", "orders"))
    assert raw["rows_by_partition"] == {"2025-03-02": 2, "2025-03-09": 3, "2025-03-16": 1}
    assert raw["inputs"]["2025-03-09"]["window_start"] == "2025-03-09T00:00:00-05:00"
    assert raw["inputs"]["2025-03-09"]["window_end"] == "2025-03-16T00:00:00-04:00"


def test_lookback_widens_only_the_start(etl_env, instance) -> None:
    data = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
    data["sources"][0]["lookback"] = "1d"
    spec = type(make_spec()).model_validate(data)
    create_orders(
        etl_env["TEST_SOURCE_URL"],
        [(1, "c", "1", ny(2025, 3, 8, 12)), (2, "c", "1", ny(2025, 3, 7, 12)), (3, "c", "1", ny(2025, 3, 16))],
    )
    assert materialize(spec, etl_env, instance, partition_key="2025-03-09").success
    assert query(etl_env["ETL_WAREHOUSE_URL"], "SELECT order_id FROM mart.orders") == [(1,)]


def test_replace_partition_deletes_rows_gone_from_the_source(etl_env, instance) -> None:
    data = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
    data["sources"][0]["load"]["strategy"] = "replace_partition"
    spec = type(make_spec()).model_validate(data)
    src, wh = etl_env["TEST_SOURCE_URL"], etl_env["ETL_WAREHOUSE_URL"]
    create_orders(src, orders_rows(10, ny(2025, 3, 9, 1), dt.timedelta(hours=3)))
    assert materialize(spec, etl_env, instance, partition_key="2025-03-09").success
    query(src, "DELETE FROM src.orders WHERE order_id IN (3, 4) RETURNING 1")
    query(src, "UPDATE src.orders SET customer = 'zed' WHERE order_id = 5 RETURNING 1")
    result = materialize(spec, etl_env, instance, partition_key="2025-03-09")
    m = meta(result, LOADED)
    assert (m["inserted"], m["updated"], m["unchanged"], m["deleted"]) == (0, 1, 7, 2)
    ids = [r[0] for r in query(wh, "SELECT order_id FROM mart.orders ORDER BY 1")]
    assert ids == [1, 2, 5, 6, 7, 8, 9, 10]
    again = meta(materialize(spec, etl_env, instance, partition_key="2025-03-09"), LOADED)
    assert (again["inserted"], again["updated"], again["deleted"]) == (0, 0, 0)


def test_blocking_check_stops_loaded(etl_env, instance) -> None:
    data = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
    data["sources"][0]["checks"] = [
        {"type": "between", "column": "amount", "min": 0, "severity": "error"},
        {"type": "not_null", "column": "customer", "severity": "warn"},
    ]
    spec = type(make_spec()).model_validate(data)
    create_orders(
        etl_env["TEST_SOURCE_URL"],
        [(1, None, "5", ny(2025, 3, 10)), (2, "b", "-3", ny(2025, 3, 11)), (3, "c", "-4", ny(2025, 3, 12))],
    )
    result = materialize(spec, etl_env, instance, partition_key="2025-03-09")
    assert not result.success
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evals["between_amount"].passed is False
    assert evals["between_amount"].metadata["unexpected_count"].value == 2
    assert sorted(evals["between_amount"].metadata["sample_values"].value) == [-4.0, -3.0]
    assert evals["not_null_customer"].passed is False
    assert evals["not_null_customer"].severity == dg.AssetCheckSeverity.WARN
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert LOADED not in materialized
    assert query(etl_env["ETL_WAREHOUSE_URL"], "SELECT to_regclass('mart.orders')") == [(None,)]


def test_csv_bad_value_fails_fast_without_retry(etl_env, instance, tmp_path: Path) -> None:
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "items.csv").write_text("sku,qty\nA,1\nB,two\nC,3\n")
    spec = make_spec(
        retries={"max": 3, "delay_seconds": 0},
        sources=[
            {
                "name": "items",
                "kind": "csv",
                "path": str(folder / "*.csv"),
                "mode": "full",
                "primary_key": ["sku"],
                "columns": [{"name": "sku"}, {"name": "qty", "type": "integer"}],
            }
        ],
        report={},
    )
    result = materialize(spec, etl_env, instance, partition_key="2025-03-09")
    assert not result.success
    events = result.all_events
    assert not [e for e in events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    failures = [e for e in events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert [f.step_key for f in failures] == ["shop__normalized__items"]
    assert failures[0].step_failure_data.user_failure_data.description == (
        "shop/items partition 2025-03-09: column 'qty': 1 row(s) cannot be read as integer, "
        "e.g. 'two' (first at row 2)"
    )


def test_report_and_metadata(etl_env, instance) -> None:
    spec = make_spec()
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(30, ny(2025, 3, 9, 2), dt.timedelta(hours=2)))
    result = materialize(spec, etl_env, instance, partition_key="2025-03-09")
    assert result.success
    for layer in ("raw", "normalized", "validated"):
        m = meta(result, asset_key("shop", layer, "orders"))
        assert m["dagster/row_count"] == 30
        assert [c.name for c in m["dagster/column_schema"].columns][:4] == ["order_id", "customer", "amount", "updated_at"]
        assert m["preview"].startswith("| order_id | customer | amount | updated_at")
    loaded = meta(result, LOADED)
    assert {"inserted", "updated", "unchanged", "dagster/row_count", "dagster/column_schema", "preview"} <= set(loaded)
    rep = meta(result, asset_key("shop", "report"))
    md = rep["report"]
    expected_revenue = sum(i + 0.5 for i in range(1, 31))
    assert f"| 30 | {expected_revenue:,.2f} |" in md
    assert "| orders | success | 30 | 30 | 0 | 0 | 0 |" in md
    assert "| orders | unique_key | error | PASS | 0 |" in md
    html_path = Path(rep["report_path"])
    assert html_path == Path(etl_env["ETL_STORAGE_DIR"]) / "shop" / "reports" / "2025-03-09.html"
    assert "### revenue" in md
    page = html_path.read_text()
    assert '<td class="num">30</td>' in page and "orders" in page
    assert (html_path.with_suffix(".md")).read_text() == md
    for layer in ("raw", "normalized", "validated"):
        assert (Path(etl_env["ETL_STORAGE_DIR"]) / "shop" / layer / "orders" / "2025-03-09.parquet").is_file()


def test_batched_source_streams_through_every_layer(etl_env, instance) -> None:
    data = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
    data["sources"][0]["batch_size"] = 7
    spec = type(make_spec()).model_validate(data)
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(50, ny(2025, 3, 9, 1), dt.timedelta(hours=2)))
    result = materialize(spec, etl_env, instance, partition_key="2025-03-09")
    assert result.success
    raw = meta(result, asset_key("shop", "raw", "orders"))
    assert raw["dagster/row_count"] == 50
    assert raw["inputs"]["2025-03-09"]["rows"] == 50
    import pyarrow.parquet as pq

    path = Path(etl_env["ETL_STORAGE_DIR"]) / "shop" / "raw" / "orders" / "2025-03-09.parquet"
    assert pq.ParquetFile(path).num_row_groups == 8  # written batch by batch
    assert meta(result, LOADED)["inserted"] == 50
    assert query(etl_env["ETL_WAREHOUSE_URL"], "SELECT count(*), sum(order_id) FROM mart.orders") == [(50, 1275)]


def test_optional_source_without_settings_is_skipped(etl_env, instance, monkeypatch) -> None:
    monkeypatch.delenv("ETL_TEST_CRM_URL", raising=False)
    data = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
    data["sources"].append({
        "name": "crm", "kind": "mysql", "connection": {"url": "${ETL_TEST_CRM_URL}"}, "table": "customers",
        "mode": "full", "optional": True, "primary_key": ["id"], "columns": [{"name": "id", "type": "integer"}],
        "load": {"target": "mart.crm"},
    })
    spec = type(make_spec()).model_validate(data)
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(3, ny(2025, 3, 9, 1), dt.timedelta(hours=2)))
    result = materialize(spec, etl_env, instance, partition_key="2025-03-09")
    assert result.success
    raw = meta(result, asset_key("shop", "raw", "crm"))
    assert raw["inputs"]["2025-03-09"]["skipped"] == "shop.sources.crm.connection.url: environment variable ETL_TEST_CRM_URL is not set"
    assert meta(result, asset_key("shop", "loaded", "crm"))["inserted"] == 0
    assert meta(result, LOADED)["inserted"] == 3


def test_full_source_with_delete_missing_removes_rows_gone_from_the_source(etl_env, instance, tmp_path: Path) -> None:
    folder = tmp_path / "catalog"
    folder.mkdir()
    (folder / "p.csv").write_text("sku,price\nA,1\nB,2\nC,3\n")
    spec = make_spec(
        sources=[{
            "name": "products", "kind": "csv", "path": str(folder / "*.csv"), "mode": "full",
            "primary_key": ["sku"], "columns": [{"name": "sku"}, {"name": "price", "type": "float"}],
            "load": {"target": "mart.products", "delete_missing": True},
        }],
        report={},
    )
    assert materialize(spec, etl_env, instance, partition_key="2025-03-02").success
    (folder / "p.csv").write_text("sku,price\nA,1\nC,4\n")
    result = materialize(spec, etl_env, instance, partition_key="2025-03-09")
    m = meta(result, asset_key("shop", "loaded", "products"))
    assert (m["inserted"], m["updated"], m["unchanged"], m["deleted"]) == (0, 1, 1, 1)
    assert query(etl_env["ETL_WAREHOUSE_URL"], "SELECT sku, price FROM mart.products ORDER BY 1") == [("A", 1.0), ("C", 4.0)]


def test_unchanged_raw_is_not_normalized_again_unless_spec_or_file_changed(etl_env, instance) -> None:
    """A rerun over the same raw bytes keeps the normalized file; a spec change or a normalized
    file that is not the one recorded makes it normalize again."""
    rows = orders_rows(50, ny(2025, 3, 9, 0, 30), dt.timedelta(minutes=90))
    create_orders(etl_env["TEST_SOURCE_URL"], rows)
    norm_key = asset_key("shop", "normalized", "orders")
    path = Path(etl_env["ETL_STORAGE_DIR"]) / "shop" / "normalized" / "orders" / "2025-03-09.parquet"

    first = materialize(make_spec(), etl_env, instance, partition_key="2025-03-09")
    lineage = meta(first, norm_key)["normalized_from"]["2025-03-09"]
    written = path.stat().st_mtime_ns

    again = materialize(make_spec(), etl_env, instance, partition_key="2025-03-09")
    assert again.success
    assert meta(again, norm_key)["normalized_from"]["2025-03-09"] == lineage
    assert meta(again, norm_key)["normalize_stats"]["2025-03-09"]["rows_out"] == 50
    assert path.stat().st_mtime_ns == written  # kept, not rewritten
    assert meta(again, LOADED)["unchanged"] == 50

    # Another timezone is another spec: normalized again.
    berlin = make_spec(timezone="Europe/Berlin")
    other = materialize(berlin, etl_env, instance, partition_key="2025-03-09")
    assert other.success
    assert meta(other, norm_key)["normalized_from"]["2025-03-09"]["fingerprint"] != lineage["fingerprint"]

    # A normalized file that is not the recorded one is never trusted.
    materialize(make_spec(), etl_env, instance, partition_key="2025-03-09")
    path.write_bytes(path.read_bytes() + b"\0")
    fixed = materialize(make_spec(), etl_env, instance, partition_key="2025-03-09")
    assert fixed.success
    assert hashlib.sha256(path.read_bytes()).hexdigest() == meta(fixed, norm_key)["normalized_from"]["2025-03-09"]["sha256"]
    assert meta(fixed, LOADED)["unchanged"] == 50


def with_customers(severity: str) -> Any:
    """Orders whose customer must exist in a second source, customers, read from src.customers."""
    data = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
    data["sources"][0]["checks"] = [
        {"type": "unique", "severity": "error"},
        {"type": "relationship", "column": "customer", "to": {"source": "customers", "column": "name"},
         "severity": severity},
    ]
    data["sources"].append({
        "name": "customers", "kind": "postgres", "connection": {"url": "${TEST_SOURCE_URL}"},
        "table": "src.customers", "mode": "full", "primary_key": ["name"],
        "columns": [{"name": "name"}], "load": {"target": "mart.customers"},
    })
    return parse_pipeline(data, "shop.yaml")


def test_a_warn_relationship_loads_when_the_referenced_source_fails(etl_env, instance) -> None:
    spec = with_customers("warn")
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(5, ny(2025, 3, 10), dt.timedelta(hours=1)))
    # src.customers does not exist: the customers extract fails at once.
    result = materialize(spec, etl_env, instance, partition_key="2025-03-09")
    assert not result.success
    failed = [e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failed == ["shop__raw__customers"]
    assert meta(result, LOADED)["inserted"] == 5
    assert query(etl_env["ETL_WAREHOUSE_URL"], "SELECT count(*) FROM mart.orders") == [(5,)]
    rel = {e.check_name: e for e in result.get_asset_check_evaluations()}["relationship_customer"]
    assert rel.passed is False and rel.severity == dg.AssetCheckSeverity.WARN
    assert rel.metadata["message"].value == (
        "5 row(s) reference customers.name values that were never loaded; customers had not loaded "
        "partition 2025-03-09 in this run when this check ran; checked against mart.customers, which does not exist yet"
    )


@pytest.mark.parametrize("severity, gates", [("warn", False), ("error", True), ("quarantine", True)])
def test_only_relationships_that_change_the_load_wait_for_their_source(severity: str, gates: bool) -> None:
    validated = next(a for a in build_pipeline_assets(with_customers(severity))
                     if asset_key("shop", "validated", "orders") in a.keys)
    upstream = validated.asset_deps[asset_key("shop", "validated", "orders")]
    assert (asset_key("shop", "loaded", "customers") in upstream) is gates


@pytest.fixture
def catalog_api(json_api: Callable[[Any], JsonApi]) -> tuple[str, list[str]]:
    """A JSON API on 127.0.0.1 serving a two-product catalog: its URL and the paths requested."""
    api = json_api([{"sku": "A", "price": 1.5}, {"sku": "B", "price": 2.0}])
    return f"{api.url}/products", api.requested


def test_a_full_source_is_extracted_once_per_run(etl_env, instance, catalog_api) -> None:
    url, requested = catalog_api
    spec = make_spec(
        sources=[{
            "name": "products", "kind": "http", "url": url, "mode": "full", "primary_key": ["sku"],
            "columns": [{"name": "sku"}, {"name": "price", "type": "float"}], "load": {"target": "mart.products"},
        }],
        report={},
    )
    weeks = {"dagster/asset_partition_range_start": "2025-03-02", "dagster/asset_partition_range_end": "2025-03-16"}
    first = materialize(spec, etl_env, instance, tags=weeks)
    assert first.success
    assert requested == ["/products"]
    raw = meta(first, asset_key("shop", "raw", "products"))
    assert raw["rows_by_partition"] == {"2025-03-02": 2, "2025-03-09": 2, "2025-03-16": 2}
    assert "reused_from" not in raw["inputs"]["2025-03-02"]
    assert raw["inputs"]["2025-03-09"]["reused_from"] == "2025-03-02"
    assert raw["inputs"]["2025-03-16"]["reused_from"] == "2025-03-02"
    wh = etl_env["ETL_WAREHOUSE_URL"]
    assert query(wh, "SELECT sku, price FROM mart.products ORDER BY 1") == [("A", 1.5), ("B", 2.0)]
    before = query(wh, "SELECT * FROM mart.products ORDER BY sku")

    again = materialize(spec, etl_env, instance, tags=weeks)
    assert again.success
    assert requested == ["/products", "/products"]
    loaded = meta(again, asset_key("shop", "loaded", "products"))
    assert (loaded["inserted"], loaded["updated"], loaded["deleted"]) == (0, 0, 0)
    assert query(wh, "SELECT * FROM mart.products ORDER BY sku") == before

"""The ClickHouse warehouse against the embedded engine (chDB), and its parity with PostgreSQL.

chDB opens one data directory per process at a time, so every test gets its own under tmp.
The server path uses the same client (clickhouse-connect) and the same SQL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
import yaml

from etl_assets.core.errors import describe, is_transient
from etl_assets.core.partitions import partitions_def, window_for
from etl_assets.core.secrets import redact
from etl_assets.core.settings import PROJECT_ROOT
from etl_assets.dev import demo
from etl_assets.io.storage import ParquetIOManagerResource
from etl_assets.orchestration.assets import asset_key, build_pipeline_assets
from etl_assets.orchestration.sensors import handle_run_finished
from etl_assets.report.partition import render_status_report
from etl_assets.sources.base import TransientSourceError
from etl_assets.spec import PipelineSpec, SpecError, parse_pipeline
from etl_assets.transform.normalize import record_hashes
from etl_assets.warehouses.clickhouse import ClickHouseWarehouse, bind_named, parse_url
from etl_assets.warehouses.postgres import Warehouse, WarehouseResource, open_warehouse
from etl_assets_tests.helpers import create_orders, make_spec, meta, ny, orders_rows, query

CLICKHOUSE = {"kind": "clickhouse", "url": "${TEST_CH_URL}"}
LOADED = asset_key("shop", "loaded", "orders")
ORDER_COLUMNS = "order_id, customer, amount, updated_at, record_hash, _partition"


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def ch_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"chdb://{tmp_path}/clickhouse"
    monkeypatch.setenv("TEST_CH_URL", url)
    return url


def on_clickhouse(spec: PipelineSpec) -> PipelineSpec:
    data = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    data["warehouse"] = CLICKHOUSE
    return parse_pipeline(data, "shop.yaml")


def run(spec: PipelineSpec, etl_env: dict[str, str], instance: Any, storage: str | None = None, **kwargs: Any) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        build_pipeline_assets(spec),
        instance=instance,
        resources={
            "parquet_io": ParquetIOManagerResource(base_path=storage or etl_env["ETL_STORAGE_DIR"]),
            # Run history and the default warehouse: PostgreSQL, whatever the spec loads into.
            "warehouse": WarehouseResource(url=etl_env["ETL_WAREHOUSE_URL"]),
        },
        raise_on_error=False,
        **kwargs,
    )


def ch(url: str, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
    with ClickHouseWarehouse(url).connect() as conn:
        return conn.rows(sql, params)


def test_first_load_then_a_rerun_that_changes_nothing(etl_env, ch_url, instance) -> None:
    spec = on_clickhouse(make_spec())
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(100, ny(2025, 3, 9, 0, 30), dt.timedelta(minutes=90)))

    first = run(spec, etl_env, instance, partition_key="2025-03-09")
    assert first.success
    m = meta(first, LOADED)
    assert (m["inserted"], m["updated"], m["unchanged"]) == (100, 0, 0)
    assert [(c.name, c.type) for c in m["dagster/column_schema"].columns] == [
        ("order_id", "Int64"), ("customer", "String"), ("amount", "Float64"),
        ("updated_at", "DateTime64(6, 'UTC')"),
    ]
    ddl = ch(ch_url, "SELECT engine_full FROM system.tables WHERE database = 'mart' AND name = 'orders'")[0][0]
    assert ddl.startswith("ReplacingMergeTree(_version) PARTITION BY _partition ORDER BY order_id")
    types = dict(ch(ch_url, "SELECT name, type FROM system.columns WHERE database = 'mart' AND table = 'orders'"))
    assert types == {
        "order_id": "Int64", "customer": "Nullable(String)", "amount": "Nullable(Float64)",
        "updated_at": "Nullable(DateTime64(6, 'UTC'))", "record_hash": "String", "_partition": "String",
        "_loaded_at": "DateTime64(6, 'UTC')", "_run_id": "String", "_version": "UInt64",
    }
    before = ch(ch_url, "SELECT * FROM mart.orders ORDER BY order_id")
    assert len(before) == 100
    assert before[0][:3] == (1, "cust1", 1.5)
    assert ch(ch_url, "SELECT count() FROM mart.orders FINAL") == [(100,)]

    second = run(spec, etl_env, instance, partition_key="2025-03-09")
    assert second.success
    m = meta(second, LOADED)
    assert (m["inserted"], m["updated"], m["unchanged"], m["deleted"]) == (0, 0, 100, 0)
    # The same rows: not even _loaded_at, _run_id or _version moved, and no second copy.
    assert ch(ch_url, "SELECT * FROM mart.orders ORDER BY order_id") == before
    assert ch(ch_url, "SELECT count() FROM mart.orders FINAL") == [(100,)]
    # No staging table outlives its load.
    assert ch(ch_url, "SELECT name FROM system.tables WHERE database = 'mart'") == [("orders",)]


def test_ten_percent_changed_rows_are_updated(etl_env, ch_url, instance) -> None:
    spec = on_clickhouse(make_spec())
    src = etl_env["TEST_SOURCE_URL"]
    create_orders(src, orders_rows(200, ny(2025, 3, 16, 1), dt.timedelta(minutes=45)))
    assert run(spec, etl_env, instance, partition_key="2025-03-16").success
    first_run, loaded_at = ch(ch_url, "SELECT any(_run_id), any(_loaded_at) FROM mart.orders")[0]
    query(src, "UPDATE src.orders SET amount = amount + 1 WHERE order_id % 10 = 0 RETURNING 1")

    result = run(spec, etl_env, instance, partition_key="2025-03-16")
    m = meta(result, LOADED)
    assert (m["inserted"], m["updated"], m["unchanged"]) == (0, 20, 180)
    changed = ch(ch_url, "SELECT order_id FROM mart.orders FINAL WHERE _run_id != {r:String} ORDER BY 1", {"r": first_run})
    assert [r[0] for r in changed] == list(range(10, 201, 10))
    assert ch(ch_url, "SELECT amount FROM mart.orders FINAL WHERE order_id = 10") == [(11.5,)]
    # Unchanged rows were carried over as they were.
    assert ch(ch_url, "SELECT count() FROM mart.orders WHERE _run_id = {r:String} AND _loaded_at = {t:DateTime64(6, 'UTC')}",
              {"r": first_run, "t": loaded_at.strftime("%Y-%m-%d %H:%M:%S.%f")}) == [(180,)]
    assert ch(ch_url, "SELECT count(), uniqExact(order_id) FROM mart.orders") == [(200, 200)]
    assert ch(ch_url, "SELECT count() FROM mart.orders FINAL") == [(200,)]


def test_replace_partition_deletes_rows_gone_from_the_source(etl_env, ch_url, instance) -> None:
    data = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
    data["sources"][0]["load"]["strategy"] = "replace_partition"
    spec = on_clickhouse(parse_pipeline(data, "shop.yaml"))
    src = etl_env["TEST_SOURCE_URL"]
    create_orders(src, orders_rows(10, ny(2025, 3, 9, 1), dt.timedelta(hours=3)))
    assert run(spec, etl_env, instance, partition_key="2025-03-09").success
    query(src, "DELETE FROM src.orders WHERE order_id IN (3, 4) RETURNING 1")
    query(src, "UPDATE src.orders SET customer = 'zed' WHERE order_id = 5 RETURNING 1")
    m = meta(run(spec, etl_env, instance, partition_key="2025-03-09"), LOADED)
    assert (m["inserted"], m["updated"], m["unchanged"], m["deleted"]) == (0, 1, 7, 2)
    assert [r[0] for r in ch(ch_url, "SELECT order_id FROM mart.orders ORDER BY 1")] == [1, 2, 5, 6, 7, 8, 9, 10]
    again = meta(run(spec, etl_env, instance, partition_key="2025-03-09"), LOADED)
    assert (again["inserted"], again["updated"], again["deleted"]) == (0, 0, 0)


def test_a_changed_row_moves_to_the_partition_that_loaded_it(etl_env, ch_url, instance) -> None:
    """As with the PostgreSQL upsert, a key lives in one partition: its old copy goes."""
    spec = on_clickhouse(make_spec())
    src = etl_env["TEST_SOURCE_URL"]
    create_orders(src, orders_rows(6, ny(2025, 3, 10), dt.timedelta(days=1)))  # weeks 03-09 and 03-16
    assert run(spec, etl_env, instance, partition_key="2025-03-09").success
    assert ch(ch_url, "SELECT groupArray(order_id) FROM (SELECT order_id FROM mart.orders ORDER BY 1)") == [([1, 2, 3, 4, 5],)]
    query(src, "UPDATE src.orders SET amount = 99, updated_at = %s WHERE order_id = 2 RETURNING 1", (ny(2025, 3, 17),))

    m = meta(run(spec, etl_env, instance, partition_key="2025-03-16"), LOADED)
    assert (m["inserted"], m["updated"], m["unchanged"]) == (1, 1, 0)
    rows = ch(ch_url, "SELECT _partition, groupArray(order_id) FROM (SELECT * FROM mart.orders ORDER BY order_id) GROUP BY 1 ORDER BY 1")
    assert rows == [("2025-03-09", [1, 3, 4, 5]), ("2025-03-16", [2, 6])]
    # The earlier week, loaded again, no longer has order 2 and leaves it where it is.
    m = meta(run(spec, etl_env, instance, partition_key="2025-03-09"), LOADED)
    assert (m["inserted"], m["updated"], m["unchanged"]) == (0, 0, 4)
    assert ch(ch_url, "SELECT count(), uniqExact(order_id) FROM mart.orders") == [(6, 6)]


def report_body(markdown: str) -> str:
    """A report less what differs between two renders of the same data: the footer ("Generated
    …, run …") and the note that a chart drawn by the earlier render was reused."""
    body = markdown.rsplit("\n---\n", 1)[0]
    return "\n".join(line for line in body.splitlines() if line.strip() and not line.startswith("_Chart unchanged since "))


def test_report_kpis_and_trend_match_postgres(etl_env, ch_url, instance, tmp_path: Path) -> None:
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(30, ny(2025, 3, 9, 2), dt.timedelta(hours=2)))
    spec = make_spec()
    reports = {}
    for name, s in (("postgres", spec), ("clickhouse", on_clickhouse(spec))):
        with dg.instance_for_test() as inst:
            result = run(s, etl_env, inst, storage=str(tmp_path / name), partition_key="2025-03-09")
            assert result.success
            reports[name] = report_body(meta(result, asset_key("shop", "report"))["report"])
    expected_revenue = sum(i + 0.5 for i in range(1, 31))
    assert f"| 30 | {expected_revenue:,.2f} |" in reports["clickhouse"]
    assert "| orders | success | 30 | 30 | 0 | 0 | 0 |" in reports["clickhouse"]
    assert reports["clickhouse"] == reports["postgres"]

    window = window_for(partitions_def(spec), "2025-03-09")
    params = {"window_start": window.start, "window_end": window.end}
    kpi = spec.report.kpis[0].sql
    pg = open_warehouse(None, etl_env["ETL_WAREHOUSE_URL"]).query(kpi, params)
    chq = ClickHouseWarehouse(ch_url).query(kpi, params)
    assert chq.values.tolist() == pg.values.tolist() == [[30, expected_revenue]]
    assert list(chq.columns) == list(pg.columns) == ["orders", "revenue"]
    later = {"window_start": window.end, "window_end": window.end + dt.timedelta(days=7)}
    empty = open_warehouse(None, etl_env["ETL_WAREHOUSE_URL"]).query(kpi, later).values.tolist()
    assert ClickHouseWarehouse(ch_url).query(kpi, later).values.tolist() == empty == [[0, None]]
    assert ClickHouseWarehouse(ch_url).partition_counts("mart.orders", "2025-03-09", 12, inclusive=True) == [("2025-03-09", 30)]


def test_relationship_check_quarantines_orphans(etl_env, ch_url, instance, tmp_path: Path) -> None:
    folder = tmp_path / "customers"
    folder.mkdir()
    (folder / "customers.csv").write_text("name,segment\n" + "".join(f"cust{i},s{i}\n" for i in range(5)))
    data = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
    data["sources"][0]["checks"] = [
        {"type": "relationship", "column": "customer", "to": {"source": "customers", "column": "name"}, "severity": "quarantine"},
        {"type": "row_count_anomaly", "partitions": 4, "min_history": 1, "min_ratio": 0.5, "severity": "warn"},
    ]
    data["sources"].append({
        "name": "customers", "kind": "csv", "path": str(folder / "*.csv"), "mode": "full",
        "primary_key": ["name"], "columns": [{"name": "name", "nullable": False}, {"name": "segment"}],
        "load": {"target": "mart.customers", "strategy": "upsert"},
    })
    spec = on_clickhouse(parse_pipeline(data, "shop.yaml"))
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(14, ny(2025, 3, 2, 1), dt.timedelta(hours=12)))  # 03-02, 03-09

    first = run(spec, etl_env, instance, partition_key="2025-03-02")
    assert first.success
    check = {e.check_name: e for e in first.get_asset_check_evaluations()}["relationship_customer"]
    # cust5 and cust6 (orders 5, 6, 12, 13) were never loaded as customers.
    assert check.passed is False
    assert check.metadata["unexpected_count"].value == 4
    assert check.metadata["sample_values"].value == ["cust5", "cust6"]
    assert meta(first, LOADED)["quarantined"] == 4
    assert ch(ch_url, "SELECT order_id, _check, _partition FROM mart.orders__quarantine ORDER BY 1") == [
        (5, "relationship_customer", "2025-03-02"), (6, "relationship_customer", "2025-03-02"),
        (12, "relationship_customer", "2025-03-02"), (13, "relationship_customer", "2025-03-02"),
    ]
    assert [r[0] for r in ch(ch_url, "SELECT order_id FROM mart.orders FINAL ORDER BY 1")] == [1, 2, 3, 4, 7, 8, 9, 10, 11]
    # A rerun replaces the quarantined rows rather than adding to them.
    assert run(spec, etl_env, instance, partition_key="2025-03-02").success
    assert ch(ch_url, "SELECT count() FROM mart.orders__quarantine") == [(4,)]

    # One row against a history of nine: the anomaly check reads that history from ClickHouse.
    second = run(spec, etl_env, instance, partition_key="2025-03-09")
    assert second.success
    anomaly = {e.check_name: e for e in second.get_asset_check_evaluations()}["row_count_anomaly"]
    assert anomaly.passed is False
    assert '"history": [9]' in anomaly.metadata["observed_value"].value


def test_history_stays_in_postgres_and_status_report_reads_clickhouse(etl_env, ch_url, instance) -> None:
    spec = on_clickhouse(make_spec())
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(5, ny(2025, 3, 10), dt.timedelta(hours=1)))
    result = run(spec, etl_env, instance, partition_key="2025-03-09")
    assert result.success
    record = handle_run_finished(instance, result.run_id, {"shop": spec}, warehouse_url=etl_env["ETL_WAREHOUSE_URL"])
    assert record is not None and record["status"] == "success"
    wh = etl_env["ETL_WAREHOUSE_URL"]
    assert query(wh, "SELECT status FROM etl_meta.runs WHERE run_id = %s", (result.run_id,)) == [("success",)]
    assert query(wh, "SELECT inserted FROM etl_meta.run_sources WHERE run_id = %s", (result.run_id,)) == [(5,)]
    assert query(wh, "SELECT to_regclass('mart.orders')") == [(None,)]  # nothing loaded into PostgreSQL

    failed = {**record, "status": "partial", "sources": {"orders": {**record["sources"]["orders"], "status": "failed", "error": "boom"}}}
    path = render_status_report(instance, spec, failed, wh)
    page = Path(path).with_suffix(".md").read_text()
    assert "PARTIAL" in page and "| 5 | 17.50 |" in page


def test_warehouse_block_and_url_handling(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="warehouse: .*needs url"):
        make_spec(warehouse={"kind": "clickhouse"})
    with pytest.raises(SpecError, match="warehouse.url: .*literal password"):
        make_spec(warehouse={"kind": "clickhouse", "url": "clickhouse://etl:hunter22@db:8123/dw"})
    with pytest.raises(SpecError, match="warehouse.kind: must be one of postgres, clickhouse"):
        make_spec(warehouse={"kind": "duckdb"})
    assert make_spec(warehouse={"kind": "postgres"}).warehouse.url is None

    monkeypatch.setenv("TEST_CH_PW", "s3cret-pass")
    spec = make_spec(warehouse={"kind": "clickhouse", "url": "clickhouses://etl:${TEST_CH_PW}@ch.example:9443/dw"})
    wh = WarehouseResource(url="postgresql://etl@pg/wh").for_pipeline(spec)
    assert isinstance(wh, ClickHouseWarehouse)
    e = wh.endpoint
    assert (e.host, e.port, e.username, e.password, e.database, e.secure) == ("ch.example", 9443, "etl", "s3cret-pass", "dw", True)
    assert "s3cret-pass" not in repr(wh) + repr(e)
    assert "s3cret-pass" not in redact("clickhouses://etl:s3cret-pass@ch.example:9443/dw")
    assert parse_url("clickhouse://ch:8123").database == "default"
    assert parse_url(f"chdb://{tmp_path}/ch").path == f"{tmp_path}/ch"
    assert isinstance(WarehouseResource(url="postgresql://etl@pg/wh").for_pipeline(make_spec()), Warehouse)

    stmt, bound = bind_named(
        "SELECT ':x', count(*) FROM t WHERE ts >= :window_start AND v::String LIKE '%a' AND k IN :keys",
        {"window_start": ny(2025, 3, 9), "keys": ["a", "b"]},
    )
    assert stmt == (
        "SELECT ':x', count(*) FROM t WHERE ts >= {window_start:DateTime64(6, 'UTC')} "
        "AND v::String LIKE '%a' AND k IN {keys:Array(String)}"
    )
    assert bound == {"window_start": "2025-03-09 05:00:00.000000", "keys": ["a", "b"]}


def test_an_unreachable_server_is_a_transient_error_without_the_password() -> None:
    wh = ClickHouseWarehouse("clickhouse://etl:s3cret-pass@127.0.0.1:1/dw")
    with pytest.raises(TransientSourceError, match="ClickHouse unreachable") as failed:
        wh.count("mart.orders")
    assert is_transient(failed.value)
    assert "s3cret-pass" not in describe(failed.value)


def test_a_type_change_is_a_schema_mismatch(ch_url) -> None:
    wh = ClickHouseWarehouse(ch_url)
    types = {"id": "integer", "v": "string"}
    frame = pd.DataFrame({"id": pd.array([1, 2], dtype="Int64"), "v": pd.array(["a", None], dtype="string")})
    frame["record_hash"] = record_hashes(frame, types)
    with wh.connect() as conn:
        wh.ensure_table(conn, "mart.t", types, ["id"], not_null=["v"])
        with pytest.raises(Exception, match=r"column 'v': 1 row\(s\) are empty but mart.t.v is String, not Nullable"):
            wh.load_partition(conn, target="mart.t", frame=frame, types=types, key=["id"], partition="p",
                              run_id="r", strategy="upsert")
        with pytest.raises(Exception, match="schema mismatch in mart.t: column 'v' is String in the warehouse but the spec makes it Int64"):
            wh.ensure_table(conn, "mart.t", {"id": "integer", "v": "integer"}, ["id"])
        wh.ensure_table(conn, "mart.t", {**types, "w": "date"}, ["id"])
        assert conn.columns("mart.t")["w"] == "Nullable(Date32)"


# --- the demo on both engines ----------------------------------------------------------------


def demo_spec(clickhouse: bool) -> PipelineSpec:
    data = yaml.safe_load((PROJECT_ROOT / "pipelines" / "demo_sales.yaml").read_text())
    if clickhouse:
        data["warehouse"] = CLICKHOUSE  # the only change
    return parse_pipeline(data, "demo_sales.yaml")


def table_rows(engine: str, url: str, table: str, columns: str, order: str) -> list[tuple]:
    if engine == "postgres":
        return query(url, f"SELECT {columns} FROM {table} ORDER BY {order}")
    return ch(url, f"SELECT {columns} FROM {table} FINAL ORDER BY {order}")


def test_demo_loads_identical_rows_into_postgres_and_clickhouse(etl_env, ch_url, tmp_path: Path, monkeypatch) -> None:
    """The shipped demo, with only its `warehouse:` block changed: same rows, counts, KPIs, report."""
    home = Path(etl_env["ETL_HOME"])
    monkeypatch.setenv("ETL_DEMO_SOURCE_URL", etl_env["TEST_SOURCE_URL"])
    urls = {"postgres": etl_env["ETL_WAREHOUSE_URL"], "clickhouse": ch_url}
    specs = {"postgres": demo_spec(False), "clickhouse": demo_spec(True)}
    instances = {name: dg.instance_for_test() for name in urls}
    counts: dict[str, list[Any]] = {name: [] for name in urls}
    reports: dict[str, str] = {}
    try:
        insts = {name: cm.__enter__() for name, cm in instances.items()}
        # Two rounds: the second one's late updates move orders to later partitions.
        for now, first, last in (
            (dt.datetime(2025, 6, 3, 12, tzinfo=dt.UTC), "2025-05-04", "2025-06-01"),
            (dt.datetime(2025, 6, 24, 12, tzinfo=dt.UTC), "2025-05-25", "2025-06-15"),
        ):
            demo.seed(etl_env["TEST_SOURCE_URL"], home / "demo", now=now)
            for name, spec in specs.items():
                result = run(
                    spec, etl_env, insts[name], storage=str(tmp_path / f"storage_{name}"),
                    tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
                )
                assert result.success, name
                counts[name].append({
                    s: meta(result, asset_key("demo_sales", "loaded", s))["counts_by_partition"] for s in ("orders", "products")
                })
                checks = meta(result, asset_key("demo_sales", "validated", "orders"))["checks_by_partition"]
                counts[name].append(checks)
                reports[name] = report_body(meta(result, asset_key("demo_sales", "report"))["report"])
    finally:
        for cm in instances.values():
            cm.__exit__(None, None, None)

    assert counts["clickhouse"] == counts["postgres"]
    assert reports["clickhouse"] == reports["postgres"]
    moved = counts["postgres"][2]["orders"]
    assert sum(c["updated"] for c in moved.values()) > 0, "the second round should move late updates"

    order_cols = "order_id, customer_id, product_sku, quantity, unit_price, status, ordered_at, updated_at, record_hash, _partition"
    for table, columns, order in (
        ("demo_sales.orders", order_cols, "order_id"),
        ("demo_sales.products", "sku, name, category, list_price, record_hash, _partition", "sku"),
    ):
        pg = table_rows("postgres", urls["postgres"], table, columns, order)
        assert len(pg) > 10
        assert table_rows("clickhouse", ch_url, table, columns, order) == pg, table
        # Every key once, even without FINAL: no copy left behind by a move.
        assert ch(ch_url, f"SELECT count() FROM {table}") == [(len(pg),)]
    quarantine = "order_id, quantity, record_hash, _check, _partition"
    pg_q = query(urls["postgres"], f"SELECT {quarantine} FROM demo_sales.orders__quarantine ORDER BY order_id")
    assert pg_q and ch(ch_url, f"SELECT {quarantine} FROM demo_sales.orders__quarantine ORDER BY order_id") == pg_q

    pdef = partitions_def(specs["postgres"])
    pg_wh, ch_wh = Warehouse(urls["postgres"]), ClickHouseWarehouse(ch_url)
    for key in ("2025-05-04", "2025-05-25", "2025-06-08"):
        window = window_for(pdef, key)
        params = {"window_start": window.start, "window_end": window.end}
        for kpi in specs["postgres"].report.kpis:
            pg_kpi, ch_kpi = pg_wh.query(kpi.sql, params), ch_wh.query(kpi.sql, params)
            assert len(pg_kpi) > 0
            assert list(ch_kpi.columns) == list(pg_kpi.columns)
            assert ch_kpi.values.tolist() == pg_kpi.values.tolist(), (key, kpi.name)


def small_frame(ids: list[int], tag: str) -> pd.DataFrame:
    types = {"id": "integer", "v": "string"}
    frame = pd.DataFrame({"id": pd.array(ids, dtype="Int64"), "v": pd.array([tag] * len(ids), dtype="string")})
    frame["record_hash"] = record_hashes(frame, types)
    return frame


def test_a_rerun_finishes_what_a_killed_load_left(ch_url) -> None:
    """Killed between swapping the new partition in and removing a moved row's old copy."""
    wh = ClickHouseWarehouse(ch_url)
    types = {"id": "integer", "v": "string"}
    with wh.connect() as conn:
        wh.ensure_table(conn, "mart.t", types, ["id"])
        wh.load_partition(conn, target="mart.t", frame=small_frame([1, 2, 3], "a"), types=types, key=["id"],
                          partition="p1", run_id="r1", strategy="upsert")
        # The old copy of id 2, still in p0, and a staging table of the killed load.
        conn.command("INSERT INTO mart.t (id, v, record_hash, _partition, _loaded_at, _run_id, _version) "
                     "VALUES (2, 'old', 'x', 'p0', now64(6), 'r0', 1)")
        conn.command(f"CREATE TABLE mart._etl_stage_{hashlib.md5(b't').hexdigest()[:10]}_deadbeef0000_out AS mart.t")
    # Readers already see one row per key: FINAL keeps the newer copy.
    assert wh.count("mart.t") == 3
    assert wh.query("SELECT count(*) AS n, max(v) AS v FROM mart.t", {}).values.tolist() == [[3, "a"]]
    with wh.connect() as conn:
        counts = wh.load_partition(conn, target="mart.t", frame=small_frame([1, 2, 3], "a"), types=types, key=["id"],
                                   partition="p1", run_id="r2", strategy="upsert")
    assert (counts.inserted, counts.updated, counts.unchanged) == (0, 0, 3)
    assert ch(ch_url, "SELECT id, _partition, _run_id FROM mart.t ORDER BY id") == [(1, "p1", "r1"), (2, "p1", "r1"), (3, "p1", "r1")]
    assert ch(ch_url, "SELECT name FROM system.tables WHERE database = 'mart'") == [("t",)]


LOADER = """
import sys
from etl_assets.warehouses.clickhouse import ClickHouseWarehouse
from etl_assets_tests.warehouses.test_clickhouse import small_frame
wh = ClickHouseWarehouse(sys.argv[1])
types = {"id": "integer", "v": "string"}
with wh.connect() as conn:
    wh.ensure_table(conn, "mart.t", types, ["id"])
    for p in ("p1", "p2", "p3"):
        wh.load_partition(conn, target="mart.t", frame=small_frame(list(range(2000)), sys.argv[2]), types=types,
                          key=["id"], partition=p, run_id=sys.argv[2], strategy="upsert")
"""


def test_processes_sharing_a_chdb_directory_take_turns(ch_url) -> None:
    """chDB opens a directory in one process at a time; the others wait instead of failing."""
    procs = [
        subprocess.Popen([sys.executable, "-c", LOADER, ch_url, tag], cwd=PROJECT_ROOT, stderr=subprocess.PIPE, text=True)
        for tag in ("a", "b")
    ]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-2000:]
    rows = ch(ch_url, "SELECT count(), uniqExact(id), uniqExact(v), any(_partition) FROM mart.t")
    # Whichever went second changed every row of p1; p2 and p3 then held nothing new.
    assert rows == [(2000, 2000, 1, "p1")]


# --- reruns restore the window's state; drift is explicit ------------------------------------


def test_a_rerun_restores_rows_edited_or_deleted_in_the_warehouse(ch_url) -> None:
    wh = ClickHouseWarehouse(ch_url)
    types = {"id": "integer", "v": "string"}
    with wh.connect() as conn:
        wh.ensure_table(conn, "mart.t", types, ["id"])
        wh.load_partition(conn, target="mart.t", frame=small_frame([1, 2, 3], "a"), types=types, key=["id"],
                          partition="p1", run_id="r1", strategy="upsert")
        conn.command("ALTER TABLE mart.t UPDATE v = 'edited' WHERE id = 1 SETTINGS mutations_sync = 2")
        conn.command("ALTER TABLE mart.t DELETE WHERE id = 3 SETTINGS mutations_sync = 2")
        counts = wh.load_partition(conn, target="mart.t", frame=small_frame([1, 2, 3], "a"), types=types,
                                   key=["id"], partition="p1", run_id="r2", strategy="upsert")
    assert (counts.inserted, counts.updated, counts.unchanged) == (1, 1, 1)
    assert ch(ch_url, "SELECT id, v, _run_id FROM mart.t FINAL ORDER BY id") == [(1, "a", "r2"), (2, "a", "r1"), (3, "a", "r2")]


def drift_frame(types: dict[str, str], rows: dict[str, list]) -> pd.DataFrame:
    dtypes = {"integer": "Int64", "string": "string", "float": "Float64"}
    frame = pd.DataFrame({c: pd.array(rows[c], dtype=dtypes[types[c]]) for c in types})
    frame["record_hash"] = record_hashes(frame, types)
    return frame


def test_a_column_gone_from_the_source_fails_or_is_null_as_the_source_declares(ch_url) -> None:
    wh = ClickHouseWarehouse(ch_url)
    full = {"id": "integer", "v": "string", "amount": "float"}
    shrunk = {"id": "integer", "v": "string"}
    with wh.connect() as conn:
        wh.ensure_table(conn, "mart.d", full, ["id"])
        for p, ids in (("p0", [5]), ("p1", [1, 2])):
            wh.load_partition(conn, target="mart.d", frame=drift_frame(full, {"id": ids, "v": ["a"] * len(ids),
                              "amount": [1.5] * len(ids)}), types=full, key=["id"], partition=p, run_id="r1",
                              strategy="upsert")
        wh.ensure_table(conn, "mart.d", shrunk, ["id"])
        later = drift_frame(shrunk, {"id": [1, 2, 3], "v": ["a", "b", "c"]})
        with pytest.raises(Exception, match=r"^mart\.d has column 'amount', which the source no longer provides"):
            wh.load_partition(conn, target="mart.d", frame=later, types=shrunk, key=["id"], partition="p1",
                              run_id="r2", strategy="upsert")
        assert ch(ch_url, "SELECT id, v, amount FROM mart.d FINAL ORDER BY id") == [(1, "a", 1.5), (2, "a", 1.5), (5, "a", 1.5)]
        counts = wh.load_partition(conn, target="mart.d", frame=later, types=shrunk, key=["id"], partition="p1",
                                   run_id="r2", strategy="upsert", on_missing_column="null")
        assert (counts.inserted, counts.updated, counts.unchanged, counts.missing_columns) == (1, 2, 0, ["amount"])
        assert ch(ch_url, "SELECT id, v, amount FROM mart.d FINAL ORDER BY id") == [
            (1, "a", None), (2, "b", None), (3, "c", None), (5, "a", 1.5)
        ]
        again = wh.load_partition(conn, target="mart.d", frame=later, types=shrunk, key=["id"], partition="p1",
                                  run_id="r3", strategy="upsert", on_missing_column="null")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 3)


def test_delete_insert_replaces_the_partitions_rows_on_clickhouse(ch_url) -> None:
    """delete_insert is replace_partition's name: first load, an unchanged rerun, a changed and a gone row."""
    wh = ClickHouseWarehouse(ch_url)
    types = {"id": "integer", "v": "string"}

    def load(ids: list[int], tag: str, partition: str, run: str) -> Any:
        with wh.connect() as conn:
            wh.ensure_table(conn, "mart.di", types, ["id"], strategy="delete_insert")
            return wh.load_partition(conn, target="mart.di", frame=small_frame(ids, tag), types=types, key=["id"],
                                     partition=partition, run_id=run, strategy="delete_insert")

    first = load([1, 2, 3], "a", "p1", "r1")
    assert (first.inserted, first.deleted) == (3, 0)
    load([9], "a", "p0", "r1")  # an older window, untouched by p1's loads
    rerun = load([1, 2, 3], "a", "p1", "r2")
    assert (rerun.inserted, rerun.updated, rerun.unchanged, rerun.deleted) == (0, 0, 3, 0)
    changed = load([1, 2], "b", "p1", "r3")
    assert (changed.updated, changed.deleted) == (2, 1)
    assert ch(ch_url, "SELECT id, v, _partition FROM mart.di FINAL ORDER BY id") == [
        (1, "b", "p1"), (2, "b", "p1"), (9, "a", "p0")
    ]


def test_new_column_policies_on_clickhouse(ch_url) -> None:
    from etl_assets.sources.base import SourceDataError
    from etl_assets.spec import SchemaPolicySpec

    wh = ClickHouseWarehouse(ch_url)
    v1, v2 = {"id": "integer", "v": "string"}, {"id": "integer", "v": "string", "tier": "string"}
    with wh.connect() as conn:
        assert wh.ensure_table(conn, "mart.n", v1, ["id"]) == []
        with pytest.raises(SourceDataError, match="mart.n has no column 'tier', which the source now provides"):
            wh.ensure_table(conn, "mart.n", v2, ["id"], policy=SchemaPolicySpec(on_new_column="fail"))
        ignored = wh.ensure_table(conn, "mart.n", v2, ["id"], policy=SchemaPolicySpec(on_new_column="ignore"))
        assert [e.as_dict() for e in ignored] == [{"column": "tier", "change": "ignored", "before": None, "after": "String"}]
        assert "tier" not in conn.columns("mart.n")
        added = wh.ensure_table(conn, "mart.n", v2, ["id"])
        assert [e.as_dict() for e in added] == [
            {"column": "tier", "change": "added", "before": None, "after": "Nullable(String)"}
        ]
        with pytest.raises(SourceDataError, match="scd2 is not supported on ClickHouse"):
            wh.ensure_table(conn, "mart.n", v2, ["id"], strategy="scd2")

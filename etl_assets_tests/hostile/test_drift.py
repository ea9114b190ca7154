"""Schema drift: a column gone from the source, and a name PostgreSQL cannot hold."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest

from etl_assets.io.storage import ParquetIOManagerResource
from etl_assets.orchestration.assets import asset_key, build_pipeline_assets
from etl_assets.spec import PipelineSpec, parse_pipeline
from etl_assets.warehouses.postgres import WarehouseResource, open_warehouse
from etl_assets_tests.helpers import create_orders, make_spec

NY = dt.timezone(dt.timedelta(hours=-4))
LOADED = asset_key("shop", "loaded", "orders")
WEEK = "2025-03-09"


def run(spec: PipelineSpec, etl_env: dict[str, str], partition: str) -> dg.ExecuteInProcessResult:
    with dg.instance_for_test() as instance:
        return dg.materialize(
            build_pipeline_assets(spec),
            instance=instance,
            partition_key=partition,
            resources={
                "parquet_io": ParquetIOManagerResource(base_path=etl_env["ETL_STORAGE_DIR"]),
                "warehouse": WarehouseResource(url=etl_env["ETL_WAREHOUSE_URL"]),
            },
            raise_on_error=False,
        )


def failure(result: dg.ExecuteInProcessResult) -> str:
    (event,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    return event.step_failure_data.user_failure_data.description


def loaded_counts(result: dg.ExecuteInProcessResult, partition: str) -> dict[str, Any]:
    (mat,) = [m for m in result.asset_materializations_for_node("shop__loaded__orders") if m.asset_key == LOADED]
    return mat.metadata["counts_by_partition"].value[partition]


def inferred_spec(engine: str, tmp_path: Path, **source: Any) -> PipelineSpec:
    data = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
    del data["sources"][0]["columns"]
    if source.get("kind") == "csv":
        for key in ("connection", "table", "timestamp_column"):
            data["sources"][0].pop(key, None)
    data["sources"][0].update(source)
    data.pop("report", None)
    if engine == "clickhouse":
        data["warehouse"] = {"kind": "clickhouse", "url": f"chdb://{tmp_path}/clickhouse"}
    return parse_pipeline(data, "shop.yaml")


def warehouse_rows(spec: PipelineSpec, etl_env: dict[str, str]) -> list[tuple]:
    wh = open_warehouse(spec.warehouse, etl_env["ETL_WAREHOUSE_URL"])
    frame = wh.query("SELECT order_id, customer, amount FROM mart.orders ORDER BY order_id", {})
    return [tuple(None if v is None or v != v else (float(v) if i == 2 else v) for i, v in enumerate(r))
            for r in frame.itertuples(index=False)]


@pytest.mark.parametrize("engine", ["postgres", "clickhouse"])
def test_a_column_gone_from_the_source_fails_by_default_and_loads_null_when_declared(
    engine: str, etl_env: dict[str, str], tmp_path: Path
) -> None:
    src = etl_env["TEST_SOURCE_URL"]
    create_orders(src, [
        (1, "ann", "10.50", dt.datetime(2025, 3, 10, 9, tzinfo=NY)),
        (2, "bob", "20.00", dt.datetime(2025, 3, 11, 9, tzinfo=NY)),
        (3, "cy", "30.25", dt.datetime(2025, 3, 3, 9, tzinfo=NY)),  # the week before
    ])
    spec = inferred_spec(engine, tmp_path)
    assert run(spec, etl_env, "2025-03-02").success
    assert run(spec, etl_env, WEEK).success
    with psycopg.connect(src) as conn:
        conn.execute("ALTER TABLE src.orders DROP COLUMN amount")
        conn.execute("INSERT INTO src.orders VALUES (4, 'dee', %s)", (dt.datetime(2025, 3, 12, 9, tzinfo=NY),))
        conn.execute("UPDATE src.orders SET customer = 'bea' WHERE order_id = 2")

    failed = run(spec, etl_env, WEEK)
    assert not failed.success
    assert failure(failed) == (
        f"shop/orders partition {WEEK}: mart.orders has column 'amount', which the source no longer provides; "
        "set schema.on_missing_column: null on the source to load NULL there, or drop the column"
    )
    before = [(1, "ann", 10.5), (2, "bob", 20.0), (3, "cy", 30.25)]
    assert warehouse_rows(spec, etl_env) == before

    tolerant = inferred_spec(engine, tmp_path, schema={"on_missing_column": None})  # YAML's bare `null`
    result = run(tolerant, etl_env, WEEK)
    assert result.success
    counts = loaded_counts(result, WEEK)
    assert (counts["inserted"], counts["updated"], counts["missing_columns"]) == (1, 2, ["amount"])
    # The week's rows no longer have an amount; the week before keeps what it loaded.
    assert warehouse_rows(spec, etl_env) == [(1, "ann", None), (2, "bea", None), (3, "cy", 30.25), (4, "dee", None)]


def test_a_source_column_name_postgres_cannot_hold_fails_every_run_naming_it(
    etl_env: dict[str, str], tmp_path: Path
) -> None:
    """PostgreSQL truncates names over 63 bytes: loaded once, every later run would fail."""
    long = "customer_" + "x" * 60
    folder = tmp_path / "drops"
    folder.mkdir()
    (folder / "orders.csv").write_text(f"order_id,{long}\n1,ann\n2,bob\n")
    spec = inferred_spec("postgres", tmp_path, kind="csv", path=str(folder / "*.csv"), mode="full")
    for _ in range(2):
        result = run(spec, etl_env, WEEK)
        assert not result.success
        assert failure(result) == (
            f"shop/orders partition {WEEK}: column {long!r} is 69 bytes long; PostgreSQL names hold at most 63: "
            f"declare it under columns with a shorter name and from: {long!r}"
        )

"""Data contracts: schema-drift policies and stored check failures, on real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

import dagster as dg
import pandas as pd
import psycopg
import pytest

from etl_assets.io.storage import ParquetIOManagerResource
from etl_assets.orchestration.assets import asset_key, build_pipeline_assets
from etl_assets.sources.base import SourceDataError
from etl_assets.spec import SchemaPolicySpec, SpecError, parse_pipeline
from etl_assets.transform.normalize import record_hashes
from etl_assets.warehouses.postgres import LoadCounts, Warehouse, WarehouseResource
from etl_assets_tests.helpers import create_orders, make_spec, query

NY = dt.timezone(dt.timedelta(hours=-4))
WEEK = "2025-03-09"


def _frame(types: dict[str, str], **columns: list[Any]) -> pd.DataFrame:
    dtypes = {"integer": "Int64", "string": "string", "float": "Float64"}
    frame = pd.DataFrame({c: pd.array(v, dtype=dtypes[types[c]]) for c, v in columns.items()})
    frame["record_hash"] = record_hashes(frame, types)
    return frame


def load(
    wh: Warehouse, types: dict[str, str], frame: pd.DataFrame, policy: SchemaPolicySpec | None = None,
    partition: str = WEEK,
) -> tuple[list[Any], LoadCounts]:
    policy = policy or SchemaPolicySpec()
    with wh.connect() as conn:
        events = wh.ensure_table(conn, "mart.c", types, ["id"], policy=policy)
        loaded = {c: t for c, t in types.items() if c not in {e.column for e in events if e.change == "ignored"}}
        counts = wh.load_partition(
            conn, target="mart.c", frame=frame, types=loaded, key=["id"], partition=partition, run_id="r",
            strategy="upsert", on_missing_column=policy.on_missing_column,
        )
    return [e.as_dict() for e in events], counts


V1 = {"id": "integer", "name": "string"}
V2 = {"id": "integer", "name": "string", "tier": "string"}


# --- on_new_column --------------------------------------------------------------------------


def test_new_column_evolves_by_default_and_the_event_names_its_type(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    load(wh, V1, _frame(V1, id=[1], name=["a"]))
    events, _ = load(wh, V2, _frame(V2, id=[1, 2], name=["a", "b"], tier=["gold", None]))
    assert events == [{"column": "tier", "change": "added", "before": None, "after": "text"}]
    assert query(warehouse_url, "SELECT id, tier FROM mart.c ORDER BY id") == [(1, "gold"), (2, None)]


def test_new_column_fails_the_load_when_the_source_says_fail(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    load(wh, V1, _frame(V1, id=[1], name=["a"]))
    with pytest.raises(SourceDataError) as err:
        load(wh, V2, _frame(V2, id=[1], name=["z"], tier=["gold"]), SchemaPolicySpec(on_new_column="fail"))
    assert str(err.value) == (
        "mart.c has no column 'tier', which the source now provides (text); set schema.on_new_column: "
        "evolve on the source to add it, or ignore to leave it out"
    )
    assert query(warehouse_url, "SELECT * FROM mart.c")[0][:2] == (1, "a")  # nothing written


def test_new_column_is_left_out_when_the_source_says_ignore(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    load(wh, V1, _frame(V1, id=[1], name=["a"]))
    events, counts = load(wh, V2, _frame(V2, id=[2], name=["b"], tier=["gold"]), SchemaPolicySpec(on_new_column="ignore"))
    assert events == [{"column": "tier", "change": "ignored", "before": None, "after": "text"}]
    assert counts.inserted == 1
    cols = query(warehouse_url, "SELECT column_name FROM information_schema.columns WHERE table_name = 'c'")
    assert "tier" not in {c for (c,) in cols}


# --- on_missing_column ----------------------------------------------------------------------


def test_missing_column_keep_leaves_updated_rows_their_value(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    load(wh, V2, _frame(V2, id=[1, 2], name=["a", "b"], tier=["gold", "silver"]))
    _, counts = load(wh, V1, _frame(V1, id=[1, 3], name=["a2", "c"]), SchemaPolicySpec(on_missing_column="keep"))
    assert (counts.inserted, counts.updated) == (1, 1)
    assert counts.drift == [{"column": "tier", "change": "missing", "before": "text", "after": "kept in updated rows"}]
    assert query(warehouse_url, "SELECT id, name, tier FROM mart.c ORDER BY id") == [
        (1, "a2", "gold"), (2, "b", "silver"), (3, "c", None)
    ]
    # A rerun changes nothing: the kept column is not compared.
    _, again = load(wh, V1, _frame(V1, id=[1, 3], name=["a2", "c"]), SchemaPolicySpec(on_missing_column="keep"))
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)


def test_missing_column_null_records_the_event(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    load(wh, V2, _frame(V2, id=[1], name=["a"], tier=["gold"]))
    _, counts = load(wh, V1, _frame(V1, id=[1], name=["a2"]), SchemaPolicySpec(on_missing_column="null"))
    assert counts.drift == [{"column": "tier", "change": "missing", "before": "text", "after": "NULL in the rows written"}]
    assert query(warehouse_url, "SELECT tier FROM mart.c") == [(None,)]


# --- on_type_change -------------------------------------------------------------------------


def test_type_change_fails_by_default_naming_both_types(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    load(wh, {"id": "integer", "qty": "integer"}, _frame({"id": "integer", "qty": "integer"}, id=[1], qty=[2]))
    with pytest.raises(SourceDataError) as err:
        load(wh, {"id": "integer", "qty": "float"}, _frame({"id": "integer", "qty": "float"}, id=[1], qty=[2.5]))
    assert str(err.value) == (
        "schema mismatch in mart.c: column 'qty' is bigint in the warehouse but the spec makes it "
        "double precision; set schema.on_type_change: widen on the source to widen it"
    )


def test_widen_integer_to_numeric_keeps_every_value_exact(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    big = 2**62 + 1  # beyond float64's exact integers
    load(wh, {"id": "integer", "qty": "integer"}, _frame({"id": "integer", "qty": "integer"}, id=[1], qty=[big]))
    widen = SchemaPolicySpec(on_type_change="widen")
    types = {"id": "integer", "qty": "float"}
    events, counts = load(wh, types, _frame(types, id=[2], qty=[2.5]), widen)
    assert events == [{"column": "qty", "change": "widened", "before": "bigint", "after": "numeric"}]
    assert counts.inserted == 1
    assert query(warehouse_url, "SELECT id, qty FROM mart.c ORDER BY id") == [(1, Decimal(big)), (2, Decimal("2.5"))]
    # The widened column now holds the spec's type: later loads need no further change.
    events, again = load(wh, types, _frame(types, id=[2], qty=[2.5]), widen)
    assert (events, again.unchanged) == ([], 1)


@pytest.mark.parametrize(("ddl", "spec_type", "value", "wider"), [
    ("integer", "integer", 2**40, "bigint"),
    ("character varying(3)", "string", "longer than three", "text"),
])
def test_widen_a_narrow_warehouse_column(warehouse_url: str, ddl: str, spec_type: str, value: Any, wider: str) -> None:
    with psycopg.connect(warehouse_url) as conn:
        conn.execute(
            f"CREATE SCHEMA mart; CREATE TABLE mart.c (id bigint PRIMARY KEY, v {ddl}, record_hash text NOT NULL, "
            "_partition text NOT NULL, _loaded_at timestamptz NOT NULL, _run_id text NOT NULL)"
        )
    types = {"id": "integer", "v": spec_type}
    wh = Warehouse(warehouse_url)
    with pytest.raises(SourceDataError, match=re.escape(f"column 'v' is {ddl} in the warehouse")):
        load(wh, types, _frame(types, id=[1], v=[value]))
    events, _ = load(wh, types, _frame(types, id=[1], v=[value]), SchemaPolicySpec(on_type_change="widen"))
    assert events == [{"column": "v", "change": "widened", "before": ddl, "after": wider}]
    assert query(warehouse_url, "SELECT v FROM mart.c") == [(value,)]


def test_widen_refuses_a_change_that_loses_values(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    load(wh, {"id": "integer", "v": "string"}, _frame({"id": "integer", "v": "string"}, id=[1], v=["x"]))
    types = {"id": "integer", "v": "integer"}
    with pytest.raises(SourceDataError, match="column 'v' is text in the warehouse but the spec makes it bigint; "
                       "text cannot hold every bigint value exactly"):
        load(wh, types, _frame(types, id=[1], v=[1]), SchemaPolicySpec(on_type_change="widen"))


def test_clickhouse_cannot_widen_or_keep_or_store_failures() -> None:
    ch = {"kind": "clickhouse", "url": "chdb:///tmp/x"}
    base = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")["sources"][0]
    for extra, field in [
        ({"schema": {"on_type_change": "widen"}}, "sources[0].schema.on_type_change: widen"),
        ({"schema": {"on_missing_column": "keep"}}, "sources[0].schema.on_missing_column: keep"),
        ({"checks": [{"type": "not_null", "column": "customer", "severity": "warn", "store_failures": True}]},
         "sources[0].checks[0].store_failures"),
    ]:
        with pytest.raises(SpecError, match=re.escape(f"{field} is not supported on a ClickHouse")):
            make_spec(sources=[{**base, **extra}], warehouse=ch)


# --- a run: stored failures and drift in the loaded metadata -------------------------------


def _run(spec: Any, etl_env: dict[str, str], instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        build_pipeline_assets(spec), instance=instance, partition_key=WEEK,
        resources={
            "parquet_io": ParquetIOManagerResource(base_path=etl_env["ETL_STORAGE_DIR"]),
            "warehouse": WarehouseResource(url=etl_env["ETL_WAREHOUSE_URL"]),
        },
        raise_on_error=False,
    )


def _loaded_meta(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    (mat,) = [m for m in result.asset_materializations_for_node("shop__loaded__orders")]
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


def test_store_failures_keeps_failing_rows_beside_the_load_replaced_per_partition(etl_env) -> None:
    rows = [(i, f"cust{i % 4}", f"{i}.50", dt.datetime(2025, 3, 10, tzinfo=NY) + dt.timedelta(hours=i)) for i in range(1, 21)]
    create_orders(etl_env["TEST_SOURCE_URL"], rows)
    data = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
    data["sources"][0]["checks"] = [
        {"type": "in_set", "column": "customer", "values": ["cust0", "cust1", "cust2"], "severity": "warn",
         "store_failures": True},
    ]
    spec = parse_pipeline(data, "shop.yaml")
    wh = etl_env["ETL_WAREHOUSE_URL"]
    for _attempt in range(2):  # the rerun replaces the partition's failures, never duplicates them
        with dg.instance_for_test() as instance:
            result = _run(spec, etl_env, instance)
        assert result.success
        assert _loaded_meta(result)["counts_by_partition"][WEEK]["failures_stored"] == 5
        assert query(wh, "SELECT count(*) FROM mart.orders") == [(20,)]  # failing rows still load
        assert query(wh, "SELECT order_id, customer, _check, _partition, _run_id = %s FROM mart.orders__failures "
                     "ORDER BY order_id", (result.run_id,)) == [
            (i, "cust3", "in_set_customer", WEEK, True) for i in (3, 7, 11, 15, 19)
        ]
        reason = query(wh, "SELECT DISTINCT _reason FROM mart.orders__failures")
        assert reason == [("customer is one of ['cust0', 'cust1', 'cust2'] failed",)]


def test_drift_events_reach_the_loaded_metadata(etl_env) -> None:
    create_orders(etl_env["TEST_SOURCE_URL"], [(1, "a", "1.50", dt.datetime(2025, 3, 10, tzinfo=NY))])
    data = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
    with dg.instance_for_test() as instance:
        assert _run(parse_pipeline(data, "shop.yaml"), etl_env, instance).success
    with psycopg.connect(etl_env["TEST_SOURCE_URL"]) as conn:
        conn.execute("ALTER TABLE src.orders ADD COLUMN tier text DEFAULT 'gold'")
    data["sources"][0]["columns"].append({"name": "tier", "type": "string"})
    with dg.instance_for_test() as instance:
        result = _run(parse_pipeline(data, "shop.yaml"), etl_env, instance)
    assert result.success
    drift = [{"partition": WEEK, "column": "tier", "change": "added", "before": None, "after": "text"}]
    meta = _loaded_meta(result)
    assert meta["schema_drift"] == drift
    assert meta["counts_by_partition"][WEEK]["drift"] == [{"column": "tier", "change": "added", "before": None, "after": "text"}]
    assert asset_key("shop", "loaded", "orders") in {e.asset_key for e in result.get_asset_materialization_events()}


# --- the contract as history and the report show it -----------------------------------------


def test_scd2_run_shows_versions_drift_and_thresholds_in_history_and_report(etl_env) -> None:
    from etl_assets.definitions import build_defs
    from etl_assets.orchestration.runner import run_pipeline

    start = dt.datetime(2025, 3, 10, tzinfo=NY)
    create_orders(etl_env["TEST_SOURCE_URL"], [(i, f"cust{i % 5}", f"{i}.50", start + dt.timedelta(hours=i)) for i in range(1, 11)])
    data = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
    source = data["sources"][0]
    source["load"] = {"target": "mart.orders", "strategy": "scd2"}
    source["checks"] = [{"type": "in_set", "column": "customer", "values": ["cust0", "cust1", "cust2", "cust3"],
                         "warn_if": "> 1", "error_if": "> 50%"}]
    with dg.instance_for_test() as instance:
        first = run_pipeline(build_defs([parse_pipeline(data, "shop.yaml")]), parse_pipeline(data, "shop.yaml"), [WEEK], instance=instance)
        assert first.status == "success"
        assert first.sources["orders"].partitions[WEEK].versions_opened == 10
        # Two orders change later in the week; the source gains a column.
        with psycopg.connect(etl_env["TEST_SOURCE_URL"]) as conn:
            conn.execute("UPDATE src.orders SET customer = 'cust0', updated_at = updated_at + interval '1 day' "
                         "WHERE order_id IN (1, 2)")
            conn.execute("ALTER TABLE src.orders ADD COLUMN tier text")
        source["columns"].append({"name": "tier", "type": "string"})
        spec = parse_pipeline(data, "shop.yaml")
        second = run_pipeline(build_defs([spec]), spec, [WEEK], instance=instance)
    assert second.status == "success"
    part = second.sources["orders"].partitions[WEEK]
    assert (part.versions_opened, part.versions_closed) == (2, 2)
    assert part.drift == [{"column": "tier", "change": "added", "before": None, "after": "text"}]
    assert "shop orders 2025-03-09: schema drift: mart.orders: new column 'tier' (text) added" in second.notes
    from etl_assets.ops.notify import slack_message

    _, blocks = slack_message(second.as_record())
    assert "schema drift: mart.orders: new column 'tier' (text) added" in str(blocks)
    wh = etl_env["ETL_WAREHOUSE_URL"]
    assert query(wh, "SELECT count(*), count(*) FILTER (WHERE is_current) FROM mart.orders") == [(12, 10)]
    assert query(wh, "SELECT order_id, customer FROM mart.orders__current WHERE order_id <= 2 ORDER BY 1") == [
        (1, "cust0"), (2, "cust0")
    ]
    with open(second.report_path.replace(".html", ".md"), encoding="utf-8") as f:
        md = f.read()
    # cust4 fails in_set: orders 4 and 9 after the change, 2 rows > 1.
    assert "| orders | in_set_customer | > 1 | > 50% | WARN | warn_if > 1 | 2 |" in md
    assert "| orders | 2025-03-09 | tier | added | — | text |" in md
    assert "| orders | 2025-03-09 | 2 | 2 |" in md

"""Data-quality checks that catch real incidents, against real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest

from etl_assets.orchestration.assets import asset_key
from etl_assets.spec import SpecError, parse_pipeline
from etl_assets_tests.helpers import (
    create_orders,
    make_spec,
    materialize,
    meta,
    ny,
    orders_rows,
    query,
)


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def with_checks(checks: list[dict[str, Any]], **extra: Any):
    data = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
    data["sources"][0]["checks"] = checks
    data.update(extra)
    return parse_pipeline(data, "shop.yaml")


def evaluations(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


LOADED = asset_key("shop", "loaded", "orders")


def test_dropped_column_is_named_by_the_blocking_schema_check(etl_env, instance) -> None:
    spec = with_checks([{"type": "schema", "severity": "error"}])
    with psycopg.connect(etl_env["TEST_SOURCE_URL"]) as conn:
        conn.execute(
            "CREATE SCHEMA src; CREATE TABLE src.orders (order_id bigint, customer text, updated_at timestamptz);"
            "INSERT INTO src.orders VALUES (1, 'a', '2025-03-10T12:00:00Z'), (2, 'b', '2025-03-11T12:00:00Z')"
        )
    result = materialize(spec, etl_env, instance, partition_key="2025-03-09")
    assert not result.success
    schema = evaluations(result)["schema"]
    assert schema.passed is False
    assert schema.metadata["message"].value == "missing column(s): amount"
    assert schema.metadata["sample_values"].value == ["amount"]
    assert LOADED not in {e.asset_key for e in result.get_asset_materialization_events()}
    assert query(etl_env["ETL_WAREHOUSE_URL"], "SELECT to_regclass('mart.orders')") == [(None,)]


def test_exact_schema_reports_a_new_column(etl_env, instance) -> None:
    spec = with_checks([{"type": "schema", "mode": "exact", "severity": "warn"}])
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(3, ny(2025, 3, 10), dt.timedelta(hours=1)))
    with psycopg.connect(etl_env["TEST_SOURCE_URL"]) as conn:
        conn.execute("ALTER TABLE src.orders ADD COLUMN coupon text")
    data = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    data["sources"][0].pop("columns")  # read every source column, so the new one shows
    data["sources"][0]["checks"][0]["columns"] = {"order_id": "integer", "customer": "string", "amount": "float", "updated_at": "timestamp"}
    result = materialize(parse_pipeline(data, "shop.yaml"), etl_env, instance, partition_key="2025-03-09")
    assert result.success  # a warning loads
    schema = evaluations(result)["schema"]
    assert schema.passed is False
    assert schema.metadata["message"].value == "unexpected column(s): coupon"


def test_ninety_percent_row_drop_blocks_the_load(etl_env, instance) -> None:
    spec = with_checks([{"type": "row_count_anomaly", "partitions": 4, "min_ratio": 0.5, "severity": "error"}])
    rows = []
    for w, start in enumerate([ny(2025, 2, 9), ny(2025, 2, 16), ny(2025, 2, 23), ny(2025, 3, 2)]):
        rows += [(w * 1000 + i, "c", "1", start + dt.timedelta(hours=1 + i)) for i in range(100)]
    rows += [(9000 + i, "c", "1", ny(2025, 3, 9, 1 + i)) for i in range(10)]
    create_orders(etl_env["TEST_SOURCE_URL"], rows)
    history = materialize(spec, etl_env, instance, tags={
        "dagster/asset_partition_range_start": "2025-02-09", "dagster/asset_partition_range_end": "2025-03-02"})
    assert history.success
    result = materialize(spec, etl_env, instance, partition_key="2025-03-09")
    assert not result.success
    anomaly = evaluations(result)["row_count_anomaly"]
    assert anomaly.passed is False
    assert anomaly.metadata["message"].value == "10 rows is 0.10× the median 100 of the last 4 partitions"
    assert query(etl_env["ETL_WAREHOUSE_URL"], "SELECT count(*) FROM mart.orders WHERE _partition = '2025-03-09'") == [(0,)]


def test_orphan_foreign_keys_warn_with_count_and_samples(etl_env, instance) -> None:
    data = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
    data["sources"][0]["checks"] = [
        {"type": "relationship", "column": "customer", "to": {"source": "customers", "column": "name"}, "severity": "warn"}
    ]
    data["sources"].append(
        {
            "name": "customers", "kind": "postgres", "connection": {"url": "${TEST_SOURCE_URL}"},
            "table": "src.customers", "mode": "full", "primary_key": ["name"],
            "columns": [{"name": "name"}], "load": {"target": "mart.customers"},
        }
    )
    spec = parse_pipeline(data, "shop.yaml")
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(14, ny(2025, 3, 10), dt.timedelta(hours=2)))
    with psycopg.connect(etl_env["TEST_SOURCE_URL"]) as conn:
        conn.execute("CREATE TABLE src.customers (name text primary key)")
        conn.execute("INSERT INTO src.customers SELECT 'cust' || g FROM generate_series(0, 4) g")
    result = materialize(spec, etl_env, instance, partition_key="2025-03-09")
    assert result.success
    rel = evaluations(result)["relationship_customer"]
    assert rel.passed is False and rel.severity == dg.AssetCheckSeverity.WARN
    # customers cust5 and cust6 never arrived: orders 5, 6, 12, 13 reference them
    assert rel.metadata["unexpected_count"].value == 4
    assert rel.metadata["sample_values"].value == ["cust5", "cust6"]
    assert meta(result, LOADED)["inserted"] == 14


def test_quarantine_loads_good_rows_and_reruns_replace_bad_ones(etl_env, instance) -> None:
    spec = with_checks([{"type": "between", "column": "amount", "min": 0, "severity": "quarantine"}])
    rows = orders_rows(10, ny(2025, 3, 10), dt.timedelta(hours=1))
    rows[2] = (3, "cust3", "-3.00", rows[2][3])
    rows[6] = (7, "cust0", "-1.00", rows[6][3])
    create_orders(etl_env["TEST_SOURCE_URL"], rows)
    wh = etl_env["ETL_WAREHOUSE_URL"]
    for _ in range(2):
        result = materialize(spec, etl_env, instance, partition_key="2025-03-09")
        assert result.success
        m = meta(result, LOADED)
        assert m["quarantined"] == 2
        assert meta(result, asset_key("shop", "validated", "orders"))["rows_quarantined"] == 2
        assert query(wh, "SELECT count(*) FROM mart.orders") == [(8,)]
        assert query(wh, "SELECT order_id, amount, _check, _reason, _partition FROM mart.orders__quarantine ORDER BY 1") == [
            (3, -3.0, "between_amount", "amount is between 0.0 and inf failed", "2025-03-09"),
            (7, -1.0, "between_amount", "amount is between 0.0 and inf failed", "2025-03-09"),
        ]
    doc = json.loads((Path(etl_env["ETL_STORAGE_DIR"]) / "shop" / "quality" / "orders" / "2025-03-09.json").read_text())
    assert doc["rows_quarantined"] == 2
    assert doc["checks"][0]["unexpected_count"] == 2
    assert doc["great_expectations"]["success"] is False


def test_stale_feed_fails_freshness(etl_env, instance) -> None:
    spec = with_checks([{"type": "freshness", "max_age": "2d", "severity": "warn"}])
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(5, ny(2025, 3, 9, 1), dt.timedelta(hours=1)))
    result = materialize(spec, etl_env, instance, partition_key="2025-03-09")
    fresh = evaluations(result)["freshness"]
    assert fresh.passed is False
    assert fresh.metadata["message"].value == (
        "newest updated_at is 2025-03-09 10:00:00+00:00, older than 2d before the window end 2025-03-16T00:00:00-04:00"
    )


def test_any_gx_expectation_by_name(etl_env, instance) -> None:
    spec = with_checks([
        {"type": "expectation", "expectation": "ExpectColumnValueLengthsToBeBetween",
         "kwargs": {"column": "customer", "min_value": 5, "max_value": 5}, "severity": "warn"}
    ])
    rows = orders_rows(4, ny(2025, 3, 10), dt.timedelta(hours=1))
    rows[1] = (2, "customer-two", "2", rows[1][3])
    create_orders(etl_env["TEST_SOURCE_URL"], rows)
    result = materialize(spec, etl_env, instance, partition_key="2025-03-09")
    check = evaluations(result)["expect_column_value_lengths_to_be_between_customer"]
    assert check.passed is False
    assert check.metadata["unexpected_count"].value == 1
    assert check.metadata["sample_values"].value == ["customer-two"]


def test_bad_expectations_are_spec_errors() -> None:
    with pytest.raises(SpecError) as e:
        with_checks([{"type": "expectation", "expectation": "ExpectColumnValuesToBeUniqe", "kwargs": {"column": "customer"}}])
    assert "unknown great-expectations expectation 'ExpectColumnValuesToBeUniqe' (did you mean 'ExpectColumnValuesToBeUnique'?)" in str(e.value)
    with pytest.raises(SpecError) as e:
        with_checks([{"type": "expectation", "expectation": "ExpectColumnValuesToBeBetween", "kwargs": {"colum": "amount"}}])
    assert "sources[0].checks[0]: invalid arguments for ExpectColumnValuesToBeBetween" in str(e.value)
    with pytest.raises(SpecError) as e:
        with_checks([{"type": "row_count", "min": 1, "severity": "quarantine"}])
    assert "severity quarantine needs a row-level check, not row_count" in str(e.value)


def test_gx_reads_only_the_columns_its_checks_name() -> None:
    """A wide frame is not copied whole for GX unless a check may read any column."""
    import pandas as pd

    from etl_assets.quality import run_checks
    from etl_assets.quality.suite import gx_input as _gx_input

    frame = pd.DataFrame({
        "order_id": pd.array([1, 2, 2], dtype="Int64"),
        "customer": pd.array(["a", None, "c"], dtype="string"),
        "amount": pd.array([1.0, 2.0, 3.0], dtype="Float64"),
        "note": pd.array(["x", "y", "z"], dtype="string"),
    })
    builtin = with_checks([{"type": "not_null", "column": "customer", "severity": "warn"},
                           {"type": "unique", "severity": "warn"}]).sources[0]
    assert list(_gx_input(frame, builtin.checks, builtin.primary_key).columns) == ["customer", "order_id"]
    outcomes = {o.name: o.unexpected_count for o in run_checks(frame, builtin).outcomes}
    assert outcomes == {"not_null_customer": 1, "unique_key": 2}
    generic = with_checks([{"type": "expectation", "expectation": "ExpectColumnValuesToNotBeNull",
                            "kwargs": {"column": "amount"}}]).sources[0]
    assert _gx_input(frame, generic.checks, generic.primary_key) is frame


def test_an_empty_week_names_the_check_that_failed(etl_env, instance) -> None:
    """GX does not return results in suite order; each result must reach its own check."""
    spec = with_checks([
        {"type": "unique", "severity": "error"},
        {"type": "in_set", "column": "customer", "values": ["cust1"], "severity": "error"},
        {"type": "row_count", "min": 1, "severity": "error"},
        {"type": "not_null", "column": "customer", "severity": "warn"},
    ])
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(3, ny(2025, 3, 17), dt.timedelta(hours=1)))  # a later week
    result = materialize(spec, etl_env, instance, partition_key="2025-03-09")
    assert not result.success
    passed = {name: e.passed for name, e in evaluations(result).items()}
    assert passed == {"unique_key": True, "in_set_customer": True, "row_count": False, "not_null_customer": True}
    assert evaluations(result)["row_count"].metadata["observed_value"].value == "0"
    logged = [e.user_message for e in instance.all_logs(result.run_id) if "blocking check(s)" in e.user_message]
    assert logged == ["shop/orders: blocking check(s) failed: row_count; not loading"]
    assert LOADED not in {e.asset_key for e in result.get_asset_materialization_events()}


def test_a_check_gx_cannot_evaluate_fails_alone_and_quarantine_keeps_its_own_rows(etl_env, instance) -> None:
    spec = with_checks([
        {"type": "between", "column": "amount", "min": 0, "severity": "quarantine"},
        {"type": "expectation", "expectation": "ExpectColumnPairValuesAToBeGreaterThanB",
         "kwargs": {"column_A": "amount", "column_B": "discount"}, "severity": "warn"},
        {"type": "not_null", "column": "customer", "severity": "warn"},
    ])
    rows = orders_rows(8, ny(2025, 3, 10), dt.timedelta(hours=1))
    rows[1] = (2, None, "-2.00", rows[1][3])
    rows[4] = (5, "cust5", "-5.00", rows[4][3])
    rows[5] = (6, None, "6.00", rows[5][3])
    create_orders(etl_env["TEST_SOURCE_URL"], rows)
    result = materialize(spec, etl_env, instance, partition_key="2025-03-09")
    assert result.success  # the failing checks are warn and quarantine
    evals = evaluations(result)
    pair = evals["expect_column_pair_values_a_to_be_greater_than_b"]
    assert pair.passed is False and pair.severity == dg.AssetCheckSeverity.WARN
    assert pair.metadata["message"].value == 'Error: The column "discount" in BatchData does not exist.'
    assert evals["not_null_customer"].passed is False
    assert evals["not_null_customer"].metadata["unexpected_count"].value == 2
    assert evals["between_amount"].passed is False
    assert evals["between_amount"].metadata["unexpected_count"].value == 2
    wh = etl_env["ETL_WAREHOUSE_URL"]
    assert query(wh, "SELECT order_id, _check FROM mart.orders__quarantine ORDER BY 1") == [
        (2, "between_amount"), (5, "between_amount"),
    ]
    assert query(wh, "SELECT array_agg(order_id ORDER BY order_id) FROM mart.orders") == [([1, 3, 4, 6, 7, 8],)]


def test_check_on_a_column_the_source_does_not_have(etl_env, instance) -> None:
    """Without declared columns the source decides; the check fails at its own severity."""
    data = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
    data["sources"][0].pop("columns")
    data["sources"][0]["checks"] = [
        {"type": "not_null", "column": "coupon", "severity": "error"},
        {"type": "not_null", "column": "customer", "severity": "warn"},
    ]
    spec = parse_pipeline(data, "shop.yaml")
    rows = orders_rows(4, ny(2025, 3, 10), dt.timedelta(hours=1))
    rows[2] = (3, None, "3.00", rows[2][3])
    create_orders(etl_env["TEST_SOURCE_URL"], rows)
    result = materialize(spec, etl_env, instance, partition_key="2025-03-09")
    assert not result.success
    evals = evaluations(result)
    coupon = evals["not_null_coupon"]
    assert coupon.passed is False and coupon.severity == dg.AssetCheckSeverity.ERROR
    assert coupon.metadata["message"].value == (
        "column 'coupon' is not in the source's columns: order_id, customer, amount, updated_at"
    )
    assert evals["not_null_customer"].metadata["unexpected_count"].value == 1
    assert LOADED not in {e.asset_key for e in result.get_asset_materialization_events()}


def test_check_on_an_undeclared_column_is_a_spec_error() -> None:
    with pytest.raises(SpecError) as e:
        with_checks([
            {"type": "unique", "severity": "error"},
            {"type": "not_null", "column": "customer", "severity": "warn"},
            {"type": "not_null", "column": "custmer", "severity": "warn"},
        ])
    assert str(e.value) == (
        "shop.yaml (pipeline shop): sources[0].checks[2].column: column 'custmer' is not in the source's "
        "columns: order_id, customer, amount, updated_at (did you mean 'customer'?)"
    )
    with pytest.raises(SpecError) as e:
        with_checks([{"type": "unique", "columns": ["order_id", "sku"]}])
    assert "sources[0].checks[0].columns[1]: column 'sku' is not in the source's columns" in str(e.value)


def test_a_quarantine_check_that_cannot_run_quarantines_every_row() -> None:
    """No row passed a check that could not be evaluated, so none loads unverified."""
    import pandas as pd

    from etl_assets.quality import run_checks

    frame = pd.DataFrame({
        "order_id": pd.array([1, 2, 3], dtype="Int64"),
        "amount": pd.array([1.0, -2.0, 3.0], dtype="Float64"),
    })
    data = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
    data["sources"][0].pop("columns")
    data["sources"][0]["checks"] = [
        {"type": "between", "column": "amount", "min": 0, "severity": "quarantine"},
        {"type": "regex", "column": "sku", "pattern": "^S", "severity": "quarantine"},
    ]
    result = run_checks(frame, parse_pipeline(data, "shop.yaml").sources[0])
    assert [(o.name, o.passed, o.unexpected_count) for o in result.outcomes] == [
        ("between_amount", False, 1), ("regex_sku", False, 3),
    ]
    assert result.keep.tolist() == [False, False, False]
    assert result.quarantine["_check"].tolist() == ["regex_sku", "between_amount, regex_sku", "regex_sku"]
    assert result.quarantine["_reason"].tolist()[0] == (
        "sku matches /^S/ failed: column 'sku' is not in the source's columns: order_id, amount"
    )


def test_check_result_keeps_each_partitions_counts() -> None:
    """A 4-week backfill's result plots on the scale of a 1-week run's, and says which week failed."""
    from etl_assets.quality import CheckOutcome, check_result, merge_outcomes

    weeks = {
        "2026-11-08": [CheckOutcome("not_null_customer_id", "warn", True, "d", 0, 100)],
        "2026-11-15": [CheckOutcome("not_null_customer_id", "warn", False, "d", 8, 120)],
    }
    [merged] = merge_outcomes(list(weeks.values()))
    result = check_result(dg.AssetKey(["p", "validated", "orders"]), merged, list(weeks), weeks)
    md = {k: getattr(v, "value", v) for k, v in result.metadata.items()}
    assert md["unexpected_count"] == 8  # the existing keys keep their meaning
    assert md["unexpected_per_partition"] == 4.0
    assert md["partition_count"] == 2
    assert md["by_partition"] == {
        "2026-11-08": {"passed": True, "unexpected_count": 0, "element_count": 100},
        "2026-11-15": {"passed": False, "unexpected_count": 8, "element_count": 120},
    }


# --- graded checks --------------------------------------------------------------------------

# 100 orders; in_set cust0–cust5 fails the 14 whose customer is cust6 (14%).
GRADED_ROWS = 100


@pytest.mark.parametrize(
    ("thresholds", "passed", "severity", "grade", "threshold", "loads"),
    [
        ({"warn_if": "> 20%", "error_if": "> 50%"}, True, dg.AssetCheckSeverity.ERROR, "pass", "none crossed", True),
        ({"warn_if": "> 10", "error_if": "> 50%"}, False, dg.AssetCheckSeverity.WARN, "warn", "warn_if > 10", True),
        ({"warn_if": "> 5%", "error_if": ">= 14"}, False, dg.AssetCheckSeverity.ERROR, "error", "error_if >= 14", False),
    ],
    ids=["below-both", "warns", "blocks"],
)
def test_graded_check_passes_warns_or_blocks_by_how_many_rows_fail(
    etl_env, instance, thresholds, passed, severity, grade, threshold, loads
) -> None:
    spec = with_checks([{"type": "in_set", "column": "customer", "values": [f"cust{i}" for i in range(6)], **thresholds}])
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(GRADED_ROWS, ny(2025, 3, 9, 1), dt.timedelta(minutes=30)))
    result = materialize(spec, etl_env, instance, partition_key="2025-03-09")
    ev = evaluations(result)["in_set_customer"]
    assert (ev.passed, ev.severity) == (passed, severity)
    assert ev.metadata["unexpected_count"].value == 14
    assert (ev.metadata["grade"].value, ev.metadata["threshold"].value) == (grade, threshold)
    if grade != "pass":
        assert ev.metadata["message"].value.startswith(f"14 failing row(s) (14% of 100) crossed {threshold}")
    # The check is declared blocking (it has error_if); a WARN result does not stop the load.
    assert spec.sources[0].checks[0].blocking
    assert (LOADED in {e.asset_key for e in result.get_asset_materialization_events()}) is loads
    assert result.success is loads
    rows = query(etl_env["ETL_WAREHOUSE_URL"], "SELECT to_regclass('mart.orders') IS NOT NULL")[0][0]
    assert rows is loads


def test_warn_if_alone_never_blocks(etl_env, instance) -> None:
    spec = with_checks([{"type": "in_set", "column": "customer", "values": ["cust0"], "warn_if": "> 1%"}])
    assert not spec.sources[0].checks[0].blocking
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(GRADED_ROWS, ny(2025, 3, 9, 1), dt.timedelta(minutes=30)))
    result = materialize(spec, etl_env, instance, partition_key="2025-03-09")
    ev = evaluations(result)["in_set_customer"]
    assert (ev.passed, ev.severity, ev.metadata["threshold"].value) == (False, dg.AssetCheckSeverity.WARN, "warn_if > 1%")
    assert result.success
    assert query(etl_env["ETL_WAREHOUSE_URL"], "SELECT count(*) FROM mart.orders") == [(GRADED_ROWS,)]
    checks = meta(result, asset_key("shop", "validated", "orders"))["checks_by_partition"]["2025-03-09"]
    assert (checks[0]["severity"], checks[0]["declared_severity"], checks[0]["grade"]) == ("warn", "error", "warn")


@pytest.mark.parametrize(
    ("check", "message"),
    [
        ({"type": "not_null", "column": "customer", "warn_if": "more than 3"},
         "threshold 'more than 3' must be a count or a share of rows, such as '> 10' or '> 1%'"),
        ({"type": "not_null", "column": "customer", "error_if": "> 10", "severity": "warn"},
         "error_if blocks the load above its threshold, which a severity warn check never does"),
        ({"type": "row_count", "min": 1, "warn_if": "> 1"}, "warn_if needs a row-level check, not row_count"),
        ({"type": "not_null", "column": "customer", "error_if": "> 1", "severity": "quarantine"},
         "a quarantine check sets every failing row aside"),
        ({"type": "not_null", "column": "customer", "warn_if": "> 120%"}, "is a share above 100%"),
    ],
)
def test_bad_thresholds_are_spec_errors_naming_the_check(check, message) -> None:
    with pytest.raises(SpecError) as err:
        with_checks([check])
    assert "sources[0].checks[0]" in str(err.value)
    assert message in str(err.value)

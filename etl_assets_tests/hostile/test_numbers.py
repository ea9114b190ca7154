"""Numbers a column type cannot hold fail by name; they never wrap, round or load."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pandas as pd
import psycopg
import pytest

from etl_assets.io.storage import ParquetIOManagerResource
from etl_assets.orchestration.assets import build_pipeline_assets
from etl_assets.transform.normalize import CastError, normalize
from etl_assets.warehouses.postgres import WarehouseResource
from etl_assets_tests.helpers import make_spec, query

INT64_MAX = 2**63 - 1


def _spec(columns: list[dict[str, Any]], **source: Any) -> Any:
    return make_spec(
        sources=[
            {
                "name": "orders",
                "kind": "postgres",
                "connection": {"url": "${TEST_SOURCE_URL}"},
                "table": "src.orders",
                "mode": "full",
                "primary_key": ["order_id"],
                "columns": columns,
                "load": {"target": "mart.orders", "strategy": "upsert"},
                **source,
            }
        ],
        report={},
    )


def _ids(values: list[Any]) -> pd.DataFrame:
    return pd.DataFrame({"order_id": list(range(1, len(values) + 1)), "n": values})


def _cast_column(values: list[Any], type_: str = "integer") -> pd.Series:
    spec = _spec([{"name": "order_id", "type": "integer"}, {"name": "n", "type": type_}])
    return normalize(_ids(values), spec.sources[0], "UTC").frame["n"]


@pytest.mark.parametrize(
    "text",
    ["99999999999999999999", "1e30", "18446744073709551615", "9223372036854775808",
     "-9223372036854775809", "1e19", "1.5", "nan", "inf", "1e-400"],
)
def test_integer_text_outside_int64_or_not_whole_is_a_cast_error(text: str) -> None:
    with pytest.raises(CastError) as e:
        _cast_column(["7", text])
    assert str(e.value) == (
        f"column 'n': 1 row(s) cannot be read as integer, e.g. {text!r} (first at row 2)"
    )


def test_integers_at_the_int64_edges_and_exact_forms_load_exactly() -> None:
    out = _cast_column(
        [str(INT64_MAX), str(-(2**63)), "9007199254740993", " 42 ", "+5", "4.0", "1e3", "-0"]
    )
    assert out.tolist() == [INT64_MAX, -(2**63), 9007199254740993, 42, 5, 4, 1000, 0]
    assert str(out.dtype) == "Int64"


@pytest.mark.parametrize(
    "series",
    [
        pd.Series([1.0, 1e30]),
        pd.Series([1.0, float("inf")]),
        pd.Series([1.0, 2.5]),
        pd.Series([1.0, 2.0**63]),
        pd.Series([1, 2**64 - 1], dtype="UInt64"),
    ],
    ids=["1e30", "inf", "fraction", "2**63", "uint64-max"],
)
def test_numeric_values_that_do_not_fit_an_integer_fail(series: pd.Series) -> None:
    with pytest.raises(CastError) as e:
        _cast_column(series.tolist() if series.dtype == "float64" else series)
    assert "column 'n': 1 row(s) cannot be read as integer" in str(e.value)
    assert "(first at row 2)" in str(e.value)


def test_whole_floats_within_range_become_integers() -> None:
    out = _cast_column(pd.Series([1.0, -3.0, 2.0**62, None]))
    assert out.tolist()[:3] == [1, -3, 2**62] and pd.isna(out.iloc[3])


@pytest.mark.parametrize("text", ["1e400", "-1e400"])
def test_float_text_beyond_float64_is_a_cast_error(text: str) -> None:
    with pytest.raises(CastError) as e:
        _cast_column(["1.5", text], "float")
    assert f"e.g. {text!r} (first at row 2)" in str(e.value)


def test_explicit_infinity_is_a_float() -> None:
    assert _cast_column(["inf", "-Infinity"], "float").tolist() == [float("inf"), float("-inf")]


def _materialize(spec: Any, etl_env: dict[str, str]) -> dg.ExecuteInProcessResult:
    with dg.instance_for_test() as instance:
        return dg.materialize(
            build_pipeline_assets(spec),
            instance=instance,
            resources={
                "parquet_io": ParquetIOManagerResource(base_path=etl_env["ETL_STORAGE_DIR"]),
                "warehouse": WarehouseResource(url=etl_env["ETL_WAREHOUSE_URL"]),
            },
            raise_on_error=False,
            partition_key="2025-03-09",
        )


def _numeric_source(url: str, values: list[str]) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("CREATE SCHEMA src; CREATE TABLE src.orders (order_id int, n numeric)")
        for i, v in enumerate(values, start=1):
            conn.execute("INSERT INTO src.orders VALUES (%s, %s::numeric)", (i, v))


def _failure(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert [f.step_key for f in failures] == ["shop__normalized__orders"]
    return failures[0].step_failure_data.user_failure_data.description


def test_a_postgres_numeric_too_big_for_integer_fails_the_run_and_loads_nothing(etl_env) -> None:
    _numeric_source(etl_env["TEST_SOURCE_URL"], ["1", "99999999999999999999"])
    spec = _spec([{"name": "order_id", "type": "integer"}, {"name": "n", "type": "integer"}])
    result = _materialize(spec, etl_env)
    assert not result.success
    assert _failure(result) == (
        "shop/orders partition 2025-03-09: column 'n': 1 row(s) cannot be read as integer, "
        "e.g. '99999999999999999999' (first at row 2)"
    )
    assert query(
        etl_env["ETL_WAREHOUSE_URL"], "SELECT count(*) FROM pg_tables WHERE tablename = 'orders'"
    ) == [(0,)]


def test_a_postgres_numeric_beyond_2_53_loads_exactly_as_integer(etl_env) -> None:
    big = str(2**53 + 1)
    _numeric_source(etl_env["TEST_SOURCE_URL"], [big, "12.000", str(INT64_MAX)])
    spec = _spec([{"name": "order_id", "type": "integer"}, {"name": "n", "type": "integer"},
                  ], checks=[])
    assert _materialize(spec, etl_env).success
    rows = query(etl_env["ETL_WAREHOUSE_URL"], "SELECT order_id, n FROM mart.orders ORDER BY 1")
    assert rows == [(1, 2**53 + 1), (2, 12), (3, INT64_MAX)]

"""What every benchmark process agrees on: databases, the data set, the partitions, the spec."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

PG_HOST = os.environ.get("ETL_BENCH_PG_HOST", "127.0.0.1")
PG_PORT = os.environ.get("ETL_BENCH_PG_PORT", "5432")
PG_USER = os.environ.get("ETL_BENCH_PG_USER", "postgres")

# The first partition and the weekly grid (UTC, weeks start on Sunday).
FIRST_WEEK = dt.datetime(2025, 1, 5, tzinfo=dt.timezone.utc)
WEEK = dt.timedelta(days=7)

# The 10%-changed copy of the source covers this many weeks (the 1M-row scenario's range).
CHANGED_WEEKS = 8

# Rows of the tiny table used to measure Dagster's fixed overhead per run.
TINY_ROWS = 100

# Target schemas, one per variant, all in the one warehouse database.
SCHEMAS = {
    "copy_limit": "bench_copy",
    "sql_upsert": "bench_sql",
    "etl_assets": "bench_etl",
    "dlt_merge": "bench_dlt",
    "pandas_upsert": "bench_pandas",
    "overhead": "bench_overhead",
    "small_sql": "bench_small_sql",
    "small_etl": "bench_small_etl",
}

# The small-partitions scenario: five sources shaped like a real dataset, in schema `small` of
# the source database. (name, mode, rows per week for incremental tables or rows for full ones)
SMALL_SOURCES: list[tuple[str, str, int]] = [
    ("events", "incremental", 6_400),
    ("payments", "incremental", 500),
    ("plans", "full", 16),
    ("products", "full", 1_500),
    ("customers", "full", 3_300),
]

COLUMNS: list[tuple[str, str, str]] = [
    # name, PostgreSQL type in the source, etl-assets type
    ("order_id", "bigint", "integer"),
    ("customer_id", "bigint", "integer"),
    ("customer_name", "text", "string"),
    ("sku", "text", "string"),
    ("quantity", "integer", "integer"),
    ("unit_price", "numeric(10,2)", "float"),
    ("status", "text", "string"),
    ("ordered_at", "timestamptz", "timestamp"),
    ("updated_at", "timestamptz", "timestamp"),
]
COLUMN_NAMES = [c[0] for c in COLUMNS]


def pg_url(db: str, driver: str = "") -> str:
    scheme = f"postgresql+{driver}" if driver else "postgresql"
    return f"{scheme}://{PG_USER}@{PG_HOST}:{PG_PORT}/{db}"


def week_key(i: int) -> str:
    return (FIRST_WEEK + i * WEEK).strftime("%Y-%m-%d")


def week_range(first: int, count: int) -> tuple[dt.datetime, dt.datetime]:
    return FIRST_WEEK + first * WEEK, FIRST_WEEK + (first + count) * WEEK


def source_dict(name: str, table: str, target: str, *, mode: str = "incremental") -> dict[str, Any]:
    """One PostgreSQL source of the orders shape: 9 typed columns, three blocking checks."""
    return {
        "name": name,
        "kind": "postgres",
        "connection": {"url": "${BENCH_SOURCE_URL}"},
        "table": table,
        "mode": mode,
        **({"timestamp_column": "updated_at"} if mode == "incremental" else {}),
        "primary_key": ["order_id"],
        "columns": [
            {"name": n, "type": t, **({"nullable": False} if n == "order_id" else {})}
            for n, _, t in COLUMNS
        ],
        "load": {"target": target, "strategy": "upsert"},
        "checks": [
            {"type": "not_null", "column": "customer_id"},
            {"type": "unique"},
            {"type": "between", "column": "quantity", "min": 1, "max": 100},
        ],
    }


def pipeline_dict(name: str, sources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "owners": ["team:data"],
        "timezone": "UTC",
        "partitions": {"cadence": "weekly", "start": FIRST_WEEK.date().isoformat(), "week_start": "sunday"},
        "retries": {"max": 0},
        "sources": sources,
    }


def spec_dict(table: str, *, name: str = "bench", target_schema: str = SCHEMAS["etl_assets"]) -> dict[str, Any]:
    """The benchmark pipeline: one PostgreSQL source `orders`."""
    return pipeline_dict(name, [source_dict("orders", table, f"{target_schema}.orders")])


def small_spec_dict(target_schema: str = SCHEMAS["small_etl"]) -> dict[str, Any]:
    """The small-partitions pipeline: SMALL_SOURCES, each into `<target_schema>.<name>`."""
    return pipeline_dict("bench_small", [
        source_dict(n, f"small.{n}", f"{target_schema}.{n}", mode=mode) for n, mode, _ in SMALL_SOURCES
    ])

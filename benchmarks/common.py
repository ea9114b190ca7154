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
}

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


def spec_dict(table: str, *, name: str = "bench", target_schema: str = SCHEMAS["etl_assets"]) -> dict[str, Any]:
    """The benchmark pipeline: one PostgreSQL source, 9 typed columns, three blocking checks."""
    return {
        "name": name,
        "owners": ["team:data"],
        "timezone": "UTC",
        "partitions": {"cadence": "weekly", "start": FIRST_WEEK.date().isoformat(), "week_start": "sunday"},
        "retries": {"max": 0},
        "sources": [
            {
                "name": "orders",
                "kind": "postgres",
                "connection": {"url": "${BENCH_SOURCE_URL}"},
                "table": table,
                "mode": "incremental",
                "timestamp_column": "updated_at",
                "primary_key": ["order_id"],
                "columns": [
                    {"name": n, "type": t, **({"nullable": False} if n == "order_id" else {})}
                    for n, _, t in COLUMNS
                ],
                "load": {"target": f"{target_schema}.orders", "strategy": "upsert"},
                "checks": [
                    {"type": "not_null", "column": "customer_id"},
                    {"type": "unique"},
                    {"type": "between", "column": "quantity", "min": 1, "max": 100},
                ],
            }
        ],
    }

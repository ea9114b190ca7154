"""One benchmark process: `python -m benchmarks.worker '<json job>'`.

The job names a variant, the weeks to load, the source table of each step and the databases.
Each step prints one line `BENCH_RESULT {json}` with its wall time (measured after imports)
and counts. The parent measures the process's peak RSS with wait4().

Variants: (a) copy_limit, (b) sql_upsert and small_sql, (e) pandas_upsert in worker_sql.py;
(c) etl_assets, small_etl and overhead in worker_etl.py; (d) dlt_merge here:
  dlt_merge      dlt sql_table (pyarrow backend) → postgres, write_disposition=merge
"""

from __future__ import annotations

import time

T_PROCESS = time.perf_counter()
T_PROCESS_EPOCH = time.time()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

from benchmarks.common import SCHEMAS, week_range  # noqa: E402
from benchmarks.worker_etl import run_etl_assets, run_overhead, run_small_etl  # noqa: E402
from benchmarks.worker_sql import (  # noqa: E402
    connect,
    run_copy_limit,
    run_pandas_upsert,
    run_small_sql,
    run_sql_upsert,
)


def emit(result: dict[str, Any]) -> None:
    print("BENCH_RESULT " + json.dumps(result, default=str), flush=True)


def reset_schema(url: str, schema: str) -> None:
    from psycopg import sql

    with connect(url, autocommit=True) as conn:
        for name in (schema, f"{schema}_staging"):  # and dlt's merge staging
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def settle(url: str, schema: str) -> None:
    """Between measured steps: vacuum and checkpoint, so one step's debris does not bill the next."""
    with connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM information_schema.tables "
            "WHERE table_schema = %s AND table_type = 'BASE TABLE'",
            (schema,),
        ).fetchall()
        for (t,) in tables:
            conn.execute(f"VACUUM ANALYZE {t}")
        conn.execute("CHECKPOINT")


# --- (d) dlt ------------------------------------------------------------------------------------


def run_dlt_merge(job: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    import dlt
    from dlt.sources.sql_database import sql_table

    t_imports = time.perf_counter()
    lo, hi = week_range(job["first_week"], job["weeks"])
    schema, table = step["table"].split(".")
    resource = sql_table(
        credentials=job["source_url"],
        schema=schema,
        table=table,
        backend="pyarrow",
        chunk_size=job.get("dlt_chunk_size", 100_000),
        incremental=dlt.sources.incremental("updated_at", initial_value=lo, end_value=hi, range_end="open"),
    )
    resource.apply_hints(table_name="orders", primary_key="order_id", write_disposition="merge")
    pipeline = dlt.pipeline(
        pipeline_name="bench_dlt",
        pipelines_dir=job["dlt_dir"],
        # dlt insists on a password; the local server trusts loopback and ignores it.
        destination=dlt.destinations.postgres(
            credentials=job["warehouse_url"].replace("postgresql://postgres@", "postgresql://postgres:unused@")
        ),
        dataset_name=SCHEMAS["dlt_merge"],
    )
    info = pipeline.run(resource, loader_file_format=job.get("dlt_file_format", "csv"))
    normalize_info = pipeline.last_trace.last_normalize_info if pipeline.last_trace else None
    rows = (normalize_info.row_counts or {}).get("orders") if normalize_info else None
    return {
        "wall_s": time.perf_counter() - t_imports,
        "rows": job["rows"],
        "normalized_rows": rows,
        "loads": len(info.loads_ids),
        "file_format": job.get("dlt_file_format", "csv"),
    }


VARIANTS: dict[str, Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]] = {
    "copy_limit": run_copy_limit,
    "sql_upsert": run_sql_upsert,
    "etl_assets": run_etl_assets,
    "dlt_merge": run_dlt_merge,
    "pandas_upsert": run_pandas_upsert,
    "overhead": run_overhead,
    "small_sql": run_small_sql,
    "small_etl": run_small_etl,
}


def main(argv: list[str]) -> int:
    job = json.loads(argv[1])
    fn = VARIANTS[job["variant"]]
    schema = SCHEMAS[job["variant"]]
    for step in job["steps"]:
        # A step may load another range than the job's (the smoke profile groups sizes).
        sjob = {**job, **{k: step[k] for k in ("weeks", "rows", "label") if k in step}}
        if step.get("reset"):
            reset_schema(job["warehouse_url"], schema)
        result = fn(sjob, step)
        result.update({"variant": job["variant"], "scenario": step["scenario"], "table": step["table"],
                       "label": sjob.get("label"), "weeks": sjob["weeks"]})
        result["rows_per_s"] = result["rows"] / result["wall_s"] if result["wall_s"] else None
        result["process_s"] = time.perf_counter() - T_PROCESS
        if job.get("launched_at"):  # interpreter start-up: from the parent's Popen to this module
            result["startup_s"] = round(T_PROCESS_EPOCH - job["launched_at"], 3)
        emit(result)
        if job.get("settle", True) and job["variant"] != "overhead":
            settle(job["warehouse_url"], schema)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""One benchmark process: `python -m benchmarks.worker '<json job>'`.

The job names a variant, the weeks to load, the source table of each step and the databases.
Each step prints one line `BENCH_RESULT {json}` with its wall time (measured after imports)
and counts. The parent measures the process's peak RSS with wait4().

Variants:
  copy_limit     binary COPY source → target, no transform (the physical limit)
  sql_upsert     binary COPY into a staging table, md5 hash and one INSERT … ON CONFLICT DO
                 UPDATE … WHERE record_hash IS DISTINCT FROM per partition (the SQL limit)
  etl_assets     raw → normalized → validated → loaded through Dagster, one run
  dlt_merge      dlt sql_table (pyarrow backend) → postgres, write_disposition=merge
  pandas_upsert  read_sql → to_sql(method="multi") staging → the same SQL upsert
  overhead       etl_assets on a tiny partition, broken down: imports, definitions, instance,
                 each step
"""

from __future__ import annotations

import time

T_PROCESS = time.perf_counter()
T_PROCESS_EPOCH = time.time()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from benchmarks.common import COLUMN_NAMES, COLUMNS, SCHEMAS, spec_dict, week_key, week_range  # noqa: E402


def emit(result: dict[str, Any]) -> None:
    print("BENCH_RESULT " + json.dumps(result, default=str), flush=True)


def _connect(url: str, **kw: Any):
    import psycopg

    return psycopg.connect(url, options="-c TimeZone=UTC", **kw)


def reset_schema(url: str, schema: str) -> None:
    with _connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"DROP SCHEMA IF EXISTS {schema}_staging CASCADE")  # dlt's merge staging


def settle(url: str, schema: str) -> None:
    """Between measured steps: vacuum and checkpoint, so one step's debris does not bill the next."""
    with _connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM information_schema.tables "
            "WHERE table_schema = %s AND table_type = 'BASE TABLE'",
            (schema,),
        ).fetchall()
        for (t,) in tables:
            conn.execute(f"VACUUM ANALYZE {t}")
        conn.execute("CHECKPOINT")


def target_ddl(schema: str, *, meta: bool) -> str:
    cols = [f"{n} {t}" for n, t, _ in COLUMNS]
    if meta:
        cols += ["record_hash text NOT NULL", "_partition text NOT NULL",
                 "_loaded_at timestamptz NOT NULL", "_run_id text NOT NULL"]
    return (
        f"CREATE SCHEMA IF NOT EXISTS {schema}; "
        f"CREATE TABLE IF NOT EXISTS {schema}.orders ({', '.join(cols)}, PRIMARY KEY (order_id))"
        + (f"; CREATE INDEX IF NOT EXISTS orders_partition_idx ON {schema}.orders (_partition)" if meta else "")
    )


def window_query(table: str) -> str:
    cols = ", ".join(COLUMN_NAMES)
    return f"SELECT {cols} FROM {table} WHERE updated_at >= %s AND updated_at < %s"


# --- (a) the physical limit ---------------------------------------------------------------------


def run_copy_limit(job: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    import psycopg

    schema = SCHEMAS["copy_limit"]
    src, wh = job["source_url"], job["warehouse_url"]
    started = time.perf_counter()
    rows = 0
    with _connect(src) as s, _connect(wh) as t:
        t.execute(target_ddl(schema, meta=False))
        for w in range(job["first_week"], job["first_week"] + job["weeks"]):
            lo, hi = week_range(w, 1)
            q = psycopg.ClientCursor(s).mogrify(window_query(step["table"]), (lo, hi))
            with s.cursor().copy(f"COPY ({q}) TO STDOUT (FORMAT binary)") as out, t.cursor().copy(
                f"COPY {schema}.orders ({', '.join(COLUMN_NAMES)}) FROM STDIN (FORMAT binary)"
            ) as into:
                for chunk in out:
                    into.write(chunk)
            t.commit()
        rows = t.execute(f"SELECT count(*) FROM {schema}.orders").fetchone()[0]
    return {"wall_s": time.perf_counter() - started, "rows": job["rows"], "target_rows": rows}


# --- (b) the SQL upsert limit -------------------------------------------------------------------


def _hash_expr(alias: str) -> str:
    parts = [f"coalesce({alias}.{n}::text, '\\N')" for n in COLUMN_NAMES]
    return "md5(" + " || chr(31) || ".join(parts) + ")"


def sql_upsert_statement(schema: str, stage: str = "_stage", prefilter: bool = False) -> str:
    """The staged rows hashed once, then inserted or updated unless their hash is unchanged.

    `prefilter` adds etl-assets' NOT EXISTS (same key and hash) filter, which skips unchanged
    rows before the upsert; measured, it costs more than it saves, so the limit goes without."""
    cols = COLUMN_NAMES + ["record_hash", "_partition", "_loaded_at", "_run_id"]
    assign = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c != "order_id")
    pre = (
        f" WHERE NOT EXISTS (SELECT 1 FROM {schema}.orders t WHERE t.order_id = s.order_id"
        f" AND t.record_hash = s.record_hash)"
        if prefilter
        else ""
    )
    return (
        f"WITH s AS (SELECT {', '.join('s.' + c for c in COLUMN_NAMES)}, {_hash_expr('s')} AS record_hash "
        f"FROM {stage} s), "
        f"up AS (INSERT INTO {schema}.orders AS t ({', '.join(cols)}) "
        f"SELECT {', '.join('s.' + c for c in COLUMN_NAMES)}, s.record_hash, %(partition)s, now(), %(run_id)s "
        f"FROM s{pre} "
        f"ON CONFLICT (order_id) DO UPDATE SET {assign} "
        f"WHERE t.record_hash IS DISTINCT FROM EXCLUDED.record_hash "
        f"RETURNING (xmax = 0) AS inserted) "
        f"SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up"
    )


def run_sql_upsert(job: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    import psycopg

    schema = SCHEMAS["sql_upsert"]
    src, wh = job["source_url"], job["warehouse_url"]
    prefilter = job.get("prefilter", False)
    started = time.perf_counter()
    inserted = updated = 0
    run_id = uuid.uuid4().hex
    stmt = sql_upsert_statement(schema, prefilter=prefilter)
    with _connect(src) as s, _connect(wh) as t:
        t.execute(target_ddl(schema, meta=True))
        t.commit()
        for w in range(job["first_week"], job["first_week"] + job["weeks"]):
            lo, hi = week_range(w, 1)
            with t.transaction():
                t.execute(
                    f"CREATE TEMP TABLE _stage ON COMMIT DROP AS SELECT {', '.join(COLUMN_NAMES)} "
                    f"FROM {schema}.orders WITH NO DATA"
                )
                q = psycopg.ClientCursor(s).mogrify(window_query(step["table"]), (lo, hi))
                with s.cursor().copy(f"COPY ({q}) TO STDOUT (FORMAT binary)") as out, t.cursor().copy(
                    "COPY _stage FROM STDIN (FORMAT binary)"
                ) as into:
                    for chunk in out:
                        into.write(chunk)
                t.execute("ANALYZE _stage")
                ins, upd = t.execute(stmt, {"partition": week_key(w), "run_id": run_id}).fetchone()
                inserted, updated = inserted + ins, updated + upd
            s.commit()
    return {
        "wall_s": time.perf_counter() - started,
        "rows": job["rows"],
        "inserted": inserted,
        "updated": updated,
        "unchanged": job["rows"] - inserted - updated,
        "prefilter": prefilter,
    }


# --- (c) etl-assets through Dagster -------------------------------------------------------------


def _etl_env(job: dict[str, Any], table: str) -> str:
    os.environ["BENCH_SOURCE_URL"] = job["source_url"]
    os.environ["ETL_WAREHOUSE_URL"] = job["warehouse_url"]
    os.environ["ETL_STORAGE_DIR"] = job["storage_dir"]
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    return table


def _partition_kwargs(job: dict[str, Any]) -> dict[str, Any]:
    keys = [week_key(w) for w in range(job["first_week"], job["first_week"] + job["weeks"])]
    if len(keys) == 1:
        return {"partition_key": keys[0]}
    return {
        "tags": {
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
        }
    }


def _step_durations(instance: Any, run_id: str) -> dict[str, float]:
    import dagster as dg

    starts, out = {}, {}
    for entry in instance.all_logs(run_id):
        ev = entry.dagster_event
        if ev is None or not ev.step_key:
            continue
        if ev.event_type == dg.DagsterEventType.STEP_START:
            starts[ev.step_key] = entry.timestamp
        elif ev.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            out[ev.step_key.split("__")[1] if "__" in ev.step_key else ev.step_key] = round(
                entry.timestamp - starts.get(ev.step_key, entry.timestamp), 3
            )
    return out


def _loaded_counts(result: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for ev in result.get_asset_materialization_events():
        if ev.asset_key.path[1] == "loaded":
            md = ev.step_materialization_data.materialization.metadata
            for f in ("inserted", "updated", "unchanged"):
                counts[f] = int(getattr(md.get(f), "value", 0) or 0)
    return counts


def run_etl_assets(job: dict[str, Any], step: dict[str, Any], *, instance_kind: str = "persistent") -> dict[str, Any]:
    t0 = time.perf_counter()
    _etl_env(job, step["table"])
    import dagster as dg

    from etl_assets.definitions import build_defs
    from etl_assets.orchestration.assets import asset_key
    from etl_assets.spec import parse_pipeline

    t_imports = time.perf_counter()
    schema = SCHEMAS[job["variant"]] if job["variant"] in SCHEMAS else SCHEMAS["etl_assets"]
    spec = parse_pipeline(spec_dict(step["table"], target_schema=schema), "bench.yaml")
    defs = build_defs([spec])
    t_defs = time.perf_counter()
    dg.Definitions.validate_loadable(defs)
    t_validate = time.perf_counter()
    job_def = defs.resolve_job_def("bench_job")
    selection = [asset_key("bench", layer, "orders") for layer in ("raw", "normalized", "validated", "loaded")]
    t_job = time.perf_counter()
    with _instance(instance_kind, job) as instance:
        t_instance = time.perf_counter()
        kw = _partition_kwargs(job)
        result = job_def.execute_in_process(
            instance=instance,
            raise_on_error=True,
            asset_selection=selection,
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
            **kw,
        )
        t_run = time.perf_counter()
        steps = _step_durations(instance, result.run_id)
    t_end = time.perf_counter()
    counts = _loaded_counts(result)
    run_s = t_run - t_instance
    return {
        # The measured wall time: build definitions, open the instance, run, close the instance.
        "wall_s": (t_end - t_imports) - (t_validate - t_defs),
        "rows": job["rows"],
        **counts,
        "breakdown": {
            "imports_s": round(t_imports - t0, 3),
            "build_defs_s": round(t_defs - t_imports, 3),
            "validate_loadable_s": round(t_validate - t_defs, 3),
            "resolve_job_s": round(t_job - t_validate, 3),
            "instance_s": round(t_instance - t_job, 3),
            "execute_in_process_s": round(run_s, 3),
            "steps_s": steps,
            "run_overhead_s": round(run_s - sum(steps.values()), 3),
            "instance_close_s": round(t_end - t_run, 3),
        },
    }


class _instance:
    """`test`: dg.instance_for_test() (SQLite in a temp dir); `ephemeral`: in memory;
    `postgres`: a persistent instance on PostgreSQL, as production runs use; `persistent`: SQLite
    in the variant's state folder, kept across its runs (reset with it), as production's is."""

    def __init__(self, kind: str, job: dict[str, Any]):
        self.kind, self.job, self._cm, self._tmp = kind, job, None, None

    def __enter__(self):
        import dagster as dg

        if self.kind == "ephemeral":
            self._inst = dg.DagsterInstance.ephemeral()
            return self._inst
        if self.kind == "postgres":
            self._tmp = tempfile.TemporaryDirectory(prefix="bench_dagster_home_")
            # dagster-postgres speaks psycopg2; SQLAlchemy 2.1's bare postgresql:// means psycopg 3.
            url = self.job["instance_url"].replace("postgresql://", "postgresql+psycopg2://", 1)
            self._cm = dg.instance_for_test(
                temp_dir=self._tmp.name,
                overrides={"storage": {"postgres": {"postgres_url": url}}, "telemetry": {"enabled": False}},
            )
            return self._cm.__enter__()
        if self.kind == "persistent":
            home = Path(self.job["storage_dir"]).parent / "dagster_home"
            home.mkdir(parents=True, exist_ok=True)
            self._cm = dg.instance_for_test(temp_dir=str(home), overrides={"telemetry": {"enabled": False}})
            return self._cm.__enter__()
        self._cm = dg.instance_for_test(overrides={"telemetry": {"enabled": False}})
        return self._cm.__enter__()

    def __exit__(self, *exc):
        if self._cm is not None:
            self._cm.__exit__(*exc)
        if self._tmp is not None:
            self._tmp.cleanup()
        return False


def run_overhead(job: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    out = run_etl_assets(job, step, instance_kind=step.get("instance", "test"))
    out["instance_kind"] = step.get("instance", "test")
    return out


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


# --- (e) pandas ---------------------------------------------------------------------------------


def run_pandas_upsert(job: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd
    import sqlalchemy as sa

    t_imports = time.perf_counter()
    schema = SCHEMAS["pandas_upsert"]
    lo, hi = week_range(job["first_week"], job["weeks"])
    src = sa.create_engine(job["source_url"].replace("postgresql://", "postgresql+psycopg://"))
    wh = sa.create_engine(job["warehouse_url"].replace("postgresql://", "postgresql+psycopg://"))
    run_id = uuid.uuid4().hex
    inserted = updated = 0
    with wh.begin() as conn:
        for stmt in target_ddl(schema, meta=True).split("; "):
            conn.exec_driver_sql(stmt)
    for w in range(job["first_week"], job["first_week"] + job["weeks"]):
        lo, hi = week_range(w, 1)
        query = window_query(step["table"]).replace("%s", ":lo", 1).replace("%s", ":hi", 1)
        if job.get("limit"):  # a slice of each week: this variant is measured small
            query += f" ORDER BY order_id LIMIT {int(job['limit'])}"
        frame = pd.read_sql(
            sa.text(query),
            src,
            params={"lo": lo, "hi": hi},
        )
        with wh.begin() as conn:
            frame.to_sql("_stage", conn, schema=schema, if_exists="replace", index=False,
                         method="multi", chunksize=1000)
            ins, upd = conn.exec_driver_sql(
                sql_upsert_statement(schema, stage=f"{schema}._stage").replace("%(partition)s", f"'{week_key(w)}'")
                .replace("%(run_id)s", f"'{run_id}'")
            ).fetchone()
            inserted, updated = inserted + ins, updated + upd
    src.dispose()
    wh.dispose()
    return {
        "wall_s": time.perf_counter() - t_imports,
        "rows": job["rows"],
        "inserted": inserted,
        "updated": updated,
        "unchanged": job["rows"] - inserted - updated,
    }


VARIANTS = {
    "copy_limit": run_copy_limit,
    "sql_upsert": run_sql_upsert,
    "etl_assets": run_etl_assets,
    "dlt_merge": run_dlt_merge,
    "pandas_upsert": run_pandas_upsert,
    "overhead": run_overhead,
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

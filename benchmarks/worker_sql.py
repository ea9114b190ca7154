"""The variants that are plain SQL (and pandas): the limits etl-assets is measured against.

  copy_limit     (a) binary COPY source → target, no transform (the physical limit)
  sql_upsert     (b) binary COPY into a staging table, md5 hash and one INSERT … ON CONFLICT DO
                 UPDATE … WHERE record_hash IS DISTINCT FROM per partition (the SQL limit)
  pandas_upsert  (e) read_sql → to_sql(method="multi") staging → the same SQL upsert
  small_sql      (b) on the small-partitions tables: per week for the incremental ones, the
                 whole table at once for the `mode: full` ones, all in one process

Imports are inside the functions: the worker measures its own import time.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from benchmarks.common import COLUMN_NAMES, COLUMNS, SCHEMAS, SMALL_SOURCES, week_key, week_range


def connect(url: str, **kw: Any):
    import psycopg

    return psycopg.connect(url, options="-c TimeZone=UTC", **kw)


def target_ddl(schema: str, *, meta: bool, table: str = "orders") -> str:
    cols = [f"{n} {t}" for n, t, _ in COLUMNS]
    if meta:
        cols += ["record_hash text NOT NULL", "_partition text NOT NULL",
                 "_loaded_at timestamptz NOT NULL", "_run_id text NOT NULL"]
    return (
        f"CREATE SCHEMA IF NOT EXISTS {schema}; "
        f"CREATE TABLE IF NOT EXISTS {schema}.{table} ({', '.join(cols)}, PRIMARY KEY (order_id))"
        + (f"; CREATE INDEX IF NOT EXISTS {table}_partition_idx ON {schema}.{table} (_partition)" if meta else "")
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
    with connect(src) as s, connect(wh) as t:
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


def sql_upsert_statement(schema: str, stage: str = "_stage", prefilter: bool = False, table: str = "orders") -> str:
    """The staged rows hashed once, then inserted or updated unless their hash is unchanged.

    `prefilter` adds etl-assets' NOT EXISTS (same key and hash) filter, which skips unchanged
    rows before the upsert; measured, it costs more than it saves, so the limit goes without."""
    cols = COLUMN_NAMES + ["record_hash", "_partition", "_loaded_at", "_run_id"]
    assign = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c != "order_id")
    pre = (
        f" WHERE NOT EXISTS (SELECT 1 FROM {schema}.{table} t WHERE t.order_id = s.order_id"
        f" AND t.record_hash = s.record_hash)"
        if prefilter
        else ""
    )
    return (
        f"WITH s AS (SELECT {', '.join('s.' + c for c in COLUMN_NAMES)}, {_hash_expr('s')} AS record_hash "
        f"FROM {stage} s), "
        f"up AS (INSERT INTO {schema}.{table} AS t ({', '.join(cols)}) "
        f"SELECT {', '.join('s.' + c for c in COLUMN_NAMES)}, s.record_hash, %(partition)s, now(), %(run_id)s "
        f"FROM s{pre} "
        f"ON CONFLICT (order_id) DO UPDATE SET {assign} "
        f"WHERE t.record_hash IS DISTINCT FROM EXCLUDED.record_hash "
        f"RETURNING (xmax = 0) AS inserted) "
        f"SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up"
    )


def staged_upsert(s: Any, t: Any, schema: str, table: str, query: str, params: dict[str, Any]) -> tuple[int, int]:
    """In one transaction: `query` (on the source) binary-COPYed into a staging table, then
    `sql_upsert_statement`; returns (inserted, updated)."""
    import psycopg

    with t.transaction():
        t.execute(
            f"CREATE TEMP TABLE _stage ON COMMIT DROP AS SELECT {', '.join(COLUMN_NAMES)} "
            f"FROM {schema}.{table} WITH NO DATA"
        )
        q = psycopg.ClientCursor(s).mogrify(query, params.get("window"))
        with s.cursor().copy(f"COPY ({q}) TO STDOUT (FORMAT binary)") as out, t.cursor().copy(
            "COPY _stage FROM STDIN (FORMAT binary)"
        ) as into:
            for chunk in out:
                into.write(chunk)
        t.execute("ANALYZE _stage")
        stmt = sql_upsert_statement(schema, prefilter=params.get("prefilter", False), table=table)
        ins, upd = t.execute(stmt, {"partition": params["partition"], "run_id": params["run_id"]}).fetchone()
    s.commit()
    return ins, upd


def run_sql_upsert(job: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    schema = SCHEMAS["sql_upsert"]
    prefilter = job.get("prefilter", False)
    started = time.perf_counter()
    inserted = updated = 0
    run_id = uuid.uuid4().hex
    with connect(job["source_url"]) as s, connect(job["warehouse_url"]) as t:
        t.execute(target_ddl(schema, meta=True))
        t.commit()
        for w in range(job["first_week"], job["first_week"] + job["weeks"]):
            params = {"window": week_range(w, 1), "partition": week_key(w), "run_id": run_id, "prefilter": prefilter}
            ins, upd = staged_upsert(s, t, schema, "orders", window_query(step["table"]), params)
            inserted, updated = inserted + ins, updated + upd
    return {
        "wall_s": time.perf_counter() - started,
        "rows": job["rows"],
        "inserted": inserted,
        "updated": updated,
        "unchanged": job["rows"] - inserted - updated,
        "prefilter": prefilter,
    }


def run_small_sql(job: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    """(b) over the five small-partitions tables, as one run of `job["weeks"]` weeks."""
    schema = SCHEMAS["small_sql"]
    started = time.perf_counter()
    inserted = updated = 0
    run_id = uuid.uuid4().hex
    with connect(job["source_url"]) as s, connect(job["warehouse_url"]) as t:
        for name, mode, _ in SMALL_SOURCES:
            for stmt in target_ddl(schema, meta=True, table=name).split("; "):
                t.execute(stmt)
            t.commit()
            if mode == "full":  # the whole table, once per run
                query = f"SELECT {', '.join(COLUMN_NAMES)} FROM small.{name}"
                ins, upd = staged_upsert(s, t, schema, name, query, {"partition": "full", "run_id": run_id})
                inserted, updated = inserted + ins, updated + upd
                continue
            for w in range(job["first_week"], job["first_week"] + job["weeks"]):
                params = {"window": week_range(w, 1), "partition": week_key(w), "run_id": run_id}
                ins, upd = staged_upsert(s, t, schema, name, window_query(f"small.{name}"), params)
                inserted, updated = inserted + ins, updated + upd
    return {
        "wall_s": time.perf_counter() - started,
        "rows": job["rows"],
        "inserted": inserted,
        "updated": updated,
        "unchanged": job["rows"] - inserted - updated,
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



"""PostgreSQL sources: `COPY (SELECT …) TO STDOUT` streamed into Arrow, never row by row."""

from __future__ import annotations

import io
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql

from etl_assets.secrets import redact, resolve
from etl_assets.sources.base import Extract, ExtractRequest, SourceDataError
from etl_assets.sqlutil import UnknownParameter, bind_named, qualified

# PostgreSQL type OIDs → Arrow types, so raw keeps the source's types through the CSV stream.
_OID_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int64(),
    23: pa.int64(),
    700: pa.float64(),
    701: pa.float64(),
    1700: pa.float64(),
    1082: pa.date32(),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
    25: pa.string(),
    1043: pa.string(),
    1042: pa.string(),
    2950: pa.string(),
}


def connect(url: str, *, where: str, timeout_seconds: float | None = None) -> psycopg.Connection:
    options = "-c TimeZone=UTC"
    if timeout_seconds:
        options += f" -c statement_timeout={int(timeout_seconds * 1000)}"
    dsn = resolve(url, where=where)
    return psycopg.connect(dsn, options=options, connect_timeout=10, autocommit=True)


def build_query(source: Any, request: ExtractRequest) -> tuple[sql.Composable, dict[str, Any]]:
    start = request.window.start - source.lookback_delta
    params = {
        "window_start": start,
        "window_end": request.window.end,
        "last_sync": request.last_sync,
    }
    if source.query:
        try:
            return bind_named(source.query, params)
        except UnknownParameter as e:
            raise SourceDataError(f"query: {e}") from None
    cols = (
        sql.SQL(", ").join(sql.Identifier(c.source_name) for c in source.columns)
        if source.columns
        else sql.SQL("*")
    )
    query = sql.SQL("SELECT {} FROM {}").format(cols, qualified(source.table))
    if source.mode == "incremental":
        ts = sql.Identifier(source.timestamp_column)
        query += sql.SQL(" WHERE {ts} >= %(window_start)s AND {ts} < %(window_end)s").format(ts=ts)
        return query, {"window_start": start, "window_end": request.window.end}
    return query, {}


def extract(source: Any, request: ExtractRequest) -> Extract:
    where = f"{request.pipeline}.sources.{source.name}.connection.url"
    query, params = build_query(source, request)
    with connect(source.connection.url, where=where, timeout_seconds=source.timeout_seconds) as conn:
        cur = psycopg.ClientCursor(conn)
        try:
            rendered = cur.mogrify(query, params)
            # Describe the result first, so the CSV stream is parsed with the source's types.
            cur.execute(sql.SQL("SELECT * FROM ({}) AS q LIMIT 0").format(sql.SQL(rendered)))
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn,
                psycopg.errors.SyntaxError, psycopg.errors.InsufficientPrivilege) as e:
            raise SourceDataError(f"query failed: {e.diag.message_primary}") from None
        names = [d.name for d in cur.description or []]
        types = {d.name: _OID_TYPES.get(d.type_code, pa.string()) for d in cur.description or []}
        buf = io.BytesIO()
        copy_sql = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER true)").format(
            sql.SQL(rendered)
        )
        with cur.copy(copy_sql) as copy:
            for chunk in copy:
                buf.write(chunk)
    buf.seek(0)
    table = pacsv.read_csv(
        buf,
        read_options=pacsv.ReadOptions(use_threads=True, block_size=1 << 22),
        convert_options=pacsv.ConvertOptions(
            column_types=types,
            true_values=["t"],
            false_values=["f"],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    if not names:
        table = pa.table({})
    frame = table.to_pandas(types_mapper=_pandas_types)
    inputs = {
        "kind": "postgres",
        "connection": redact(resolve(source.connection.url, where=where)),
        "query": rendered,
        "window_start": params.get("window_start", request.window.start).isoformat(),
        "window_end": params.get("window_end", request.window.end).isoformat(),
        "rows": len(frame),
    }
    return Extract(frame, inputs)


def _pandas_types(t: pa.DataType) -> Any:
    import pandas as pd

    if pa.types.is_integer(t):
        return pd.Int64Dtype()
    if pa.types.is_boolean(t):
        return pd.BooleanDtype()
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pd.StringDtype()
    return None
